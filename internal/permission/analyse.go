package permission

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Severity ranks a finding. The engine maps it to a verdict (by default
// Critical → deny, High → ask; lower severities only inform).
type Severity int

const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = []string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "Severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseSeverity reads a severity name.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q; use one of %s", s, strings.Join(severityNames, ", "))
}

// target is a path a command reads or writes, absolute where known.
type target struct {
	word Word
	segs []string // absolute glob segments
	abs  string   // the absolute path when the word is fully known
}

// resolveWord places a path word: relative to cwd, ~ to home. It returns
// false for a word that cannot name a path usefully (fully unknown).
func resolveWord(w Word, env pathEnv) (target, bool) {
	g := w.Glob
	if g == "" {
		return target{}, false
	}
	if !w.Known() {
		// An unknown word is checked only if some literal path text
		// follows its unknown part ("$HOME/.ssh/id_rsa").
		i := strings.LastIndexByte(g, wild)
		if i < 0 {
			i = 0
		}
		rest := g[i:]
		if !strings.Contains(rest, "/") || len(strings.Trim(rest, "/\x00*")) == 0 {
			if !w.Globbed || w.Dynamic {
				return target{}, false
			}
		}
	}
	t := target{word: w}
	if env.baseSegs != nil && w.Known() && !w.Tilde && w.Value != "." && w.Value != ".." && strings.IndexByte(w.Value, '/') < 0 {
		// A name in the directory the command runs in: the directory's
		// segments, computed once, and the name.
		b := env.base()
		t.abs = b + "/" + w.Value
		if b == "/" {
			t.abs = b + w.Value
		}
		t.segs = append(env.baseSegs[:len(env.baseSegs):len(env.baseSegs)], escapeGlob(w.Value))
		return t, true
	}
	if w.Known() && (env.dir != unknownDir || w.Tilde || strings.HasPrefix(g, "/")) {
		t.abs = path.Clean(cleanJoin(env.base(), expandTilde(w, env)))
		t.segs = splitPath(escapeGlob(t.abs))
		return t, true
	}
	var full string
	switch {
	case w.Tilde:
		full = escapeGlob(env.home) + strings.TrimPrefix(g, "~")
	case strings.HasPrefix(g, "/"):
		full = g
	case g[0] == wild:
		full = "/" + g
	case env.dir == unknownDir:
		full = "/" + string(wild) + "/" + g
	default:
		full = escapeGlob(env.base()) + "/" + g
	}
	t.segs = globSegments(full)
	return t, true
}

func expandTilde(w Word, env pathEnv) string {
	if w.Tilde {
		return env.home + strings.TrimPrefix(w.Value, "~")
	}
	return w.Value
}

// globSegments splits an absolute glob into segments; a wild byte may span
// slashes, so a segment holding one becomes "a*", "**", "*b". ".."
// segments are removed lexically.
func globSegments(g string) []string {
	var out []string
	for _, seg := range strings.Split(g, "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 && out[len(out)-1] != "**" {
				out = out[:len(out)-1]
			}
			continue
		}
		if strings.IndexByte(seg, wild) < 0 {
			out = append(out, seg)
			continue
		}
		// dynStar is a star that, unlike a glob's, may match a leading dot.
		parts := strings.Split(seg, string(wild))
		for i, p := range parts {
			switch {
			case i == 0:
				if p != "" {
					out = append(out, p+dynStar)
				}
			case i == len(parts)-1:
				out = append(out, "**")
				if p != "" {
					out = append(out, dynStar+p)
				}
			default:
				out = append(out, "**")
				if p != "" {
					out = append(out, dynStar+p+dynStar)
				}
			}
		}
	}
	return out
}

// matchTarget reports whether a path rule (as segments) covers a target:
// the target or one of its ancestors matches; for a glob or unknown target,
// whether they can name the same path.
func matchTarget(rule []string, t target) bool {
	if t.abs != "" {
		return pathMatch(rule, t.segs)
	}
	return segMatch(rule, t.segs, true, true)
}

// containsMatch reports whether the target is a directory above something
// the rule matches (a recursive read of it reaches the rule's files).
//
// A rule that matches at any depth ("**/secrets/**") is taken as anchored
// at the working directory here: otherwise every directory would "contain"
// a secrets directory, and every recursive read would match.
func containsMatch(rule []string, t target, env pathEnv) bool {
	if len(rule) > 0 && rule[0] == "**" {
		rule = append(splitPath(escapeGlob(env.cwd)), rule[1:]...)
	}
	return segMatch(t.segs, rule, true, true)
}

