package integration

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

func TestReloadAndShutdown(t *testing.T) {
	t.Parallel()
	a, b, secure := newUpstream(t, false), newUpstream(t, false), newUpstream(t, true)
	p := startProxy(t, proxyOpts{policy: policy(
		[]string{a.HostPort("localhost"), secure.HostPort("localhost")}, []string{"localhost"})})
	c := p.httpClient(nil)
	lifecycle := func(event string) func(audit.Record) bool {
		return func(r audit.Record) bool { return r.Kind == "lifecycle" && r.Event == event }
	}
	expect := func(u *upstream, path string, want int) {
		t.Helper()
		status, _, body := get(t, c, u.URL("localhost")+path)
		if status != want {
			t.Errorf("GET %s%s: %d %q; want %d", u.URL("localhost"), path, status, body, want)
		}
	}
	p.WaitRecord("the start record", lifecycle("start"))
	expect(a, "/before", 200)
	expect(b, "/before", 403)

	// A valid new policy: b replaces a.
	if err := os.WriteFile(p.PolicyFile, []byte(policy([]string{b.HostPort("localhost")}, []string{"localhost"})), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	p.WaitRecord("the reload record", lifecycle("reload"))
	expect(b, "/reloaded", 200)
	expect(a, "/reloaded", 403)

	// An invalid policy: the old one stays, the proxy says why.
	if err := os.WriteFile(p.PolicyFile, []byte("version: 1\nnetwork: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(p.Stderr())
	p.Signal(syscall.SIGHUP)
	r := p.WaitRecord("the reload-failed record", lifecycle("reload-failed"))
	if r.Reason == "" && r.Detail == "" {
		t.Errorf("reload-failed record says nothing of why: %+v", r)
	}
	if _, ok := p.WaitStderr(before, "moat.yaml"); !ok {
		t.Errorf("after the failed reload, no stderr line names the invalid policy file moat.yaml:\n%s", p.Stderr()[before:])
	}
	expect(b, "/after-bad-reload", 200)
	expect(a, "/after-bad-reload", 403)

	// Shutdown with an open, idle tunnel: SIGTERM must end it too.
	if err := os.WriteFile(p.PolicyFile, []byte(policy([]string{secure.HostPort("localhost")}, []string{"localhost"})), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	p.WaitCount("the second successful reload", 2, lifecycle("reload"))
	resp, _, tun := p.connect(t, secure.HostPort("localhost"))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT before shutdown: %d", resp.StatusCode)
	}
	if got := tlsGet(t, tun, "localhost", secure.HostPort("localhost"), "/keep"); got != secure.Body("GET", "/keep") {
		t.Fatalf("tunnel before shutdown got %q", got)
	}
	// tlsGet's request closed that tunnel; this one stays idle until shutdown.
	_, _, idle := p.connect(t, secure.HostPort("localhost"))
	start := time.Now()
	err := p.Stop()
	t.Logf("proxy exited %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("moat proxy exit after SIGTERM: %v; want status 0 (graceful shutdown)", err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(idle.br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the idle tunnel is still open after the proxy exited: %v", err)
	}
	p.WaitRecord("the stop record", lifecycle("stop"))
}

// TestUnixSocketPermissions also stops the proxy with SIGINT.
func TestUnixSocketPermissions(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	dir := filepath.Join(t.TempDir(), "made-by-moat")
	sock := filepath.Join(dir, "p.sock")
	p := startProxy(t, proxyOpts{
		policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"}),
		listen: []string{"unix:" + sock},
	})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("the listening line named %s: %v", sock, err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v; want a socket with 0600", sock, fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("the socket's directory, created by moat, has mode %v; want 0700", di.Mode().Perm())
	}
	// The control: the socket serves.
	status, _, body := get(t, p.unixHTTPClient(), up.URL("localhost")+"/perm")
	if status != 200 || body != up.Body("GET", "/perm") {
		t.Fatalf("GET over %s: %d %q", sock, status, body)
	}
	if err := p.StopWith(syscall.SIGINT); err != nil {
		t.Errorf("moat proxy exit after SIGINT: %v; want status 0 (graceful shutdown)", err)
	}
}
