package permission

import (
	"fmt"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"mvdan.cc/sh/v3/syntax"
)

// Command is one simple command of a parsed shell command line, as it will
// run: wrappers that only change how it runs (timeout, nice, sudo, env …)
// are peeled off into Layers, and code that a command runs from a string
// (bash -c, eval, find -exec, ssh host CMD …) is parsed into Commands of
// its own, one level deeper. Every Command is decided on its own; the
// command line is allowed only if all of them are.
type Command struct {
	// Args is the argument vector that runs, Args[0] the program. Empty for
	// a statement that only assigns variables or redirects.
	Args []Word
	// Layers are the wrapper commands peeled off, outermost first, each its
	// full argument vector. Deny and ask rules see every layer.
	Layers []Layer
	// Env holds the NAME=VALUE prefixes (and env's assignments).
	Env []Assign
	// Redirs are the redirections of the statement.
	Redirs []Redir
	// Depth is 0 at the top level, one more inside each substitution or
	// re-parsed string.
	Depth int
	// Via says how a nested command was reached: "$(…)", "bash -c", "eval".
	Via string
	// Runner: the command only runs code that was parsed into other
	// Commands (bash -c '…', eval '…'); it needs no allow rule itself.
	Runner bool
	// NoAllow, when set, says why no rule may allow the command (eval of a
	// dynamic string, source of a file); it is asked at least.
	NoAllow string
	// Opaque names inline code moat cannot inspect ("python -c").
	Opaque string
	// Pos is where the command is in the checked command line; for
	// commands parsed from a string, where that string is.
	Pos syntax.Pos
	// Text is the command's source text.
	Text string

	pipe, stage int  // pipeline id (0: none) and position in it (1-based)
	stdinCode   bool // a shell or interpreter that reads its program from stdin
}

// Layer is a wrapper peeled off a command.
type Layer struct {
	Args []Word
	// NeedsAllow: the wrapper itself must be allowed too (ssh HOST, find …
	// -exec, docker exec); otherwise only the payload is judged for allow.
	NeedsAllow bool
}

// Assign is a variable assignment.
type Assign struct {
	Name  string
	Value Word
}

// Redir is a redirection. Write and Read say what it does to Target.
type Redir struct {
	Op     string
	Target Word
	Write  bool
	Read   bool
}

// Finding is something the analyser flags in a command.
type Finding struct {
	Category string   `json:"category"`
	Severity Severity `json:"severity"`
	Reason   string   `json:"reason"`
	// Pos is "LINE:COL" in the checked command (1-based).
	Pos string `json:"pos,omitempty"`
}

// Limits of the shell analysis.
const (
	// MaxCommandLen is the longest command decided on its merits; a longer
	// one is asked at most (after its denies are found).
	MaxCommandLen = 10000
	// MaxCheckLen is the longest command parsed at all; a longer one is
	// denied.
	MaxCheckLen = 1 << 20
	// MaxDepth bounds nested re-parsing (bash -c 'eval "sh -c …"');
	// deeper nesting is denied.
	MaxDepth = 8
)

// analysis is the result of parsing and walking one command line.
type analysis struct {
	cmds     []*Command
	findings []Finding
	parseErr error
}

// walker walks a parsed command line into Commands.
type walker struct {
	an    *analysis
	src   string     // the source being walked (a payload when nested)
	depth int        // nesting of the source being walked
	via   string     // how that source was reached
	outer syntax.Pos // for a re-parsed payload: where it is in the top level
	pipes *int       // pipeline counter, shared with nested walkers
}

// parsers reuses bash parsers: a Parser carries a read buffer that is
// costly to allocate per command, may be reused once a Parse returns (its
// reset drops every reference to the previous tree), but is not safe for
// concurrent use, hence a pool rather than one per Engine.
var parsers = sync.Pool{New: func() any {
	return syntax.NewParser(syntax.Variant(syntax.LangBash), syntax.KeepComments(false))
}}

// parseShell parses src as bash.
func parseShell(src string) (*syntax.File, error) {
	p := parsers.Get().(*syntax.Parser)
	defer parsers.Put(p)
	return p.Parse(strings.NewReader(src), "")
}

// analyse parses and walks a command line. A parse error is returned in
// the analysis and nothing else is.
func analyse(src string) *analysis {
	an := &analysis{}
	f, err := parseShell(src)
	if err != nil {
		an.parseErr = err
		return an
	}
	var pipes int
	w := &walker{an: an, src: src, pipes: &pipes}
	w.stmts(f.Stmts)
	return an
}

// pos maps a node's position in the walked source to the top level.
func (w *walker) pos(p syntax.Pos) syntax.Pos {
	if w.outer.IsValid() {
		return w.outer
	}
	return p
}

func (w *walker) find(p syntax.Pos, cat string, sev Severity, format string, args ...any) {
	w.an.findings = append(w.an.findings, Finding{Category: cat, Severity: sev,
		Reason: fmt.Sprintf(format, args...), Pos: posString(w.pos(p))})
}

func posString(p syntax.Pos) string {
	if !p.IsValid() {
		return ""
	}
	return strconv.FormatUint(uint64(p.Line()), 10) + ":" + strconv.FormatUint(uint64(p.Col()), 10)
}

func (w *walker) stmts(ss []*syntax.Stmt) {
	for _, s := range ss {
		w.stmt(s)
	}
}

