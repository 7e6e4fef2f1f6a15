package integration

import (
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/audit"
)

// Real clients through the proxy: each checks the body the upstream sent
// and the audit line the proxy wrote for it.

func TestCurl(t *testing.T) {
	t.Parallel()
	curl := need(t, "curl")
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	sock := filepath.Join(t.TempDir(), "p.sock")
	p := startProxy(t, proxyOpts{
		policy: policy(
			[]string{plain.HostPort("localhost"), secure.HostPort("localhost"), plain.HostPort("127.0.0.1")},
			[]string{"localhost", "127.0.0.1"}),
		listen: []string{"127.0.0.1:0", "unix:" + sock},
	})
	base := []string{"-sS", "--fail", "--max-time", "10"}

	t.Run("http", func(t *testing.T) {
		out, err := run(t, curl, append(base, "-x", "http://"+p.TCP(), plain.URL("localhost")+"/curl-http")...)
		if err != nil {
			t.Fatalf("curl -x: %v", err)
		}
		if want := plain.Body("GET", "/curl-http"); out != want {
			t.Fatalf("curl -x got %q; want %q", out, want)
		}
		r := p.WaitRecord("curl plain GET", func(r audit.Record) bool {
			return isKind(r, "request", "http", "localhost", plain.Port) && r.Path == "/curl-http"
		})
		checkAllowed(t, r, 200, len(out))
		if r.Method != "GET" {
			t.Errorf("audit method = %q; want GET", r.Method)
		}
	})

	t.Run("https-connect", func(t *testing.T) {
		out, err := run(t, curl, append(base, "-x", "http://"+p.TCP(), "--cacert", caFile, secure.URL("localhost")+"/curl-https")...)
		if err != nil {
			t.Fatalf("curl -x https: %v", err)
		}
		if want := secure.Body("GET", "/curl-https"); out != want {
			t.Fatalf("curl https got %q; want %q", out, want)
		}
		r := p.WaitRecord("curl CONNECT tunnel (written when it closes)", func(r audit.Record) bool {
			return isKind(r, "connect", "connect", "localhost", secure.Port) && r.BytesDown > 0
		})
		checkAllowed(t, r, 200, len(out))
		if r.BytesUp == 0 {
			t.Errorf("audit bytes_up = 0 for a tunnel that carried a TLS handshake: %+v", r)
		}
		if r.SNI != "localhost" {
			t.Errorf("audit sni = %q; want localhost (curl sent it)", r.SNI)
		}
	})

	t.Run("socks5-hostname", func(t *testing.T) {
		out, err := run(t, curl, append(base, "--socks5-hostname", p.TCP(), plain.URL("localhost")+"/curl-socks")...)
		if err != nil {
			t.Fatalf("curl --socks5-hostname: %v", err)
		}
		if want := plain.Body("GET", "/curl-socks"); out != want {
			t.Fatalf("curl socks5 got %q; want %q", out, want)
		}
		r := p.WaitRecord("curl SOCKS5 connection", func(r audit.Record) bool {
			return isKind(r, "connect", "socks5", "localhost", plain.Port) && r.BytesDown > 0 && r.Client != "unix"
		})
		checkAllowed(t, r, 0, len(out)) // SOCKS reply code 0: succeeded
	})

	t.Run("socks5-unix-socket", func(t *testing.T) {
		// curl ≥ 7.84 reaches a SOCKS proxy on a unix socket as socks5h://localhost/PATH.
		out, err := run(t, curl, append(base, "--proxy", "socks5h://localhost"+p.Unix(), plain.URL("localhost")+"/curl-unix")...)
		if err != nil {
			t.Fatalf("curl --proxy socks5h://localhost%s: %v", p.Unix(), err)
		}
		if want := plain.Body("GET", "/curl-unix"); out != want {
			t.Fatalf("curl over the unix socket got %q; want %q", out, want)
		}
		r := p.WaitRecord("SOCKS5 over the unix socket", func(r audit.Record) bool {
			return isKind(r, "connect", "socks5", "localhost", plain.Port) && r.Client == "unix" && r.BytesDown > 0
		})
		checkAllowed(t, r, 0, len(out))
	})

	t.Run("ip-literal-listed", func(t *testing.T) {
		// The control for the IP-literal attacks: a literal the policy lists passes.
		out, err := run(t, curl, append(base, "-x", "http://"+p.TCP(), plain.URL("127.0.0.1")+"/curl-literal")...)
		if err != nil {
			t.Fatalf("curl to a listed IP literal: %v", err)
		}
		if want := plain.Body("GET", "/curl-literal"); out != want {
			t.Fatalf("got %q; want %q", out, want)
		}
		r := p.WaitRecord("GET to the listed literal", func(r audit.Record) bool {
			return isKind(r, "request", "http", "127.0.0.1", plain.Port) && r.Path == "/curl-literal"
		})
		checkAllowed(t, r, 200, len(out))
	})

	t.Run("refused", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--max-time", "10", "-D", "-", "-x", "http://"+p.TCP(), "http://evil.test:"+itoa(plain.Port)+"/curl-refused")
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		if !strings.HasPrefix(out, "HTTP/1.1 403") || !strings.Contains(strings.ToLower(out), "x-moat-error:") || !strings.Contains(out, "evil.test") {
			t.Errorf("curl to a host outside the allowlist got:\n%s\nwant a 403 with X-Moat-Error and a body naming evil.test", out)
		}
		r := p.WaitRecord("the refused GET", func(r audit.Record) bool { return r.Host == "evil.test" })
		checkDenied(t, r, "default-deny")
		if plain.SawPath("/curl-refused") {
			t.Errorf("the upstream received the refused request")
		}
	})
}

