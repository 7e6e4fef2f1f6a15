package policy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// FormatYAML returns the policy as a policy file, every value followed by
// a comment citing its origin:
//
//	network:
//	  mode: enforce  # profile:default
//	  allow:
//	    - api.anthropic.com  # moat.yaml:14 (project)
//
// Lists are shown even when empty; scalars only when set. The text parses
// back (as a managed layer, if it has a lock list) to the same values.
func (p *Policy) FormatYAML() []byte {
	var b bytes.Buffer
	b.WriteString("# The effective moat policy; each value is followed by where it comes from.\n")
	if len(p.Layers) > 0 {
		b.WriteString("# Layers, highest precedence first: ")
		for i, l := range p.Layers {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(cite(l))
		}
		b.WriteByte('\n')
	}
	b.WriteString("version: 1\n")
	if p.Profile != "" {
		line(&b, 0, "profile: "+yamlString(p.Profile), p.ProfileOrigin)
	}
	if len(p.Locks) > 0 {
		b.WriteString("lock:\n")
		for _, l := range p.Locks {
			line(&b, 1, "- "+yamlString(l.Value), l.Origin)
		}
	}
	var sec bytes.Buffer // the current section's lines
	section := ""
	flush := func() {
		switch {
		case section == "" || section == "credentials":
		case sec.Len() == 0:
			b.WriteString(section + ": {}\n")
		default:
			b.WriteString(section + ":\n")
			b.Write(sec.Bytes())
		}
		sec.Reset()
	}
	for _, f := range schema {
		s, key, _ := strings.Cut(f.path, ".")
		if s != section {
			flush()
			section = s
		}
		switch {
		case f.path == "credentials":
			formatCredentials(&b, p.Credentials)
		case f.path == "network.mode":
			if p.Network.Mode != "" {
				line(&sec, 1, key+": "+yamlString(string(p.Network.Mode)), p.Network.ModeOrigin)
			}
		case f.path == "process.env":
			formatEntries(&sec, key, p.Process.Env)
		case f.str != nil:
			if v := f.str(p); v.isSet() {
				text := yamlString(v.Value)
				if f.path == "resources.cpus" {
					text = v.Value // a number
				}
				line(&sec, 1, key+": "+text, v.Origin)
			}
		case f.num != nil:
			if n := f.num(p); n.Set {
				line(&sec, 1, key+": "+strconv.FormatInt(n.Value, 10), n.Origin)
			}
		case f.entries != nil:
			formatEntries(&sec, key, *f.entries(p))
		case f.hosts != nil:
			rules := *f.hosts(p)
			es := make([]Entry, len(rules))
			for i, r := range rules {
				es[i] = Entry{Value: r.String(), Origin: r.Origin}
			}
			formatEntries(&sec, key, es)
		}
	}
	flush()
	return b.Bytes()
}

func formatEntries(b *bytes.Buffer, key string, es []Entry) {
	if len(es) == 0 {
		indent(b, 1)
		b.WriteString(key + ": []\n")
		return
	}
	indent(b, 1)
	b.WriteString(key + ":\n")
	for _, e := range es {
		line(b, 2, "- "+yamlString(e.Value), e.Origin)
	}
}

func formatCredentials(b *bytes.Buffer, cs []Credential) {
	if len(cs) == 0 {
		b.WriteString("credentials: []\n")
		return
	}
	b.WriteString("credentials:\n")
	for _, c := range cs {
		line(b, 1, "- name: "+yamlString(c.Name), c.Origin)
		indent(b, 2)
		b.WriteString("hosts:\n")
		for _, h := range c.Hosts {
			line(b, 3, "- "+yamlString(h.Value), h.Origin)
		}
		for _, kv := range [][2]string{{"header", c.Header}, {"basic", c.Basic}, {"query", c.Query},
			{"env", c.Env}, {"file", c.File}} {
			if kv[1] != "" {
				indent(b, 2)
				b.WriteString(kv[0] + ": " + yamlString(kv[1]) + "\n")
			}
		}
		if len(c.Command) > 0 {
			indent(b, 2)
			b.WriteString("command:\n")
			for _, a := range c.Command {
				indent(b, 3)
				b.WriteString("- " + yamlString(a) + "\n")
			}
		}
		if c.Placeholder != "" {
			indent(b, 2)
			b.WriteString("placeholder: " + yamlString(c.Placeholder) + "\n")
		}
	}
}

func indent(b *bytes.Buffer, level int) {
	for range level {
		b.WriteString("  ")
	}
}

