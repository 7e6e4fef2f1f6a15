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
		Records:   17,
		First:     time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC),
		Last:      time.Date(2026, 11, 27, 14, 0, 16, 0, time.UTC),
		Decisions: map[string]int{"allow": 7, "deny": 4, "ask": 1, "": 2},
		Kinds:     map[string]int{"connect": 7, "request": 4, "lifecycle": 2, "permission": 1},
		WouldDeny: 1, // pypi.org's tunnel: its close record is not counted again
		Hosts: []HostStat{
			// Two tunnels (open + close records each) and one request.
			{Host: "api.anthropic.com", Count: 3, Allowed: 3, BytesUp: 2048 + 512 + 3000, BytesDown: 1048576 + 2048 + 9000},
			// A tunnel allowed, then refused for its TLS server name; a request.
			{Host: "files.example.net", Count: 3, Allowed: 2, Denied: 1, BytesUp: 90, BytesDown: 150},
			{Host: "evil.example", Count: 2, Denied: 2},
			{Host: "169.254.169.254", Count: 1, Denied: 1},
			{Host: "example.com", Count: 1, Allowed: 1, BytesUp: 123, BytesDown: 4567},
			{Host: "pypi.org", Count: 1, Allowed: 1, BytesUp: 100, BytesDown: 200000},
		},
		Refusals: []RuleStat{
			{Rule: "default-deny", Denied: 2, WouldDeny: 1, Example: "evil.example:443"},
			{Rule: "private-address", Denied: 1, Example: "169.254.169.254:80"},
			{Rule: "sni-mismatch", Denied: 1, Example: "files.example.net:443"},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Summarize:\n got: %+v\nwant: %+v", s, want)
	}

	var text strings.Builder
	if err := s.WriteText(&text, 3); err != nil {
		t.Fatal(err)
	}
	const wantText = `records     17, from 2026-11-27T14:00:00Z to 2026-11-27T14:00:16Z
decisions   allow 7, deny 4, ask 1, none 2
kinds       connect 7, request 4, lifecycle 2, permission 1
would-deny  1

HOST               COUNT  ALLOWED  DENIED       UP     DOWN
api.anthropic.com      3        3       0  5.4 KiB  1.0 MiB
files.example.net      3        2       1     90 B    150 B
evil.example           2        0       2      0 B      0 B
… 3 more hosts

REFUSED BY       DENIED  WOULD-DENY  EXAMPLE
default-deny          2           1  evil.example:443
private-address       1           0  169.254.169.254:80
sni-mismatch          1           0  files.example.net:443
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

// A close record whose open record is missing (rotated away) is counted
// in full; one whose open record was counted adds only bytes.
func TestSummarizeTunnelClose(t *testing.T) {
	open := Record{Time: t0, Kind: KindConnect, Host: "a", Decision: DecisionAllow, Event: EventOpen, WouldDeny: true, Rule: "r"}
	closed := open
	closed.Event, closed.BytesUp, closed.BytesDown = EventClose, 5, 7
	got := Summarize([]Record{closed})
	if got.Decisions["allow"] != 1 || got.WouldDeny != 1 || got.Hosts[0] != (HostStat{Host: "a", Count: 1, Allowed: 1, BytesUp: 5, BytesDown: 7}) {
		t.Errorf("close alone: %+v", got)
	}
	got = Summarize([]Record{open, closed})
	if got.Records != 2 || got.Decisions["allow"] != 1 || got.Kinds["connect"] != 1 || got.WouldDeny != 1 ||
		got.Refusals[0].WouldDeny != 1 || got.Hosts[0] != (HostStat{Host: "a", Count: 1, Allowed: 1, BytesUp: 5, BytesDown: 7}) {
		t.Errorf("open then close: %+v", got)
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