func (w *walker) stmt(s *syntax.Stmt) {
	if s == nil {
		return
	}
	redirs := w.redirs(s.Redirs)
	switch c := s.Cmd.(type) {
	case nil:
		if len(redirs) > 0 {
			w.add(&Command{Redirs: redirs, Pos: w.pos(s.Pos()), Text: nodeText(w.src, s)})
		}
	case *syntax.CallExpr:
		w.call(c, s, redirs)
	case *syntax.BinaryCmd:
		if c.Op == syntax.Pipe || c.Op == syntax.PipeAll {
			w.pipeline(c)
		} else {
			w.stmt(c.X)
			w.stmt(c.Y)
		}
		w.compoundRedirs(s, redirs)
	case *syntax.Subshell:
		w.stmts(c.Stmts)
		w.compoundRedirs(s, redirs)
	case *syntax.Block:
		w.stmts(c.Stmts)
		w.compoundRedirs(s, redirs)
	case *syntax.IfClause:
		for ic := c; ic != nil; ic = ic.Else {
			w.stmts(ic.Cond)
			w.stmts(ic.Then)
		}
		w.compoundRedirs(s, redirs)
	case *syntax.WhileClause:
		w.stmts(c.Cond)
		w.stmts(c.Do)
		w.compoundRedirs(s, redirs)
	case *syntax.ForClause:
		w.substs(c.Loop)
		w.stmts(c.Do)
		w.compoundRedirs(s, redirs)
	case *syntax.CaseClause:
		w.substs(c.Word)
		for _, it := range c.Items {
			for _, p := range it.Patterns {
				w.substs(p)
			}
			w.stmts(it.Stmts)
		}
		w.compoundRedirs(s, redirs)
	case *syntax.FuncDecl:
		if c.Name == nil {
			// "()0" parses as a function without a name, which bash
			// rejects: nothing may allow it.
			w.add(&Command{NoAllow: "a function without a name is not analysed", Pos: w.pos(s.Pos()), Text: nodeText(w.src, s)})
			w.stmt(c.Body)
			break
		}
		if forkBomb(c) {
			w.find(c.Pos(), CatDestructive, Critical, "fork bomb: function %s calls itself in a pipeline", c.Name.Value)
		}
		w.stmt(c.Body)
	case *syntax.ArithmCmd:
		w.substs(c.X)
		w.compoundRedirs(s, redirs)
	case *syntax.TestClause:
		w.substs(c.X)
		w.compoundRedirs(s, redirs)
	case *syntax.LetClause:
		for _, x := range c.Exprs {
			w.substs(x)
		}
		w.compoundRedirs(s, redirs)
	case *syntax.DeclClause:
		cmd := &Command{Redirs: redirs, Pos: w.pos(s.Pos()), Text: nodeText(w.src, s)}
		for _, a := range c.Args {
			w.substs(a)
			if a.Name != nil && !a.Naked {
				cmd.Env = append(cmd.Env, w.assign(a))
			}
		}
		w.envFindings(cmd.Env, c.Variant.Value)
		cmd.Args = []Word{literalWord(c.Variant.Value, c.Pos())}
		for _, a := range c.Args {
			if a.Name != nil {
				cmd.Args = append(cmd.Args, literalWord(nodeText(w.src, a), a.Pos()))
			} else if a.Value != nil {
				cmd.Args = append(cmd.Args, evalWord(a.Value, nodeText(w.src, a.Value))...)
			}
		}
		w.add(cmd)
	case *syntax.TimeClause:
		w.stmt(c.Stmt)
		w.compoundRedirs(s, redirs)
	case *syntax.CoprocClause:
		w.stmt(c.Stmt)
	default:
		// A construct moat does not model (zsh's, a test declaration):
		// nothing may allow it.
		w.add(&Command{NoAllow: fmt.Sprintf("%T is not analysed", c), Pos: w.pos(s.Pos()), Text: nodeText(w.src, s)})
	}
}

// compoundRedirs records the redirections of a compound command.
func (w *walker) compoundRedirs(s *syntax.Stmt, redirs []Redir) {
	if len(redirs) > 0 {
		w.add(&Command{Redirs: redirs, Pos: w.pos(s.Pos()), Text: nodeText(w.src, s)})
	}
}

// pipeline walks X | Y | Z, numbering the stages.
func (w *walker) pipeline(b *syntax.BinaryCmd) {
	var stages []*syntax.Stmt
	var flat func(s *syntax.Stmt)
	flat = func(s *syntax.Stmt) {
		if bc, ok := s.Cmd.(*syntax.BinaryCmd); ok && (bc.Op == syntax.Pipe || bc.Op == syntax.PipeAll) && len(s.Redirs) == 0 {
			flat(bc.X)
			flat(bc.Y)
			return
		}
		stages = append(stages, s)
	}
	flat(b.X)
	flat(b.Y)
	*w.pipes++
	id := *w.pipes
	for i, s := range stages {
		first := len(w.an.cmds)
		w.stmt(s)
		for _, c := range w.an.cmds[first:] {
			if c.pipe == 0 && c.Depth == w.depth {
				c.pipe, c.stage = id, i+1
			}
		}
	}
}

func (w *walker) add(c *Command) {
	c.Depth, c.Via = w.depth, w.via
	w.an.cmds = append(w.an.cmds, c)
}

// substs walks a node for command and process substitutions (which run
// commands) without descending into them twice.
func (w *walker) substs(n syntax.Node) {
	if wd, ok := n.(*syntax.Word); ok && plainWord(wd) {
		return // the common case, without the walk's closure
	}
	if n == nil || reflect.ValueOf(n).IsNil() {
		return
	}
	syntax.Walk(n, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CmdSubst:
			w.nestedStmts(n.Stmts, "$(…)", n.Pos())
			return false
		case *syntax.ProcSubst:
			w.nestedStmts(n.Stmts, n.Op.String()+"…)", n.Pos())
			return false
		}
		return true
	})
}

