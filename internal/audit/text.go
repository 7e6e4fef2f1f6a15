package audit

import (
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FormatText renders r as one line for people:
//
//	2026-11-27T14:03:12Z deny  connect evil.example:443 rule=default-deny reason="evil.example:443 is not in network.allow"
//	2026-11-27T14:03:13Z allow http    GET example.com:80/path 200 up=123 down=4567 12.3ms
//
// The columns are the time (UTC, to the second), the decision ("-" when
// there is none, as in lifecycle records), the protocol (or the kind when
// there is no protocol), then whichever of event, method, target, SNI,
// status, traffic, would-deny, rule, reason and detail are set. Traffic is
// shown for allowed requests and connections (for a tunnel, on its close
// record), and whenever a byte was counted; rule and reason for what was
// not simply allowed. Values an agent could choose are quoted when they
// hold spaces, quotes, backslashes or anything unprintable, so a record
// cannot forge columns or send escape sequences to a terminal. The line
// has no trailing newline.
func FormatText(r Record) string {
	b := make([]byte, 0, 160)
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
	b = append(b, ' ')
	d := r.Decision
	if d == "" {
		d = "-"
	}
	start := len(b)
	b = pad(appendWord(b, d), start, 5)
	b = append(b, ' ')
	p := r.Proto
	if p == "" {
		p = r.Kind
	}
	start = len(b)
	b = appendWord(b, p)
	if r.Event != "" || r.Method != "" || target(r) != "" {
		b = pad(b, start, 7)
	}
	for _, s := range []string{r.Event, r.Method, target(r)} {
		if s != "" {
			b = appendWord(append(b, ' '), s)
		}
	}
	if r.SNI != "" && normHost(r.SNI) != normHost(r.Host) {
		b = appendWord(append(b, " sni="...), r.SNI)
	}
	if r.Status != 0 {
		b = strconv.AppendInt(append(b, ' '), int64(r.Status), 10)
	}
	traffic := (r.Kind == KindRequest || r.Kind == KindConnect) && r.Event != EventOpen
	if traffic && r.Decision == DecisionAllow || r.BytesUp != 0 || r.BytesDown != 0 {
		b = strconv.AppendInt(append(b, " up="...), r.BytesUp, 10)
		b = strconv.AppendInt(append(b, " down="...), r.BytesDown, 10)
		b = strconv.AppendFloat(append(b, ' '), r.Duration, 'f', 1, 64)
		b = append(b, "ms"...)
	}
	if r.WouldDeny {
		b = append(b, " would-deny"...)
	}
	if r.Decision != DecisionAllow || r.WouldDeny {
		if r.Rule != "" {
			b = appendWord(append(b, " rule="...), r.Rule)
		}
		if r.Reason != "" {
			b = strconv.AppendQuote(append(b, " reason="...), r.Reason)
		}
	}
	if r.Detail != "" {
		b = strconv.AppendQuote(append(b, " detail="...), r.Detail)
	}
	return string(b)
}

// target is "host:port/path", or as much of it as r has.
func target(r Record) string {
	if r.Host == "" {
		return r.Path
	}
	return hostPort(r) + r.Path
}

func hostPort(r Record) string {
	if r.Port == 0 {
		return r.Host
	}
	return net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port)))
}

// pad appends spaces until the text that started at start is width runes wide.
func pad(b []byte, start, width int) []byte {
	for n := utf8.RuneCount(b[start:]); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// appendWord appends s as it is if it is one run of printable, non-space
// runes without quotes or backslashes, else quoted with strconv.
func appendWord(b []byte, s string) []byte {
	if s != "" && plain(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

func word(s string) string {
	if s != "" && plain(s) {
		return s
	}
	return strconv.Quote(s)
}

func plain(s string) bool {
	for _, c := range s {
		if c == ' ' || c == '"' || c == '\\' || c == utf8.RuneError || !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// formatBytes renders n in B, KiB, MiB, GiB or TiB with one decimal.
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		unit = u
		if f < 1024 && f > -1024 {
			break
		}
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + unit
}

// table lays out rows in columns two spaces apart; right[i] aligns column
// i to the right. Widths count runes.
type table struct {
	rows  [][]string
	right []bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var w []int
	for _, row := range t.rows {
		for i, c := range row {
			if i >= len(w) {
				w = append(w, 0)
			}
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	var sb strings.Builder
	for _, row := range t.rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			gap := strings.Repeat(" ", w[i]-utf8.RuneCountInString(c))
			if i < len(t.right) && t.right[i] {
				line.WriteString(gap + c)
			} else if i < len(row)-1 {
				line.WriteString(c + gap)
			} else {
				line.WriteString(c)
			}
		}
		sb.WriteString(strings.TrimRight(line.String(), " "))
		sb.WriteByte('\n')
	}
	return sb.String()
}
