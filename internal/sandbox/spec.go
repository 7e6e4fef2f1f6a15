package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// Ports the forwarder listens on inside the sandbox, on 127.0.0.1.
const (
	HTTPProxyPort  = 3128
	SOCKSProxyPort = 1080
)

// Spec is everything the sandbox's PID 1 and last stage need, in absolute
// host paths. Compile builds it from a policy; Start sends it to the child.
// It may hold the proxy session token (in Env), so it is never logged.
type Spec struct {
	Argv     []string
	Dir      string   // working directory (absolute)
	Env      []string // the command's whole environment
	Hostname string

	Write     []string // writable paths (existing), bound read-write
	Protect   []string // paths inside Write bound read-only (mandatory protections, deny_write)
	Pin       []string // directories inside Write bound to themselves, so they cannot be renamed away
	MaskDirs  []string // deny_read directories: an empty read-only tmpfs over each
	MaskFiles []string // deny_read files: /dev/null over each
	Tmpfs     []Tmpfs
	// Workspace, when set, mounts the working directory another way than
	// as a writable path (SetWorkspace); Binds are filesystem.volumes.
	Workspace *WorkspaceMount `json:",omitempty"`
	Binds     []Bind          `json:",omitempty"`
	srcFDs    []int           // PID 1: the detached copies of sources(), as root
	// Read, when non-empty, narrows reads (through Landlock) to these paths,
	// the writable ones and the system directories.
	Read []string

	Egress bool // run the forwarder: the caller serves Start's Egress listener
	// Endpoints are the reverse endpoints the forwarder also serves on
	// 127.0.0.1 (with Egress): each one's connections reach the listener
	// Egress.Endpoint(Name) returns.
	Endpoints []EndpointPort

	Resources Resources
	Require   []string // layers that must be present: "landlock", "seccomp", "cgroups", …

	AllowUnixSockets bool // leave socket(AF_UNIX) to the agent (policy.process... or srt's allowAllUnixSockets)
	TTY              bool // set by Start: the command's stdio is a new pseudo-terminal
}

// EndpointPort is a reverse endpoint inside the sandbox: its name and its
// port on 127.0.0.1.
type EndpointPort struct {
	Name string
	Port int
}

// Tmpfs is one private tmpfs: Size bytes at Path.
type Tmpfs struct {
	Path string
	Size int64
}

// Resources are the limits the policy sets; zero means none.
type Resources struct {
	Memory int64   // bytes
	CPUs   float64 // CPUs' worth of time
	Pids   int64
}

// CompileOptions is the part of the environment Compile reads; cmd/moat
// fills it from the process, tests from their fixtures.
type CompileOptions struct {
	Argv    []string
	Dir     string   // the working directory (absolute); default os.Getwd
	Home    string   // for "~"
	Environ []string // moat's own environment, as os.Environ
	// ProxyUser and ProxyToken name the run's proxy session; the proxy
	// variables are set only when Egress is true.
	Egress                bool
	ProxyUser, ProxyToken string
	// Protect lists more paths to keep read-only if they lie in a
	// writable path (the policy files, the audit log).
	Protect []string
	// Mask lists more paths to mask, as filesystem.deny_read does (the
	// files credentials are read from).
	Mask []string
	// Endpoints are the reverse endpoints the forwarder serves (only with
	// Egress); their ports may not be the proxy's.
	Endpoints []EndpointPort
	// Placeholders are NAME=VALUE variables set last, over process.env:
	// the credentials' placeholders, so that no policy can pass the real
	// secret in their place.
	Placeholders []string
}

// MandatoryProtect lists the names protected from writes in every writable
// path, whatever the policy says: shell start-up files, git and editor
// configuration that runs code, agent configuration, and moat's own files.
var MandatoryProtect = []string{
	".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
	".zshrc", ".zprofile", ".zshenv", ".zlogin",
	".gitconfig", ".gitmodules", ".git/hooks", ".git/config",
	".ripgreprc", ".mcp.json",
	".claude/commands", ".claude/agents", ".claude/settings.json", ".claude/settings.local.json",
	".vscode", ".idea",
	"moat.yaml", "moat.json", ".moat",
}

