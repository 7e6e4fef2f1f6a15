package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Decisions a record can carry.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionAsk   = "ask"
)

// Events of a tunnel (KindConnect records): the proxy writes one record
// when a tunnel opens and one, with its byte counts and duration, when it
// closes.
const (
	EventOpen  = "open"
	EventClose = "close"
)

// Filter selects records. Each non-zero field must match; the zero Filter
// matches everything.
type Filter struct {
	// Host is a host name, matched without regard to case or a trailing
	// dot, or "*.suffix", which matches the suffix's subdomains but not the
	// suffix itself (as in network.allow).
	Host     string
	Decision string    // "allow", "deny" or "ask"
	Kind     string    // KindRequest, KindConnect, …
	Session  string    // exact
	Since    time.Time // records at or after this time
}

// Validate reports a Filter that can match nothing because a value is
// malformed: an unknown decision or an empty wildcard suffix.
func (f Filter) Validate() error {
	switch f.Decision {
	case "", DecisionAllow, DecisionDeny, DecisionAsk:
	default:
		return fmt.Errorf("decision %q: want allow, deny or ask", f.Decision)
	}
	if suffix, ok := strings.CutPrefix(f.Host, "*."); ok && normHost(suffix) == "" {
		return fmt.Errorf("host %q: empty domain after wildcard; write \"*.example.com\"", f.Host)
	}
	return nil
}

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if f.Decision != "" && r.Decision != f.Decision {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.Session != "" && r.Session != f.Session {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if f.Host != "" {
		h := normHost(r.Host)
		if suffix, ok := strings.CutPrefix(f.Host, "*."); ok {
			s := normHost(suffix)
			return len(h) > len(s)+1 && strings.HasSuffix(h, s) && h[len(h)-len(s)-1] == '.'
		}
		return h == normHost(f.Host)
	}
	return true
}

func normHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(h)
}

// ParseSince reads a --since value: a duration before now ("90s", "10m",
// "2h", "3d") or a time ("2026-11-27T14:00:00Z", or a date
// "2026-11-27", midnight UTC).
func ParseSince(s string, now time.Time) (time.Time, error) {
	bad := fmt.Errorf("since %q: want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)", s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return time.Time{}, bad
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, bad
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, bad
}
