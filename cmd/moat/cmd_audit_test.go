package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// auditTestdata holds small.jsonl: 17 records as the proxy writes them,
// two malformed lines and a blank one.
const auditTestdata = "../../internal/audit/testdata"

// The text lines of small.jsonl's records, in order, by their second.
var smallText = map[string]string{
	"00": `2026-11-27T14:00:00Z -     lifecycle start detail="listening on 127.0.0.1:3128 and /run/moat/s1.sock"`,
	"01": `2026-11-27T14:00:01Z allow http    GET example.com:80/index.html 200 up=123 down=4567 12.3ms`,
	"02": `2026-11-27T14:00:02Z allow connect open CONNECT api.anthropic.com:443 200`,
	"03": `2026-11-27T14:00:03Z deny  connect CONNECT evil.example:443 403 rule=default-deny reason="evil.example:443 is not in network.allow; add it there to allow it"`,
	"04": `2026-11-27T14:00:04Z deny  http    GET 169.254.169.254:80/latest/meta-data/ 403 rule=private-address reason="169.254.169.254 is a link-local address; list it in network.allow_private to allow it"`,
	"05": `2026-11-27T14:00:05Z allow socks5  open CONNECT api.anthropic.com:443`,
	"06": `2026-11-27T14:00:06Z allow reverse POST api.anthropic.com:443/v1/messages 200 up=3000 down=9000 850.2ms`,
	"07": `2026-11-27T14:00:07Z allow connect open CONNECT pypi.org:443 200 would-deny rule=default-deny reason="pypi.org:443 is not in network.allow"`,
	"08": `2026-11-27T14:00:08Z allow connect close CONNECT api.anthropic.com:443 200 up=2048 down=1048576 6000.5ms`,
	"09": `2026-11-27T14:00:09Z ask   permission rule="moat.yaml:30 permissions.ask[0]" reason="publishing needs a person's approval" detail="Bash(npm publish)"`,
	"10": `2026-11-27T14:00:10Z allow connect open CONNECT files.example.net:443 200`,
	"11": `2026-11-27T14:00:11Z deny  connect close CONNECT files.example.net:443 sni=evil.example 200 rule=sni-mismatch reason="TLS server name \"evil.example\" does not match the tunnel's destination \"files.example.net\""`,
	"12": `2026-11-27T14:00:12Z allow socks5  close CONNECT api.anthropic.com:443 up=512 down=2048 7000.0ms`,
	"13": `2026-11-27T14:00:13Z allow connect close CONNECT pypi.org:443 200 up=100 down=200000 6000.0ms would-deny rule=default-deny reason="pypi.org:443 is not in network.allow"`,
	"14": `2026-11-27T14:00:14Z deny  connect CONNECT evil.example:8443 403 rule=default-deny reason="evil.example:8443 is not in network.allow; add it there to allow it"`,
	"15": `2026-11-27T14:00:15Z allow http    GET files.example.net:80/a.txt 404 up=90 down=150 2.0ms`,
	"16": `2026-11-27T14:00:16Z -     lifecycle stop`,
}

// lines joins smallText's lines for the given seconds.
func lines(secs ...string) string {
	var b strings.Builder
	for _, s := range secs {
		b.WriteString(smallText[s] + "\n")
	}
	return b.String()
}

const skipped2 = "moat: audit: skipped 2 malformed lines in small.jsonl\n"

// syncBuffer is a bytes.Buffer safe for a reader and a writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runMoat(ctx context.Context, stdin string, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string { return envVars[k] }}
	code = run(ctx, e, args)
	return code, out.String(), errb.String()
}

const auditUsageTail = `usage: moat audit [FILE] [--follow] [--host H] [--decision allow|deny|ask] [--kind K]
                  [--session S] [--since 10m|RFC3339] [--json]
       moat audit summary [FILE] [--host H] [--decision D] [--kind K] [--session S]
                  [--since T] [--top N] [--json]

FILE defaults to $XDG_STATE_HOME/moat/audit.jsonl (else
~/.local/state/moat/audit.jsonl); "-" reads standard input.
`