// TestGoClientUnixSocket covers HTTP proxying (plain and CONNECT) on a unix
// listener, which curl cannot use as an HTTP proxy.
func TestGoClientUnixSocket(t *testing.T) {
	t.Parallel()
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	sock := filepath.Join(t.TempDir(), "p.sock")
	p := startProxy(t, proxyOpts{
		policy: policy([]string{plain.HostPort("localhost"), secure.HostPort("localhost")}, []string{"localhost"}),
		listen: []string{"unix:" + sock},
	})
	if p.Unix() != sock {
		t.Errorf("listening line names %q; want %q", p.Unix(), sock)
	}
	c := p.unixHTTPClient()

	status, _, body := get(t, c, plain.URL("localhost")+"/unix-http")
	if status != 200 || body != plain.Body("GET", "/unix-http") {
		t.Fatalf("plain GET over the unix socket: %d %q; want 200 %q", status, body, plain.Body("GET", "/unix-http"))
	}
	r := p.WaitRecord("plain GET over the unix socket", func(r audit.Record) bool {
		return isKind(r, "request", "http", "localhost", plain.Port) && r.Path == "/unix-http"
	})
	checkAllowed(t, r, 200, len(body))
	if r.Client != "unix" {
		t.Errorf("audit client = %q; want unix", r.Client)
	}

	status, _, body = get(t, c, secure.URL("localhost")+"/unix-https")
	if status != 200 || body != secure.Body("GET", "/unix-https") {
		t.Fatalf("https GET over the unix socket: %d %q", status, body)
	}
	r = p.WaitRecord("CONNECT over the unix socket", func(r audit.Record) bool {
		return isKind(r, "connect", "connect", "localhost", secure.Port) && r.BytesDown > 0
	})
	checkAllowed(t, r, 200, len(body))
}

