package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

var errHeaderTooLarge = errors.New("request headers too large")

// headerInfo is what the proxy reads from the raw header block before
// net/http parses it: net/http drops the Host header of an absolute-form
// request and quietly settles Content-Length/Transfer-Encoding conflicts,
// and a proxy must refuse both.
type headerInfo struct {
	hosts    []string
	cl       int  // Content-Length fields
	te       bool // a Transfer-Encoding field
	obsFold  bool // a continuation line (obsolete line folding)
	bareLF   bool
	received int
}

// readHeaderBlock waits until the client's reader holds a whole header
// block (up to the blank line), without consuming it, and scans it. The
// connection's read deadline bounds the wait, which is what stops a
// slowloris client. The reader starts small and grows once, up to max, for
// a request with large headers.
func readHeaderBlock(c *clientConn, max int) (headerInfo, error) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := headerEnd(buf); end >= 0 {
			return scanHeader(buf[:end]), nil
		}
		if len(buf) >= max {
			return headerInfo{received: len(buf)}, errHeaderTooLarge
		}
		if len(buf) == c.br.Size() {
			growReader(c, max+1)
			continue
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return headerInfo{received: len(buf)}, err
		}
	}
}

// growReader replaces the client's reader with a larger one that first
// returns what the old one held.
func growReader(c *clientConn, size int) {
	held, _ := c.br.Peek(c.br.Buffered())
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(held)), c.Conn), size)
}

func headerEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

func scanHeader(b []byte) headerInfo {
	h := headerInfo{received: len(b)}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 || !bytes.HasSuffix(line, []byte("\r")) {
			if len(line) > 0 {
				h.bareLF = true
			}
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if i == 0 || len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			h.obsFold = true
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // net/http refuses it
		}
		switch strings.ToLower(string(name)) {
		case "host":
			h.hosts = append(h.hosts, strings.TrimSpace(string(value)))
		case "content-length":
			h.cl++
		case "transfer-encoding":
			h.te = true
		}
	}
	return h
}

// serveHTTP serves HTTP proxy requests on one client connection until it
// closes, a request asks to close, or a request is refused. The policy is
// consulted for every request: a kept-alive connection gets no allowance
// from an earlier request.
func (s *Server) serveHTTP(c *clientConn) {
	maxHdr := orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	for first := true; ; first = false {
		if !first {
			// Between requests the client may stay idle, up to IdleTimeout.
			c.SetReadDeadline(time.Now().Add(orDefault(s.IdleTimeout, DefaultIdleTimeout)))
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(orDefault(s.HeaderTimeout, DefaultHeaderTimeout)))
		}
		start := time.Now()
		info, err := readHeaderBlock(c, maxHdr)
		if err != nil {
			s.badHeader(c, info, err)
			return
		}
		req, err := http.ReadRequest(c.br)
		if err != nil {
			s.refuseHTTP(c, start, nil, 400, "bad-request", "", fmt.Sprintf("malformed request: %v", err))
			return
		}
		c.SetReadDeadline(time.Time{})
		if !s.authorize(c, req, start) {
			return
		}
		switch {
		case info.te && info.cl > 0:
			s.refuseHTTP(c, start, req, 400, "request-smuggling", "", "the request has both Content-Length and Transfer-Encoding")
			return
		case info.obsFold:
			s.refuseHTTP(c, start, req, 400, "request-smuggling", "", "the request folds a header over several lines (obsolete line folding)")
			return
		case len(info.hosts) > 1:
			s.refuseHTTP(c, start, req, 400, "bad-request", "", "the request has more than one Host header")
			return
		}
		if req.Method == http.MethodConnect {
			s.handleConnect(c, req, start)
			return
		}
		if !s.forward(c, req, info, start) {
			return
		}
	}
}