// protectDepth is how deep below a writable path the mandatory names are
// looked for (as sandbox-runtime does); scanLimit bounds the directories
// read doing it.
const (
	protectDepth = 3
	scanLimit    = 20000
)

// DefaultEnv names the variables passed from moat's environment when the
// policy says nothing; LC_* are passed too.
var DefaultEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "COLORTERM",
	"SHELL", "TZ", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "EDITOR", "VISUAL", "PAGER",
}

// Compile turns a policy into a Spec. It resolves "~" and relative paths,
// expands deny_read and deny_write globs (as they exist now), and returns
// notes for what it skipped (a write path that does not exist, say). It
// refuses what it cannot enforce.
func Compile(pol *policy.Policy, o CompileOptions) (*Spec, []string, error) {
	if len(o.Argv) == 0 {
		return nil, nil, errors.New("no command to run")
	}
	if o.Dir == "" {
		d, err := os.Getwd()
		if err != nil {
			return nil, nil, fmt.Errorf("working directory: %w", err)
		}
		o.Dir = d
	}
	dir, err := filepath.EvalSymlinks(o.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("working directory: %w", err)
	}
	s := &Spec{Argv: o.Argv, Dir: dir, Hostname: "moat", Egress: o.Egress}
	var notes []string
	c := &compiler{dir: dir, home: o.Home}

	if h := pol.Isolation.Hostname.Value; h != "" {
		s.Hostname = h
	}
	for _, e := range pol.Isolation.Require {
		s.Require = append(s.Require, e.Value)
	}
	if t := pol.Isolation.Tier.Value; t != "" && t != "native" {
		return nil, nil, fmt.Errorf("isolation.tier is %q (%s); moat run is the native tier: set tier to native or use the %s tier's command", t, pol.Isolation.Tier.Origin, t)
	}

	for _, e := range pol.Filesystem.Write {
		c.makeState(e.Value)
		p, ok := c.existing(e.Value)
		if !ok {
			notes = append(notes, fmt.Sprintf("filesystem.write %q (%s): no such path; skipped", e.Value, e.Origin))
			continue
		}
		s.Write = appendUnique(s.Write, p)
	}
	for _, e := range pol.Filesystem.Read {
		if p, ok := c.existing(e.Value); ok {
			s.Read = appendUnique(s.Read, p)
		}
	}
	if len(pol.Filesystem.Read) > 0 && len(s.Read) == 0 {
		return nil, nil, errors.New("filesystem.read lists no existing path; list what the command may read, or remove the key")
	}
	for _, e := range pol.Filesystem.Tmpfs {
		p, size, hasSize := strings.Cut(e.Value, ":")
		t := Tmpfs{Path: filepath.Clean(p), Size: 1 << 30}
		if hasSize {
			n, err := policy.ParseSize(size)
			if err != nil {
				return nil, nil, fmt.Errorf("filesystem.tmpfs %q (%s): %w", e.Value, e.Origin, err)
			}
			t.Size = n
		}
		s.Tmpfs = append(s.Tmpfs, t)
	}

	// deny_read: masks, globs expanded now.
	masks := make([]string, 0, len(pol.Filesystem.DenyRead)+len(o.Mask))
	for _, e := range pol.Filesystem.DenyRead {
		masks = append(masks, e.Value)
	}
	for _, m := range append(masks, o.Mask...) {
		for _, p := range c.expand(m, s.Write) {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if fi.IsDir() {
				s.MaskDirs = appendUnique(s.MaskDirs, p)
			} else {
				s.MaskFiles = appendUnique(s.MaskFiles, p)
			}
		}
	}
	// Write protections: the mandatory names, deny_write, moat's files.
	var protect []string
	for _, e := range pol.Filesystem.DenyWrite {
		protect = append(protect, c.expand(e.Value, s.Write)...)
	}
	for _, p := range o.Protect {
		if q, ok := c.existing(p); ok {
			protect = append(protect, q)
		}
	}
	for _, l := range pol.Layers {
		if strings.HasPrefix(l.File, "profile:") {
			continue
		}
		if q, ok := c.existing(l.File); ok {
			protect = append(protect, q)
		}
	}
	// A repository without .git/hooks would let the agent create hooks
	// that git runs later, outside: make the directory, so it is protected.
	for _, w := range s.Write {
		if fi, err := os.Stat(filepath.Join(w, ".git")); err == nil && fi.IsDir() {
			if err := os.Mkdir(filepath.Join(w, ".git", "hooks"), 0o755); err == nil {
				notes = append(notes, "created "+filepath.Join(w, ".git", "hooks")+" so that it can be kept read-only")
			}
		}
	}
	found, truncated := findProtected(s.Write)
	protect = append(protect, found...)
	if truncated {
		notes = append(notes, fmt.Sprintf("the scan for protected files stopped after %d directories; deeper ones are not protected", scanLimit))
	}
	for _, p := range protect {
		if under(p, s.Write) != "" && !masked(p, s) {
			s.Protect = appendUnique(s.Protect, p)
		}
	}
	sort.Strings(s.Protect)
	s.Pin = pins(s.Protect, s.Write)

	// Resources.
	if v := pol.Resources.Memory.Value; v != "" {
		n, err := policy.ParseSize(v)
		if err != nil {
			return nil, nil, fmt.Errorf("resources.memory (%s): %w", pol.Resources.Memory.Origin, err)
		}
		s.Resources.Memory = n
	}
	if v := pol.Resources.CPUs.Value; v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return nil, nil, fmt.Errorf("resources.cpus (%s): %q is not a positive number", pol.Resources.CPUs.Origin, v)
		}
		s.Resources.CPUs = f
	}
	if pol.Resources.Pids.Set {
		s.Resources.Pids = pol.Resources.Pids.Value
	}

	if o.Egress {
		ports := map[int]string{HTTPProxyPort: "the HTTP proxy's", SOCKSProxyPort: "the SOCKS proxy's"}
		for _, ep := range o.Endpoints {
			if ep.Port < 1 || ep.Port > 65535 {
				return nil, nil, fmt.Errorf("endpoint %s: port %d: want 1 to 65535", ep.Name, ep.Port)
			}
			if other, dup := ports[ep.Port]; dup {
				return nil, nil, fmt.Errorf("endpoint %s: port %d is already %s; pick another port", ep.Name, ep.Port, other)
			}
			ports[ep.Port] = "endpoint " + ep.Name + "'s"
			s.Endpoints = append(s.Endpoints, ep)
		}
	}

	s.Env = buildEnv(pol, o)
	return s, notes, nil
}

