package policy

import (
	"strconv"
	"strings"
)

// Error is one problem in a policy file, located by file, line and key path.
// Its text reads "FILE:LINE: KEY: MSG", where MSG quotes the value given
// and, when it can, says what to write instead:
//
//	moat.yaml:14: network.allow[2]: "*.": empty domain after wildcard; write "*.example.com"
//
// File is empty for problems that belong to no file (a flag); Line is 0 when
// the problem concerns a whole file; Key is empty when it concerns no key.
type Error struct {
	File string
	Line int
	Key  string // "network.allow[2]", "credentials[0].hosts"
	Msg  string
}

// Error formats the problem as "FILE:LINE: KEY: MSG", leaving out what is
// unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading a policy, in file order. Its
// text is one Error a line. Load and Parse return an Errors, never an empty
// one.
type Errors []*Error

// Error returns the problems' texts, one a line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// suggest returns the candidate closest to word if it is close enough to be
// a likely typo, else "": one edit in a word of 3 to 5 letters, two in one
// of 6 to 8, three in a longer one; none in shorter words.
func suggest(word string, candidates []string) string {
	word = strings.ToLower(word)
	best, bestDist := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist <= len(word)/3 {
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: insertions, deletions, substitutions and transpositions of
// adjacent bytes each count one.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20 // not a typo of any key
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// oneOf formats a list of choices: "a", "a or b", "a, b or c".
func oneOf(choices []string) string {
	switch len(choices) {
	case 0:
		return ""
	case 1:
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// unknownChoice says that given is not one of choices, suggesting the
// nearest: `unknown mode; did you mean "enforce"?` or `unknown mode; want
// enforce or report`.
func unknownChoice(what string, given string, choices []string) string {
	if s := suggest(given, choices); s != "" {
		return "unknown " + what + "; did you mean " + strconv.Quote(s) + "?"
	}
	return "unknown " + what + "; want " + oneOf(choices)
}