func TestAuditCLI(t *testing.T) {
	t.Chdir(auditTestdata)
	small, err := os.ReadFile("small.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var goodJSON strings.Builder // the file's well-formed lines, as they are
	for line := range strings.Lines(string(small)) {
		if strings.HasPrefix(line, `{"time":"2026-11-27T14:00:`) && strings.HasSuffix(line, "}\n") {
			goodJSON.WriteString(line)
		}
	}
	all := lines("00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16")
	summaryAll := `records     17, from 2026-11-27T14:00:00Z to 2026-11-27T14:00:16Z
decisions   allow 7, deny 4, ask 1, none 2
kinds       connect 7, request 4, lifecycle 2, permission 1
would-deny  1

HOST               COUNT  ALLOWED  DENIED       UP       DOWN
api.anthropic.com      3        3       0  5.4 KiB    1.0 MiB
files.example.net      3        2       1     90 B      150 B
evil.example           2        0       2      0 B        0 B
169.254.169.254        1        0       1      0 B        0 B
example.com            1        1       0    123 B    4.5 KiB
pypi.org               1        1       0    100 B  195.3 KiB

REFUSED BY       DENIED  WOULD-DENY  EXAMPLE
default-deny          2           1  evil.example:443
private-address       1           0  169.254.169.254:80
sni-mismatch          1           0  files.example.net:443
`
	stateDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stateDir, "moat"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "moat", "audit.jsonl"), small, 0o600); err != nil {
		t.Fatal(err)
	}
	defaultName := filepath.Join(stateDir, "moat", "audit.jsonl")

	for _, tt := range []struct {
		name   string
		args   []string
		stdin  string
		env    map[string]string
		code   int
		stdout string
		stderr string
	}{
		{"all, as text", []string{"audit", "small.jsonl"}, "", nil, 0, all, skipped2},
		{"json reproduces the good lines", []string{"audit", "small.jsonl", "--json"}, "", nil, 0, goodJSON.String(), skipped2},
		{"denials", []string{"audit", "--decision", "deny", "small.jsonl"}, "", nil, 0, lines("03", "04", "11", "14"), skipped2},
		{"flags after FILE", []string{"audit", "small.jsonl", "--decision=deny", "--host", "evil.example"}, "", nil, 0, lines("03", "14"), skipped2},
		{"wildcard host", []string{"audit", "--host", "*.example", "small.jsonl"}, "", nil, 0, lines("03", "14"), skipped2},
		{"wildcard host, not the apex", []string{"audit", "--host", "*.example.com", "small.jsonl"}, "", nil, 0, "", skipped2},
		{"kind", []string{"audit", "--kind", "permission", "small.jsonl"}, "", nil, 0, lines("09"), skipped2},
		{"session and decision", []string{"audit", "--session", "s2", "--decision", "allow", "small.jsonl"}, "", nil, 0, lines("05", "06", "07", "12", "13"), skipped2},
		{"since a time", []string{"audit", "--since", "2026-11-27T14:00:14Z", "small.jsonl"}, "", nil, 0, lines("14", "15", "16"), skipped2},
		{"since a duration", []string{"audit", "--since", "876000h", "--kind", "lifecycle", "small.jsonl"}, "", nil, 0, lines("00", "16"), skipped2},
		{"json and a filter", []string{"audit", "--json", "--kind", "permission", "small.jsonl"}, "", nil, 0,
			`{"time":"2026-11-27T14:00:09Z","kind":"permission","session":"s1","decision":"ask","rule":"moat.yaml:30 permissions.ask[0]","reason":"publishing needs a person's approval","bytes_up":0,"bytes_down":0,"duration_ms":0,"detail":"Bash(npm publish)"}` + "\n", skipped2},
		{"stdin", []string{"audit", "-", "--decision", "ask"}, string(small), nil, 0, lines("09"), "moat: audit: skipped 2 malformed lines in standard input\n"},
		{"stdin, one bad line", []string{"audit", "-"}, "{}\n", nil, 0, "", "moat: audit: skipped 1 malformed line in standard input\n"},
		{"follow on stdin reads to its end", []string{"audit", "--follow", "-", "--kind", "lifecycle"}, string(small), nil, 0, lines("00", "16"), "moat: audit: skipped 2 malformed lines in standard input\n"},
		{"default path", []string{"audit", "--kind", "lifecycle"}, "", map[string]string{"XDG_STATE_HOME": stateDir}, 0, lines("00", "16"),
			"moat: audit: skipped 2 malformed lines in " + defaultName + "\n"},
		{"summary", []string{"audit", "summary", "small.jsonl", "--top", "0"}, "", nil, 0, summaryAll, skipped2},
		{"summary, top 1, filtered", []string{"audit", "summary", "--session", "s1", "--top", "1", "small.jsonl"}, "", nil, 0,
			`records     8, from 2026-11-27T14:00:01Z to 2026-11-27T14:00:15Z
decisions   allow 4, deny 2, ask 1
kinds       connect 4, request 2, permission 1
would-deny  0

HOST               COUNT  ALLOWED  DENIED    UP   DOWN
files.example.net      3        2       1  90 B  150 B
… 3 more hosts

REFUSED BY    DENIED  WOULD-DENY  EXAMPLE
default-deny       1           0  evil.example:443
… 1 more rule
`, skipped2},
		{"summary json", []string{"audit", "summary", "--json", "--decision", "deny", "--top", "2", "small.jsonl"}, "", nil, 0, `{
  "records": 4,
  "first": "2026-11-27T14:00:03Z",
  "last": "2026-11-27T14:00:14Z",
  "decisions": {
    "deny": 4
  },
  "kinds": {
    "connect": 3,
    "request": 1
  },
  "would_deny": 0,
  "hosts": [
    {
      "host": "evil.example",
      "count": 2,
      "allowed": 0,
      "denied": 2,
      "bytes_up": 0,
      "bytes_down": 0
    },
    {
      "host": "169.254.169.254",
      "count": 1,
      "allowed": 0,
      "denied": 1,
      "bytes_up": 0,
      "bytes_down": 0
    }
  ],
  "refusals": [
    {
      "rule": "default-deny",
      "denied": 2,
      "would_deny": 0,
      "example": "evil.example:443"
    },
    {
      "rule": "private-address",
      "denied": 1,
      "would_deny": 0,
      "example": "169.254.169.254:80"
    }
  ]
}
`, skipped2},
		{"summary of nothing", []string{"audit", "summary", "-"}, "", nil, 0, "records     0\ndecisions   -\nkinds       -\nwould-deny  0\n", ""},

		// Errors.
		{"missing file", []string{"audit", "nope.jsonl"}, "", nil, 4, "",
			"moat: audit: open nope.jsonl: no such file or directory; is the proxy writing elsewhere? (--audit / audit.file)\n"},
		{"missing file, follow", []string{"audit", "--follow", "nope.jsonl"}, "", nil, 4, "",
			"moat: audit: open nope.jsonl: no such file or directory; is the proxy writing elsewhere? (--audit / audit.file)\n"},
		{"missing file, summary", []string{"audit", "summary", "nope.jsonl"}, "", nil, 4, "",
			"moat: audit: open nope.jsonl: no such file or directory; is the proxy writing elsewhere? (--audit / audit.file)\n"},
		{"missing default", []string{"audit"}, "", map[string]string{"HOME": "/nonexistent-home"}, 4, "",
			"moat: audit: open /nonexistent-home/.local/state/moat/audit.jsonl: no such file or directory; is the proxy writing elsewhere? (--audit / audit.file)\n"},
		{"a directory", []string{"audit", "."}, "", nil, 4, "", "moat: audit: read .: is a directory\n"},
		{"unknown decision", []string{"audit", "--decision", "refuse", "small.jsonl"}, "", nil, 2, "",
			"moat: audit: decision \"refuse\": want allow, deny or ask\n"},
		{"unknown decision, summary", []string{"audit", "summary", "--decision", "Deny"}, "", nil, 2, "",
			"moat: audit: decision \"Deny\": want allow, deny or ask\n"},
		{"bad since", []string{"audit", "--since", "yesterday", "small.jsonl"}, "", nil, 2, "",
			"moat: audit: since \"yesterday\": want a duration (10m, 2h, 3d) or a time (2026-11-27T14:00:00Z)\n"},
		{"empty wildcard", []string{"audit", "--host", "*.", "small.jsonl"}, "", nil, 2, "",
			"moat: audit: host \"*.\": empty domain after wildcard; write \"*.example.com\"\n"},
		{"negative top", []string{"audit", "summary", "--top", "-1", "small.jsonl"}, "", nil, 2, "",
			"moat: audit: --top -1: want 0 (all) or more\n"},
		{"two files", []string{"audit", "a.jsonl", "b.jsonl"}, "", nil, 2, "",
			"moat: audit: 2 files given (a.jsonl b.jsonl); want at most one\n" + auditUsageTail},
		{"unknown flag", []string{"audit", "--tail"}, "", nil, 2, "",
			"moat: audit: flag provided but not defined: -tail\n" + auditUsageTail},
		{"summary has no follow", []string{"audit", "summary", "--follow"}, "", nil, 2, "",
			"moat: audit: flag provided but not defined: -follow\n" + auditUsageTail},
		{"no default", []string{"audit"}, "", map[string]string{}, 2, "",
			"moat: audit: no FILE given, and neither XDG_STATE_HOME nor HOME is set to find the default\n"},
		{"after --, a FILE", []string{"audit", "--kind", "permission", "--", "small.jsonl"}, "", nil, 0, lines("09"), skipped2},
	} {
		code, stdout, stderr := runMoat(t.Context(), tt.stdin, tt.env, tt.args...)
		if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
			t.Errorf("%s: moat %s\n exit %d; want %d\n stdout:\n%s\n want:\n%s\n stderr:\n%s\n want:\n%s",
				tt.name, strings.Join(tt.args, " "), code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
		}
	}
}

