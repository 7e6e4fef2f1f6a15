package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// Built-in rule names a Decision carries when no policy entry decided.
const (
	RuleMalformedHost  = "malformed-host"  // the host or address could not be read; denied even in report mode
	RuleDefaultDeny    = "default-deny"    // the name is not in network.allow
	RuleIPLiteral      = "ip-literal"      // an IP address no network.allow address or prefix lists
	RuleMetadataName   = "metadata-name"   // a cloud metadata name not allowed by its exact name
	RulePrivateAddress = "private-address" // a non-public address network.allow_private does not list
	RulePublicAddress  = "public-address"  // EgressAddr: a public address no network.deny entry covers
)

// metadataNames are the names of cloud instance metadata services. Egress
// refuses them unless network.allow lists the exact name: a wildcard
// ("*.google.internal") is not enough.
var metadataNames = map[string]bool{
	"metadata":                     true,
	"metadata.google.internal":     true,
	"metadata.goog":                true,
	"instance-data":                true,
	"instance-data.ec2.internal":   true,
	"metadata.tencentyun.com":      true,
	"metadata.platformequinix.com": true,
	"metadata.packet.net":          true,
}

// Egress decides on a destination by name, before any DNS lookup. host is
// as a client sent it: not yet normalised, IPv6 without brackets (brackets
// are accepted too). The checks, in order:
//
//  1. a malformed host (see NormalizeHost) or port 0: Deny, rule
//     "malformed-host", whatever the mode;
//  2. network.deny: a name entry covering the name, or an address or prefix
//     entry covering an IP literal, on its port or any port: Deny;
//  3. an IP literal: Allow only if a network.allow address or prefix covers
//     it (port as below), else Deny, rule "ip-literal";
//  4. a cloud metadata name: Deny, rule "metadata-name", unless a
//     network.allow entry names it exactly;
//  5. network.allow: an exact name, or a wildcard covering a strict
//     subdomain, on the entry's port or, for an entry without one, port 80
//     or 443: Allow;
//  6. else Deny, rule "default-deny".
//
// In report mode, a Deny other than malformed-host is returned as an Allow
// with WouldDeny set. Egress does no I/O, allocates nothing for a host
// already in canonical form, and is safe for concurrent use.
func (p *Policy) Egress(host string, port uint16) Decision {
	h, ip, err := normalizeHost(host)
	if err != nil {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: err.Error()}
	}
	if port == 0 {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: "port 0 is not a valid port"}
	}
	return p.report(p.egress(h, ip, port))
}

func (p *Policy) egress(h string, ip netip.Addr, port uint16) Decision {
	n := &p.Network
	for i := range n.Deny {
		r := &n.Deny[i]
		if !anyPort(r.Port, port) {
			continue
		}
		if ip.IsValid() && r.matchAddr(ip) || !ip.IsValid() && r.matchName(h) {
			return Decision{Verdict: Deny, Rule: r.Origin.String(),
				Reason: hostPort(h, ip, port) + " is denied by " + quote(r.String()) + " in network.deny"}
		}
	}
	if ip.IsValid() {
		for i := range n.Allow {
			r := &n.Allow[i]
			if allowPort(r.Port, port) && r.matchAddr(ip) {
				return allowedBy(r, "network.allow")
			}
		}
		return Decision{Verdict: Deny, Rule: RuleIPLiteral,
			Reason: hostPort(h, ip, port) + " is an IP address, which network.allow does not list; connect by name, or add " +
				quote(ruleFor(h, ip, port)) + " to network.allow"}
	}
	metadata := metadataNames[h]
	for i := range n.Allow {
		r := &n.Allow[i]
		if allowPort(r.Port, port) && r.matchName(h) && !(metadata && r.Wildcard) {
			return allowedBy(r, "network.allow")
		}
	}
	if metadata {
		return Decision{Verdict: Deny, Rule: RuleMetadataName,
			Reason: hostPort(h, ip, port) + " is a cloud metadata service; moat refuses it unless network.allow lists " +
				quote(ruleFor(h, ip, port)) + " exactly"}
	}
	return Decision{Verdict: Deny, Rule: RuleDefaultDeny,
		Reason: hostPort(h, ip, port) + " is not in network.allow; add " + quote(ruleFor(h, ip, port)) +
			" to network.allow to allow it"}
}

