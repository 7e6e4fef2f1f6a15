package integration

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

// Each attack is refused and logged, next to a control that succeeds on the
// same proxy, and the upstream's accept count shows the refusal happened
// before any connection was made.

// settle gives a wrongly forwarded request time to reach the upstream before
// a test asserts that it never did.
func settle() { time.Sleep(300 * time.Millisecond) }

func wantRefused(t testing.TB, what string, got int, body string) {
	t.Helper()
	if got != 403 {
		t.Errorf("%s: status %d; want 403 (body %q)", what, got, body)
	}
}

func TestIPLiterals(t *testing.T) {
	t.Parallel()
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	p := startProxy(t, proxyOpts{policy: policy(
		[]string{plain.HostPort("localhost"), secure.HostPort("localhost")}, []string{"localhost"})})
	port := itoa(plain.Port)

	// Controls: the same upstreams, by a listed name.
	resp, body := p.raw(t).roundTrip(t, rawGet(plain.URL("localhost")+"/lit-control", plain.HostPort("localhost")))
	if resp.StatusCode != 200 || body != plain.Body("GET", "/lit-control") {
		t.Fatalf("control GET localhost: %d %q", resp.StatusCode, body)
	}
	resp, _, tun := p.connect(t, secure.HostPort("localhost"))
	if resp.StatusCode != 200 {
		t.Fatalf("control CONNECT localhost: %d", resp.StatusCode)
	}
	if got := tlsGet(t, tun, "localhost", secure.HostPort("localhost"), "/lit-control"); got != secure.Body("GET", "/lit-control") {
		t.Fatalf("control tunnel got %q", got)
	}

	// Non-canonical numeric forms (libc reads them as addresses, Go as names)
	// must be refused as literals or as malformed hosts, never looked up.
	literal := []string{"ip-literal"}
	numeric := []string{"ip-literal", "malformed-host"}
	for _, tc := range []struct {
		name, host, path string
		rules            []string
	}{
		{"dotted-quad", "127.0.0.1", "/lit-quad", literal},
		{"ipv4-mapped-ipv6", "[::ffff:127.0.0.1]", "/lit-mapped", literal},
		{"ipv6-loopback", "[::1]", "/lit-v6", literal},
		{"decimal-2852039166", "2852039166", "/lit-decimal", numeric},
		{"short-127.1", "127.1", "/lit-short", numeric},
		{"hex-0x7f.1", "0x7f.1", "/lit-hex", numeric},
		{"octal-0177.0.0.1", "0177.0.0.1", "/lit-octal", numeric},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := p.raw(t).roundTrip(t, rawGet("http://"+tc.host+":"+port+tc.path, tc.host+":"+port))
			wantRefused(t, "GET http://"+tc.host+":"+port, resp.StatusCode, body)
			if resp.Header.Get("X-Moat-Error") == "" {
				t.Errorf("refusal has no X-Moat-Error header")
			}
			r := p.WaitRecord("the refused GET "+tc.path, func(r audit.Record) bool {
				return r.Kind == "request" && r.Path == tc.path
			})
			checkDenied(t, r, tc.rules...)
		})
	}

	t.Run("connect-127.0.0.1", func(t *testing.T) {
		resp, body, _ := p.connect(t, secure.HostPort("127.0.0.1"))
		wantRefused(t, "CONNECT 127.0.0.1", resp.StatusCode, body)
		r := p.WaitRecord("the refused CONNECT", func(r audit.Record) bool {
			return isKind(r, "connect", "connect", "127.0.0.1", secure.Port)
		})
		checkDenied(t, r, "ip-literal")
	})

	for _, host := range []string{"127.0.0.1", "::ffff:127.0.0.1"} {
		t.Run("socks5-"+host, func(t *testing.T) {
			c := p.dial(t)
			if _, err := socksHello(c, "", ""); err != nil {
				t.Fatalf("SOCKS5 hello: %v", err)
			}
			rep, err := socksRequest(c, socksConnect, host, plain.Port)
			if rep != 0x02 {
				t.Errorf("SOCKS5 CONNECT %s: reply %#x (%v); want 0x02, not allowed by ruleset", host, rep, err)
			}
			r := p.WaitRecord("the refused SOCKS5 CONNECT to "+host, func(r audit.Record) bool {
				return r.Proto == "socks5" && r.Decision == "deny" && strings.Contains(r.Host, "127.0.0.1")
			})
			checkDenied(t, r, "ip-literal")
		})
	}

	settle()
	if n := plain.Accepts(); n != 1 {
		t.Errorf("plain upstream accepted %d connections; want 1, the control's", n)
	}
	if n := secure.Accepts(); n != 1 {
		t.Errorf("TLS upstream accepted %d connections; want 1, the control's", n)
	}
}

