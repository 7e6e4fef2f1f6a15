package audit

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSummarizeSmall(t *testing.T) {
	s := Summarize(smallRecords(t))
	want := Summary{
		Records:   12,
		First:     time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC),
		Last:      time.Date(2026, 11, 27, 14, 0, 11, 0, time.UTC),
		Decisions: map[string]int{"allow": 6, "deny": 3, "ask": 1, "": 2},
		Kinds:     map[string]int{"connect": 5, "request": 4, "lifecycle": 2, "permission": 1},
		WouldDeny: 1,
		Hosts: []HostStat{
			{Host: "api.anthropic.com", Count: 3, Allowed: 3, BytesUp: 2048 + 512 + 3000, BytesDown: 1048576 + 2048 + 9000},
			{Host: "evil.example", Count: 2, Denied: 2},
			{Host: "169.254.169.254", Count: 1, Denied: 1},
			{Host: "example.com", Count: 1, Allowed: 1, BytesUp: 123, BytesDown: 4567},
			{Host: "files.example.net", Count: 1, Allowed: 1, BytesUp: 90, BytesDown: 150},
			{Host: "pypi.org", Count: 1, Allowed: 1, BytesUp: 100, BytesDown: 200000},
		},
		Refusals: []RuleStat{
			{Rule: "default-deny", Denied: 2, WouldDeny: 1, Example: "evil.example:443"},
			{Rule: "private-address", Denied: 1, Example: "169.254.169.254:80"},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Summarize:\n got: %+v\nwant: %+v", s, want)
	}

	var text strings.Builder
	if err := s.WriteText(&text, 3); err != nil {
		t.Fatal(err)
	}
	const wantText = `records     12, from 2026-11-27T14:00:00Z to 2026-11-27T14:00:11Z
decisions   allow 6, deny 3, ask 1, none 2
kinds       connect 5, request 4, lifecycle 2, permission 1
would-deny  1

HOST               COUNT  ALLOWED  DENIED       UP     DOWN
api.anthropic.com      3        3       0  5.4 KiB  1.0 MiB
evil.example           2        0       2      0 B      0 B
169.254.169.254        1        0       1      0 B      0 B
… 3 more hosts

REFUSED BY       DENIED  WOULD-DENY  EXAMPLE
default-deny          2           1  evil.example:443
private-address       1           0  169.254.169.254:80
`
	if text.String() != wantText {
		t.Errorf("WriteText(3):\n got:\n%s\nwant:\n%s", text.String(), wantText)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	s := Summarize(nil)
	var text strings.Builder
	s.WriteText(&text, 10)
	const want = "records     0\ndecisions   -\nkinds       -\nwould-deny  0\n"
	if text.String() != want {
		t.Errorf("WriteText(empty):\n got: %q\nwant: %q", text.String(), want)
	}
	b, _ := json.Marshal(s)
	const wantJSON = `{"records":0,"first":"0001-01-01T00:00:00Z","last":"0001-01-01T00:00:00Z","decisions":{},"kinds":{},"would_deny":0,"hosts":[],"refusals":[]}`
	if string(b) != wantJSON {
		t.Errorf("JSON(empty):\n got: %s\nwant: %s", b, wantJSON)
	}
}

func TestSummaryTopAndOddRules(t *testing.T) {
	recs := []Record{
		{Time: t0, Kind: KindPermission, Decision: DecisionDeny}, // no rule, no host
		{Time: t0, Kind: KindConnect, Host: "b\x1b.example", Port: 443, Decision: DecisionDeny, Rule: "r 1"},
		{Time: t0, Kind: KindConnect, Host: "a.example", Decision: DecisionAsk},
	}
	s := Summarize(recs)
	var text strings.Builder
	s.WriteText(&text, 1)
	const want = `records     3, from 2026-11-27T14:03:12Z to 2026-11-27T14:03:12Z
decisions   deny 2, ask 1
kinds       connect 2, permission 1
would-deny  0

HOST       COUNT  ALLOWED  DENIED   UP  DOWN
a.example      1        0       0  0 B   0 B
… 1 more host

REFUSED BY  DENIED  WOULD-DENY  EXAMPLE
(no rule)        1           0  permission
… 1 more rule
`
	if text.String() != want {
		t.Errorf("WriteText(1):\n got:\n%s\nwant:\n%s", text.String(), want)
	}
	text.Reset()
	s.WriteText(&text, 0)
	if !strings.Contains(text.String(), `"b\x1b.example"      1        0       1`) ||
		!strings.Contains(text.String(), `"r 1"            1           0  "b\x1b.example:443"`) {
		t.Errorf("WriteText(0) does not quote the hostile host and rule:\n%s", text.String())
	}
	if top := s.Top(1); len(top.Hosts) != 1 || len(top.Refusals) != 1 || len(s.Hosts) != 2 {
		t.Errorf("Top(1): %d hosts, %d rules (original %d hosts)", len(top.Hosts), len(top.Refusals), len(s.Hosts))
	}
}

// The Summarizer can be read, fed and read again.
func TestSummarizerIncremental(t *testing.T) {
	var z Summarizer
	z.Add(Record{Time: t0, Kind: KindConnect, Host: "a", Decision: DecisionAllow, BytesUp: 1})
	first := z.Summary()
	z.Add(Record{Time: t0.Add(-time.Hour), Kind: KindConnect, Host: "a", Decision: DecisionAllow, BytesUp: 2})
	second := z.Summary()
	if first.Records != 1 || first.Hosts[0].BytesUp != 1 || first.Decisions["allow"] != 1 {
		t.Errorf("first summary changed by a later Add: %+v", first)
	}
	if second.Records != 2 || second.Hosts[0].BytesUp != 3 || !second.First.Equal(t0.Add(-time.Hour)) || !second.Last.Equal(t0) {
		t.Errorf("second summary: %+v", second)
	}
}
