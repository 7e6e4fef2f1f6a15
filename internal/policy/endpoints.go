package policy

import (
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EndpointHost is the only address a reverse endpoint listens on inside
// the sandbox: its loopback, where nothing outside can reach it.
const EndpointHost = "127.0.0.1"

// Endpoint is one network.endpoints entry, parsed: a plain-HTTP address on
// the sandbox's loopback that stands for one HTTPS upstream. An agent
// pointed at it (ANTHROPIC_BASE_URL=http://127.0.0.1:8080) sends requests
// without a key; moat's proxy, outside, adds the credentials whose hosts
// cover the upstream and forwards over TLS. Credentials still go only to
// their own hosts: an endpoint never widens where a secret may be sent.
type Endpoint struct {
	Name     string // letters, digits, '-', '_', '.'
	Upstream string // "https://host[:port][/base]", as written
	Host     string // the upstream's host, normalised as host rules are
	Port     uint16 // the upstream's port (443 unless given)
	Listen   uint16 // the port on 127.0.0.1 inside the sandbox
	Origin   Origin
}

// String is the entry as a policy file writes it.
func (e Endpoint) String() string {
	return e.Name + "=" + e.Upstream + "@" + EndpointHost + ":" + strconv.Itoa(int(e.Listen))
}

// ParseEndpoint reads "NAME=https://host[:port][/base]@127.0.0.1:PORT", as
// network.endpoints and moat run's --endpoint take it. The error says what
// is wrong and what to write; it never needs the value quoted again.
func ParseEndpoint(s string) (Endpoint, error) {
	if msg := endpointProblem(s); msg != "" {
		return Endpoint{}, &Error{Msg: quote(s) + ": " + msg}
	}
	e, _ := parseEndpoint(s)
	return e, nil
}

const endpointForm = "NAME=https://host[:port][/base]@127.0.0.1:PORT"

func endpointProblem(s string) string {
	_, msg := parseEndpoint(s)
	return msg
}

// parseEndpoint returns the endpoint, or what is wrong with s.
func parseEndpoint(s string) (Endpoint, string) {
	if hasControl(s) || strings.ContainsAny(s, " \t") {
		return Endpoint{}, "contains a space or a control character; write " + endpointForm
	}
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Endpoint{}, "expected " + endpointForm
	}
	if msg := checkCredentialName(name); msg != "" {
		return Endpoint{}, "endpoint name " + quote(name) + ": " + strings.Replace(msg, "a credential name", "a name", 1)
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return Endpoint{}, `no listening address; add "@127.0.0.1:PORT", the port the agent connects to inside the sandbox`
	}
	raw, addr := rest[:at], rest[at+1:]
	host, portText, ok := strings.Cut(addr, ":")
	if !ok || host != EndpointHost {
		return Endpoint{}, "the endpoint listens on the sandbox's loopback; write " + quote("@127.0.0.1:PORT") + " after the URL"
	}
	listen, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || listen == 0 || portText[0] == '0' || portText[0] == '+' {
		return Endpoint{}, "listening port " + quote(portText) + ": write a port from 1 to 65535"
	}
	if strings.Contains(raw, "@") {
		return Endpoint{}, "the upstream URL may not carry user information (user@host); credentials come from the credentials section"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "":
		return Endpoint{}, "upstream " + quote(raw) + ": not a URL; write " + endpointForm
	case u.Scheme != "https":
		return Endpoint{}, "upstream " + quote(raw) + ": must be https:// (the proxy adds credentials only over TLS)"
	case u.Host == "":
		return Endpoint{}, "upstream " + quote(raw) + ": no host; write " + endpointForm
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return Endpoint{}, "upstream " + quote(raw) + ": a query or fragment is not allowed; write https://host[:port][/base]"
	}
	uh, up := u.Hostname(), u.Port()
	port := uint16(443)
	if up != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.ParseUint(up, 10, 16)
		if err != nil || n == 0 || up[0] == '0' {
			return Endpoint{}, "upstream " + quote(raw) + ": port " + quote(up) + ": write a port from 1 to 65535"
		}
		port = uint16(n)
	}
	r, err := parseHostRule(uh, false)
	if err != nil {
		return Endpoint{}, "upstream " + quote(raw) + ": host " + trimQuoted(err.Error(), uh)
	}
	if r.Wildcard || r.IsPrefix && strings.Contains(r.Prefix, "/") && !singleAddress(r.Prefix) {
		return Endpoint{}, "upstream " + quote(raw) + ": name one host, not a wildcard or a prefix"
	}
	h := r.Name
	if r.IsPrefix {
		h = strings.TrimSuffix(strings.TrimSuffix(r.Prefix, "/32"), "/128")
	}
	return Endpoint{Name: name, Upstream: raw, Host: h, Port: port, Listen: uint16(listen)}, ""
}