func TestPrivateAddresses(t *testing.T) {
	t.Parallel()
	needHosts(t)
	plain, secure := newUpstream(t, false), newUpstream(t, true)
	var allow []string
	for _, h := range []string{"git.test", "loop.test", "meta.test", "mapped.test", "localhost"} {
		allow = append(allow, plain.HostPort(h), secure.HostPort(h))
	}
	// allow_private names git.test only: every other name reaches a private
	// address through the allowlist, which is exactly the SSRF to stop.
	p := startProxy(t, proxyOpts{policy: policy(allow, []string{"git.test"})})

	resp, body := p.raw(t).roundTrip(t, rawGet(plain.URL("git.test")+"/priv-control", plain.HostPort("git.test")))
	if resp.StatusCode != 200 || body != plain.Body("GET", "/priv-control") {
		t.Fatalf("control GET git.test (private, listed in allow_private): %d %q", resp.StatusCode, body)
	}
	private := []string{"private-address", "metadata"}
	for _, host := range []string{"loop.test", "meta.test", "mapped.test", "localhost"} {
		t.Run("http-"+host, func(t *testing.T) {
			path := "/priv-" + host
			resp, body := p.raw(t).roundTrip(t, rawGet(plain.URL(host)+path, plain.HostPort(host)))
			wantRefused(t, "GET "+plain.URL(host), resp.StatusCode, body)
			r := p.WaitRecord("the refused GET "+path, func(r audit.Record) bool {
				return r.Kind == "request" && r.Path == path
			})
			checkDenied(t, r, private...)
			if r.Host != host {
				t.Errorf("audit host = %q; want %q", r.Host, host)
			}
		})
	}
	t.Run("connect-loop.test", func(t *testing.T) {
		resp, body, _ := p.connect(t, secure.HostPort("loop.test"))
		wantRefused(t, "CONNECT loop.test", resp.StatusCode, body)
		checkDenied(t, p.WaitRecord("the refused CONNECT", func(r audit.Record) bool {
			return isKind(r, "connect", "connect", "loop.test", secure.Port)
		}), private...)
	})
	t.Run("socks5-meta.test", func(t *testing.T) {
		c := p.dial(t)
		if _, err := socksHello(c, "", ""); err != nil {
			t.Fatalf("SOCKS5 hello: %v", err)
		}
		if rep, err := socksRequest(c, socksConnect, "meta.test", secure.Port); rep != 0x02 {
			t.Errorf("SOCKS5 CONNECT meta.test: reply %#x (%v); want 0x02", rep, err)
		}
		checkDenied(t, p.WaitRecord("the refused SOCKS5 CONNECT", func(r audit.Record) bool {
			return isKind(r, "connect", "socks5", "meta.test", secure.Port)
		}), private...)
	})

	settle()
	if n := plain.Accepts(); n != 1 {
		t.Errorf("plain upstream accepted %d connections; want 1, the control's", n)
	}
	if n := secure.Accepts(); n != 0 {
		t.Errorf("TLS upstream accepted %d connections; want 0", n)
	}

	// Control for "or the address": allow_private lists 127.0.0.1, not the
	// names; loop.test and mapped.test (::ffff:127.0.0.1, the same address)
	// then pass.
	q := startProxy(t, proxyOpts{policy: policy(
		[]string{plain.HostPort("loop.test"), plain.HostPort("mapped.test")}, []string{"127.0.0.1"})})
	for _, host := range []string{"loop.test", "mapped.test"} {
		path := "/priv-by-address-" + host
		resp, body := q.raw(t).roundTrip(t, rawGet(plain.URL(host)+path, plain.HostPort(host)))
		if resp.StatusCode != 200 || body != plain.Body("GET", path) {
			t.Errorf("GET %s with allow_private [127.0.0.1]: %d %q; want 200", plain.URL(host), resp.StatusCode, body)
		}
	}
}