// StateDir is where moat keeps state it gives agents (such as Claude
// Code's private configuration), below the home directory. A
// filesystem.write path inside it that does not exist yet is created
// (mode 0700) rather than skipped: it is moat's own, so making it touches
// nothing of the user's.
const StateDir = "~/.local/state/moat"

// makeState creates p if it is a path inside StateDir that is missing.
func (c *compiler) makeState(p string) {
	if c.home == "" || !strings.HasPrefix(p, StateDir+"/") || strings.ContainsAny(p, "*?[") {
		return
	}
	abs := c.abs(p)
	root := c.abs(StateDir)
	if !strings.HasPrefix(abs, root+"/") {
		return // "~/.local/state/moat/../x"
	}
	if _, err := os.Lstat(abs); err == nil {
		return
	}
	// Parents as XDG makes them, searchable; the directory itself private.
	if os.MkdirAll(filepath.Dir(abs), 0o755) == nil {
		os.Mkdir(abs, 0o700)
	}
}

type compiler struct{ dir, home string }

// abs resolves "~", "~/x" and relative paths.
func (c *compiler) abs(p string) string {
	switch {
	case p == "~":
		p = c.home
	case strings.HasPrefix(p, "~/"):
		p = filepath.Join(c.home, p[2:])
	case !filepath.IsAbs(p):
		p = filepath.Join(c.dir, p)
	}
	return filepath.Clean(p)
}

