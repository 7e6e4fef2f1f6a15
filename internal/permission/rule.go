package permission

import (
	"fmt"
	"path"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// Rule is one compiled permission rule: "Tool" or "Tool(specifier)", in
// Claude Code's language.
type Rule struct {
	// Raw is the rule as written.
	Raw string
	// Tool is the tool name; deny and ask rules may use '*' in it.
	Tool string
	// Spec is the specifier; empty for a bare tool name (which matches
	// every use of the tool, as does "Bash(*)").
	Spec string
	// List is the list the rule sits in: Deny, Ask or Allow.
	List policy.Verdict
	// Cite names where the rule is written: "moat.yaml:14
	// permissions.deny[2]", ".claude/settings.json permissions.allow[0]".
	Cite string
	// Base is the directory a "/path" specifier is relative to: the
	// directory of the settings file (Claude Code's anchor), or of the
	// moat policy file.
	Base string

	kind    ruleKind
	cmd     cmdPattern   // kindBash
	argv    *argvPattern // kindBash, when the specifier has options
	path    pathRule     // kindPath
	domain  string       // kindDomain: lower-case host, "*." prefix for subdomains, "*" for any
	param   string       // kindParam
	paramRe string       // kindParam: glob on the value
	idx     int          // position in its Engine, from 1; 0: in none
}

type ruleKind int

const (
	kindTool   ruleKind = iota // bare: every use of the tool
	kindBash                   // Bash(command pattern)
	kindPath                   // Read/Edit(path glob)
	kindDomain                 // WebFetch(domain:host)
	kindParam                  // Tool(param:value), deny and ask only
	kindSpec                   // Tool(specifier) matched against the tool's main input
)

// Anchors of path specifiers.
type anchor int

const (
	anchorAbs      anchor = iota // //path
	anchorHome                   // ~/path
	anchorBase                   // /path: the settings file's directory
	anchorCwd                    // ./path
	anchorRelative               // path: cwd (allow) or any depth (deny, ask, or no slash)
)

type pathRule struct {
	anchor anchor
	rest   string // the glob after the anchor, slash-separated, no leading slash
}

// editTools are the tools Edit rules govern; readTools those Read rules
// govern. A Read deny also blocks writes.
var (
	editTools = map[string]bool{"Edit": true, "Write": true, "MultiEdit": true, "NotebookEdit": true}
	readTools = map[string]bool{"Read": true, "Grep": true, "Glob": true, "LS": true, "NotebookRead": true}
)

// ParseRule compiles a rule string for the given list. cite and base are
// recorded as given. Errors say what is wrong and what to write instead.
func ParseRule(raw string, list policy.Verdict, cite, base string) (Rule, error) {
	r := Rule{Raw: raw, List: list, Cite: cite, Base: base}
	s := strings.TrimSpace(raw)
	if s == "" {
		return r, fmt.Errorf("empty rule; write Tool or Tool(specifier)")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return r, fmt.Errorf("%q: contains a control character", raw)
		}
	}
	tool, spec := s, ""
	hasSpec := false
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return r, fmt.Errorf("%q: missing \")\" at the end; write Tool(specifier)", raw)
		}
		tool, spec, hasSpec = s[:i], s[i+1:len(s)-1], true
	} else if strings.IndexByte(s, ')') >= 0 {
		return r, fmt.Errorf("%q: \")\" without \"(\"", raw)
	}
	if tool == "" {
		return r, fmt.Errorf("%q: no tool name before \"(\"", raw)
	}
	for i := 0; i < len(tool); i++ {
		c := tool[i]
		if !(c == '_' || c == '-' || c == '*' || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return r, fmt.Errorf("%q: tool name %q has %q; tool names are letters, digits, _ and -", raw, tool, string(c))
		}
	}
	if strings.Contains(tool, "*") {
		if list == policy.Allow && !(strings.HasPrefix(tool, "mcp__") && mcpAllowGlob(tool)) {
			return r, fmt.Errorf("%q: a wildcard in a tool name is accepted only in deny and ask rules (or after mcp__server__ in allow rules)", raw)
		}
		if hasSpec {
			return r, fmt.Errorf("%q: a tool name with a wildcard takes no specifier", raw)
		}
	}
	r.Tool = tool
	spec = strings.TrimSpace(spec)
	if !hasSpec || spec == "*" && tool != "WebFetch" {
		r.kind = kindTool
		return r, nil
	}
	if spec == "" {
		return r, fmt.Errorf("%q: empty specifier; write %s alone to match every use", raw, tool)
	}
	r.Spec = spec
	switch {
	case tool == "Bash" || tool == "PowerShell":
		norm, words, err := normalizeCmdSpec(spec)
		if err != nil {
			return r, fmt.Errorf("%q: %v", raw, err)
		}
		r.kind = kindBash
		r.cmd = compileCmdPattern(norm)
		r.argv = compileArgvPattern(words)
	case tool == "Read" || tool == "Edit":
		pr, err := parsePathSpec(spec)
		if err != nil {
			return r, fmt.Errorf("%q: %v", raw, err)
		}
		r.kind, r.path = kindPath, pr
	case tool == "Write" || tool == "MultiEdit" || tool == "NotebookEdit" || tool == "Glob" || tool == "Grep":
		return r, fmt.Errorf("%q: Claude Code never consults path rules on %s; write Edit(…) for writes or Read(…) for reads", raw, tool)
	case tool == "WebFetch":
		d, ok := strings.CutPrefix(spec, "domain:")
		if !ok {
			return r, fmt.Errorf("%q: write WebFetch(domain:example.com)", raw)
		}
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d == "" || strings.Contains(d, "/") || strings.Contains(d, " ") {
			return r, fmt.Errorf("%q: %q is not a host name; write WebFetch(domain:example.com)", raw, d)
		}
		r.kind, r.domain = kindDomain, d
	default:
		if k, v, ok := strings.Cut(spec, ":"); ok && validName(k) {
			if list == policy.Allow {
				return r, fmt.Errorf("%q: Tool(param:value) rules are accepted only in deny and ask lists", raw)
			}
			r.kind, r.param, r.paramRe = kindParam, k, v
			return r, nil
		}
		r.kind = kindSpec
	}
	return r, nil
}

