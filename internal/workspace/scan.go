// Package workspace prepares the directory an agent works in: it finds
// credentials before anything is mounted (scan), makes sanitised copies
// (stage) and keeps the agent's writes apart for review (overlay).
package workspace

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/patternmatcher"
)

// Finding is one credential found; it never holds the secret itself.
type Finding struct {
	Path    string `json:"path"`    // slash-separated, relative to the scanned root
	Line    int    `json:"line"`    // 0 for a finding on the file's name
	Rule    string `json:"rule"`    // e.g. "dotenv-file", "private-key", "aws-access-token"
	Kind    string `json:"kind"`    // "file" (by name) or "content"
	Excerpt string `json:"excerpt"` // redacted: never the whole secret
}

// Kinds of finding.
const (
	KindFile    = "file"
	KindContent = "content"
)

// DefaultMaxFileSize is the size above which a file's content is not scanned
// when ScanOptions.MaxFileSize is 0. Secrets live in small text files; what
// is larger is data, logs or build output.
const DefaultMaxFileSize = 10 << 20

// ScanOptions tune a scan; the zero value scans everything but .git/objects.
type ScanOptions struct {
	Exclude     []string // .dockerignore-style patterns the user excludes
	MaxFileSize int64    // 0: DefaultMaxFileSize; files above it are skipped, not read
	Workers     int      // files read and scanned at once; 0: twice the CPUs
}

// Skipped is a file whose content was not scanned, and why: "binary",
// "size" (over MaxFileSize), "special" (a device, fifo or socket, never
// opened) or "unreadable: …".
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ScanReport is the whole result of a scan.
type ScanReport struct {
	Findings []Finding `json:"findings"` // sorted by path, line and rule
	Skipped  []Skipped `json:"skipped"`  // sorted by path
	Files    int       `json:"files"`    // files whose content was scanned
	Bytes    int64     `json:"bytes"`    // bytes of content scanned
}

// Scan finds credential files by name and secrets by content below root. It
// skips the user's Exclude patterns and .git/objects, but not what .gitignore
// hides: ignored files are where secrets are usually kept. Symbolic links are
// judged by name and never followed. If some files cannot be read, Scan
// returns the findings in the others together with an error naming them.
func Scan(ctx context.Context, root string, o ScanOptions) ([]Finding, error) {
	r, err := ScanDir(ctx, root, o)
	if r == nil {
		return nil, err
	}
	return r.Findings, err
}

// ScanDir is Scan with the whole report: what was skipped and how much was read.
func ScanDir(ctx context.Context, root string, o ScanOptions) (*ScanReport, error) {
	return ScanPaths(ctx, root, []string{"."}, o)
}

// ScanPaths scans the slash-separated paths rels below root, each a file or
// a directory; paths that do not exist are passed over silently (moat scan
// --home lists places that may not be there). Findings' paths are relative
// to root.
func ScanPaths(ctx context.Context, root string, rels []string, o ScanOptions) (*ScanReport, error) {
	det, err := contentDetector()
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("scan: %s: not a directory", root)
	}
	// A root named through a link is scanned where it leads: the walk
	// does not follow links, the root included.
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	rels = slices.Clone(rels)
	for i, rel := range rels {
		rels[i] = path.Clean(rel)
		if path.IsAbs(rels[i]) || rels[i] == ".." || strings.HasPrefix(rels[i], "../") {
			return nil, fmt.Errorf("scan: %q: not a path inside %s", rel, root)
		}
	}
	ex, err := newExcluder(o.Exclude)
	if err != nil {
		return nil, err
	}
	s := &scanner{
		ctx: ctx, root: root, det: det, ex: ex,
		max:  cmp.Or(o.MaxFileSize, DefaultMaxFileSize),
		jobs: make(chan string, 256),
	}
	workers := cmp.Or(o.Workers, 2*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(s.work)
	}
	var walkErr error
	for _, rel := range rels {
		if walkErr = s.walk(rel); walkErr != nil {
			break
		}
	}
	close(s.jobs)
	wg.Wait()

	r := &s.report
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line),
			strings.Compare(a.Rule, b.Rule), strings.Compare(a.Excerpt, b.Excerpt))
	})
	r.Findings = slices.Compact(r.Findings)
	slices.SortFunc(r.Skipped, func(a, b Skipped) int { return strings.Compare(a.Path, b.Path) })
	if walkErr == nil {
		walkErr = ctx.Err()
	}
	if walkErr != nil {
		return r, fmt.Errorf("scan %s: %w", root, walkErr)
	}
	if len(s.errs) > 0 {
		return r, fmt.Errorf("scan %s: %w", root, errors.Join(s.errs...))
	}
	return r, nil
}

// maxErrors bounds the errors a scan keeps; the rest are counted.
const maxErrors = 10

type scanner struct {
	ctx  context.Context
	root string
	det  *detector
	ex   *excluder
	max  int64
	jobs chan string

	mu      sync.Mutex
	report  ScanReport
	errs    []error
	dropped int
}

