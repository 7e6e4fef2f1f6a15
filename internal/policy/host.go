package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	maxName  = 253 // bytes in a name, without the trailing dot
	maxLabel = 63
	maxInput = 1024 // longer input is refused before any work
)

// hostError is a problem with a host or a host rule; its text quotes what
// was given: `"127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`.
type hostError struct {
	given, msg string
}

func (e *hostError) Error() string { return quote(e.given) + ": " + e.msg }

func hostErr(given, msg string) error { return &hostError{given, msg} }

// quote quotes s as Go (and YAML's double-quoted style) would, so control
// characters and invalid bytes are shown, never printed raw.
func quote(s string) string { return strconv.Quote(s) }

func quoteRune(r rune) string { return fmt.Sprintf("%q (%U)", r, r) }

// NormalizeHost returns the canonical form of a host, as used for matching
// and in logs, or an error saying what is wrong with it. Names are lower
// case, without a trailing dot, internationalised labels in their ASCII
// (punycode) form; IPv4 addresses are dotted quads; IPv6 addresses are in
// RFC 5952 form without brackets. It refuses, among others: empty hosts,
// spaces and control characters, ports, IPv6 zones, and numeric forms that
// only some resolvers read as addresses ("127.1", "0x7f.0.0.1",
// "2852039166", "0177.0.0.1"). It does no I/O.
func NormalizeHost(host string) (string, error) {
	h, _, err := normalizeHost(host)
	return h, err
}

// normalizeHost is NormalizeHost that also returns the address when the host
// is an IP literal.
func normalizeHost(host string) (string, netip.Addr, error) {
	if host == "" {
		return "", netip.Addr{}, hostErr(host, "empty host")
	}
	if len(host) > maxInput {
		return "", netip.Addr{}, hostErr(host[:32]+"...", "name is longer than 253 characters")
	}
	simple, colon := true, false // simple: only a-z 0-9 - .
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		case c < 0x20 || c == 0x7F:
			return "", netip.Addr{}, hostErr(host, "contains a control character")
		case c == ' ':
			return "", netip.Addr{}, hostErr(host, "contains a space")
		case c == ':':
			colon = true
			simple = false
		default:
			simple = false
		}
	}
	if !simple && !utf8.ValidString(host) {
		return "", netip.Addr{}, hostErr(host, "not valid UTF-8")
	}
	if host[0] == '[' {
		if host[len(host)-1] != ']' {
			return "", netip.Addr{}, hostErr(host, `missing "]" after an IPv6 address`)
		}
		a, err := parseIPv6(host, host[1:len(host)-1])
		if err != nil {
			return "", netip.Addr{}, err
		}
		return a.String(), a, nil
	}
	if colon {
		a, err := parseIPv6(host, host)
		if err != nil {
			return "", netip.Addr{}, err
		}
		return a.String(), a, nil
	}
	h := host
	if h[len(h)-1] == '.' {
		h = h[:len(h)-1]
		if h == "" {
			return "", netip.Addr{}, hostErr(host, "empty host")
		}
	}
	if endsInNumber(h) {
		a, err := parseIPv4(host, h)
		if err != nil {
			return "", netip.Addr{}, err
		}
		return h, a, nil
	}
	if !simple {
		var err error
		if h, err = mapName(host, h); err != nil {
			return "", netip.Addr{}, err
		}
		// Mapping can turn a name into a number ("８" is "8",
		// "１２７.０.０.１" is 127.0.0.1): judge it as the address it became.
		if endsInNumber(h) {
			a, err := parseIPv4(host, h)
			if err != nil {
				return "", netip.Addr{}, err
			}
			return h, a, nil
		}
	}
	if err := checkName(host, h); err != nil {
		return "", netip.Addr{}, err
	}
	return h, netip.Addr{}, nil
}

// parseIPv6 parses the inside of "[...]" or a bare IPv6 address.
func parseIPv6(given, s string) (netip.Addr, error) {
	if strings.IndexByte(s, '%') >= 0 {
		return netip.Addr{}, hostErr(given, "IPv6 zones are not allowed")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		if err == nil {
			return netip.Addr{}, hostErr(given, "an IPv4 address in brackets; write "+quote(a.String()))
		}
		if strings.Count(given, ":") == 1 {
			return netip.Addr{}, hostErr(given, "invalid character ':' (give the host without a port)")
		}
		return netip.Addr{}, hostErr(given, "not a valid IPv6 address")
	}
	return a, nil
}

