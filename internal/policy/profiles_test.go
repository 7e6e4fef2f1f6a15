package policy

import (
	"slices"
	"strings"
	"testing"
)

func values(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Value
	}
	return out
}

func rules(rs []HostRule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

var credentialStores = []string{"~/.ssh", "~/.aws", "~/.config/gcloud", "~/.azure", "~/.docker/config.json", "~/.kube",
	"~/.git-credentials", "~/.npmrc", "~/.pypirc", "~/.netrc", "~/.config/gh", "~/.config/hub", "~/.cargo/credentials.toml",
	"~/.gem/credentials", "~/.gnupg"}

func TestBuiltinDefault(t *testing.T) {
	p, err := Builtin("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"network.mode", string(p.Network.Mode), "enforce"},
		{"network.allow", strings.Join(rules(p.Network.Allow), " "), ""},
		{"filesystem.write", strings.Join(values(p.Filesystem.Write), " "), "."},
		{"filesystem.deny_read", strings.Join(values(p.Filesystem.DenyRead), " "), strings.Join(credentialStores, " ")},
		{"filesystem.deny_write", strings.Join(values(p.Filesystem.DenyWrite), " "), "moat.yaml moat.json"},
		{"filesystem.tmpfs", strings.Join(values(p.Filesystem.Tmpfs), " "), "/tmp:1g"},
		{"resources.memory", p.Resources.Memory.Value, "4g"},
		{"resources.pids", itoa(int(p.Resources.Pids.Value)), "1024"},
		{"permissions.default_mode", p.Permissions.DefaultMode.Value, "ask"},
		{"isolation.tier", p.Isolation.Tier.Value, "native"},
		{"isolation.require", strings.Join(values(p.Isolation.Require), " "), ""},
		{"origin", p.Filesystem.DenyRead[2].Origin.String(), "profile:default filesystem.deny_read[2]"},
	} {
		if c.got != c.want {
			t.Errorf("default %s = %q; want %q", c.what, c.got, c.want)
		}
	}
	if d := p.Egress("api.anthropic.com", 443); d.Verdict != Deny || d.Rule != RuleDefaultDeny {
		t.Errorf("default profile: Egress(api.anthropic.com) = %+v; want default-deny", d)
	}
}

func TestBuiltinStrict(t *testing.T) {
	p, err := Builtin("strict")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"network.allow", strings.Join(rules(p.Network.Allow), " "), ""},
		{"filesystem.write", strings.Join(values(p.Filesystem.Write), " "), "."},
		{"filesystem.deny_read", strings.Join(values(p.Filesystem.DenyRead), " "),
			strings.Join(append(slices.Clone(credentialStores), ".env", ".env.*", "*.pem", "*.key"), " ")},
		{"filesystem.deny_write", strings.Join(values(p.Filesystem.DenyWrite), " "), "moat.yaml moat.json"},
		{"filesystem.tmpfs", strings.Join(values(p.Filesystem.Tmpfs), " "), "/tmp:1g"},
		{"resources.memory", p.Resources.Memory.Value, "2g"},
		{"resources.pids", itoa(int(p.Resources.Pids.Value)), "256"},
		{"permissions.default_mode", p.Permissions.DefaultMode.Value, "deny"},
		{"isolation.tier", p.Isolation.Tier.Value, "native"},
		{"isolation.require", strings.Join(values(p.Isolation.Require), " "), "landlock seccomp"},
	} {
		if c.got != c.want {
			t.Errorf("strict %s = %q; want %q", c.what, c.got, c.want)
		}
	}
}

func TestBuiltinDev(t *testing.T) {
	p, err := Builtin("dev")
	if err != nil {
		t.Fatal(err)
	}
	def, err := Builtin("default")
	if err != nil {
		t.Fatal(err)
	}
	// dev is default plus network.allow.
	got, want := stripOrigins(p.FormatYAML()), stripOrigins(def.FormatYAML())
	got = got[:strings.Index(got, "  allow:\n")] + got[strings.Index(got, "  deny: []"):]
	want = strings.Replace(strings.Replace(want, "  allow: []\n", "", 1), "profile: default", "profile: dev", 1)
	if got != want {
		t.Errorf("dev without network.allow:\n%s\nwant the default profile:\n%s", got, want)
	}
	wantAllow := []string{"registry.npmjs.org", "pypi.org", "files.pythonhosted.org", "proxy.golang.org", "sum.golang.org",
		"crates.io", "static.crates.io", "index.crates.io", "rubygems.org", "index.rubygems.org",
		"repo.maven.apache.org", "repo1.maven.org", "deb.debian.org", "security.debian.org",
		"github.com", "codeload.github.com", "raw.githubusercontent.com", "objects.githubusercontent.com", "api.anthropic.com"}
	if got := rules(p.Network.Allow); !slices.Equal(got, wantAllow) {
		t.Errorf("dev network.allow = %q;\nwant %q", got, wantAllow)
	}
	for _, host := range []string{"statsig.anthropic.com", "sentry.io", "api.github.com", "evil.example"} {
		if d := p.Egress(host, 443); d.Verdict != Deny {
			t.Errorf("dev profile: Egress(%s) = %+v; want deny", host, d)
		}
	}
	if d := p.Egress("registry.npmjs.org", 443); d.Verdict != Allow || d.Rule != "profile:dev network.allow[0]" {
		t.Errorf("dev profile: Egress(registry.npmjs.org) = %+v; want allowed by profile:dev network.allow[0]", d)
	}
}

func TestBuiltinUnknown(t *testing.T) {
	for name, want := range map[string]string{
		"prod":    `"prod": unknown profile; want default, strict, dev or claude`,
		"Default": `"Default": unknown profile; did you mean "default"?`,
		"":        `"": unknown profile; want default, strict, dev or claude`,
	} {
		if p, err := Builtin(name); err == nil || err.Error() != want {
			t.Errorf("Builtin(%q) = %v, %v; want error %s", name, p != nil, err, want)
		}
	}
	if got := ProfileNames(); !slices.Equal(got, []string{"default", "strict", "dev", "claude"}) {
		t.Errorf("ProfileNames() = %q", got)
	}
}

// Each call returns a fresh Policy: changing one does not change the next.
func TestBuiltinFresh(t *testing.T) {
	a, _ := Builtin("dev")
	a.Network.Allow[0].Name = "changed.example"
	b, err := Builtin("dev")
	if err != nil || b.Network.Allow[0].Name != "registry.npmjs.org" {
		t.Errorf("Builtin(dev) after a change to another copy: %v, %q", err, b.Network.Allow[0].Name)
	}
}