func (s *Server) badHeader(c *clientConn, info headerInfo, err error) {
	switch {
	case errors.Is(err, errHeaderTooLarge):
		s.refuseHTTP(c, time.Now(), nil, 431, "header-too-large",
			"", fmt.Sprintf("request line and headers exceed %d bytes", orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes)))
	case info.received > 0 && isTimeout(err):
		// A client that started a request and stalled: a slowloris, or a
		// broken client. Say so, in the audit and to the client.
		s.refuseHTTP(c, time.Now(), nil, 408, "header-timeout",
			"", fmt.Sprintf("the request headers did not arrive within %v", orDefault(s.HeaderTimeout, DefaultHeaderTimeout)))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// authorize checks proxy credentials when sessions are configured. The
// token is compared in constant time and never logged.
func (s *Server) authorize(c *clientConn, req *http.Request, start time.Time) bool {
	if len(s.Sessions) == 0 {
		return true
	}
	user, ok := s.checkBasic(req.Header.Get("Proxy-Authorization"))
	if !ok {
		s.refuseHTTP(c, start, req, 407, "proxy-auth", "", "the proxy requires credentials and none valid were given")
		return false
	}
	c.session = user
	return true
}

func (s *Server) checkBasic(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false
	}
	return user, s.checkToken(user, pass)
}

func (s *Server) checkToken(user, token string) bool {
	want, ok := s.Sessions[user]
	if !ok {
		want = "\x00never" // compare anyway, so timing does not reveal user names
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1 && ok
}

// refuseHTTP answers with a refusal of the proxy's own and records it.
func (s *Server) refuseHTTP(c *clientConn, start time.Time, req *http.Request, status int, rule, target, reason string) {
	rec := audit.Record{Kind: audit.KindRequest, Proto: "http", Client: c.client, Session: c.session,
		Decision: "deny", Rule: rule, Reason: reason, Status: status}
	method := ""
	if req != nil {
		method = req.Method
		rec.Method = req.Method
		if req.Method == http.MethodConnect {
			rec.Kind, rec.Proto = audit.KindConnect, "connect"
		}
		if h, p, ok := targetOf(req); ok {
			rec.Host, rec.Port = h, p
			if target == "" {
				target = net.JoinHostPort(h, strconv.Itoa(int(p)))
			}
		}
		if req.URL != nil && req.Method != http.MethodConnect {
			rec.Path = req.URL.Path
		}
	}
	if status >= 500 {
		rec.Decision = "allow" // the policy allowed it; the upstream failed
	}
	if rule == ruleExfiltration {
		rec.Detail = "attempted exfiltration"
	}
	rec.Duration = ms(time.Since(start))
	s.record(rec)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	writeRefusal(c, status, rule, target, reason, method)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// targetOf returns the destination a request names: the CONNECT authority,
// or the absolute URI's host and port.
func targetOf(req *http.Request) (string, uint16, bool) {
	if req.Method == http.MethodConnect {
		return splitHostPort(req.RequestURI, 0)
	}
	if req.URL == nil || req.URL.Host == "" {
		return "", 0, false
	}
	def := uint16(80)
	if strings.EqualFold(req.URL.Scheme, "https") {
		def = 443
	}
	return splitHostPort(req.URL.Host, def)
}

// splitHostPort splits "host:port", "[v6]:port", or a bare host when def is
// non-zero. The host comes back without brackets.
func splitHostPort(hp string, def uint16) (string, uint16, bool) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		if def == 0 {
			return "", 0, false
		}
		host = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]")
		if host == "" || strings.ContainsAny(host, "[]") {
			return "", 0, false
		}
		return host, def, true
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 || host == "" {
		return "", 0, false
	}
	return host, uint16(p), true
}

// sameAuthority reports whether a Host header names the same destination as
// the request target, ports defaulted, names normalised.
func sameAuthority(hostHeader, host string, port uint16, def uint16) bool {
	h, p, ok := splitHostPort(hostHeader, def)
	if !ok || p != port {
		return false
	}
	a, err1 := policy.NormalizeHost(h)
	b, err2 := policy.NormalizeHost(host)
	if err1 != nil || err2 != nil {
		// A malformed target is the policy's to refuse, with its own rule;
		// here only the two spellings need to agree.
		return strings.EqualFold(h, host)
	}
	return a == b
}