// mcpAllowGlob: allow rules may glob only after a literal "mcp__srv__".
func mcpAllowGlob(tool string) bool {
	rest := strings.TrimPrefix(tool, "mcp__")
	srv, _, ok := strings.Cut(rest, "__")
	return ok && srv != "" && !strings.Contains(srv, "*")
}

// normalizeCmdSpec removes quotes from a Bash specifier, collapses
// spaces, turns a trailing ":*" into " *" and returns the text (stars as
// '*', literal stars as `\*`) and its words.
func normalizeCmdSpec(spec string) (string, []string, error) {
	if strings.HasSuffix(spec, ":*") {
		spec = strings.TrimSuffix(spec, ":*") + " *"
	}
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
				continue
			}
			if c == '*' {
				cur.WriteByte('*')
				continue
			}
			cur.WriteByte(c)
		case quote == '"':
			if c == '"' {
				quote = 0
				continue
			}
			if c == '\\' && i+1 < len(spec) && strings.IndexByte("$`\"\\", spec[i+1]) >= 0 {
				i++
				c = spec[i]
			}
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(spec):
			i++
			if spec[i] == '*' {
				cur.WriteString(`\*`)
			} else {
				cur.WriteByte(spec[i])
			}
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return "", nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return "", nil, fmt.Errorf("empty command pattern")
	}
	return strings.Join(words, " "), words, nil
}

// parsePathSpec splits a Read/Edit specifier into its anchor and glob.
func parsePathSpec(spec string) (pathRule, error) {
	var pr pathRule
	s := spec
	switch {
	case strings.HasPrefix(s, "//"):
		pr.anchor, s = anchorAbs, s[2:]
	case s == "~" || strings.HasPrefix(s, "~/"):
		pr.anchor, s = anchorHome, strings.TrimPrefix(strings.TrimPrefix(s, "~"), "/")
	case strings.HasPrefix(s, "/"):
		pr.anchor, s = anchorBase, s[1:]
	case s == "." || strings.HasPrefix(s, "./"):
		pr.anchor, s = anchorCwd, strings.TrimPrefix(strings.TrimPrefix(s, "."), "/")
	case strings.HasPrefix(s, "~"):
		return pr, fmt.Errorf("%q: another user's home (~user) is not supported; write //home/user/…", spec)
	default:
		pr.anchor = anchorRelative
	}
	s = strings.TrimSuffix(s, "/")
	for _, seg := range strings.Split(s, "/") {
		if seg == "" {
			continue
		}
		if seg == ".." {
			return pr, fmt.Errorf("%q: \"..\" is not allowed in a path rule; anchor it with // or ~/", spec)
		}
		if !validSegment(seg) {
			return pr, fmt.Errorf("%q: bad glob %q", spec, seg)
		}
	}
	pr.rest = path.Clean("/" + s)[1:]
	return pr, nil
}

