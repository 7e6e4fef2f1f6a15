package workspace

import (
	"fmt"
	"io"
	"strings"
)

// maxEdits bounds the Myers search (its saved frontiers take maxEdits²
// ints): a diff needing more edits than this is shown as the whole old
// file removed and the new one added.
const maxEdits = 2000

// editOp is one line of an edit script: ' ' kept, '-' removed, '+' added.
type editOp struct {
	op   byte
	line string
}

// myers returns an edit script turning a into b (Myers' O(ND) algorithm,
// with the common prefix and suffix trimmed first).
func myers(a, b []string) []editOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []editOp
	for _, l := range a[:pre] {
		ops = append(ops, editOp{' ', l})
	}
	ops = append(ops, myersMiddle(a[pre:len(a)-suf], b[pre:len(b)-suf])...)
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, editOp{' ', l})
	}
	return ops
}

func myersMiddle(a, b []string) []editOp {
	n, m := len(a), len(b)
	max := n + m
	if max == 0 {
		return nil
	}
	whole := func() []editOp {
		ops := make([]editOp, 0, n+m)
		for _, l := range a {
			ops = append(ops, editOp{'-', l})
		}
		for _, l := range b {
			ops = append(ops, editOp{'+', l})
		}
		return ops
	}
	if n == 0 || m == 0 {
		return whole()
	}
	limit := max
	if limit > maxEdits {
		limit = maxEdits
	}
	off := max
	v := make([]int, 2*max+2)
	var trace [][]int
	found := -1
	for d := 0; d <= limit; d++ {
		// The frontier before step d: diagonals -(d-1)..d-1.
		if d == 0 {
			trace = append(trace, nil)
		} else {
			trace = append(trace, append([]int(nil), v[off-(d-1):off+d]...))
		}
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || k != d && v[off+k-1] < v[off+k+1] {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
		if found >= 0 {
			break
		}
	}
	if found < 0 {
		return whole()
	}
	// Walk back through the saved frontiers.
	var rev []editOp
	x, y := n, m
	for d := found; d > 0; d-- {
		vd := func(k int) int { return trace[d][k+d-1] }
		k := x - y
		var pk int
		if k == -d || k != d && vd(k-1) < vd(k+1) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := vd(pk)
		py := px - pk
		for x > px && y > py {
			x--
			y--
			rev = append(rev, editOp{' ', a[x]})
		}
		if x == px {
			y--
			rev = append(rev, editOp{'+', b[y]})
		} else {
			x--
			rev = append(rev, editOp{'-', a[x]})
		}
	}
	for x > 0 && y > 0 {
		x--
		y--
		rev = append(rev, editOp{' ', a[x]})
	}
	ops := make([]editOp, len(rev))
	for i, op := range rev {
		ops[len(rev)-1-i] = op
	}
	return ops
}

// unifiedDiff writes the hunks (three lines of context) turning a into b.
func unifiedDiff(w io.Writer, a, b []string) error {
	ops := myers(a, b)
	const ctx = 3
	// Indexes of changed ops, grouped into hunks.
	i := 0
	for i < len(ops) {
		for i < len(ops) && ops[i].op == ' ' {
			i++
		}
		if i == len(ops) {
			break
		}
		start := i - ctx
		if start < 0 {
			start = 0
		}
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].op != ' ' {
				end = j + 1
			} else if j-end >= 2*ctx {
				break
			}
		}
		stop := end + ctx
		if stop > len(ops) {
			stop = len(ops)
		}
		// Line numbers at start.
		la, lb := 1, 1
		for _, op := range ops[:start] {
			if op.op != '+' {
				la++
			}
			if op.op != '-' {
				lb++
			}
		}
		na, nb := 0, 0
		for _, op := range ops[start:stop] {
			if op.op != '+' {
				na++
			}
			if op.op != '-' {
				nb++
			}
		}
		if na == 0 {
			la--
		}
		if nb == 0 {
			lb--
		}
		if _, err := fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(la, na), hunkRange(lb, nb)); err != nil {
			return err
		}
		for _, op := range ops[start:stop] {
			line := op.line
			nl := strings.HasSuffix(line, "\n")
			if _, err := io.WriteString(w, string(op.op)+line); err != nil {
				return err
			}
			if !nl {
				io.WriteString(w, "\n\\ No newline at end of file\n")
			}
		}
		i = stop
	}
	return nil
}

func hunkRange(start, n int) string {
	if n == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}
