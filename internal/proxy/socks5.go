package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// SOCKS5 (RFC 1928, RFC 1929), CONNECT only. Names are passed to the policy
// as the client sent them and resolved by the proxy only after the policy
// allowed them; the Go SOCKS libraries resolve first, which leaks denied
// names to DNS.

const (
	socksVersion  = 0x05
	authNone      = 0x00
	authUserPass  = 0x02
	authNoAccept  = 0xff
	cmdConnect    = 0x01
	cmdBind       = 0x02
	cmdUDP        = 0x03
	atypIPv4      = 0x01
	atypDomain    = 0x03
	atypIPv6      = 0x04
	userPassVer   = 0x01
	repSucceeded  = 0x00
	repFailure    = 0x01
	repNotAllowed = 0x02
	repNetUnreach = 0x03
	repHostUnrch  = 0x04
	repRefused    = 0x05
	repCmdUnsupp  = 0x07
	repAtypUnsupp = 0x08
)

// socksRequest is a parsed SOCKS5 request.
type socksRequest struct {
	cmd  byte
	host string // a name as sent, or an IP literal
	port uint16
}

// errSOCKS carries the reply code a parse error deserves.
type errSOCKS struct {
	rep byte
	msg string
}

func (e *errSOCKS) Error() string { return e.msg }

// readGreeting reads the version/methods message and returns the methods.
func readGreeting(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0] != socksVersion {
		return nil, fmt.Errorf("socks: version %d, want 5", h[0])
	}
	if h[1] == 0 {
		return nil, errors.New("socks: no authentication methods offered")
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, err
	}
	return methods, nil
}

// readUserPass reads an RFC 1929 username/password message.
func readUserPass(r io.Reader) (user, pass string, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", "", err
	}
	if h[0] != userPassVer {
		return "", "", fmt.Errorf("socks: username/password version %d, want 1", h[0])
	}
	u := make([]byte, int(h[1])+1) // the name, then the password's length
	if _, err := io.ReadFull(r, u); err != nil {
		return "", "", err
	}
	p := make([]byte, u[len(u)-1])
	if _, err := io.ReadFull(r, p); err != nil {
		return "", "", err
	}
	return string(u[:len(u)-1]), string(p), nil
}

// readSOCKSRequest reads a request. Errors that deserve a reply are
// *errSOCKS; others mean the client went away or spoke nonsense.
func readSOCKSRequest(r io.Reader) (socksRequest, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return socksRequest{}, err
	}
	if h[0] != socksVersion {
		return socksRequest{}, &errSOCKS{repFailure, fmt.Sprintf("socks: request version %d, want 5", h[0])}
	}
	req := socksRequest{cmd: h[1]}
	if h[2] != 0 {
		return req, &errSOCKS{repFailure, fmt.Sprintf("socks: reserved byte is %d, want 0", h[2])}
	}
	switch h[3] {
	case atypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(r, a[:]); err != nil {
			return req, err
		}
		req.host = netip.AddrFrom4(a).String()
	case atypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(r, a[:]); err != nil {
			return req, err
		}
		req.host = netip.AddrFrom16(a).String()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return req, err
		}
		if n[0] == 0 {
			return req, &errSOCKS{repHostUnrch, "socks: empty host name"}
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return req, err
		}
		req.host = string(name)
	default:
		return req, &errSOCKS{repAtypUnsupp, fmt.Sprintf("socks: address type %d not supported", h[3])}
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return req, err
	}
	req.port = binary.BigEndian.Uint16(p[:])
	if req.cmd != cmdConnect {
		return req, &errSOCKS{repCmdUnsupp, fmt.Sprintf("socks: command %d not supported; moat proxies CONNECT only", req.cmd)}
	}
	if req.port == 0 {
		return req, &errSOCKS{repHostUnrch, "socks: port 0"}
	}
	return req, nil
}

// socksReply is a reply with an all-zero IPv4 bound address: the proxy's
// own addresses are none of the client's business.
func socksReply(rep byte) []byte {
	return []byte{socksVersion, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0}
}

func (s *Server) serveSOCKS(c *clientConn) {
	start := time.Now()
	rec := audit.Record{Kind: audit.KindConnect, Proto: "socks5", Client: c.client, Method: "CONNECT"}
	fail := func(rep byte, rule, reason string) {
		rec.Decision, rec.Rule, rec.Reason, rec.Status = "deny", rule, reason, int(rep)
		if rep == repHostUnrch || rep == repRefused || rep == repNetUnreach {
			rec.Decision = "allow" // the policy allowed it; the upstream failed
		}
		rec.Session = c.session
		rec.Duration = ms(time.Since(start))
		s.record(rec)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(socksReply(rep))
	}

	methods, err := readGreeting(c)
	if err != nil {
		return
	}
	want := byte(authNone)
	if len(s.Sessions) > 0 {
		want = authUserPass
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		rec.Decision, rec.Rule, rec.Status = "deny", "proxy-auth", authNoAccept
		rec.Reason = "the client offered no authentication method the proxy accepts"
		rec.Duration = ms(time.Since(start))
		s.record(rec)
		c.Write([]byte{socksVersion, authNoAccept})
		return
	}
	if _, err := c.Write([]byte{socksVersion, want}); err != nil {
		return
	}
	if want == authUserPass {
		user, pass, err := readUserPass(c)
		if err != nil {
			return
		}
		if !s.checkToken(user, pass) {
			c.Write([]byte{userPassVer, 0x01})
			rec.Decision, rec.Rule, rec.Reason = "deny", "proxy-auth", "invalid proxy credentials"
			rec.Duration = ms(time.Since(start))
			s.record(rec)
			return
		}
		c.session = user
		rec.Session = user
		if _, err := c.Write([]byte{userPassVer, 0x00}); err != nil {
			return
		}
	}

	req, err := readSOCKSRequest(c)
	rec.Host, rec.Port = req.host, req.port
	if err != nil {
		var se *errSOCKS
		if errors.As(err, &se) {
			rule := "bad-request"
			if se.rep == repCmdUnsupp {
				rule = "socks-command"
			}
			fail(se.rep, rule, se.msg)
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	if r := s.admit(c.session, req.host, req.port); r != nil {
		fail(repNotAllowed, r.Rule, r.Reason)
		return
	}
	d, err := s.connect(context.Background(), req.host, req.port)
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			r = &refusal{status: 502, Decision: policy.Decision{Rule: "upstream-error", Reason: err.Error()}}
		}
		rep := byte(repNotAllowed)
		if r.status != 403 {
			rep = repHostUnrch
			if r.Rule == "upstream-unreachable" {
				rep = repRefused
			}
		}
		fail(rep, r.Rule, r.Reason)
		return
	}
	if _, err := c.Write(socksReply(repSucceeded)); err != nil {
		d.conn.Close()
		return
	}
	if s.intercepts(req.host, req.port) {
		// Terminated like a CONNECT tunnel: request rules and credentials
		// must not be stepped around by asking through SOCKS instead.
		s.intercept(c, d, rec, start)
		return
	}
	s.charge(d, c.session, req.host, req.port)
	s.tunnel(c, d, rec, start)
}
