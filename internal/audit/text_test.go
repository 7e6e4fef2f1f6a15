package audit

import (
	"os"
	"strings"
	"testing"
	"unicode"
)

func TestFormatText(t *testing.T) {
	for _, tt := range []struct {
		r    Record
		want string
	}{
		{
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Host: "evil.example", Port: 443, Decision: DecisionDeny,
				Rule: "default-deny", Reason: "evil.example:443 is not in network.allow; add it there to allow it"},
			`2026-11-27T14:03:12Z deny  connect evil.example:443 rule=default-deny reason="evil.example:443 is not in network.allow; add it there to allow it"`,
		},
		{
			Record{Time: t0.Add(999 * 1e6), Kind: KindRequest, Proto: "http", Method: "GET", Host: "example.com", Port: 80,
				Path: "/path", Decision: DecisionAllow, Rule: "moat.yaml:3 network.allow[0]", Status: 200, BytesUp: 123,
				BytesDown: 4567, Duration: 12.34},
			`2026-11-27T14:03:12Z allow http    GET example.com:80/path 200 up=123 down=4567 12.3ms`,
		},
		{
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Method: "CONNECT", Host: "a.example", Port: 443, SNI: "b.example",
				Decision: DecisionDeny, Rule: "sni-mismatch", Status: 403},
			`2026-11-27T14:03:12Z deny  connect CONNECT a.example:443 sni=b.example 403 rule=sni-mismatch`,
		},
		{ // same SNI as host: not repeated
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Host: "a.example", Port: 443, SNI: "A.example.",
				Decision: DecisionAllow, BytesUp: 1, BytesDown: 2, Duration: 3},
			`2026-11-27T14:03:12Z allow connect a.example:443 up=1 down=2 3.0ms`,
		},
		{
			Record{Time: t0, Kind: KindConnect, Proto: "socks5", Host: "::1", Port: 22, Decision: DecisionDeny, Rule: "private-address"},
			`2026-11-27T14:03:12Z deny  socks5  [::1]:22 rule=private-address`,
		},
		{
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Host: "pypi.org", Port: 443, Decision: DecisionAllow,
				WouldDeny: true, Rule: "default-deny", Reason: "not listed"},
			`2026-11-27T14:03:12Z allow connect pypi.org:443 up=0 down=0 0.0ms would-deny rule=default-deny reason="not listed"`,
		},
		{ // a tunnel's open record has no traffic yet; its close record has
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Method: "CONNECT", Host: "a.example", Port: 443,
				Decision: DecisionAllow, Event: EventOpen, Status: 200},
			`2026-11-27T14:03:12Z allow connect open CONNECT a.example:443 200`,
		},
		{
			Record{Time: t0, Kind: KindConnect, Proto: "connect", Method: "CONNECT", Host: "a.example", Port: 443,
				Decision: DecisionAllow, Event: EventClose, Status: 200, BytesUp: 10, Duration: 1000},
			`2026-11-27T14:03:12Z allow connect close CONNECT a.example:443 200 up=10 down=0 1000.0ms`,
		},
		{
			Record{Time: t0, Kind: KindLifecycle, Event: "reload-failed", Detail: `moat.yaml:3: bad "x"`},
			`2026-11-27T14:03:12Z -     lifecycle reload-failed detail="moat.yaml:3: bad \"x\""`,
		},
		{
			Record{Time: t0, Kind: KindLifecycle},
			`2026-11-27T14:03:12Z -     lifecycle`,
		},
		{
			Record{Time: t0, Kind: KindPermission, Decision: DecisionAsk, Rule: "moat.yaml:30 permissions.ask[0]", Detail: "Bash(npm publish)"},
			`2026-11-27T14:03:12Z ask   permission rule="moat.yaml:30 permissions.ask[0]" detail="Bash(npm publish)"`,
		},
		{ // a hostile host cannot forge columns or reach the terminal
			Record{Time: t0, Kind: KindRequest, Proto: "http", Method: "GET", Host: "x rule=fake\x1b[2J\u202e", Port: 80,
				Path: "/\u009b", Decision: DecisionDeny, Reason: "r\n"},
			`2026-11-27T14:03:12Z deny  http    GET "x rule=fake\x1b[2J\u202e:80/\u009b" reason="r\n"`,
		},
		{ // an unknown decision or proto is shown as it is, quoted if need be
			Record{Time: t0, Kind: "future kind", Decision: "maybe"},
			`2026-11-27T14:03:12Z maybe "future kind"`,
		},
	} {
		got := FormatText(tt.r)
		if got != tt.want {
			t.Errorf("FormatText(%+v):\n got: %s\nwant: %s", tt.r, got, tt.want)
		}
		for _, c := range got {
			if !unicode.IsPrint(c) {
				t.Errorf("FormatText output holds unprintable %U: %q", c, got)
			}
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 20: "1.0 MiB",
		5<<30 + 1<<29: "5.5 GiB", 3 << 40: "3.0 TiB", 1 << 52: "4096.0 TiB", -2048: "-2.0 KiB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q; want %q", n, got, want)
		}
	}
}

