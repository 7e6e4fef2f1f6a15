package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const goodLine = `{"time":"2026-11-27T14:03:12Z","kind":"connect","host":"a.example","decision":"allow","bytes_up":0,"bytes_down":0,"duration_ms":0}`

func scanHosts(t *testing.T, input string) (hosts []string, bad int) {
	t.Helper()
	bad, err := Scan(strings.NewReader(input), func(r Record) error {
		hosts = append(hosts, r.Host)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return hosts, bad
}

var scanTests = []struct {
	name  string
	input string
	hosts []string
	bad   int
}{
	{"empty", "", nil, 0},
	{"one", goodLine + "\n", []string{"a.example"}, 0},
	{"no final newline", goodLine, []string{"a.example"}, 0},
	{"crlf", goodLine + "\r\n" + goodLine + "\r\n", []string{"a.example", "a.example"}, 0},
	{"blank lines are not malformed", "\n   \n" + goodLine + "\n\t\n", []string{"a.example"}, 0},
	{"garbage", "hello\n" + goodLine + "\n", []string{"a.example"}, 1},
	{"torn then good", goodLine[:40] + "\n" + goodLine + "\n", []string{"a.example"}, 1},
	{"torn glued to good", goodLine[:40] + goodLine + "\n", nil, 1},
	{"torn at end", goodLine + "\n" + goodLine[:40], []string{"a.example"}, 1},
	{"not objects", "null\n[]\n42\n\"s\"\n" + goodLine + "\n", []string{"a.example"}, 4},
	{"object without time or kind", "{}\n" + `{"kind":"connect"}` + "\n" + `{"time":"2026-11-27T14:03:12Z"}` + "\n", nil, 3},
	{"wrong types", `{"time":"yesterday","kind":"connect"}` + "\n" + `{"time":"2026-11-27T14:03:12Z","kind":"connect","port":"443"}` + "\n", nil, 2},
	{"time out of range in UTC", `{"time":"0000-01-01T00:00:00+01:00","kind":"connect"}` + "\n" + `{"time":"0000-01-01T00:00:00-01:00","kind":"connect","host":"y0"}` + "\n", []string{"y0"}, 1},
	{"trailing junk", goodLine + "x\n", nil, 1},
	{"unknown fields are fine", `{"time":"2026-11-27T14:03:12Z","kind":"connect","host":"b.example","new_field":{"x":1}}` + "\n", []string{"b.example"}, 0},
	{"too long", `{"time":"2026-11-27T14:03:12Z","kind":"connect","detail":"` + strings.Repeat("x", MaxLineSize) + "\"}\n" + goodLine + "\n", []string{"a.example"}, 1},
	{"too long at end", strings.Repeat("x", 3*MaxLineSize), nil, 1},
}

func TestScan(t *testing.T) {
	for _, tt := range scanTests {
		hosts, bad := scanHosts(t, tt.input)
		if !slices.Equal(hosts, tt.hosts) || bad != tt.bad {
			t.Errorf("%s: Scan = %q, %d bad; want %q, %d bad", tt.name, hosts, bad, tt.hosts, tt.bad)
		}
	}
}

// The longest line a reader accepts is MaxLineSize bytes.
func TestScanLongestLine(t *testing.T) {
	prefix := `{"time":"2026-11-27T14:03:12Z","kind":"connect","host":"long.example","detail":"`
	line := prefix + strings.Repeat("x", MaxLineSize-len(prefix)-2) + `"}`
	if len(line) != MaxLineSize {
		t.Fatalf("line is %d bytes", len(line))
	}
	for _, tt := range []struct {
		input string
		hosts []string
		bad   int
	}{
		{line + "\n" + goodLine + "\n", []string{"long.example", "a.example"}, 0},
		{line[:len(line)-2] + "x" + line[len(line)-2:] + "\n" + goodLine + "\n", []string{"a.example"}, 1},
	} {
		hosts, bad := scanHosts(t, tt.input)
		if !slices.Equal(hosts, tt.hosts) || bad != tt.bad {
			t.Errorf("line of %d bytes: Scan = %q, %d bad; want %q, %d bad", len(tt.input)-len(goodLine)-2, hosts, bad, tt.hosts, tt.bad)
		}
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	bad, err := Scan(strings.NewReader("x\n"+goodLine+"\n"+goodLine+"\n"), func(Record) error { n++; return stop })
	if err != stop || n != 1 || bad != 1 {
		t.Errorf("Scan = %d bad, %v after %d calls; want 1, stop, 1", bad, err, n)
	}
}

type errReader struct{ data *strings.Reader }

func (r errReader) Read(p []byte) (int, error) {
	if r.data.Len() == 0 {
		return 0, errors.New("disk gone")
	}
	return r.data.Read(p)
}

func TestScanReadError(t *testing.T) {
	n := 0
	bad, err := Scan(errReader{strings.NewReader(goodLine + "\n")}, func(Record) error { n++; return nil })
	if err == nil || err.Error() != "disk gone" || n != 1 || bad != 0 {
		t.Errorf("Scan = %d bad, %v after %d records; want 0, disk gone, 1", bad, err, n)
	}
}

// What Write produces, Scan reads back the same.
func TestWriteScanRoundTrip(t *testing.T) {
	in := []Record{
		{Time: t0, Kind: KindConnect, Session: "s", Client: "unix", Proto: "socks5", Host: "ünïcode.example", Port: 1080,
			SNI: "x", Addr: "[::1]:1080", Decision: DecisionDeny, WouldDeny: true, Rule: "r", Reason: "a \"quoted\"\nreason\x00",
			Status: 5, BytesUp: -1, BytesDown: 1 << 40, Duration: 0.001, Event: "e", Detail: "\u2028\u009b"},
		{Time: t0.Add(time.Nanosecond), Kind: KindLifecycle},
	}
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	var out []Record
	bad, err := Scan(&buf, func(r Record) error { out = append(out, r); return nil })
	if err != nil || bad != 0 || !slices.Equal(out, in) {
		t.Errorf("round trip: %d bad, %v\n got: %+v\nwant: %+v", bad, err, out, in)
	}
}

// Every line of the fixed input is either malformed on purpose or exactly
// what Write produces for the record it holds, so `moat audit --json`
// reproduces the file.
func TestSmallFileIsWriterOutput(t *testing.T) {
	data, err := os.ReadFile("testdata/small.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	good := 0
	for line := range bytes.Lines(data) {
		r, ok := parseLine(line)
		if !ok {
			continue
		}
		good++
		var buf bytes.Buffer
		NewStreamWriter(&buf).Write(r)
		if buf.String() != string(line) {
			t.Errorf("re-encoded:\n got: %s want: %s", buf.String(), line)
		}
	}
	if good != 17 {
		t.Errorf("%d good lines; want 17", good)
	}
}

func FuzzScan(f *testing.F) {
	for _, tt := range scanTests {
		if len(tt.input) < 4096 {
			f.Add(tt.input)
		}
	}
	f.Fuzz(func(t *testing.T, input string) {
		var recs []Record
		bad, err := Scan(strings.NewReader(input), func(r Record) error { recs = append(recs, r); return nil })
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		// Every line is counted exactly once: good, bad or blank.
		lines := 0
		for line := range strings.Lines(input) {
			if strings.TrimSpace(line) != "" {
				lines++
			}
		}
		if len(recs)+bad != lines {
			t.Fatalf("%d records + %d bad != %d non-blank lines", len(recs), bad, lines)
		}
		// A record read is one Write can write and Scan read back.
		var buf bytes.Buffer
		w := NewStreamWriter(&buf)
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatalf("Write(%+v): %v", r, err)
			}
		}
		n := 0
		if bad, err := Scan(&buf, func(Record) error { n++; return nil }); err != nil || bad != 0 || n != len(recs) {
			t.Fatalf("rescan: %d of %d records, %d bad, %v", n, len(recs), bad, err)
		}
	})
}

// follower runs Follow in the background and collects what it reads.
type follower struct {
	cancel context.CancelFunc
	recs   chan Record
	done   chan struct{}
	bad    int
	err    error
}

func follow(t *testing.T, path string) *follower {
	ctx, cancel := context.WithCancel(t.Context())
	fl := &follower{cancel: cancel, recs: make(chan Record, 10000), done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		fl.bad, fl.err = Follow(ctx, path, func(r Record) error { fl.recs <- r; return nil })
	}()
	t.Cleanup(func() { cancel(); <-fl.done })
	return fl
}

// expect waits for the next records' Detail values to be want.
func (fl *follower) expect(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case r := <-fl.recs:
			got = append(got, r.Detail)
		case <-timeout:
			t.Fatalf("Follow read %q; want %q", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Follow read %q; want %q", got, want)
	}
}

func (fl *follower) stop(t *testing.T) (bad int) {
	t.Helper()
	fl.cancel()
	<-fl.done
	if fl.err != nil {
		t.Fatalf("Follow = %v; want nil once ctx is done", fl.err)
	}
	select {
	case r := <-fl.recs:
		t.Fatalf("Follow read an extra record: %+v", r)
	default:
	}
	return fl.bad
}

func details(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

func writeDetails(t *testing.T, w *Writer, ds []string) {
	t.Helper()
	for _, d := range ds {
		if err := w.Write(Record{Time: t0, Kind: KindLifecycle, Detail: d}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var one bytes.Buffer
	NewStreamWriter(&one).Write(Record{Time: t0, Kind: KindLifecycle, Detail: "a000"})
	// Ten lines a file.
	w, err := Open(path, Options{MaxSize: 10 * int64(one.Len()), MaxFiles: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeDetails(t, w, details("a", 0, 5)) // existing content
	fl := follow(t, path)
	fl.expect(t, details("a", 0, 5)...)

	// Appends, then one rotation written all at once: the tail of the
	// old file and the head of the new one both arrive, in order.
	writeDetails(t, w, details("b", 0, 12))
	fl.expect(t, details("b", 0, 12)...)
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("no rotation happened: %v", err)
	}

	// Several rotations, each waited for.
	for round := range 6 {
		ds := details(fmt.Sprintf("c%d-", round), 0, 5)
		writeDetails(t, w, ds)
		fl.expect(t, ds...)
	}

	// A malformed line and a partial line: the partial one waits for its end.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("garbage\n" + `{"time":"2026-11-27T14:03:12Z","kind":"lifecycle",`)
	time.Sleep(3 * FollowInterval)
	f.WriteString(`"detail":"joined"}` + "\n")
	f.Close()
	fl.expect(t, "joined")
	if bad := fl.stop(t); bad != 1 {
		t.Errorf("bad = %d; want 1", bad)
	}
}

func TestFollowTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeDetails(t, w, details("a", 0, 20))
	fl := follow(t, path)
	fl.expect(t, details("a", 0, 20)...)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * FollowInterval) // let Follow see the file shrink
	w2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	writeDetails(t, w2, details("b", 0, 3))
	fl.expect(t, details("b", 0, 3)...)
	if bad := fl.stop(t); bad != 0 {
		t.Errorf("bad = %d; want 0", bad)
	}
}

// The file removed and recreated by someone else (logrotate's create mode).
func TestFollowRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeDetails(t, w, details("a", 0, 2))
	fl := follow(t, path)
	fl.expect(t, details("a", 0, 2)...)
	w.Close()
	os.Remove(path)
	time.Sleep(3 * FollowInterval) // Follow waits while the file is missing
	w, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeDetails(t, w, details("b", 0, 2))
	fl.expect(t, details("b", 0, 2)...)
	fl.stop(t)
}

func TestFollowMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.jsonl")
	_, err := Follow(t.Context(), path, func(Record) error { return nil })
	if want := "open " + path + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Follow(missing) = %v; want %s", err, want)
	}
}

func TestFollowCallbackError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeDetails(t, w, details("a", 0, 3))
	stop := errors.New("stop")
	n := 0
	_, err = Follow(t.Context(), path, func(Record) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("Follow = %v after %d records; want stop after 1", err, n)
	}
}
