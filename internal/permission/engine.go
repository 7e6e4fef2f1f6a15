package permission

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/moatsec/moat/internal/policy"
	"mvdan.cc/sh/v3/syntax"
)

// Options configure an Engine. The zero value asks when nothing matches,
// maps critical findings to deny and high ones to ask, treats every host as
// outside network.allow and resolves no symbolic links.
type Options struct {
	// Default is the verdict when no rule decides; DefaultRule cites where
	// it was set. Zero Default is Deny: set it (FromPolicy does).
	Default     policy.Verdict
	DefaultRule string
	// Severity maps a finding's severity to the verdict it forces; a
	// severity not in the map forces nothing. Nil: DefaultSeverity.
	Severity map[Severity]policy.Verdict
	// NoReadOnly turns off the built-in allowance for read-only commands
	// (ls, cat, git status …) that no rule mentions.
	NoReadOnly bool
	// Egress decides whether a host is in network.allow (WebFetch, and
	// the exfiltration finding). Nil: no host is.
	Egress func(host string, port uint16) policy.Decision
	// Resolve returns the path a symbolic link leads to (the path itself if
	// it is none); nil resolves nothing. A deny rule applies if it matches
	// the path or its target; an allow rule must match both.
	Resolve func(path string) string
}

// DefaultSeverity is the severity mapping used when Options.Severity is nil.
var DefaultSeverity = map[Severity]policy.Verdict{Critical: policy.Deny, High: policy.Ask}

// SeverityMap applies "SEVERITY=VERDICT,…" (permissions.severity's form)
// to a copy of base: each severity named forces its verdict, "allow"
// meaning none (its findings only inform); the others keep base's.
func SeverityMap(list string, base map[Severity]policy.Verdict) (map[Severity]policy.Verdict, error) {
	set := map[string]string{}
	if msg := policy.ParseSeverityList(list, set); msg != "" {
		return nil, fmt.Errorf("%q: %s", list, msg)
	}
	m := make(map[Severity]policy.Verdict, len(base)+len(set))
	for k, v := range base {
		m[k] = v
	}
	for name, v := range set {
		sv, err := ParseSeverity(name)
		if err != nil {
			return nil, err
		}
		switch v {
		case "deny":
			m[sv] = policy.Deny
		case "ask":
			m[sv] = policy.Ask
		default:
			delete(m, sv)
		}
	}
	return m, nil
}

// LoosensSeverity names a severity whose findings force a weaker verdict
// under m than under base, or "".
func LoosensSeverity(m, base map[Severity]policy.Verdict) string {
	for s := Info; s <= Critical; s++ {
		bv, inBase := base[s]
		mv, inM := m[s]
		if inBase && (!inM || strictness(mv) < strictness(bv)) {
			return s.String()
		}
	}
	return ""
}

func strictness(v policy.Verdict) int {
	switch v {
	case policy.Deny:
		return 2
	case policy.Ask:
		return 1
	}
	return 0
}

// Engine decides tool calls. It holds no mutable state and is safe for
// concurrent use; Check does no I/O beyond Options.Resolve.
type Engine struct {
	deny, ask, allow []Rule
	opt              Options
	// bash and paths hold, per list (deny, ask), the rules that can match
	// a Bash command (matchTool("Bash")) and the Read and Edit path rules,
	// in list order: decideCommand looks at nothing else.
	bash, paths [2][]*Rule
	nrules      int // Rule.idx runs from 1 to nrules
	// places caches, per working and home directory, the segments of
	// every path rule and built-in glob; entries are immutable once stored.
	places     sync.Map // cwd+"\x00"+home → *segCache
	placeCount atomic.Int64
	lastPlace  atomic.Pointer[segCache] // the last one used
}

// maxPlaces bounds the directories whose segments are cached.
const maxPlaces = 64

// placed returns the precomputed segments for env's directories.
func (e *Engine) placed(env pathEnv) *segCache {
	if c := e.lastPlace.Load(); c != nil && c.cwd == env.cwd && c.home == env.home {
		return c // a hook or check decides in one place
	}
	key := env.cwd + "\x00" + env.home
	if c, ok := e.places.Load(key); ok {
		e.lastPlace.Store(c.(*segCache))
		return c.(*segCache)
	}
	c := &segCache{cwd: env.cwd, home: env.home, rules: make([]placedGlob, e.nrules+1), globs: map[string][]string{}}
	for _, list := range [][]Rule{e.deny, e.ask, e.allow} {
		for i := range list {
			if r := &list[i]; r.kind == kindPath {
				c.rules[r.idx] = placeGlob(r.computeSegments(env))
			}
		}
	}
	c.cwdSegs = splitPath(escapeGlob(env.cwd))
	c.sensitive = placeGlobs(sensitivePaths, env)
	c.persist = placeGlobs(persistencePaths, env)
	c.system = placeSystemDirs()
	if n := e.placeCount.Add(1); n <= maxPlaces {
		e.places.Store(key, c)
	}
	e.lastPlace.Store(c)
	return c
}

