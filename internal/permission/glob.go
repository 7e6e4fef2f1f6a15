package permission

import (
	"path"
	"strings"
)

// wild is the byte that stands, in a command's matching text, for a part
// whose value is not known before the command runs ($VAR, $(…), a glob).
// Check refuses control characters in commands before parsing, so the byte
// cannot come from the command itself.
const wild = '\x00'

// star is how a compiled command pattern marks a wildcard; a literal star
// in a rule ("\*") is kept as '*'.
const star = -1

// cmdPattern is a compiled Bash rule specifier. Claude Code's semantics:
// '*' matches any run of characters, spaces included; a trailing " *" also
// matches the bare prefix ("ls *" matches "ls" and "ls -la", not "lsof");
// anything else is exact.
type cmdPattern struct {
	toks     []int16 // bytes, or star
	boundary bool    // trailing " *": the prefix alone matches too
	prefix   []int16 // toks without the trailing " *", when boundary
	// lit is the literal text every match of the pattern starts with
	// (before its first star): a cheap test before the match.
	lit string
}

// compileCmdPattern compiles a specifier already normalised by
// normalizeCmdSpec.
func compileCmdPattern(spec string) cmdPattern {
	var p cmdPattern
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case c == '\\' && i+1 < len(spec) && spec[i+1] == '*':
			p.toks = append(p.toks, '*')
			i++
		case c == '*':
			p.toks = append(p.toks, star)
		default:
			p.toks = append(p.toks, int16(c))
		}
	}
	if n := len(p.toks); n >= 2 && p.toks[n-1] == star && p.toks[n-2] == ' ' {
		p.boundary = true
		p.prefix = p.toks[:n-2]
	}
	first := p.toks
	if p.boundary {
		first = p.prefix
	}
	var lit []byte
	for _, t := range first {
		if t == star {
			break
		}
		lit = append(lit, byte(t))
	}
	p.lit = string(lit)
	return p
}

// matchAll reports whether every command the text can stand for matches:
// a wild part of the text can only be covered by a star of the pattern.
func (p *cmdPattern) matchAll(text string) bool {
	if !strings.HasPrefix(text, p.lit) {
		return false
	}
	if p.boundary && globMatch(p.prefix, text, false) {
		return true
	}
	return globMatch(p.toks, text, false)
}

// matchAny reports whether some command the text can stand for matches: a
// wild part may take any value, so it may cover pattern text too.
func (p *cmdPattern) matchAny(text string) bool {
	k := strings.IndexByte(text, wild)
	if k < 0 {
		return p.matchAll(text)
	}
	// Up to the text's first wild part and the pattern's first star,
	// bytes must be equal.
	if m := min(k, len(p.lit)); text[:m] != p.lit[:m] {
		return false
	}
	if p.boundary && globMatch(p.prefix, text, true) {
		return true
	}
	return globMatch(p.toks, text, true)
}

// maxIntersect bounds the work of one intersection; past it the answer is
// "yes", which is the safe answer for the deny and ask rules that ask.
const maxIntersect = 1 << 20

// globMatch matches a star pattern against text. With anyWild, a wild byte
// in text matches any run of pattern tokens (the languages intersect);
// without, a wild byte only matches inside a star.
func globMatch(pat []int16, text string, anyWild bool) bool {
	if !anyWild || strings.IndexByte(text, wild) < 0 {
		return starMatch(pat, text)
	}
	if (len(pat)+1)*(len(text)+1) > maxIntersect {
		return true
	}
	// Dynamic programming over (pattern position, text position), from the
	// ends: ok[i][j] says whether pat[i:] and text[j:] can match.
	w := len(text) + 1
	var buf [512]bool
	ok := buf[:0]
	if n := (len(pat) + 1) * w; n <= len(buf) {
		ok = buf[:n]
	} else {
		ok = make([]bool, n)
	}
	for i := len(pat); i >= 0; i-- {
		for j := len(text); j >= 0; j-- {
			var m bool
			switch {
			case i == len(pat) && j == len(text):
				m = true
			case i < len(pat) && pat[i] == star:
				m = ok[(i+1)*w+j] || j < len(text) && ok[i*w+j+1]
			case j < len(text) && text[j] == wild:
				m = ok[i*w+j+1] || i < len(pat) && ok[(i+1)*w+j]
			case i < len(pat) && j < len(text):
				m = int16(text[j]) == pat[i] && ok[(i+1)*w+j+1]
			}
			ok[i*w+j] = m
		}
	}
	return ok[0]
}

// starMatch is the classic linear-backtracking wildcard match; a wild byte
// in text is an ordinary byte that no literal token equals.
func starMatch(pat []int16, text string) bool {
	i, j := 0, 0
	starI, starJ := -1, 0
	for j < len(text) {
		switch {
		case i < len(pat) && pat[i] == star:
			starI, starJ = i, j
			i++
		case i < len(pat) && pat[i] == int16(text[j]):
			i++
			j++
		case starI >= 0:
			i = starI + 1
			starJ++
			j = starJ
		default:
			return false
		}
	}
	for i < len(pat) && pat[i] == star {
		i++
	}
	return i == len(pat)
}

// Path globs: gitignore-style, on absolute, cleaned, slash-separated paths.
// '*' and '?' stay within a segment, "**" spans any number of segments,
// '[…]' is a class, '\' escapes.

// splitPath splits a clean absolute path into segments ("/" has none).
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// validSegment reports whether a glob segment is well formed.
func validSegment(seg string) bool {
	if seg == "**" {
		return true
	}
	_, err := path.Match(seg, "")
	return err == nil
}

