package policy

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Request rules and limits apply to what the proxy can see inside:
// plain-HTTP requests, reverse endpoints and terminated TLS. They are the
// brake on exfiltration through a host the agent may reach: a GitHub token
// that may read acme's repositories need not be able to create gists.
//
//	network:
//	  request_allow: ["api.github.com GET /repos/acme/**"]
//	  request_deny:  ["api.github.com POST /gists", "* DELETE **"]
//	  limits:        ["api.github.com 60/min", "* 50m out"]
//
// A rule is HOST METHOD PATH: HOST as in network.allow or "*" for every
// host, METHOD an HTTP method or "*", PATH a glob where "*" matches within
// one segment and "**" any number of segments. Limits are HOST N/min
// (requests a minute) or HOST SIZE out (bytes sent, request bodies and
// tunnel uploads), counted per session and per host. A HOST without a port
// covers every port, as in network.deny: a restriction must not be
// stepped around on another port.

// Rule names for request decisions no entry made.
const (
	RuleRequestNotAllowed = "request-not-allowed" // the host has request_allow rules and none matched
	RuleRequestAmbiguous  = "request-path-ambiguous"
)

// Limit is one network.limits entry.
type Limit struct {
	Rule      string // the entry's origin, for refusals
	Entry     string // the entry as written
	PerMinute int64  // requests a minute; 0: no request limit
	BytesOut  int64  // bytes sent; 0: no byte budget
}

type requestRule struct {
	any    bool // HOST was "*"
	host   HostRule
	method string // upper case, or "*"
	path   string
	rule   string
	text   string
}

type limitRule struct {
	any  bool
	host HostRule
	Limit
}

type compiledRequests struct {
	allow, deny []requestRule
	limits      []limitRule
}

var compileMu sync.Mutex

func (p *Policy) requests() *compiledRequests {
	compileMu.Lock()
	defer compileMu.Unlock()
	if p.Network.compiled != nil {
		return p.Network.compiled
	}
	c := &compiledRequests{}
	for _, e := range p.Network.RequestAllow {
		if r, ok := parseRequestRule(e); ok {
			c.allow = append(c.allow, r)
		}
	}
	for _, e := range p.Network.RequestDeny {
		if r, ok := parseRequestRule(e); ok {
			c.deny = append(c.deny, r)
		}
	}
	for _, e := range p.Network.Limits {
		if l, ok := parseLimit(e); ok {
			c.limits = append(c.limits, l)
		}
	}
	p.Network.compiled = c
	return c
}

// Request decides on one request the proxy can see, after Egress allowed
// its destination. escapedPath is the path as sent (percent-encoded). In
// order: a request_deny rule matching it denies; if request_allow rules
// cover the host, one must match; else the request is allowed. A path whose
// encoding hides a slash, a backslash or a dot is refused for a host that
// has rules, since the server may read it otherwise than moat.
func (p *Policy) Request(host string, port uint16, method, escapedPath string) Decision {
	c := p.requests()
	if len(c.allow) == 0 && len(c.deny) == 0 {
		return Decision{Verdict: Allow}
	}
	covers := func(r *requestRule) bool { return r.any || r.host.coversAnyPort(host, port) }
	hasRules := false
	for i := range c.deny {
		hasRules = hasRules || covers(&c.deny[i])
	}
	for i := range c.allow {
		hasRules = hasRules || covers(&c.allow[i])
	}
	if !hasRules {
		return Decision{Verdict: Allow}
	}
	lower := strings.ToLower(escapedPath)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%2e") || strings.Contains(escapedPath, "\\") {
		return p.report(Decision{Verdict: Deny, Rule: RuleRequestAmbiguous,
			Reason: "the path " + quote(escapedPath) + " encodes a slash, backslash or dot, which " + host + "'s request rules cannot judge"})
	}
	clean, err := url.PathUnescape(escapedPath)
	if err != nil {
		return p.report(Decision{Verdict: Deny, Rule: RuleRequestAmbiguous, Reason: "the path " + quote(escapedPath) + " is not valid percent-encoding"})
	}
	clean = path.Clean("/" + clean)
	method = strings.ToUpper(method)
	for i := range c.deny {
		r := &c.deny[i]
		if covers(r) && r.matches(method, clean) {
			return p.report(Decision{Verdict: Deny, Rule: r.rule,
				Reason: method + " " + clean + " on " + host + " is refused by " + quote(r.text) + " in network.request_deny"})
		}
	}
	allowRules := false
	for i := range c.allow {
		r := &c.allow[i]
		if !covers(r) {
			continue
		}
		allowRules = true
		if r.matches(method, clean) {
			return Decision{Verdict: Allow, Rule: r.rule, Reason: "allowed by " + quote(r.text) + " in network.request_allow"}
		}
	}
	if allowRules {
		return p.report(Decision{Verdict: Deny, Rule: RuleRequestNotAllowed,
			Reason: host + " has network.request_allow rules and none allows " + method + " " + clean +
				"; add " + quote(host+" "+method+" "+clean) + " to network.request_allow to allow it"})
	}
	return Decision{Verdict: Allow}
}

