package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the size of the largest policy file moat reads, in bytes.
const MaxFileSize = 1 << 20

// Layer names, lowest precedence first. A built-in profile's layer is
// "profile:NAME".
const (
	LayerUser    = "user"
	LayerProject = "project"
	LayerManaged = "managed"
	LayerFlag    = "flag" // a command-line flag, such as --profile
)

// Choices for the enumerated keys.
var (
	modeChoices        = []string{"enforce", "report"}
	scanChoices        = []string{"off", "warn", "block"}
	workspaceChoices   = []string{"rw", "overlay", "copy", "readonly", "tmpfs"}
	defaultModeChoices = []string{"ask", "deny", "allow"}
	tierChoices        = []string{"native", "container", "gvisor", "docker", "microvm"}
	requireChoices     = []string{"namespaces", "userns", "landlock", "seccomp", "no_new_privs", "cgroups"}
)

// Parse reads one policy file as the layer named layer ("managed",
// "project", "user" or "profile:NAME") and returns what that layer says,
// not yet stacked on a profile or other layers (see Merge). YAML and JSON
// are accepted. Every problem is reported, as an Errors ordered by line:
// unknown keys (with the nearest known one), values of the wrong type,
// invalid values, duplicate keys, YAML anchors, aliases and custom tags,
// more than one document, invalid UTF-8, files over MaxFileSize. An empty
// file is a layer that says nothing; a file with any key must say
// "version: 1". Parse never panics.
func Parse(file string, data []byte, layer string) (*Policy, error) {
	ps := &parser{file: file, layer: layer, pol: &Policy{Version: 1, Layers: []Origin{{Layer: layer, File: file}}}}
	ps.noLines = strings.HasPrefix(layer, "profile:")
	ps.parse(data)
	if len(ps.errs) > 0 {
		sort.SliceStable(ps.errs, func(i, j int) bool { return ps.errs[i].Line < ps.errs[j].Line })
		return nil, ps.errs
	}
	return ps.pol, nil
}

type parser struct {
	file, layer string
	noLines     bool // built-in profiles are cited without line numbers
	errs        Errors
	pol         *Policy
}

type field struct {
	name string
	fn   func(key string, v *yaml.Node)
}

func (ps *parser) errorf(line int, key, format string, args ...any) {
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// valueErr reports a bad value: `KEY: "given": msg`.
func (ps *parser) valueErr(n *yaml.Node, key, given, msg string) {
	ps.errorf(n.Line, key, "%s: %s", quote(given), msg)
}

func (ps *parser) origin(n *yaml.Node, key string) Origin {
	o := Origin{Layer: ps.layer, File: ps.file, Line: n.Line, Key: key}
	if ps.noLines {
		o.Line = 0
	}
	return o
}

func (ps *parser) parse(data []byte) {
	if len(data) > MaxFileSize {
		ps.errorf(0, "", "the file is %d bytes; a policy file may have at most %d (1 MiB)", len(data), MaxFileSize)
		return
	}
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		ps.errorf(1+bytes.Count(data[:i], []byte("\n")), "", "not valid UTF-8; save the file as UTF-8")
		return
	}
	root := ps.decode(data)
	if root == nil {
		return
	}
	ps.top(root)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the errors of yaml.v3's parser (as opposed to its
// scanner), whose "line N" is the 0-based line where the construct that
// failed starts; a scanner's is 1-based.
var yamlParserProblems = []string{
	"did not find expected",
	"found undefined tag handle",
	"found duplicate %",
	"found incompatible YAML document",
	"expected ",
}

func (ps *parser) yamlError(err error, data []byte) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	for _, p := range yamlParserProblems {
		if strings.HasPrefix(msg, p) {
			line++
			break
		}
	}
	line = max(line, 1) // yaml.v3 gives no line for problems on the first
	lines := bytes.Split(data, []byte("\n"))
	if line <= len(lines) {
		text := lines[line-1]
		if indent := text[:len(text)-len(bytes.TrimLeft(text, " \t"))]; bytes.IndexByte(indent, '\t') >= 0 {
			msg += " (the line is indented with a tab; YAML needs spaces)"
		}
	}
	ps.errorf(line, "", "invalid YAML: %s", strings.ReplaceAll(msg, "\n", "; "))
}

