package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 14, 3, 12, 0, time.UTC)

// readLines returns the non-blank lines of a file.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return out
}

func TestWriteLine(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	r := Record{Time: time.Date(2026, 11, 27, 15, 3, 12, 500_000_000, time.FixedZone("CET", 3600)),
		Kind: KindRequest, Proto: "http", Method: "GET", Host: "example.com", Port: 80, Path: "/a<b>",
		Decision: DecisionAllow, Status: 200, BytesUp: 1, BytesDown: 2, Duration: 1.5}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-27T14:03:12.5Z","kind":"request","proto":"http","method":"GET","host":"example.com","port":80,"path":"/a<b>","decision":"allow","status":200,"bytes_up":1,"bytes_down":2,"duration_ms":1.5}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("line:\n got: %s\nwant: %s", got, want)
	}
}

func TestWriteFillsTime(t *testing.T) {
	var buf bytes.Buffer
	before := time.Now()
	if err := NewStreamWriter(&buf).Write(Record{Kind: KindLifecycle, Event: "start"}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	var got Record
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Time.Before(before.Truncate(time.Microsecond)) || got.Time.After(after) || got.Time.Location() != time.UTC {
		t.Errorf("time = %v; want UTC between %v and %v", got.Time, before, after)
	}
	if !strings.Contains(buf.String(), `Z","kind"`) {
		t.Errorf("time not written in UTC: %s", buf.String())
	}
}

// A query string or fragment carries tokens ("?access_token=", OAuth's
// "#access_token="): Write must drop it from Path.
func TestWriteStripsQuery(t *testing.T) {
	const canary = "tok-moat-canary-51c2"
	for _, tt := range []struct{ path, want string }{
		{"/v1/messages", "/v1/messages"},
		{"/search?q=" + canary, "/search"},
		{"/cb#access_token=" + canary, "/cb"},
		{"/a?b#" + canary, "/a"},
		{"?" + canary, ""},
		{"/plain/with%3Fescaped", "/plain/with%3Fescaped"},
	} {
		var buf bytes.Buffer
		if err := NewStreamWriter(&buf).Write(Record{Time: t0, Kind: KindRequest, Path: tt.path}); err != nil {
			t.Fatal(err)
		}
		var got Record
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Path != tt.want {
			t.Errorf("Write(Path %q): path %q; want %q", tt.path, got.Path, tt.want)
		}
		if strings.Contains(buf.String(), canary) {
			t.Errorf("Write(Path %q) leaked the token: %s", tt.path, buf.String())
		}
	}
}

// Every string field is bounded, so that every line fits readers' limit
// however long the values an agent chose. The test sets every string
// field by reflection, so a field added to Record without a bound fails it.
func TestWriteBoundsEveryField(t *testing.T) {
	var r Record
	v := reflect.ValueOf(&r).Elem()
	huge := strings.Repeat("\x01", 2*MaxLineSize) // each byte escapes to six
	n := 0
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(huge)
			n++
		}
	}
	if n < 14 {
		t.Fatalf("set %d string fields; Record has at least 14", n)
	}
	r.Time, r.Path = t0, "/"+huge
	var buf bytes.Buffer
	if err := NewStreamWriter(&buf).Write(r); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > MaxLineSize {
		t.Fatalf("line is %d bytes; readers stop at %d", buf.Len(), MaxLineSize)
	}
	var got Record
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	gv := reflect.ValueOf(got)
	for i := range gv.NumField() {
		if f := gv.Field(i); f.Kind() == reflect.String {
			name := gv.Type().Field(i).Name
			if len(f.String()) > MaxFieldSize || !strings.HasSuffix(f.String(), TruncatedMark) {
				t.Errorf("%s: %d bytes, ends %q; want at most %d ending in %q",
					name, len(f.String()), f.String()[max(0, len(f.String())-20):], MaxFieldSize, TruncatedMark)
			}
		}
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	s := strings.Repeat("é", MaxFieldSize) // two bytes each
	got := truncate(s, MaxFieldSize)
	if len(got) > MaxFieldSize || !strings.HasSuffix(got, TruncatedMark) || !utf8Valid(got) {
		t.Errorf("truncate: %d bytes, valid UTF-8 %v", len(got), utf8Valid(got))
	}
	if got := truncate("short", MaxFieldSize); got != "short" {
		t.Errorf("truncate(short) = %q", got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// A hostile Host must not reach a terminal that runs `cat audit.jsonl`:
// C1 controls, DEL and bidi overrides are written as \u escapes (C0
// controls already are, by encoding/json), and decode to the same value.
func TestWriteEscapesInvisible(t *testing.T) {
	host := "a\x1b[2J\u009b31m\x7f\u202egnp.exe\u200b\U000e0041é✓"
	var buf bytes.Buffer
	if err := NewStreamWriter(&buf).Write(Record{Time: t0, Kind: KindConnect, Host: host}); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	wantHost := `"host":"a\u001b[2J\u009b31m\u007f\u202egnp.exe\u200b\udb40\udc41é✓"`
	if !strings.Contains(line, wantHost) {
		t.Errorf("line %s\ndoes not contain %s", line, wantHost)
	}
	for _, c := range line {
		if c < 0x20 && c != '\n' || c == 0x7f || c >= 0x80 && c <= 0x9f {
			t.Errorf("line holds control character %U", c)
		}
	}
	var got Record
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Host != host {
		t.Errorf("decoded host %q; want %q", got.Host, host)
	}
}

func TestWriteNaNDuration(t *testing.T) {
	var buf bytes.Buffer
	nan := 0.0
	nan /= nan
	if err := NewStreamWriter(&buf).Write(Record{Time: t0, Kind: KindRequest, Duration: nan}); err != nil {
		t.Fatalf("Write(NaN duration) = %v; want the record written with 0", err)
	}
	if !strings.Contains(buf.String(), `"duration_ms":0}`) {
		t.Errorf("line %s", buf.String())
	}
}

func TestNilWriter(t *testing.T) {
	var w *Writer
	if err := w.Write(Record{Kind: KindRequest}); err != nil {
		t.Errorf("nil Write = %v", err)
	}
	w.Record(Record{Kind: KindRequest})
	if w.Err() != nil || w.Lost() != 0 || w.Close() != nil {
		t.Errorf("nil writer: Err %v, Lost %d, Close %v", w.Err(), w.Lost(), w.Close())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, fmt.Errorf("disk on fire %d", f.n)
}

func TestRecordCountsErrors(t *testing.T) {
	w := NewStreamWriter(&failWriter{})
	if w.Err() != nil || w.Lost() != 0 {
		t.Fatalf("fresh writer: Err %v, Lost %d", w.Err(), w.Lost())
	}
	w.Record(Record{Kind: KindRequest})
	w.Record(Record{Kind: KindRequest})
	if got, want := fmt.Sprint(w.Err()), "audit: write: disk on fire 2"; got != want || w.Lost() != 2 {
		t.Errorf("Err = %s, Lost = %d; want %s, 2", got, w.Lost(), want)
	}
}

func TestWriteAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	err = w.Write(Record{Kind: KindRequest})
	if want := "audit: write " + path + ": file already closed"; err == nil || err.Error() != want || !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v; want %s", err, want)
	}
}

func TestOpenCreatesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "moat")
	path := filepath.Join(dir, "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range []struct {
		name string
		want os.FileMode
	}{{dir, os.ModeDir | 0o700}, {filepath.Dir(dir), os.ModeDir | 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.want {
			t.Errorf("%s: mode %v; want %v", c.name, fi.Mode(), c.want)
		}
	}
}

func TestOpenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for i := range 2 {
		w, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(Record{Time: t0, Kind: KindLifecycle, Event: fmt.Sprint("start", i)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := readLines(t, path)
	want := []string{
		`{"time":"2026-11-27T14:03:12Z","kind":"lifecycle","decision":"","bytes_up":0,"bytes_down":0,"duration_ms":0,"event":"start0"}`,
		`{"time":"2026-11-27T14:03:12Z","kind":"lifecycle","decision":"","bytes_up":0,"bytes_down":0,"duration_ms":0,"event":"start1"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("file:\n got: %q\nwant: %q", got, want)
	}
}

// A partial line left by a writer killed on some other system must not
// swallow the next record: Open ends it first.
func TestOpenEndsTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	const torn = `{"time":"2026-11-27T14:03:12Z","kind":"req`
	if err := os.WriteFile(path, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Record{Time: t0, Kind: KindLifecycle, Event: "start"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, _ := os.Open(path)
	defer f.Close()
	var events []string
	bad, err := Scan(f, func(r Record) error { events = append(events, r.Event); return nil })
	if err != nil || bad != 1 || !slices.Equal(events, []string{"start"}) {
		t.Errorf("Scan = %d bad, %v, events %q; want 1 bad (the torn line), [start]", bad, err, events)
	}
}

// If the audit file sits where someone else can write, they must not be
// able to redirect moat's appends: Open refuses a symlink or hard link.
func TestOpenRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "bashrc")
	if err := os.WriteFile(victim, []byte("echo hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "sym.jsonl")
	if err := os.Symlink(victim, sym); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.jsonl")
	if err := os.Link(victim, hard); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		sym:  "audit: open " + sym + ": is a symbolic link; an audit file must be a plain file",
		hard: "audit: open " + hard + ": has 2 hard links; an audit file must have one",
	} {
		w, err := Open(path, Options{})
		if err == nil || err.Error() != want {
			t.Errorf("Open(%s) = %v; want %s", filepath.Base(path), err, want)
		}
		w.Write(Record{Kind: KindRequest}) // w is nil: dropped
	}
	// The control: the file is untouched, and Open works on a plain path.
	if b, _ := os.ReadFile(victim); string(b) != "echo hi\n" {
		t.Errorf("victim changed: %q", b)
	}
	if w, err := Open(filepath.Join(dir, "plain.jsonl"), Options{}); err != nil {
		t.Errorf("Open(plain) = %v", err)
	} else {
		w.Close()
	}
}

func TestOpenRejectsNegative(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{MaxSize: -1}, "audit: open x: max size -1 is negative"},
		{Options{MaxFiles: -2}, "audit: open x: max files -2 is negative"},
	} {
		if _, err := Open("x", tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("Open(%+v) = %v; want %s", tt.o, err, tt.want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_STATE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/moat/audit.jsonl"},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.local/state/moat/audit.jsonl"},
		{map[string]string{"XDG_STATE_HOME": "rel/dir", "HOME": "/home/u"}, "/home/u/.local/state/moat/audit.jsonl"},
		{map[string]string{}, ""},
	} {
		if got := DefaultPath(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("DefaultPath(%v) = %q; want %q", tt.env, got, tt.want)
		}
	}
}

// seqRecord is record i of writer g; its line is the same length for
// every g < 100 and i < 1_000_000.
func seqRecord(g, i int) Record {
	return Record{Time: t0, Kind: KindConnect, Session: fmt.Sprintf("g%02d", g), Host: "example.com", Port: 443,
		Decision: DecisionAllow, Detail: fmt.Sprintf("%06d", i)}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var one bytes.Buffer
	NewStreamWriter(&one).Write(seqRecord(0, 0))
	lineLen := int64(one.Len())
	// Three lines fit, a fourth would not.
	w, err := Open(path, Options{MaxSize: 4*lineLen - 1, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := w.Write(seqRecord(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Err() != nil {
		t.Errorf("Err = %v", w.Err())
	}
	// 20 lines, 3 a file: the newest 2 in PATH, then 3 in each of PATH.1
	// … PATH.3; the 9 oldest were dropped with the files beyond .3.
	want := map[string][]int{"": {18, 19}, ".1": {15, 16, 17}, ".2": {12, 13, 14}, ".3": {9, 10, 11}}
	names, _ := filepath.Glob(path + "*")
	if len(names) != len(want) {
		t.Errorf("files %q; want %d", names, len(want))
	}
	for suffix, seqs := range want {
		name := path + suffix
		var got []int
		for _, line := range readLines(t, name) {
			var r Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}

			n, _ := strconv.Atoi(r.Detail)
			got = append(got, n)
		}
		if !slices.Equal(got, seqs) {
			t.Errorf("audit.jsonl%s holds %v; want %v", suffix, got, seqs)
		}
		if fi, err := os.Stat(name); err != nil || fi.Size() > w.opt.MaxSize || fi.Mode() != 0o600 {
			t.Errorf("audit.jsonl%s: %v, %v; want at most %d bytes, mode 0600", suffix, fi.Size(), fi.Mode(), w.opt.MaxSize)
		}
	}
}

// A line longer than MaxSize still goes out whole, alone in its file.
func TestRotationLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{MaxSize: 100, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		if err := w.Write(seqRecord(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, suffix := range []string{"", ".1", ".2"} {
		if lines := readLines(t, path+suffix); len(lines) != 1 {
			t.Errorf("audit.jsonl%s: %d lines; want 1", suffix, len(lines))
		}
	}
}

// writeConcurrently has g goroutines write n records each, then checks
// that the files hold every record exactly once, in order per goroutine.
func writeConcurrently(t *testing.T, o Options, g, n int) (files int) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for gi := range g {
		wg.Go(func() {
			for i := range n {
				w.Record(seqRecord(gi, i))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil || w.Lost() != 0 || w.Err() != nil {
		t.Fatalf("Close %v, Lost %d, Err %v", err, w.Lost(), w.Err())
	}
	names, _ := filepath.Glob(path + "*")
	// Oldest file first: PATH.k … PATH.1, PATH.
	slices.SortFunc(names, func(a, b string) int { return rotIndex(b, path) - rotIndex(a, path) })
	next := make([]int, g)
	total := 0
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := Scan(f, func(r Record) error {
			var gi, i int
			gi, _ = strconv.Atoi(strings.TrimPrefix(r.Session, "g"))
			i, _ = strconv.Atoi(r.Detail)
			if i != next[gi] {
				return fmt.Errorf("%s: writer %d: record %d after %d", filepath.Base(name), gi, i, next[gi]-1)
			}
			next[gi]++
			total++
			return nil
		})
		f.Close()
		if err != nil || bad != 0 {
			t.Fatalf("%s: Scan: %d bad, %v", filepath.Base(name), bad, err)
		}
		if fi, _ := os.Stat(name); o.MaxSize > 0 && fi.Size() > o.MaxSize {
			t.Errorf("%s: %d bytes > MaxSize %d", filepath.Base(name), fi.Size(), o.MaxSize)
		}
	}
	if total != g*n {
		t.Errorf("%d records; want %d", total, g*n)
	}
	return len(names)
}

func rotIndex(name, path string) int {
	var i int
	fmt.Sscanf(strings.TrimPrefix(name, path), ".%d", &i)
	return i
}

func TestConcurrentWrites(t *testing.T) {
	if files := writeConcurrently(t, Options{}, 64, 300); files != 1 {
		t.Errorf("%d files; want 1", files)
	}
}

func TestConcurrentWritesAcrossRotations(t *testing.T) {
	files := writeConcurrently(t, Options{MaxSize: 8 << 10, MaxFiles: 1000}, 16, 200)
	if files < 50 {
		t.Errorf("%d files; want the writes spread over many rotations", files)
	}
}

// No line crosses a page boundary when it fits in one: a SIGKILL can stop
// a write only between pages (see TestKill9LeavesWholeLines).
func TestLinesStayInsidePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		r := seqRecord(0, i)
		r.Reason = strings.Repeat("r", i*13%900)
		w.Write(r)
	}
	w.Close()
	data, _ := os.ReadFile(path)
	off := int64(0)
	n := 0
	for line := range bytes.Lines(data) {
		if bytes.TrimSpace(line) != nil {
			n++
			if off/pageSize != (off+int64(len(line))-1)/pageSize {
				t.Fatalf("line %d at %d..%d crosses a page boundary", n, off, off+int64(len(line)))
			}
		}
		off += int64(len(line))
	}
	if n != 500 {
		t.Errorf("%d records; want 500", n)
	}
}

func BenchmarkWrite(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := Record{Time: t0, Kind: KindConnect, Session: "s1", Client: "unix", Proto: "connect", Method: "CONNECT",
		Host: "api.anthropic.com", Port: 443, SNI: "api.anthropic.com", Addr: "160.79.104.10:443", Decision: DecisionAllow,
		Rule: "profile:claude network.allow[0]", Status: 200, BytesUp: 2048, BytesDown: 1048576, Duration: 1500.5}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteParallel(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := seqRecord(1, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Record(r)
		}
	})
	if w.Lost() != 0 {
		b.Fatal(w.Err())
	}
}

// BenchmarkEncode measures the encoding alone.
func BenchmarkEncode(b *testing.B) {
	w := NewStreamWriter(io.Discard)
	r := seqRecord(1, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}

// A failed rotation loses no record: the line goes to the current file and
// the error is kept for Err.
func TestRotationFailureKeepsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// PATH.1 is a non-empty directory: renaming PATH onto it fails.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, Options{MaxSize: 100, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := w.Write(seqRecord(0, i)); err != nil {
			t.Fatalf("Write %d = %v; want nil (the line is kept)", i, err)
		}
	}
	w.Close()
	if n := len(readLines(t, path)); n != 3 {
		t.Errorf("%d lines in audit.jsonl; want 3", n)
	}
	want := "audit: rotate: rename " + path + " " + path + ".1: file exists"
	if err := w.Err(); err == nil || err.Error() != want || w.Lost() != 0 {
		t.Errorf("Err = %v, Lost = %d; want %s, 0", err, w.Lost(), want)
	}
}
