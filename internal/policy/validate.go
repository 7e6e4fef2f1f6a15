package policy

import (
	"errors"
	"path"
	"strconv"
	"strings"
)

// The checks below return "" for a good value, else what is wrong with it
// (and, when they can, what to write); the parser quotes the value.

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7F {
			return true
		}
	}
	return false
}

// checkPath accepts an absolute path, a path relative to the workspace,
// "~" or "~/...", and (if glob) a pattern in path.Match syntax.
func checkPath(s string, glob bool) string {
	switch {
	case s == "":
		return "empty path"
	case hasControl(s):
		return "contains a control character"
	case strings.HasPrefix(s, "~") && s != "~" && !strings.HasPrefix(s, "~/"):
		return `only "~/" (your home directory) is understood; write an absolute path`
	}
	if glob {
		if _, err := path.Match(s, ""); err != nil {
			return "malformed pattern"
		}
	}
	return ""
}

// checkWorkspace accepts a workspace mode; tmpfs may carry a size.
func checkWorkspace(s string) string {
	mode, size, hasSize := strings.Cut(s, ":")
	if hasSize && mode == "tmpfs" {
		if _, err := ParseSize(size); err != nil {
			return err.Error()
		}
		return ""
	}
	for _, c := range workspaceChoices {
		if s == c {
			return ""
		}
	}
	return unknownChoice("workspace mode", s, workspaceChoices) + ` (tmpfs may take a size: "tmpfs:256m")`
}

// checkVolume accepts "HOST:INSIDE" or "HOST" (the same path inside),
// with an absolute INSIDE.
func checkVolume(s string) string {
	host, inside, two := strings.Cut(s, ":")
	if msg := checkPath(host, false); msg != "" {
		return msg
	}
	if !two {
		inside = host
	}
	if msg := checkPath(inside, false); msg != "" {
		return msg
	}
	if !strings.HasPrefix(inside, "/") && !strings.HasPrefix(inside, "~") {
		return `the path inside must be absolute, like "~/out:/var/tmp/out"`
	}
	if strings.ContainsAny(s, "*?[") {
		return "a volume is a directory, not a pattern"
	}
	return ""
}

// checkTmpfs accepts "PATH" or "PATH:SIZE" with an absolute PATH.
func checkTmpfs(s string) string {
	p, size, hasSize := strings.Cut(s, ":")
	if msg := checkPath(p, false); msg != "" {
		return msg
	}
	if !strings.HasPrefix(p, "/") {
		return `a tmpfs must be an absolute path, like "/tmp:512m"`
	}
	if hasSize {
		if _, err := ParseSize(size); err != nil {
			return err.Error()
		}
	}
	return ""
}

// ParseSize parses a size in bytes: a whole number with an optional unit,
// k, m, g or t (powers of 1024, either case, optionally followed by "b" or
// "ib"): "512m", "2g", "1048576". Sizes are at least 1 byte.
func ParseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	shift := -1
	switch unit {
	case "", "b":
		shift = 0
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	case "t", "tb", "tib":
		shift = 40
	}
	if num == "" || shift < 0 {
		return 0, errBadSize
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<62)>>shift {
		return 0, errors.New("too large")
	}
	if n == 0 {
		return 0, errors.New("must be more than 0")
	}
	return n << shift, nil
}

var errBadSize = errors.New(`not a size; write a whole number with an optional k, m, g or t, like "512m" or "2g"`)

func isEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func checkEnvName(s string) string {
	if !isEnvName(s) {
		return "not an environment variable name (letters, digits and '_', not starting with a digit)"
	}
	return ""
}

func checkCredentialName(s string) string {
	if s == "" {
		return "empty name"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') || i == 0 && (c == '-' || c == '.') {
			return "a credential name has letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}

const secretVar = "{secret}"

// isToken reports whether s is an HTTP token (RFC 9110), as header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func checkHeader(s string) string {
	name, value, ok := strings.Cut(s, ":")
	switch {
	case hasControl(s):
		return "contains a control character"
	case !ok || !isToken(name):
		return `not a header template; write "NAME: VALUE" with {secret} in the value, like "x-api-key: {secret}"`
	case !strings.Contains(value, secretVar):
		return "the value must contain {secret}; write " + quote(name+": "+secretVar)
	}
	return ""
}

func checkBasic(s string) string {
	user, pass, ok := strings.Cut(s, ":")
	switch {
	case hasControl(s):
		return "contains a control character"
	case !ok || user == "" || !strings.Contains(pass, secretVar):
		return `write "USER:{secret}"`
	}
	return ""
}

func checkQuery(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return "not a query parameter name (letters, digits, '-', '_', '.' and '~')"
		}
	}
	if s == "" {
		return "empty query parameter name"
	}
	return ""
}