// decode returns the document's root node, or nil for an empty document or
// one that could not be read (with errors reported).
func (ps *parser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on hostile input before
			ps.errorf(0, "", "invalid YAML: the parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			ps.yamlError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		ps.errorf(line, "", "a second YAML document; a policy file holds one")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// check refuses anchors, aliases and custom tags on a node.
func (ps *parser) check(n *yaml.Node, key string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		ps.errorf(n.Line, key, "YAML aliases (*%s) are not allowed; write the value out", n.Value)
		return false
	case n.Anchor != "":
		ps.errorf(n.Line, key, "YAML anchors (&%s) are not allowed; write the value out where it is used", n.Anchor)
		return false
	case n.Style&yaml.TaggedStyle != 0:
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!seq", "!!map":
		default:
			ps.errorf(n.Line, key, "YAML tag %q is not allowed", n.Tag)
			return false
		}
	}
	return true
}

func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		case "!!timestamp":
			return "a date"
		}
	}
	return "something else"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// keyName shows a key in a key path: as it is if it looks like a key,
// quoted if not, so that no control character reaches an error message.
func keyName(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return quote(k)
		}
	}
	if k == "" {
		return `""`
	}
	return k
}

func index(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }

// mapping walks a mapping node's keys, calling the field of each; unknown
// and duplicate keys are errors.
func (ps *parser) mapping(n *yaml.Node, path string, fields []field) {
	seen := make(map[string]int, len(n.Content)/2)
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if !ps.check(kn, path) {
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			ps.errorf(kn.Line, path, "a key must be a name, not %s", kindOf(kn))
			continue
		}
		if kn.ShortTag() == "!!merge" {
			ps.errorf(kn.Line, join(path, kn.Value), "YAML merge keys are not allowed; write the keys out")
			continue
		}
		key := join(path, keyName(kn.Value))
		if line, dup := seen[kn.Value]; dup {
			ps.errorf(kn.Line, key, "duplicate key; first set at line %d", line)
			continue
		}
		seen[kn.Value] = kn.Line
		var fn func(string, *yaml.Node)
		for _, f := range fields {
			if f.name == kn.Value {
				fn = f.fn
			}
		}
		if fn == nil {
			if s := suggest(kn.Value, names); s != "" {
				ps.errorf(kn.Line, key, "unknown key; did you mean %q?", s)
			} else {
				ps.errorf(kn.Line, key, "unknown key; want %s", oneOf(names))
			}
			continue
		}
		if !ps.check(vn, key) {
			continue
		}
		if (vn.Kind == yaml.MappingNode || vn.Kind == yaml.SequenceNode) && vn.Line != kn.Line {
			// A block list or mapping starts on the line after its key;
			// errors about the whole value cite the key's line.
			c := *vn
			c.Line = kn.Line
			vn = &c
		}
		fn(key, vn)
	}
}

// section checks that n is a mapping (or nothing) and walks it.
func (ps *parser) section(key string, n *yaml.Node, fields []field) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n.Line, key, "expected a mapping, got %s", kindOf(n))
		return
	}
	ps.mapping(n, key, fields)
}

func (ps *parser) top(root *yaml.Node) {
	if isNull(root) {
		return
	}
	if !ps.check(root, "") {
		return
	}
	if root.Kind != yaml.MappingNode {
		ps.errorf(root.Line, "", "expected a mapping of keys (version, network, ...), got %s", kindOf(root))
		return
	}
	if len(root.Content) == 0 {
		return
	}
	p := ps.pol
	version := false
	ps.mapping(root, "", []field{
		{"version", func(k string, v *yaml.Node) { version = true; ps.version(k, v) }},
		{"profile", func(k string, v *yaml.Node) {
			if s, ok := ps.enum(k, v, "profile", ProfileNames()); ok {
				p.Profile, p.ProfileOrigin = s.Value, s.Origin
			}
		}},
		{"lock", ps.lock},
		{"network", ps.network},
		{"filesystem", ps.filesystem},
		{"credentials", ps.credentials},
		{"tls", ps.tls},
		{"process", ps.process},
		{"resources", ps.resources},
		{"permissions", ps.permissions},
		{"audit", ps.audit},
		{"isolation", ps.isolation},
	})
	if !version {
		ps.errorf(root.Line, "version", `missing; add "version: 1" at the top`)
	}
}

