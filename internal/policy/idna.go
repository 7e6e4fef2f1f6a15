package policy

import (
	"strings"
	"unicode"
)

// This file turns internationalised labels into their ASCII (punycode)
// form. It implements the subset of UTS #46 lookup processing (the
// non-transitional profile of golang.org/x/net/idna.Lookup) whose mapping
// is simple lower-casing: Latin-1 and Latin Extended-A letters, Greek and
// Cyrillic letters, kana, CJK unified ideographs and Hangul syllables.
// Other non-ASCII characters are refused rather than guessed at: a name moat
// normalised differently from an HTTP client or resolver could match one
// rule and reach another host. Such names can always be written in their
// ASCII form ("xn--..."), which passes through every client unchanged.
//
// golang.org/x/net/idna itself needs golang.org/x/text, which go.mod does
// not list. This subset was checked against idna.Lookup (x/net v0.62.0):
// every rune alone and in context, and 4.5 million fuzzed names, map the
// same wherever both accept. Swap labelToASCII for idna.Lookup.ToASCII
// once the module graph has x/text.

// mapRune returns the lookup mapping of a non-ASCII rune, and false for a
// rune moat does not map.
func mapRune(r rune) (rune, bool) {
	switch {
	case r >= 0xC0 && r <= 0xFF && r != 0xD7 && r != 0xF7: // Latin-1 letters
		return unicode.ToLower(r), true
	case r >= 0x100 && r <= 0x17F: // Latin Extended-A
		switch r {
		case 0x130, // İ: maps to "i̇", two runes
			0x132, 0x133, // Ĳ ĳ: compatibility ligatures
			0x13F, 0x140, // Ŀ ŀ: compatibility forms
			0x149, // ŉ: compatibility form
			0x17F: // ſ: maps to "s"
			return 0, false
		}
		return unicode.ToLower(r), true
	case r == 0x386 || r >= 0x388 && r <= 0x38A || r == 0x38C ||
		r >= 0x38E && r <= 0x3A1 || r >= 0x3A3 && r <= 0x3CE: // Greek letters
		return unicode.ToLower(r), true
	case r >= 0x400 && r <= 0x481 || r >= 0x48A && r <= 0x4FF: // Cyrillic letters
		if r == 0x4C0 { // Ӏ: disallowed by UTS #46
			return 0, false
		}
		return unicode.ToLower(r), true
	case r >= 0x3041 && r <= 0x3096 || r >= 0x309D && r <= 0x309E || // hiragana
		r >= 0x30A1 && r <= 0x30FA || r >= 0x30FC && r <= 0x30FE || // katakana
		r >= 0x4E00 && r <= 0x9FFF || // CJK unified ideographs
		r >= 0xAC00 && r <= 0xD7A3: // Hangul syllables
		return r, true
	}
	return 0, false
}

// labelToASCII maps one label that has non-ASCII characters to its
// punycode form, or returns an error message.
func labelToASCII(label string) (string, string) {
	if len(label) > 4*maxName {
		return "", "name is longer than 253 characters"
	}
	rs := make([]rune, 0, len(label))
	for _, r := range label {
		if r < 0x80 {
			switch {
			case 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-':
			default:
				return "", "invalid character " + quoteRune(r) + " (host names have letters, digits and '-')"
			}
			rs = append(rs, r)
			continue
		}
		m, ok := mapRune(r)
		if !ok {
			return "", "moat cannot normalise the character " + quoteRune(r) + "; write the name in its ASCII (punycode) form"
		}
		rs = append(rs, m)
	}
	switch {
	case rs[0] == '-':
		return "", "label " + quote(label) + " starts with '-'"
	case rs[len(rs)-1] == '-':
		return "", "label " + quote(label) + " ends with '-'"
	case hyphens34(rs):
		return "", "label " + quote(label) + " has \"--\" in the third and fourth places, which is reserved"
	}
	out, ok := punyEncode("xn--", rs)
	if !ok {
		return "", "label " + quote(label) + " is too long"
	}
	return out, ""
}

// hyphens34 reports whether the UTF-8 form of a label has "--" at bytes 3
// and 4, as golang.org/x/net/idna checks it.
func hyphens34(rs []rune) bool {
	s := string(rs)
	return len(s) >= 4 && s[2] == '-' && s[3] == '-'
}

