package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// Endpoint is a reverse endpoint: a plain-HTTP address inside the boundary
// that stands for one HTTPS upstream. An agent pointed at it (for Claude
// Code, ANTHROPIC_BASE_URL=http://127.0.0.1:8080) sends requests without a
// key; the proxy adds the credentials bound for the upstream and forwards
// over TLS, verifying the upstream's certificate.
type Endpoint struct {
	Name     string
	Upstream *url.URL // scheme https, host[:port], optional base path
}

// ParseEndpoint reads NAME=URL, as the --endpoint flag takes it.
func ParseEndpoint(s string) (Endpoint, error) {
	name, raw, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Endpoint{}, fmt.Errorf("endpoint %q: expected NAME=https://host", s)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %s: %w", name, err)
	}
	switch {
	case u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("endpoint %s: %q: the upstream must be https:// (credentials never travel in clear text)", name, raw)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return Endpoint{}, fmt.Errorf("endpoint %s: %q: expected https://host[:port][/base-path]", name, raw)
	}
	if _, _, ok := splitHostPort(u.Host, 443); !ok {
		return Endpoint{}, fmt.Errorf("endpoint %s: %q: bad host", name, raw)
	}
	return Endpoint{Name: name, Upstream: u}, nil
}

// ServeEndpoint serves ep on l until Shutdown or Close. The endpoint's
// upstream counts as allowed by its declaration, but its addresses are
// still checked (a private address needs network.allow_private) and the
// policy's deny list still applies.
func (s *Server) ServeEndpoint(l net.Listener, ep Endpoint) error {
	host, port, _ := splitHostPort(ep.Upstream.Host, 443)
	h := &endpointHandler{s: s, ep: ep, host: host, port: port}
	h.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(ep.Upstream)
			pr.Out.Host = ep.Upstream.Host
			// SetXForwarded is not called: the upstream has no business
			// knowing the sandbox's addresses.
		},
		Transport:     s.endpointTransport(ep, host, port),
		BufferPool:    copyBuffers{},
		FlushInterval: -1, // server-sent events go out as they arrive
		ErrorHandler:  h.upstreamError,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del(ErrorHeader)
			if call, ok := resp.Request.Context().Value(callKey{}).(*endpointCall); ok && call.mask != nil {
				m := call.mask
				if err := decodeForMasking(resp); err != nil {
					return &refusal{status: 502, host: host, port: port, Decision: policy.Decision{Rule: "unmaskable-response", Reason: err.Error()}}
				}
				m.header(resp.Header)
				resp.Body = &maskingBody{rc: resp.Body, sm: &streamMasker{m: m}}
				if !m.sameLength() {
					resp.ContentLength = -1
					resp.Header.Del("Content-Length")
				}
			}
			return nil
		},
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(s.HeaderTimeout, DefaultHeaderTimeout),
		IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ErrorLog:          nil,
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.endpoints == nil {
		s.endpoints = make(map[*http.Server]struct{})
	}
	s.endpoints[hs] = struct{}{}
	s.mu.Unlock()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// endpointCall is one request's state, shared with the reverse proxy's
// hooks through the request context.
type endpointCall struct {
	rec      audit.Record
	mask     *masker
	recorded bool     // upstreamError wrote the record
	conn     net.Conn // the upstream connection, for the record's address
}

type callKey struct{}

// endpointTransport dials the endpoint's upstream through the same checked
// path as every other destination.
func (s *Server) endpointTransport(ep Endpoint, host string, port uint16) *http.Transport {
	t := s.newTransport(func(ctx context.Context, addr string) (net.Conn, error) {
		d, err := s.connectAs(ctx, host, port, policy.Decision{Verdict: policy.Allow,
			Rule: "endpoint " + ep.Name, Reason: "the reverse endpoint " + ep.Name + " names " + ep.Upstream.Host})
		if err != nil {
			return nil, err
		}
		return &checkedConn{Conn: d.conn, dest: *d}, nil
	})
	t.ForceAttemptHTTP2 = true // the upstream may multiplex; clients inside speak plain HTTP/1.1
	s.mu.Lock()
	if s.transport == nil {
		s.transport = make(map[string]*transport)
	}
	s.transport["endpoint:"+ep.Name] = t
	s.mu.Unlock()
	return t
}

type endpointHandler struct {
	s    *Server
	ep   Endpoint
	host string
	port uint16
	rp   *httputil.ReverseProxy
}

