package workspace

// gitleaks sees through encodings: after the rules' first pass it looks for
// percent, unicode, hex and base64 segments that decode to printable text and
// runs the rules again over the decoded text, up to maxDecodeDepth times. The
// search is one regular expression with submatches over the whole file, and
// it costs most of a scan of ordinary source (about nine tenths of the CPU).
// mayDecode is a linear check that answers true whenever that search could
// yield a segment; when it answers false, a detector without decoding finds
// exactly what one with decoding would. FuzzMayDecode holds it to gitleaks'
// own decoder.

// mayDecode reports whether gitleaks' decoder could find a segment in b.
func mayDecode(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '%':
			// A percent segment starts with %XX, and decodes only if every
			// %XX in it is printable, the first included.
			if i+2 < len(b) {
				if v, ok := hexByte(b[i+1], b[i+2]); ok && printable(v) {
					return true
				}
			}
		case c == '+' && i > 0 && b[i-1] == 'U', c == 'u' && i > 0 && b[i-1] == '\\', c == 'U' && i > 0 && b[i-1] == '\\':
			// U+XXXX and \uXXXX escapes.
			if i+4 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) && isHex(b[i+3]) && isHex(b[i+4]) {
				return true
			}
		}
	}
	// Hex and base64 segments lie within runs of their characters.
	for i := 0; i < len(b); {
		if !base64ish[b[i]] {
			i++
			continue
		}
		j := i
		for j < len(b) && base64ish[b[j]] {
			j++
		}
		if j-i >= 16 && (hexRunDecodes(b[i:j]) || base64RunDecodes(b[i:j])) {
			return true
		}
		i = j
	}
	return false
}

// base64ish are the characters of gitleaks' base64 pattern, [\w/+-], which
// include the hex digits.
var base64ish = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/+-" {
		t[c] = true
	}
	return t
}()

// printable is gitleaks' printable ASCII: tab to tilde.
func printable(v byte) bool { return v > 0x08 && v < 0x7f }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func hexByte(a, b byte) (byte, bool) {
	if !isHex(a) || !isHex(b) {
		return 0, false
	}
	return hexVal(a)<<4 | hexVal(b), true
}

// hexRunDecodes reports whether some 32 or more hex digits in a run decode,
// pair by pair from either parity, to printable bytes: a hex segment (32 or
// more digits, all pairs printable) needs that.
func hexRunDecodes(run []byte) bool {
	for parity := range 2 {
		streak := 0
		for k := parity; k+1 < len(run); k += 2 {
			if v, ok := hexByte(run[k], run[k+1]); ok && printable(v) {
				if streak++; streak >= 16 {
					return true
				}
			} else {
				streak = 0
			}
		}
	}
	return false
}

// base64RunDecodes reports whether some three whole groups of four in a run
// (16 or more characters hold at least three, from the segment's start)
// decode to printable bytes in the standard or the URL alphabet, at any of
// the four alignments: a base64 segment decodes only if all its bytes are
// printable.
func base64RunDecodes(run []byte) bool {
	for _, url := range []bool{false, true} {
		for off := range 4 {
			streak := 0
			for k := off; k+4 <= len(run); k += 4 {
				if b64GroupPrintable(run[k:k+4], url) {
					if streak++; streak >= 3 {
						return true
					}
				} else {
					streak = 0
				}
			}
		}
	}
	return false
}

func b64Val(c byte, url bool) (byte, bool) {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A', true
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26, true
	case '0' <= c && c <= '9':
		return c - '0' + 52, true
	case c == '+' && !url, c == '-' && url:
		return 62, true
	case c == '/' && !url, c == '_' && url:
		return 63, true
	}
	return 0, false
}

func b64GroupPrintable(g []byte, url bool) bool {
	var v [4]byte
	for i, c := range g {
		x, ok := b64Val(c, url)
		if !ok {
			return false
		}
		v[i] = x
	}
	return printable(v[0]<<2|v[1]>>4) && printable(v[1]<<4|v[2]>>2) && printable(v[2]<<6|v[3])
}