func TestSNIMismatch(t *testing.T) {
	t.Parallel()
	needHosts(t)
	up := newUpstream(t, true)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("allowed.test")}, []string{"allowed.test"})})

	// Attack: a tunnel granted for allowed.test whose ClientHello asks for
	// evil.test. The client skips verification: only the proxy can stop it.
	// moat dials at CONNECT time (so an unreachable upstream gets a 502 and
	// server-first protocols work), but no byte of the refused tunnel, not
	// even the ClientHello, may reach the upstream.
	resp, _, c := p.connect(t, up.HostPort("allowed.test"))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT allowed.test: %d; want 200 (the SNI arrives only after it)", resp.StatusCode)
	}
	tc := tls.Client(&bufferedConn{c.Conn, c.br}, &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		t.Errorf("TLS handshake with SNI evil.test through a tunnel for allowed.test succeeded; the tunnel must be refused")
	}
	r := p.WaitRecord("the refused tunnel", func(r audit.Record) bool {
		return r.Kind == "connect" && r.Decision == "deny" && (r.SNI == "evil.test" || r.Host == "allowed.test")
	})
	checkDenied(t, r, "sni")
	if r.SNI != "evil.test" {
		t.Errorf("audit sni = %q; want evil.test", r.SNI)
	}
	settle()
	if n := up.BytesRead(); n != 0 {
		t.Errorf("the upstream received %d bytes from a tunnel whose SNI was evil.test; want 0", n)
	}

	// Control: the same tunnel with the matching SNI.
	resp, _, c = p.connect(t, up.HostPort("allowed.test"))
	if resp.StatusCode != 200 {
		t.Fatalf("control CONNECT allowed.test: %d", resp.StatusCode)
	}
	if got := tlsGet(t, c, "allowed.test", up.HostPort("allowed.test"), "/sni-control"); got != up.Body("GET", "/sni-control") {
		t.Fatalf("control tunnel got %q", got)
	}
	if n := up.BytesRead(); n == 0 {
		t.Errorf("the upstream read no bytes from the control tunnel")
	}
}

func TestHostHeaderMismatch(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"})})

	for _, host := range []string{"evil.test", "evil.test:" + itoa(up.Port), "127.0.0.1:" + itoa(up.Port)} {
		t.Run(host, func(t *testing.T) {
			resp, body := p.raw(t).roundTrip(t, rawGet(up.URL("localhost")+"/host-mismatch", host))
			if resp.StatusCode != 400 && resp.StatusCode != 421 {
				t.Errorf("absolute URI localhost with Host: %s: status %d; want 400 or 421 (body %q)", host, resp.StatusCode, body)
			}
		})
	}
	r := p.WaitRecord("a refused Host mismatch", func(r audit.Record) bool {
		return r.Decision == "deny" && (r.Status == 400 || r.Status == 421)
	})
	checkDenied(t, r)
	settle()
	if up.SawPath("/host-mismatch") || up.Accepts() != 0 {
		t.Errorf("the upstream saw a request whose Host disagreed with its URI (%d accepts): %+v", up.Accepts(), up.Seen())
	}

	// Control: Host agrees with the URI.
	resp, body := p.raw(t).roundTrip(t, rawGet(up.URL("localhost")+"/host-match", up.HostPort("localhost")))
	if resp.StatusCode != 200 || body != up.Body("GET", "/host-match") {
		t.Fatalf("control with a matching Host: %d %q", resp.StatusCode, body)
	}
}