// line writes one value and the comment citing its origin.
func line(b *bytes.Buffer, level int, text string, o Origin) {
	indent(b, level)
	b.WriteString(text)
	b.WriteString("  # ")
	if o == (Origin{}) {
		b.WriteString("default")
	} else {
		b.WriteString(cite(o))
	}
	b.WriteByte('\n')
}

// yamlString writes s as a YAML scalar that reads back as the string s:
// plain when that is unambiguous, else double-quoted (Go's quoting is valid
// YAML for valid UTF-8).
func yamlString(s string) string {
	if plainSafe(s) {
		return s
	}
	return strconv.Quote(s)
}

func plainSafe(s string) bool {
	if s == "" {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/' || c == '~' || c == '_') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._/~:@+=-", c) >= 0) {
			return false
		}
	}
	if strings.HasSuffix(s, ":") {
		return false
	}
	switch strings.ToLower(s) {
	case "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", ".nan":
		return false
	}
	// Anything a YAML reader might take for a number.
	if c := s[0]; '0' <= c && c <= '9' || c == '.' {
		if _, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64); err == nil {
			return false
		}
		if _, err := strconv.ParseInt(s, 0, 64); err == nil {
			return false
		}
		if strings.Count(s, ":") > 0 && strings.Trim(s, "0123456789:.") == "" { // sexagesimal, in YAML 1.1
			return false
		}
	}
	return true
}

// FormatJSON returns the policy as a JSON document in which every value is
// {"value": ..., "origin": {"layer", "file", "line", "key"}}. It is for
// tools, not for writing policy files.
func (p *Policy) FormatJSON() ([]byte, error) {
	root := obj{{"version", 1}}
	if p.Profile != "" {
		root = append(root, kv{"profile", value(p.Profile, p.ProfileOrigin)})
	}
	layers := make([]any, len(p.Layers))
	for i, l := range p.Layers {
		layers[i] = obj{{"layer", l.Layer}, {"file", l.File}}
	}
	root = append(root, kv{"layers", layers}, kv{"lock", entryValues(p.Locks)})
	var sec obj
	section := ""
	flush := func() {
		if section != "" && section != "credentials" {
			root = append(root, kv{section, sec})
		}
		sec = nil
	}
	for _, f := range schema {
		s, key, _ := strings.Cut(f.path, ".")
		if s != section {
			flush()
			section = s
		}
		switch {
		case f.path == "credentials":
			root = append(root, kv{"credentials", credentialValues(p.Credentials)})
		case f.path == "network.mode":
			if p.Network.Mode != "" {
				sec = append(sec, kv{key, value(string(p.Network.Mode), p.Network.ModeOrigin)})
			}
		case f.path == "process.env":
			sec = append(sec, kv{key, entryValues(p.Process.Env)})
		case f.str != nil:
			if v := f.str(p); v.isSet() {
				sec = append(sec, kv{key, value(v.Value, v.Origin)})
			}
		case f.num != nil:
			if v := f.num(p); v.Set {
				sec = append(sec, kv{key, value(v.Value, v.Origin)})
			}
		case f.entries != nil:
			sec = append(sec, kv{key, entryValues(*f.entries(p))})
		case f.hosts != nil:
			rules := *f.hosts(p)
			vs := make([]any, len(rules))
			for i, r := range rules {
				vs[i] = value(r.String(), r.Origin)
			}
			sec = append(sec, kv{key, vs})
		}
	}
	flush()
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// obj is a JSON object that keeps its keys in order.
type obj []kv

type kv struct {
	k string
	v any
}

// MarshalJSON writes the keys in order.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func originValue(o Origin) obj {
	out := obj{{"layer", o.Layer}, {"file", o.File}}
	if o.Line > 0 {
		out = append(out, kv{"line", o.Line})
	}
	return append(out, kv{"key", o.Key})
}

func value(v any, o Origin) obj { return obj{{"value", v}, {"origin", originValue(o)}} }

func entryValues(es []Entry) []any {
	out := make([]any, len(es))
	for i, e := range es {
		out[i] = value(e.Value, e.Origin)
	}
	return out
}

func credentialValues(cs []Credential) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		o := obj{{"name", c.Name}, {"hosts", entryValues(c.Hosts)}}
		for _, f := range [][2]string{{"header", c.Header}, {"basic", c.Basic}, {"query", c.Query},
			{"env", c.Env}, {"file", c.File}} {
			if f[1] != "" {
				o = append(o, kv{f[0], f[1]})
			}
		}
		if len(c.Command) > 0 {
			o = append(o, kv{"command", c.Command})
		}
		if c.Placeholder != "" {
			o = append(o, kv{"placeholder", c.Placeholder})
		}
		out[i] = append(o, kv{"origin", originValue(c.Origin)})
	}
	return out
}
