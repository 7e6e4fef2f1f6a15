package integration

import (
	"bufio"
	"net/url"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/audit"
)

// Unique canaries: any occurrence in an output is a leak.
const (
	sessionToken = "tok-moat-canary-5d1e9b7a44"
	wrongToken   = "bad-moat-canary-c03f2e81"
)

func TestSessionsAndSecrets(t *testing.T) {
	t.Parallel()
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	p := startProxy(t, proxyOpts{
		policy:   policy([]string{plain.HostPort("localhost"), secure.HostPort("localhost")}, []string{"localhost"}),
		sessions: "# one agent\nagent1:" + sessionToken + "\n",
	})
	good := url.UserPassword("agent1", sessionToken)

	t.Run("http-no-credentials", func(t *testing.T) {
		status, hdr, body := get(t, p.httpClient(nil), plain.URL("localhost")+"/sess-none")
		if status != 407 {
			t.Errorf("GET without proxy credentials: %d %q; want 407", status, body)
		}
		if hdr.Get("Proxy-Authenticate") == "" {
			t.Errorf("407 without a Proxy-Authenticate header; clients will not retry with credentials")
		}
	})
	t.Run("http-wrong-token", func(t *testing.T) {
		status, _, body := get(t, p.httpClient(url.UserPassword("agent1", wrongToken)), plain.URL("localhost")+"/sess-wrong")
		if status != 407 {
			t.Errorf("GET with a wrong token: %d %q; want 407", status, body)
		}
	})
	t.Run("connect-wrong-token", func(t *testing.T) {
		c := p.raw(t)
		hp := secure.HostPort("localhost")
		resp, body := c.roundTrip(t, "CONNECT "+hp+" HTTP/1.1\r\nHost: "+hp+"\r\nProxy-Authorization: Basic "+
			basic("agent1", wrongToken)+"\r\n\r\n")
		if resp.StatusCode != 407 {
			t.Errorf("CONNECT with a wrong token: %d %q; want 407", resp.StatusCode, body)
		}
	})
	t.Run("curl-http", func(t *testing.T) {
		curl := need(t, "curl")
		out, err := run(t, curl, "-sS", "--fail", "--max-time", "10", "-x", "http://agent1:"+sessionToken+"@"+p.TCP(), plain.URL("localhost")+"/sess-curl")
		if err != nil {
			t.Fatalf("curl with session credentials: %v", err)
		}
		if want := plain.Body("GET", "/sess-curl"); out != want {
			t.Fatalf("got %q; want %q", out, want)
		}
		r := p.WaitRecord("the authenticated GET", func(r audit.Record) bool { return r.Path == "/sess-curl" })
		checkAllowed(t, r, 200, len(out))
		if r.Session != "agent1" {
			t.Errorf("audit session = %q; want agent1", r.Session)
		}
	})
	t.Run("https-connect", func(t *testing.T) {
		status, _, body := get(t, p.httpClient(good), secure.URL("localhost")+"/sess-https")
		if status != 200 || body != secure.Body("GET", "/sess-https") {
			t.Fatalf("HTTPS with session credentials: %d %q", status, body)
		}
		r := p.WaitRecord("the authenticated tunnel", func(r audit.Record) bool {
			return isKind(r, "connect", "connect", "localhost", secure.Port) && r.Decision == "allow" && r.BytesDown > 0
		})
		if r.Session != "agent1" {
			t.Errorf("audit session = %q; want agent1", r.Session)
		}
	})
	t.Run("socks5", func(t *testing.T) {
		c := p.dial(t)
		if st, err := socksHello(c, "agent1", sessionToken); st != 0 || err != nil {
			t.Fatalf("SOCKS5 user/pass auth: status %#x, %v; want 0", st, err)
		}
		if rep, err := socksRequest(c, socksConnect, "localhost", plain.Port); rep != 0 {
			t.Fatalf("SOCKS5 CONNECT: reply %#x, %v", rep, err)
		}
		rc := &rawConn{c, bufio.NewReader(c)}
		resp, body := rc.roundTrip(t, "GET /sess-socks HTTP/1.1\r\nHost: "+plain.HostPort("localhost")+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || body != plain.Body("GET", "/sess-socks") {
			t.Fatalf("GET through authenticated SOCKS5: %d %q", resp.StatusCode, body)
		}
		r := p.WaitRecord("the authenticated SOCKS5 connection", func(r audit.Record) bool {
			return isKind(r, "connect", "socks5", "localhost", plain.Port) && r.Decision == "allow"
		})
		if r.Session != "agent1" {
			t.Errorf("audit session = %q; want agent1", r.Session)
		}
	})
	t.Run("socks5-wrong-token", func(t *testing.T) {
		c := p.dial(t)
		if st, err := socksHello(c, "agent1", wrongToken); st == 0 {
			t.Errorf("SOCKS5 auth with a wrong token succeeded (%v); want a failure status", err)
		}
	})
	t.Run("socks5-no-auth-offered", func(t *testing.T) {
		c := p.dial(t)
		c.Write([]byte{5, 1, 0})
		var r [2]byte
		if _, err := c.Read(r[:]); err == nil && r[1] != 0xff {
			t.Errorf("SOCKS5 offering only no-auth got method %#x; want 0xff (no acceptable method)", r[1])
		}
	})

	// Leaks: stop the proxy so that everything it will write is written.
	if err := p.Stop(); err != nil {
		t.Logf("proxy exit: %v", err)
	}
	outputs := map[string]string{"audit": p.auditText(), "stderr": p.Stderr()}
	for _, up := range []*upstream{plain, secure} {
		var b strings.Builder
		for _, r := range up.Seen() {
			for k, vs := range r.Header {
				b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
		}
		outputs[up.kind+" upstream's request headers"] = b.String()
	}
	if !strings.Contains(outputs["audit"], `"agent1"`) {
		t.Errorf("the audit names no session agent1 (the control for the leak check):\n%s", outputs["audit"])
	}
	for what, text := range outputs {
		for _, secret := range []string{sessionToken, wrongToken, basic("agent1", sessionToken), basic("agent1", wrongToken)} {
			if strings.Contains(text, secret) {
				t.Errorf("a session token leaked into the %s", what)
			}
		}
		if strings.Contains(strings.ToLower(text), "proxy-authorization") && strings.Contains(what, "upstream") {
			t.Errorf("the proxy forwarded Proxy-Authorization to the %s", what)
		}
	}
}