// walk lists the tree below rel, judges names itself and hands regular
// files to the workers.
func (s *scanner) walk(rel string) error {
	start := filepath.Join(s.root, filepath.FromSlash(rel))
	fi, err := os.Lstat(start)
	if errors.Is(err, fs.ErrNotExist) && rel != "." {
		return nil
	}
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 && rel != "." {
		// A named location that is a link (~/.aws kept in a dotfiles
		// repository) is scanned where it leads; paths stay as named.
		// Links below it are not followed.
		if real, err := filepath.EvalSymlinks(start); err == nil {
			start = real
		}
	}
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if cerr := s.ctx.Err(); cerr != nil {
			return cerr
		}
		r, rerr := filepath.Rel(start, p)
		if rerr != nil {
			return rerr
		}
		r = path.Join(rel, filepath.ToSlash(r))
		if err != nil {
			if p == start && rel == "." {
				return err // the root itself: nothing can be scanned
			}
			s.fail(r, err)
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if r != "." && s.ex.excluded(r) {
			if d.IsDir() && !s.ex.hasExceptions {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			// Git's object store is compressed history, not the files the
			// agent will read; what a commit leaked is a job for history
			// scanners.
			if r == ".git/objects" || strings.HasSuffix(r, "/.git/objects") {
				return filepath.SkipDir
			}
			return nil
		}
		if rule, ok := CredentialFile(r); ok {
			s.add(Finding{Path: r, Rule: rule, Kind: KindFile, Excerpt: "credential file by name"})
		}
		switch t := d.Type(); {
		case t.IsRegular():
			if s.det.pathAllowed(r) {
				return nil
			}
			select {
			case s.jobs <- r:
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
		case t&fs.ModeSymlink != 0:
			// Not followed: the target may be outside the tree, or a device.
		default:
			s.skip(r, "special")
		}
		return nil
	})
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *scanner) work() {
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	for rel := range s.jobs {
		if s.ctx.Err() != nil {
			continue // drain
		}
		buf.Reset()
		reason, err := s.read(rel, buf)
		switch {
		case err != nil:
			s.fail(rel, err)
			continue
		case reason != "":
			s.skip(rel, reason)
			continue
		}
		fs := s.det.scan(rel, buf.Bytes())
		s.mu.Lock()
		s.report.Files++
		s.report.Bytes += int64(buf.Len())
		s.report.Findings = append(s.report.Findings, fs...)
		s.mu.Unlock()
	}
}

// read reads a regular file into buf, or says why it will not be scanned.
func (s *scanner) read(rel string, buf *bytes.Buffer) (skip string, err error) {
	// O_NONBLOCK: a file swapped for a fifo after the walk must not hang
	// the scan; O_NOFOLLOW: nor may one swapped for a link lead outside it.
	f, err := os.OpenFile(filepath.Join(s.root, filepath.FromSlash(rel)),
		os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return "", nil // became a symlink; judged by name only
		}
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "special", nil
	}
	if fi.Size() > s.max {
		return "size", nil
	}
	buf.Grow(int(fi.Size()) + 1)
	// Read at most max+1 bytes: a file may grow while it is read.
	if _, err := buf.ReadFrom(io.LimitReader(f, s.max+1)); err != nil {
		return "", err
	}
	if int64(buf.Len()) > s.max {
		return "size", nil
	}
	if isBinary(buf.Bytes()) {
		return "binary", nil
	}
	return "", nil
}

// isBinary applies Git's test: a NUL byte in the first 8000 bytes.
func isBinary(b []byte) bool {
	return bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0
}

func (s *scanner) add(f Finding) {
	s.mu.Lock()
	s.report.Findings = append(s.report.Findings, f)
	s.mu.Unlock()
}

func (s *scanner) skip(rel, reason string) {
	s.mu.Lock()
	s.report.Skipped = append(s.report.Skipped, Skipped{Path: rel, Reason: reason})
	s.mu.Unlock()
}

func (s *scanner) fail(rel string, err error) {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is given as rel
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.report.Skipped = append(s.report.Skipped, Skipped{Path: rel, Reason: "unreadable: " + err.Error()})
	if len(s.errs) < maxErrors {
		s.errs = append(s.errs, fmt.Errorf("%s: %w", rel, err))
	} else if s.dropped++; s.dropped == 1 {
		s.errs = append(s.errs, errors.New("more files could not be read (see the skipped list)"))
	}
}

// excluder matches the user's .dockerignore-style patterns.
type excluder struct {
	pm            *patternmatcher.PatternMatcher
	hasExceptions bool // a "!pattern": excluded directories must still be walked
}

// ExcludeError is a malformed exclude pattern.
type ExcludeError struct {
	Pattern string
	Err     error
}

func (e *ExcludeError) Error() string {
	return fmt.Sprintf("scan: exclude pattern %q: %v", e.Pattern, e.Err)
}

func (e *ExcludeError) Unwrap() error { return e.Err }

func newExcluder(patterns []string) (*excluder, error) {
	if len(patterns) == 0 {
		return &excluder{}, nil
	}
	for _, p := range patterns {
		// One at a time, so that the error names the pattern.
		if _, err := patternmatcher.New([]string{p}); err != nil {
			return nil, &ExcludeError{Pattern: p, Err: err}
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, &ExcludeError{Pattern: strings.Join(patterns, " "), Err: err}
	}
	return &excluder{pm: pm, hasExceptions: pm.Exclusions()}, nil
}

func (e *excluder) excluded(rel string) bool {
	if e.pm == nil {
		return false
	}
	ok, err := e.pm.MatchesOrParentMatches(filepath.FromSlash(rel))
	return err == nil && ok
}
