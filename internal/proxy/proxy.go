// Package proxy is moat's egress proxy: the only way out of a sandbox.
//
// One listener serves an HTTP forward proxy (absolute-URI requests and
// CONNECT tunnels) and SOCKS5 (CONNECT only), told apart by the first byte a
// client sends. Every destination goes through the same path: the policy
// decides on the name before any DNS lookup, the proxy resolves it once,
// the policy decides on each address, and the proxy dials only an address it
// checked, so DNS rebinding cannot move a connection after the check.
// Refusals are explicit (HTTP 403 with X-Moat-Error, SOCKS5 reply 0x02) and
// every decision, allow or deny, becomes one audit record.
package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// Decider is the part of a policy the proxy needs; *policy.Policy satisfies it.
type Decider interface {
	// Egress decides on a destination by name, before any lookup.
	Egress(host string, port uint16) policy.Decision
	// EgressAddr decides on one address of a host that Egress allowed.
	EgressAddr(host string, addr netip.Addr, port uint16) policy.Decision
}

// Recorder receives one audit record per decision. *audit.Writer satisfies it.
type Recorder interface {
	Record(audit.Record)
}

// Defaults for the zero values of Server's limits.
const (
	DefaultMaxConns       = 20000
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultMaxHeaderBytes = 64 << 10
	DefaultDialTimeout    = 10 * time.Second
	DefaultResolveTimeout = 5 * time.Second
	DefaultHelloTimeout   = 10 * time.Second
)

// Server serves proxy connections. Set its fields, then call Serve for each
// listener; it is safe for concurrent use. The zero values of the limits
// mean the defaults above. If Log is nil nothing is logged; if Recorder is
// nil no audit records are written.
type Server struct {
	Recorder Recorder
	Log      *slog.Logger

	// Sessions maps a proxy user name to its token. When it is non-empty,
	// every client must authenticate (Proxy-Authorization Basic, or SOCKS5
	// username/password) and audit records carry the user name as session.
	Sessions map[string]string

	// Credentials are added to requests bound for their hosts, over TLS
	// only; see Credential. The proxy sees inside plain HTTP requests,
	// absolute-form https:// requests it sends itself, reverse endpoints
	// and intercepted tunnels; opaque tunnels carry no credentials.
	Credentials []*Credential

	// CA terminates the TLS of tunnels to the hosts Intercept names (and
	// InterceptExclude does not); nil terminates nothing.
	CA               *CA
	Intercept        []policy.HostRule
	InterceptExclude []policy.HostRule

	MaxConns       int           // concurrent client connections, all listeners together
	HeaderTimeout  time.Duration // to read one request's headers (and a SOCKS5 handshake)
	IdleTimeout    time.Duration // between requests on a kept-alive connection
	MaxHeaderBytes int           // request line and headers; larger gets 431
	DialTimeout    time.Duration
	HelloTimeout   time.Duration // for a TLS ClientHello inside a tunnel

	// LookupNetIP resolves names; nil uses Go's own resolver (never the
	// C library, whose behaviour differs per host).
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// UpstreamTLS verifies upstream servers of https:// requests sent in
	// absolute form; nil uses the system's roots.
	UpstreamTLS *tls.Config
	// DialContext dials a checked address; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	decider atomic.Pointer[deciderBox]
	lim     limiter

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	selfAddrs map[netip.AddrPort]struct{}
	transport map[string]*transport // per session: no upstream pool shared across identities
	endpoints map[*http.Server]struct{}
	closing   bool
	active    atomic.Int64
	wg        sync.WaitGroup
}

type deciderBox struct{ d Decider }

// SetDecider installs the policy the proxy enforces. It may be called at any
// time (a reload): requests that start afterwards use the new policy, and
// open tunnels, already checked, stay open.
func (s *Server) SetDecider(d Decider) {
	s.decider.Store(&deciderBox{d})
	s.mu.Lock()
	for _, t := range s.transport {
		t.CloseIdleConnections() // pooled upstream connections were checked by the old policy
	}
	s.mu.Unlock()
}

func (s *Server) policy() Decider {
	if b := s.decider.Load(); b != nil {
		return b.d
	}
	return denyAll{}
}

// denyAll is what a server without a policy enforces.
type denyAll struct{}

