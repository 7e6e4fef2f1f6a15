package permission

import (
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// Claude Code's Bash rule semantics, rule by rule.
func TestBashRuleMatch(t *testing.T) {
	for _, tt := range []struct {
		rule, cmd string
		want      bool
	}{
		{"Bash(ls *)", "ls -la", true},
		{"Bash(ls *)", "ls", true},
		{"Bash(ls *)", "lsof", false},
		{"Bash(ls*)", "lsof", true},
		{"Bash(ls*)", "ls", true},
		{"Bash(git * main)", "git push origin main", true},
		{"Bash(git * main)", "git push origin dev", false},
		{"Bash(npm run test:*)", "npm run test", true},
		{"Bash(npm run test:*)", "npm run test --watch", true},
		{"Bash(npm run test:*)", "npm run test:unit", false},
		{"Bash(git:* push)", "git: push", true},
		{"Bash(git status)", "git status", true},
		{"Bash(git status)", "git status -s", false},
		{"Bash(*)", "anything at all", true},
		{"Bash", "rm build", true},
		{`Bash(git commit -m "wip")`, `git commit -m wip`, true},
		{`Bash(echo \*)`, `echo '*'`, true},
		{`Bash(echo \*)`, `echo x`, false},
	} {
		r, err := ParseRule(tt.rule, policy.Allow, "t", "")
		if err != nil {
			t.Fatalf("ParseRule(%q): %v", tt.rule, err)
		}
		e := New([]Rule{r}, Options{Default: policy.Ask, NoReadOnly: true})
		got := e.CheckCommand(tt.cmd, "/w", "/h").Verdict == policy.Allow
		if got != tt.want {
			t.Errorf("%s on %q: allowed=%v; want %v", tt.rule, tt.cmd, got, tt.want)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tt := range []struct {
		rule string
		list policy.Verdict
		want string
	}{
		{"Bash(ls", policy.Allow, `"Bash(ls": missing ")" at the end; write Tool(specifier)`},
		{"Bash()", policy.Allow, `"Bash()": empty specifier; write Bash alone to match every use`},
		{"Write(src/**)", policy.Deny, `"Write(src/**)": Claude Code never consults path rules on Write; write Edit(…) for writes or Read(…) for reads`},
		{"WebFetch(example.com)", policy.Allow, `"WebFetch(example.com)": write WebFetch(domain:example.com)`},
		{"mcp__*", policy.Allow, `"mcp__*": a wildcard in a tool name is accepted only in deny and ask rules (or after mcp__server__ in allow rules)`},
		{"Read(../x)", policy.Deny, `"Read(../x)": "../x": ".." is not allowed in a path rule; anchor it with // or ~/`},
		{`Bash(echo "x)`, policy.Deny, `"Bash(echo \"x)": unterminated " quote`},
		{"Agent(type:x)", policy.Allow, `"Agent(type:x)": Tool(param:value) rules are accepted only in deny and ask lists`},
		{"", policy.Deny, `empty rule; write Tool or Tool(specifier)`},
	} {
		_, err := ParseRule(tt.rule, tt.list, "t", "")
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseRule(%q) error:\n got: %v\nwant: %s", tt.rule, err, tt.want)
		}
	}
}

// Path anchors: //abs, ~/home, /settings-dir, ./cwd, bare (any depth for
// deny; cwd for allow when it has a slash).
func TestPathRules(t *testing.T) {
	for _, tt := range []struct {
		rule string
		list policy.Verdict
		path string
		want bool
	}{
		{"Read(//etc/passwd)", policy.Deny, "/etc/passwd", true},
		{"Read(~/.ssh/**)", policy.Deny, "/h/.ssh/id_rsa", true},
		{"Read(~/.ssh)", policy.Deny, "/h/.ssh/keys/id_rsa", true},
		{"Read(/conf/*.json)", policy.Deny, "/settings/conf/a.json", true},
		{"Read(/conf/*.json)", policy.Deny, "/w/conf/a.json", false},
		{"Read(./secrets/**)", policy.Deny, "/w/secrets/a", true},
		{"Read(./secrets/**)", policy.Deny, "/w/app/secrets/a", false},
		{"Read(secrets/**)", policy.Deny, "/w/app/secrets/a", true},
		{"Read(.env)", policy.Deny, "/w/deep/dir/.env", true},
		{"Read(*.pem)", policy.Deny, "/w/a/b.pem", true},
		{"Read(src/*.go)", policy.Deny, "/w/src/a/b.go", false},
		{"Read(src/**/*.go)", policy.Deny, "/w/src/a/b.go", true},
		{"Edit(src/**)", policy.Allow, "/w/src/a.go", true},
		{"Edit(src/**)", policy.Allow, "/w/lib/src/a.go", false},
		{"Read(//etc/pass)", policy.Deny, "/etc/passwd", false}, // components, not string prefixes
	} {
		r, err := ParseRule(tt.rule, tt.list, "t", "/settings")
		if err != nil {
			t.Fatal(err)
		}
		tool := "Read"
		if r.Tool == "Edit" {
			tool = "Edit"
		}
		e := New([]Rule{r}, Options{Default: policy.Ask})
		res := e.Check(Request{Tool: tool, Input: map[string]any{"file_path": tt.path}, Cwd: "/w", Home: "/h"})
		got := res.Rule == "t"
		if got != tt.want {
			t.Errorf("%s on %s: matched=%v (%s %s); want %v", tt.rule, tt.path, got, res.Verdict, res.Reason, tt.want)
		}
	}
}

func TestDomainRules(t *testing.T) {
	for _, tt := range []struct {
		rule, url string
		want      bool
	}{
		{"WebFetch(domain:example.com)", "https://EXAMPLE.com./x", true},
		{"WebFetch(domain:*.example.com)", "https://a.b.example.com/", true},
		{"WebFetch(domain:*.example.com)", "https://example.com/", false},
		{"WebFetch(domain:api-*.example.com)", "https://api-1.example.com/", true},
		{"WebFetch(domain:api-*.example.com)", "https://api-1.x.example.com/", false},
		{"WebFetch(domain:*)", "https://any.where/", true},
	} {
		r, err := ParseRule(tt.rule, policy.Allow, "t", "")
		if err != nil {
			t.Fatal(err)
		}
		res := New([]Rule{r}, Options{Default: policy.Ask}).Check(Request{Tool: "WebFetch", Input: map[string]any{"url": tt.url}, Cwd: "/w"})
		if got := res.Verdict == policy.Allow; got != tt.want {
			t.Errorf("%s on %s: %v; want %v", tt.rule, tt.url, got, tt.want)
		}
	}
}

// Deny beats ask beats allow, whatever the order or specificity.
func TestPrecedence(t *testing.T) {
	var rules []Rule
	for _, s := range []struct {
		raw string
		v   policy.Verdict
	}{{"Bash(git push origin main)", policy.Allow}, {"Bash(git push *)", policy.Ask}, {"Bash(git *)", policy.Deny}} {
		r, _ := ParseRule(s.raw, s.v, s.raw, "")
		rules = append(rules, r)
	}
	res := New(rules, Options{Default: policy.Allow}).CheckCommand("git push origin main", "/w", "/h")
	if res.Verdict != policy.Deny || res.Rule != "Bash(git *)" {
		t.Errorf("got %s by %s; want deny by Bash(git *)", res.Verdict, res.Rule)
	}
}
