package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// TLS termination: for the hosts tls.intercept names, and only those, the
// proxy ends the agent's TLS with a certificate from moat's CA and sends
// each request on to the real server over a TLS connection of its own,
// whose certificate it verifies. In between it sees each request, so it can
// add credentials, apply request rules, and hold every request's Host to
// the tunnel's destination. Every other tunnel stays opaque.

// intercepts reports whether the tunnel to host:port is terminated.
func (s *Server) intercepts(host string, port uint16) bool {
	if s.CA == nil {
		return false
	}
	for _, r := range s.InterceptExclude {
		if r.Matches(host, port) {
			return false
		}
	}
	for _, r := range s.Intercept {
		if r.Matches(host, port) {
			return true
		}
	}
	return false
}

// intercept serves a CONNECT tunnel to host:port by terminating its TLS.
// The checked upstream connection is not used: each request dials through
// the checked path again, so a reload applies to the next request.
func (s *Server) intercept(c *clientConn, d *dest, rec audit.Record, start time.Time) {
	d.conn.Close()
	host, port := rec.Host, rec.Port
	rec.Addr, rec.Decision, rec.Event, rec.Status = d.addr.String(), "allow", "open", 200
	rec.Rule, rec.Reason, rec.WouldDeny = d.decision.Rule, d.decision.Reason, d.decision.WouldDeny
	rec.Detail = "tls terminated"
	s.record(rec)

	var sni string
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			sni = hello.ServerName
			if sni != "" && !sameName(sni, host) {
				return nil, errSNIMismatch
			}
			name, err := policy.NormalizeHost(host)
			if err != nil {
				name = host
			}
			return s.CA.Leaf(name)
		},
	}
	tc := tls.Server(c, cfg)
	tc.SetDeadline(time.Now().Add(orDefault(s.HelloTimeout, DefaultHelloTimeout)))
	err := tc.Handshake()
	tc.SetDeadline(time.Time{})
	rec.SNI = sni
	if err != nil {
		rec.Event, rec.Duration = "close", ms(time.Since(start))
		rec.Decision, rec.Rule = "deny", "bad-client-hello"
		rec.Reason = fmt.Sprintf("TLS handshake with the client failed: %v", err)
		if errors.Is(err, errSNIMismatch) {
			rec.Rule = "sni-mismatch"
			rec.Reason = fmt.Sprintf("TLS server name %q does not match the tunnel's destination %q", oneLine(sni), host)
		}
		s.record(rec)
		return
	}
	h := &interceptHandler{s: s, host: host, port: port, session: c.session, client: c.client}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		(&http2.Server{IdleTimeout: orDefault(s.IdleTimeout, DefaultIdleTimeout)}).ServeConn(tc, &http2.ServeConnOpts{Handler: h})
	} else {
		hs := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: orDefault(s.HeaderTimeout, DefaultHeaderTimeout),
			IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
			MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		}
		hs.Serve(newOneConnListener(tc))
	}
	rec.Event, rec.Duration = "close", ms(time.Since(start))
	rec.BytesUp, rec.BytesDown = h.up.Load(), h.down.Load()
	s.record(rec)
}

var errSNIMismatch = errors.New("server name does not match the tunnel's destination")

// interceptHandler serves the requests inside one terminated tunnel.
type interceptHandler struct {
	s               *Server
	host            string
	port            uint16
	session, client string
	up, down        atomic.Int64
}

