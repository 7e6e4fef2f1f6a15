package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// refusal is a destination the policy refused; status is what an HTTP
// client is told (403 for the policy, 502 when the upstream could not be
// reached or resolved).
type refusal struct {
	status int
	policy.Decision
	host string
	port uint16
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%s:%d refused: %s: %s", r.host, r.port, r.Rule, r.Reason)
}

// dest is a checked destination: the decision that allowed it, and the
// connection to the address that was checked.
type dest struct {
	decision policy.Decision // the name decision (report mode: may carry WouldDeny)
	addr     netip.AddrPort  // the address dialled
	conn     net.Conn
}

// connect runs the one path every protocol shares: decide on the name,
// resolve it once, decide on each address, dial only an address that was
// allowed. The policy is read once, so a reload in the middle cannot mix two
// policies in one decision.
func (s *Server) connect(ctx context.Context, host string, port uint16) (*dest, error) {
	pol := s.policy()
	d := pol.Egress(host, port)
	if !d.Allowed() {
		return nil, &refusal{status: 403, Decision: d, host: host, port: port}
	}
	return s.connectChecked(ctx, pol, host, port, d)
}

// connectAs connects to a destination allowed by a declaration outside
// network.allow (a reverse endpoint): the name decision is d, and the
// addresses are checked as always.
func (s *Server) connectAs(ctx context.Context, host string, port uint16, d policy.Decision) (*dest, error) {
	return s.connectChecked(ctx, s.policy(), host, port, d)
}

func (s *Server) connectChecked(ctx context.Context, pol Decider, host string, port uint16, d policy.Decision) (*dest, error) {
	addrs, err := s.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var firstDeny *policy.Decision
	var lastErr error
	for _, a := range addrs {
		ad := pol.EgressAddr(host, a, port)
		if !ad.Allowed() {
			if firstDeny == nil {
				firstDeny = &ad
			}
			continue
		}
		ap := netip.AddrPortFrom(a, port)
		if s.isSelf(ap) {
			dd := policy.Decision{Rule: "proxy-loop", Reason: fmt.Sprintf("%s is the proxy's own listener", ap)}
			if firstDeny == nil {
				firstDeny = &dd
			}
			continue
		}
		if ad.WouldDeny && !d.WouldDeny {
			d = ad // report mode: carry the address-level would-deny into the record
		}
		c, err := s.dial(ctx, ap)
		if err != nil {
			lastErr = err
			continue
		}
		return &dest{decision: d, addr: ap, conn: c}, nil
	}
	if lastErr != nil {
		return nil, &refusal{status: 502, host: host, port: port, Decision: policy.Decision{
			Verdict: policy.Allow, Rule: "upstream-unreachable",
			Reason: fmt.Sprintf("cannot connect to %s:%d: %v", host, port, unwrapDialError(lastErr)),
		}}
	}
	if firstDeny != nil {
		return nil, &refusal{status: 403, Decision: *firstDeny, host: host, port: port}
	}
	return nil, &refusal{status: 502, host: host, port: port, Decision: policy.Decision{
		Verdict: policy.Allow, Rule: "no-address", Reason: fmt.Sprintf("%s has no address", host),
	}}
}

// resolve returns the addresses to try for host: the literal itself, or the
// answers of one lookup. It is called only after the policy allowed the
// name, so a refused name never reaches a resolver (no DNS exfiltration).
func (s *Server) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultResolveTimeout)
	defer cancel()
	lookup := s.LookupNetIP
	if lookup == nil {
		lookup = goResolver.LookupNetIP
	}
	name, err := policy.NormalizeHost(host)
	if err != nil {
		return nil, &refusal{status: 403, host: host, Decision: policy.Decision{Rule: "malformed-host", Reason: err.Error()}}
	}
	addrs, err := lookup(ctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		reason := fmt.Sprintf("cannot resolve %s", name)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			reason = fmt.Sprintf("%s does not exist (no such host)", name)
		}
		return nil, &refusal{status: 502, host: host, Decision: policy.Decision{Verdict: policy.Allow, Rule: "resolve-failed", Reason: reason}}
	}
	for i, a := range addrs {
		// The resolver hands A records back as IPv4-mapped IPv6; an A
		// record is an IPv4 address, and is checked and dialled as one.
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// goResolver never uses the C library: its answers must not depend on
// nsswitch plugins the proxy does not control.
var goResolver = &net.Resolver{PreferGo: true}

func (s *Server) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(s.DialTimeout, DefaultDialTimeout))
	defer cancel()
	if s.DialContext != nil {
		return s.DialContext(ctx, "tcp", ap.String())
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ap.String())
}

func (s *Server) isSelf(ap netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.selfAddrs[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	if !ok {
		// A listener on 0.0.0.0 or [::] is reachable at every local address.
		for self := range s.selfAddrs {
			if self.Port() == ap.Port() && self.Addr().IsUnspecified() && ap.Addr().IsLoopback() {
				return true
			}
		}
	}
	return ok
}

func unwrapDialError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