func (ps *parser) version(key string, v *yaml.Node) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		ps.errorf(v.Line, key, `expected the number 1, got %s; write "version: 1"`, kindOf(v))
		return
	}
	if v.Value != "1" {
		ps.valueErr(v, key, v.Value, `unsupported version; write "version: 1"`)
	}
}

// Scalars.

// str returns a string scalar.
func (ps *parser) str(key string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		ps.errorf(n.Line, key, "expected a string, got %s", kindOf(n))
		return "", false
	}
	return n.Value, true
}

// text returns a string or number scalar as written.
func (ps *parser) text(key string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		ps.errorf(n.Line, key, "expected a string, got %s", kindOf(n))
		return "", false
	}
	return n.Value, true
}

func (ps *parser) enum(key string, n *yaml.Node, what string, choices []string) (String, bool) {
	s, ok := ps.str(key, n)
	if !ok {
		return String{}, false
	}
	for _, c := range choices {
		if s == c {
			return String{Value: s, Origin: ps.origin(n, key)}, true
		}
	}
	ps.valueErr(n, key, s, unknownChoice(what, s, choices))
	return String{}, false
}

// checked returns a String scalar if check (which returns an error
// message, or "") accepts it.
func (ps *parser) checked(key string, n *yaml.Node, check func(string) string) (String, bool) {
	s, ok := ps.str(key, n)
	if !ok {
		return String{}, false
	}
	if msg := check(s); msg != "" {
		ps.valueErr(n, key, s, msg)
		return String{}, false
	}
	return String{Value: s, Origin: ps.origin(n, key)}, true
}

func (ps *parser) integer(key string, n *yaml.Node, min int64) (Int, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
		ps.valueErr(n, key, n.Value, "expected a whole number")
		return Int{}, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		ps.errorf(n.Line, key, "expected a whole number, got %s", kindOf(n))
		return Int{}, false
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		ps.valueErr(n, key, n.Value, "write a decimal number")
		return Int{}, false
	}
	if v < min {
		ps.valueErr(n, key, n.Value, fmt.Sprintf("must be at least %d", min))
		return Int{}, false
	}
	return Int{Value: v, Set: true, Origin: ps.origin(n, key)}, true
}

func (ps *parser) size(key string, n *yaml.Node) (String, bool) {
	s, ok := ps.text(key, n)
	if !ok {
		return String{}, false
	}
	if _, err := ParseSize(s); err != nil {
		ps.valueErr(n, key, s, err.Error())
		return String{}, false
	}
	return String{Value: s, Origin: ps.origin(n, key)}, true
}

// Lists.

type item struct {
	node  *yaml.Node
	value string
	key   string // "network.allow[2]"
}

// strs returns the items of a list of strings; nothing is an empty list.
func (ps *parser) strs(key string, n *yaml.Node) []item {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
			hint = "; write [" + quote(n.Value) + "]"
		}
		ps.errorf(n.Line, key, "expected a list of strings, got %s%s", kindOf(n), hint)
		return nil
	}
	items := make([]item, 0, len(n.Content))
	for i, c := range n.Content {
		k := index(key, i)
		if !ps.check(c, k) {
			continue
		}
		if c.Kind != yaml.ScalarNode || c.ShortTag() != "!!str" {
			ps.errorf(c.Line, k, "expected a string, got %s", kindOf(c))
			continue
		}
		items = append(items, item{c, c.Value, k})
	}
	return items
}

