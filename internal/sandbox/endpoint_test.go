package sandbox

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// The claude profile compiles to a sandbox whose forwarder serves the
// endpoint, whose environment holds the placeholder (never what process.env
// would pass in its place) and the private state directory, created.
func TestCompileEndpointsAndPlaceholders(t *testing.T) {
	ws, home := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(home, "key"), []byte("secret"), 0o600)
	user, err := policy.Parse("user.yaml", []byte("version: 1\nprocess:\n  env: [ANTHROPIC_API_KEY, LITERAL=a~/b]\n"), policy.LayerUser)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := policy.Builtin("claude")
	pol, err := policy.Merge(base, user)
	if err != nil {
		t.Fatal(err)
	}
	eps := []EndpointPort{{Name: "anthropic", Port: 8080}}
	s, _, err := Compile(pol, CompileOptions{Argv: []string{"true"}, Dir: ws, Home: home, Egress: true,
		Environ:      []string{"ANTHROPIC_API_KEY=sk-real-key"},
		Placeholders: []string{"ANTHROPIC_API_KEY=moat-placeholder-0123"},
		Endpoints:    eps, Mask: []string{filepath.Join(home, "key")}})
	if err != nil {
		t.Fatal(err)
	}
	env := "\n" + strings.Join(s.Env, "\n") + "\n"
	state := filepath.Join(home, ".local/state/moat/claude")
	for _, want := range []string{"ANTHROPIC_API_KEY=moat-placeholder-0123", "ANTHROPIC_BASE_URL=http://127.0.0.1:8080",
		"CLAUDE_CONFIG_DIR=" + state, "LITERAL=a~/b"} {
		if !strings.Contains(env, "\n"+want+"\n") {
			t.Errorf("env lacks %q:%s", want, env)
		}
	}
	if strings.Contains(env, "sk-real-key") {
		t.Errorf("the secret passed into the environment:%s", env)
	}
	if fi, err := os.Stat(state); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, %v; want a 0700 directory", fi, err)
	}
	if !strings.Contains(strings.Join(s.Write, " "), state) {
		t.Errorf("Write = %q; want the state directory", s.Write)
	}
	if len(s.Endpoints) != 1 || s.Endpoints[0] != eps[0] {
		t.Errorf("Endpoints = %+v; want %+v", s.Endpoints, eps)
	}
	if !strings.Contains(strings.Join(s.MaskFiles, " "), filepath.Join(home, "key")) {
		t.Errorf("MaskFiles = %q; want the credential's file", s.MaskFiles)
	}

	// Without egress there is no forwarder, so no endpoint.
	s, _, err = Compile(pol, CompileOptions{Argv: []string{"true"}, Dir: ws, Home: home, Endpoints: eps})
	if err != nil || len(s.Endpoints) != 0 {
		t.Errorf("no egress: Endpoints = %+v, %v; want none", s.Endpoints, err)
	}
	for _, tt := range []struct {
		eps  []EndpointPort
		want string
	}{
		{[]EndpointPort{{"a", 3128}}, "endpoint a: port 3128 is already the HTTP proxy's; pick another port"},
		{[]EndpointPort{{"a", 9000}, {"b", 9000}}, "endpoint b: port 9000 is already endpoint a's; pick another port"},
		{[]EndpointPort{{"a", 0}}, "endpoint a: port 0: want 1 to 65535"},
	} {
		_, _, err := Compile(pol, CompileOptions{Argv: []string{"true"}, Dir: ws, Home: home, Egress: true, Endpoints: tt.eps})
		if err == nil || err.Error() != tt.want {
			t.Errorf("Compile(%+v) error = %v; want %s", tt.eps, err, tt.want)
		}
	}
}

// The state directory is created only inside moat's own.
func TestMakeStateStaysInside(t *testing.T) {
	home := t.TempDir()
	c := &compiler{dir: home, home: home}
	c.makeState("~/.local/state/moat/../../escape")
	c.makeState("~/elsewhere")
	for _, p := range []string{".local/state/escape", "elsewhere"} {
		if _, err := os.Stat(filepath.Join(home, p)); err == nil {
			t.Errorf("makeState created %s", p)
		}
	}
}

// Connections for a named endpoint reach its listener, not the proxy's;
// an endpoint nobody registered is refused.
func TestEgressRoutesEndpoints(t *testing.T) {
	eg := NewEgress()
	defer eg.Close()
	ln := eg.Endpoint("anthropic")
	for _, tt := range []struct {
		svc  string
		l    net.Listener
		text string
	}{{"anthropic", ln, "to the endpoint"}, {"", eg, "to the proxy"}} {
		fd, err := eg.newConn(tt.svc)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "inside")
		inside, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() { io.WriteString(inside, tt.text); inside.Close() }()
		c, err := tt.l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != tt.text {
			t.Errorf("service %q: read %q; want %q", tt.svc, b, tt.text)
		}
	}
	if _, err := eg.newConn("other"); err == nil || err.Error() != `no endpoint "other"` {
		t.Errorf("newConn(other) = %v; want a refusal", err)
	}
	for _, tt := range []struct{ body, svc, err string }{
		{"", "", ""}, {`{"service":"anthropic"}`, "anthropic", ""}, {`{"service":""}`, "", "egress request: empty service"},
	} {
		svc, err := serviceOf([]byte(tt.body))
		if svc != tt.svc || (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("serviceOf(%q) = %q, %v; want %q, %q", tt.body, svc, err, tt.svc, tt.err)
		}
	}
	ln.Close()
	if _, err := ln.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
}
