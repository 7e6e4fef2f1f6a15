package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"
)

// A line is malformed unless it is a JSON object with a time (in years 0
// to 9999 UTC) and a kind.
// Unknown fields are ignored, so newer files stay readable. Blank lines are
// skipped without being counted.
func parseLine(line []byte) (Record, bool) {
	line = bytes.TrimSpace(line)
	var r Record
	if len(line) == 0 || line[0] != '{' {
		return r, false
	}
	if err := json.Unmarshal(line, &r); err != nil || r.Time.IsZero() || r.Kind == "" {
		return Record{}, false
	}
	if y := r.Time.UTC().Year(); y < 0 || y > 9999 { // "0000-01-01T00:00:00+01:00"; Write could not write it
		return Record{}, false
	}
	return r, true
}

func blank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// Scan reads an audit stream line by line and calls fn for each well-formed
// record. Malformed lines, and lines longer than MaxLineSize, are skipped
// and counted in bad; they never stop the scan. A final line without a
// newline is read like any other. Scan stops at the first error from r or
// from fn and returns it.
func Scan(r io.Reader, fn func(Record) error) (bad int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		var tooLong bool
		var rerr error
		buf, tooLong, rerr = readLine(br, buf[:0])
		switch {
		case tooLong:
			bad++
		case blank(buf):
		default:
			if rec, ok := parseLine(buf); ok {
				if err := fn(rec); err != nil {
					return bad, err
				}
			} else {
				bad++
			}
		}
		if rerr == io.EOF {
			return bad, nil
		}
		if rerr != nil {
			return bad, rerr
		}
	}
}

// readLine appends the next line (newline included, if any) to buf. A line
// longer than MaxLineSize is consumed but not kept: tooLong is set and buf
// returned empty.
func readLine(br *bufio.Reader, buf []byte) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > MaxLineSize+1 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, frag...)
			}
		}
		if err != bufio.ErrBufferFull {
			return buf, tooLong, err
		}
	}
}

// FollowInterval is how often Follow looks for new lines, rotation and
// truncation.
const FollowInterval = 200 * time.Millisecond

// Follow is Scan for a file that is still being written, as `tail -F`
// does: it reads the file's content, then every FollowInterval reads what
// was appended, until ctx is done; it then returns nil, or the first error
// from fn. A partial last line waits for its newline.
//
// Follow survives rotation: when PATH is renamed and recreated, it reads the
// old file to its end, then follows the new one from its start. A file
// created and rotated away again within one interval is missed. When the
// file shrinks (it was truncated), Follow starts over from its beginning.
// Only the first open failing is an error (a missing file, say); after
// that Follow waits for PATH to come back.
func Follow(ctx context.Context, path string, fn func(Record) error) (bad int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	t := &tail{f: f, fn: fn}
	defer func() { t.f.Close() }()
	tick := time.NewTicker(FollowInterval)
	defer tick.Stop()
	for {
		if err := t.read(); err != nil {
			return t.bad, err
		}
		select {
		case <-ctx.Done():
			return t.bad, nil
		case <-tick.C:
		}
		cur, err := t.f.Stat()
		if err != nil {
			return t.bad, err
		}
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			// Renamed and not yet recreated; the old file may still grow.
		case !os.SameFile(cur, fi):
			if err := t.read(); err != nil { // the old file's last lines
				return t.bad, err
			}
			if err := t.flush(); err != nil {
				return t.bad, err
			}
			nf, err := os.Open(path)
			if err != nil {
				continue // gone again; try next time
			}
			t.f.Close()
			t.f, t.off = nf, 0
		case fi.Size() < t.off:
			if _, err := t.f.Seek(0, io.SeekStart); err != nil {
				return t.bad, err
			}
			t.off, t.pending, t.skipping = 0, t.pending[:0], false
		}
	}
}

// tail reads one file's new bytes and hands complete lines to fn.
type tail struct {
	f        *os.File
	off      int64 // bytes read from f
	pending  []byte
	skipping bool // the pending line grew past MaxLineSize: drop it up to its newline
	buf      [64 << 10]byte
	fn       func(Record) error
	bad      int
}

// read consumes what f has beyond off.
func (t *tail) read() error {
	for {
		n, err := t.f.Read(t.buf[:])
		t.off += int64(n)
		if perr := t.push(t.buf[:n]); perr != nil {
			return perr
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (t *tail) push(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
			b = b[i+1:]
		} else {
			b = nil
		}
		if !t.skipping {
			if len(t.pending)+len(chunk) > MaxLineSize {
				t.skipping, t.pending = true, t.pending[:0]
				t.bad++
			} else {
				t.pending = append(t.pending, chunk...)
			}
		}
		if i < 0 {
			return nil
		}
		if err := t.line(); err != nil {
			return err
		}
	}
	return nil
}

// line processes the complete line in pending.
func (t *tail) line() error {
	defer func() { t.pending, t.skipping = t.pending[:0], false }()
	if t.skipping || blank(t.pending) {
		return nil
	}
	rec, ok := parseLine(t.pending)
	if !ok {
		t.bad++
		return nil
	}
	return t.fn(rec)
}

// flush treats a partial line left at the end of a rotated-away file as
// complete: no more bytes will come.
func (t *tail) flush() error {
	if len(t.pending) == 0 && !t.skipping {
		return nil
	}
	return t.line()
}