// entries returns a list of strings check accepts, without duplicates.
func (ps *parser) entries(key string, n *yaml.Node, check func(string) string) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, it := range ps.strs(key, n) {
		if msg := check(it.value); msg != "" {
			ps.valueErr(it.node, it.key, it.value, msg)
			continue
		}
		if !seen[it.value] {
			seen[it.value] = true
			out = append(out, Entry{Value: it.value, Origin: ps.origin(it.node, it.key)})
		}
	}
	return out
}

// hostRules returns a list of host rules, without duplicates; tld allows
// wildcards over a top-level domain.
func (ps *parser) hostRules(key string, n *yaml.Node, tld bool) []HostRule {
	var out []HostRule
	seen := map[string]bool{}
	for _, it := range ps.strs(key, n) {
		r, err := parseHostRule(it.value, tld)
		if err != nil {
			ps.errorf(it.node.Line, it.key, "%s", err.Error())
			continue
		}
		if s := r.String(); !seen[s] {
			seen[s] = true
			r.Origin = ps.origin(it.node, it.key)
			r.rule = r.Origin.String()
			if key != "network.deny" {
				r.allowed = allowReason(r, key)
			}
			out = append(out, r)
		}
	}
	return out
}

// hostEntries is hostRules as entries in canonical form.
func (ps *parser) hostEntries(key string, n *yaml.Node) []Entry {
	rules := ps.hostRules(key, n, false)
	out := make([]Entry, len(rules))
	for i, r := range rules {
		out[i] = Entry{Value: r.String(), Origin: r.Origin}
	}
	return out
}

// Sections.

func (ps *parser) lock(key string, n *yaml.Node) {
	if ps.layer != LayerManaged {
		ps.errorf(n.Line, key, "only the managed policy may lock keys; remove it from this file")
		return
	}
	ps.pol.Locks = ps.entries(key, n, checkLockPath)
}

func (ps *parser) network(key string, n *yaml.Node) {
	net := &ps.pol.Network
	ps.section(key, n, []field{
		{"mode", func(k string, v *yaml.Node) {
			if s, ok := ps.enum(k, v, "mode", modeChoices); ok {
				net.Mode, net.ModeOrigin = Mode(s.Value), s.Origin
			}
		}},
		{"allow", func(k string, v *yaml.Node) { net.Allow = ps.hostRules(k, v, false) }},
		{"deny", func(k string, v *yaml.Node) { net.Deny = ps.hostRules(k, v, true) }},
		{"allow_private", func(k string, v *yaml.Node) { net.AllowPrivate = ps.hostRules(k, v, false) }},
		{"request_allow", func(k string, v *yaml.Node) { net.RequestAllow = ps.entries(k, v, checkRequestRule) }},
		{"request_deny", func(k string, v *yaml.Node) { net.RequestDeny = ps.entries(k, v, checkRequestRule) }},
		{"limits", func(k string, v *yaml.Node) { net.Limits = ps.entries(k, v, checkLimit) }},
		{"endpoints", func(k string, v *yaml.Node) { net.Endpoints = ps.endpoints(k, v) }},
	})
}

func (ps *parser) filesystem(key string, n *yaml.Node) {
	fs := &ps.pol.Filesystem
	glob := func(s string) string { return checkPath(s, true) }
	ps.section(key, n, []field{
		{"read", func(k string, v *yaml.Node) { fs.Read = ps.entries(k, v, glob) }},
		{"deny_read", func(k string, v *yaml.Node) { fs.DenyRead = ps.entries(k, v, glob) }},
		{"write", func(k string, v *yaml.Node) { fs.Write = ps.entries(k, v, glob) }},
		{"deny_write", func(k string, v *yaml.Node) { fs.DenyWrite = ps.entries(k, v, glob) }},
		{"tmpfs", func(k string, v *yaml.Node) { fs.Tmpfs = ps.entries(k, v, checkTmpfs) }},
		{"scan", func(k string, v *yaml.Node) {
			if s, ok := ps.enum(k, v, "scan mode", scanChoices); ok {
				fs.Scan = s
			}
		}},
		{"workspace", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, checkWorkspace); ok {
				fs.Workspace = s
			}
		}},
		{"volumes", func(k string, v *yaml.Node) { fs.Volumes = ps.entries(k, v, checkVolume) }},
	})
}

