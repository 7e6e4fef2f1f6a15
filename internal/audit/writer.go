package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Defaults for Options' zero values.
const (
	DefaultMaxSize  = 100 << 20 // bytes
	DefaultMaxFiles = 5
)

// MaxLineSize is the longest line readers accept (without its newline).
// Write never produces a longer one: every string field is cut to
// MaxFieldSize bytes first, and even fully escaped they stay below it.
const MaxLineSize = 1 << 20

// MaxFieldSize is the most bytes Write keeps of one string field; longer
// values end with TruncatedMark. Host, Path and Reason can carry text the
// agent chose, so their length is bounded here rather than trusted.
const MaxFieldSize = 8 << 10

// TruncatedMark ends a field that Write cut to MaxFieldSize.
const TruncatedMark = "…[truncated]"

// Options configure a file Writer. The zero value is usable.
type Options struct {
	// MaxSize is the size in bytes past which the file is rotated; 0 means
	// DefaultMaxSize. A line is never split: the file is rotated before a
	// line that would take it past MaxSize, so files stay at or under
	// MaxSize unless a single line is larger.
	MaxSize int64
	// MaxFiles is how many rotated files (PATH.1 newest … PATH.MaxFiles
	// oldest) are kept; 0 means DefaultMaxFiles.
	MaxFiles int
}

// Writer appends records to an audit stream, one JSON object per line. It
// is safe for concurrent use. Each line is encoded whole and written with
// a single write call under a mutex, to a file opened with O_APPEND, so
// lines from concurrent writers (goroutines, or processes sharing the file)
// never interleave.
//
// A process killed mid-stream (SIGKILL) leaves every line whole or absent:
// Linux may cut a write short at a page boundary when its process is
// killed, so a line that would straddle one is started on the next page,
// after a blank line of padding (spaces, then a newline) that readers
// skip. This holds for lines up to a page long (4 KiB on most systems;
// typical records are a few hundred bytes), and, when several processes
// share the file, only as far as each one's idea of the file's size is
// current.
//
// A nil *Writer accepts and drops every record, so callers need not check
// whether auditing is on.
type Writer struct {
	mu     sync.Mutex
	stream io.Writer // NewStreamWriter; nil for a file
	f      *os.File  // Open; nil after Close
	path   string
	opt    Options
	rotate bool // a regular file: rotation applies
	size   int64
	closed bool
	lost   int64 // Record calls whose Write failed
	err    error // the last error Record or a rotation met
}

// Open opens the audit file at path for appending, creating it with mode
// 0600 (and its directory with mode 0700 if that is missing). The file is
// rotated as o says; a path that is not a regular file (/dev/stderr, a
// FIFO) is written to but never rotated.
//
// Open refuses a symbolic link or a file with several hard links at path:
// should the file ever sit where someone else can write, they must not be
// able to point moat's appends at another file.
//
// If the file ends in a partial line (a writer killed mid-write on a system
// where that can happen), Open ends it with a newline, so that the next
// record starts a line of its own; readers skip the fragment as malformed.
func Open(path string, o Options) (*Writer, error) {
	if o.MaxSize < 0 {
		return nil, fmt.Errorf("audit: open %s: max size %d is negative", path, o.MaxSize)
	}
	if o.MaxFiles < 0 {
		return nil, fmt.Errorf("audit: open %s: max files %d is negative", path, o.MaxFiles)
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	f, size, regular, err := openLog(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Writer{f: f, path: path, opt: o, rotate: regular, size: size}, nil
}

// openLog opens path for appending and returns the file, its size and
// whether it is a regular file.
func openLog(path string) (*os.File, int64, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			err = fmt.Errorf("open %s: is a symbolic link; an audit file must be a plain file", path)
		}
		return nil, 0, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, false, err
	}
	if !fi.Mode().IsRegular() {
		return f, 0, false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		f.Close()
		return nil, 0, false, fmt.Errorf("open %s: has %d hard links; an audit file must have one", path, st.Nlink)
	}
	size := fi.Size()
	if size > 0 {
		torn, err := endsTorn(path, size)
		if err != nil {
			f.Close()
			return nil, 0, false, err
		}
		if torn {
			n, err := f.Write([]byte{'\n'})
			size += int64(n)
			if err != nil {
				f.Close()
				return nil, 0, false, err
			}
		}
	}
	return f, size, true, nil
}