// checkUser accepts a user name, "UID" or "UID:GID".
func checkUser(s string) string {
	const msg = `write a user name, "UID" or "UID:GID"`
	isID := func(n string) bool {
		v, err := strconv.ParseUint(n, 10, 32)
		return err == nil && n[0] != '+' && v != 1<<32-1
	}
	switch {
	case s == "" || len(s) > 32:
		return msg
	case s[0] >= '0' && s[0] <= '9':
		uid, gid, hasGID := strings.Cut(s, ":")
		if !isID(uid) || hasGID && !isID(gid) {
			return msg
		}
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || c == '_' || i > 0 && ('0' <= c && c <= '9' || c == '-')) {
			return msg
		}
	}
	return ""
}

// checkPermissionRule accepts "Tool" or "Tool(specifier)"; the permission
// engine checks the specifier.
func checkPermissionRule(s string) string {
	const msg = `write Tool or Tool(specifier), like "Bash(npm run test:*)"`
	if hasControl(s) {
		return "contains a control character"
	}
	tool := s
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return msg
		}
		tool = s[:i]
	}
	if tool == "" || !(tool[0] >= 'A' && tool[0] <= 'Z' || tool[0] >= 'a' && tool[0] <= 'z') {
		return msg
	}
	for i := 0; i < len(tool); i++ {
		c := tool[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '*') {
			return msg
		}
	}
	return ""
}

// checkWord accepts a non-empty value without spaces or control characters
// (a runtime binary, an image reference).
func checkWord(s string) string {
	switch {
	case s == "":
		return "empty"
	case hasControl(s) || strings.ContainsAny(s, " \u00a0"):
		return "contains a space or control character"
	}
	return ""
}

func checkHostname(s string) string {
	if s == "" {
		return "empty"
	}
	h, a, err := normalizeHost(s)
	if err != nil {
		return trimGiven(err, s)
	}
	if a.IsValid() || h != strings.ToLower(s) {
		return "not a host name; write letters, digits, '-' and '.'"
	}
	return ""
}

// Lockable key paths. Sections lock every key in them. Lists that only
// tighten the policy cannot be locked: any layer may add to them.
var (
	lockPaths = []string{
		"profile",
		"network", "network.mode", "network.allow", "network.allow_private", "network.request_allow", "network.endpoints",
		"filesystem", "filesystem.read", "filesystem.write", "filesystem.tmpfs", "filesystem.scan",
		"filesystem.workspace", "filesystem.volumes",
		"credentials",
		"tls", "tls.intercept", "tls.ca", "tls.exclude",
		"process", "process.user", "process.env",
		"resources", "resources.memory", "resources.cpus", "resources.pids",
		"permissions", "permissions.allow", "permissions.default_mode", "permissions.severity",
		"audit", "audit.file", "audit.max_size", "audit.max_files",
		"isolation", "isolation.tier", "isolation.runtime", "isolation.image", "isolation.hostname",
	}
	tighteningPaths = []string{
		"network.deny", "network.request_deny", "network.limits", "filesystem.deny_read", "filesystem.deny_write",
		"permissions.ask", "permissions.deny", "isolation.require",
	}
)

func checkLockPath(s string) string {
	for _, p := range lockPaths {
		if s == p {
			return ""
		}
	}
	for _, p := range tighteningPaths {
		if s == p {
			return "any layer may add to " + s + ", which only tightens the policy, so it cannot be locked"
		}
	}
	if s == "version" || s == "lock" {
		return "cannot be locked"
	}
	if c := suggest(s, lockPaths); c != "" {
		return "unknown key path; did you mean " + quote(c) + "?"
	}
	return `unknown key path; write a section ("network") or a key in it ("network.allow")`
}