// pathMatch reports whether the glob segments match the literal path
// segments exactly, or match one of its ancestors (a rule naming a
// directory covers everything beneath it).
func pathMatch(pat, p []string) bool {
	return segMatch(pat, p, false, true)
}

// segMatch matches glob segments against path segments. Each path segment
// is literal unless globPath, when it is a glob too and the question is
// whether the two languages share a path. With ancestors, the pattern may
// end early (it names an ancestor of the path).
func segMatch(pat, p []string, globPath, ancestors bool) bool {
	if len(pat) == 0 {
		return len(p) == 0 || ancestors
	}
	if pat[0] == "**" {
		if !globPath && len(pat) > 1 && !hasMeta(pat[1], true) {
			// The next segment is literal: try only where it occurs.
			for k := range p {
				if p[k] == pat[1] && segMatch(pat[2:], p[k+1:], globPath, ancestors) {
					return true
				}
			}
			return false
		}
		if segMatch(pat[1:], p, globPath, ancestors) {
			return true
		}
		return len(p) > 0 && segMatch(pat, p[1:], globPath, ancestors)
	}
	if len(p) == 0 {
		return false
	}
	if globPath && p[0] == "**" {
		return segMatch(pat, p[1:], globPath, ancestors) || segMatch(pat[1:], p, globPath, ancestors)
	}
	var ok bool
	switch {
	case !hasMeta(pat[0], true) && (!globPath || !hasMeta(p[0], true)):
		ok = pat[0] == p[0]
	case globPath:
		ok = segIntersect(pat[0], p[0])
	default:
		ok = quickGlob(pat[0], p[0]) && matchName(pat[0], p[0])
	}
	return ok && segMatch(pat[1:], p[1:], globPath, ancestors)
}

// segIntersect reports whether two one-segment globs can match the same
// name. Classes are treated as any one character, which can only say yes
// more often.
func segIntersect(a, b string) bool {
	// A glob's leading * ? or [ never matches a leading dot (bash without
	// dotglob), so "*.go" cannot name ".env.go".
	if len(a) > 0 && len(b) > 0 && (a[0] == '.' && strings.IndexByte("*?[", b[0]) >= 0 || b[0] == '.' && strings.IndexByte("*?[", a[0]) >= 0) {
		return false
	}
	ta, tb := segTokens(a), segTokens(b)
	// ok[i][j] says whether ta[i:] and tb[j:] can name the same text;
	// filled from the ends.
	w := len(tb) + 1
	var buf [512]bool
	ok := buf[:0]
	if n := (len(ta) + 1) * w; n <= len(buf) {
		ok = buf[:n]
	} else {
		ok = make([]bool, n)
	}
	for i := len(ta); i >= 0; i-- {
		for j := len(tb); j >= 0; j-- {
			var m bool
			switch {
			case i == len(ta) && j == len(tb):
				m = true
			case i < len(ta) && ta[i] == star:
				m = ok[(i+1)*w+j] || j < len(tb) && ok[i*w+j+1]
			case j < len(tb) && tb[j] == star:
				m = ok[i*w+j+1] || i < len(ta) && ok[(i+1)*w+j]
			case i < len(ta) && j < len(tb):
				m = (ta[i] == anyOne || tb[j] == anyOne || ta[i] == tb[j]) && ok[(i+1)*w+j+1]
			}
			ok[i*w+j] = m
		}
	}
	return ok[0]
}

const anyOne = -2

// dynStar marks, in a path glob, a star standing for an unknown value: it
// may match a leading dot, which a glob's own '*' and '?' never do.
const dynStar = "\x01"

func segTokens(s string) []int16 {
	t := make([]int16, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', dynStar[0]:
			if len(t) == 0 || t[len(t)-1] != star {
				t = append(t, star)
			}
		case '?':
			t = append(t, anyOne)
		case '[':
			end := strings.IndexByte(s[i+1:], ']')
			if end < 0 {
				t = append(t, '[')
				continue
			}
			if end == 0 { // "[]…]": the first ']' is literal
				if e2 := strings.IndexByte(s[i+2:], ']'); e2 >= 0 {
					end = e2 + 1
				}
			}
			t = append(t, anyOne)
			i += end + 1
		case '\\':
			if i+1 < len(s) {
				i++
				t = append(t, int16(s[i]))
			}
		default:
			t = append(t, int16(c))
		}
	}
	return t
}

// hasMeta reports whether s holds a glob's special characters (* ? [ \),
// or, with dyn, the dynStar mark: strings.ContainsAny without its
// per-call set-up, on the hot path of every path match.
func hasMeta(s string, dyn bool) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			return true
		case dynStar[0]:
			if dyn {
				return true
			}
		}
	}
	return false
}

// escapeGlob makes a literal path safe to use as a glob.
func escapeGlob(s string) string {
	if !hasMeta(s, false) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// quickGlob rejects cheaply a name that lacks the glob's literal prefix or
// suffix (before the first and after the last special character).
func quickGlob(g, name string) bool {
	i := strings.IndexAny(g, `*?[\`)
	j := strings.LastIndexAny(g, `*?]\`)
	return strings.HasPrefix(name, g[:i]) && (j+1 >= len(g) || strings.HasSuffix(name, g[j+1:]))
}

func matchName(g, name string) bool {
	ok, _ := path.Match(g, name)
	return ok
}
