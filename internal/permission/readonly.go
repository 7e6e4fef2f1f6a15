package permission

import "strings"

// readOnlyProgs run unprompted when no rule mentions them (as in Claude
// Code): they read, print or compute, and write nothing but their output.
// The value lists options that make one of them write or run something.
var readOnlyProgs = map[string][]string{
	"ls": nil, "pwd": nil, "echo": nil, "printf": nil, "cat": nil, "head": nil, "tail": nil, "wc": nil,
	"grep": {"-f"}, "egrep": {"-f"}, "fgrep": {"-f"}, "rg": {"--pre", "--pre-glob", "--search-zip", "-z"}, "which": nil, "type": nil,
	"whoami": nil, "id": nil, "date": {"-s", "--set"}, "uname": nil, "true": nil, "false": nil, "test": nil, "[": nil,
	"basename": nil, "dirname": nil, "realpath": nil, "readlink": nil, "stat": nil, "file": {"-C", "--compile"}, "du": nil, "df": nil,
	"tree": {"-o"}, "diff": nil, "cmp": nil, "sort": {"-o", "--output", "--compress-program"}, "cut": nil, "tr": nil, "nl": nil,
	"column": nil, "jq": nil, "sha256sum": nil, "sha1sum": nil, "md5sum": nil, "cksum": nil, "seq": nil, "cd": nil, "uniq": nil,
	"nproc": nil, "free": nil, "uptime": nil, "ps": nil, "env": nil, "printenv": nil, "find": {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"},
	"go": nil, "git": nil, "command": nil,
}

// readOnlyGit are git subcommands that change nothing.
var readOnlyGit = map[string]bool{"status": true, "diff": true, "log": true, "show": true, "rev-parse": true, "ls-files": true,
	"blame": true, "describe": true, "shortlog": true, "grep": true, "ls-tree": true, "cat-file": true, "merge-base": true, "rev-list": true}

// readOnly reports whether a command only reads. Globs are accepted (the
// files they name are read, not run); other unknown parts are not.
func readOnly(args []Word) bool {
	if len(args) == 0 || !args[0].Known() || strings.Contains(args[0].Value, "/") {
		return false
	}
	name := args[0].Value
	bad, ok := readOnlyProgs[name]
	if !ok {
		return false
	}
	for _, a := range args[1:] {
		if a.Dynamic {
			return false
		}
		for _, b := range bad {
			if a.Value == b || strings.HasPrefix(a.Value, b+"=") {
				return false
			}
		}
	}
	switch name {
	case "command":
		return len(args) >= 2 && (args[1].Value == "-v" || args[1].Value == "-V")
	case "uniq":
		n := 0
		for _, a := range args[1:] {
			if !strings.HasPrefix(a.Value, "-") {
				n++
			}
		}
		return n <= 1
	case "env", "printenv":
		return len(args) == 1 || name == "printenv"
	case "go":
		return len(args) >= 2 && (args[1].Value == "version" || args[1].Value == "env" && len(args) <= 3 && !strings.HasPrefix(text(args[2:]), "-w") || args[1].Value == "list" || args[1].Value == "doc")
	case "git":
		cv := canonicalArgs(values(args))
		if len(cv) < 2 || len(cv) != len(args) {
			return false // global options such as -c or -C
		}
		sub := cv[1]
		switch sub {
		case "branch", "tag", "remote", "stash", "worktree":
			for _, v := range cv[2:] {
				if !(v == "-a" || v == "-r" || v == "-v" || v == "-vv" || v == "--list" || v == "-l" || v == "list" || v == "show" || v == "--show-current") {
					return false
				}
			}
			return true
		case "config":
			return len(cv) >= 3 && (cv[2] == "--get" || cv[2] == "--list" || cv[2] == "-l" || cv[2] == "--get-all")
		}
		if !readOnlyGit[sub] {
			return false
		}
		for _, v := range cv[2:] {
			if strings.HasPrefix(v, "--output") || v == "--ext-diff" || v == "--textconv" || strings.HasPrefix(v, "--exec") {
				return false
			}
		}
		return true
	}
	for _, a := range args[1:] {
		if a.Globbed && !(name == "ls" || name == "cat" || name == "head" || name == "tail" || name == "wc" || name == "grep" ||
			name == "file" || name == "stat" || name == "du" || name == "diff" || name == "echo" || name == "rg") {
			return false
		}
	}
	return true
}