// plainWord reports whether a word is only literal text, which runs
// nothing.
func plainWord(wd *syntax.Word) bool {
	if wd == nil {
		return true
	}
	for _, p := range wd.Parts {
		switch p.(type) {
		case *syntax.Lit, *syntax.SglQuoted:
		default:
			return false
		}
	}
	return true
}

// nestedStmts walks statements of the same source one level deeper.
func (w *walker) nestedStmts(ss []*syntax.Stmt, via string, p syntax.Pos) {
	if w.depth+1 > MaxDepth {
		w.find(p, CatObfuscation, Critical, "nesting deeper than %d levels", MaxDepth)
		return
	}
	nw := *w
	nw.depth++
	nw.via = via
	nw.stmts(ss)
}

// reparse parses a string that a command runs as shell code and walks it
// one level deeper. It reports whether the payload parsed.
func (w *walker) reparse(payload string, via string, p syntax.Pos) (string, bool) {
	if w.depth+1 > MaxDepth {
		w.find(p, CatObfuscation, Critical, "nesting deeper than %d levels", MaxDepth)
		return "", true
	}
	f, err := parseShell(payload)
	if err != nil {
		return fmt.Sprintf("the code %s runs does not parse: %v", via, err), false
	}
	nw := &walker{an: w.an, src: payload, depth: w.depth + 1, via: via, outer: w.pos(p), pipes: w.pipes}
	nw.stmts(f.Stmts)
	return "", true
}

func (w *walker) assign(a *syntax.Assign) Assign {
	as := Assign{Name: a.Name.Value}
	switch {
	case a.Value != nil:
		ws := evalWord(a.Value, nodeText(w.src, a.Value))
		as.Value = ws[0]
	case a.Array != nil:
		as.Value = Word{Value: string(wild), Glob: string(wild), Dynamic: true, Src: nodeText(w.src, a.Array)}
	default:
		as.Value = Word{Src: ""}
	}
	if a.Index != nil {
		// a[$(id)]=1 runs the index; treat the whole as unknown.
		as.Value.Dynamic = true
	}
	return as
}

