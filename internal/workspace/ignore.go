package workspace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// IgnoreFileName is the file in a staged tree's root whose patterns say what
// to leave out, when no other file is named.
const IgnoreFileName = ".moatignore"

// maxIgnoreSize bounds an ignore file: it comes from the tree being staged,
// which moat does not trust.
const maxIgnoreSize = 1 << 20

// Ignore is a parsed ignore file: .dockerignore patterns, one a line, matched
// with moby's patternmatcher exactly as `docker build` matches them ("*" within
// a name, "**" across directories, a later "!pattern" takes back an earlier
// match, a pattern matching a directory matches all below it).
// An Ignore is not safe for concurrent use: the matcher compiles lazily.
type Ignore struct {
	File     string          // the name used in reasons and errors
	Patterns []IgnorePattern // in file order
	pm       *patternmatcher.PatternMatcher
	single   []*patternmatcher.PatternMatcher // one per pattern, sign removed: which one decided
}

// IgnorePattern is one pattern and where it was written.
type IgnorePattern struct {
	Line int
	Text string // cleaned as docker cleans it; "!" first for an exception
}

// IgnoreError is a pattern that cannot be compiled, or a file that cannot be read.
type IgnoreError struct {
	File string
	Line int // 0: the file as a whole
	Msg  string
}

func (e *IgnoreError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// LoadIgnore reads the ignore file at path; name is what reasons call it.
func LoadIgnore(path, name string) (*Ignore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseIgnore(name, f)
}

// ParseIgnore parses .dockerignore-style patterns from r, normalising each
// line as docker's ignorefile.ReadAll does (comments, blank lines, a UTF-8
// BOM, surrounding spaces, a leading "/"), and checks that every pattern
// compiles, so that matching never fails later. Errors name file:line.
func ParseIgnore(name string, r io.Reader) (*Ignore, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxIgnoreSize+1))
	if err != nil {
		return nil, &IgnoreError{File: name, Msg: err.Error()}
	}
	if len(data) > maxIgnoreSize {
		return nil, &IgnoreError{File: name, Msg: fmt.Sprintf("larger than %d bytes; an ignore file holds patterns, one a line", maxIgnoreSize)}
	}
	data = bytes.TrimPrefix(data, []byte{0xEF, 0xBB, 0xBF})
	ig := &Ignore{File: name}
	var texts []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxIgnoreSize+1)
	for line := 1; sc.Scan(); line++ {
		// One line at a time through docker's own reader, so that the
		// normalisation is docker's and the line number is known.
		got, err := ignorefile.ReadAll(bytes.NewReader(sc.Bytes()))
		if err != nil {
			return nil, &IgnoreError{File: name, Line: line, Msg: err.Error()}
		}
		if len(got) == 0 {
			continue
		}
		p := got[0]
		body := strings.TrimPrefix(p, "!")
		if body == "" {
			return nil, &IgnoreError{File: name, Line: line, Msg: `"!" alone: write the pattern to take back after it, as in "!keep.txt"`}
		}
		one, err := compilePattern(body)
		if err != nil {
			return nil, &IgnoreError{File: name, Line: line, Msg: fmt.Sprintf("%q: %v", p, err)}
		}
		ig.Patterns = append(ig.Patterns, IgnorePattern{Line: line, Text: p})
		ig.single = append(ig.single, one)
		texts = append(texts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, &IgnoreError{File: name, Msg: err.Error()}
	}
	pm, err := patternmatcher.New(texts)
	if err != nil { // each pattern compiled alone above; this should not happen
		return nil, &IgnoreError{File: name, Msg: err.Error()}
	}
	// Compile every pattern of the shared matcher now: a path that matches
	// nothing still visits every inclusion, and "!" patterns are compiled
	// through the single ones' check above, which used the same text.
	if _, err := pm.MatchesOrParentMatches(".moat-compile-check"); err != nil {
		return nil, &IgnoreError{File: name, Msg: err.Error()}
	}
	ig.pm = pm
	return ig, nil
}

// compilePattern returns a matcher for one pattern (without its "!") after
// forcing the lazy compilation that would otherwise fail at match time.
func compilePattern(body string) (*patternmatcher.PatternMatcher, error) {
	pm, err := patternmatcher.New([]string{body})
	if err != nil {
		return nil, err
	}
	if _, err := pm.MatchesOrParentMatches("x"); err != nil {
		if errors.Is(err, filepath.ErrBadPattern) {
			return nil, errors.New("syntax error in pattern")
		}
		return nil, err
	}
	return pm, nil
}

// ignoreState is what matching a directory leaves for matching its entries.
type ignoreState = patternmatcher.MatchInfo

// match reports whether the slash-separated path rel is left out, given its
// parent directory's state, and the state for rel's own entries. A nil
// Ignore leaves nothing out.
func (ig *Ignore) match(rel string, parent ignoreState) (bool, ignoreState) {
	if ig == nil || len(ig.Patterns) == 0 {
		return false, parent
	}
	m, st, err := ig.pm.MatchesUsingParentResults(rel, parent)
	if err != nil {
		// Every pattern compiled in ParseIgnore; leave out what cannot be
		// decided rather than copy it.
		return true, st
	}
	return m, st
}

// Match reports whether the slash-separated path rel is left out. It is the
// slow form of what staging does during its walk, for tools and tests.
func (ig *Ignore) Match(rel string) bool {
	if ig == nil || len(ig.Patterns) == 0 {
		return false
	}
	m, err := ig.pm.MatchesOrParentMatches(rel)
	return m || err != nil
}

// reason names the pattern that left rel out: the last pattern, not an
// exception, that matches rel or one of its parents.
func (ig *Ignore) reason(rel string) string {
	for i := len(ig.Patterns) - 1; i >= 0; i-- {
		p := ig.Patterns[i]
		if strings.HasPrefix(p.Text, "!") {
			continue
		}
		if m, _ := ig.single[i].MatchesOrParentMatches(rel); m {
			return fmt.Sprintf("ignored by %s:%d: %s", ig.File, p.Line, p.Text)
		}
	}
	return "ignored by " + ig.File
}

// mayReinclude reports whether an exception pattern could take back something
// below the left-out directory dir, so that the walk must look inside it.
// It errs towards yes: a needless look costs time, a missed one a file.
func (ig *Ignore) mayReinclude(dir string) bool {
	if ig == nil || !ig.pm.Exclusions() {
		return false
	}
	dirs := strings.Split(dir, "/")
	for _, p := range ig.Patterns {
		body, ok := strings.CutPrefix(p.Text, "!")
		if !ok {
			continue
		}
		if couldMatchBelow(strings.Split(body, "/"), dirs) {
			return true
		}
	}
	return false
}

// couldMatchBelow reports whether a pattern's components could match a path
// that starts with the directory components dirs.
func couldMatchBelow(pat, dirs []string) bool {
	for i, d := range dirs {
		if i >= len(pat) {
			return true // the pattern names an ancestor: let the matcher decide
		}
		if strings.Contains(pat[i], "**") {
			return true
		}
		ok, err := path.Match(pat[i], d)
		if err != nil || !ok {
			return err != nil
		}
	}
	return true
}
