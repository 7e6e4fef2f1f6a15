package permission

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Word is one shell word as far as it can be known before the command runs.
// Quotes are removed and escapes decoded; whatever depends on the running
// shell (a parameter, a command or arithmetic substitution, an unquoted
// glob) is marked rather than guessed.
type Word struct {
	// Value is the word with quotes removed; each part whose value is not
	// known ($X, $(…), an unquoted * ? [) is the wild byte.
	Value string
	// Glob is Value as a path glob: literal text escaped, unquoted glob
	// characters kept, unknown parts as the wild byte (which may span '/').
	Glob string
	// Dynamic: a parameter, command, arithmetic or process substitution.
	Dynamic bool
	// Globbed: an unquoted glob character or extended glob.
	Globbed bool
	// Tilde: an unquoted leading "~" (the home directory).
	Tilde bool
	// Quoted: quotes or backslashes were needed to spell it.
	Quoted bool
	// ANSIC: a $'…' part decoded an escape sequence.
	ANSIC bool
	// IFS: the word reads $IFS, a classic way to smuggle spaces.
	IFS bool
	// Src is the word as written.
	Src string
	Pos syntax.Pos
}

// Known reports whether the word's value is fully known.
func (w *Word) Known() bool { return !w.Dynamic && !w.Globbed }

// maxBraceFields bounds brace expansion; a word that would expand to more
// is treated as one unknown word.
const maxBraceFields = 256

// evalWord evaluates a word, brace-expanding it into several when it has
// braces. src is the word as written.
func evalWord(w *syntax.Word, src string) []Word {
	return appendWord(nil, w, src)
}

// appendWord is evalWord appending to dst.
func appendWord(dst []Word, w *syntax.Word, src string) []Word {
	if hasBraces(w) {
		if out, ok := braceWords(w, src); ok {
			return append(dst, out...)
		}
	}
	one := evalParts(w.Parts, src)
	one.Pos = w.Pos()
	return append(dst, one)
}

// braceWords brace-expands a word; false if it has no brace expansion.
// It is a function of its own because the expansion's iterator allocates
// its state on entry to whatever function holds it.
//
//go:noinline
func braceWords(w *syntax.Word, text string) ([]Word, bool) {
	cp := *w
	if !syntax.SplitBraces(&cp) {
		return nil, false
	}
	var out []Word
	for bw, err := range expand.BracesSeq(nil, &cp) {
		if err != nil || len(out) == maxBraceFields {
			one := evalParts(w.Parts, text)
			one.Dynamic = true
			one.Value, one.Glob = string(wild), string(wild)
			return []Word{one}, true
		}
		out = append(out, evalParts(bw.Parts, text))
	}
	for i := range out {
		out[i].Pos = w.Pos()
	}
	return out, true
}

func hasBraces(w *syntax.Word) bool {
	for _, p := range w.Parts {
		if l, ok := p.(*syntax.Lit); ok && strings.IndexByte(l.Value, '{') >= 0 {
			return true
		}
	}
	return false
}