// New builds an engine from compiled rules (in any order; each rule's List
// says where it belongs).
func New(rules []Rule, o Options) *Engine {
	e := &Engine{opt: o}
	if e.opt.Severity == nil {
		e.opt.Severity = DefaultSeverity
	}
	if e.opt.DefaultRule == "" {
		e.opt.DefaultRule = "default"
	}
	for _, r := range rules {
		switch r.List {
		case policy.Deny:
			e.deny = append(e.deny, r)
		case policy.Ask:
			e.ask = append(e.ask, r)
		default:
			e.allow = append(e.allow, r)
		}
	}
	for k, list := range [][]Rule{e.deny, e.ask, e.allow} {
		for i := range list {
			r := &list[i]
			e.nrules++
			r.idx = e.nrules
			if k == 2 {
				continue
			}
			if r.matchTool("Bash") && (r.kind == kindTool || r.kind == kindBash) {
				e.bash[k] = append(e.bash[k], r)
			}
			if r.kind == kindPath {
				e.paths[k] = append(e.paths[k], r)
			}
		}
	}
	return e
}

// Rules returns the engine's rules: deny, then ask, then allow.
func (e *Engine) Rules() []Rule {
	out := append(append(append([]Rule(nil), e.deny...), e.ask...), e.allow...)
	return out
}

// PolicyRules compiles a policy's permissions lists, and its
// filesystem.deny_read entries as Read deny rules. A rule's "/path" is
// relative to the directory of the file that wrote it.
func PolicyRules(p *policy.Policy) ([]Rule, error) {
	var rules []Rule
	var errs []string
	for _, l := range []struct {
		v       policy.Verdict
		entries []policy.Entry
	}{{policy.Deny, p.Permissions.Deny}, {policy.Ask, p.Permissions.Ask}, {policy.Allow, p.Permissions.Allow}} {
		for _, en := range l.entries {
			r, err := ParseRule(en.Value, l.v, en.Origin.String(), originDir(en.Origin))
			if err != nil {
				errs = append(errs, en.Origin.String()+": "+err.Error())
				continue
			}
			rules = append(rules, r)
		}
	}
	for _, en := range p.Filesystem.DenyRead {
		v := en.Value
		switch {
		case strings.HasPrefix(v, "/"):
			v = "/" + v
		case strings.HasPrefix(v, "~"):
		default:
			v = "./" + strings.TrimPrefix(v, "./")
		}
		r, err := ParseRule("Read("+v+")", policy.Deny, en.Origin.String(), originDir(en.Origin))
		if err != nil {
			errs = append(errs, en.Origin.String()+": "+err.Error())
			continue
		}
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return rules, fmt.Errorf("permission rules: %s", strings.Join(errs, "; "))
	}
	return rules, nil
}

func originDir(o policy.Origin) string {
	if o.File == "" || strings.HasPrefix(o.File, "profile:") || o.Layer == "flag" {
		return ""
	}
	d, err := filepath.Abs(filepath.Dir(o.File))
	if err != nil {
		return ""
	}
	return d
}

// PolicyOptions returns the options a policy implies: its default mode,
// its severity mapping and its egress decision.
func PolicyOptions(p *policy.Policy) Options {
	o := Options{Default: policy.Ask, DefaultRule: "default", Egress: p.Egress, Severity: DefaultSeverity}
	if sv := p.Permissions.Severity.Value; sv != "" {
		// The loader checked it; a value it did not check keeps the default.
		if m, err := SeverityMap(sv, DefaultSeverity); err == nil {
			o.Severity = m
		}
	}
	if dm := p.Permissions.DefaultMode; dm.Value != "" {
		o.DefaultRule = dm.Origin.String()
		switch dm.Value {
		case "deny":
			o.Default = policy.Deny
		case "allow":
			o.Default = policy.Allow
		}
	}
	return o
}

// Request is one tool call to decide.
type Request struct {
	// Tool is Claude Code's tool name: "Bash", "Read", "Edit",
	// "WebFetch", "mcp__srv__tool" …
	Tool string
	// Input is the tool's input as Claude Code sends it (tool_input).
	Input map[string]any
	// Cwd and Home are absolute; an empty Cwd is "/".
	Cwd, Home string
}

// Result is a decision with the findings behind it.
type Result struct {
	policy.Decision
	Findings []Finding `json:"findings"`
}