// forward serves one absolute-form request. It reports whether the
// connection may carry another request.
func (s *Server) forward(c *clientConn, req *http.Request, info headerInfo, start time.Time) bool {
	if req.URL.Host == "" || req.URL.Scheme == "" {
		s.refuseHTTP(c, start, req, 400, "not-proxy-request", "",
			"this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT")
		return false
	}
	scheme := strings.ToLower(req.URL.Scheme)
	if scheme != "http" && scheme != "https" {
		s.refuseHTTP(c, start, req, 400, "bad-scheme", "", fmt.Sprintf("scheme %q is not proxied; use http or https", req.URL.Scheme))
		return false
	}
	host, port, ok := targetOf(req)
	if !ok {
		s.refuseHTTP(c, start, req, 400, "bad-request", "", fmt.Sprintf("cannot read a host and port from %q", req.URL.Host))
		return false
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(port)))
	def := uint16(80)
	if scheme == "https" {
		def = 443
	}
	if len(info.hosts) == 1 && !sameAuthority(info.hosts[0], host, port, def) {
		s.refuseHTTP(c, start, req, 421, "host-mismatch", target,
			fmt.Sprintf("the Host header %q does not name the request's destination %s", oneLine(info.hosts[0]), target))
		return false
	}
	if req.Method == "TRACE" || req.Method == "TRACK" {
		s.refuseHTTP(c, start, req, 403, "method-refused", target, req.Method+" echoes requests back and is never proxied")
		return false
	}
	// The name is checked here for every request, before any pooled
	// connection is reused; the transport's dialer checks addresses.
	if d := s.policy().Egress(host, port); !d.Allowed() {
		s.refuseHTTP(c, start, req, 403, d.Rule, target, d.Reason)
		return false
	}
	if d := s.checkRequestRules(host, port, req.Method, req.URL.EscapedPath()); !d.Allowed() {
		s.refuseHTTP(c, start, req, 403, d.Rule, target, d.Reason)
		return false
	}
	if r := s.admit(c.session, host, port); r != nil {
		s.refuseHTTP(c, start, req, r.status, r.Rule, target, r.Reason)
		return false
	}

	var up atomic.Int64
	out := req.Clone(req.Context())
	out.RequestURI = ""
	out.URL.Scheme = scheme
	out.Host = req.URL.Host
	out.Header = req.Header.Clone()
	removeHopByHop(out.Header)
	out.Close = false
	applied, ref := applyCredentials(out, s.Credentials, host, port, scheme == "https")
	if ref != nil {
		s.refuseHTTP(c, start, req, ref.status, ref.Rule, target, ref.Reason)
		return false
	}
	var mask *masker
	if len(applied) > 0 {
		// The response must come back uncompressed for a reflected secret
		// to be found and masked.
		out.Header.Del("Accept-Encoding")
		mask = newMasker(applied)
	}
	var body *countingBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &countingBody{ReadCloser: s.chargeBody(req.Body, c.session, host, port), n: &up}
		out.Body = body
	}
	var conn net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }}
	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(req.Context(), trace))
	defer cancel()
	out = out.WithContext(ctx)

	resp, err := s.transportFor(c.session).RoundTrip(out)
	if err != nil {
		var r *refusal
		if errors.As(err, &r) {
			s.refuseHTTP(c, start, req, r.status, r.Rule, target, r.Reason)
		} else {
			s.refuseHTTP(c, start, req, 502, "upstream-error", target, fmt.Sprintf("upstream: %v", unwrapDialError(err)))
		}
		return false
	}
	defer resp.Body.Close()

	rec := audit.Record{Kind: audit.KindRequest, Proto: "http", Client: c.client, Session: c.session,
		Method: req.Method, Host: host, Port: port, Path: req.URL.Path, Decision: "allow", Status: resp.StatusCode}
	if cc := checkedOf(conn); cc != nil {
		rec.Addr = cc.addr.String()
		rec.Rule, rec.Reason, rec.WouldDeny = cc.decision.Rule, cc.decision.Reason, cc.decision.WouldDeny
	}
	if d := s.policy().Egress(host, port); d.WouldDeny || rec.Rule == "" {
		rec.Rule, rec.Reason, rec.WouldDeny = d.Rule, d.Reason, d.WouldDeny || rec.WouldDeny
	}
	// A body the upstream did not read to its end (it answered early) is
	// still on the connection: the connection cannot carry another request.
	keep := !req.Close && !resp.Close && (body == nil || body.eof.Load())
	if c.bw == nil {
		c.bw = bufio.NewWriterSize(c.Conn, 4096)
	}
	bw := c.bw
	rec.Credential = credentialNames(applied)
	if mask != nil {
		if err := decodeForMasking(resp); err != nil {
			s.refuseHTTP(c, start, req, 502, "unmaskable-response", target, err.Error())
			return false
		}
	}
	down, werr := writeResponse(bw, resp, req.Method, !keep, mask)
	rec.BytesUp, rec.BytesDown = up.Load(), down
	rec.Duration = ms(time.Since(start))
	if werr != nil {
		rec.Detail = "response not delivered: " + werr.Error()
		keep = false
	}
	s.record(rec)
	return keep
}