// sensitivePaths are read by nobody's build: credentials and keys.
var sensitivePaths = []struct{ glob, what string }{
	{"~/.ssh", "SSH keys"}, {"~/.aws", "AWS credentials"}, {"~/.config/gcloud", "Google Cloud credentials"},
	{"~/.azure", "Azure credentials"}, {"~/.kube/config", "Kubernetes credentials"}, {"~/.docker/config.json", "Docker credentials"},
	{"~/.git-credentials", "git credentials"}, {"~/.netrc", "netrc credentials"}, {"~/.npmrc", "npm credentials"},
	{"~/.pypirc", "PyPI credentials"}, {"~/.gnupg", "GnuPG keys"}, {"~/.config/gh", "GitHub CLI credentials"},
	{"**/.env", "an environment file"}, {"**/.env.*", "an environment file"}, {"**/*.pem", "a PEM key or certificate"},
	{"**/*.key", "a private key"}, {"**/id_rsa*", "an SSH key"}, {"**/id_ed25519*", "an SSH key"}, {"**/id_ecdsa*", "an SSH key"},
	{"**/*.p12", "a PKCS#12 key store"}, {"**/*.pfx", "a PKCS#12 key store"}, {"**/*service-account*.json", "a service-account key"},
	{"/etc/shadow", "password hashes"}, {"/etc/gshadow", "password hashes"}, {"/etc/sudoers", "sudo configuration"},
	{"/proc/*/environ", "a process's environment"}, {"/proc/*/mem", "a process's memory"}, {"/proc/*/cmdline", "a process's arguments"},
}

// persistencePaths make code run later, outside the agent's session.
var persistencePaths = []struct{ glob, what string }{
	{"**/.ssh/authorized_keys*", "SSH authorized keys"}, {"/etc/systemd/**", "systemd units"}, {"~/.config/systemd/**", "systemd user units"},
	{"/lib/systemd/**", "systemd units"}, {"/etc/cron*", "cron tables"}, {"/var/spool/cron/**", "cron tables"},
	{"~/.bashrc", "a shell startup file"}, {"~/.bash_profile", "a shell startup file"}, {"~/.bash_login", "a shell startup file"},
	{"~/.bash_logout", "a shell startup file"}, {"~/.profile", "a shell startup file"}, {"~/.zshrc", "a shell startup file"},
	{"~/.zprofile", "a shell startup file"}, {"~/.zshenv", "a shell startup file"}, {"~/.zlogin", "a shell startup file"},
	{"~/.config/fish/**", "a shell startup file"}, {"/etc/profile*", "a shell startup file"}, {"/etc/bash.bashrc", "a shell startup file"},
	{"**/.git/hooks/**", "git hooks"}, {"~/.config/autostart/**", "autostart entries"}, {"~/Library/LaunchAgents/**", "launch agents"},
	{"/etc/rc.local", "boot scripts"}, {"/etc/init.d/**", "boot scripts"}, {"/etc/ld.so.preload", "the preload list"},
}

var systemDirs = []string{"/etc", "/usr", "/boot", "/sys", "/proc/sys", "/lib", "/lib64", "/bin", "/sbin", "/var/lib", "/opt", "/root"}

// protectedNames are never written without asking (Claude Code's list).
var (
	protectedDirs  = map[string]bool{".git": true, ".vscode": true, ".idea": true, ".husky": true, ".cargo": true, ".devcontainer": true, ".yarn": true, ".mvn": true, ".claude": true}
	protectedFiles = map[string]bool{".gitconfig": true, ".gitmodules": true, ".npmrc": true, ".yarnrc": true, ".yarnrc.yml": true, "bunfig.toml": true,
		".ripgreprc": true, ".mcp.json": true, ".claude.json": true, ".bashrc": true, ".bash_profile": true, ".profile": true, ".zshrc": true, ".zprofile": true, ".zshenv": true}
)

// compiled lists of the fixed globs, as segments, per environment.
func globRuleSegs(g string, env pathEnv) []string {
	if env.segs != nil {
		if s, ok := env.segs.globs[g]; ok {
			return s
		}
	}
	return computeGlobSegs(g, env)
}

func computeGlobSegs(g string, env pathEnv) []string {
	switch {
	case strings.HasPrefix(g, "~/"):
		return append(splitPath(escapeGlob(env.home)), strings.Split(g[2:], "/")...)
	case strings.HasPrefix(g, "**/"):
		return strings.Split(g, "/")
	}
	return splitPath(g)
}

// protectedWrite names why a write to t is never auto-approved, or "".
func protectedWrite(t target) string {
	segs := t.segs
	for i, s := range segs {
		if protectedDirs[s] || s == ".config" && i+1 < len(segs) && segs[i+1] == "git" {
			if s == ".claude" && i+1 < len(segs) && segs[i+1] == "worktrees" {
				continue
			}
			return s
		}
	}
	if len(segs) > 0 && protectedFiles[segs[len(segs)-1]] {
		return segs[len(segs)-1]
	}
	if len(segs) > 0 && strings.HasPrefix(segs[len(segs)-1], ".yarnrc") {
		return segs[len(segs)-1]
	}
	return ""
}