// Check decides a tool call: deny rules, then ask rules, then allow rules,
// the first match winning (specificity is ignored); findings force at least
// the verdict their severity maps to; nothing matching falls to the
// default. For Bash every simple command is decided on its own and the
// strictest verdict wins. A command that does not parse is asked, never
// allowed.
func (e *Engine) Check(req Request) Result {
	env := pathEnv{cwd: path.Clean("/" + strings.TrimPrefix(req.Cwd, "/")), home: req.Home}
	if req.Home == "" {
		env.home = "/nonexistent-home"
	}
	env.home = path.Clean(env.home)
	env.segs = e.placed(env)
	switch {
	case req.Tool == "Bash":
		cmd, _ := req.Input["command"].(string)
		return e.checkBash(cmd, env)
	case readTools[req.Tool] || editTools[req.Tool]:
		return e.checkPath(req, env)
	case req.Tool == "WebFetch":
		return e.checkFetch(req)
	}
	return e.checkTool(req)
}

// CheckCommand decides a Bash command line.
func (e *Engine) CheckCommand(cmd, cwd, home string) Result {
	return e.Check(Request{Tool: "Bash", Input: map[string]any{"command": cmd}, Cwd: cwd, Home: home})
}

// outcome is one part's decision while a command line is being decided.
type outcome struct {
	d        policy.Decision
	fromRule bool   // a rule decided (not a finding or the default)
	allowed  string // for an allow: the command's text, for the reason
}

func deny(rule, reason string) policy.Decision {
	return policy.Decision{Verdict: policy.Deny, Rule: rule, Reason: reason}
}

func ask(rule, reason string) policy.Decision {
	return policy.Decision{Verdict: policy.Ask, Rule: rule, Reason: reason}
}

// badRunes reports characters that parsers disagree on: control
// characters other than tab and newline, and non-ASCII spaces.
func badRunes(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Sprintf("invalid UTF-8 at byte %d", i)
		case r == '\t' || r == '\n':
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("control character %U at byte %d", r, i)
		case r >= 0x80 && (unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || r == 0x85):
			return fmt.Sprintf("invisible or non-ASCII space %U at byte %d", r, i)
		}
		i += n
	}
	return ""
}

func quoteCmd(s string) string {
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strconv.Quote(strings.ReplaceAll(s, string(wild), "…"))
}

func (e *Engine) checkBash(src string, env pathEnv) Result {
	if len(src) > MaxCheckLen {
		return Result{Decision: deny("builtin:size", fmt.Sprintf("command is %d bytes, over the %d moat parses", len(src), MaxCheckLen))}
	}
	if strings.TrimSpace(src) == "" {
		return Result{Decision: ask("builtin:empty", "empty command")}
	}
	if why := badRunes(src); why != "" {
		return Result{Decision: ask("builtin:characters", "command contains "+why+", which shells and checkers may read differently"),
			Findings: []Finding{{Category: CatObfuscation, Severity: High, Reason: "contains " + why}}}
	}
	an := analyse(src)
	if an.parseErr != nil {
		return Result{Decision: ask("builtin:parse-error", "command does not parse as bash: "+an.parseErr.Error())}
	}
	f := &finder{env: env, out: an.findings}
	if e.opt.Egress != nil {
		f.eg = func(h string, p uint16) (bool, string) {
			d := e.opt.Egress(h, p)
			return d.Verdict == policy.Allow, d.Rule
		}
	}
	type part struct {
		c             *Command
		reads, writes []target
	}
	parts := make([]part, 0, len(an.cmds))
	// A cd moves where later relative paths resolve. Scoping (subshells,
	// functions) is not modelled: later commands are resolved against
	// every directory the line has moved to, and the original one.
	dirs := []string{""}
	base := env.withBase("")
	var dirEnvs []pathEnv // dirs[i] as an environment, made on first need
	for _, c := range an.cmds {
		p := part{c: c}
		if len(dirs) == 1 {
			// One directory: nothing to merge (a duplicate target
			// changes no decision).
			p.reads, p.writes = e.targets(c, base)
			f.commandFindings(c, p.reads, p.writes)
			parts = append(parts, p)
			if d, ok := cdTarget(c, env, ""); ok && d != "" {
				dirs = append(dirs, d)
			}
			continue
		}
		var curReads, curWrites []target // in the directory the line is in now
		for len(dirEnvs) < len(dirs) {
			dirEnvs = append(dirEnvs, env.withBase(dirs[len(dirEnvs)]))
		}
		for k := range dirs {
			r, w := e.targets(c, dirEnvs[k])
			if k == len(dirs)-1 {
				curReads, curWrites = r, w
			}
			if k == 0 {
				p.reads = make([]target, 0, len(r)*len(dirs))
				p.writes = make([]target, 0, len(w)*len(dirs))
			}
			// Keep the first of equal targets (a command has few: a
			// linear search beats building keys).
			for _, t := range r {
				if !slices.ContainsFunc(p.reads, func(o target) bool { return slices.Equal(o.segs, t.segs) }) {
					p.reads = append(p.reads, t)
				}
			}
			for _, t := range w {
				if !slices.ContainsFunc(p.writes, func(o target) bool { return o.word.Src == t.word.Src && slices.Equal(o.segs, t.segs) }) {
					p.writes = append(p.writes, t)
				}
			}
		}
		// Findings look at the current directory only; rules see every one.
		f.env.dir = dirs[len(dirs)-1]
		f.commandFindings(c, curReads, curWrites)
		f.env.dir = ""
		parts = append(parts, p)
		if d, ok := cdTarget(c, env, dirs[len(dirs)-1]); ok && !slices.Contains(dirs, d) {
			if len(dirs) >= maxDirs {
				d = unknownDir // past a few moves, anywhere
				if slices.Contains(dirs, d) {
					continue
				}
			}
			dirs = append(dirs, d)
		}
	}
	f.pipelineFindings(an.cmds)
	if len(src) > MaxCommandLen {
		f.out = append(f.out, Finding{Category: CatObfuscation, Severity: High, Reason: fmt.Sprintf("command is %d characters long", len(src))})
	}
	outs := make([]outcome, 0, len(parts))
	for _, p := range parts {
		outs = append(outs, e.decideCommand(p.c, env, p.reads, p.writes))
	}
	res := Result{Findings: f.out}
	res.Decision = e.combine(outs, f.out)
	if len(src) > MaxCommandLen && res.Verdict == policy.Allow {
		res.Decision = ask("builtin:size", fmt.Sprintf("command is %d characters, over the %d moat decides on its merits", len(src), MaxCommandLen))
	}
	return res
}

