package audit

import (
	"fmt"
	"testing"
	"time"
)

func TestFilterMatch(t *testing.T) {
	r := Record{Time: t0, Kind: KindConnect, Session: "s1", Host: "API.Example.com.", Decision: DecisionDeny}
	for _, tt := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Host: "api.example.com"}, true},
		{Filter{Host: "API.EXAMPLE.COM."}, true},
		{Filter{Host: "example.com"}, false},
		{Filter{Host: "*.example.com"}, true},
		{Filter{Host: "*.EXAMPLE.com."}, true},
		{Filter{Host: "*.api.example.com"}, false}, // subdomains only, not the apex
		{Filter{Host: "*.ample.com"}, false},       // a label boundary, not a string suffix
		{Filter{Host: "*.com"}, true},
		{Filter{Decision: "deny"}, true},
		{Filter{Decision: "allow"}, false},
		{Filter{Kind: KindConnect}, true},
		{Filter{Kind: KindRequest}, false},
		{Filter{Session: "s1"}, true},
		{Filter{Session: "s"}, false},
		{Filter{Since: t0}, true},
		{Filter{Since: t0.Add(-time.Second)}, true},
		{Filter{Since: t0.Add(time.Nanosecond)}, false},
		{Filter{Host: "*.example.com", Decision: "deny", Kind: KindConnect, Session: "s1", Since: t0}, true},
		{Filter{Host: "*.example.com", Decision: "deny", Kind: KindConnect, Session: "s2", Since: t0}, false},
	} {
		if got := tt.f.Match(r); got != tt.want {
			t.Errorf("%+v.Match = %v; want %v", tt.f, got, tt.want)
		}
	}
	if (Filter{Host: "example.com"}).Match(Record{}) {
		t.Errorf("a host filter matched a record without a host")
	}
	if !(Filter{Host: "::1"}).Match(Record{Host: "[::1]"}) {
		t.Errorf("host ::1 did not match [::1]")
	}
}

func TestFilterValidate(t *testing.T) {
	for _, tt := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "<nil>"},
		{Filter{Decision: "allow", Host: "*.a.example"}, "<nil>"},
		{Filter{Decision: "Allow"}, `decision "Allow": want allow, deny or ask`},
		{Filter{Decision: "refuse"}, `decision "refuse": want allow, deny or ask`},
		{Filter{Host: "*."}, `host "*.": empty domain after wildcard; write "*.example.com"`},
		{Filter{Host: "*.."}, `host "*..": empty domain after wildcard; write "*.example.com"`},
	} {
		if got := fmt.Sprint(tt.f.Validate()); got != tt.want {
			t.Errorf("%+v.Validate() = %s; want %s", tt.f, got, tt.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in, want string
	}{
		{"10m", "2026-11-27T13:50:00Z"},
		{"1h30m", "2026-11-27T12:30:00Z"},
		{"90s", "2026-11-27T13:58:30Z"},
		{"3d", "2026-11-24T14:00:00Z"},
		{"0s", "2026-11-27T14:00:00Z"},
		{"2026-11-27T13:00:00Z", "2026-11-27T13:00:00Z"},
		{"2026-11-27T13:00:00.5+01:00", "2026-11-27T12:00:00.5Z"},
		{"2026-11-26", "2026-11-26T00:00:00Z"},
		{"-5m", `error: since "-5m": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)`},
		{"yesterday", `error: since "yesterday": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)`},
		{"d", `error: since "d": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)`},
		{"1.5d", `error: since "1.5d": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)`},
		{"", `error: since "": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)`},
	} {
		ts, err := ParseSince(tt.in, now)
		got := "error: " + fmt.Sprint(err)
		if err == nil {
			got = ts.UTC().Format(time.RFC3339Nano)
		}
		if got != tt.want {
			t.Errorf("ParseSince(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}