// exemptWrite: writes that touch no file.
func exemptWrite(v string) bool {
	switch v {
	case "/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "-":
		return true
	}
	return strings.HasPrefix(v, "/dev/fd/")
}

// The regular expressions are compiled on first use, not at start-up: the
// hook is a process per tool call, and most calls need none of them.
var deviceRe = lazyRegexp(`^/dev/(sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|md\d|dm-\d|mapper/|loop\d|mem$|kmem$|port$)`)

// isDevice reports whether a path names a disk or memory device.
func isDevice(p string) bool { return strings.HasPrefix(p, "/dev/") && deviceRe().MatchString(p) }

func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// writeArgs returns the arguments a command writes to (besides its
// redirections): tee's files, cp's destination, sed -i's files …
func writeArgs(c *Command) []Word {
	if len(c.Args) == 0 || !c.Args[0].Known() {
		return nil
	}
	name := base(c.Args[0].Value)
	switch name {
	case "tee", "touch", "mkdir", "rmdir", "rm", "unlink", "shred", "truncate", "mkfifo", "mknod",
		"chmod", "chown", "chgrp", "chattr", "setfacl", "cp", "mv", "install", "ln", "rsync", "scp",
		"dd", "sed", "curl", "wget", "sort":
	default:
		return nil // writes nothing through its arguments
	}
	args := c.Args[1:]
	var pos []Word
	var afterDashDash bool
	for _, a := range args {
		if !afterDashDash && a.Value == "--" {
			afterDashDash = true
			continue
		}
		if !afterDashDash && strings.HasPrefix(a.Value, "-") && len(a.Value) > 1 {
			continue
		}
		pos = append(pos, a)
	}
	switch name {
	case "tee", "touch", "mkdir", "rmdir", "rm", "unlink", "shred", "truncate", "mkfifo", "mknod":
		return pos
	case "chmod", "chown", "chgrp", "chattr", "setfacl":
		if len(pos) > 1 {
			return pos[1:]
		}
	case "cp", "mv", "install", "ln", "rsync", "scp":
		for i, a := range args {
			if (a.Value == "-t" || a.Value == "--target-directory") && i+1 < len(args) {
				return []Word{args[i+1]}
			}
			if v, ok := strings.CutPrefix(a.Value, "--target-directory="); ok {
				w := a
				w.Value, w.Glob = v, escapeGlob(v)
				return []Word{w}
			}
		}
		if len(pos) > 1 {
			return pos[len(pos)-1:]
		}
	case "dd":
		for _, a := range args {
			if v, ok := strings.CutPrefix(a.Value, "of="); ok {
				w := a
				w.Value = v
				w.Glob = strings.TrimPrefix(a.Glob, "of=")
				return []Word{w}
			}
		}
	case "sed":
		inPlace := false
		for _, a := range args {
			if a.Value == "-i" || strings.HasPrefix(a.Value, "--in-place") || hasShortFlag(a.Value, 'i') && !strings.HasPrefix(a.Value, "--") {
				inPlace = true
			}
		}
		if inPlace && len(pos) > 1 {
			return pos[1:]
		}
	case "curl", "wget", "sort":
		for i, a := range args {
			v := a.Value
			if (v == "-o" || v == "--output" || v == "-O" && name == "wget" || v == "--output-document") && i+1 < len(args) {
				return []Word{args[i+1]}
			}
		}
	}
	return nil
}

// recursiveRead reports whether a command reads whole directory trees.
func recursiveRead(c *Command) bool {
	if len(c.Args) == 0 {
		return false
	}
	switch base(c.Args[0].Value) {
	case "tar", "zip", "7z", "rsync", "rg", "ag", "scp", "zstd", "gsutil", "rclone":
		return true
	case "find":
		for _, a := range c.Args[1:] {
			if strings.HasPrefix(a.Value, "-exec") || strings.HasPrefix(a.Value, "-ok") {
				return true
			}
		}
	case "cp", "grep", "egrep", "fgrep", "chmod", "chown", "ls", "diff", "aws":
		for _, a := range c.Args[1:] {
			if hasShortFlag(a.Value, 'r') || hasShortFlag(a.Value, 'R') || hasShortFlag(a.Value, 'a') && base(c.Args[0].Value) == "cp" || a.Value == "--recursive" {
				return true
			}
		}
	}
	return false
}

// finder collects findings for one command line.
type finder struct {
	out []Finding
	env pathEnv
	eg  func(host string, port uint16) (bool, string)
}

func (f *finder) add(w Word, cat string, sev Severity, format string, args ...any) {
	f.out = append(f.out, Finding{Category: cat, Severity: sev, Reason: fmt.Sprintf(format, args...), Pos: posString(w.Pos)})
}

