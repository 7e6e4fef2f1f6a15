package permission

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// Symbolic links: a deny rule matches the link or its target, an allow
// rule must match both. Resolve is a table here.
func TestLinks(t *testing.T) {
	links := map[string]string{
		"/repo/proj/notes":      "/home/u/.ssh/id_rsa",
		"/repo/proj/src/passwd": "/etc/passwd",
		"/repo/proj/src/ok":     "/repo/proj/src/real",
		"/repo/proj/keys":       "/home/u/.ssh",
	}
	calls := 0
	rules := mustRules(t, policy.Deny, "Read(~/.ssh/**)")
	rules = append(rules, mustRules(t, policy.Allow, "Edit(src/**)", "Bash(cp *)")...)
	e := New(rules, Options{Default: policy.Ask, Resolve: func(p string) string {
		calls++
		for from, to := range links { // a link anywhere on the path
			if p == from || strings.HasPrefix(p, from+"/") {
				return to + p[len(from):]
			}
		}
		return p
	}})
	for _, tt := range []struct {
		cmd, verdict, rule, reason string
	}{
		{"cat notes", "deny", "deny:0", `"cat notes" reads notes, which deny rule Read(~/.ssh/**) covers`},
		{"cat keys/config", "deny", "deny:0", `"cat keys/config" reads keys/config, which deny rule Read(~/.ssh/**) covers`},
		{"cp a src/passwd", "ask", "builtin:write-outside-workspace", "writes src/passwd, outside the working directory /repo/proj, and no Edit rule allows it"},
		{"cp a src/ok", "allow", "allow:1", `"cp a src/ok" is allowed`},
		{"cat README", "allow", "builtin:read-only", `"cat README" is allowed`},
	} {
		calls = 0
		r := e.CheckCommand(tt.cmd, "/repo/proj", "/home/u")
		if r.Verdict.String() != tt.verdict || r.Rule != tt.rule || r.Reason != tt.reason {
			t.Errorf("CheckCommand(%q) = %s %s %q; want %s %s %q", tt.cmd, r.Verdict, r.Rule, r.Reason, tt.verdict, tt.rule, tt.reason)
		}
		if calls > 8 {
			t.Errorf("CheckCommand(%q) resolved %d paths; want each path resolved once", tt.cmd, calls)
		}
	}
}

func mustRules(t *testing.T, list policy.Verdict, raws ...string) []Rule {
	t.Helper()
	var out []Rule
	for i, raw := range raws {
		r, err := ParseRule(raw, list, fmt.Sprintf("%s:%d", list, i), "")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}