func TestRequestSmuggling(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"})})
	hp, base := up.HostPort("localhost"), up.URL("localhost")
	smuggled := "GET " + base + "/smuggled HTTP/1.1\r\nHost: " + hp + "\r\n\r\n"
	chunkedEnd := "0\r\n\r\n"

	for _, tc := range []struct{ name, req string }{
		{"cl-te", "POST " + base + "/smuggle-clte HTTP/1.1\r\nHost: " + hp +
			"\r\nContent-Length: " + itoa(len(chunkedEnd)+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedEnd + smuggled},
		{"te-cl", "POST " + base + "/smuggle-tecl HTTP/1.1\r\nHost: " + hp +
			"\r\nTransfer-Encoding: chunked\r\nContent-Length: " + itoa(len(chunkedEnd)+len(smuggled)) + "\r\n\r\n" + chunkedEnd + smuggled},
		{"duplicate-cl", "POST " + base + "/smuggle-dupcl HTTP/1.1\r\nHost: " + hp +
			"\r\nContent-Length: 0\r\nContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := p.raw(t)
			resp, body := c.roundTrip(t, tc.req)
			if resp.StatusCode != 400 {
				t.Errorf("%s: status %d; want 400 (body %q)", tc.name, resp.StatusCode, body)
			}
			// Nothing may answer the smuggled request on this connection.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			rest, _ := io.ReadAll(c.br)
			if strings.Contains(string(rest), "HTTP/1.") {
				t.Errorf("%s: a second response followed the first:\n%s", tc.name, rest)
			}
		})
	}
	settle()
	if up.Accepts() != 0 || up.SawPath("smuggle") {
		t.Errorf("the upstream saw %d connections and requests %+v; want none", up.Accepts(), up.Seen())
	}
	recs := 0
	for _, r := range p.Records() {
		if r.Decision == "deny" && r.Status == 400 {
			recs++
		}
	}
	if recs < 3 {
		t.Errorf("audit has %d deny records with status 400; want 3, one per smuggling attempt", recs)
	}

	// Control: an honest POST with a body.
	resp, body := p.raw(t).roundTrip(t, "POST "+base+"/smuggle-control HTTP/1.1\r\nHost: "+hp+"\r\nContent-Length: 5\r\n\r\nhello")
	if want := "moat-upstream plain POST /smuggle-control body=5\n"; resp.StatusCode != 200 || body != want {
		t.Fatalf("control POST: %d %q; want 200 %q", resp.StatusCode, body, want)
	}
}

func TestKeepAliveSecondRequestRefused(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"})})
	c := p.raw(t)

	resp, body := c.roundTrip(t, rawGet(up.URL("localhost")+"/ka-first", up.HostPort("localhost")))
	if resp.StatusCode != 200 || body != up.Body("GET", "/ka-first") {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	if resp.Close {
		t.Fatalf("the proxy closed the keep-alive connection after the first request; the test needs it open")
	}
	evil := "evil.test:" + itoa(up.Port)
	resp, body = c.roundTrip(t, rawGet("http://"+evil+"/ka-second", evil))
	wantRefused(t, "second request on the connection, to evil.test", resp.StatusCode, body)
	if resp.Header.Get("X-Moat-Error") == "" {
		t.Errorf("refusal has no X-Moat-Error header")
	}
	checkAllowed(t, p.WaitRecord("the first request", func(r audit.Record) bool { return r.Path == "/ka-first" }), 200, len(up.Body("GET", "/ka-first")))
	checkDenied(t, p.WaitRecord("the second request", func(r audit.Record) bool { return r.Host == "evil.test" }), "default-deny")
	settle()
	if up.SawPath("/ka-second") {
		t.Errorf("the upstream received the refused second request")
	}
}

func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{
		policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"}),
		args:   []string{"--max-header-bytes", "8192"},
	})
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("a", n) + "\r\n" }

	resp, body := p.raw(t).roundTrip(t, rawGet(up.URL("localhost")+"/small-headers", up.HostPort("localhost"), pad(1000)))
	if resp.StatusCode != 200 || body != up.Body("GET", "/small-headers") {
		t.Fatalf("control with 1 KB of headers: %d %q", resp.StatusCode, body)
	}

	c := p.raw(t)
	req := rawGet(up.URL("localhost")+"/big-headers", up.HostPort("localhost"), pad(64<<10))
	go io.WriteString(c, req) // the proxy may answer before it has read it all
	resp, body = c.readResponse(t, req)
	if resp.StatusCode != 431 {
		t.Errorf("64 KB of headers with --max-header-bytes 8192: status %d; want 431 (body %q)", resp.StatusCode, body)
	}
	checkDenied(t, p.WaitRecord("the oversized request", func(r audit.Record) bool {
		return r.Decision == "deny" && r.Status == 431
	}))
	settle()
	if up.SawPath("/big-headers") {
		t.Errorf("the upstream received the oversized request")
	}
}