func (h *interceptHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	start := time.Now()
	target := net.JoinHostPort(h.host, strconv.Itoa(int(h.port)))
	rec := audit.Record{Kind: audit.KindRequest, Proto: "mitm", Client: h.client, Session: h.session,
		Method: r.Method, Host: h.host, Port: h.port, Path: r.URL.Path, Decision: "allow"}
	refuse := func(status int, rule, reason string) {
		rec.Decision, rec.Rule, rec.Reason, rec.Status = "deny", rule, reason, status
		if status >= 500 {
			rec.Decision = "allow"
		}
		rec.Duration = ms(time.Since(start))
		s.record(rec)
		writeHTTPRefusal(w, status, rule, target, reason)
	}
	// Inside the tunnel, the request's Host (HTTP/2 :authority) must name
	// the tunnel's destination: one canonical destination, or a request
	// could carry another host's credentials to this one.
	if !sameAuthority(r.Host, h.host, h.port, h.port) && !sameAuthority(r.Host, h.host, h.port, 443) {
		refuse(421, "host-mismatch", fmt.Sprintf("the request's Host %q does not name the tunnel's destination %s", oneLine(r.Host), target))
		return
	}
	if r.Method == "TRACE" || r.Method == "TRACK" || r.Method == http.MethodConnect {
		refuse(403, "method-refused", r.Method+" is never proxied")
		return
	}
	if d := s.policy().Egress(h.host, h.port); !d.Allowed() {
		refuse(403, d.Rule, d.Reason)
		return
	}
	if d := s.checkRequestRules(h.host, h.port, r.Method, r.URL.EscapedPath()); !d.Allowed() {
		refuse(403, d.Rule, d.Reason)
		return
	}
	if rf := s.admit(h.session, h.host, h.port); rf != nil {
		refuse(rf.status, rf.Rule, rf.Reason)
		return
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "https", target
	out.Host = r.Host
	out.Header = r.Header.Clone()
	removeHopByHop(out.Header)
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	applied, ref := applyCredentials(out, s.Credentials, h.host, h.port, true)
	if ref != nil {
		rec.Detail = "attempted exfiltration"
		refuse(ref.status, ref.Rule, ref.Reason)
		return
	}
	var mask *masker
	if len(applied) > 0 {
		out.Header.Del("Accept-Encoding")
		mask = newMasker(applied)
		rec.Credential = credentialNames(applied)
	}
	var up atomic.Int64
	if r.Body != nil && r.Body != http.NoBody {
		out.Body = &countingBody{ReadCloser: s.chargeBody(r.Body, h.session, h.host, h.port), n: &up}
	}
	var conn net.Conn
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }})
	resp, err := s.transportFor(h.session).RoundTrip(out.WithContext(ctx))
	if err != nil {
		var rf *refusal
		switch {
		case errors.As(err, &rf):
			refuse(rf.status, rf.Rule, rf.Reason)
		case errors.Is(err, context.Canceled):
			rec.Status, rec.Rule, rec.Reason = 499, "client-canceled", "the client went away before the upstream answered"
			s.record(rec)
		default:
			refuse(502, "upstream-error", fmt.Sprintf("upstream: %v", unwrapDialError(err)))
		}
		return
	}
	defer resp.Body.Close()
	if cc := checkedOf(conn); cc != nil {
		rec.Addr = cc.addr.String()
		rec.Rule, rec.Reason, rec.WouldDeny = cc.decision.Rule, cc.decision.Reason, cc.decision.WouldDeny
	}
	if mask != nil {
		if err := decodeForMasking(resp); err != nil {
			refuse(502, "unmaskable-response", err.Error())
			return
		}
	}
	down, _ := copyResponse(w, resp, mask)
	rec.Status, rec.BytesUp, rec.BytesDown = resp.StatusCode, up.Load(), down
	rec.Duration = ms(time.Since(start))
	h.up.Add(rec.BytesUp)
	h.down.Add(down)
	s.record(rec)
}

// copyResponse writes resp to w, flushing after every read (server-sent
// events go out as they come) and masking secrets when mask is set.
func copyResponse(w http.ResponseWriter, resp *http.Response, mask *masker) (int64, error) {
	removeHopByHop(resp.Header)
	var sm *streamMasker
	if mask != nil {
		mask.header(resp.Header)
		sm = &streamMasker{m: mask}
		if !mask.sameLength() {
			resp.Header.Del("Content-Length")
		}
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	var n int64
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	write := func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		nw, err := w.Write(p)
		n += int64(nw)
		if fl != nil {
			fl.Flush()
		}
		return err
	}
	for {
		nr, rerr := resp.Body.Read(*buf)
		if nr > 0 {
			p := (*buf)[:nr]
			if sm != nil {
				p = sm.write(p)
			}
			if err := write(p); err != nil {
				return n, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	if sm != nil {
		return n, write(sm.flush())
	}
	return n, nil
}

// oneConnListener hands http.Server one connection, then blocks until that
// connection is closed, so Serve returns when the tunnel ends.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{closed: make(chan struct{})}
	l.conn = &notifyConn{Conn: c, l: l}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

type notifyConn struct {
	net.Conn
	l    *oneConnListener
	once sync.Once
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.l.closed) })
	return err
}

// checkRequestRules applies the policy's per-host method and path rules,
// when the policy has any. Without rules every request passes.
func (s *Server) checkRequestRules(host string, port uint16, method, path string) policy.Decision {
	if rr, ok := s.policy().(interface {
		Request(host string, port uint16, method, path string) policy.Decision
	}); ok {
		return rr.Request(host, port, method, path)
	}
	return policy.Decision{Verdict: policy.Allow}
}