func singleAddress(prefix string) bool {
	return strings.HasSuffix(prefix, "/32") && !strings.Contains(prefix, ":") || strings.HasSuffix(prefix, "/128")
}

// trimQuoted drops a leading quoted copy of v from a host-rule error, so
// the message does not quote the host twice.
func trimQuoted(msg, v string) string {
	q := quote(v) + ": "
	if strings.HasPrefix(msg, q) {
		return quote(v) + ": " + msg[len(q):]
	}
	return msg
}

// Endpoints returns the policy's reverse endpoints, one a name: where
// layers declare the same name, the highest layer's entry (the first in
// the merged list) wins. Two names on one listening port are an error
// citing both entries.
func (p *Policy) Endpoints() ([]Endpoint, error) {
	var out []Endpoint
	var errs Errors
	byPort := map[uint16]Endpoint{}
	names := map[string]bool{}
	for _, en := range p.Network.Endpoints {
		e, msg := parseEndpoint(en.Value)
		if msg != "" {
			errs = append(errs, errAt(en.Origin, en.Origin.Key, quote(en.Value)+": "+msg))
			continue
		}
		if names[e.Name] {
			continue
		}
		e.Origin = en.Origin
		if first, dup := byPort[e.Listen]; dup {
			// Reported where the higher layer (listed first) wrote it.
			errs = append(errs, errAt(first.Origin, first.Origin.Key, quote(first.String())+": port "+strconv.Itoa(int(e.Listen))+
				" is also the endpoint "+quote(e.Name)+"'s ("+cite(en.Origin)+"); pick another port"))
			continue
		}
		names[e.Name] = true
		byPort[e.Listen] = e
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// endpointsByName keeps the first entry of each endpoint name in a list
// ordered highest layer first, so that a higher layer (or the merged
// result) redefines an endpoint rather than adding a second one.
func endpointsByName(es []Entry) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, e := range es {
		name, _, _ := strings.Cut(e.Value, "=")
		if !seen[name] {
			seen[name] = true
			out = append(out, e)
		}
	}
	return out
}

// endpoints parses one layer's network.endpoints: each entry checked, and
// two entries with the same name or the same listening port refused.
func (ps *parser) endpoints(key string, n *yaml.Node) []Entry {
	var out []Entry
	names := map[string]int{}
	ports := map[uint16]int{}
	for _, it := range ps.strs(key, n) {
		e, msg := parseEndpoint(it.value)
		if msg != "" {
			ps.valueErr(it.node, it.key, it.value, msg)
			continue
		}
		if line, dup := names[e.Name]; dup {
			ps.valueErr(it.node, it.key, it.value, "the endpoint "+quote(e.Name)+" is already defined at line "+strconv.Itoa(line))
			continue
		}
		if line, dup := ports[e.Listen]; dup {
			ps.valueErr(it.node, it.key, it.value, "port "+strconv.Itoa(int(e.Listen))+" is already used at line "+strconv.Itoa(line)+"; pick another port")
			continue
		}
		names[e.Name], ports[e.Listen] = it.node.Line, it.node.Line
		out = append(out, Entry{Value: it.value, Origin: ps.origin(it.node, it.key)})
	}
	return out
}