func (w *walker) redirs(rs []*syntax.Redirect) []Redir {
	var out []Redir
	for _, r := range rs {
		w.substs(r.Word)
		w.substs(r.Hdoc)
		rd := Redir{Op: r.Op.String()}
		if r.Word != nil {
			ws := evalWord(r.Word, nodeText(w.src, r.Word))
			rd.Target = ws[0]
			if len(ws) > 1 { // "> {a,b}" is an error in bash; treat as unknown
				rd.Target.Dynamic = true
			}
		}
		switch r.Op {
		case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.AppClob, syntax.RdrAll, syntax.RdrAllClob, syntax.AppAll, syntax.AppAllClob:
			rd.Write = true
		case syntax.RdrIn:
			rd.Read = true
		case syntax.RdrInOut:
			rd.Read, rd.Write = true, true
		case syntax.DplIn, syntax.DplOut:
			// >&2, <&0: a file descriptor; ">&file" is a write in bash.
			if t := rd.Target.Value; t != "-" && !isAllDigits(t) {
				rd.Write = r.Op == syntax.DplOut
				rd.Read = r.Op == syntax.DplIn
			}
		case syntax.Hdoc, syntax.DashHdoc:
			if r.Hdoc != nil {
				ws := evalWord(r.Hdoc, nodeText(w.src, r.Hdoc))
				rd.Target = ws[0]
			} else {
				rd.Target = Word{}
			}
		}
		out = append(out, rd)
	}
	return out
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// call walks a simple command: its substitutions, then its wrappers.
func (w *walker) call(ce *syntax.CallExpr, s *syntax.Stmt, redirs []Redir) {
	cmd := &Command{Redirs: redirs, Pos: w.pos(ce.Pos()), Text: nodeText(w.src, s)}
	for _, a := range ce.Assigns {
		w.substs(a)
		cmd.Env = append(cmd.Env, w.assign(a))
	}
	cmd.Args = make([]Word, 0, len(ce.Args))
	for _, a := range ce.Args {
		w.substs(a)
		cmd.Args = appendWord(cmd.Args, a, nodeText(w.src, a))
	}
	if len(cmd.Args) == 0 {
		w.envFindings(cmd.Env, "")
		w.add(cmd)
		return
	}
	w.envFindings(cmd.Env, "")
	w.unwrap(cmd)
}

// Categories of findings.
const (
	CatPrivilege      = "privilege"
	CatDestructive    = "destructive"
	CatSystem         = "system-modification"
	CatSensitiveRead  = "sensitive-read"
	CatRCE            = "remote-code-execution"
	CatExfiltration   = "exfiltration"
	CatObfuscation    = "obfuscation"
	CatPersistence    = "persistence"
	CatContainer      = "container-escape"
	CatPackageURL     = "package-from-url"
	CatEnvInjection   = "env-injection"
	CatOpaque         = "opaque-code"
	CatProtectedWrite = "protected-write"
)

// riskyEnv are variables that change what a command runs or where its
// traffic goes.
var riskyEnv = map[string]string{
	"LD_PRELOAD": "loads a library into every program", "LD_LIBRARY_PATH": "changes which libraries load",
	"LD_AUDIT": "loads a library into every program", "DYLD_INSERT_LIBRARIES": "loads a library into every program",
	"PATH": "changes which programs run", "BASH_ENV": "runs a file in every bash", "ENV": "runs a file in every sh",
	"IFS": "changes how words split", "PROMPT_COMMAND": "runs code at every prompt",
	"GIT_SSH_COMMAND": "runs a command for git", "GIT_SSH": "runs a program for git", "GIT_EXTERNAL_DIFF": "runs a program for git",
	"GIT_PAGER": "runs a command for git", "GIT_EDITOR": "runs a command for git", "GIT_ASKPASS": "runs a program for git",
	"GIT_CONFIG_GLOBAL": "replaces git's configuration", "GIT_DIR": "points git at another repository",
	"NODE_OPTIONS": "can load code into node", "PYTHONPATH": "changes which Python modules load",
	"PYTHONSTARTUP": "runs a file in Python", "PERL5OPT": "loads code into perl", "RUBYOPT": "loads code into ruby",
	"HTTP_PROXY": "redirects traffic", "HTTPS_PROXY": "redirects traffic", "http_proxy": "redirects traffic",
	"https_proxy": "redirects traffic", "ALL_PROXY": "redirects traffic", "NO_PROXY": "lets traffic bypass the proxy",
	"no_proxy": "lets traffic bypass the proxy", "SSL_CERT_FILE": "changes trusted certificates",
	"NODE_TLS_REJECT_UNAUTHORIZED": "turns off TLS checks", "EDITOR": "runs a command", "PAGER": "runs a command",
	"SHELLOPTS": "changes shell behaviour", "BASHOPTS": "changes shell behaviour",
}

func (w *walker) envFindings(env []Assign, decl string) {
	for _, a := range env {
		if why, ok := riskyEnv[a.Name]; ok {
			w.find(a.Value.Pos, CatEnvInjection, High, "sets %s, which %s", a.Name, why)
		}
	}
}

// base returns the program name of a word: its last path element.
func base(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// optSpec describes a wrapper's options: which take a value.
type optSpec struct {
	short string   // short options taking a value
	long  []string // long options taking a value
	num   bool     // -NUM is an option (nice -10)
}

// skipOpts returns the index of the first non-option argument at or after
// i, or -1 if an unknown word hides where the options end.
func skipOpts(args []Word, i int, o optSpec) int {
	for i < len(args) {
		a := args[i]
		if !a.Known() {
			if strings.HasPrefix(a.Value, "-") || strings.HasPrefix(a.Value, string(wild)) {
				return -1
			}
			return i
		}
		v := a.Value
		switch {
		case v == "--":
			return i + 1
		case strings.HasPrefix(v, "--"):
			name := v[2:]
			if strings.Contains(name, "=") {
				i++
				continue
			}
			takes := false
			for _, l := range o.long {
				if l == name {
					takes = true
				}
			}
			i++
			if takes {
				i++
			}
		case len(v) > 1 && v[0] == '-':
			if o.num && isAllDigits(v[1:]) {
				i++
				continue
			}
			i++
			for j := 1; j < len(v); j++ {
				if strings.IndexByte(o.short, v[j]) >= 0 {
					if j == len(v)-1 {
						i++ // the value is the next word
					}
					break // the value is the rest of this word
				}
			}
		default:
			return i
		}
	}
	// An option missing its value leaves i past the end.
	return min(i, len(args))
}

// hasShortFlag reports whether an option word sets the short flag c.
func hasShortFlag(v string, c byte) bool {
	return len(v) > 1 && v[0] == '-' && v[1] != '-' && strings.IndexByte(v[1:], c) >= 0
}

var shells = map[string]bool{"sh": true, "bash": true, "zsh": true, "dash": true, "ksh": true, "mksh": true, "ash": true, "yash": true, "posh": true, "rbash": true, "fish": true, "csh": true, "tcsh": true}

// interpreters maps a program to the options that take inline code.
var interpreters = map[string][]string{
	"python": {"-c"}, "python2": {"-c"}, "python3": {"-c"}, "pypy": {"-c"}, "pypy3": {"-c"},
	"node": {"-e", "--eval", "-p", "--print"}, "nodejs": {"-e", "--eval", "-p", "--print"},
	"perl": {"-e", "-E"}, "ruby": {"-e"}, "php": {"-r"}, "lua": {"-e"}, "luajit": {"-e"},
	"bun": {"-e", "--eval", "-p", "--print"}, "deno": {"eval"}, "Rscript": {"-e"}, "osascript": {"-e"},
	"pwsh":       {"-c", "-command", "-Command", "-encodedcommand", "-EncodedCommand", "-e", "-ec"},
	"powershell": {"-c", "-command", "-Command", "-encodedcommand", "-EncodedCommand", "-e", "-ec"},
	"tclsh":      {}, "wish": {}, "jshell": {}, "irb": {}, "awk": {}, "gawk": {}, "mawk": {}, "nawk": {},
}

func isInterpreter(name string) bool {
	if _, ok := interpreters[name]; ok {
		return true
	}
	// python3.12, perl5.36
	for _, p := range []string{"python", "perl", "ruby", "node"} {
		if strings.HasPrefix(name, p) && len(name) > len(p) && (name[len(p)] >= '0' && name[len(p)] <= '9') {
			return true
		}
	}
	return false
}

func interpreterCodeFlags(name string) []string {
	if f, ok := interpreters[name]; ok {
		return f
	}
	for _, p := range []string{"python", "perl", "ruby", "node"} {
		if strings.HasPrefix(name, p) {
			return interpreters[p]
		}
	}
	return nil
}

// gitCodeKeys are git configuration keys whose values are commands.
func gitCodeKey(k string) bool {
	k = strings.ToLower(k)
	switch {
	case strings.HasPrefix(k, "alias."):
		return true
	case strings.HasPrefix(k, "filter.") && (strings.HasSuffix(k, ".clean") || strings.HasSuffix(k, ".smudge") || strings.HasSuffix(k, ".process")):
		return true
	case strings.HasPrefix(k, "pager."), strings.HasPrefix(k, "remote.") && (strings.HasSuffix(k, ".uploadpack") || strings.HasSuffix(k, ".receivepack")):
		return true
	case strings.HasPrefix(k, "diff.") && (strings.HasSuffix(k, ".command") || strings.HasSuffix(k, ".textconv")):
		return true
	}
	switch k {
	case "core.pager", "core.sshcommand", "core.editor", "core.fsmonitor", "core.askpass", "core.hookspath",
		"sequence.editor", "diff.external", "credential.helper", "gpg.program", "gpg.ssh.program",
		"uploadpack.packobjectshook", "protocol.ext.allow", "core.gitproxy", "merge.tool", "mergetool.cmd", "difftool.cmd":
		return true
	}
	return false
}

// gitGlobal are git's options before the subcommand that take a value.
var gitGlobal = optSpec{short: "Cc", long: []string{"git-dir", "work-tree", "namespace", "config-env", "exec-path", "super-prefix", "list-cmds"}}

// unwrap peels wrappers off cmd, parses the code it runs from strings, and
// adds the resulting Commands.
func (w *walker) unwrap(cmd *Command) {
	for guard := 0; guard < 64 && len(cmd.Args) > 0; guard++ {
		a0 := cmd.Args[0]
		if !a0.Known() {
			break
		}
		name := base(a0.Value)
		args := cmd.Args
		peel := func(at int, needsAllow bool) bool {
			if at < 0 {
				cmd.NoAllow = fmt.Sprintf("cannot tell where the command run by %s starts", name)
				return false
			}
			if at >= len(args) {
				return false
			}
			cmd.Layers = append(cmd.Layers, Layer{Args: args, NeedsAllow: needsAllow})
			cmd.Args = args[at:]
			return true
		}
		switch name {
		case "timeout":
			i := skipOpts(args, 1, optSpec{short: "sk", long: []string{"signal", "kill-after"}})
			if i >= 0 {
				i++ // the duration
			}
			if peel(i, false) {
				continue
			}
		case "nice":
			if peel(skipOpts(args, 1, optSpec{short: "n", long: []string{"adjustment"}, num: true}), false) {
				continue
			}
		case "nohup", "builtin", "noglob", "nocorrect", "unbuffer":
			if peel(skipOpts(args, 1, optSpec{}), false) {
				continue
			}
		case "time":
			if peel(skipOpts(args, 1, optSpec{short: "fo", long: []string{"format", "output"}}), false) {
				continue
			}
		case "stdbuf":
			if peel(skipOpts(args, 1, optSpec{short: "ioe", long: []string{"input", "output", "error"}}), false) {
				continue
			}
		case "command":
			if len(args) > 1 && (hasShortFlag(args[1].Value, 'v') || hasShortFlag(args[1].Value, 'V')) {
				break // a lookup, runs nothing
			}
			if peel(skipOpts(args, 1, optSpec{}), false) {
				continue
			}
		case "exec":
			if peel(skipOpts(args, 1, optSpec{short: "a"}), false) {
				continue
			}
		case "setsid", "ionice", "chrt", "taskset", "prlimit", "cpulimit", "caffeinate", "doppler", "dotenv":
			i := skipOpts(args, 1, optSpec{short: "cnpt", long: []string{"class", "classdata", "pid", "cpu-list"}})
			if (name == "taskset" || name == "chrt") && i >= 0 {
				i++ // the mask or priority
			}
			if peel(i, false) {
				continue
			}
		case "sudo", "doas", "pkexec", "run0":
			w.find(a0.Pos, CatPrivilege, High, "%s runs a command with another user's privileges", name)
			i := skipOpts(args, 1, optSpec{short: "ugCDhprtTUa", long: []string{"user", "group", "close-from", "chdir", "host", "prompt", "role", "type", "command-timeout", "other-user"}})
			if peel(i, false) {
				continue
			}
		case "su", "runuser":
			w.find(a0.Pos, CatPrivilege, High, "%s switches user", name)
			for i := 1; i < len(args); i++ {
				if v := args[i].Value; v == "-c" || v == "--command" {
					if i+1 < len(args) {
						w.runString(cmd, args[i+1], name+" -c")
						return
					}
				}
			}
		case "env":
			i := 1
			for i < len(args) {
				v := args[i].Value
				if !args[i].Known() {
					cmd.NoAllow = "cannot tell where the command run by env starts"
					break
				}
				if v == "-S" || v == "--split-string" || strings.HasPrefix(v, "--split-string=") || strings.HasPrefix(v, "-S") && len(v) > 2 {
					var payload Word
					switch {
					case strings.HasPrefix(v, "--split-string="):
						payload = literalWord(strings.TrimPrefix(v, "--split-string="), args[i].Pos)
					case len(v) > 2 && v[1] == 'S':
						payload = literalWord(v[2:], args[i].Pos)
					case i+1 < len(args):
						payload = args[i+1]
						i++
					}
					rest := joinValues(args[i+1:])
					payload.Value = strings.TrimSpace(payload.Value + " " + rest)
					w.runString(cmd, payload, "env -S")
					return
				}
				if v == "-u" || v == "-C" || v == "--unset" || v == "--chdir" {
					i += 2
					continue
				}
				if strings.HasPrefix(v, "-") && v != "-" {
					i++
					continue
				}
				if k, val, ok := strings.Cut(v, "="); ok && validName(k) {
					as := Assign{Name: k, Value: literalWord(val, args[i].Pos)}
					as.Value.Dynamic = args[i].Dynamic
					cmd.Env = append(cmd.Env, as)
					w.envFindings([]Assign{as}, "")
					i++
					continue
				}
				break
			}
			if cmd.NoAllow == "" && peel(i, false) {
				continue
			}
		case "xargs":
			i := skipOpts(args, 1, optSpec{short: "IEdnLPsa", long: []string{"replace", "eof", "delimiter", "max-args", "max-lines", "max-procs", "max-chars", "arg-file", "process-slot-var"}})
			if i < 0 || i >= len(args) {
				if i < 0 {
					cmd.NoAllow = "cannot tell where the command run by xargs starts"
				}
				break
			}
			cmd.Layers = append(cmd.Layers, Layer{Args: args})
			// xargs appends words read from its input: unknown arguments.
			payload := append(append([]Word(nil), args[i:]...), Word{Value: string(wild), Glob: string(wild), Dynamic: true, Src: "<input>", Pos: a0.Pos})
			cmd.Args = payload
			continue
		case "flock":
			for i := 1; i < len(args); i++ {
				if v := args[i].Value; v == "-c" || v == "--command" {
					if i+1 < len(args) {
						w.runString(cmd, args[i+1], "flock -c")
						return
					}
				}
			}
			i := skipOpts(args, 1, optSpec{short: "wEc", long: []string{"timeout", "conflict-exit-code", "command"}})
			if i >= 0 {
				i++ // the lock file
			}
			if peel(i, false) {
				continue
			}
		case "watch":
			i := skipOpts(args, 1, optSpec{short: "nd", long: []string{"interval", "differences"}})
			exec := false
			for _, a := range args[1:max(i, 1)] {
				if a.Value == "-x" || a.Value == "--exec" {
					exec = true
				}
			}
			if i < 0 || i >= len(args) {
				break
			}
			if exec {
				if peel(i, false) {
					continue
				}
				break
			}
			pw := joinWords(args[i:])
			w.runString(cmd, pw, "watch")
			return
		case "chroot":
			w.find(a0.Pos, CatContainer, High, "chroot changes the root directory")
			i := skipOpts(args, 1, optSpec{long: []string{"userspec", "groups"}})
			if i >= 0 {
				i++
			}
			if peel(i, true) {
				continue
			}
		case "nsenter":
			w.find(a0.Pos, CatContainer, Critical, "nsenter enters another process's namespaces")
			if peel(skipOpts(args, 1, optSpec{short: "tSGwr", long: []string{"target", "setuid", "setgid", "wd", "root"}}), true) {
				continue
			}
		case "unshare":
			w.find(a0.Pos, CatContainer, High, "unshare creates new namespaces")
			if peel(skipOpts(args, 1, optSpec{short: "S", long: []string{"setuid", "setgid", "map-user", "map-group", "propagation", "setgroups"}}), true) {
				continue
			}
		case "devbox", "mise", "uv", "poetry", "pipenv", "bundle", "pnpm", "conda", "pixi", "hatch", "rye", "direnv", "nix":
			// Tools that run a command in a prepared environment: the
			// command is judged as if run directly (Claude Code lets
			// "Bash(devbox run *)" allow anything; moat does not).
			sub := map[string]string{"devbox": "run", "mise": "exec", "uv": "run", "poetry": "run", "pipenv": "run", "bundle": "exec",
				"pnpm": "exec", "conda": "run", "pixi": "run", "hatch": "run", "rye": "run", "direnv": "exec", "nix": "develop"}[name]
			if len(args) < 3 || args[1].Value != sub && !(name == "mise" && args[1].Value == "x") {
				break
			}
			i := -1
			for j := 2; j < len(args); j++ {
				if args[j].Value == "--" || name == "nix" && (args[j].Value == "-c" || args[j].Value == "--command") {
					i = j + 1
					break
				}
			}
			if i < 0 && name != "mise" && name != "nix" {
				i = skipOpts(args, 2, optSpec{})
				if name == "direnv" && i >= 0 {
					i++ // the directory
				}
			}
			if i >= 0 && peel(i, false) {
				continue
			}
		case "eval":
			cmd.NoAllow = "eval runs a string as shell code"
			w.runString(cmd, joinWords(args[1:]), "eval")
			return
		case "source", ".":
			cmd.NoAllow = name + " runs a file's commands in this shell"
		case "trap":
			if len(args) > 2 {
				w.runString(cmd, args[1], "trap")
				return
			}
		case "alias":
			for _, a := range args[1:] {
				if _, v, ok := strings.Cut(a.Value, "="); ok {
					pw := a
					pw.Value = v
					w.reparseWord(cmd, pw, "alias")
				}
			}
			cmd.Runner = true
			cmd.NoAllow = "alias changes what later commands run"
		case "find":
			w.findExec(cmd)
		case "git":
			w.git(cmd)
		case "ssh":
			w.ssh(cmd)
		case "docker", "podman", "kubectl", "nerdctl", "oc":
			w.containerExec(cmd, name)
		}
		if shells[name] {
			w.shell(cmd, name)
			return
		}
		if isInterpreter(name) {
			w.interpreter(cmd, name)
		}
		break
	}
	w.add(cmd)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func joinValues(ws []Word) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w.Value)
	}
	return b.String()
}