// endsTorn reports whether the file's last byte is not a newline.
func endsTorn(path string, size int64) (bool, error) {
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer r.Close()
	var last [1]byte
	if _, err := r.ReadAt(last[:], size-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}

// NewStreamWriter returns a Writer that writes lines to w (standard output
// or standard error, typically), one Write call per line, and never
// rotates. Close does not close w.
func NewStreamWriter(w io.Writer) *Writer {
	return &Writer{stream: w}
}

// DefaultPath is where moat writes its audit file unless told otherwise:
// $XDG_STATE_HOME/moat/audit.jsonl, else $HOME/.local/state/moat/audit.jsonl.
// A relative XDG_STATE_HOME is ignored, as the XDG specification asks. It
// returns "" when neither variable is usable.
func DefaultPath(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "moat", "audit.jsonl")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "moat", "audit.jsonl")
	}
	return ""
}

// Write appends r as one line. A zero Time is set to the current time;
// every Time is written in UTC. Path loses any query string or fragment
// (from the first '?' or '#'), which often carry tokens; string fields
// longer than MaxFieldSize are cut. Callers must still never put a secret
// in a record: Write cannot recognise one in Reason or Detail.
//
// Before a line that would take the file past Options.MaxSize, the file is
// rotated: PATH.N-1 becomes PATH.N (the oldest beyond MaxFiles is
// dropped), …, PATH becomes PATH.1, and a new PATH is created. If rotation
// fails, the line is still written to the current file and the error is
// kept for Err. After Close, Write returns an error wrapping os.ErrClosed.
func (w *Writer) Write(r Record) error {
	if w == nil {
		return nil
	}
	e := encoders.Get().(*encoder)
	defer e.put()
	line, err := e.encode(r)
	if err != nil {
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(line)
}

func (w *Writer) writeLocked(line []byte) error {
	if w.closed {
		return fmt.Errorf("audit: write %s: %w", w.name(), os.ErrClosed)
	}
	if w.stream != nil {
		if _, err := w.stream.Write(line); err != nil {
			return fmt.Errorf("audit: write: %w", err)
		}
		return nil
	}
	pad := w.padding(len(line))
	if w.rotate && w.size > 0 && w.size+pad+int64(len(line)) > w.opt.MaxSize {
		if err := w.rotateLocked(); err != nil {
			w.err = err
		}
		pad = w.padding(len(line))
	}
	if pad > 0 {
		n, err := w.f.Write(blankLine(pad))
		w.size += int64(n)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	n, err := w.f.Write(line)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// pageSize is the unit in which Linux copies a write into a file: a
// process that receives SIGKILL during a write stops at the next page
// boundary and keeps what it wrote, so only a write that stays inside one
// page is all or nothing.
var pageSize = int64(os.Getpagesize())

// padding returns how many bytes of blank line must precede a line of n
// bytes so that it does not cross a page boundary of a regular file: 0 if
// it fits in what is left of the current page, or if it is longer than a
// page (such a line, rare, cannot be made atomic and starts where it is).
func (w *Writer) padding(n int) int64 {
	if !w.rotate || int64(n) > pageSize {
		return 0
	}
	used := w.size % pageSize
	if used == 0 || used+int64(n) <= pageSize {
		return 0
	}
	return pageSize - used
}

var blanks = func() []byte {
	b := bytes.Repeat([]byte{' '}, int(pageSize))
	b[len(b)-1] = '\n'
	return b
}()

// blankLine returns n bytes of spaces ending in a newline: a line that
// readers skip.
func blankLine(n int64) []byte { return blanks[len(blanks)-int(n):] }

func (w *Writer) name() string {
	if w.stream != nil {
		return "stream"
	}
	return w.path
}

// rotateLocked shifts PATH.i to PATH.i+1 and PATH to PATH.1, then opens a
// new PATH. If another process sharing the file rotated it first, it only
// reopens PATH.
func (w *Writer) rotateLocked() error {
	if cur, err := w.f.Stat(); err == nil {
		if fi, err := os.Lstat(w.path); err == nil && !os.SameFile(cur, fi) {
			return w.reopen()
		}
	}
	// Shift only the files there are: stop at the first gap.
	n := 1
	for n < w.opt.MaxFiles {
		if _, err := os.Lstat(w.path + "." + strconv.Itoa(n)); err != nil {
			break
		}
		n++
	}
	for i := n - 1; i >= 1; i-- {
		err := os.Rename(w.path+"."+strconv.Itoa(i), w.path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	return w.reopen()
}

// reopen replaces the current file with a fresh open of PATH. On failure
// the current file stays in use.
func (w *Writer) reopen() error {
	f, size, regular, err := openLog(w.path)
	if err != nil {
		return fmt.Errorf("audit: reopen: %w", err)
	}
	w.f.Close()
	w.f, w.size, w.rotate = f, size, regular
	return nil
}

// Record is Write for callers on hot paths that cannot act on an error:
// a failure is counted (Lost) and kept (Err) instead of returned.
func (w *Writer) Record(r Record) {
	if w == nil {
		return
	}
	if err := w.Write(r); err != nil {
		w.mu.Lock()
		w.lost++
		w.err = err
		w.mu.Unlock()
	}
}

// Err returns the last error that Record swallowed or that a rotation met,
// or nil.
func (w *Writer) Err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Lost returns how many records Record failed to write.
func (w *Writer) Lost() int64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// Close flushes the file to stable storage and closes it. A stream
// Writer's io.Writer is not closed. Closing twice returns nil.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	serr := w.f.Sync()
	cerr := w.f.Close()
	w.f = nil
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

// encoder turns records into lines; pooled so that Write allocates little.
type encoder struct {
	rec Record
	buf bytes.Buffer
	enc *json.Encoder
	out []byte
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false) // "<" reads better than "\u003c"; the line is not HTML
	return e
}}

func (e *encoder) put() {
	if e.buf.Cap() > 64<<10 { // do not pin a rare huge buffer
		return
	}
	encoders.Put(e)
}

// encode returns the line for r, newline included. It stays valid until
// the encoder's next use.
func (e *encoder) encode(r Record) ([]byte, error) {
	e.rec = prepare(r)
	e.buf.Reset()
	if err := e.enc.Encode(&e.rec); err != nil { // &e.rec: a Record passed as any would be copied to the heap
		// Not expected: prepare removed the values encoding/json refuses.
		return nil, fmt.Errorf("audit: encode: %w", err)
	}
	line := e.buf.Bytes()
	if !needsEscape(line) {
		return line, nil
	}
	e.out = escapeInvisible(e.out[:0], line)
	return e.out, nil
}

// prepare applies Write's rules to a copy of r.
func prepare(r Record) Record {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	if i := strings.IndexAny(r.Path, "?#"); i >= 0 {
		r.Path = r.Path[:i]
	}
	if math.IsNaN(r.Duration) || math.IsInf(r.Duration, 0) {
		r.Duration = 0
	}
	for _, s := range []*string{
		&r.Kind, &r.Session, &r.Client, &r.Proto, &r.Method, &r.Host, &r.Path,
		&r.SNI, &r.Addr, &r.Decision, &r.Rule, &r.Reason, &r.Credential, &r.Event, &r.Detail,
	} {
		*s = truncate(*s, MaxFieldSize)
	}
	return r
}

// truncate cuts s to at most n bytes on a rune boundary, ending it with
// TruncatedMark.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len(TruncatedMark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + TruncatedMark
}

// needsEscape reports whether line holds a byte escapeInvisible may change.
// encoding/json escapes C0 controls but writes DEL, C1 controls and other
// invisible runes (bidi overrides) as they are.
func needsEscape(line []byte) bool {
	for _, c := range line {
		if c >= 0x7f {
			return true
		}
	}
	return false
}

// escapeInvisible copies line to dst, writing DEL and every non-ASCII rune
// that is not printable (C1 controls, bidi overrides, zero-width and
// non-breaking spaces) as a JSON \u escape: the decoded value is the same,
// but `cat` and `less` on the file cannot be steered by a hostile Host or
// Path. Such runes can only appear inside JSON strings, so escaping them
// is always valid.
func escapeInvisible(dst, line []byte) []byte {
	const hex = "0123456789abcdef"
	u := func(dst []byte, r rune) []byte {
		return append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	for i := 0; i < len(line); {
		c := line[i]
		if c < 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(line[i:])
		switch {
		case r == 0x7f || !unicode.IsPrint(r):
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				dst = u(u(dst, r1), r2)
			} else {
				dst = u(dst, r)
			}
		default:
			dst = append(dst, line[i:i+n]...)
		}
		i += n
	}
	return dst
}