func (ps *parser) credentials(key string, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n.Line, key, "expected a list of credentials, got %s", kindOf(n))
		return
	}
	names := map[string]int{}
	for i, c := range n.Content {
		ck := index(key, i)
		if !ps.check(c, ck) {
			continue
		}
		if c.Kind != yaml.MappingNode {
			ps.errorf(c.Line, ck, "expected a mapping (name, hosts, header, env, ...), got %s", kindOf(c))
			continue
		}
		cr, ok := ps.credential(ck, c)
		if !ok {
			continue
		}
		if line, dup := names[cr.Name]; dup {
			ps.errorf(c.Line, ck+".name", "%s: defined twice; first at line %d", quote(cr.Name), line)
			continue
		}
		names[cr.Name] = c.Line
		ps.pol.Credentials = append(ps.pol.Credentials, cr)
	}
}

func (ps *parser) credential(ck string, c *yaml.Node) (Credential, bool) {
	cr := Credential{Origin: ps.origin(c, ck)}
	nerr := len(ps.errs)
	var how, sources []string
	hosts := false
	str := func(dst *string, check func(string) string, set *[]string, name string) func(string, *yaml.Node) {
		return func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, check); ok {
				*dst = s.Value
				if set != nil {
					*set = append(*set, name)
				}
			}
		}
	}
	ps.mapping(c, ck, []field{
		{"name", str(&cr.Name, checkCredentialName, nil, "")},
		{"hosts", func(k string, v *yaml.Node) {
			hosts = true
			before := len(ps.errs)
			cr.Hosts = ps.hostEntries(k, v)
			if len(cr.Hosts) == 0 && len(ps.errs) == before {
				ps.errorf(v.Line, k, "empty; list the hosts this secret may be sent to")
			}
		}},
		{"header", str(&cr.Header, checkHeader, &how, "header")},
		{"basic", str(&cr.Basic, checkBasic, &how, "basic")},
		{"query", str(&cr.Query, checkQuery, &how, "query")},
		{"env", str(&cr.Env, checkEnvName, &sources, "env")},
		{"file", str(&cr.File, func(s string) string { return checkPath(s, false) }, &sources, "file")},
		{"command", func(k string, v *yaml.Node) {
			if v.Kind != yaml.SequenceNode {
				ps.errorf(v.Line, k, "expected a list of strings (the program and its arguments), got %s", kindOf(v))
				return
			}
			items := ps.strs(k, v)
			if len(items) == 0 || items[0].value == "" {
				ps.errorf(v.Line, k, "empty; give the program and its arguments")
				return
			}
			for _, it := range items {
				cr.Command = append(cr.Command, it.value)
			}
			sources = append(sources, "command")
		}},
		{"placeholder", str(&cr.Placeholder, checkEnvName, nil, "")},
	})
	if len(ps.errs) > nerr {
		return cr, false
	}
	if cr.Name == "" {
		ps.errorf(c.Line, ck, `missing "name"; give the credential a name`)
		return cr, false
	}
	name := quote(cr.Name)
	ok := true
	if !hosts {
		ps.errorf(c.Line, ck, `%s: missing "hosts"; list the hosts this secret may be sent to`, name)
		ok = false
	}
	switch len(how) {
	case 0:
		ps.errorf(c.Line, ck, "%s: say how to send the secret: set one of header, basic or query", name)
		ok = false
	case 1:
	default:
		ps.errorf(c.Line, ck, "%s: %s; set one of header, basic or query", name, allSet(how))
		ok = false
	}
	switch len(sources) {
	case 0:
		ps.errorf(c.Line, ck, "%s: say where the secret comes from: set one of env, file or command", name)
		ok = false
	case 1:
	default:
		ps.errorf(c.Line, ck, "%s: %s; set one of env, file or command", name, allSet(sources))
		ok = false
	}
	return cr, ok
}