// Limits returns the limits that apply to requests to host:port.
func (p *Policy) Limits(host string, port uint16) []Limit {
	var out []Limit
	for _, l := range p.requests().limits {
		if l.any || l.host.coversAnyPort(host, port) {
			out = append(out, l.Limit)
		}
	}
	return out
}

func (r *requestRule) matches(method, clean string) bool {
	return (r.method == "*" || r.method == method) && matchPathGlob(r.path, clean)
}

// matchPathGlob matches a cleaned path against a glob: "*" and the other
// path.Match forms within one segment, "**" across any number of segments.
func matchPathGlob(pattern, p string) bool {
	if pattern == "**" || pattern == "/**" {
		return true
	}
	return matchSegments(strings.Split(strings.Trim(pattern, "/"), "/"), strings.Split(strings.Trim(p, "/"), "/"))
}

func matchSegments(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(segs); i++ {
				if matchSegments(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], segs[0]); err != nil || !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0 || len(segs) == 1 && segs[0] == ""
}

// checkRequestRule validates a "HOST METHOD PATH" entry.
func checkRequestRule(s string) string {
	f := strings.Fields(s)
	if len(f) != 3 {
		return `expected "HOST METHOD PATH", e.g. "api.github.com GET /repos/acme/**"`
	}
	if f[0] != "*" {
		if _, err := parseHostRule(f[0], false); err != nil {
			return "host: " + trimGiven(err, f[0])
		}
	}
	if f[1] != "*" {
		for _, c := range f[1] {
			if c < 'A' || c > 'Z' {
				return "method " + quote(f[1]) + ": write an HTTP method in capitals (GET, POST) or *"
			}
		}
	}
	if f[2] != "*" && f[2] != "**" && !strings.HasPrefix(f[2], "/") {
		return "path " + quote(f[2]) + " must start with /"
	}
	for _, seg := range strings.Split(strings.Trim(f[2], "/"), "/") {
		if seg == "**" {
			continue
		}
		if strings.Contains(seg, "**") {
			return "path " + quote(f[2]) + `: "**" must be a whole segment`
		}
		if _, err := path.Match(seg, ""); err != nil {
			return "path " + quote(f[2]) + ": bad pattern in segment " + quote(seg)
		}
	}
	return ""
}

func parseRequestRule(e Entry) (requestRule, bool) {
	f := strings.Fields(e.Value)
	if len(f) != 3 || checkRequestRule(e.Value) != "" {
		return requestRule{}, false
	}
	r := requestRule{method: f[1], path: f[2], rule: e.Origin.String(), text: e.Value}
	if f[0] == "*" {
		r.any = true
	} else {
		r.host, _ = parseHostRule(f[0], false)
	}
	return r, true
}

// checkLimit validates a "HOST N/min" or "HOST SIZE out" entry.
func checkLimit(s string) string {
	_, msg := limitOf(s)
	return msg
}

func limitOf(s string) (Limit, string) {
	f := strings.Fields(s)
	const want = `expected "HOST N/min" or "HOST SIZE out", e.g. "api.github.com 60/min" or "* 50m out"`
	var l Limit
	switch {
	case len(f) == 2 && strings.HasSuffix(f[1], "/min"):
		n, err := strconv.ParseInt(strings.TrimSuffix(f[1], "/min"), 10, 64)
		if err != nil || n <= 0 {
			return l, "requests a minute must be a positive whole number; " + want
		}
		l.PerMinute = n
	case len(f) == 3 && f[2] == "out":
		n, err := ParseSize(f[1])
		if err != nil || n <= 0 {
			return l, "size " + quote(f[1]) + ": write a positive size such as 50m or 1g"
		}
		l.BytesOut = n
	default:
		return l, want
	}
	if f[0] != "*" {
		if _, err := parseHostRule(f[0], false); err != nil {
			return l, "host: " + trimGiven(err, f[0])
		}
	}
	return l, ""
}

func parseLimit(e Entry) (limitRule, bool) {
	l, msg := limitOf(e.Value)
	if msg != "" {
		return limitRule{}, false
	}
	l.Rule, l.Entry = e.Origin.String(), e.Value
	f := strings.Fields(e.Value)
	lr := limitRule{Limit: l}
	if f[0] == "*" {
		lr.any = true
	} else {
		lr.host, _ = parseHostRule(f[0], false)
	}
	return lr, true
}
