package workspace

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
)

var parseIgnoreTests = []struct {
	file string
	want []IgnorePattern
	err  string
}{
	{"", nil, ""},
	{"# only a comment\n\n   \n", nil, ""},
	{"\xEF\xBB\xBFa\nb", []IgnorePattern{{1, "a"}, {2, "b"}}, ""},
	{"  /build/ \n./x/../y\n! keep \n", []IgnorePattern{{1, "build"}, {2, "y"}, {3, "!keep"}}, ""},
	{" # not a comment: docker checks \"#\" before trimming\n", []IgnorePattern{{1, `# not a comment: docker checks "#" before trimming`}}, ""},
	{"**/*.log\r\n!important.log\r\n", []IgnorePattern{{1, "**/*.log"}, {2, "!important.log"}}, ""},
	{"a\n!\n", nil, `f:2: "!" alone: write the pattern to take back after it, as in "!keep.txt"`},
	{"[\n", nil, `f:1: "[": syntax error in pattern`},
	{"ok\n\nx[a-\n", nil, `f:3: "x[a-": syntax error in pattern`},
	{"a\\", nil, `f:1: "a\\": syntax error in pattern`},
	{strings.Repeat("x", maxIgnoreSize+1), nil, fmt.Sprintf("f: larger than %d bytes; an ignore file holds patterns, one a line", maxIgnoreSize)},
}

func TestParseIgnore(t *testing.T) {
	t.Parallel()
	for _, tt := range parseIgnoreTests {
		ig, err := ParseIgnore("f", strings.NewReader(tt.file))
		name := tt.file[:min(len(tt.file), 40)]
		if tt.err != "" {
			var ie *IgnoreError
			if !errors.As(err, &ie) || err.Error() != tt.err {
				t.Errorf("ParseIgnore(%q): %v; want %q", name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseIgnore(%q): %v", name, err)
			continue
		}
		if !slices.Equal(ig.Patterns, tt.want) {
			t.Errorf("ParseIgnore(%q) = %v; want %v", name, ig.Patterns, tt.want)
		}
	}
}

var ignoreMatchTests = []struct {
	patterns string
	path     string
	want     bool
	reason   string
}{
	{"*.log", "a.log", true, "f:1: *.log"},
	{"*.log", "d/a.log", false, ""},
	{"**/*.log", "d/e/a.log", true, "f:1: **/*.log"},
	{"**/*.log", "a.log", true, "f:1: **/*.log"},
	{"d", "d/e/f", true, "f:1: d"},
	{"d/*", "d/e/f", true, "f:1: d/*"},
	{"d\n!d/keep", "d/keep", false, ""},
	{"d\n!d/keep", "d/other", true, "f:1: d"},
	{"d\n!d/keep\nd/keep", "d/keep", true, "f:3: d/keep"},
	{"*\n!src", "src/main.go", false, ""},
	{"*\n!src", "README", true, "f:1: *"},
	{"a?c", "abc", true, "f:1: a?c"},
	{"a?c", "a/c", false, ""},
	{"[a-c]x", "bx", true, "f:1: [a-c]x"},
	{`\*`, "*", true, `f:1: \*`},
	{"", "a", false, ""},
}

func TestIgnoreMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range ignoreMatchTests {
		ig, err := ParseIgnore("f", strings.NewReader(tt.patterns))
		if err != nil {
			t.Fatalf("ParseIgnore(%q): %v", tt.patterns, err)
		}
		if got := ig.Match(tt.path); got != tt.want {
			t.Errorf("%q: Match(%q) = %v; want %v", tt.patterns, tt.path, got, tt.want)
		}
		if got := ignoreWalkMatch(ig, tt.path); got != tt.want {
			t.Errorf("%q: the walk's match of %q = %v; want %v", tt.patterns, tt.path, got, tt.want)
		}
		if tt.want {
			if got := ig.reason(tt.path); got != "ignored by "+tt.reason {
				t.Errorf("%q: reason(%q) = %q; want %q", tt.patterns, tt.path, got, "ignored by "+tt.reason)
			}
		}
	}
}

// walkMatch matches p as staging does, one directory after another.
func ignoreWalkMatch(ig *Ignore, p string) bool {
	var st ignoreState
	comps := strings.Split(p, "/")
	var m bool
	for i := range comps {
		m, st = ig.match(strings.Join(comps[:i+1], "/"), st)
	}
	return m
}

// TestMayReinclude: the walk looks inside a left-out directory only when an
// exception could reach below it.
func TestMayReinclude(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		patterns, dir string
		want          bool
	}{
		{"node_modules", "node_modules", false},
		{"node_modules\n!node_modules/keep", "node_modules", true},
		{"node_modules\n!node_modules/keep", "other", false},
		{"*\n!src/**", "src", true},
		{"*\n!src/**", "lib", false},
		{"*\n!**/keep", "lib", true},
		{"*\n!*/keep", "lib", true},
		{"*\n!a/b/c", "a/b", true},
		{"*\n!a/b/c", "a/x", false},
		{"*\n!a", "a/b", true},
	} {
		ig, err := ParseIgnore("f", strings.NewReader(tt.patterns))
		if err != nil {
			t.Fatal(err)
		}
		if got := ig.mayReinclude(tt.dir); got != tt.want {
			t.Errorf("%q: mayReinclude(%q) = %v; want %v", tt.patterns, tt.dir, got, tt.want)
		}
	}
}

// FuzzParseIgnore: any input parses or fails with a positioned error; a file
// that parses never fails to match, the walk's matching agrees with the
// matcher's own, a left-out path names a pattern of the file, and the walk
// looks inside a left-out directory whenever an exception takes back
// something below it.
func FuzzParseIgnore(f *testing.F) {
	for _, tt := range parseIgnoreTests {
		f.Add(tt.file, "a/b.log")
	}
	for _, tt := range ignoreMatchTests {
		f.Add(tt.patterns, tt.path)
	}
	f.Fuzz(func(t *testing.T, file, p string) {
		ig, err := ParseIgnore(".moatignore", strings.NewReader(file))
		if err != nil {
			var ie *IgnoreError
			if !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), ".moatignore") {
				t.Fatalf("ParseIgnore(%q): error %v is not an IgnoreError naming the file", file, err)
			}
			return
		}
		p = path.Clean("/" + p)[1:]
		if p == "" {
			return
		}
		if _, err := ig.pm.MatchesOrParentMatches(p); err != nil {
			t.Fatalf("patterns %q: matching %q: %v", file, p, err)
		}
		whole := ig.Match(p)
		if walk := ignoreWalkMatch(ig, p); walk != whole {
			t.Fatalf("patterns %q, path %q: walk says %v, the matcher %v", file, p, walk, whole)
		}
		if whole {
			r := ig.reason(p)
			found := false
			for _, pat := range ig.Patterns {
				if r == fmt.Sprintf("ignored by .moatignore:%d: %s", pat.Line, pat.Text) {
					found = true
				}
			}
			if !found {
				t.Fatalf("patterns %q, path %q: reason %q names no pattern", file, p, r)
			}
		}
		// If a parent is left out but p is not, the walk must have looked
		// inside every left-out parent.
		if !whole {
			comps := strings.Split(p, "/")
			for i := 1; i < len(comps); i++ {
				dir := strings.Join(comps[:i], "/")
				if ig.Match(dir) && !ig.mayReinclude(dir) {
					t.Fatalf("patterns %q: %q is kept but the walk would not look inside %q", file, p, dir)
				}
			}
		}
	})
}