func TestGitClone(t *testing.T) {
	t.Parallel()
	git := need(t, "git")
	needHosts(t)
	backend, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}

	// A bare repository with one commit, served by git http-backend.
	root := t.TempDir()
	src := filepath.Join(t.TempDir(), "src")
	const content = "moat integration: cloned through the proxy\n"
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", src},
		{"-C", src, "-c", "user.name=moat", "-c", "user.email=moat@example.invalid", "commit", "-q", "--allow-empty", "-m", "empty"},
	} {
		if out, err := run(t, git, args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "README"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-C", src, "add", "README"},
		{"-C", src, "-c", "user.name=moat", "-c", "user.email=moat@example.invalid", "commit", "-q", "-m", "readme"},
		{"clone", "-q", "--bare", src, filepath.Join(root, "repo.git")},
	} {
		if out, err := run(t, git, args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	up := newUpstream(t, true)
	up.extra["/repo.git/"] = &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(backend)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("git.test")}, []string{"git.test"})})

	dst := filepath.Join(t.TempDir(), "clone")
	out, err := run(t, git, "-c", "http.proxy=http://"+p.TCP(), "-c", "http.sslCAInfo="+caFile,
		"clone", "-q", up.URL("git.test")+"/repo.git", dst)
	if err != nil {
		t.Fatalf("git clone through the proxy: %v %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dst, "README"))
	if err != nil || string(got) != content {
		t.Fatalf("cloned README = %q, %v; want %q", got, err, content)
	}
	if !up.SawPath("/repo.git/info/refs") || !up.SawPath("/repo.git/git-upload-pack") {
		t.Errorf("the git server did not see the smart-HTTP requests: %+v", up.Seen())
	}
	r := p.WaitRecord("git's CONNECT to git.test", func(r audit.Record) bool {
		return isKind(r, "connect", "connect", "git.test", up.Port) && r.BytesDown > 0
	})
	checkAllowed(t, r, 200, 1)
	if r.SNI != "git.test" {
		t.Errorf("audit sni = %q; want git.test", r.SNI)
	}
}

const pythonClient = `
import ssl, sys, urllib.request
proxy, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"http": proxy, "https": proxy}),
    urllib.request.HTTPSHandler(context=ctx))
for u in sys.argv[3:]:
    sys.stdout.write(opener.open(u, timeout=10).read().decode())
`

func TestPythonUrllib(t *testing.T) {
	t.Parallel()
	py := need(t, "python3")
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	p := startProxy(t, proxyOpts{policy: policy([]string{plain.HostPort("localhost"), secure.HostPort("localhost")}, []string{"localhost"})})

	out, err := run(t, py, "-c", pythonClient, "http://"+p.TCP(), caFile,
		plain.URL("localhost")+"/py-http", secure.URL("localhost")+"/py-https")
	if err != nil {
		t.Fatalf("python3 urllib through the proxy: %v", err)
	}
	if want := plain.Body("GET", "/py-http") + secure.Body("GET", "/py-https"); out != want {
		t.Fatalf("python3 got %q; want %q", out, want)
	}
	r := p.WaitRecord("python's plain GET", func(r audit.Record) bool {
		return isKind(r, "request", "http", "localhost", plain.Port) && r.Path == "/py-http"
	})
	checkAllowed(t, r, 200, len(plain.Body("GET", "/py-http")))
	r = p.WaitRecord("python's CONNECT", func(r audit.Record) bool {
		return isKind(r, "connect", "connect", "localhost", secure.Port) && r.BytesDown > 0
	})
	checkAllowed(t, r, 200, len(secure.Body("GET", "/py-https")))
}

// Node 20 has no proxy support by default: CONNECT by hand, then TLS over
// the tunnel's socket.
const nodeClient = `
const http = require("http"), tls = require("tls"), fs = require("fs");
const [proxy, host, port, ca, path] = process.argv.slice(1);
const [ph, pp] = proxy.split(":");
const req = http.request({host: ph, port: +pp, method: "CONNECT", path: host + ":" + port});
req.on("connect", (res, sock) => {
  if (res.statusCode !== 200) { console.error("CONNECT " + res.statusCode); process.exit(2); }
  const t = tls.connect({socket: sock, servername: host, ca: fs.readFileSync(ca)}, () => {
    t.write("GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + port + "\r\nConnection: close\r\n\r\n");
  });
  let data = "";
  t.on("data", c => data += c);
  t.on("end", () => process.stdout.write(data.slice(data.indexOf("\r\n\r\n") + 4)));
  t.on("error", e => { console.error(e.message); process.exit(3); });
});
req.on("error", e => { console.error(e.message); process.exit(4); });
req.end();
`

func TestNodeTLS(t *testing.T) {
	t.Parallel()
	node := need(t, "node")
	secure := newUpstream(t, true)
	p := startProxy(t, proxyOpts{policy: policy([]string{secure.HostPort("localhost")}, []string{"localhost"})})

	out, err := run(t, node, "-e", nodeClient, p.TCP(), "localhost", itoa(secure.Port), caFile, "/node-https")
	if err != nil {
		t.Fatalf("node through the proxy: %v", err)
	}
	if want := secure.Body("GET", "/node-https"); out != want {
		t.Fatalf("node got %q; want %q", out, want)
	}
	r := p.WaitRecord("node's CONNECT", func(r audit.Record) bool {
		return isKind(r, "connect", "connect", "localhost", secure.Port) && r.BytesDown > 0
	})
	checkAllowed(t, r, 200, len(out))
}