func smallRecords(t *testing.T) []Record {
	t.Helper()
	f, err := os.Open("testdata/small.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []Record
	bad, err := Scan(f, func(r Record) error { recs = append(recs, r); return nil })
	if err != nil || bad != 2 || len(recs) != 17 {
		t.Fatalf("testdata/small.jsonl: %d records, %d bad, %v; want 17, 2, nil", len(recs), bad, err)
	}
	return recs
}

func TestFormatTextSmall(t *testing.T) {
	var got strings.Builder
	for _, r := range smallRecords(t) {
		got.WriteString(FormatText(r) + "\n")
	}
	const want = `2026-11-27T14:00:00Z -     lifecycle start detail="listening on 127.0.0.1:3128 and /run/moat/s1.sock"
2026-11-27T14:00:01Z allow http    GET example.com:80/index.html 200 up=123 down=4567 12.3ms
2026-11-27T14:00:02Z allow connect open CONNECT api.anthropic.com:443 200
2026-11-27T14:00:03Z deny  connect CONNECT evil.example:443 403 rule=default-deny reason="evil.example:443 is not in network.allow; add it there to allow it"
2026-11-27T14:00:04Z deny  http    GET 169.254.169.254:80/latest/meta-data/ 403 rule=private-address reason="169.254.169.254 is a link-local address; list it in network.allow_private to allow it"
2026-11-27T14:00:05Z allow socks5  open CONNECT api.anthropic.com:443
2026-11-27T14:00:06Z allow reverse POST api.anthropic.com:443/v1/messages 200 up=3000 down=9000 850.2ms
2026-11-27T14:00:07Z allow connect open CONNECT pypi.org:443 200 would-deny rule=default-deny reason="pypi.org:443 is not in network.allow"
2026-11-27T14:00:08Z allow connect close CONNECT api.anthropic.com:443 200 up=2048 down=1048576 6000.5ms
2026-11-27T14:00:09Z ask   permission rule="moat.yaml:30 permissions.ask[0]" reason="publishing needs a person's approval" detail="Bash(npm publish)"
2026-11-27T14:00:10Z allow connect open CONNECT files.example.net:443 200
2026-11-27T14:00:11Z deny  connect close CONNECT files.example.net:443 sni=evil.example 200 rule=sni-mismatch reason="TLS server name \"evil.example\" does not match the tunnel's destination \"files.example.net\""
2026-11-27T14:00:12Z allow socks5  close CONNECT api.anthropic.com:443 up=512 down=2048 7000.0ms
2026-11-27T14:00:13Z allow connect close CONNECT pypi.org:443 200 up=100 down=200000 6000.0ms would-deny rule=default-deny reason="pypi.org:443 is not in network.allow"
2026-11-27T14:00:14Z deny  connect CONNECT evil.example:8443 403 rule=default-deny reason="evil.example:8443 is not in network.allow; add it there to allow it"
2026-11-27T14:00:15Z allow http    GET files.example.net:80/a.txt 404 up=90 down=150 2.0ms
2026-11-27T14:00:16Z -     lifecycle stop
`
	if got.String() != want {
		t.Errorf("FormatText over testdata/small.jsonl:\n got:\n%s\nwant:\n%s", got.String(), want)
	}
}