// combine folds the parts' outcomes and the findings into one decision:
// a deny rule, else a deny-level finding, else an ask rule, an ask-level
// finding, any other ask, else allow (citing every allow rule used).
func (e *Engine) combine(outs []outcome, findings []Finding) policy.Decision {
	pick := func(v policy.Verdict, rule bool) *policy.Decision {
		for i := range outs {
			if outs[i].d.Verdict == v && outs[i].fromRule == rule {
				return &outs[i].d
			}
		}
		return nil
	}
	fpick := func(v policy.Verdict) *policy.Decision {
		for _, fd := range findings {
			if sv, ok := e.opt.Severity[fd.Severity]; ok && sv == v {
				return &policy.Decision{Verdict: v, Rule: "analyser:" + fd.Category,
					Reason: fd.Reason + " (" + fd.Severity.String() + ")"}
			}
		}
		return nil
	}
	for _, v := range []policy.Verdict{policy.Deny, policy.Ask} {
		if d := pick(v, true); d != nil {
			return *d
		}
		if d := fpick(v); d != nil {
			return *d
		}
		if d := pick(v, false); d != nil {
			return *d
		}
	}
	if len(outs) == 0 {
		return policy.Decision{Verdict: policy.Allow, Rule: "builtin:no-command", Reason: "no command runs"}
	}
	var cites []string
	seen := map[string]bool{}
	for _, o := range outs {
		if !seen[o.d.Rule] {
			seen[o.d.Rule] = true
			cites = append(cites, o.d.Rule)
		}
	}
	reason := outs[0].d.Reason
	if outs[0].d.Verdict == policy.Allow && outs[0].fromRule { // decideCommand's allow
		reason = quoteCmd(outs[0].allowed) + " is allowed"
	}
	if len(outs) > 1 {
		reason = fmt.Sprintf("all %d commands are allowed", len(outs))
	}
	return policy.Decision{Verdict: policy.Allow, Rule: strings.Join(cites, "; "), Reason: reason}
}

// targets returns what a command reads (every argument that names a path,
// and input redirections) and writes (output redirections and the
// arguments commands like tee, cp and sed -i write).
func (e *Engine) targets(c *Command, env pathEnv) (reads, writes []target) {
	reads = make([]target, 0, len(c.Args)+len(c.Redirs))
	addRead := func(w Word) {
		if t, ok := resolveWord(w, env); ok {
			reads = append(reads, t)
		}
	}
	all := c.Args
	if len(all) > 0 && all[0].Known() && !strings.Contains(all[0].Value, "/") {
		all = all[1:] // a program found on PATH is not a path argument
	}
	for _, l := range c.Layers {
		for _, a := range l.Args[1:] {
			if strings.Contains(a.Value, "/") {
				addRead(a)
			}
		}
	}
	for _, a := range all {
		if a.Value == "" || a.Known() && strings.HasPrefix(a.Value, "-") && !strings.Contains(a.Value, "=") {
			continue
		}
		w := a
		if k, v, ok := strings.Cut(a.Value, "="); ok && a.Known() && (strings.HasPrefix(k, "-") || k == "if" || k == "of") {
			w.Value, w.Glob, w.Tilde = v, escapeGlob(v), strings.HasPrefix(v, "~/") || v == "~"
		}
		if strings.HasPrefix(w.Value, "@") && len(w.Value) > 1 && w.Known() {
			w.Value, w.Glob = w.Value[1:], escapeGlob(w.Value[1:])
			w.Tilde = strings.HasPrefix(w.Value, "~/")
		}
		addRead(w)
	}
	for _, r := range c.Redirs {
		switch {
		case r.Read && r.Target.Value != "":
			addRead(r.Target)
		}
		if r.Write && !exemptWrite(r.Target.Value) {
			if t, ok := resolveWord(r.Target, env); ok {
				writes = append(writes, t)
			} else {
				writes = append(writes, target{word: r.Target})
			}
		}
	}
	for _, w := range writeArgs(c) {
		if exemptWrite(w.Value) {
			continue
		}
		if t, ok := resolveWord(w, env); ok {
			writes = append(writes, t)
		} else {
			writes = append(writes, target{word: w})
		}
	}
	return reads, writes
}

