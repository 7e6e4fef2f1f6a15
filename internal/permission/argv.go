package permission

import (
	"strings"
)

// Options are normalised before deny and ask rules compare argument
// vectors, so that reordering, combining or spelling options another way
// cannot dodge a rule: "rm -fr x", "rm -r -f x" and "rm --recursive
// --force x" all carry the options {--force, --recursive}; "git push -f
// origin" and "git push origin --force" both carry {--force}.

// flagAliases maps a program (or "program subcommand") to its options'
// canonical names; a value may name several ("-D" is "--delete --force").
var flagAliases = map[string]map[string]string{
	"rm":           {"-r": "--recursive", "-R": "--recursive", "-f": "--force", "-i": "--interactive", "-d": "--dir", "-v": "--verbose"},
	"git push":     {"-f": "--force", "-u": "--set-upstream", "-d": "--delete", "-n": "--dry-run", "-q": "--quiet", "-v": "--verbose"},
	"git clean":    {"-f": "--force", "-n": "--dry-run", "-q": "--quiet", "-i": "--interactive"},
	"git checkout": {"-f": "--force"},
	"git switch":   {"-f": "--force", "-c": "--create", "-C": "--force-create"},
	"git branch":   {"-d": "--delete", "-D": "--delete --force", "-f": "--force", "-m": "--move", "-M": "--move --force", "-c": "--copy"},
	"git commit":   {"-a": "--all", "-m": "--message", "-n": "--no-verify", "-q": "--quiet", "-s": "--signoff"},
	"git add":      {"-A": "--all", "-f": "--force", "-u": "--update", "-p": "--patch"},
	"git rebase":   {"-i": "--interactive"},
	"git reset":    {"-q": "--quiet"},
	"git tag":      {"-d": "--delete", "-f": "--force"},
	"cp":           {"-r": "--recursive", "-R": "--recursive", "-f": "--force", "-a": "--archive", "-i": "--interactive", "-v": "--verbose"},
	"mv":           {"-f": "--force", "-i": "--interactive", "-v": "--verbose", "-n": "--no-clobber"},
	"chmod":        {"-R": "--recursive", "-v": "--verbose"},
	"chown":        {"-R": "--recursive", "-v": "--verbose"},
	"chgrp":        {"-R": "--recursive"},
	"curl": {"-d": "--data", "--data-binary": "--data", "--data-raw": "--data", "--data-ascii": "--data", "--data-urlencode": "--data",
		"-F": "--form", "-T": "--upload-file", "-X": "--request", "-o": "--output", "-O": "--remote-name", "-k": "--insecure",
		"-L": "--location", "-s": "--silent", "-S": "--show-error", "-f": "--fail", "-H": "--header", "-u": "--user"},
	"wget":        {"-O": "--output-document", "-q": "--quiet", "-P": "--directory-prefix"},
	"npm install": {"-g": "--global", "-D": "--save-dev", "-f": "--force", "-E": "--save-exact"},
	"pip install": {"-U": "--upgrade", "-e": "--editable", "-r": "--requirement", "-q": "--quiet"},
	"docker run":  {"-v": "--volume", "-e": "--env", "-p": "--publish", "-d": "--detach", "-i": "--interactive", "-t": "--tty", "-u": "--user", "-w": "--workdir"},
	"sed":         {"-i": "--in-place", "-e": "--expression", "-n": "--quiet", "-E": "--regexp-extended", "-r": "--regexp-extended"},
	"tar":         {"-c": "--create", "-x": "--extract", "-z": "--gzip", "-f": "--file", "-v": "--verbose", "-j": "--bzip2", "-t": "--list"},
	"kill":        {"-9": "-KILL", "-s": "--signal"},
	"dd":          {},
}

// subcommandAliases maps a program's subcommand spellings to one.
var subcommandAliases = map[string]map[string]string{
	"npm": {"i": "install", "in": "install", "ins": "install", "inst": "install", "insta": "install", "instal": "install",
		"isnt": "install", "isnta": "install", "isntal": "install", "isntall": "install", "add": "install",
		"rm": "uninstall", "r": "uninstall", "un": "uninstall", "unlink": "uninstall", "remove": "uninstall",
		"run-script": "run", "rum": "run", "urn": "run", "x": "exec", "t": "test", "tst": "test", "c": "config"},
	"pnpm":   {"i": "install", "rm": "remove", "un": "remove", "uninstall": "remove", "run-script": "run", "t": "test"},
	"cargo":  {"b": "build", "t": "test", "r": "run", "c": "check", "d": "doc", "rm": "remove"},
	"docker": {"container": ""},
	"podman": {"container": ""},
}

// noCluster lists programs whose single-dash options are whole words
// ("find -name", "go test -race"), not clusters of letters.
var noCluster = map[string]bool{"find": true, "go": true, "java": true, "gcc": true, "cc": true, "clang": true, "g++": true,
	"ffmpeg": true, "terraform": true, "dig": true, "openssl": true, "test": true, "[": true, "xcodebuild": true, "qemu-system-x86_64": true}

// argvView is an argument vector normalised for structural matching.
type argvView struct {
	pos      []string // program (base name), subcommand(s), positional arguments
	flags    map[string]bool
	anyFlags bool // an unknown word might be any option
}