// joinWords joins words as a shell would join eval's arguments.
func joinWords(ws []Word) Word {
	if len(ws) == 0 {
		return Word{}
	}
	out := Word{Value: joinValues(ws), Pos: ws[0].Pos}
	var src []string
	for _, w := range ws {
		out.Dynamic = out.Dynamic || w.Dynamic
		out.Globbed = out.Globbed || w.Globbed
		src = append(src, w.Src)
	}
	out.Src = strings.Join(src, " ")
	out.Glob = escapeGlob(out.Value)
	return out
}

// runString makes cmd a runner of the shell code in payload: the code is
// parsed into Commands of its own; cmd is then added.
func (w *walker) runString(cmd *Command, payload Word, via string) {
	cmd.Runner = true
	w.reparseWord(cmd, payload, via)
	w.add(cmd)
}

// reparseWord parses a word's value as shell code, one level deeper. An
// unknown value cannot be parsed: nothing may allow cmd then.
func (w *walker) reparseWord(cmd *Command, payload Word, via string) {
	if payload.Dynamic || strings.IndexByte(payload.Value, wild) >= 0 {
		cmd.Runner = false
		cmd.NoAllow = via + " runs code that is only known when it runs"
		return
	}
	if msg, ok := w.reparse(payload.Value, via, payload.Pos); !ok {
		cmd.Runner = false
		cmd.NoAllow = msg
	}
}