func TestSlowloris(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	const headerTimeout = 2 * time.Second
	const margin = 3 * time.Second
	p := startProxy(t, proxyOpts{
		policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"}),
		args:   []string{"--header-timeout", headerTimeout.String()},
	})

	t.Run("group", func(t *testing.T) {
		// Control: a request whose headers take half the timeout still passes.
		t.Run("control", func(t *testing.T) {
			t.Parallel()
			req := rawGet(up.URL("localhost")+"/slow-control", up.HostPort("localhost"))
			c := p.raw(t)
			io.WriteString(c, req[:10])
			time.Sleep(headerTimeout / 2)
			resp, body := c.roundTrip(t, req[10:])
			if resp.StatusCode != 200 || body != up.Body("GET", "/slow-control") {
				t.Errorf("control (headers sent over 1 s): %d %q", resp.StatusCode, body)
			}
		})
		// Attacks: a header byte per second, and a connection that sends
		// nothing (the SOCKS/HTTP sniff must be bounded too).
		for _, tc := range []struct{ name, trickle string }{
			{"byte-per-second", "GET " + up.URL("localhost") + "/slow HTTP/1.1\r\nHost: " + up.HostPort("localhost") + "\r\nX-Slow: " + strings.Repeat("a", 60)},
			{"silent", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := p.dial(t)
				limit := headerTimeout + margin
				el, closed := timeToClose(c, tc.trickle, limit+3*time.Second)
				if !closed {
					t.Fatalf("the proxy did not close the connection within %v (--header-timeout %v)", limit+3*time.Second, headerTimeout)
				}
				t.Logf("the proxy closed the connection after %v", el.Round(100*time.Millisecond))
				if el > limit {
					t.Errorf("the proxy closed the connection after %v; want within --header-timeout %v (+%v margin)", el, headerTimeout, margin)
				}
			})
		}
	})
	checkDenied(t, p.WaitRecord("the slowloris refusal", func(r audit.Record) bool {
		return r.Decision == "deny" && (r.Status == 408 || strings.Contains(r.Rule, "timeout"))
	}))
	settle()
	for _, r := range up.Seen() {
		if r.Path == "/slow" {
			t.Errorf("the upstream received the slowloris request")
		}
	}
}

// timeToClose writes trickle one byte a second and reports how long the
// peer took to close the connection, giving up after max.
func timeToClose(c net.Conn, trickle string, max time.Duration) (time.Duration, bool) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(max))
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c) // returns when the proxy closes
		closed <- err
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		if i < len(trickle) {
			_, _ = c.Write([]byte{trickle[i]}) // an error means closed: the reader sees it too
		}
		select {
		case err := <-closed:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return time.Since(start), false
			}
			return time.Since(start), true
		case <-tick.C:
		}
	}
}

