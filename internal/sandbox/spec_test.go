package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

func TestCompile(t *testing.T) {
	ws, home := t.TempDir(), t.TempDir()
	for _, p := range []string{".bashrc", ".git/config", ".git/hooks/x", "sub/.mcp.json", "a.pem", "sub/b.pem", "main.go"} {
		os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755)
		os.WriteFile(filepath.Join(ws, p), nil, 0o644)
	}
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o755)
	os.WriteFile(filepath.Join(home, ".netrc"), nil, 0o600)
	pol, err := policy.Parse("moat.yaml", []byte("version: 1\nfilesystem:\n  deny_read: [\"*.pem\", ~/.ssh, ~/.netrc, ~/.absent]\nprocess:\n  env: [KEEP, SET=v]\n"), policy.LayerProject)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := policy.Builtin("default")
	pol, err = policy.Merge(base, pol)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := Compile(pol, CompileOptions{Argv: []string{"true"}, Dir: ws, Home: home,
		Environ: []string{"PATH=/bin", "KEEP=1", "DROP=secret", "LC_ALL=C"}, Egress: true, ProxyUser: "run-x", ProxyToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	rel := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			p = strings.Replace(p, ws, "WS", 1)
			out = append(out, strings.Replace(p, home, "HOME", 1))
		}
		return out
	}
	for _, tt := range []struct {
		name      string
		got, want []string
	}{
		{"Write", rel(s.Write), []string{"WS"}},
		{"MaskDirs", rel(s.MaskDirs), []string{"HOME/.ssh"}},
		{"MaskFiles", rel(s.MaskFiles), []string{"WS/a.pem", "WS/sub/b.pem", "HOME/.netrc"}},
		{"Protect", rel(s.Protect), []string{"WS/.bashrc", "WS/.git/config", "WS/.git/hooks", "WS/sub/.mcp.json"}},
		{"Pin", rel(s.Pin), []string{"WS/.git", "WS/sub"}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %q; want %q", tt.name, tt.got, tt.want)
		}
	}
	env := strings.Join(s.Env, "\n")
	for _, want := range []string{"KEEP=1", "SET=v", "LC_ALL=C", "PATH=/bin", "HTTPS_PROXY=http://run-x:tok@127.0.0.1:3128", "ALL_PROXY=socks5h://run-x:tok@127.0.0.1:1080"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "secret") {
		t.Errorf("env passed DROP:\n%s", env)
	}
}

func TestImportSettingsNotes(t *testing.T) {
	o, notes, err := ImportSettings("s.json", []byte(`{"network":{"allowedDomains":["a.example"],"deniedDomains":["*","b.example"],"allowUnixSockets":["/x"]},"filesystem":{"allowRead":["/y"],"allowWrite":["/w"]},"enableWeakerNestedSandbox":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.AllowDomains, []string{"a.example"}) || !reflect.DeepEqual(o.DenyDomains, []string{"b.example"}) || !reflect.DeepEqual(o.Write, []string{"/w"}) {
		t.Errorf("overrides %+v", o)
	}
	want := []string{
		`s.json: enableWeakerNestedSandbox is not mapped; moat ignores it`,
		`s.json: network.deniedDomains "*": moat denies what network.allow does not list already`,
		`s.json: network.allowUnixSockets is not mapped: per-path Unix sockets are not supported on Linux; use allowAllUnixSockets`,
		`s.json: filesystem.allowRead is not mapped: moat cannot re-open a path inside a denied one; remove the path from denyRead instead`,
	}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes:\n got %q\nwant %q", notes, want)
	}
	if _, _, err := ImportSettings("bad.json", []byte(`[1]`)); err == nil || !strings.HasPrefix(err.Error(), "bad.json: not a JSON object") {
		t.Errorf("error %v", err)
	}
}