// allSet says that several keys are set: "a and b are both set", "a, b
// and c are all set".
func allSet(s []string) string {
	if len(s) == 2 {
		return s[0] + " and " + s[1] + " are both set"
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1] + " are all set"
}

func (ps *parser) tls(key string, n *yaml.Node) {
	t := &ps.pol.TLS
	ps.section(key, n, []field{
		{"intercept", func(k string, v *yaml.Node) { t.Intercept = ps.hostEntries(k, v) }},
		{"ca", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, func(s string) string { return checkPath(s, false) }); ok {
				t.CA = s
			}
		}},
		{"exclude", func(k string, v *yaml.Node) { t.Exclude = ps.hostEntries(k, v) }},
	})
}

func (ps *parser) process(key string, n *yaml.Node) {
	pr := &ps.pol.Process
	ps.section(key, n, []field{
		{"user", func(k string, v *yaml.Node) {
			s, ok := ps.text(k, v)
			if !ok {
				return
			}
			if msg := checkUser(s); msg != "" {
				ps.valueErr(v, k, s, msg)
				return
			}
			pr.User = String{Value: s, Origin: ps.origin(v, k)}
		}},
		{"env", func(k string, v *yaml.Node) {
			seen := map[string]int{}
			for _, it := range ps.strs(k, v) {
				name, _, _ := strings.Cut(it.value, "=")
				if msg := checkEnvName(name); msg != "" {
					// Quote the name only: a value may be a secret.
					ps.valueErr(it.node, it.key, name, msg+"; write NAME or NAME=VALUE")
					continue
				}
				if line, dup := seen[name]; dup {
					ps.valueErr(it.node, it.key, name, fmt.Sprintf("set twice; first at line %d", line))
					continue
				}
				seen[name] = it.node.Line
				pr.Env = append(pr.Env, Entry{Value: it.value, Origin: ps.origin(it.node, it.key)})
			}
		}},
	})
}