// pathEnv is what a path rule needs to be placed: the working directory
// and the home directory, both absolute and clean.
type pathEnv struct {
	cwd, home string
	// dir is where relative paths of a command resolve, when a cd earlier
	// in the command line moved; "" is cwd, unknownDir an unknown place.
	dir string
	// segs caches rule and built-in glob segments for one Check.
	segs *segCache
	// baseSegs, when not nil, are the segments of base(), a known
	// directory: set by withBase.
	baseSegs []string
}

// segCache holds segments computed for one cwd and home; it is read-only
// once built, so concurrent Checks share it.
type segCache struct {
	cwd, home string       // the directories it was computed for
	cwdSegs   []string     // cwd's segments
	rules     []placedGlob // by Rule.idx: path rules' segments
	globs     map[string][]string
	// sensitivePaths', persistencePaths' and systemDirs' globs, in order.
	sensitive, persist, system []placedGlob
}

// unknownDir is pathEnv.dir after "cd $X": relative paths could be
// anywhere.
const unknownDir = "\x00"

// withBase returns env moved to dir ("" is cwd), with its segments
// computed for resolveWord.
func (env pathEnv) withBase(dir string) pathEnv {
	env.dir = dir
	env.baseSegs = nil
	switch {
	case dir == "" && env.segs != nil:
		env.baseSegs = env.segs.cwdSegs
	case dir != unknownDir:
		env.baseSegs = splitPath(escapeGlob(env.base()))
	}
	if dir != unknownDir {
		if env.baseSegs == nil {
			env.baseSegs = []string{} // "/": known, and empty
		}
	}
	return env
}

// base is the directory relative paths resolve against.
func (env pathEnv) base() string {
	if env.dir != "" {
		return env.dir
	}
	return env.cwd
}

// segments returns the rule as absolute glob segments. anyDepth: a
// relative rule may match at any depth (deny and ask rules, and names
// without a slash).
func (r *Rule) segments(env pathEnv) []string {
	return r.placed(env).segs
}

// placed returns the rule's segments and prefilter for env, cached when
// the rule belongs to the engine that placed env.
func (r *Rule) placed(env pathEnv) placedGlob {
	if env.segs != nil && r.idx > 0 && r.idx < len(env.segs.rules) && env.segs.rules[r.idx].segs != nil {
		return env.segs.rules[r.idx]
	}
	return placeGlob(r.computeSegments(env))
}

func (r *Rule) computeSegments(env pathEnv) []string {
	pr := r.path
	var dir string
	switch pr.anchor {
	case anchorAbs:
		dir = "/"
	case anchorHome:
		dir = env.home
	case anchorBase:
		dir = r.Base
		if dir == "" {
			dir = env.cwd
		}
	case anchorCwd:
		dir = env.cwd
	case anchorRelative:
		if r.List != policy.Allow || !strings.Contains(pr.rest, "/") {
			segs := []string{"**"}
			if pr.rest != "" {
				segs = append(segs, strings.Split(pr.rest, "/")...)
			}
			return segs
		}
		dir = env.cwd
	}
	segs := splitPath(escapeGlob(dir))
	if pr.rest != "" {
		segs = append(segs, strings.Split(pr.rest, "/")...)
	}
	return segs
}

// matchTool reports whether the rule's tool name covers the tool.
func (r *Rule) matchTool(tool string) bool {
	if r.Tool == tool {
		return true
	}
	switch {
	case r.Tool == "Edit" && editTools[tool]:
		return true
	case r.Tool == "Read" && readTools[tool] && r.kind == kindPath:
		return true
	case strings.HasPrefix(r.Tool, "mcp__") && strings.HasPrefix(tool, "mcp__"):
		// mcp__srv covers every tool of srv.
		if !strings.Contains(r.Tool, "*") && strings.Count(r.Tool, "__") == 1 {
			return strings.HasPrefix(tool, r.Tool+"__")
		}
	}
	if strings.Contains(r.Tool, "*") {
		p := compileCmdPattern(r.Tool)
		return starMatch(p.toks, tool)
	}
	return false
}

// matchDomain matches a WebFetch rule against a normalised host.
func (r *Rule) matchDomain(host string) bool {
	d := r.domain
	switch {
	case d == "*":
		return true
	case strings.HasPrefix(d, "*."):
		return strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1
	case strings.Contains(d, "*"):
		// A non-leading star stays within one label.
		return labelGlob(d, host)
	}
	return host == d
}

func labelGlob(pat, host string) bool {
	pl, hl := strings.Split(pat, "."), strings.Split(host, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, _ := path.Match(pl[i], hl[i]); !ok {
			return false
		}
	}
	return true
}