// endsInNumber reports whether a host's last label is a number (decimal,
// or hex with 0x), which makes it an IPv4 address for URL parsers and
// inet_aton alike (WHATWG URL "ends in a number").
func endsInNumber(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		for i := 2; i < len(last); i++ {
			if !isHex(last[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parseIPv4 accepts only the canonical dotted quad; other numeric forms get
// an error that gives the dotted quad they stand for.
func parseIPv4(given, h string) (netip.Addr, error) {
	// netip reads only the dotted quad, without leading zeros: the
	// canonical form.
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a, nil
	}
	if a, ok := inetAton(h); ok {
		return netip.Addr{}, hostErr(given, "non-canonical IPv4 address; write the dotted quad "+quote(a.String()))
	}
	return netip.Addr{}, hostErr(given, "ends in a number but is not an IPv4 address; write a dotted quad or a host name")
}

// inetAton parses an IPv4 address the way C's inet_aton does: one to four
// parts, each decimal, octal (leading 0) or hex (0x), the last part filling
// the remaining bytes.
func inetAton(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for {
		if n == 4 {
			return netip.Addr{}, false
		}
		end := strings.IndexByte(s, '.')
		p := s
		if end >= 0 {
			p = s[:end]
		}
		v, ok := atonPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
		if end < 0 {
			break
		}
		s = s[end+1:]
	}
	var v uint64
	switch n {
	case 1:
		v = parts[0]
		if v > 0xFFFFFFFF {
			return netip.Addr{}, false
		}
	case 2:
		if parts[0] > 0xFF || parts[1] > 0xFFFFFF {
			return netip.Addr{}, false
		}
		v = parts[0]<<24 | parts[1]
	case 3:
		if parts[0] > 0xFF || parts[1] > 0xFF || parts[2] > 0xFFFF {
			return netip.Addr{}, false
		}
		v = parts[0]<<24 | parts[1]<<16 | parts[2]
	case 4:
		for _, p := range parts {
			if p > 0xFF {
				return netip.Addr{}, false
			}
		}
		v = parts[0]<<24 | parts[1]<<16 | parts[2]<<8 | parts[3]
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func atonPart(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, p = 16, p[2:]
	case len(p) >= 2 && p[0] == '0':
		base, p = 8, p[1:]
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		c := p[i]
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 0xFFFFFFFF {
			return 0, false
		}
	}
	return v, true
}

// mapName lower-cases a name and converts its non-ASCII labels to punycode.
func mapName(given, h string) (string, error) {
	var b strings.Builder
	b.Grow(len(h))
	for i, label := range strings.Split(h, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		ascii := true
		for j := 0; j < len(label); j++ {
			if label[j] >= 0x80 {
				ascii = false
				break
			}
		}
		if ascii {
			b.WriteString(strings.ToLower(label))
			continue
		}
		out, msg := labelToASCII(label)
		if msg != "" {
			return "", hostErr(given, msg)
		}
		b.WriteString(out)
	}
	return b.String(), nil
}

// checkName validates a lower-case ASCII name.
func checkName(given, h string) error {
	if len(h) > maxName {
		return hostErr(given, "name is longer than 253 characters")
	}
	start := 0
	for i := 0; i <= len(h); i++ {
		if i < len(h) && h[i] != '.' {
			c := h[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				r, _ := utf8.DecodeRuneInString(h[i:])
				return hostErr(given, "invalid character "+quoteRune(r)+" (host names have letters, digits and '-')")
			}
			continue
		}
		label := h[start:i]
		switch {
		case label == "":
			return hostErr(given, "empty label")
		case len(label) > maxLabel:
			return hostErr(given, "label "+quote(label[:16]+"...")+" is longer than 63 characters")
		case label[0] == '-':
			return hostErr(given, "label "+quote(label)+" starts with '-'")
		case label[len(label)-1] == '-':
			return hostErr(given, "label "+quote(label)+" ends with '-'")
		case len(label) >= 4 && label[:4] == "xn--" && !validPunycode(label):
			return hostErr(given, "label "+quote(label)+" is not valid punycode")
		}
		start = i + 1
	}
	return nil
}

// ParseHostRule parses one network.allow, network.deny or
// network.allow_private entry (also used for tls.intercept, tls.exclude and
// credential hosts):
//
//	example.com            a name (normalised as by NormalizeHost)
//	*.example.com          its subdomains at any depth, not example.com itself
//	example.com:8443       with a port (1-65535)
//	203.0.113.7            an IPv4 address; [2001:db8::1] or 2001:db8::1
//	10.0.0.0/8, fd00::/8   a CIDR prefix
//	10.1.0.0/16:5432       an address or prefix with a port; [::1]:8080
//
// A wildcard must be a whole first label over at least two labels. URLs,
// paths, user information, IPv6 zones and non-canonical numeric hosts are
// refused with an error that says what to write. The returned rule has no
// Origin.
func ParseHostRule(s string) (HostRule, error) { return parseHostRule(s, false) }

// parseHostRule is ParseHostRule; tld allows a wildcard over a top-level
// domain ("*.zip"), which is fine in a list that only denies.
func parseHostRule(s string, tld bool) (HostRule, error) {
	if s == "" {
		return HostRule{}, hostErr(s, "empty host")
	}
	if len(s) > maxInput {
		return HostRule{}, hostErr(s[:32]+"...", "name is longer than 253 characters")
	}
	if !utf8.ValidString(s) {
		return HostRule{}, hostErr(s, "not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7F {
			return HostRule{}, hostErr(s, "contains a control character")
		} else if c == ' ' {
			return HostRule{}, hostErr(s, "contains a space")
		}
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return HostRule{}, hostErr(s, "a host, not a URL"+writeInstead(hostOfURL(s[i+3:])))
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return HostRule{}, hostErr(s, "user information is not allowed"+writeInstead(s[i+1:]))
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return HostRule{}, hostErr(s, "a host cannot have a query or fragment"+writeInstead(s[:i]))
	}

	// Split off the port.
	host, port := s, ""
	bracket := false
	switch {
	case s[0] == '[':
		j := strings.IndexByte(s, ']')
		if j < 0 {
			return HostRule{}, hostErr(s, `missing "]" after an IPv6 address`)
		}
		host, bracket = s[1:j], true
		if rest := s[j+1:]; rest != "" {
			if rest[0] != ':' {
				return HostRule{}, hostErr(s, `unexpected `+quote(rest)+` after "]"; write "[ADDRESS]:PORT"`)
			}
			port = rest[1:]
			if port == "" {
				return HostRule{}, hostErr(s, "empty port")
			}
		}
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		host, port = s[:i], s[i+1:]
		if port == "" {
			return HostRule{}, hostErr(s, "empty port")
		}
	}
	var r HostRule
	if port != "" {
		p, err := parsePort(s, port)
		if err != nil {
			return HostRule{}, err
		}
		r.Port = p
	}
	if host == "" {
		return HostRule{}, hostErr(s, "empty host")
	}

	// Addresses and prefixes.
	if bracket || strings.IndexByte(host, ':') >= 0 || strings.IndexByte(host, '/') >= 0 {
		return parsePrefixRule(s, host, bracket, r)
	}

	// Wildcards.
	if strings.IndexByte(host, '*') >= 0 {
		switch {
		case host == "*":
			return HostRule{}, hostErr(s, `a lone "*" would match every host; list the hosts instead`)
		case host == "*." || host == "*..":
			return HostRule{}, hostErr(s, `empty domain after wildcard; write "*.example.com"`)
		case !strings.HasPrefix(host, "*.") || strings.IndexByte(host[2:], '*') >= 0:
			return HostRule{}, hostErr(s, `"*" may only be the whole first label`+wildcardFix(host))
		}
		suffix := host[2:]
		h, a, err := normalizeHost(suffix)
		if err != nil {
			return HostRule{}, hostErr(s, trimGiven(err, suffix))
		}
		if a.IsValid() {
			return HostRule{}, hostErr(s, "a wildcard cannot cover an IP address")
		}
		if strings.IndexByte(h, '.') < 0 && !tld {
			return HostRule{}, hostErr(s, "a wildcard over the top-level domain "+quote(h)+
				" would match every site under it; write \"*.example."+h+"\"")
		}
		r.Name, r.Wildcard = "*."+h, true
		return r, nil
	}

	h, a, err := normalizeHost(host)
	if err != nil {
		return HostRule{}, hostErr(s, trimGiven(err, host))
	}
	if a.IsValid() {
		return addrRule(r, netip.PrefixFrom(a, a.BitLen())), nil
	}
	r.Name = h
	return r, nil
}

// trimGiven returns the message of a hostError about given, without the
// quoted value, so the caller can quote the whole entry instead.
func trimGiven(err error, given string) string {
	var he *hostError
	if errors.As(err, &he) {
		return he.msg
	}
	return err.Error()
}

func writeInstead(fix string) string {
	if fix == "" {
		return ""
	}
	if _, err := ParseHostRule(fix); err != nil {
		return ""
	}
	return "; write " + quote(fix)
}

// hostOfURL returns the authority of the rest of a URL after "://".
func hostOfURL(rest string) string {
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest
}

// wildcardFix suggests the rule a misplaced "*" probably meant.
func wildcardFix(host string) string {
	i := strings.IndexByte(host, '.')
	if i < 0 {
		return ""
	}
	rest := host[i+1:]
	if strings.IndexByte(rest, '*') >= 0 {
		return ""
	}
	return writeInstead("*." + rest)
}

func parsePort(given, p string) (uint16, error) {
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, hostErr(given, "port "+quote(p)+" is not a number")
		}
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil || n < 1 || n > 65535 || p[0] == '0' {
		return 0, hostErr(given, "port must be 1-65535")
	}
	return uint16(n), nil
}

// parsePrefixRule parses an IPv6 address, or an IPv4 or IPv6 CIDR prefix.
func parsePrefixRule(given, host string, bracket bool, r HostRule) (HostRule, error) {
	if strings.IndexByte(host, '%') >= 0 {
		return HostRule{}, hostErr(given, "IPv6 zones are not allowed")
	}
	if i := strings.IndexByte(host, '/'); i >= 0 {
		addr := host[:i]
		if _, err := netip.ParseAddr(addr); err != nil {
			if strings.IndexByte(addr, ':') < 0 && !endsInNumber(addr) {
				return HostRule{}, hostErr(given, "a host cannot have a path"+writeInstead(addr))
			}
			if endsInNumber(addr) {
				if _, err := parseIPv4(addr, addr); err != nil {
					return HostRule{}, hostErr(given, trimGiven(err, addr))
				}
			}
			return HostRule{}, hostErr(given, "not a valid CIDR prefix")
		}
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return HostRule{}, hostErr(given, "not a valid CIDR prefix")
		}
		if p.Addr().Is4() && bracket {
			return HostRule{}, hostErr(given, "an IPv4 prefix in brackets; write "+quote(p.String()))
		}
		if m := p.Masked(); m != p {
			return HostRule{}, hostErr(given, "address bits are set beyond the prefix length; write "+quote(m.String()))
		}
		return addrRule(r, p), nil
	}
	a, err := parseIPv6(given, host)
	if err != nil {
		return HostRule{}, err
	}
	return addrRule(r, netip.PrefixFrom(a, a.BitLen())), nil
}

func addrRule(r HostRule, p netip.Prefix) HostRule {
	r.IsPrefix = true
	r.Prefix = p.String()
	r.prefix = p
	return r
}

// String returns the rule in the canonical form ParseHostRule accepts:
// "example.com", "*.example.com:8443", "10.0.0.0/8", "203.0.113.7:443",
// "[2001:db8::1]:443", "2001:db8::1".
func (r HostRule) String() string {
	var s string
	v6 := false
	if r.IsPrefix {
		p, ok := r.prefixValue()
		switch {
		case !ok:
			s = r.Prefix
		case p.IsSingleIP():
			s = p.Addr().String()
		default:
			s = p.String()
		}
		v6 = ok && p.Addr().Is6()
	} else {
		s = r.Name
	}
	if r.Port == 0 {
		return s
	}
	if v6 {
		s = "[" + s + "]"
	}
	return s + ":" + strconv.Itoa(int(r.Port))
}

// prefixValue returns the rule's prefix, parsed.
func (r *HostRule) prefixValue() (netip.Prefix, bool) {
	if r.prefix.IsValid() {
		return r.prefix, true
	}
	if !r.IsPrefix {
		return netip.Prefix{}, false
	}
	// A HostRule built by hand, not by ParseHostRule.
	if p, err := netip.ParsePrefix(r.Prefix); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(r.Prefix); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// matchName reports whether a name rule covers the normalised name h.
func (r *HostRule) matchName(h string) bool {
	if r.IsPrefix {
		return false
	}
	if r.Wildcard {
		suffix := r.Name
		if strings.HasPrefix(suffix, "*.") {
			suffix = suffix[1:]
		} else {
			suffix = "." + suffix
		}
		return len(h) > len(suffix) && strings.HasSuffix(h, suffix)
	}
	return r.Name == h
}

// matchAddr reports whether an address or prefix rule covers a; an
// IPv4-mapped IPv6 address is also tried as the IPv4 address it maps.
func (r *HostRule) matchAddr(a netip.Addr) bool {
	p, ok := r.prefixValue()
	if !ok {
		return false
	}
	return p.Contains(a) || a.Is4In6() && p.Contains(a.Unmap())
}