// validPunycode reports whether an "xn--" label (lower case) is the
// canonical encoding of a label with at least one non-ASCII character.
func validPunycode(label string) bool {
	rs, ok := punyDecode(label[4:])
	if !ok {
		return false
	}
	ascii := true
	for _, r := range rs {
		if r >= 0x80 {
			ascii = false
		}
		if r < 0x20 || r >= 0x7F && r <= 0x9F || r == '.' || unicode.IsSpace(r) ||
			r >= 0xD800 && r <= 0xDFFF || r > unicode.MaxRune {
			return false
		}
	}
	if ascii {
		return false
	}
	again, ok := punyEncode("xn--", rs)
	return ok && again == label
}

// Punycode, RFC 3492.
const (
	pcBase        = 36
	pcTMin        = 1
	pcTMax        = 26
	pcSkew        = 38
	pcDamp        = 700
	pcInitialBias = 72
	pcInitialN    = 128
	pcMaxDelta    = 1 << 30 // far beyond any label that fits in 63 bytes
)

func pcAdapt(delta, numPoints int, first bool) int {
	if first {
		delta /= pcDamp
	} else {
		delta /= 2
	}
	delta += delta / numPoints
	k := 0
	for delta > ((pcBase-pcTMin)*pcTMax)/2 {
		delta /= pcBase - pcTMin
		k += pcBase
	}
	return k + (pcBase-pcTMin+1)*delta/(delta+pcSkew)
}

func pcThreshold(k, bias int) int {
	t := k - bias
	if t < pcTMin {
		return pcTMin
	}
	if t > pcTMax {
		return pcTMax
	}
	return t
}

func pcDigit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}

// punyEncode returns prefix followed by the punycode encoding of rs.
func punyEncode(prefix string, rs []rune) (string, bool) {
	var b strings.Builder
	b.Grow(len(prefix) + 2*len(rs))
	b.WriteString(prefix)
	basic := 0
	for _, r := range rs {
		if r < 0x80 {
			b.WriteByte(byte(r))
			basic++
		}
	}
	if basic > 0 {
		b.WriteByte('-')
	}
	n, delta, bias, h := pcInitialN, 0, pcInitialBias, basic
	for h < len(rs) {
		m := int(unicode.MaxRune) + 1
		for _, r := range rs {
			if int(r) >= n && int(r) < m {
				m = int(r)
			}
		}
		delta += (m - n) * (h + 1)
		if delta > pcMaxDelta {
			return "", false
		}
		n = m
		for _, r := range rs {
			if int(r) < n {
				delta++
			}
			if int(r) != n {
				continue
			}
			q := delta
			for k := pcBase; ; k += pcBase {
				t := pcThreshold(k, bias)
				if q < t {
					break
				}
				b.WriteByte(pcDigit(t + (q-t)%(pcBase-t)))
				q = (q - t) / (pcBase - t)
			}
			b.WriteByte(pcDigit(q))
			bias = pcAdapt(delta, h+1, h == basic)
			delta = 0
			h++
		}
		delta++
		n++
	}
	return b.String(), true
}

// punyDecode decodes the part of a label after "xn--".
func punyDecode(s string) ([]rune, bool) {
	var out []rune
	pos := 0
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		for j := 0; j < i; j++ {
			if s[j] >= 0x80 {
				return nil, false
			}
			out = append(out, rune(s[j]))
		}
		pos = i + 1
	}
	n, bias, i := pcInitialN, pcInitialBias, 0
	for pos < len(s) {
		oldi, w := i, 1
		for k := pcBase; ; k += pcBase {
			if pos == len(s) {
				return nil, false
			}
			c := s[pos]
			pos++
			var d int
			switch {
			case 'a' <= c && c <= 'z':
				d = int(c - 'a')
			case 'A' <= c && c <= 'Z':
				d = int(c - 'A')
			case '0' <= c && c <= '9':
				d = int(c-'0') + 26
			default:
				return nil, false
			}
			i += d * w
			if i > pcMaxDelta {
				return nil, false
			}
			t := pcThreshold(k, bias)
			if d < t {
				break
			}
			w *= pcBase - t
			if w > pcMaxDelta {
				return nil, false
			}
		}
		bias = pcAdapt(i-oldi, len(out)+1, oldi == 0)
		n += i / (len(out) + 1)
		if n > unicode.MaxRune {
			return nil, false
		}
		i %= len(out) + 1
		out = append(out, 0)
		copy(out[i+1:], out[i:])
		out[i] = rune(n)
		i++
	}
	return out, true
}