// shell handles sh/bash/zsh …: -c CODE is parsed; a script file runs as an
// ordinary command; no script means the shell reads code from stdin.
func (w *walker) shell(cmd *Command, name string) {
	args := cmd.Args
	i, code, stdin := 1, false, false
	for i < len(args) {
		v := args[i].Value
		if !args[i].Known() {
			break
		}
		if v == "" {
			break
		}
		if v == "--" || v == "-" {
			i++
			break
		}
		if strings.HasPrefix(v, "--") {
			if v == "--rcfile" || v == "--init-file" {
				i++
			}
			i++
			continue
		}
		if (v[0] == '-' || v[0] == '+') && len(v) > 1 {
			if strings.IndexByte(v[1:], 'c') >= 0 {
				code = true
			}
			if v[0] == '-' && strings.IndexByte(v[1:], 's') >= 0 {
				stdin = true
			}
			if strings.IndexByte(v[1:], 'o') >= 0 || strings.IndexByte(v[1:], 'O') >= 0 {
				i++
			}
			i++
			continue
		}
		break
	}
	switch {
	case code && i < len(args):
		w.runString(cmd, args[i], name+" -c")
		return
	case code:
		cmd.NoAllow = name + " -c without code"
	case i >= len(args) || stdin:
		// Reads its script from standard input: a here-document or
		// here-string is parsed; a pipe is judged with the pipeline.
		for _, r := range cmd.Redirs {
			if r.Op == "<<" || r.Op == "<<-" || r.Op == "<<<" {
				w.runString(cmd, r.Target, name+" <<")
				return
			}
		}
		cmd.stdinCode = true
	}
	w.add(cmd)
}