func (h *endpointHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s := h.s
	call := &endpointCall{}
	rec := &call.rec
	*rec = audit.Record{Kind: audit.KindRequest, Proto: "reverse", Client: clientOf(r), Method: r.Method,
		Host: h.host, Port: h.port, Path: r.URL.Path, Decision: "allow", Rule: "endpoint " + h.ep.Name}
	refuse := func(status int, rule, reason string) {
		rec.Decision, rec.Rule, rec.Reason, rec.Status = "deny", rule, reason, status
		if status >= 500 {
			rec.Decision = "allow"
		}
		rec.Duration = ms(time.Since(start))
		s.record(*rec)
		writeHTTPRefusal(w, status, rule, net.JoinHostPort(h.host, strconv.Itoa(int(h.port))), reason)
	}
	if r.Method == "TRACE" || r.Method == "TRACK" || r.Method == http.MethodConnect {
		refuse(403, "method-refused", r.Method+" is not forwarded by a reverse endpoint")
		return
	}
	// The policy's deny list applies to endpoints too.
	if d := s.policy().Egress(h.host, h.port); !d.Allowed() && d.Rule != policy.RuleDefaultDeny {
		refuse(403, d.Rule, d.Reason)
		return
	}
	if d := s.checkRequestRules(h.host, h.port, r.Method, r.URL.EscapedPath()); !d.Allowed() {
		refuse(403, d.Rule, d.Reason)
		return
	}
	if rf := s.admit("", h.host, h.port); rf != nil {
		refuse(rf.status, rf.Rule, rf.Reason)
		return
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host = "https", h.ep.Upstream.Host
	applied, ref := applyCredentials(out, s.Credentials, h.host, h.port, true)
	if ref != nil {
		rec.Detail = "attempted exfiltration"
		refuse(ref.status, ref.Rule, ref.Reason)
		return
	}
	// applyCredentials worked on a copy; carry its headers over, as the
	// reverse proxy's outbound request is built from r.
	r.Header = out.Header
	r.URL.RawQuery = out.URL.RawQuery
	if len(applied) > 0 {
		r.Header.Del("Accept-Encoding") // an echoed secret must be findable to be masked
		call.mask = newMasker(applied)
		rec.Credential = credentialNames(applied)
	}
	var up atomic.Int64
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: s.chargeBody(r.Body, "", h.host, h.port), n: &up}
	}
	cw := &countingWriter{ResponseWriter: w}
	ctx := context.WithValue(r.Context(), callKey{}, call)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { call.conn = i.Conn }})
	h.rp.ServeHTTP(cw, r.WithContext(ctx))
	if call.recorded {
		return
	}
	if cc := checkedOf(call.conn); cc != nil {
		rec.Addr = cc.addr.String()
	}
	rec.Status, rec.BytesUp, rec.BytesDown = cw.status, up.Load(), cw.n
	rec.Duration = ms(time.Since(start))
	s.record(*rec)
}

// upstreamError answers when the upstream could not be reached or refused
// by policy at dial time. Errors the upstream itself returned (a 4xx, a
// 5xx) are not errors here: they reach the client unchanged.
func (h *endpointHandler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	call, _ := r.Context().Value(callKey{}).(*endpointCall)
	status, rule, reason := 502, "upstream-error", fmt.Sprintf("upstream: %v", unwrapDialError(err))
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		status, rule, reason = ref.status, ref.Rule, ref.Reason
	case errors.Is(err, context.Canceled):
		status, rule, reason = 499, "client-canceled", "the client went away before the upstream answered"
	}
	if call != nil {
		call.rec.Status, call.rec.Rule, call.rec.Reason = status, rule, reason
		if status == 403 {
			call.rec.Decision = "deny"
		}
		h.s.record(call.rec)
		call.recorded = true
	}
	if status == 499 {
		return
	}
	writeHTTPRefusal(w, status, rule, net.JoinHostPort(h.host, strconv.Itoa(int(h.port))), reason)
}

// writeHTTPRefusal is writeRefusal for an http.ResponseWriter.
func writeHTTPRefusal(w http.ResponseWriter, status int, rule, target, reason string) {
	var b strings.Builder
	writeRefusal(&b, status, rule, target, reason, "")
	resp := b.String()
	_, body, _ := strings.Cut(resp, "\r\n\r\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(ErrorHeader, oneLine(rule+"; host="+target))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func clientOf(r *http.Request) string {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "unix"
	}
	return r.RemoteAddr
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maskingBody masks a response body as it is read.
type maskingBody struct {
	rc      io.ReadCloser
	sm      *streamMasker
	buf     []byte // reused between reads
	pending []byte
	eof     bool
}

func (b *maskingBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if cap(b.buf) < len(p) {
			b.buf = make([]byte, len(p))
		}
		buf := b.buf[:len(p)]
		n, err := b.rc.Read(buf)
		b.pending = append(b.pending, b.sm.write(buf[:n])...)
		if err == io.EOF {
			b.eof = true
			b.pending = append(b.pending, b.sm.flush()...)
		} else if err != nil {
			return 0, err
		}
		if len(b.pending) == 0 && n > 0 {
			// Everything read could begin a secret; read on.
			continue
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

func (b *maskingBody) Close() error { return b.rc.Close() }

// copyBuffers lends the reverse proxy the relay's pooled buffers, instead
// of a new 32 KiB buffer per response.
type copyBuffers struct{}

func (copyBuffers) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { bufPool.Put(&b) }
