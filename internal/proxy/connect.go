package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// handleConnect opens a CONNECT tunnel after the destination is checked.
func (s *Server) handleConnect(c *clientConn, req *http.Request, start time.Time) {
	host, port, ok := splitHostPort(req.RequestURI, 0)
	if !ok {
		s.refuseHTTP(c, start, req, 400, "bad-request", "",
			fmt.Sprintf("CONNECT target %q is not host:port", oneLine(req.RequestURI)))
		return
	}
	// A Host header on CONNECT routes nothing: clients disagree on it (Node
	// names the proxy there), and the tunnel goes to the target checked
	// below. What names the destination inside the tunnel is the TLS server
	// name, which checkHello holds to the target.
	target := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if r := s.admit(c.session, host, port); r != nil {
		s.refuseHTTP(c, start, req, r.status, r.Rule, target, r.Reason)
		return
	}
	d, err := s.connect(req.Context(), host, port)
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = &refusal{status: 502, Decision: policy.Decision{Rule: "upstream-error", Reason: err.Error()}}
		}
		s.refuseHTTP(c, start, req, r.status, r.Rule, target, r.Reason)
		return
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		d.conn.Close()
		return
	}
	c.SetWriteDeadline(time.Time{})
	rec := audit.Record{Kind: audit.KindConnect, Proto: "connect", Client: c.client, Session: c.session,
		Method: http.MethodConnect, Host: host, Port: port}
	if s.intercepts(host, port) {
		s.intercept(c, d, rec, start)
		return
	}
	s.charge(d, c.session, host, port)
	s.tunnel(c, d, rec, start)
}

// tunnel relays bytes between a client and a checked upstream connection
// until either side closes. If the client starts TLS, its ClientHello's SNI
// must name the host that was checked, or the tunnel is refused before one
// byte of it reaches the upstream.
func (s *Server) tunnel(c *clientConn, d *dest, rec audit.Record, start time.Time) {
	up := d.conn
	rec.Addr = d.addr.String()
	rec.Decision = "allow"
	rec.Rule, rec.Reason, rec.WouldDeny = d.decision.Rule, d.decision.Reason, d.decision.WouldDeny
	rec.Event = "open"
	rec.Status = 200
	if rec.Proto == "socks5" {
		rec.Status = 0
	}
	s.record(rec)
	if !s.track(up) { // Close must be able to end the tunnel from either side
		up.Close()
		return
	}
	// The two directions run in goroutines of their own and the goroutine
	// that read the request ends here: its stack, grown by parsing, is not
	// kept for as long as the tunnel sits idle.
	t := &tunnelRun{s: s, c: c, up: up, rec: rec, start: start}
	t.left.Store(2)
	c.handedOff = true
	s.wg.Add(2)
	go t.upstreamToClient()
	go t.clientSide()
}

// tunnelRun is one open tunnel; the direction that finishes last closes it.
type tunnelRun struct {
	s          *Server
	c          *clientConn
	up         net.Conn
	rec        audit.Record
	start      time.Time
	upN, downN atomic.Int64
	upDone     atomic.Bool
	left       atomic.Int32
	refused    bool
}

// upstreamToClient starts at once: some protocols speak first.
func (t *tunnelRun) upstreamToClient() {
	defer t.s.wg.Done()
	relay(t.c.Conn, t.up, &t.downN)
	closeWrite(t.c.Conn)
	// The upstream is done; a client that keeps its side open gets a
	// little time to notice, not forever.
	t.upDone.Store(true)
	t.c.SetReadDeadline(time.Now().Add(halfCloseGrace))
	t.finish()
}

func (t *tunnelRun) clientSide() {
	defer t.s.wg.Done()
	t.refused = t.s.clientToUpstream(t.c, t.up, &t.rec, &t.upN, &t.upDone)
	// The client is done sending. The upstream may still be answering a
	// client that half-closed after its request: give it a little time.
	grace := time.Now().Add(halfCloseGrace)
	t.up.SetReadDeadline(grace)
	t.c.SetWriteDeadline(grace)
	t.finish()
}

func (t *tunnelRun) finish() {
	if t.left.Add(-1) != 0 {
		return
	}
	t.c.Close()
	t.up.Close()
	t.s.untrack(t.c.Conn)
	t.s.untrack(t.up)
	t.s.active.Add(-1)
	rec := t.rec
	rec.Event = "close"
	rec.BytesUp, rec.BytesDown = t.upN.Load(), t.downN.Load()
	rec.Duration = ms(time.Since(t.start))
	if t.refused {
		rec.Decision = "deny"
		rec.WouldDeny = false
	}
	t.s.record(rec)
}

// halfCloseGrace is how long a tunnel stays open after one side finished.
const halfCloseGrace = 5 * time.Second

