package permission

import (
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// FuzzCheck: no panic, and never an allow for a command that does not
// parse, whatever the rules (the corpus policy has broad allow rules).
func FuzzCheck(f *testing.F) {
	_, cases := readCorpus(f)
	for _, c := range cases {
		if c.verdict != "" && !strings.HasPrefix(c.input, "@") {
			f.Add(c.input)
		}
	}
	e := corpusEngine(f)
	f.Fuzz(func(t *testing.T, cmd string) {
		r := e.CheckCommand(cmd, corpusCwd, corpusHome)
		if r.Verdict == policy.Allow {
			if _, err := parseShell(cmd); err != nil {
				t.Fatalf("CheckCommand(%q) allowed a command that does not parse: %v", cmd, err)
			}
		}
	})
}

// FuzzParseRule: no panic; a rule that compiles can be matched.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"Bash(ls *)", "Bash(npm run test:*)", "Read(~/.ssh/**)", "Edit(//tmp/[a-z]*)", "WebFetch(domain:*.x.com)",
		"mcp__srv__*", `Bash(git commit -m "a b")`, `Bash(echo \*)`, "Agent(type:x*)", "Read(/a/**/b)", "Bash(rm -rf *)", "Bash(git push --force *)"} {
		f.Add(s, "rm -rf x && cat ~/.ssh/id_rsa")
	}
	f.Fuzz(func(t *testing.T, raw, cmd string) {
		for _, v := range []policy.Verdict{policy.Deny, policy.Ask, policy.Allow} {
			r, err := ParseRule(raw, v, "fuzz", "/settings")
			if err != nil {
				continue
			}
			e := New([]Rule{r}, Options{Default: policy.Ask})
			res := e.CheckCommand(cmd, "/w", "/h")
			if res.Verdict == policy.Allow {
				if _, err := parseShell(cmd); err != nil {
					t.Fatalf("rule %q allowed %q, which does not parse", raw, cmd)
				}
			}
			e.Check(Request{Tool: "Read", Input: map[string]any{"file_path": cmd}, Cwd: "/w", Home: "/h"})
			e.Check(Request{Tool: "WebFetch", Input: map[string]any{"url": cmd}, Cwd: "/w"})
		}
	})
}