func (ps *parser) resources(key string, n *yaml.Node) {
	r := &ps.pol.Resources
	ps.section(key, n, []field{
		{"memory", func(k string, v *yaml.Node) {
			if s, ok := ps.size(k, v); ok {
				r.Memory = s
			}
		}},
		{"cpus", func(k string, v *yaml.Node) {
			s, ok := ps.text(k, v)
			if !ok {
				return
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f != f || f <= 0 || f > 4096 {
				ps.valueErr(v, k, s, `write a positive number of CPUs, like 2 or 1.5`)
				return
			}
			r.CPUs = String{Value: strconv.FormatFloat(f, 'f', -1, 64), Origin: ps.origin(v, k)}
		}},
		{"pids", func(k string, v *yaml.Node) {
			if i, ok := ps.integer(k, v, 1); ok {
				r.Pids = i
			}
		}},
	})
}

func (ps *parser) permissions(key string, n *yaml.Node) {
	pm := &ps.pol.Permissions
	ps.section(key, n, []field{
		{"allow", func(k string, v *yaml.Node) { pm.Allow = ps.entries(k, v, checkPermissionRule) }},
		{"ask", func(k string, v *yaml.Node) { pm.Ask = ps.entries(k, v, checkPermissionRule) }},
		{"deny", func(k string, v *yaml.Node) { pm.Deny = ps.entries(k, v, checkPermissionRule) }},
		{"default_mode", func(k string, v *yaml.Node) {
			if s, ok := ps.enum(k, v, "mode", defaultModeChoices); ok {
				pm.DefaultMode = s
			}
		}},
		{"severity", func(k string, v *yaml.Node) {
			if s, ok := ps.severity(k, v); ok {
				pm.Severity = s
			}
		}},
	})
}

// Severities of the permission analyser's findings, least severe first,
// and the verdicts permissions.severity maps them to.
var (
	severityChoices = []string{"info", "low", "medium", "high", "critical"}
	verdictChoices  = []string{"deny", "ask", "allow"}
)

// severity reads permissions.severity: a mapping of severities to
// verdicts ({critical: deny, high: ask}), or the same written
// "critical=deny,high=ask" (as moat policy show prints it). It keeps the
// second form, most severe first.
func (ps *parser) severity(key string, n *yaml.Node) (String, bool) {
	set := map[string]string{}
	if n.Kind == yaml.MappingNode {
		before := len(ps.errs)
		var fields []field
		for _, sev := range severityChoices {
			fields = append(fields, field{sev, func(k string, v *yaml.Node) {
				if s, ok := ps.enum(k, v, "verdict", verdictChoices); ok {
					set[sev] = s.Value
				}
			}})
		}
		ps.mapping(n, key, fields)
		if len(ps.errs) > before {
			return String{}, false
		}
	} else {
		s, ok := ps.str(key, n)
		if !ok {
			return String{}, false
		}
		if msg := ParseSeverityList(s, set); msg != "" {
			ps.valueErr(n, key, s, msg)
			return String{}, false
		}
	}
	if len(set) == 0 {
		ps.errorf(n.Line, key, "empty; map severities to verdicts, like {critical: deny, high: ask}")
		return String{}, false
	}
	var pairs []string
	for i := len(severityChoices) - 1; i >= 0; i-- {
		if v, ok := set[severityChoices[i]]; ok {
			pairs = append(pairs, severityChoices[i]+"="+v)
		}
	}
	return String{Value: strings.Join(pairs, ","), Origin: ps.origin(n, key)}, true
}

// ParseSeverityList reads "SEVERITY=VERDICT,…" into set, returning what is
// wrong with it, or "".
func ParseSeverityList(s string, set map[string]string) string {
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		sev, v, ok := strings.Cut(kv, "=")
		sev, v = strings.TrimSpace(sev), strings.TrimSpace(v)
		switch {
		case !ok:
			return "in " + quote(kv) + ": write severity=verdict, like high=ask"
		case !slices.Contains(severityChoices, sev):
			return "in " + quote(kv) + ": " + unknownChoice("severity", sev, severityChoices)
		case !slices.Contains(verdictChoices, v):
			return "in " + quote(kv) + ": " + unknownChoice("verdict", v, verdictChoices)
		}
		if _, dup := set[sev]; dup {
			return "in " + quote(kv) + ": " + sev + " is mapped twice"
		}
		set[sev] = v
	}
	if len(set) == 0 {
		return "empty; write severity=verdict pairs, like critical=deny,high=ask"
	}
	return ""
}

func (ps *parser) audit(key string, n *yaml.Node) {
	a := &ps.pol.Audit
	ps.section(key, n, []field{
		{"file", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, func(s string) string {
				if s == "-" {
					return ""
				}
				return checkPath(s, false)
			}); ok {
				a.File = s
			}
		}},
		{"max_size", func(k string, v *yaml.Node) {
			if s, ok := ps.size(k, v); ok {
				a.MaxSize = s
			}
		}},
		{"max_files", func(k string, v *yaml.Node) {
			if i, ok := ps.integer(k, v, 0); ok {
				a.MaxFiles = i
			}
		}},
	})
}

func (ps *parser) isolation(key string, n *yaml.Node) {
	is := &ps.pol.Isolation
	ps.section(key, n, []field{
		{"tier", func(k string, v *yaml.Node) {
			if s, ok := ps.enum(k, v, "tier", tierChoices); ok {
				is.Tier = s
			}
		}},
		{"require", func(k string, v *yaml.Node) {
			is.Require = ps.entries(k, v, func(s string) string {
				for _, c := range requireChoices {
					if s == c {
						return ""
					}
				}
				return unknownChoice("layer", s, requireChoices)
			})
		}},
		{"runtime", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, checkWord); ok {
				is.Runtime = s
			}
		}},
		{"image", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, checkWord); ok {
				is.Image = s
			}
		}},
		{"hostname", func(k string, v *yaml.Node) {
			if s, ok := ps.checked(k, v, checkHostname); ok {
				is.Hostname = s
			}
		}},
	})
}