// clientToUpstream relays the client's bytes, after checking a TLS
// ClientHello if the client starts with one. It reports whether the tunnel
// was refused.
func (s *Server) clientToUpstream(c *clientConn, up net.Conn, rec *audit.Record, n *atomic.Int64, upDone *atomic.Bool) bool {
	if c.br.Buffered() == 0 {
		// An idle tunnel waits here holding no buffer at all.
		c.br = nil
		if err := waitReadable(c.Conn); err != nil {
			return false
		}
		c.br = bufio.NewReaderSize(c.Conn, helloReader)
	}
	refused := s.checkHello(c, rec.Host, rec)
	if upDone.Load() {
		c.SetReadDeadline(time.Now().Add(halfCloseGrace))
	}
	if refused {
		c.Close()
		up.Close()
		return true
	}
	if err := drain(up, c, n); err == nil {
		relay(up, c.Conn, n)
		closeWrite(up)
	}
	return false
}

// helloReader fits one TLS record of the largest size, which holds any
// common ClientHello; peekSNI grows it for one that spans several records.
const helloReader = 16384 + 5

// drain passes on what the client's reader buffered (the ClientHello, or
// early data), then lets the reader go: the rest is relayed from the
// connection itself.
func drain(up net.Conn, c *clientConn, n *atomic.Int64) error {
	if b := c.br.Buffered(); b > 0 {
		p, _ := c.br.Peek(b)
		w, err := up.Write(p)
		n.Add(int64(w))
		if err != nil {
			return err
		}
	}
	c.br = nil
	return nil
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// checkHello waits for the client's first bytes. If they are a TLS
// ClientHello with a server name other than host, it answers with a TLS
// alert, records the refusal, and reports true.
func (s *Server) checkHello(c *clientConn, host string, rec *audit.Record) bool {
	first, err := c.br.Peek(1)
	if err != nil || first[0] != 0x16 {
		return false // not TLS: an opaque tunnel to the checked address
	}
	c.SetReadDeadline(time.Now().Add(orDefault(s.HelloTimeout, DefaultHelloTimeout)))
	sni, err := peekSNI(c.br)
	if errors.Is(err, bufio.ErrBufferFull) {
		growReader(c, maxHello+5)
		sni, err = peekSNI(c.br)
	}
	c.SetReadDeadline(time.Time{})
	if err != nil {
		rec.Rule, rec.Reason = "bad-client-hello", fmt.Sprintf("cannot read the TLS ClientHello: %v", err)
	} else if sni == "" || sameName(sni, host) {
		rec.SNI = sni
		return false
	} else {
		rec.SNI = sni
		rec.Rule = "sni-mismatch"
		rec.Reason = fmt.Sprintf("TLS server name %q does not match the tunnel's destination %q", oneLine(sni), host)
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	// A fatal unrecognized_name alert: the client sees a TLS error, not a hang.
	c.Write([]byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 112})
	s.logger().Warn("proxy: tunnel refused", "host", host, "sni", oneLine(sni), "rule", rec.Rule)
	return true
}

func sameName(a, b string) bool {
	na, err1 := policy.NormalizeHost(a)
	nb, err2 := policy.NormalizeHost(b)
	return err1 == nil && err2 == nil && na == nb
}

const maxHello = 64 << 10

// peekSNI reads a TLS ClientHello from br without consuming it and returns
// its server name. crypto/tls parses it: the hello is replayed into a
// server handshake that stops as soon as the hello has been read.
func peekSNI(br *bufio.Reader) (string, error) {
	// Gather whole records until the handshake message is complete.
	need := 0
	have := 0
	for off := 0; ; {
		hdr, err := br.Peek(off + 5)
		if err != nil {
			return "", err
		}
		h := hdr[off:]
		if h[0] != 0x16 {
			return "", errors.New("not a handshake record")
		}
		n := int(h[3])<<8 | int(h[4])
		if off+5+n > maxHello+5 || n == 0 {
			return "", errors.New("ClientHello too large")
		}
		rec, err := br.Peek(off + 5 + n)
		if err != nil {
			return "", err
		}
		body := rec[off+5:]
		if need == 0 {
			if len(body) < 4 || body[0] != 1 {
				return "", errors.New("first handshake message is not a ClientHello")
			}
			need = 4 + (int(body[1])<<16 | int(body[2])<<8 | int(body[3]))
		}
		have += n
		off += 5 + n
		if have >= need {
			break
		}
	}
	raw, _ := br.Peek(br.Buffered())
	var sni string
	errDone := errors.New("done")
	conn := &replayConn{r: bytes.NewReader(raw)}
	srv := tls.Server(conn, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errDone
	}})
	if err := srv.Handshake(); err != nil && !errors.Is(err, errDone) {
		return "", err
	}
	return sni, nil
}

// replayConn feeds recorded bytes to crypto/tls and swallows its replies.
type replayConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