func TestSOCKS5(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"})})
	hello := func(t *testing.T) net.Conn {
		c := p.dial(t)
		if _, err := socksHello(c, "", ""); err != nil {
			t.Fatalf("SOCKS5 hello: %v", err)
		}
		return c
	}

	t.Run("control", func(t *testing.T) {
		c := hello(t)
		if rep, err := socksRequest(c, socksConnect, "localhost", up.Port); rep != 0 || err != nil {
			t.Fatalf("SOCKS5 CONNECT localhost: reply %#x, %v; want 0", rep, err)
		}
		rc := &rawConn{c, bufio.NewReader(c)}
		resp, body := rc.roundTrip(t, "GET /socks-control HTTP/1.1\r\nHost: "+up.HostPort("localhost")+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || body != up.Body("GET", "/socks-control") {
			t.Fatalf("GET through SOCKS5: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("denied-name-no-lookup", func(t *testing.T) {
		// denied.test is in the proxy's /etc/hosts as 10.255.255.1: a lookup
		// before the allowlist check would leave that address in the record.
		c := hello(t)
		if rep, err := socksRequest(c, socksConnect, "denied.test", up.Port); rep != 0x02 {
			t.Errorf("SOCKS5 CONNECT denied.test: reply %#x (%v); want 0x02", rep, err)
		}
		r := p.WaitRecord("the refused SOCKS5 CONNECT", func(r audit.Record) bool {
			return isKind(r, "connect", "socks5", "denied.test", up.Port)
		})
		checkDenied(t, r, "default-deny")
		if r.Addr != "" || strings.Contains(r.Reason, "10.255.255.1") || strings.Contains(r.Detail, "10.255.255.1") {
			t.Errorf("the record of a name refused by the allowlist carries a resolved address (a DNS lookup happened): %+v", r)
		}
		if r.Status != 2 {
			t.Errorf("audit status = %d; want 2, the SOCKS reply code", r.Status)
		}
	})

	for _, tc := range []struct {
		name string
		cmd  byte
		host string
		port int
	}{
		{"udp-associate", socksUDPAssociate, "0.0.0.0", 0},
		{"bind", socksBind, "localhost", up.Port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := hello(t)
			if rep, err := socksRequest(c, tc.cmd, tc.host, tc.port); rep != 0x07 {
				t.Errorf("SOCKS5 %s: reply %#x (%v); want 0x07, command not supported", tc.name, rep, err)
			}
		})
	}
	settle()
	if n := up.Accepts(); n != 1 {
		t.Errorf("the upstream accepted %d connections; want 1, the control's", n)
	}
}

func TestRefusalExplains(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	p := startProxy(t, proxyOpts{policy: policy([]string{up.HostPort("localhost")}, []string{"localhost"})})
	c := p.httpClient(nil)

	status, _, body := get(t, c, up.URL("localhost")+"/explain-control")
	if status != 200 || body != up.Body("GET", "/explain-control") {
		t.Fatalf("control: %d %q", status, body)
	}
	target := "evil.test:" + itoa(up.Port)
	status, hdr, body := get(t, c, "http://"+target+"/explain")
	wantRefused(t, "GET http://"+target, status, body)
	r := p.WaitRecord("the refused GET", func(r audit.Record) bool { return r.Host == "evil.test" })
	checkDenied(t, r, "default-deny")
	if h := hdr.Get("X-Moat-Error"); h == "" || !strings.Contains(h, r.Rule) {
		t.Errorf("X-Moat-Error = %q; want it to name the rule %q", h, r.Rule)
	}
	for _, want := range []string{"evil.test", target, "allow"} {
		if !strings.Contains(body, want) {
			t.Errorf("refusal body does not contain %q (the host, and the policy line to add):\n%s", want, body)
		}
	}
	if r.Reason == "" {
		t.Errorf("deny record has no reason: %+v", r)
	}

	resp, body, _ := p.connect(t, "evil.test:443")
	wantRefused(t, "CONNECT evil.test:443", resp.StatusCode, body)
	if resp.Header.Get("X-Moat-Error") == "" || !strings.Contains(body, "evil.test") {
		t.Errorf("CONNECT refusal: X-Moat-Error %q, body %q; want the header and a body naming evil.test", resp.Header.Get("X-Moat-Error"), body)
	}
}