// evalParts evaluates the parts of one word (after brace expansion).
func evalParts(parts []syntax.WordPart, src string) Word {
	wd := Word{Src: src}
	if len(parts) == 1 {
		// The common word: one plain literal, its own value and glob.
		if l, ok := parts[0].(*syntax.Lit); ok && !strings.HasPrefix(l.Value, "~") && !hasMeta(l.Value, false) {
			wd.Value, wd.Glob = l.Value, l.Value
			return wd
		}
	}
	var v, g strings.Builder
	for i, p := range parts {
		switch p := p.(type) {
		case *syntax.Lit:
			s := p.Value
			if i == 0 && strings.HasPrefix(s, "~") {
				// Tilde expansion applies to an unquoted leading ~ up to the
				// first slash; "~user" is another user's home: unknown.
				name := s[1:]
				if j := strings.IndexByte(name, '/'); j >= 0 {
					name = name[:j]
				}
				if name == "" && (len(s) == 1 || s[1] == '/') && (len(parts) == 1 || strings.Contains(s, "/")) {
					wd.Tilde = true
				} else if name != "" && !strings.ContainsAny(name, `\'"`) {
					wd.Dynamic = true
				}
			}
			unquotedLit(s, &v, &g, &wd)
		case *syntax.SglQuoted:
			wd.Quoted = true
			s := p.Value
			if p.Dollar {
				d, changed := decodeANSIC(s)
				if changed {
					wd.ANSIC = true
				}
				s = d
			}
			v.WriteString(s)
			g.WriteString(escapeGlob(s))
		case *syntax.DblQuoted:
			wd.Quoted = true
			for _, q := range p.Parts {
				switch q := q.(type) {
				case *syntax.Lit:
					s := dquoteUnescape(q.Value)
					v.WriteString(s)
					g.WriteString(escapeGlob(s))
				default:
					dynamicPart(q, &v, &g, &wd)
				}
			}
		case *syntax.ExtGlob:
			wd.Globbed = true
			v.WriteByte(wild)
			g.WriteByte(wild)
		default:
			dynamicPart(p, &v, &g, &wd)
		}
	}
	wd.Value, wd.Glob = v.String(), g.String()
	return wd
}

func dynamicPart(p syntax.WordPart, v, g *strings.Builder, wd *Word) {
	wd.Dynamic = true
	if pe, ok := p.(*syntax.ParamExp); ok && pe.Param != nil && pe.Param.Value == "IFS" {
		wd.IFS = true
	}
	v.WriteByte(wild)
	g.WriteByte(wild)
}

// unquotedLit decodes an unquoted literal: a backslash quotes the next
// character; unquoted * ? [ make the word a glob.
func unquotedLit(s string, v, g *strings.Builder, wd *Word) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			wd.Quoted = true
			if i+1 < len(s) {
				i++
				v.WriteByte(s[i])
				g.WriteString(escapeGlob(s[i : i+1]))
			}
		case '*', '?', '[':
			if c == '[' && strings.IndexByte(s[i:], ']') < 0 {
				v.WriteByte(c)
				g.WriteString(`\[`)
				continue
			}
			wd.Globbed = true
			v.WriteByte(wild)
			if c == '[' {
				j := strings.IndexByte(s[i:], ']')
				g.WriteString(s[i : i+j+1])
				i += j
			} else {
				g.WriteByte(c)
			}
		default:
			v.WriteByte(c)
			g.WriteByte(c)
		}
	}
}

// dquoteUnescape removes the backslashes that quote $ ` " \ inside double
// quotes; others stay, as bash keeps them.
func dquoteUnescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeANSIC decodes the body of a $'…' string as bash does, reporting
// whether any escape was decoded.
func decodeANSIC(s string) (string, bool) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '\\', '\'', '"', '?':
			b.WriteByte(e)
		case 'c':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i] & 0x1f)
			}
		case 'x', 'u', 'U':
			max := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			j := i + 1
			for j < len(s) && j-i-1 < max && isHexDigit(s[j]) {
				j++
			}
			if j == i+1 {
				b.WriteByte('\\')
				b.WriteByte(e)
				continue
			}
			n, _ := strconv.ParseUint(s[i+1:j], 16, 32)
			if e == 'x' {
				b.WriteByte(byte(n))
			} else if r := rune(n); utf8.ValidRune(r) {
				b.WriteRune(r)
			}
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j-i < 3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(s[i:j], 8, 16)
			b.WriteByte(byte(n))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// nodeText returns the source text of a node.
func nodeText(src string, n syntax.Node) string {
	s, e := int(n.Pos().Offset()), int(n.End().Offset())
	if s < 0 || e > len(src) || s > e {
		return ""
	}
	return src[s:e]
}

// literalWord builds a Word from a known string (an argument of a command
// moat re-parses, such as a git -c value).
func literalWord(s string, pos syntax.Pos) Word {
	return Word{Value: s, Glob: escapeGlob(s), Src: s, Pos: pos}
}
