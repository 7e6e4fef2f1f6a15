package sandbox_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNetwork: the proxy is the only way out. A local server the policy
// allows is reached through it; the same server dialled directly, a refused
// domain, DNS and raw UDP all fail; the audit names the run, never its token.
func TestNetwork(t *testing.T) {
	need(t, "curl", "python3")
	b := newBox(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the allowed server")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	b.policy(fmt.Sprintf("network:\n  allow: [\"localhost:%s\"]\n  allow_private: [\"127.0.0.1\"]\n", port))
	r := b.sh(fmt.Sprintf(`
echo "token: ${HTTP_PROXY#*:*:}" | sed 's/@.*//'
curl -sS -m 10 --noproxy '' http://localhost:%[1]s/ ; echo
curl -sS -m 10 --noproxy '*' http://127.0.0.1:%[1]s/ >/dev/null 2>&1 || echo direct-refused
curl -sS -m 10 -o /dev/null -w 'refused-domain %%{http_code}\n' https://example.com/ 2>/dev/null || echo refused-domain-failed
python3 -c 'import socket
try:
    socket.getaddrinfo("example.com", 443)
    print("dns-resolved")
except OSError as e:
    print("dns-failed")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"x", ("1.1.1.1", 53)); print("udp-sent")
except OSError as e:
    print("udp-failed", e.errno)
'
`, port))
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"hello from the allowed server", "direct-refused", "dns-failed", "udp-failed"} {
		mustContain(t, "stdout", r.stdout, want)
	}
	if !strings.Contains(r.stdout, "refused-domain 403") && !strings.Contains(r.stdout, "refused-domain-failed") {
		t.Errorf("example.com was not refused:\n%s", r.stdout)
	}
	mustContain(t, "summary", r.stderr, "moat: refused during this run:\n  network  example.com: default-deny; to allow: --allow-domain example.com")

	m := regexp.MustCompile(`token: ([0-9a-f]{32})`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no proxy token in the command's environment:\n%s", r.stdout)
	}
	token := m[1]
	auditText, err := os.ReadFile(b.audit)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "audit", string(auditText), `"session":"run-`)
	mustContain(t, "audit", string(auditText), `"host":"example.com"`)
	for what, text := range map[string]string{"audit": string(auditText), "stderr": r.stderr} {
		if strings.Contains(text, token) {
			t.Errorf("the proxy token leaked into the %s", what)
		}
	}

	// --allow-domain and --no-network.
	r = b.sh(`curl -sS -m 10 -o /dev/null -w '%{http_code}\n' https://example.com/ 2>&1`, "--allow-domain", "example.org")
	if strings.Contains(r.stdout, "200") {
		t.Errorf("example.com allowed by --allow-domain example.org: %v", r)
	}
	r = b.sh(fmt.Sprintf(`env | grep -ci proxy; curl -sS -m 10 http://localhost:%s/ 2>&1 || echo no-network`, port), "--no-network")
	mustContain(t, "--no-network", r.stdout, "no-network")
	if !strings.HasPrefix(r.stdout, "0\n") {
		t.Errorf("--no-network still sets proxy variables: %v", r)
	}
}

// TestHostUnixSocketUnreachable: a Unix socket the test listens on, in
// the workspace and writable by anyone, cannot be reached from inside:
// socket(AF_UNIX) itself fails with EPERM (the seccomp filter's answer).
// Control: with sandbox-runtime's allowAllUnixSockets, the same connect
// reaches the listener.
func TestHostUnixSocketUnreachable(t *testing.T) {
	need(t, "python3")
	b := newBox(t)
	sock := filepath.Join(b.ws, "host.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(sock, 0o777)
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	script := `python3 -c 'import socket,sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1]); print("connected")
except OSError as e:
    print("errno", e.errno)
' ` + sock
	r := b.sh(script)
	mustContain(t, "stdout", r.stdout, "errno 1")
	if len(accepted) != 0 {
		t.Errorf("the host socket accepted a connection from the sandbox")
	}
	settings := filepath.Join(b.home, "srt.json")
	b.write(settings, `{"network": {"allowedDomains": [], "allowAllUnixSockets": true}}`)
	r = b.sh(script, "--settings", settings)
	mustContain(t, "control stdout", r.String(), "connected")
}

// TestKernelSurface: ptrace of the agent's own child, new namespaces,
// mounts, io_uring and keyrings are refused with EPERM from the filter
// (without it, the ptrace of a child and the unshare would succeed).
func TestKernelSurface(t *testing.T) {
	need(t, "python3")
	b := newBox(t)
	r := b.run(nil, "python3", "-c", `import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    signal.pause(); os._exit(0)
def call(name, *args):
    r = getattr(libc, name)(*args)
    print(name, r, ctypes.get_errno())
    ctypes.set_errno(0)
call("ptrace", 16, pid, 0, 0)            # PTRACE_ATTACH
call("unshare", 0x10000000)              # CLONE_NEWUSER
call("mount", b"none", b"/mnt", b"tmpfs", 0, None)
call("syscall", 425, 8, None)            # io_uring_setup
call("syscall", 250, 0, 0, 0, 0)         # keyctl
call("syscall", 435, None, 0)            # clone3: ENOSYS, so libc falls back to clone
os.kill(pid, 9)
`)
	for _, want := range []string{"ptrace -1 1\n", "unshare -1 1\n", "mount -1 1\n", "syscall -1 1\nsyscall -1 1\nsyscall -1 38\n"} {
		mustContain(t, "stdout", r.String(), want)
	}
}