var fetchRe = lazyRegexp(`(^|[\s;&|(` + "`" + `])(curl|wget|fetch|aria2c|nc|ncat|socat|http|https|xh|lwp-request|GET)(\s|$)`)

// commandFindings analyses one command.
func (f *finder) commandFindings(c *Command, reads, writes []target) {
	for _, l := range c.Layers {
		f.nameFindings(l.Args)
	}
	f.nameFindings(c.Args)
	for _, a := range c.Args {
		if a.IFS {
			f.add(a, CatObfuscation, High, "uses $IFS inside a word, a way to hide spaces")
			break
		}
		if strings.Contains(a.Value, "docker.sock") || strings.Contains(a.Value, "containerd.sock") || strings.Contains(a.Value, "podman.sock") || strings.Contains(a.Value, "crio.sock") {
			f.add(a, CatContainer, Critical, "reaches the container runtime's socket (%s), which controls the host", a.Value)
			break
		}
	}
	for _, r := range c.Redirs {
		v := r.Target.Value
		if strings.HasPrefix(v, "/dev/tcp/") || strings.HasPrefix(v, "/dev/udp/") {
			f.add(r.Target, CatExfiltration, High, "opens a network connection through %s", v)
		}
		if strings.Contains(v, "docker.sock") {
			f.add(r.Target, CatContainer, Critical, "reaches the container runtime's socket (%s)", v)
		}
	}
	for _, t := range reads {
		if t.word.Value == "" {
			continue
		}
		if t.abs == "" && len(t.segs) > 0 && strings.ContainsAny(t.segs[len(t.segs)-1], "*?[") {
			// "*.go" could name "id_rsa.go" in theory; the analyser
			// judges a glob by the directory it lists (deny rules still
			// see the whole glob).
			t.segs = t.segs[:len(t.segs)-1]
		}
		sens := f.sensitive()
		for i, s := range sensitivePaths {
			if sens[i].match(t) {
				f.add(t.word, CatSensitiveRead, High, "reads %s (%s)", shown(t.word), s.what)
				break
			}
		}
	}
	for _, t := range writes {
		f.writeFindings(t)
	}
	if len(c.Args) == 0 || !c.Args[0].Known() {
		return
	}
	name := base(c.Args[0].Value)
	args := c.Args[1:]
	vals := make([]string, len(args))
	for i, a := range args {
		vals[i] = a.Value
	}
	if strings.HasPrefix(name, "mkfs.") || strings.HasPrefix(name, "mkfs_") {
		f.add(c.Args[0], CatDestructive, Critical, "%s makes a new file system on %s", name, strings.Join(vals, " "))
	}
	switch name {
	case "rm", "shred":
		f.rm(c, name, args)
	case "mkfs", "mke2fs", "wipefs", "fdisk", "sfdisk", "parted", "gdisk", "sgdisk", "mkswap", "blkdiscard":
		f.add(c.Args[0], CatDestructive, Critical, "%s rewrites a disk or partition", name)
	case "dd":
		for _, a := range args {
			if v, ok := strings.CutPrefix(a.Value, "of="); ok && isDevice(v) {
				f.add(a, CatDestructive, Critical, "dd writes to the device %s", v)
			}
		}
	case "chmod":
		f.chmod(c, args)
	case "setcap", "visudo", "passwd", "chpasswd", "useradd", "usermod", "userdel", "groupadd", "groupmod", "adduser", "deluser":
		f.add(c.Args[0], CatPrivilege, High, "%s changes users, groups or privileges", name)
	case "systemctl", "service", "initctl", "rc-service":
		if len(vals) > 0 && !oneOf(firstPositional(vals), "status", "list-units", "list-unit-files", "is-active", "is-enabled", "is-failed", "cat", "show", "list-timers", "--version", "help") {
			f.add(c.Args[0], CatSystem, High, "%s %s changes system services", name, firstPositional(vals))
		}
	case "crontab":
		if !(len(vals) == 1 && vals[0] == "-l") {
			f.add(c.Args[0], CatPersistence, High, "crontab installs commands that run later")
		}
	case "at", "batch":
		f.add(c.Args[0], CatPersistence, High, "%s schedules commands to run later", name)
	case "sysctl":
		for _, v := range vals {
			if v == "-w" || strings.Contains(v, "=") || v == "-p" {
				f.add(c.Args[0], CatSystem, High, "sysctl changes kernel parameters")
				break
			}
		}
	case "modprobe", "insmod", "rmmod", "kexec":
		f.add(c.Args[0], CatSystem, High, "%s changes the running kernel", name)
	case "shutdown", "reboot", "poweroff", "halt", "init", "telinit":
		f.add(c.Args[0], CatSystem, High, "%s stops or restarts the machine", name)
	case "iptables", "ip6tables", "nft", "ufw", "firewall-cmd":
		f.add(c.Args[0], CatSystem, High, "%s changes the firewall", name)
	case "mount", "umount", "losetup":
		if len(vals) > 0 {
			f.add(c.Args[0], CatContainer, High, "%s changes mounts", name)
		}
	case "kill", "pkill", "killall":
		for _, v := range vals {
			if v == "-1" && name == "kill" {
				f.add(c.Args[0], CatDestructive, High, "kill -1 signals every process")
			}
		}
	case "git":
		f.git(c, vals)
	case "curl", "wget", "http", "https", "xh":
		f.upload(c, name, args)
	case "nc", "ncat", "netcat", "socat", "telnet", "openssl":
		if name != "openssl" || len(vals) > 0 && vals[0] == "s_client" {
			f.add(c.Args[0], CatExfiltration, High, "%s opens raw network connections", name)
		}
	case "scp", "rsync", "sftp", "rclone":
		for _, a := range args {
			if remoteSpec(a.Value) || name == "sftp" && !strings.HasPrefix(a.Value, "-") {
				f.add(a, CatExfiltration, High, "%s copies files to or from the remote %s", name, a.Value)
				break
			}
		}
	case "dig", "nslookup", "host", "drill", "resolvectl", "kdig":
		for _, a := range args {
			if a.Dynamic || longLabel(a.Value) {
				f.add(a, CatExfiltration, High, "%s lookup carries data in the name %s", name, a.Src)
				break
			}
		}
	case "docker", "podman", "nerdctl":
		f.docker(c, name, vals, args)
	case "pip", "pip3", "pipx", "uv", "npm", "pnpm", "yarn", "bun", "cargo", "gem":
		f.pkgURL(c, name, args)
	case "eval":
		f.add(c.Args[0], CatObfuscation, Medium, "eval runs a string as shell code")
	case "find":
		for i, v := range vals {
			if v == "-delete" {
				sev := Medium
				if len(args) > 0 && (args[0].Value == "/" || args[0].Tilde && strings.Trim(args[0].Value, "~/") == "") {
					sev = Critical
				}
				f.add(args[i], CatDestructive, sev, "find -delete removes every file it matches")
			}
		}
	}
	// Code run from a download or a decoder: bash <(curl …), sh -c "$(wget …)".
	if shells[name] || name == "eval" || name == "source" || name == "." || isInterpreter(name) {
		for _, a := range args {
			if (a.Dynamic || strings.Contains(a.Src, "<(")) && fetchRe().MatchString(a.Src) {
				f.add(a, CatRCE, Critical, "runs code downloaded by %s", strings.TrimSpace(a.Src))
				break
			}
		}
	}
}