func text(ws []Word) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w.Value)
	}
	return b.String()
}

func values(ws []Word) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Value
	}
	return out
}

func known(ws []Word) bool {
	for _, w := range ws {
		if !w.Known() {
			return false
		}
	}
	return true
}

// bashMatch reports whether a Bash rule matches an argument vector: as
// text (Claude Code's semantics; any wild part may take any value), or,
// for rules that name options, structurally after normalising options.
func bashMatch(r *Rule, v *view) bool {
	if r.kind == kindTool {
		return true
	}
	if r.kind != kindBash {
		return false
	}
	if r.cmd.matchAny(v.text) {
		return true
	}
	if v.canon != v.text && r.cmd.matchAny(v.canon) {
		return true
	}
	if r.argv == nil || len(v.vals) == 0 {
		return false
	}
	// A known program other than the rule's cannot match: skip building
	// the structural view.
	if prog := base(v.vals[0]); prog != r.argv.prog && strings.IndexByte(prog, wild) < 0 {
		return false
	}
	if v.norm == nil {
		n := normArgv(v.vals)
		v.norm = &n
	}
	return r.argv.matchAny(*v.norm)
}

// view is one argument vector prepared for matching, computed once per
// command rather than once per rule.
type view struct {
	args        []Word
	vals        []string
	text, canon string
	norm        *argvView // computed on first need
}

func newView(args []Word) *view {
	v := &view{args: args, vals: values(args)}
	v.text = strings.Join(v.vals, " ")
	if c := canonicalArgs(v.vals); len(c) > 0 && &c[0] == &v.vals[0] {
		v.canon = v.text
	} else {
		v.canon = strings.Join(c, " ")
	}
	return v
}

// decideCommand decides one simple command.
func (e *Engine) decideCommand(c *Command, env pathEnv, reads, writes []target) outcome {
	views := make([]*view, 0, len(c.Layers)+1)
	for _, l := range c.Layers {
		views = append(views, newView(l.Args))
	}
	if len(c.Args) > 0 {
		views = append(views, newView(c.Args))
	}
	for k, v := range [2]policy.Verdict{policy.Deny, policy.Ask} {
		for _, r := range e.bash[k] {
			for _, vw := range views {
				if bashMatch(r, vw) {
					return outcome{policy.Decision{Verdict: v, Rule: r.Cite,
						Reason: fmt.Sprintf("%s matches %s rule %s", quoteCmd(vw.text), v, r.Raw)}, true, ""}
				}
			}
		}
		if d, ok := e.pathRules(e.paths[k], v, c, env, reads, writes); ok {
			return outcome{d, true, ""}
		}
	}
	if c.NoAllow != "" {
		return outcome{ask("builtin:no-allow", c.NoAllow+": "+quoteCmd(c.Text)), false, ""}
	}
	for _, t := range writes {
		if t.abs == "" && t.segs == nil {
			return outcome{ask("builtin:dynamic-write", fmt.Sprintf("writes to %s, a path known only when it runs", t.word.Src)), false, ""}
		}
		if !e.allowedWrite(t, env) {
			return outcome{ask("builtin:write-outside-workspace", fmt.Sprintf("writes %s, outside the working directory %s, and no Edit rule allows it", t.word.Src, env.cwd)), false, ""}
		}
	}
	// Allow: every layer that needs it, and the payload.
	var cites []string
	for i, l := range c.Layers {
		if !l.NeedsAllow {
			continue
		}
		r := e.allowRule(l.Args, nil, views[i].text)
		if r == nil {
			return e.fallback(l.Args, c, quoteCmd(c.Text))
		}
		cites = append(cites, r.Cite)
	}
	switch {
	case c.Runner || len(c.Args) == 0:
		if len(cites) == 0 {
			cites = append(cites, "builtin:runner")
		}
	default:
		r := e.allowRule(c.Args, c.Env, views[len(views)-1].text)
		switch {
		case r != nil:
			cites = append(cites, r.Cite)
		case !e.opt.NoReadOnly && c.Opaque == "" && len(c.Env) == 0 && readOnly(c.Args):
			cites = append(cites, "builtin:read-only")
		default:
			return e.fallback(c.Args, c, quoteCmd(c.Text))
		}
	}
	// The reason is written by combine, and only if it shows it.
	return outcome{d: policy.Decision{Verdict: policy.Allow, Rule: strings.Join(cites, "; ")}, fromRule: true, allowed: c.Text}
}