// existing resolves p and its symlinks; ok is false if it does not exist
// (or "~" is used without a home directory).
func (c *compiler) existing(p string) (string, bool) {
	if strings.HasPrefix(p, "~") && c.home == "" {
		return "", false
	}
	r, err := filepath.EvalSymlinks(c.abs(p))
	if err != nil {
		return "", false
	}
	return r, true
}

// expand resolves a deny_read or deny_write entry to existing paths. A
// pattern with no slash ("*.pem", ".env") also matches at any depth up to
// protectDepth below the working directory and the writable paths.
func (c *compiler) expand(pat string, roots []string) []string {
	var out []string
	if !strings.ContainsAny(pat, "*?[") {
		if p, ok := c.existing(pat); ok {
			out = append(out, p)
		}
		if strings.Contains(pat, "/") {
			return out
		}
	} else if strings.Contains(pat, "/") || strings.HasPrefix(pat, "~") {
		ms, _ := filepath.Glob(c.abs(pat))
		for _, m := range ms {
			if r, err := filepath.EvalSymlinks(m); err == nil {
				out = append(out, r)
			}
		}
		return out
	}
	budget := scanLimit
	for _, root := range appendUnique(append([]string(nil), roots...), c.dir) {
		walk(root, protectDepth, &budget, func(path string, d fs.DirEntry) {
			if ok, _ := filepath.Match(pat, d.Name()); ok {
				if r, err := filepath.EvalSymlinks(path); err == nil {
					out = appendUnique(out, r)
				}
			}
		})
	}
	return out
}

// walk calls fn for every entry up to depth levels below root, reading at
// most *budget directories; it does not descend into dependency trees.
func walk(root string, depth int, budget *int, fn func(string, fs.DirEntry)) bool {
	if depth == 0 || *budget <= 0 {
		return *budget > 0
	}
	*budget--
	es, err := os.ReadDir(root)
	if err != nil {
		return true
	}
	for _, e := range es {
		p := filepath.Join(root, e.Name())
		fn(p, e)
		if e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			switch e.Name() {
			case "node_modules", ".git", "vendor", "target", ".venv", "__pycache__":
				continue
			}
			if !walk(p, depth-1, budget, fn) {
				return false
			}
		}
	}
	return true
}

// findProtected finds the mandatory names in the writable paths.
func findProtected(roots []string) (found []string, truncated bool) {
	budget := scanLimit
	check := func(dir string) {
		for _, n := range MandatoryProtect {
			p := filepath.Join(dir, n)
			if _, err := os.Lstat(p); err == nil {
				if r, err := filepath.EvalSymlinks(p); err == nil {
					found = appendUnique(found, r)
				} else {
					found = appendUnique(found, p)
				}
			}
		}
	}
	for _, root := range roots {
		fi, err := os.Stat(root)
		if err != nil || !fi.IsDir() {
			continue
		}
		check(root)
		if !walk(root, protectDepth-1, &budget, func(p string, d fs.DirEntry) {
			if d.IsDir() {
				check(p)
			}
		}) {
			truncated = true
		}
	}
	return found, truncated
}

// pins lists the directories between a writable root and each protected
// path: each is bound onto itself, so renaming it away (and recreating
// the protected path unprotected) fails with EBUSY.
func pins(protect, roots []string) []string {
	var out []string
	for _, p := range protect {
		root := under(p, roots)
		for d := filepath.Dir(p); len(d) > len(root) && strings.HasPrefix(d, root+"/"); d = filepath.Dir(d) {
			out = appendUnique(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// under returns the writable root that contains p (the longest), or "".
func under(p string, roots []string) string {
	best := ""
	for _, r := range roots {
		if (p == r || strings.HasPrefix(p, r+"/") || r == "/") && len(r) > len(best) {
			best = r
		}
	}
	return best
}

func masked(p string, s *Spec) bool {
	for _, m := range s.MaskDirs {
		if p == m || strings.HasPrefix(p, m+"/") {
			return true
		}
	}
	for _, m := range s.MaskFiles {
		if p == m {
			return true
		}
	}
	return false
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
