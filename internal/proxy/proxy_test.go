package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// memRecorder keeps audit records in memory for assertions.
type memRecorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memRecorder) Record(r audit.Record) {
	m.mu.Lock()
	m.recs = append(m.recs, r)
	m.mu.Unlock()
}

func (m *memRecorder) all() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Record(nil), m.recs...)
}

// find waits briefly for a record matching fn: tunnel records are written
// as the tunnel closes, after the client has seen the result.
func (m *memRecorder) find(t *testing.T, fn func(audit.Record) bool) audit.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range m.all() {
			if fn(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record matched; have:\n%s", m.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (m *memRecorder) dump() string {
	var b strings.Builder
	for _, r := range m.all() {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	return b.String()
}

// testPolicy loads a policy written as YAML through the real loader.
func testPolicy(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadFile(path)
	if err != nil {
		t.Fatalf("policy:\n%s\nerror: %v", yaml, err)
	}
	return p
}

// fixture is a proxy on 127.0.0.1 with a resolver that knows test names.
type fixture struct {
	srv     *Server
	addr    string
	rec     *memRecorder
	lookups atomic.Int64
	hosts   map[string][]netip.Addr
}

func newFixture(t testing.TB, yaml string, hosts map[string]string, opts ...func(*Server)) *fixture {
	t.Helper()
	f := &fixture{rec: &memRecorder{}, hosts: map[string][]netip.Addr{}}
	for name, addr := range hosts {
		f.hosts[name] = []netip.Addr{netip.MustParseAddr(addr)}
	}
	f.srv = &Server{
		Recorder:      f.rec,
		HeaderTimeout: 2 * time.Second,
		LookupNetIP: func(ctx context.Context, network, host string) ([]netip.Addr, error) {
			f.lookups.Add(1)
			if a, ok := f.hosts[host]; ok {
				return a, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
	}
	f.srv.SetDecider(testPolicy(t, yaml))
	for _, o := range opts {
		o(f.srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	go f.srv.Serve(l)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fixture) client() *http.Client {
	u := &url.URL{Scheme: "http", Host: f.addr}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: false}}
}

func portOf(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func readBody(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestForwardAllowedAndDenied(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ErrorHeader, "forged by upstream")
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Proxy-Auth", r.Header.Get("Proxy-Authorization"))
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "::ffff:127.0.0.1"}) // as Go's resolver returns A records
	c := f.client()

	// The control: an allowed request arrives and its answer comes back.
	resp, err := c.Get("http://up.test:" + port + "/ok?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != 200 || body != "hello /ok" {
		t.Fatalf("allowed request: got %d %q; want 200 %q", resp.StatusCode, body, "hello /ok")
	}
	if got := resp.Header.Get(ErrorHeader); got != "" {
		t.Errorf("upstream forged %s: %q reached the client", ErrorHeader, got)
	}
	if got := resp.Header.Get("X-Seen-Host"); got != "up.test:"+port {
		t.Errorf("upstream saw Host %q; want %q", got, "up.test:"+port)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Path == "/ok" })
	if r.Decision != "allow" || r.Host != "up.test" || strconv.Itoa(int(r.Port)) != port || r.Status != 200 ||
		r.Method != "GET" || r.Proto != "http" || r.BytesDown != int64(len("hello /ok")) || r.Addr != "127.0.0.1:"+port {
		t.Errorf("allow record = %+v", r)
	}
	if !strings.Contains(r.Rule, "network.allow[0]") {
		t.Errorf("allow record rule = %q; want the allow entry", r.Rule)
	}

	// The attack: a host the policy does not name.
	before := f.lookups.Load()
	resp, err = c.Get("http://evil.test/steal")
	if err != nil {
		t.Fatal(err)
	}
	body = readBody(t, resp)
	if resp.StatusCode != 403 {
		t.Fatalf("denied request: status %d; want 403", resp.StatusCode)
	}
	if h := resp.Header.Get(ErrorHeader); !strings.HasPrefix(h, "default-deny") || !strings.Contains(h, "evil.test:80") {
		t.Errorf("%s = %q; want the rule and host", ErrorHeader, h)
	}
	for _, want := range []string{"evil.test:80", "network.allow", "rule: default-deny", "not from the network"} {
		if !strings.Contains(body, want) {
			t.Errorf("refusal body lacks %q:\n%s", want, body)
		}
	}
	if n := f.lookups.Load() - before; n != 0 {
		t.Errorf("the proxy resolved a refused name %d times; it must not look it up at all", n)
	}
	d := f.rec.find(t, func(r audit.Record) bool { return r.Host == "evil.test" })
	if d.Decision != "deny" || d.Rule != "default-deny" || d.Status != 403 || d.Path != "/steal" {
		t.Errorf("deny record = %+v", d)
	}
}

func TestPrivateAddressRefused(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "internal") }))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["ok.test:`+port+`", "rebind.test:`+port+`", "meta.test:`+port+`", "mapped.test:`+port+`"]
  allow_private: ["ok.test"]