func oneOf(s string, list ...string) bool {
	for _, l := range list {
		if s == l {
			return true
		}
	}
	return false
}

func firstPositional(vals []string) string {
	for _, v := range vals {
		if !strings.HasPrefix(v, "-") {
			return v
		}
	}
	return ""
}

// nameFindings flags command names spelled to hide what they are.
func (f *finder) nameFindings(args []Word) {
	if len(args) == 0 {
		return
	}
	n := args[0]
	switch {
	case n.ANSIC:
		f.add(n, CatObfuscation, High, "command name %s is spelled with $'…' escapes (it runs %q)", n.Src, n.Value)
	case !isASCII(n.Value):
		f.add(n, CatObfuscation, High, "command name %q has non-ASCII characters (look-alikes of %q?)", n.Value, asciiFold(n.Value))
	case n.Quoted && n.Known() && n.Src != n.Value && !strings.HasPrefix(n.Src, "\\") && !strings.HasPrefix(n.Src, "\"") && !strings.HasPrefix(n.Src, "'"):
		f.add(n, CatObfuscation, Medium, "command name %s is split by quotes or escapes (it runs %q)", n.Src, n.Value)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiFold replaces common Cyrillic and Greek look-alikes by the Latin
// letters they imitate, for the message.
func asciiFold(s string) string {
	r := strings.NewReplacer("а", "a", "е", "e", "о", "o", "р", "p", "с", "c", "у", "y", "х", "x", "і", "i", "ѕ", "s", "ј", "j", "һ", "h", "ԁ", "d", "ο", "o", "α", "a", "ν", "v", "ρ", "p", "τ", "t", "ɡ", "g", "ｒ", "r", "ｍ", "m")
	return r.Replace(s)
}

func (f *finder) writeFindings(t target) {
	v := shown(t.word)
	if isDevice(v) {
		f.add(t.word, CatDestructive, Critical, "writes to the device %s", v)
		return
	}
	pers := f.persistence()
	for i, p := range persistencePaths {
		if pers[i].match(t) {
			f.add(t.word, CatPersistence, High, "writes %s (%s), which run later", v, p.what)
			return
		}
	}
	sys := f.system()
	for i, d := range systemDirs {
		if sys[i].match(t) {
			f.add(t.word, CatSystem, High, "writes under %s", d)
			return
		}
	}
	if n := protectedWrite(t); n != "" {
		f.add(t.word, CatProtectedWrite, High, "writes %s, inside %s, which is never written without asking", v, n)
	}
}

// criticalPath names why removing w would be catastrophic, or "".
func criticalPath(w Word, env pathEnv) string {
	v := w.Value
	if w.Dynamic {
		return ""
	}
	if w.Tilde && (v == "~" || v == "~/" || strings.HasPrefix(v, "~/") && strings.Trim(v[2:], "/*\x00") == "") {
		return "the home directory"
	}
	raw := strings.TrimRight(v, "/")
	if w.Globbed {
		raw = strings.TrimRight(raw, "\x00/")
		if raw == "" || raw == "." || raw == ".." {
			return "everything the glob " + w.Src + " matches at the top"
		}
	}
	switch raw {
	case "", "/":
		return "the root directory"
	case ".", "..", "./", "../":
		return "the working directory or its parent"
	}
	if env.dir == unknownDir && !w.Tilde && !strings.HasPrefix(v, "/") {
		return ""
	}
	abs := path.Clean(cleanJoin(env.base(), expandTilde(w, env)))
	if abs == "/" {
		return "the root directory"
	}
	if abs == env.home {
		return "the home directory"
	}
	if strings.Count(abs, "/") == 1 {
		return "the top-level directory " + abs
	}
	if env.cwd != "" && (abs == env.cwd || strings.HasPrefix(env.cwd, abs+"/")) {
		return "the working directory or a parent of it"
	}
	return ""
}

func (f *finder) rm(c *Command, name string, args []Word) {
	recursive, noPreserve := name == "shred", false
	for _, a := range args {
		v := a.Value
		if v == "--recursive" || hasShortFlag(v, 'r') || hasShortFlag(v, 'R') {
			recursive = true
		}
		if v == "--no-preserve-root" {
			noPreserve = true
		}
	}
	if noPreserve {
		f.add(c.Args[0], CatDestructive, Critical, "rm --no-preserve-root removes the root directory")
		return
	}
	for _, a := range args {
		if strings.HasPrefix(a.Value, "-") && a.Known() {
			continue
		}
		if why := criticalPath(a, f.env); why != "" {
			f.add(a, CatDestructive, Critical, "%s %s removes %s", name, a.Src, why)
			return
		}
		if recursive && a.Dynamic {
			f.add(a, CatDestructive, High, "%s -r of %s, a path known only when it runs", name, a.Src)
			return
		}
		if name == "shred" && isDevice(a.Value) {
			f.add(a, CatDestructive, Critical, "shred overwrites the device %s", a.Value)
			return
		}
	}
}

func (f *finder) chmod(c *Command, args []Word) {
	var mode Word
	rec := false
	for _, a := range args {
		if a.Value == "-R" || a.Value == "--recursive" {
			rec = true
			continue
		}
		if strings.HasPrefix(a.Value, "-") && !strings.ContainsAny(a.Value[1:], "rwxst") {
			continue
		}
		if mode.Value == "" {
			mode = a
			continue
		}
		if rec && criticalPath(a, f.env) != "" {
			f.add(a, CatDestructive, Critical, "chmod -R of %s changes every file's permissions", a.Src)
		}
	}
	m := mode.Value
	if strings.ContainsAny(m, "s") && strings.ContainsAny(m, "+=") {
		f.add(mode, CatPrivilege, High, "chmod %s sets the setuid or setgid bit", m)
		return
	}
	if len(m) == 4 && isAllDigits(m) && (m[0] == '2' || m[0] == '4' || m[0] == '6' || m[0] == '7') {
		f.add(mode, CatPrivilege, High, "chmod %s sets the setuid or setgid bit", m)
	}
}

func (f *finder) git(c *Command, vals []string) {
	cv := canonicalArgs(append([]string{"git"}, vals...))
	if len(cv) < 2 {
		return
	}
	switch cv[1] {
	case "config":
		for _, v := range cv[2:] {
			k := strings.ToLower(v)
			if k == "core.hookspath" || strings.HasPrefix(k, "alias.") || k == "core.pager" || k == "core.sshcommand" || k == "core.fsmonitor" || strings.HasPrefix(k, "filter.") {
				f.add(c.Args[0], CatPersistence, High, "git config %s sets a command git will run later", v)
				return
			}
		}
	case "push":
		v := normArgv(cv)
		if v.flags["--force"] || v.flags["--mirror"] {
			f.add(c.Args[0], CatDestructive, Medium, "git push --force rewrites the remote's history")
		}
	}
}

// urlHost extracts host and port from a URL-ish argument.
func urlHost(s string) (string, uint16, bool) {
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(s, "-") || !strings.Contains(s, ".") || strings.ContainsAny(s, " \x00@=") {
			return "", 0, false
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return "", 0, false
	}
	var port uint16 = 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err == nil && n > 0 && n < 65536 {
			port = uint16(n)
		}
	}
	return strings.ToLower(u.Hostname()), port, true
}

// upload flags curl/wget sending data to a host outside network.allow.
func (f *finder) upload(c *Command, name string, args []Word) {
	var data []Word
	hosts := []string{}
	unknownHost := false
	var ports []uint16
	for i := 0; i < len(args); i++ {
		a := args[i]
		v := a.Value
		key, val, hasVal := strings.Cut(v, "=")
		isData := false
		switch key {
		case "-d", "--data", "--data-binary", "--data-raw", "--data-ascii", "--data-urlencode", "-F", "--form", "--form-string", "-T", "--upload-file", "--json", "--post-data", "--post-file", "--body-file", "--body-data":
			isData = true
		}
		if !hasVal && len(v) > 2 && (strings.HasPrefix(v, "-d") || strings.HasPrefix(v, "-F") || strings.HasPrefix(v, "-T")) && !strings.HasPrefix(v, "--") {
			isData, hasVal, val = true, true, v[2:]
		}
		if isData {
			if !hasVal && i+1 < len(args) {
				i++
				data = append(data, args[i])
			} else {
				w := a
				w.Value = val
				data = append(data, w)
			}
			continue
		}
		if strings.HasPrefix(v, "-") {
			continue
		}
		if h, p, ok := urlHost(v); ok {
			hosts = append(hosts, h)
			ports = append(ports, p)
		} else if a.Dynamic {
			unknownHost = true
		}
	}
	if len(data) == 0 {
		return
	}
	sensitive := ""
	for _, d := range data {
		v := d.Value
		file := ""
		switch {
		case strings.HasPrefix(v, "@"):
			file = v[1:]
		case strings.Contains(v, "=@"):
			file = v[strings.Index(v, "=@")+2:]
		case strings.Contains(v, "=<"):
			file = v[strings.Index(v, "=<")+2:]
		default:
			if d.Src != "" && (strings.HasPrefix(d.Src, "-T") || strings.Contains(d.Src, "/")) {
				file = v
			}
		}
		if file == "" || file == "-" {
			continue
		}
		w := d
		w.Value, w.Glob = file, escapeGlob(file)
		w.Tilde = strings.HasPrefix(file, "~/")
		if t, ok := resolveWord(w, f.env); ok {
			for _, s := range sensitivePaths {
				if matchTarget(globRuleSegs(s.glob, f.env), t) {
					sensitive = s.what
				}
			}
		}
	}
	for i, h := range hosts {
		allowed, _ := false, ""
		if f.eg != nil {
			allowed, _ = f.eg(h, ports[i])
		}
		if !allowed {
			if sensitive != "" {
				f.add(data[0], CatExfiltration, Critical, "%s sends %s to %s, which network.allow does not list", name, sensitive, h)
			} else {
				f.add(data[0], CatExfiltration, High, "%s sends data to %s, which network.allow does not list", name, h)
			}
			return
		}
	}
	if unknownHost || len(hosts) == 0 {
		f.add(data[0], CatExfiltration, High, "%s sends data to a host known only when it runs", name)
	}
}

func remoteSpec(s string) bool {
	if strings.HasPrefix(s, "rsync://") || strings.HasPrefix(s, "sftp://") || strings.HasPrefix(s, "scp://") {
		return true
	}
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return false
	}
	host := s[:i]
	return !strings.Contains(host, "/")
}