func TestAuditHelp(t *testing.T) {
	code, stdout, stderr := runMoat(t.Context(), "", nil, "audit", "-h")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, auditUsageTail+"\nflags:\n  -decision decision\n") ||
		!strings.Contains(stdout, "  -follow\n") {
		t.Errorf("moat audit -h: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = runMoat(t.Context(), "", nil, "audit", "summary", "--help")
	if code != 0 || !strings.Contains(stdout, "  -top N\n") || strings.Contains(stdout, "  -follow\n") {
		t.Errorf("moat audit summary --help: exit %d, stdout:\n%s", code, stdout)
	}
	_, _, stderr = runMoat(t.Context(), "", nil, "help")
	if !strings.Contains(stderr, "  audit      show, follow and summarise the audit log\n") {
		t.Errorf("moat help does not list audit:\n%s", stderr)
	}
}

func TestAuditFollowCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	small, err := os.ReadFile(filepath.Join(auditTestdata, "small.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	head, tail, _ := bytes.Cut(small, []byte(`{"time":"2026-11-27T14:00:09Z"`))
	tail = append([]byte(`{"time":"2026-11-27T14:00:09Z"`), tail...)
	if err := os.WriteFile(path, head, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	done := make(chan int)
	go func() { done <- run(ctx, e, []string{"audit", "--follow", "--decision", "deny", path}) }()

	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for stdout.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("moat audit --follow printed:\n%s\nwant:\n%s", stdout.String(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(lines("03", "04"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(tail)
	f.Close()
	waitFor(lines("03", "04", "11", "14"))
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after cancel; want 0", code)
	}
	if got, want := stderr.String(), "moat: audit: skipped 2 malformed lines in "+path+"\n"; got != want {
		t.Errorf("stderr %q; want %q", got, want)
	}
}
