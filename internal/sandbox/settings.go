package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// srtSettings is sandbox-runtime's settings file (~/.srt-settings.json,
// srt -s FILE), as far as moat reads it.
type srtSettings struct {
	Network *struct {
		AllowedDomains      []string `json:"allowedDomains"`
		DeniedDomains       []string `json:"deniedDomains"`
		AllowUnixSockets    []string `json:"allowUnixSockets"`
		AllowAllUnixSockets bool     `json:"allowAllUnixSockets"`
		AllowLocalBinding   *bool    `json:"allowLocalBinding"`
		HTTPProxyPort       *int     `json:"httpProxyPort"`
		SOCKSProxyPort      *int     `json:"socksProxyPort"`
	} `json:"network"`
	Filesystem *struct {
		DenyRead       []string `json:"denyRead"`
		AllowRead      []string `json:"allowRead"`
		AllowWrite     []string `json:"allowWrite"`
		DenyWrite      []string `json:"denyWrite"`
		AllowGitConfig *bool    `json:"allowGitConfig"`
	} `json:"filesystem"`
}

// ImportSettings maps a sandbox-runtime settings file onto Overrides and
// says, one note each, what it could not map. Unknown keys are reported
// too, never silently dropped.
func ImportSettings(name string, data []byte) (Overrides, []string, error) {
	o := Overrides{Source: name}
	var notes []string
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return o, nil, fmt.Errorf("%s: not a JSON object: %w", name, err)
	}
	var s srtSettings
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return o, nil, fmt.Errorf("%s: %w", name, err)
	}
	known := map[string]bool{"network": true, "filesystem": true}
	var unknown []string
	for k := range raw {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		notes = append(notes, fmt.Sprintf("%s: %s is not mapped; moat ignores it", name, k))
	}
	if n := s.Network; n != nil {
		o.AllowDomains = n.AllowedDomains
		for _, d := range n.DeniedDomains {
			host, _, _ := strings.Cut(d, ":")
			if host == "*" {
				notes = append(notes, fmt.Sprintf("%s: network.deniedDomains %q: moat denies what network.allow does not list already", name, d))
				continue
			}
			o.DenyDomains = append(o.DenyDomains, d)
		}
		if len(n.AllowUnixSockets) > 0 {
			notes = append(notes, fmt.Sprintf("%s: network.allowUnixSockets is not mapped: per-path Unix sockets are not supported on Linux; use allowAllUnixSockets", name))
		}
		o.AllowUnixSockets = n.AllowAllUnixSockets
		if n.AllowLocalBinding != nil {
			notes = append(notes, fmt.Sprintf("%s: network.allowLocalBinding is not needed: the sandbox has its own loopback, where binding is always allowed", name))
		}
		if n.HTTPProxyPort != nil || n.SOCKSProxyPort != nil {
			notes = append(notes, fmt.Sprintf("%s: network.httpProxyPort/socksProxyPort are not mapped: moat's own proxy enforces the policy", name))
		}
	}
	if f := s.Filesystem; f != nil {
		o.DenyRead = f.DenyRead
		o.Write = f.AllowWrite
		o.DenyWrite = f.DenyWrite
		if len(f.AllowRead) > 0 {
			notes = append(notes, fmt.Sprintf("%s: filesystem.allowRead is not mapped: moat cannot re-open a path inside a denied one; remove the path from denyRead instead", name))
		}
		if f.AllowGitConfig != nil && *f.AllowGitConfig {
			notes = append(notes, fmt.Sprintf("%s: filesystem.allowGitConfig is not mapped: .git/config stays read-only", name))
		}
	}
	return o, notes, nil
}