// interpreter flags inline code (python -c) as opaque.
func (w *walker) interpreter(cmd *Command, name string) {
	args := cmd.Args
	if strings.HasSuffix(name, "awk") {
		// The first non-option argument is the program, unless -f.
		i := skipOpts(args, 1, optSpec{short: "FvfW", long: []string{"file", "assign", "field-separator"}})
		for _, a := range args[1:max(i, 1)] {
			if a.Value == "-f" || strings.HasPrefix(a.Value, "--file") {
				return
			}
		}
		if i > 0 && i < len(args) {
			p := args[i].Value
			if strings.Contains(p, "system") || strings.Contains(p, "| \"") || strings.Contains(p, "|\"") || strings.Contains(p, "|&") || strings.Contains(p, "getline") {
				cmd.Opaque = name + " program that runs commands"
				w.find(args[i].Pos, CatOpaque, Medium, "%s program runs commands (system, pipes)", name)
			}
		}
		return
	}
	if len(args) == 1 || len(args) == 2 && args[1].Value == "-" {
		cmd.stdinCode = true
		return
	}
	for _, a := range args[1:] {
		for _, f := range interpreterCodeFlags(name) {
			if a.Value == f || len(f) == 2 && f[0] == '-' && hasShortFlag(a.Value, f[1]) && !strings.HasPrefix(a.Value, "--") && len(a.Value) <= 3 {
				cmd.Opaque = name + " " + f
				w.find(a.Pos, CatOpaque, Medium, "%s %s runs inline code moat cannot inspect", name, f)
				if strings.EqualFold(f, "-encodedcommand") || f == "-e" && (name == "pwsh" || name == "powershell") || f == "-ec" {
					w.find(a.Pos, CatObfuscation, High, "%s runs a base64-encoded command", name)
				}
				return
			}
		}
	}
}

// findExec parses find's -exec/-execdir/-ok/-okdir commands.
func (w *walker) findExec(cmd *Command) {
	args := cmd.Args
	for i := 1; i < len(args); i++ {
		v := args[i].Value
		if v != "-exec" && v != "-execdir" && v != "-ok" && v != "-okdir" {
			continue
		}
		j := i + 1
		for j < len(args) && args[j].Value != ";" && args[j].Value != "+" {
			j++
		}
		if j > i+1 {
			payload := make([]Word, 0, j-i-1)
			for _, a := range args[i+1 : j] {
				if strings.Contains(a.Value, "{}") {
					a.Value = strings.ReplaceAll(a.Value, "{}", string(wild))
					a.Glob = strings.ReplaceAll(a.Glob, "{}", string(wild))
					a.Dynamic = true
				}
				payload = append(payload, a)
			}
			sub := &Command{Args: payload, Layers: []Layer{{Args: args, NeedsAllow: true}},
				Env: cmd.Env, Pos: w.pos(args[i].Pos), Text: cmd.Text}
			nw := *w
			nw.depth++
			nw.via = "find " + v
			if nw.depth > MaxDepth {
				w.find(args[i].Pos, CatObfuscation, Critical, "nesting deeper than %d levels", MaxDepth)
			} else {
				nw.unwrap(sub)
			}
		}
		i = j
	}
}