// fallback is the decision for a command no allow rule covers.
func (e *Engine) fallback(args []Word, c *Command, shown string) outcome {
	why := "no rule allows " + shown
	if !known(args) {
		why = shown + " has parts known only when it runs, which no allow rule can cover"
	}
	if c.Opaque != "" {
		why += "; it runs " + c.Opaque + " code moat cannot inspect"
	}
	d := policy.Decision{Verdict: e.opt.Default, Rule: e.opt.DefaultRule, Reason: why}
	if d.Verdict == policy.Allow && (!known(args) || c.Opaque != "") {
		d.Verdict = policy.Ask
	}
	return outcome{d, false, ""}
}

// safeEnv are variables an allow rule may look past (Claude Code strips a
// known-safe set for allow rules).
var safeEnv = map[string]bool{"NODE_ENV": true, "RUST_LOG": true, "RUST_BACKTRACE": true, "CI": true, "DEBUG": true, "LANG": true,
	"LC_ALL": true, "LC_CTYPE": true, "TZ": true, "NO_COLOR": true, "FORCE_COLOR": true, "TERM": true, "GOOS": true, "GOARCH": true,
	"CGO_ENABLED": true, "GOFLAGS": true, "PYTHONUNBUFFERED": true, "PYTHONDONTWRITEBYTECODE": true, "VERBOSE": true, "COLUMNS": true}

// allowRule returns the first allow rule covering every value the command
// can take, or nil. Environment prefixes outside safeEnv must be spelled
// out in the rule.
func (e *Engine) allowRule(args []Word, envs []Assign, t string) *Rule {
	if !known(args) {
		return nil
	}
	for _, a := range envs {
		if !a.Value.Known() {
			return nil
		}
		if !safeEnv[a.Name] {
			t = a.Name + "=" + a.Value.Value + " " + t
		}
	}
	for i := range e.allow {
		r := &e.allow[i]
		if !r.matchTool("Bash") {
			continue
		}
		if r.kind == kindTool || r.kind == kindBash && r.cmd.matchAll(t) {
			return r
		}
	}
	return nil
}

// allowedWrite: inside the working directory, or covered by an Edit allow
// rule.
func (e *Engine) allowedWrite(t target, env pathEnv) bool {
	if t.abs != "" && (t.abs == env.cwd || strings.HasPrefix(t.abs, strings.TrimSuffix(env.cwd, "/")+"/")) {
		if e.opt.Resolve == nil {
			return true
		}
		r := e.opt.Resolve(t.abs)
		return r == env.cwd || strings.HasPrefix(r, strings.TrimSuffix(env.cwd, "/")+"/")
	}
	if t.abs == "" {
		return false
	}
	for i := range e.allow {
		r := &e.allow[i]
		if r.kind == kindPath && r.Tool == "Edit" && e.pathCovers(r, t, env, true) {
			return true
		}
	}
	return false
}

// pathCovers matches a path rule against a target, following symbolic
// links: a deny or ask rule matches the link or its target; an allow rule
// must match both.
func (e *Engine) pathCovers(r *Rule, t target, env pathEnv, all bool) bool {
	return e.pathCoversLazy(r, t, env, all, nil)
}

// resolve returns where a known target's path leads.
func (e *Engine) resolve(t target) string {
	return e.opt.Resolve(t.abs)
}

// pathCoversLazy is pathCovers taking the target's resolution from
// resolved when it is not nil, so that a command's paths are resolved once
// rather than once per rule. The link is followed only when the answer
// depends on it.
func (e *Engine) pathCoversLazy(r *Rule, t target, env pathEnv, all bool, resolved func() string) bool {
	g := r.placed(env)
	m := g.match(t)
	if e.opt.Resolve == nil || t.abs == "" || m != all {
		return m // with all a miss decides, without it a match does
	}
	var res string
	if resolved != nil {
		res = resolved()
	} else {
		res = e.opt.Resolve(t.abs)
	}
	if res == t.abs {
		return m
	}
	rt := target{word: t.word, abs: res, segs: splitPath(escapeGlob(res))}
	if all {
		return m && g.match(rt)
	}
	return m || g.match(rt)
}