// allowedBy is the decision of an allow rule. Its reason does not name the
// destination, so that the parser can make it once and allowing costs no
// allocation.
func allowedBy(r *HostRule, list string) Decision {
	reason := r.allowed
	if reason == "" {
		reason = allowReason(*r, list)
	}
	rule := r.rule
	if rule == "" {
		rule = r.Origin.String()
	}
	return Decision{Verdict: Allow, Rule: rule, Reason: reason}
}

func allowReason(r HostRule, list string) string {
	return "allowed by " + quote(r.String()) + " in " + list
}

// EgressAddr decides on one resolved (or literal) address of a host that
// Egress allowed; the proxy dials only addresses this allows. In order:
//
//  1. an invalid address, one with an IPv6 zone, or a malformed host: Deny,
//     rule "malformed-host", whatever the mode;
//  2. a network.deny address or prefix entry covering the address: Deny;
//  3. a non-public address (ClassifyAddr): Allow only if network.allow_private
//     has a name entry covering host, or an address or prefix entry
//     covering the address, on its port or any port; else Deny, rule
//     "private-address";
//  4. else Allow, rule "public-address".
//
// In report mode, a Deny other than malformed-host is returned as an Allow
// with WouldDeny set. EgressAddr does not repeat Egress's name checks.
func (p *Policy) EgressAddr(host string, addr netip.Addr, port uint16) Decision {
	if !addr.IsValid() {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: "no address"}
	}
	if addr.Zone() != "" {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: quote(addr.String()) + ": IPv6 zones are not allowed"}
	}
	h, _, err := normalizeHost(host)
	if err != nil {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: err.Error()}
	}
	if port == 0 {
		return Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: "port 0 is not a valid port"}
	}
	return p.report(p.egressAddr(h, addr, port))
}

func (p *Policy) egressAddr(h string, a netip.Addr, port uint16) Decision {
	n := &p.Network
	for i := range n.Deny {
		r := &n.Deny[i]
		if r.IsPrefix && anyPort(r.Port, port) && r.matchAddr(a) {
			reason := h + " resolves to " + a.String() + ", which " + quote(r.String()) + " in network.deny refuses"
			if h == a.String() {
				reason = h + " is denied by " + quote(r.String()) + " in network.deny"
			}
			return Decision{Verdict: Deny, Rule: r.Origin.String(), Reason: reason}
		}
	}
	class := ClassifyAddr(a)
	if class == "" {
		return Decision{Verdict: Allow, Rule: RulePublicAddress}
	}
	for i := range n.AllowPrivate {
		r := &n.AllowPrivate[i]
		if anyPort(r.Port, port) && (r.matchAddr(a) || r.matchName(h)) {
			return allowedBy(r, "network.allow_private")
		}
	}
	// "localhost resolves to 127.0.0.1 (loopback)", "10.1.2.3 is a private address"
	what, lists := h+" resolves to "+a.String()+" ("+plainClass(class)+")", "the name or the address"
	if h == a.String() {
		what, lists = h+" is "+article(class)+" "+class+" address", "the address"
	}
	return Decision{Verdict: Deny, Rule: RulePrivateAddress,
		Reason: what + "; moat refuses loopback, private, link-local and metadata addresses unless network.allow_private lists " + lists}
}

func article(word string) string {
	if strings.IndexByte("aeiou", word[0]) >= 0 {
		return "an"
	}
	return "a"
}

// plainClass flattens "loopback (IPv4-mapped)" to "loopback, IPv4-mapped"
// for use inside parentheses.
func plainClass(c string) string {
	if i := strings.IndexByte(c, '('); i > 0 {
		return c[:i-1] + ", " + strings.TrimSuffix(c[i+1:], ")")
	}
	return c
}

func (p *Policy) report(d Decision) Decision {
	if d.Verdict != Allow && d.Rule != RuleMalformedHost && p.Network.Mode == Report {
		d.Verdict, d.WouldDeny = Allow, true
	}
	return d
}

func allowPort(rule, port uint16) bool {
	if rule == 0 {
		return port == 80 || port == 443
	}
	return rule == port
}

func anyPort(rule, port uint16) bool { return rule == 0 || rule == port }

func hostPort(h string, ip netip.Addr, port uint16) string {
	if ip.Is6() {
		return "[" + h + "]:" + strconv.Itoa(int(port))
	}
	return h + ":" + strconv.Itoa(int(port))
}

// ruleFor is the network.allow entry that would allow h on port.
func ruleFor(h string, ip netip.Addr, port uint16) string {
	if port == 80 || port == 443 {
		return h
	}
	return hostPort(h, ip, port)
}