func (denyAll) Egress(string, uint16) policy.Decision {
	return policy.Decision{Rule: "no-policy", Reason: "the proxy has no policy loaded"}
}
func (denyAll) EgressAddr(string, netip.Addr, uint16) policy.Decision {
	return policy.Decision{Rule: "no-policy", Reason: "the proxy has no policy loaded"}
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) record(r audit.Record) {
	if s.Recorder == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	s.Recorder.Record(r)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts connections on l until Shutdown or Close, and serves each
// in its own goroutine. It always returns a non-nil error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
		if s.selfAddrs == nil {
			s.selfAddrs = make(map[netip.AddrPort]struct{})
		}
		s.selfAddrs[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = struct{}{}
	}
	s.mu.Unlock()

	var tempDelay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if isTemporary(err) {
				// Out of file descriptors or a transient error: back off
				// rather than spin, as net/http does.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.logger().Warn("proxy: accept", "err", err, "retry_in", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("proxy: accept on %s: %w", l.Addr(), err)
		}
		tempDelay = 0
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if !s.serveConn(c) {
				s.untrack(c)
			}
		}()
	}
}

// isTemporary reports accept errors worth retrying: running out of file
// descriptors must slow the proxy down, not stop it.
func isTemporary(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, then closes every connection left, tunnels included. Unlike
// net/http's Shutdown it does not leave hijacked connections behind: a
// stopped moat must leave no way out open.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	eps := make([]*http.Server, 0, len(s.endpoints))
	for hs := range s.endpoints {
		eps = append(eps, hs)
	}
	s.mu.Unlock()
	for _, hs := range eps {
		hs.Shutdown(ctx) // waits for requests in progress, until ctx is done
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.Close()
	<-done
	return ctx.Err()
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	for hs := range s.endpoints {
		hs.Close()
	}
	for _, t := range s.transport {
		t.CloseIdleConnections()
	}
	s.mu.Unlock()
	return nil
}

// ActiveConns reports the client connections being served.
func (s *Server) ActiveConns() int64 { return s.active.Load() }

// serveConn tells SOCKS5 from HTTP by the first byte and hands the
// connection over. It enforces the connection limit, answering in the
// client's own protocol so that an overloaded proxy never looks like a hang.
func (s *Server) serveConn(c net.Conn) (handedOff bool) {
	n := s.active.Add(1)
	var cl *clientConn
	defer func() {
		if cl != nil && cl.handedOff {
			handedOff = true // an open tunnel owns the connection now
			return
		}
		s.active.Add(-1)
	}()

	c.SetReadDeadline(time.Now().Add(orDefault(s.HeaderTimeout, DefaultHeaderTimeout)))
	br := bufio.NewReaderSize(c, smallReader)
	first, err := br.Peek(1)
	if err != nil {
		return // closed or silent before its first byte: nothing to answer
	}
	cl = &clientConn{Conn: c, br: br, client: clientName(c)}
	if n > int64(orDefault(s.MaxConns, DefaultMaxConns)) {
		s.overloaded(cl, first[0] == socksVersion)
		return
	}
	if first[0] == socksVersion {
		s.serveSOCKS(cl)
		return
	}
	s.serveHTTP(cl)
	return
}

// smallReader is the client reader's first size; readHeaderBlock grows it
// for a request whose headers do not fit.
const smallReader = 4096

// clientConn is an accepted connection with its buffered reader.
type clientConn struct {
	net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer // responses, made on the first one
	client  string        // remote address, or "unix" for Unix sockets
	session string        // authenticated proxy user, if any
	// handedOff is set when a tunnel's goroutines took the connection
	// over: they close it and count it out when the tunnel ends.
	handedOff bool
}

func (c *clientConn) Read(p []byte) (int, error) { return c.br.Read(p) }

func clientName(c net.Conn) string {
	if c.RemoteAddr() == nil || c.RemoteAddr().Network() == "unix" {
		return "unix"
	}
	return c.RemoteAddr().String()
}

func (s *Server) overloaded(c *clientConn, socks bool) {
	reason := fmt.Sprintf("the proxy is serving its maximum of %d connections", orDefault(s.MaxConns, DefaultMaxConns))
	s.record(audit.Record{Kind: audit.KindConnect, Client: c.client, Decision: "deny", Rule: "connection-limit", Reason: reason, Status: 503})
	c.SetWriteDeadline(time.Now().Add(time.Second))
	if socks {
		c.Write([]byte{socksVersion, 0xff}) // no acceptable method: the client gives up at once
		return
	}
	writeRefusal(c, 503, "connection-limit", "", reason, "")
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