// pathRules applies the Read and Edit rules of one list to a command's
// reads and writes. A Read rule covers writes too.
func (e *Engine) pathRules(rules []*Rule, v policy.Verdict, c *Command, env pathEnv, reads, writes []target) (policy.Decision, bool) {
	if len(rules) == 0 {
		return policy.Decision{}, false
	}
	rec := recursiveRead(c)
	var readRes, writeRes []string // each path resolved once, on first need
	resolved := func(cache *[]string, ts []target, i int) string {
		if e.opt.Resolve == nil {
			return ""
		}
		if *cache == nil {
			*cache = make([]string, len(ts))
		}
		if (*cache)[i] == "" && ts[i].abs != "" {
			(*cache)[i] = e.resolve(ts[i])
		}
		return (*cache)[i]
	}
	for _, r := range rules {
		if r.kind != kindPath {
			continue
		}
		if r.Tool == "Read" {
			for i, t := range reads {
				if e.pathCoversLazy(r, t, env, false, func() string { return resolved(&readRes, reads, i) }) || rec && containsMatch(r.segments(env), t, env) {
					return policy.Decision{Verdict: v, Rule: r.Cite,
						Reason: fmt.Sprintf("%s reads %s, which %s rule %s covers", quoteCmd(c.Text), t.word.Src, v, r.Raw)}, true
				}
			}
		}
		for i, t := range writes {
			if t.segs == nil {
				continue
			}
			if e.pathCoversLazy(r, t, env, false, func() string { return resolved(&writeRes, writes, i) }) {
				return policy.Decision{Verdict: v, Rule: r.Cite,
					Reason: fmt.Sprintf("%s writes %s, which %s rule %s covers", quoteCmd(c.Text), t.word.Src, v, r.Raw)}, true
			}
		}
	}
	return policy.Decision{}, false
}

// checkPath decides Read/Edit/Write/… calls on their path.
func (e *Engine) checkPath(req Request, env pathEnv) Result {
	p := ""
	for _, k := range []string{"file_path", "notebook_path", "path"} {
		if s, ok := req.Input[k].(string); ok && s != "" {
			p = s
			break
		}
	}
	write := editTools[req.Tool]
	if p == "" {
		if req.Tool == "Grep" || req.Tool == "Glob" || req.Tool == "LS" {
			p = env.cwd
		} else {
			return Result{Decision: deny("builtin:bad-input", req.Tool+" call without a file_path")}
		}
	}
	if why := badRunes(p); why != "" {
		return Result{Decision: deny("builtin:characters", "path contains "+why)}
	}
	w := literalWord(p, syntax.Pos{})
	if strings.HasPrefix(p, "~/") || p == "~" {
		w.Tilde = true
	}
	if req.Tool == "Glob" {
		if pat, _ := req.Input["pattern"].(string); pat != "" && badRunes(pat) == "" {
			w.Glob = escapeGlob(strings.TrimSuffix(p, "/")) + "/" + pat
			if strings.HasPrefix(pat, "/") {
				w.Glob = pat
			}
			w.Globbed = true
			w.Value = string(wild)
		}
	}
	t, _ := resolveWord(w, env)
	f := &finder{env: env}
	if write {
		f.writeFindings(t)
	} else {
		f.commandFindings(&Command{}, []target{t}, nil)
	}
	res := Result{Findings: f.out}
	for _, list := range []struct {
		rules []Rule
		v     policy.Verdict
	}{{e.deny, policy.Deny}, {e.ask, policy.Ask}} {
		for i := range list.rules {
			r := &list.rules[i]
			if r.kind == kindTool && r.matchTool(req.Tool) {
				res.Decision = policy.Decision{Verdict: list.v, Rule: r.Cite, Reason: fmt.Sprintf("%s is in the %s list", req.Tool, list.v)}
				return res
			}
			if r.kind != kindPath || !(r.Tool == "Read" || r.Tool == "Edit" && write) {
				continue
			}
			if e.pathCovers(r, t, env, false) || !write && req.Tool != "Read" && containsMatch(r.segments(env), t, env) && list.v == policy.Deny {
				res.Decision = policy.Decision{Verdict: list.v, Rule: r.Cite, Reason: fmt.Sprintf("%s %s: %s rule %s covers it", req.Tool, p, list.v, r.Raw)}
				return res
			}
		}
		if d := e.findingDecision(f.out, list.v); d != nil {
			res.Decision = *d
			return res
		}
	}
	for i := range e.allow {
		r := &e.allow[i]
		if r.kind == kindTool && r.matchTool(req.Tool) {
			res.Decision = policy.Decision{Verdict: policy.Allow, Rule: r.Cite, Reason: req.Tool + " is in the allow list"}
			return res
		}
		if r.kind == kindPath && r.matchTool(req.Tool) && t.abs != "" && e.pathCovers(r, t, env, true) {
			res.Decision = policy.Decision{Verdict: policy.Allow, Rule: r.Cite, Reason: fmt.Sprintf("%s %s: allow rule %s covers it", req.Tool, p, r.Raw)}
			return res
		}
	}
	if !write && t.abs != "" && e.allowedWrite(t, env) {
		res.Decision = policy.Decision{Verdict: policy.Allow, Rule: "builtin:read-in-workspace", Reason: p + " is inside the working directory"}
		return res
	}
	res.Decision = policy.Decision{Verdict: e.opt.Default, Rule: e.opt.DefaultRule, Reason: fmt.Sprintf("no rule allows %s %s", req.Tool, p)}
	return res
}