// git parses configuration values that are commands (git -c alias.x=!…).
func (w *walker) git(cmd *Command) {
	args := cmd.Args
	for i := 1; i < len(args); i++ {
		v := args[i].Value
		var kv string
		switch {
		case v == "-c" && i+1 < len(args):
			i++
			kv = args[i].Value
		case strings.HasPrefix(v, "-c") && len(v) > 2:
			kv = v[2:]
		case v == "-C" || strings.HasPrefix(v, "--") && !strings.Contains(v, "=") && (v == "--git-dir" || v == "--work-tree" || v == "--namespace"):
			i++
			continue
		case strings.HasPrefix(v, "-"):
			continue
		default:
			i = len(args)
			continue
		}
		k, val, _ := strings.Cut(kv, "=")
		if gitCodeKey(k) {
			w.find(args[i].Pos, CatRCE, High, "git -c %s sets a command git will run", k)
			val = strings.TrimPrefix(val, "!")
			w.reparseWord(cmd, literalWord(val, args[i].Pos), "git -c "+k)
		}
	}
	// --upload-pack/--receive-pack/--exec name programs to run.
	for i := 1; i < len(args); i++ {
		v := args[i].Value
		for _, o := range []string{"--upload-pack", "--receive-pack", "--exec"} {
			if v == o || strings.HasPrefix(v, o+"=") {
				w.find(args[i].Pos, CatRCE, High, "git %s names a program to run", o)
				if cmd.NoAllow == "" {
					cmd.NoAllow = "git " + o + " runs a program"
				}
			}
		}
	}
}

// ssh parses the remote command and -o ProxyCommand/LocalCommand.
func (w *walker) ssh(cmd *Command) {
	args := cmd.Args
	for i := 1; i < len(args); i++ {
		v := args[i].Value
		opt := ""
		if v == "-o" && i+1 < len(args) {
			opt = args[i+1].Value
		} else if strings.HasPrefix(v, "-o") && len(v) > 2 {
			opt = v[2:]
		}
		k, val, ok := strings.Cut(opt, "=")
		if !ok {
			k, val, _ = strings.Cut(opt, " ")
		}
		if strings.EqualFold(k, "ProxyCommand") || strings.EqualFold(k, "LocalCommand") || strings.EqualFold(k, "RemoteCommand") {
			w.find(args[i].Pos, CatRCE, High, "ssh -o %s runs a command", k)
			w.reparseWord(cmd, literalWord(val, args[i].Pos), "ssh -o "+k)
		}
	}
	i := skipOpts(args, 1, optSpec{short: "BbcDEeFIiJLlmOopQRSWw"})
	if i < 0 || i+1 >= len(args) {
		return
	}
	// Everything after the host is joined into a remote shell command.
	remote := joinWords(args[i+1:])
	w.reparseWord(cmd, remote, "ssh "+args[i].Value)
}

// containerExec treats docker/kubectl exec's command as a payload that
// must be allowed too.
func (w *walker) containerExec(cmd *Command, name string) {
	args := cmd.Args
	if len(args) < 2 {
		return
	}
	sub := 1
	if name == "docker" || name == "podman" || name == "nerdctl" {
		if args[1].Value == "container" && len(args) > 2 {
			sub = 2
		}
	}
	if args[sub].Value != "exec" {
		return
	}
	var i int
	if name == "kubectl" || name == "oc" {
		i = -1
		for j := sub + 1; j < len(args); j++ {
			if args[j].Value == "--" {
				i = j + 1
				break
			}
		}
		if i < 0 {
			return
		}
	} else {
		i = skipOpts(args, sub+1, optSpec{short: "euw", long: []string{"env", "user", "workdir", "env-file", "detach-keys"}})
		if i >= 0 {
			i++ // the container
		}
	}
	if i < 0 || i >= len(args) {
		return
	}
	p := &Command{Args: args[i:], Layers: []Layer{{Args: args, NeedsAllow: true}}, Pos: cmd.Pos, Text: cmd.Text}
	nw := *w
	nw.depth++
	nw.via = name + " exec"
	if nw.depth <= MaxDepth {
		nw.unwrap(p)
	}
}

// forkBomb reports whether a function calls itself in a pipeline or in the
// background: ":(){ :|:& };:".
func forkBomb(fd *syntax.FuncDecl) bool {
	name := fd.Name.Value
	found := false
	syntax.Walk(fd.Body, func(n syntax.Node) bool {
		if b, ok := n.(*syntax.BinaryCmd); ok && (b.Op == syntax.Pipe || b.Op == syntax.PipeAll) {
			if callsName(b.X, name) || callsName(b.Y, name) {
				found = true
			}
		}
		if s, ok := n.(*syntax.Stmt); ok && s.Background && callsName(s, name) {
			found = true
		}
		return !found
	})
	return found
}

func callsName(s *syntax.Stmt, name string) bool {
	ce, ok := s.Cmd.(*syntax.CallExpr)
	return ok && len(ce.Args) > 0 && ce.Args[0].Lit() == name
}

// cleanJoin joins a base directory and a path lexically.
func cleanJoin(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}
