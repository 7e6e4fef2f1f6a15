package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// upstream is a real server on 127.0.0.1 that counts the connections it
// accepts and remembers the requests it served, so a test can prove that a
// refused request never reached it.
type upstream struct {
	srv     *httptest.Server
	kind    string // "plain" or "tls"
	Port    int
	accepts atomic.Int64
	read    atomic.Int64            // bytes read from accepted connections
	extra   map[string]http.Handler // path prefix → handler (git)

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	Method, Host, Path string
	Header             http.Header
	BodyLen            int
}

// newUpstream starts a plain HTTP (useTLS false) or TLS upstream, stopped
// at the end of the test.
func newUpstream(t testing.TB, useTLS bool) *upstream {
	u := &upstream{kind: "plain", extra: map[string]http.Handler{}}
	u.srv = httptest.NewUnstartedServer(u)
	u.srv.Listener = countingListener{u.srv.Listener, &u.accepts, &u.read}
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if useTLS {
		u.kind = "tls"
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leafCert}}
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	_, port, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	u.Port, _ = strconv.Atoi(port)
	return u
}

// Body is what the upstream answers to a request without a body.
func (u *upstream) Body(method, path string) string {
	return fmt.Sprintf("moat-upstream %s %s %s body=0\n", u.kind, method, path)
}

// URL is scheme://host:port for host (which the proxy must resolve).
func (u *upstream) URL(host string) string {
	s := "http"
	if u.kind == "tls" {
		s = "https"
	}
	return fmt.Sprintf("%s://%s:%d", s, host, u.Port)
}

func (u *upstream) HostPort(host string) string { return net.JoinHostPort(host, strconv.Itoa(u.Port)) }

func (u *upstream) Accepts() int64 { return u.accepts.Load() }

// BytesRead is how many bytes clients sent on all accepted connections.
func (u *upstream) BytesRead() int64 { return u.read.Load() }

func (u *upstream) Seen() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// SawPath reports whether any request for path (or containing it) arrived.
func (u *upstream) SawPath(sub string) bool {
	for _, r := range u.Seen() {
		if strings.Contains(r.Path, sub) {
			return true
		}
	}
	return false
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := seenRequest{Method: r.Method, Host: r.Host, Path: r.URL.Path, Header: r.Header.Clone()}
	for prefix, h := range u.extra {
		if strings.HasPrefix(r.URL.Path, prefix) {
			u.record(rec)
			h.ServeHTTP(w, r)
			return
		}
	}
	n, _ := io.Copy(io.Discard, r.Body)
	rec.BodyLen = int(n)
	u.record(rec)
	fmt.Fprintf(w, "moat-upstream %s %s %s body=%d\n", u.kind, r.Method, r.URL.Path, n)
}

func (u *upstream) record(r seenRequest) {
	u.mu.Lock()
	u.seen = append(u.seen, r)
	u.mu.Unlock()
}

type countingListener struct {
	net.Listener
	n, read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.Add(1)
	return countingConn{c, l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}