func (e *Engine) findingDecision(fs []Finding, v policy.Verdict) *policy.Decision {
	for _, fd := range fs {
		if sv, ok := e.opt.Severity[fd.Severity]; ok && sv == v {
			return &policy.Decision{Verdict: v, Rule: "analyser:" + fd.Category, Reason: fd.Reason + " (" + fd.Severity.String() + ")"}
		}
	}
	return nil
}

// checkFetch decides WebFetch on the URL's host, then network.allow.
func (e *Engine) checkFetch(req Request) Result {
	raw, _ := req.Input["url"].(string)
	host, port, ok := urlHost(raw)
	if !ok || badRunes(raw) != "" {
		return Result{Decision: deny("builtin:bad-input", fmt.Sprintf("WebFetch URL %q has no host", raw))}
	}
	host = strings.TrimSuffix(host, ".")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, list := range []struct {
		rules []Rule
		v     policy.Verdict
	}{{e.deny, policy.Deny}, {e.ask, policy.Ask}, {e.allow, policy.Allow}} {
		for i := range list.rules {
			r := &list.rules[i]
			if !r.matchTool("WebFetch") || r.Tool != "WebFetch" && r.kind != kindTool {
				continue
			}
			if r.kind == kindTool || r.kind == kindDomain && r.matchDomain(host) {
				return Result{Decision: policy.Decision{Verdict: list.v, Rule: r.Cite, Reason: fmt.Sprintf("WebFetch of %s: %s rule %s", host, list.v, r.Raw)}}
			}
		}
	}
	if e.opt.Egress != nil {
		d := e.opt.Egress(host, port)
		if d.Verdict == policy.Allow {
			return Result{Decision: policy.Decision{Verdict: policy.Allow, Rule: d.Rule, Reason: "network.allow lists " + host}}
		}
		return Result{Decision: policy.Decision{Verdict: policy.Deny, Rule: d.Rule, Reason: d.Reason}}
	}
	return Result{Decision: policy.Decision{Verdict: e.opt.Default, Rule: e.opt.DefaultRule, Reason: "no rule allows WebFetch of " + host}}
}

// checkTool decides any other tool (WebSearch, Agent, MCP tools) on its
// name and, for deny and ask rules, Tool(param:value).
func (e *Engine) checkTool(req Request) Result {
	for _, list := range []struct {
		rules []Rule
		v     policy.Verdict
	}{{e.deny, policy.Deny}, {e.ask, policy.Ask}, {e.allow, policy.Allow}} {
		for i := range list.rules {
			r := &list.rules[i]
			if !r.matchTool(req.Tool) {
				continue
			}
			switch r.kind {
			case kindTool:
			case kindParam:
				s, ok := req.Input[r.param].(string)
				p := compileCmdPattern(r.paramRe)
				if !ok || !p.matchAll(s) {
					continue
				}
			case kindSpec:
				if !specMatch(r, req) {
					continue
				}
			default:
				continue
			}
			return Result{Decision: policy.Decision{Verdict: list.v, Rule: r.Cite, Reason: fmt.Sprintf("%s: %s rule %s", req.Tool, list.v, r.Raw)}}
		}
	}
	return Result{Decision: policy.Decision{Verdict: e.opt.Default, Rule: e.opt.DefaultRule, Reason: "no rule allows " + req.Tool}}
}

// specMatch matches Tool(specifier) against the tool's main input:
// Agent(subagent_type), Skill(skill), Cd(path) …
func specMatch(r *Rule, req Request) bool {
	for _, k := range []string{"subagent_type", "skill", "path", "name", "query"} {
		if s, ok := req.Input[k].(string); ok {
			p := compileCmdPattern(r.Spec)
			return p.matchAll(s)
		}
	}
	return false
}

// cdTarget returns the directory a cd (or pushd) command moves to:
// unknownDir when its argument is not known.
// maxDirs bounds the directories a command line's cds are tracked through.
const maxDirs = 4

func cdTarget(c *Command, env pathEnv, cur string) (string, bool) {
	if len(c.Args) == 0 || !c.Args[0].Known() || c.Args[0].Value != "cd" && c.Args[0].Value != "pushd" && c.Args[0].Value != "popd" {
		return "", false
	}
	if c.Args[0].Value == "popd" {
		return unknownDir, true
	}
	var arg *Word
	for i := range c.Args[1:] {
		a := &c.Args[1+i]
		if a.Known() && strings.HasPrefix(a.Value, "-") && a.Value != "-" {
			continue
		}
		arg = a
		break
	}
	if arg == nil {
		return env.home, true
	}
	if !arg.Known() || arg.Value == "-" || cur == unknownDir && !arg.Tilde && !strings.HasPrefix(arg.Value, "/") {
		return unknownDir, true
	}
	de := env
	de.dir = cur
	return path.Clean(cleanJoin(de.base(), expandTilde(*arg, env))), true
}
