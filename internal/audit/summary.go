package audit

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary totals a set of records.
//
// Records counts lines; everything else counts decisions. A tunnel is
// logged twice, with "event":"open" when it is allowed and "event":"close"
// when it ends: its close record adds the tunnel's bytes to its host but
// is not counted again, unless it records a refusal (the TLS server name
// did not match), which is a decision of its own. A close record whose
// open record is not in the set (it was rotated away) is counted in full.
type Summary struct {
	Records   int            `json:"records"`
	First     time.Time      `json:"first"` // earliest record time; zero when Records is 0
	Last      time.Time      `json:"last"`
	Decisions map[string]int `json:"decisions"` // "allow", "deny", "ask"; "" for records without one
	Kinds     map[string]int `json:"kinds"`
	WouldDeny int            `json:"would_deny"` // allowed in report mode, refused in enforce mode
	// Hosts are the records that name a host, most frequent first (then by
	// name).
	Hosts []HostStat `json:"hosts"`
	// Refusals are the rules that refused (or, in report mode, would have
	// refused), most frequent first (then by rule).
	Refusals []RuleStat `json:"refusals"`
}

// HostStat totals the records for one host, whatever the port.
type HostStat struct {
	Host      string `json:"host"`
	Count     int    `json:"count"`
	Allowed   int    `json:"allowed"`
	Denied    int    `json:"denied"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
}

// RuleStat totals the refusals of one rule.
type RuleStat struct {
	Rule      string `json:"rule"` // "" when the record named none
	Denied    int    `json:"denied"`
	WouldDeny int    `json:"would_deny"`
	Example   string `json:"example"` // the first refused target: "host:port", or the kind
}

// Summarizer builds a Summary one record at a time, so that a large file
// need not be held in memory. The zero value is ready to use.
type Summarizer struct {
	s     Summary
	hosts map[string]*HostStat
	rules map[string]*RuleStat
}

// Add counts r.
func (z *Summarizer) Add(r Record) {
	s := &z.s
	if s.Decisions == nil {
		s.Decisions, s.Kinds = map[string]int{}, map[string]int{}
		z.hosts, z.rules = map[string]*HostStat{}, map[string]*RuleStat{}
	}
	s.Records++
	if s.First.IsZero() || r.Time.Before(s.First) {
		s.First = r.Time
	}
	if r.Time.After(s.Last) {
		s.Last = r.Time
	}
	if r.Event == EventClose && r.Decision != DecisionDeny {
		// The end of a tunnel whose open record was counted: only its
		// bytes are new.
		if h := z.hosts[r.Host]; r.Host != "" && h != nil {
			h.BytesUp += r.BytesUp
			h.BytesDown += r.BytesDown
			return
		}
	}
	s.Decisions[r.Decision]++
	s.Kinds[r.Kind]++
	if r.WouldDeny {
		s.WouldDeny++
	}
	if r.Host != "" {
		h := z.hosts[r.Host]
		if h == nil {
			h = &HostStat{Host: r.Host}
			z.hosts[r.Host] = h
		}
		h.Count++
		switch r.Decision {
		case DecisionAllow:
			h.Allowed++
		case DecisionDeny:
			h.Denied++
		}
		h.BytesUp += r.BytesUp
		h.BytesDown += r.BytesDown
	}
	if r.Decision == DecisionDeny || r.WouldDeny {
		rs := z.rules[r.Rule]
		if rs == nil {
			ex := r.Kind
			if r.Host != "" {
				ex = hostPort(r)
			}
			rs = &RuleStat{Rule: r.Rule, Example: ex}
			z.rules[r.Rule] = rs
		}
		if r.Decision == DecisionDeny {
			rs.Denied++
		} else {
			rs.WouldDeny++
		}
	}
}

// Summary returns the totals so far. It may be called again after more Adds.
func (z *Summarizer) Summary() Summary {
	s := z.s
	s.Decisions, s.Kinds = maps.Clone(s.Decisions), maps.Clone(s.Kinds)
	if s.Decisions == nil {
		s.Decisions, s.Kinds = map[string]int{}, map[string]int{}
	}
	s.Hosts = make([]HostStat, 0, len(z.hosts))
	for _, h := range z.hosts {
		s.Hosts = append(s.Hosts, *h)
	}
	slices.SortFunc(s.Hosts, func(a, b HostStat) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Host, b.Host))
	})
	s.Refusals = make([]RuleStat, 0, len(z.rules))
	for _, r := range z.rules {
		s.Refusals = append(s.Refusals, *r)
	}
	slices.SortFunc(s.Refusals, func(a, b RuleStat) int {
		return cmp.Or(cmp.Compare(b.Denied+b.WouldDeny, a.Denied+a.WouldDeny), strings.Compare(a.Rule, b.Rule))
	})
	return s
}

// Summarize totals records.
func Summarize(records []Record) Summary {
	var z Summarizer
	for _, r := range records {
		z.Add(r)
	}
	return z.Summary()
}

// Top returns s with at most n hosts and n refusal rules; n <= 0 keeps all.
func (s Summary) Top(n int) Summary {
	if n > 0 {
		s.Hosts = s.Hosts[:min(n, len(s.Hosts))]
		s.Refusals = s.Refusals[:min(n, len(s.Refusals))]
	}
	return s
}

// WriteText prints s as aligned tables for people, with at most top hosts
// and top refusal rules (top <= 0: all). Host names and rules are quoted
// when they hold anything unprintable, as in FormatText.
func (s Summary) WriteText(w io.Writer, top int) error {
	t := s.Top(top)
	head := &table{}
	records := strconv.Itoa(s.Records)
	if s.Records > 0 {
		records += ", from " + s.First.UTC().Format(time.RFC3339) + " to " + s.Last.UTC().Format(time.RFC3339)
	}
	head.add("records", records)
	head.add("decisions", counts(s.Decisions, []string{DecisionAllow, DecisionDeny, DecisionAsk}))
	head.add("kinds", counts(s.Kinds, nil))
	head.add("would-deny", strconv.Itoa(s.WouldDeny))
	out := head.String()

	if len(s.Hosts) > 0 {
		hosts := &table{right: []bool{false, true, true, true, true, true}}
		hosts.add("HOST", "COUNT", "ALLOWED", "DENIED", "UP", "DOWN")
		for _, h := range t.Hosts {
			hosts.add(word(h.Host), strconv.Itoa(h.Count), strconv.Itoa(h.Allowed), strconv.Itoa(h.Denied),
				formatBytes(h.BytesUp), formatBytes(h.BytesDown))
		}
		out += "\n" + hosts.String() + more(len(s.Hosts)-len(t.Hosts), "host")
	}
	if len(s.Refusals) > 0 {
		rules := &table{right: []bool{false, true, true, false}}
		rules.add("REFUSED BY", "DENIED", "WOULD-DENY", "EXAMPLE")
		for _, r := range t.Refusals {
			rule := "(no rule)"
			if r.Rule != "" {
				rule = word(r.Rule)
			}
			rules.add(rule, strconv.Itoa(r.Denied), strconv.Itoa(r.WouldDeny), word(r.Example))
		}
		out += "\n" + rules.String() + more(len(s.Refusals)-len(t.Refusals), "rule")
	}
	_, err := io.WriteString(w, out)
	return err
}

func more(n int, what string) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "… 1 more " + what + "\n"
	}
	return fmt.Sprintf("… %d more %ss\n", n, what)
}

// counts renders "allow 8, deny 3": first the keys of order, then the
// others by count, then name. Zero counts are left out; "" shows as "none".
func counts(m map[string]int, order []string) string {
	keys := slices.Collect(maps.Keys(m))
	rank := func(k string) int {
		if i := slices.Index(order, k); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	var parts []string
	for _, k := range keys {
		if m[k] == 0 {
			continue
		}
		name := "none"
		if k != "" {
			name = word(k)
		}
		parts = append(parts, name+" "+strconv.Itoa(m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