type countingBody struct {
	io.ReadCloser
	n   *atomic.Int64
	eof atomic.Bool // read to its end
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1), plus the proxy's own credential and error headers.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", ErrorHeader,
}

// removeHopByHop removes the hop-by-hop headers and those that Connection
// names, both ways, as httputil.ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = textprotoKey(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

func textprotoKey(s string) string { return http.CanonicalHeaderKey(strings.TrimSpace(s)) }

// writeResponse writes an upstream response to the client as HTTP/1.1. The
// body is flushed after every read from upstream, so server-sent events
// arrive event by event rather than when a buffer fills. With a masker,
// secrets in the headers and body are replaced before the client sees them.
func writeResponse(bw *bufio.Writer, resp *http.Response, method string, close bool, mask *masker) (int64, error) {
	removeHopByHop(resp.Header)
	text := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	var sm *streamMasker
	if mask != nil {
		mask.header(resp.Header)
		sm = &streamMasker{m: mask}
		if !mask.sameLength() {
			resp.ContentLength = -1 // masking may change the length: send it chunked
		}
	}
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, oneLine(text))
	noBody := method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304 || resp.StatusCode/100 == 1
	chunked := false
	switch {
	case noBody:
	case resp.ContentLength >= 0:
		resp.Header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	default:
		chunked = true
		resp.Header.Del("Content-Length")
		resp.Header.Set("Transfer-Encoding", "chunked")
	}
	if close {
		resp.Header.Set("Connection", "close")
	}
	if err := resp.Header.Write(bw); err != nil {
		return 0, err
	}
	bw.WriteString("\r\n")
	if noBody {
		return 0, bw.Flush()
	}
	// The headers wait for the first piece of the body, so a small reply
	// goes out in one write, unless the body is of unknown length: a
	// stream's headers go out at once.
	if resp.ContentLength < 0 {
		if err := bw.Flush(); err != nil {
			return 0, err
		}
	}
	var n int64
	send := func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		if chunked {
			fmt.Fprintf(bw, "%x\r\n", len(p))
		}
		bw.Write(p)
		if chunked {
			bw.WriteString("\r\n")
		}
		n += int64(len(p))
		return bw.Flush()
	}
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	for {
		nr, rerr := resp.Body.Read(*buf)
		if nr > 0 {
			p := (*buf)[:nr]
			if sm != nil {
				p = sm.write(p)
			}
			if err := send(p); err != nil {
				return n, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, fmt.Errorf("read upstream body: %w", rerr)
		}
	}
	if sm != nil {
		if err := send(sm.flush()); err != nil {
			return n, err
		}
	}
	if chunked {
		bw.WriteString("0\r\n\r\n")
	}
	return n, bw.Flush()
}

func credentialNames(cs []*Credential) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name)
	}
	return strings.Join(s, ",")
}

// checkedConn is an upstream connection with the decision that allowed it.
type checkedConn struct {
	net.Conn
	dest
}

func checkedOf(c net.Conn) *checkedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*checkedConn)
	return cc
}

type transport = http.Transport

// transportFor returns the session's own transport: pooled upstream
// connections are never shared between sandboxes.
func (s *Server) transportFor(session string) *http.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.transport[session]; ok {
		return t
	}
	if s.transport == nil {
		s.transport = make(map[string]*transport)
	}
	t := s.newTransport(func(ctx context.Context, addr string) (net.Conn, error) {
		host, port, ok := splitHostPort(addr, 0)
		if !ok {
			return nil, fmt.Errorf("bad upstream address %q", addr)
		}
		d, err := s.connect(ctx, host, port)
		if err != nil {
			return nil, err
		}
		return &checkedConn{Conn: d.conn, dest: *d}, nil
	})
	s.transport[session] = t
	return t
}

// newTransport is an upstream transport that dials only through dial.
func (s *Server) newTransport(dial func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		Proxy: nil, // never ProxyFromEnvironment: the proxy must not obey its own environment
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, addr)
		},
		TLSClientConfig:        s.UpstreamTLS.Clone(),
		DisableCompression:     true, // pass the client's Accept-Encoding and the body through untouched
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
}
