package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Scorecard writes the report as a table grouped like the battery, with a
// summary line; colour only when asked (a terminal, and NO_COLOR unset).
func Scorecard(w io.Writer, r *Report, colour bool) {
	paint := func(s Status, text string) string {
		if !colour {
			return text
		}
		code := map[Status]string{Held: "32", Escaped: "1;31", NotApplicable: "33"}[s]
		return "\x1b[" + code + "m" + text + "\x1b[0m"
	}
	tier := r.Tier
	if tier == "" {
		tier = "native"
	}
	fmt.Fprintf(w, "moat verify: %s tier, policy %s\n", tier, strings.Join(r.Policy, " > "))
	for _, g := range Groups {
		var rows []Result
		for _, x := range r.Results {
			if x.Group == g {
				rows = append(rows, x)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", g)
		for _, x := range rows {
			label := string(x.Status)
			if x.Status == NotApplicable {
				label = "n/a"
			}
			fmt.Fprintf(w, "  %s  %-18s %s\n", paint(x.Status, fmt.Sprintf("%-7s", label)), x.Name, oneLine(x.Evidence, 160))
		}
	}
	_, e, _ := r.Counts()
	fmt.Fprintf(w, "\n%s\n", paint(map[bool]Status{true: Held, false: Escaped}[e == 0], Summary(r)))
}

// Summary is the scorecard's last line: "N/M held, K not applicable, E escaped".
func Summary(r *Report) string {
	h, e, n := r.Counts()
	return fmt.Sprintf("%d/%d held, %d not applicable, %d escaped", h, h+e, n, e)
}

// WriteJSON writes the report for machines.
func WriteJSON(w io.Writer, r *Report) error {
	h, e, n := r.Counts()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Held          int `json:"held"`
		Escaped       int `json:"escaped"`
		NotApplicable int `json:"not_applicable"`
	}{r, h, e, n})
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > n {
		s = string([]rune(s)[:n-1]) + "…"
	}
	return s
}