`, map[string]string{"ok.test": "127.0.0.1", "rebind.test": "127.0.0.1", "meta.test": "169.254.169.254", "mapped.test": "::ffff:127.0.0.1"})
	c := f.client()
	resp, err := c.Get("http://ok.test:" + port + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, host := range []string{"rebind.test", "meta.test", "mapped.test"} {
		resp, err := c.Get("http://" + host + ":" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != 403 || strings.Contains(body, "internal") {
			t.Errorf("%s: got %d %q; want 403 from the proxy", host, resp.StatusCode, body)
		}
		r := f.rec.find(t, func(r audit.Record) bool { return r.Host == host })
		if r.Decision != "deny" || r.Rule != "private-address" {
			t.Errorf("%s: record %+v; want deny by private-address", host, r)
		}
	}
}

func TestIPLiteralRefused(t *testing.T) {
	f := newFixture(t, "version: 1\nnetwork:\n  allow: [\"example.test\"]\n", nil)
	for _, target := range []string{"127.0.0.1:80", "[::1]:443", "169.254.169.254:80", "2852039166:80", "127.1:80", "0x7f.1:80"} {
		code, hdr := rawConnect(t, f.addr, target, "")
		if code != 403 || hdr == "" {
			t.Errorf("CONNECT %s: status %d, %s %q; want 403 with the header", target, code, ErrorHeader, hdr)
		}
	}
	if n := f.lookups.Load(); n != 0 {
		t.Errorf("IP literals caused %d lookups", n)
	}
}

// rawConnect sends a CONNECT and returns the status and X-Moat-Error.
func rawConnect(t *testing.T, proxyAddr, target, extra string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, extra)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp.StatusCode, resp.Header.Get(ErrorHeader)
}

// countingListener counts what an upstream receives.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
	bytes    atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
		c = &countingConn{Conn: c, n: &l.bytes}
	}
	return c, err
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestConnectTLSAndSNIMismatch(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret-data") }))
	cl := &countingListener{Listener: up.Listener}
	up.Listener = cl
	up.StartTLS()
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["good.test:`+port+`"]
  allow_private: ["good.test"]
`, map[string]string{"good.test": "127.0.0.1"})

	// The control: a real HTTPS request through CONNECT with a matching SNI.
	// httptest's certificate names example.com, not good.test; the real
	// certificate checks are in test/integration.
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: f.addr}),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	resp, err := (&http.Client{Transport: tr}).Get("https://good.test:" + port + "/")
	if err != nil {
		t.Fatalf("control HTTPS through CONNECT: %v", err)
	}
	if body := readBody(t, resp); body != "secret-data" {
		t.Fatalf("control body %q", body)
	}
	tr.CloseIdleConnections() // the tunnel's record is written as it closes
	open := f.rec.find(t, func(r audit.Record) bool { return r.Proto == "connect" && r.Event == "close" })
	if open.SNI != "good.test" || open.Decision != "allow" || open.BytesUp == 0 || open.BytesDown == 0 {
		t.Errorf("tunnel close record = %+v", open)
	}

	// The attack: CONNECT to the allowed host, TLS to another name.
	bytesBefore := cl.bytes.Load()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT good.test:%s HTTP/1.1\r\nHost: good.test:%s\r\n\r\n", port, port)
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(&bufConn{Conn: c, r: br}, &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	if err == nil {
		t.Fatal("TLS handshake with SNI evil.test through a tunnel to good.test succeeded")
	}
	if !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("handshake error %q; want the proxy's unrecognized_name alert", err)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Rule == "sni-mismatch" })
	if r.Decision != "deny" || r.SNI != "evil.test" || r.Host != "good.test" {
		t.Errorf("sni record = %+v", r)
	}
	time.Sleep(50 * time.Millisecond)
	if n := cl.bytes.Load() - bytesBefore; n != 0 {
		t.Errorf("upstream received %d bytes of the refused tunnel; want none", n)
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestHostMismatchSmugglingAndLimits(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"}, func(s *Server) { s.MaxHeaderBytes = 8 << 10 })

	for _, tt := range []struct {
		name, raw string
		status    int
		rule      string
	}{
		{"control", "GET http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port + "\r\n\r\n", 200, ""},
		{"host mismatch", "GET http://up.test:" + port + "/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", 421, "host-mismatch"},
		{"CL+TE", "POST http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port +
			"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://up.test:" + port + "/smuggled HTTP/1.1\r\nHost: up.test\r\n\r\n", 400, "request-smuggling"},
		{"duplicate CL", "POST http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port +
			"\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd", 400, "bad-request"},
		{"obs-fold", "GET http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port + "\r\nX-A: a\r\n b\r\n\r\n", 400, "request-smuggling"},
		{"oversized headers", "GET http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port + "\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431, "header-too-large"},
		{"origin form", "GET / HTTP/1.1\r\nHost: up.test\r\n\r\n", 400, "not-proxy-request"},
		{"TRACE", "TRACE http://up.test:" + port + "/ HTTP/1.1\r\nHost: up.test:" + port + "\r\n\r\n", 403, "method-refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tt.raw)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tt.status)
			}
			if tt.rule == "" {
				if hits.Load() != before+1 {
					t.Errorf("the upstream did not see the control request")
				}
				return
			}
			if got := resp.Header.Get(ErrorHeader); !strings.HasPrefix(got, tt.rule) {
				t.Errorf("%s = %q; want rule %s", ErrorHeader, got, tt.rule)
			}
			if hits.Load() != before {
				t.Errorf("the upstream saw %d requests of a refused one", hits.Load()-before)
			}
			f.rec.find(t, func(r audit.Record) bool { return r.Rule == tt.rule && r.Decision == "deny" })
		})
	}
}

func TestKeepAliveRecheckedEveryRequest(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`", "other.test:`+port+`"]
  allow_private: ["up.test", "other.test"]
`, map[string]string{"up.test": "127.0.0.1", "other.test": "127.0.0.1"})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(host string) *http.Response {
		fmt.Fprintf(c, "GET http://%s:%s/ HTTP/1.1\r\nHost: %s:%s\r\n\r\n", host, port, host, port)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get("up.test"); r.StatusCode != 200 {
		t.Fatalf("first request: %d", r.StatusCode)
	}
	// Reload: other.test is no longer allowed; the same connection asks for it.
	f.srv.SetDecider(testPolicy(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`))
	if r := get("up.test"); r.StatusCode != 200 {
		t.Fatalf("second request on the kept-alive connection: %d", r.StatusCode)
	}
	if r := get("other.test"); r.StatusCode != 403 {
		t.Fatalf("third request, to a host the new policy refuses: %d; want 403", r.StatusCode)
	}
	f.rec.find(t, func(r audit.Record) bool { return r.Host == "other.test" && r.Decision == "deny" })
}

func TestSlowlorisClosed(t *testing.T) {
	f := newFixture(t, "version: 1\n", nil, func(s *Server) { s.HeaderTimeout = 500 * time.Millisecond })
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET http://a.test/ HTTP/1.1\r\n")
	go func() {
		for range 20 {
			time.Sleep(200 * time.Millisecond)
			if _, err := io.WriteString(c, "X"); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("want a 408 before the connection closes: %v", err)
	}
	if resp.StatusCode != 408 {
		t.Errorf("status %d; want 408", resp.StatusCode)
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	f.rec.find(t, func(r audit.Record) bool { return r.Rule == "header-timeout" })
}

func TestReportMode(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  mode: report
  allow_private: ["unlisted.test"]
`, map[string]string{"unlisted.test": "127.0.0.1"})
	resp, err := f.client().Get("http://unlisted.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("report mode: got %d %q; want the request to pass", resp.StatusCode, body)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Host == "unlisted.test" })
	if r.Decision != "allow" || !r.WouldDeny || r.Rule != "default-deny" {
		t.Errorf("record %+v; want allow with would_deny by default-deny", r)
	}
}

func TestSessions(t *testing.T) {
	const token = "tok-7f3a9c-canary-0123456789"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Proxy-Authorization"))
	}))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"}, func(s *Server) { s.Sessions = map[string]string{"sandbox-1": token} })

	resp, err := f.client().Get("http://up.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Fatalf("no credentials: %d; want 407 with Proxy-Authenticate", resp.StatusCode)
	}
	u := &url.URL{Scheme: "http", Host: f.addr, User: url.UserPassword("sandbox-1", token)}
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
	resp, err = c.Get("http://up.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "" {
		t.Fatalf("with credentials: %d %q; want 200 and no Proxy-Authorization upstream", resp.StatusCode, body)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Status == 200 })
	if r.Session != "sandbox-1" {
		t.Errorf("record session %q; want sandbox-1", r.Session)
	}
	for _, r := range f.rec.all() {
		if line := fmt.Sprintf("%+v", r); strings.Contains(line, token) || strings.Contains(line, base64.StdEncoding.EncodeToString([]byte("sandbox-1:"+token))) {
			t.Errorf("token leaked into the audit: %s", line)
		}
	}
}

