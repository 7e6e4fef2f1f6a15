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
// a likely typo, else "".
func suggest(word string, candidates []string) string {
	best, bestDist := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), c); d < bestDist {
			best, bestDist = c, d
		}
	}
	// One edit in a short word, about a third of a long one.
	if bestDist <= max(1, min(3, len(best)/3)) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20 // not a typo of any key
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
