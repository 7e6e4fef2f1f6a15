package sandbox

import (
	"fmt"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// Overrides are the command line's changes to a loaded policy. They are
// applied as the highest layer but obey the managed layer's locks:
// widening a locked key is refused; tightening is always allowed.
type Overrides struct {
	AllowDomains []string // added to network.allow
	DenyDomains  []string // added to network.deny
	Write        []string // added to filesystem.write
	DenyRead     []string // added to filesystem.deny_read
	DenyWrite    []string // added to filesystem.deny_write
	ReadOnly     bool     // drop the policy's filesystem.write (Write still adds)
	NoNetwork    bool     // drop network.allow: and the sandbox gets no proxy at all
	// AllowUnixSockets leaves socket(AF_UNIX) open (sandbox-runtime's
	// allowAllUnixSockets); a widening, refused when process is locked.
	AllowUnixSockets bool
	// Source names the overrides in origins and errors: "--allow-domain"
	// or "settings.json".
	Source string
}

// Apply returns a copy of pol with the overrides applied.
func (o Overrides) Apply(pol *policy.Policy) (*policy.Policy, error) {
	np := *pol
	n, f := &np.Network, &np.Filesystem
	n.Allow = append([]policy.HostRule(nil), pol.Network.Allow...)
	n.Deny = append([]policy.HostRule(nil), pol.Network.Deny...)
	f.Write = append([]policy.Entry(nil), pol.Filesystem.Write...)
	f.DenyRead = append([]policy.Entry(nil), pol.Filesystem.DenyRead...)
	f.DenyWrite = append([]policy.Entry(nil), pol.Filesystem.DenyWrite...)
	src := func(def string) string {
		if o.Source != "" {
			return o.Source
		}
		return def
	}
	origin := func(file, key string) policy.Origin {
		return policy.Origin{Layer: policy.LayerFlag, File: file, Key: key}
	}
	if len(o.AllowDomains) > 0 {
		if l, ok := lockOn(pol, "network.allow"); ok {
			return nil, fmt.Errorf("%s: network.allow is locked by %s; ask its owner to allow the domain", src("--allow-domain"), l.Origin)
		}
	}
	for _, d := range o.AllowDomains {
		r, err := policy.ParseHostRule(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src("--allow-domain"), err)
		}
		r.Origin = origin(src("--allow-domain"), "network.allow")
		n.Allow = append(n.Allow, r)
	}
	for _, d := range o.DenyDomains {
		r, err := policy.ParseHostRule(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src("--deny-domain"), err)
		}
		r.Origin = origin(src("--deny-domain"), "network.deny")
		n.Deny = append(n.Deny, r)
	}
	if o.NoNetwork {
		n.Allow = nil
	}
	if o.ReadOnly {
		f.Write = nil
	}
	if len(o.Write) > 0 {
		if l, ok := lockOn(pol, "filesystem.write"); ok {
			return nil, fmt.Errorf("%s: filesystem.write is locked by %s; ask its owner to add the path", src("--write"), l.Origin)
		}
	}
	for _, w := range o.Write {
		if w == "" || strings.ContainsRune(w, 0) {
			return nil, fmt.Errorf("%s: empty path", src("--write"))
		}
		f.Write = append(f.Write, policy.Entry{Value: w, Origin: origin(src("--write"), "filesystem.write")})
	}
	for _, p := range o.DenyRead {
		f.DenyRead = append(f.DenyRead, policy.Entry{Value: p, Origin: origin(src("--deny-read"), "filesystem.deny_read")})
	}
	for _, p := range o.DenyWrite {
		f.DenyWrite = append(f.DenyWrite, policy.Entry{Value: p, Origin: origin(src("--deny-write"), "filesystem.deny_write")})
	}
	if o.AllowUnixSockets {
		if l, ok := lockOn(pol, "process"); ok {
			return nil, fmt.Errorf("%s: Unix sockets cannot be allowed: process is locked by %s", src("allowAllUnixSockets"), l.Origin)
		}
	}
	return &np, nil
}

// lockOn finds the managed lock covering a key path (the path or its
// section).
func lockOn(pol *policy.Policy, path string) (policy.Entry, bool) {
	section, _, _ := strings.Cut(path, ".")
	for _, l := range pol.Locks {
		if l.Value == path || l.Value == section {
			return l, true
		}
	}
	return policy.Entry{}, false
}