// canonicalArgs returns the argument values with the program reduced to
// its base name, git's global options removed and subcommand aliases
// resolved: the form under which deny rules also look at a command.
func canonicalArgs(vals []string) []string {
	if len(vals) == 0 {
		return nil
	}
	prog := base(vals[0])
	if prog == vals[0] && (prog != "git" || len(vals) == 1 || !strings.HasPrefix(vals[1], "-")) {
		if m := subcommandAliases[prog]; m == nil || len(vals) == 1 {
			return vals // already canonical; callers only read the result
		} else if _, ok := m[vals[1]]; !ok {
			return vals
		}
	}
	out := make([]string, 0, len(vals))
	out = append(out, prog)
	rest := vals[1:]
	if prog == "git" {
		i := 0
		for i < len(rest) {
			v := rest[i]
			if v == "-C" || v == "-c" || v == "--git-dir" || v == "--work-tree" || v == "--namespace" || v == "--config-env" {
				i += 2
				continue
			}
			if strings.HasPrefix(v, "-") {
				i++
				continue
			}
			break
		}
		if i > len(rest) {
			i = len(rest)
		}
		rest = rest[i:]
	}
	if m := subcommandAliases[prog]; m != nil && len(rest) > 0 {
		if to, ok := m[rest[0]]; ok {
			if to == "" {
				rest = rest[1:]
			} else {
				rest = append([]string{to}, rest[1:]...)
			}
		}
	}
	return append(out, rest...)
}

// normArgv builds the structural view of an argument vector. Values may
// contain the wild byte.
func normArgv(vals []string) argvView {
	v := argvView{flags: map[string]bool{}}
	vals = canonicalArgs(vals)
	if len(vals) == 0 {
		return v
	}
	prog := vals[0]
	v.pos = append(v.pos, prog)
	var aliases map[string]string
	key := prog
	// The subcommand is the first positional word.
	for _, a := range vals[1:] {
		if !strings.HasPrefix(a, "-") {
			if m, ok := flagAliases[prog+" "+a]; ok {
				aliases, key = m, prog+" "+a
			}
			break
		}
	}
	if aliases == nil {
		aliases = flagAliases[prog]
	}
	add := func(f string) {
		if to, ok := aliases[f]; ok {
			for _, t := range strings.Fields(to) {
				v.flags[t] = true
			}
			return
		}
		v.flags[f] = true
	}
	ended := false
	for _, a := range vals[1:] {
		switch {
		case ended || a == "-" || !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, string(wild)):
			if key == "git push" && strings.HasPrefix(a, "+") && len(a) > 1 {
				v.flags["--force"] = true
				a = a[1:]
			}
			v.pos = append(v.pos, a)
		case strings.HasPrefix(a, string(wild)):
			v.anyFlags = true
			v.pos = append(v.pos, a)
		case a == "--":
			ended = true
		case strings.HasPrefix(a, "--"):
			name, _, _ := strings.Cut(a, "=")
			add(name)
			if strings.IndexByte(a, wild) >= 0 {
				v.anyFlags = true
			}
		default:
			if noCluster[prog] || len(a) == 2 {
				add(a)
				continue
			}
			for i := 1; i < len(a); i++ {
				if a[i] == wild {
					v.anyFlags = true
					continue
				}
				add("-" + a[i:i+1])
			}
		}
	}
	return v
}

// argvPattern is the structural form of a Bash rule that names options.
type argvPattern struct {
	view argvView
	pos  [][]int16 // compiled positional globs; nil entry = a bare "*" (any words)
	prog string    // the program, literal: a command running another cannot match
}

// compileArgvPattern returns nil unless the words include an option.
func compileArgvPattern(words []string) *argvPattern {
	hasFlag := false
	for _, w := range words[1:] {
		if len(w) > 1 && w[0] == '-' && w != "-*" {
			hasFlag = true
		}
	}
	if !hasFlag || strings.Contains(words[0], "*") {
		return nil
	}
	// Stars become wild bytes for normArgv; literal stars stay.
	vals := make([]string, len(words))
	for i, w := range words {
		vals[i] = strings.ReplaceAll(strings.ReplaceAll(w, `\*`, "\x01"), "*", string(wild))
	}
	view := normArgv(vals)
	p := &argvPattern{view: view}
	if len(view.pos) > 0 {
		p.prog = view.pos[0]
	}
	p.view.anyFlags = false
	delete(p.view.flags, string(wild))
	for f := range p.view.flags {
		if strings.IndexByte(f, wild) >= 0 {
			delete(p.view.flags, f)
		}
	}
	for _, s := range view.pos {
		if s == string(wild) {
			p.pos = append(p.pos, nil)
			continue
		}
		var toks []int16
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case wild:
				toks = append(toks, star)
			case '\x01':
				toks = append(toks, '*')
			default:
				toks = append(toks, int16(s[i]))
			}
		}
		p.pos = append(p.pos, toks)
	}
	return p
}

// matchAny reports whether some argument vector the view can stand for
// has every option of the pattern and positional words matching its
// positional globs in order.
func (p *argvPattern) matchAny(v argvView) bool {
	if !v.anyFlags {
		for f := range p.view.flags {
			if !v.flags[f] {
				return false
			}
		}
	}
	return posMatch(p.pos, v.pos, v.anyFlags)
}

func posMatch(pat [][]int16, pos []string, loose bool) bool {
	if len(pat) == 0 {
		return len(pos) == 0
	}
	if pat[0] == nil { // any run of words
		for k := 0; k <= len(pos); k++ {
			if posMatch(pat[1:], pos[k:], loose) {
				return true
			}
		}
		return false
	}
	if len(pos) == 0 {
		return false
	}
	if pos[0] == string(wild) && loose {
		// An unknown word may be nothing, one word, or many.
		return posMatch(pat, pos[1:], loose) || posMatch(pat[1:], pos, loose) || posMatch(pat[1:], pos[1:], loose)
	}
	return globMatch(pat[0], pos[0], true) && posMatch(pat[1:], pos[1:], loose)
}