func longLabel(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if len(l) > 30 {
			return true
		}
	}
	return false
}

func (f *finder) docker(c *Command, name string, vals []string, args []Word) {
	cv := canonicalArgs(append([]string{name}, vals...))
	if len(cv) < 2 || cv[1] != "run" && cv[1] != "create" {
		return
	}
	for i, v := range cv[2:] {
		next := ""
		if i+3 < len(cv) {
			next = cv[i+3]
		}
		switch {
		case v == "--privileged":
			f.add(c.Args[0], CatContainer, Critical, "%s run --privileged gives the container the host's devices and capabilities", name)
			return
		case v == "--pid=host" || v == "--pid" && next == "host" || v == "--ipc=host" || v == "--userns=host":
			f.add(c.Args[0], CatContainer, Critical, "%s run %s shares the host's namespaces", name, v)
			return
		case strings.HasPrefix(v, "--cap-add") && (strings.Contains(strings.ToUpper(v+next), "SYS_ADMIN") || strings.Contains(strings.ToUpper(v+next), "ALL")):
			f.add(c.Args[0], CatContainer, Critical, "%s run adds capabilities that escape the container", name)
			return
		case strings.Contains(v, "seccomp=unconfined") || strings.Contains(v, "apparmor=unconfined") || strings.Contains(next, "unconfined") && v == "--security-opt":
			f.add(c.Args[0], CatContainer, Critical, "%s run turns off the container's confinement", name)
			return
		case v == "-v" || v == "--volume" || v == "--mount" || strings.HasPrefix(v, "--volume=") || strings.HasPrefix(v, "-v/") || strings.HasPrefix(v, "--mount="):
			spec := next
			if strings.Contains(v, "=") {
				spec = v[strings.IndexByte(v, '=')+1:]
			} else if strings.HasPrefix(v, "-v/") {
				spec = v[2:]
			}
			src := strings.SplitN(spec, ":", 2)[0]
			if strings.HasPrefix(spec, "type=") || strings.Contains(spec, "source=") || strings.Contains(spec, "src=") {
				for _, kv := range strings.Split(spec, ",") {
					if k, val, _ := strings.Cut(kv, "="); k == "source" || k == "src" {
						src = val
					}
				}
			}
			if src == "/" || src == "/etc" || src == "/root" || src == "/proc" || src == "/sys" || src == "/dev" || src == "/var/run" || src == "/run" {
				f.add(c.Args[0], CatContainer, Critical, "%s run mounts the host's %s into the container", name, src)
				return
			}
		}
	}
}