func TestStreamingUnbuffered(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	defer up.Close()
	defer close(release)
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"})
	resp, err := f.client().Get("http://up.test:" + port + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Errorf("first event %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the stream stayed open: the proxy buffers")
	}
}

func TestShutdownClosesTunnels(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	f := newFixture(t, `version: 1
network:
  allow: ["echo.test:`+port+`"]
  allow_private: ["echo.test"]
`, map[string]string{"echo.test": "127.0.0.1"})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT echo.test:%s HTTP/1.1\r\n\r\n", port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	if line, _ := br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo through the tunnel: %q", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	f.srv.Shutdown(ctx)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Shutdown the tunnel read gave %v; want EOF", err)
	}
}

func TestConnectionLimit(t *testing.T) {
	f := newFixture(t, "version: 1\n", nil, func(s *Server) { s.MaxConns = 1 })
	hold, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	io.WriteString(hold, "G") // counted once its first byte arrives
	time.Sleep(100 * time.Millisecond)
	code, hdr := rawConnect(t, f.addr, "a.test:443", "")
	if code != 503 || !strings.HasPrefix(hdr, "connection-limit") {
		t.Errorf("over the limit: %d %q; want 503 connection-limit", code, hdr)
	}
}

// An upstream that answers before reading the body leaves the rest of the
// body on the client's connection; the proxy must not read it as a request.
func TestUnreadBodyEndsConnection(t *testing.T) {
	// A raw upstream that answers after the headers and keeps its
	// connection open without reading the body (net/http would close it).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hits atomic.Int64
	go func() {
		for {
			uc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(uc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					hits.Add(1)
					_ = req
					io.WriteString(uc, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
					time.Sleep(500 * time.Millisecond) // holds the connection, body unread
					return
				}
			}()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inner := "GET http://up.test:" + port + "/smuggled HTTP/1.1\r\nHost: up.test:" + port + "\r\n\r\n"
	body := strings.Repeat("x", 32<<20) + inner // more than socket buffers hold
	fmt.Fprintf(c, "POST http://up.test:%s/upload HTTP/1.1\r\nHost: up.test:%s\r\nContent-Length: %d\r\n\r\n", port, port, len(body))
	go io.WriteString(c, body)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d; want the upstream's 401", resp.StatusCode)
	}
	if r2, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a second response (%d) came back: the body's tail was read as a request", r2.StatusCode)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("upstream saw %d requests; want 1", n)
	}
}
