package permission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/moatsec/moat/internal/policy"
)

// Claude Code's settings files, read as a rule source so that rules
// already written for Claude Code are enforced on moat's parse.

// ManagedSettingsPath is Claude Code's managed settings file on Linux.
const ManagedSettingsPath = "/etc/claude-code/managed-settings.json"

// SettingsSource is one Claude Code settings file. Base is the directory a
// "/path" rule in it is relative to (Claude Code's anchors: the project
// root for .claude/settings.json, the working directory for
// settings.local.json, ~/.claude for the user's file).
type SettingsSource struct {
	Path    string
	Base    string
	Managed bool
}

// ClaudeSources lists the settings files Claude Code reads for a project
// root, managed first; missing files are skipped by LoadClaudeRules.
func ClaudeSources(projectDir, cwd, home string) []SettingsSource {
	srcs := []SettingsSource{{Path: ManagedSettingsPath, Base: "/etc/claude-code", Managed: true}}
	if ds, err := filepath.Glob(filepath.Join("/etc/claude-code/managed-settings.d", "*.json")); err == nil {
		sort.Strings(ds)
		for _, d := range ds {
			srcs = append(srcs, SettingsSource{Path: d, Base: "/etc/claude-code", Managed: true})
		}
	}
	if home != "" {
		srcs = append(srcs, SettingsSource{Path: filepath.Join(home, ".claude", "settings.json"), Base: filepath.Join(home, ".claude")})
	}
	if projectDir != "" {
		srcs = append(srcs,
			SettingsSource{Path: filepath.Join(projectDir, ".claude", "settings.json"), Base: projectDir},
			SettingsSource{Path: filepath.Join(projectDir, ".claude", "settings.local.json"), Base: cwd})
	}
	return srcs
}

type claudeSettings struct {
	Permissions struct {
		Allow       []string `json:"allow"`
		Ask         []string `json:"ask"`
		Deny        []string `json:"deny"`
		DefaultMode string   `json:"defaultMode"`
	} `json:"permissions"`
	AllowManagedPermissionRulesOnly bool `json:"allowManagedPermissionRulesOnly"`
}

// LoadClaudeRules reads the permission rules of Claude Code settings files.
// A missing file is skipped; a file that does not parse, or a rule moat
// cannot compile, is an error naming the file and index (rules that do
// compile are still returned). If a managed file sets
// allowManagedPermissionRulesOnly, rules from other files are dropped, as
// Claude Code does.
func LoadClaudeRules(srcs []SettingsSource) ([]Rule, error) {
	var rules, managed []Rule
	var errs []error
	managedOnly := false
	for _, s := range srcs {
		data, err := os.ReadFile(s.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("claude settings %s: %w", s.Path, err))
			continue
		}
		var cs claudeSettings
		if err := json.Unmarshal(data, &cs); err != nil {
			errs = append(errs, fmt.Errorf("claude settings %s: %v", s.Path, err))
			continue
		}
		if s.Managed && cs.AllowManagedPermissionRulesOnly {
			managedOnly = true
		}
		for _, l := range []struct {
			key  string
			v    policy.Verdict
			list []string
		}{{"deny", policy.Deny, cs.Permissions.Deny}, {"ask", policy.Ask, cs.Permissions.Ask}, {"allow", policy.Allow, cs.Permissions.Allow}} {
			for i, raw := range l.list {
				key := "permissions." + l.key + "[" + strconv.Itoa(i) + "]"
				cite := s.Path + " " + key
				if n := jsonLine(data, raw); n > 0 {
					cite = s.Path + ":" + strconv.Itoa(n) + " " + key
				}
				r, err := ParseRule(raw, l.v, cite, s.Base)
				if err != nil {
					errs = append(errs, fmt.Errorf("claude settings %s: %v", cite, err))
					continue
				}
				if s.Managed {
					managed = append(managed, r)
				} else {
					rules = append(rules, r)
				}
			}
		}
	}
	if managedOnly {
		rules = nil
	}
	return append(managed, rules...), errors.Join(errs...)
}

// jsonLine finds the 1-based line of a JSON string value in data (its
// first occurrence), or 0.
func jsonLine(data []byte, s string) int {
	q, _ := json.Marshal(s)
	i := bytes.Index(data, q)
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}
