package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

const ioTimeout = 10 * time.Second

// httpClient is a Go client that uses the proxy's TCP listener as its HTTP
// proxy (CONNECT for https), trusting the test CA. user, if set, is sent as
// proxy credentials "user:pass".
func (p *moatProxy) httpClient(userinfo *url.Userinfo) *http.Client {
	pu := &url.URL{Scheme: "http", Host: p.TCP(), User: userinfo}
	return &http.Client{
		Timeout: ioTimeout,
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(pu),
			TLSClientConfig:   &tls.Config{RootCAs: caPool},
			DisableKeepAlives: true,
		},
	}
}

// unixHTTPClient uses the proxy's unix listener as its HTTP proxy.
func (p *moatProxy) unixHTTPClient() *http.Client {
	path := p.Unix()
	return &http.Client{
		Timeout: ioTimeout,
		Transport: &http.Transport{
			Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "moat-proxy.invalid:3128"}),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			TLSClientConfig:   &tls.Config{RootCAs: caPool},
			DisableKeepAlives: true,
		},
	}
}

// get fetches u and returns the status, headers and body.
func get(t testing.TB, c *http.Client, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s through the proxy: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", u, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// dial opens a raw connection to the proxy's TCP listener.
func (p *moatProxy) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.TCP(), ioTimeout)
	if err != nil {
		t.Fatalf("dial the proxy: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn is a raw client connection with a reader for responses.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func (p *moatProxy) raw(t testing.TB) *rawConn {
	c := p.dial(t)
	return &rawConn{c, bufio.NewReader(c)}
}

// roundTrip writes req verbatim and reads one response and its body.
func (c *rawConn) roundTrip(t testing.TB, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write %q: %v", firstLine(req), err)
	}
	return c.readResponse(t, req)
}

func (c *rawConn) readResponse(t testing.TB, req string) (*http.Response, string) {
	t.Helper()
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: reading the response: %v", firstLine(req), err)
	}
	if method == http.MethodConnect && resp.StatusCode == 200 {
		return resp, "" // the tunnel's bytes follow: no body to read
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the body: %v", firstLine(req), err)
	}
	return resp, string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// rawGet is a request with an absolute-form target, as a proxy client sends.
func rawGet(target, host string, extra ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Join(extra, "") + "\r\n"
}

// connect opens a CONNECT tunnel through the proxy; it returns the response
// and, when the status is 200, the tunnel.
func (p *moatProxy) connect(t testing.TB, hostport string) (*http.Response, string, *rawConn) {
	t.Helper()
	c := p.raw(t)
	resp, body := c.roundTrip(t, "CONNECT "+hostport+" HTTP/1.1\r\nHost: "+hostport+"\r\n\r\n")
	return resp, body, c
}

// tlsGet runs a TLS handshake for serverName over an established tunnel and
// GETs path; it returns the body.
func tlsGet(t testing.TB, c *rawConn, serverName, hostport, path string) string {
	t.Helper()
	tc := tls.Client(&bufferedConn{c.Conn, c.br}, &tls.Config{ServerName: serverName, RootCAs: caPool})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake for %s through the tunnel: %v", serverName, err)
	}
	br := bufio.NewReader(tc)
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, hostport)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s through the tunnel: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// bufferedConn reads through the bufio.Reader that already holds bytes.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.br.Read(p) }

// SOCKS5 (RFC 1928, RFC 1929) client steps, raw so that tests control
// every byte.
const (
	socksConnect      = 0x01
	socksBind         = 0x02
	socksUDPAssociate = 0x03
)

// socksHello negotiates no auth (user == "") or user/password; it returns
// the RFC 1929 status (0 = success) when credentials were sent.
func socksHello(c net.Conn, user, pass string) (byte, error) {
	method := byte(0x00)
	if user != "" {
		method = 0x02
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return 0xff, err
	}
	var r [2]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		return 0xff, fmt.Errorf("method reply: %w", err)
	}
	if r[0] != 5 || r[1] != method {
		return 0xff, fmt.Errorf("method reply %x; want method %#x", r, method)
	}
	if user == "" {
		return 0, nil
	}
	msg := []byte{1, byte(len(user))}
	msg = append(msg, user...)
	msg = append(msg, byte(len(pass)))
	msg = append(msg, pass...)
	if _, err := c.Write(msg); err != nil {
		return 0xff, err
	}
	if _, err := io.ReadFull(c, r[:]); err != nil {
		return 0xff, fmt.Errorf("auth reply: %w", err)
	}
	return r[1], nil
}

// socksRequest sends a SOCKS5 request and returns the reply code.
func socksRequest(c net.Conn, cmd byte, host string, port int) (byte, error) {
	req := []byte{5, cmd, 0}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && !strings.Contains(host, ":") {
		req = append(req, 1)
		req = append(req, ip.To4()...)
	} else if ip != nil {
		req = append(req, 4)
		req = append(req, ip.To16()...)
	} else {
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return 0xff, err
	}
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0xff, fmt.Errorf("reply: %w", err)
	}
	if h[0] != 5 {
		return 0xff, fmt.Errorf("reply version %d", h[0])
	}
	var n int
	switch h[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return h[1], err
		}
		n = int(l[0])
	default:
		return h[1], fmt.Errorf("reply address type %d", h[3])
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return h[1], fmt.Errorf("reply address: %w", err)
	}
	return h[1], nil
}

// run runs a client tool with a clean environment and a 60 s limit.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv(t)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v; stderr: %s", err, strings.TrimSpace(errb.String()))
		}
	}
	return out.String(), err
}

// Record matchers.

func isKind(r audit.Record, kind, proto, host string, port int) bool {
	return r.Kind == kind && r.Proto == proto && r.Host == host && int(r.Port) == port
}

// checkAllowed asserts the fields every allowed, finished exchange carries.
func checkAllowed(t testing.TB, r audit.Record, status int, minDown int) {
	t.Helper()
	if r.Decision != "allow" {
		t.Errorf("audit decision = %q; want allow (%+v)", r.Decision, r)
	}
	if r.Status != status {
		t.Errorf("audit status = %d; want %d (%+v)", r.Status, status, r)
	}
	if r.BytesDown < int64(minDown) {
		t.Errorf("audit bytes_down = %d; want ≥ %d, the body the client received (%+v)", r.BytesDown, minDown, r)
	}
	if r.Time.IsZero() {
		t.Errorf("audit record has no time: %+v", r)
	}
}

// checkDenied asserts a deny record and its rule (one of rules; any non-empty
// rule when rules is empty).
func checkDenied(t testing.TB, r audit.Record, rules ...string) {
	t.Helper()
	if r.Decision != "deny" {
		t.Errorf("audit decision = %q; want deny (%+v)", r.Decision, r)
	}
	if r.Rule == "" {
		t.Errorf("deny record names no rule: %+v", r)
		return
	}
	if len(rules) == 0 {
		return
	}
	for _, want := range rules {
		if r.Rule == want || strings.Contains(r.Rule, want) {
			return
		}
	}
	t.Errorf("audit rule = %q; want %s (%+v)", r.Rule, strings.Join(rules, " or "), r)
}

func itoa(n int) string { return strconv.Itoa(n) }

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}