var urlPkgRe = lazyRegexp(`^(https?://|git\+|git://|ssh://|github:|gitlab:|bitbucket:|file:)`)

func (f *finder) pkgURL(c *Command, name string, args []Word) {
	vals := make([]string, 0, len(args)+1)
	vals = append(vals, name)
	for _, a := range args {
		vals = append(vals, a.Value)
	}
	cv := canonicalArgs(vals)
	sub := ""
	rest := cv[1:]
	if name == "uv" && len(rest) > 1 && rest[0] == "pip" {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		sub = rest[0]
	}
	if !oneOf(sub, "install", "add") {
		return
	}
	for i, v := range rest[1:] {
		if v == "--git" && name == "cargo" && i+2 < len(rest) {
			f.add(c.Args[0], CatPackageURL, High, "cargo install --git installs code from %s", rest[i+2])
			return
		}
		if urlPkgRe().MatchString(v) || strings.Contains(v, "://") {
			f.add(c.Args[0], CatPackageURL, High, "%s %s installs a package from %s, outside the registry", name, sub, v)
			return
		}
	}
}

// pipelineFindings flags code piped into a shell: curl … | sh.
func (f *finder) pipelineFindings(cmds []*Command) {
	for _, c := range cmds {
		if !c.stdinCode || c.pipe == 0 || c.stage < 2 {
			continue
		}
		name := base(c.Args[0].Value)
		src := ""
		for _, p := range cmds {
			if p.pipe != c.pipe || p.stage >= c.stage || len(p.Args) == 0 {
				continue
			}
			pn := base(p.Args[0].Value)
			switch {
			case oneOf(pn, "curl", "wget", "fetch", "aria2c", "nc", "ncat", "socat", "http", "https", "xh", "lwp-request"):
				src = "downloaded by " + pn
			case pn == "base64" || pn == "xxd" || pn == "uudecode" || pn == "openssl" || pn == "gpg" || pn == "gunzip" || pn == "zcat" || pn == "rev":
				if src == "" {
					src = "decoded by " + pn
				}
			}
		}
		if src != "" {
			f.add(c.Args[0], CatRCE, Critical, "pipes code %s into %s", src, name)
		} else {
			f.add(c.Args[0], CatRCE, High, "pipes data into %s, which runs it as code", name)
		}
	}
}

// shown is a word as a message shows it: as written.
func shown(w Word) string {
	if w.Src != "" {
		return w.Src
	}
	return strings.ReplaceAll(w.Value, string(wild), "…")
}

// sensitive, persistence and system return the built-in globs placed in
// the finder's directories: from the engine's cache when there is one.
func (f *finder) sensitive() []placedGlob {
	if f.env.segs != nil {
		return f.env.segs.sensitive
	}
	return placeGlobs(sensitivePaths, f.env)
}

func (f *finder) persistence() []placedGlob {
	if f.env.segs != nil {
		return f.env.segs.persist
	}
	return placeGlobs(persistencePaths, f.env)
}

func (f *finder) system() []placedGlob {
	if f.env.segs != nil {
		return f.env.segs.system
	}
	return placeSystemDirs()
}

func placeGlobs(list []struct{ glob, what string }, env pathEnv) []placedGlob {
	out := make([]placedGlob, len(list))
	for i, g := range list {
		out[i] = placeGlob(computeGlobSegs(g.glob, env))
	}
	return out
}

func placeSystemDirs() []placedGlob {
	out := make([]placedGlob, len(systemDirs))
	for i, d := range systemDirs {
		out[i] = placeGlob(splitPath(d))
	}
	return out
}
