package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/moatsec/moat/internal/policy"
)

// Limits (network.limits) brake exfiltration through hosts the agent may
// reach: a request rate and a budget of bytes sent, per session and per
// host. Exceeding one gets 429 with the limit named.

type limitSource interface {
	Limits(host string, port uint16) []policy.Limit
}

type limitKey struct{ session, host, rule string }

type bucket struct {
	tokens float64
	last   time.Time
}

type limiter struct {
	mu      sync.Mutex
	buckets map[limitKey]*bucket
	sent    map[limitKey]int64
}

func (s *Server) limitsFor(host string, port uint16) []policy.Limit {
	if ls, ok := s.policy().(limitSource); ok {
		return ls.Limits(host, port)
	}
	return nil
}

func limitRefusal(host string, port uint16, l policy.Limit, what string) *refusal {
	return &refusal{status: 429, host: host, port: port, Decision: policy.Decision{
		Rule:   l.Rule,
		Reason: fmt.Sprintf("%s: %s (%q in network.limits)", host, what, l.Entry),
	}}
}

// admit counts one request (or tunnel) to host:port for session, and
// refuses it when a rate is exceeded or a byte budget is spent.
func (s *Server) admit(session, host string, port uint16) *refusal {
	ls := s.limitsFor(host, port)
	if len(ls) == 0 {
		return nil
	}
	now := time.Now()
	s.lim.mu.Lock()
	defer s.lim.mu.Unlock()
	if s.lim.buckets == nil {
		s.lim.buckets, s.lim.sent = map[limitKey]*bucket{}, map[limitKey]int64{}
	}
	for _, l := range ls {
		k := limitKey{session, host, l.Rule}
		if l.BytesOut > 0 && s.lim.sent[k] >= l.BytesOut {
			return limitRefusal(host, port, l, fmt.Sprintf("the budget of %d bytes sent is spent", l.BytesOut))
		}
		if l.PerMinute > 0 {
			b := s.lim.buckets[k]
			if b == nil {
				b = &bucket{tokens: float64(l.PerMinute), last: now}
				s.lim.buckets[k] = b
			}
			b.tokens = min(float64(l.PerMinute), b.tokens+now.Sub(b.last).Minutes()*float64(l.PerMinute))
			b.last = now
			if b.tokens < 1 {
				return limitRefusal(host, port, l, fmt.Sprintf("more than %d requests a minute", l.PerMinute))
			}
			b.tokens--
		}
	}
	return nil
}

// spend counts n bytes sent to host:port and reports the limit it spent,
// if any.
func (s *Server) spend(session, host string, port uint16, n int64) *refusal {
	ls := s.limitsFor(host, port)
	if len(ls) == 0 || n == 0 {
		return nil
	}
	s.lim.mu.Lock()
	defer s.lim.mu.Unlock()
	if s.lim.sent == nil {
		s.lim.buckets, s.lim.sent = map[limitKey]*bucket{}, map[limitKey]int64{}
	}
	var over *refusal
	for _, l := range ls {
		if l.BytesOut == 0 {
			continue
		}
		k := limitKey{session, host, l.Rule}
		s.lim.sent[k] += n
		if s.lim.sent[k] > l.BytesOut && over == nil {
			over = limitRefusal(host, port, l, fmt.Sprintf("the budget of %d bytes sent is spent", l.BytesOut))
		}
	}
	return over
}

// budgetWriter charges what it writes upstream to the byte budgets and
// fails once one is spent, which ends the tunnel or the request.
type budgetWriter struct {
	w       io.Writer
	s       *Server
	session string
	host    string
	port    uint16
	over    *refusal
}

func (b *budgetWriter) Write(p []byte) (int, error) {
	if b.over != nil {
		return 0, b.over
	}
	if r := b.s.spend(b.session, b.host, b.port, int64(len(p))); r != nil {
		b.over = r
		return 0, r
	}
	return b.w.Write(p)
}

// budgetConn is an upstream connection whose writes are charged.
type budgetConn struct {
	net.Conn
	bw *budgetWriter
}

func (c *budgetConn) Write(p []byte) (int, error) { return c.bw.Write(p) }

// SyscallConn lets an idle relay wait on the connection without a buffer.
func (c *budgetConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c *budgetConn) CloseWrite() error {
	closeWrite(c.Conn)
	return nil
}

// charge makes a tunnel's upstream writes count against the byte budgets
// that apply to it, if any.
func (s *Server) charge(d *dest, session, host string, port uint16) {
	for _, l := range s.limitsFor(host, port) {
		if l.BytesOut > 0 {
			d.conn = &budgetConn{Conn: d.conn, bw: &budgetWriter{w: d.conn, s: s, session: session, host: host, port: port}}
			return
		}
	}
}

// chargeBody makes a request body count against the byte budgets.
func (s *Server) chargeBody(body io.ReadCloser, session, host string, port uint16) io.ReadCloser {
	for _, l := range s.limitsFor(host, port) {
		if l.BytesOut > 0 {
			return &budgetBody{ReadCloser: body, bw: &budgetWriter{s: s, session: session, host: host, port: port}}
		}
	}
	return body
}

// budgetBody charges a request body as the transport reads it.
type budgetBody struct {
	io.ReadCloser
	bw *budgetWriter
}

func (b *budgetBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if r := b.bw.s.spend(b.bw.session, b.bw.host, b.bw.port, int64(n)); r != nil {
			b.bw.over = r
			return 0, r
		}
	}
	return n, err
}
