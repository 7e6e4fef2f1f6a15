package workspace

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// linkFakeTree is a tree for resolveLink: "d" a directory, "f" a file, "l:T" a
// link to T.
type linkFakeTree map[string]string

func (ft linkFakeTree) lstat(rel string) (fs.FileMode, string, error) {
	e, ok := ft[rel]
	switch {
	case !ok:
		return 0, "", fs.ErrNotExist
	case e == "d":
		return fs.ModeDir, "", nil
	case strings.HasPrefix(e, "l:"):
		return fs.ModeSymlink, e[2:], nil
	}
	return 0, "", nil
}

var linkTree = linkFakeTree{
	"a": "d", "a/b": "d", "a/b/f": "f", "top": "f",
	"a/up":      "l:..",             // a/up -> a/.. = root
	"a/out":     "l:../..",          // escapes
	"a/etc":     "l:/etc",           // absolute outside
	"a/abs":     "l:/repo/proj/a/b", // absolute inside
	"a/b/twice": "l:../up",          // -> a/up -> root
	"a/b/esc":   "l:../out",         // a link to an escaping link
	"loop1":     "l:loop2", "loop2": "l:loop1",
	"empty": "l:",
}

var resolveTests = []struct {
	rel, target string
	want        string
	verdict     linkVerdict
}{
	{"x", "a/b/f", "a/b/f", linkInside},
	{"a/b/x", "../../top", "top", linkInside},
	{"a/b/x", "../../../top", "", linkEscapes},
	{"x", "..", "", linkEscapes},
	{"x", ".", "", linkInside},
	{"x", "a/./b//f", "a/b/f", linkInside},
	{"x", "a/up/a/b", "a/b", linkInside},
	{"x", "a/up/..", "", linkEscapes},      // physical: a/up is the root, its .. is outside
	{"x", "a/b/up/../..", "a", linkInside}, // a/b/up does not exist: by its text
	{"x", "a/out", "", linkEscapes},
	{"x", "a/out/repo", "", linkEscapes},
	{"x", "a/etc", "", linkEscapes},
	{"x", "/etc/passwd", "", linkEscapes},
	{"x", "/repo/proj/a/b/f", "a/b/f", linkInside},
	{"x", "/repo/proj", "", linkInside},
	{"x", "/repo/proj/../proj/top", "", linkEscapes}, // ".." from the root leaves it
	{"x", "/repo/projX/top", "", linkEscapes},
	{"x", "a/abs/f", "a/b/f", linkInside},
	{"x", "a/abs/../../top", "top", linkInside},
	{"x", "a/b/twice/top", "top", linkInside},
	{"x", "a/b/esc", "", linkEscapes},
	{"x", "loop1", "", linkLoop},
	{"x", "nothere", "nothere", linkInside},
	{"x", "nothere/../../x", "", linkEscapes}, // dangling, judged by its text
	{"a/x", "nothere/../../top", "top", linkInside},
	{"x", "empty/../top", "top", linkInside},
	{"x", "", "", linkEmpty},
	{"a/b/f/x", "../../..", "", linkInside}, // a link below a file: text only
}

func TestResolveLink(t *testing.T) {
	t.Parallel()
	for _, tt := range resolveTests {
		got, v := resolveLink(tt.rel, tt.target, []string{"/repo/proj"}, linkTree.lstat)
		if got != tt.want || v != tt.verdict {
			t.Errorf("resolveLink(%q -> %q) = %q, %v; want %q, %v", tt.rel, tt.target, got, v, tt.want, tt.verdict)
		}
	}
}

func TestRelLink(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ rel, to, want string }{
		{"x", "a/b/f", "a/b/f"},
		{"a/b/x", "a/b/f", "f"},
		{"a/b/x", "top", "../../top"},
		{"a/x", "", ".."},
		{"x", "", "."},
		{"a/b/x", "a/c", "../c"},
		{"a/b/x", "a/b", "."},
	} {
		if got := relLink(tt.rel, tt.to); got != tt.want {
			t.Errorf("relLink(%q, %q) = %q; want %q", tt.rel, tt.to, got, tt.want)
		}
	}
}

// FuzzResolveLink checks resolveLink against the kernel: for two links in a
// real tree with a sibling directory outside it, whatever resolveLink keeps
// must, when the kernel resolves it, end inside the tree.
func FuzzResolveLink(f *testing.F) {
	for _, tt := range resolveTests {
		f.Add(tt.target, "..")
	}
	f.Add("l2/../../outside", "../a")
	f.Add("$ROOT/a/l2/x", "$ROOT/../outside")
	f.Add("a/l2/../..", "b")
	// One tree for all inputs: only the two links change.
	base := f.TempDir()
	root := filepath.Join(base, "root")
	for _, d := range []string{"root/a/b", "outside/a/b", "root/b"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for _, p := range []string{"root/a/b/f", "outside/a/b/f"} {
		if err := os.WriteFile(filepath.Join(base, p), nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, t1, t2 string) {
		if len(t1) > 200 || len(t2) > 200 || strings.ContainsRune(t1+t2, 0) {
			return
		}
		t1 = strings.ReplaceAll(t1, "$ROOT", root)
		t2 = strings.ReplaceAll(t2, "$ROOT", root)
		links := map[string]string{"a/l1": t1, "a/l2": t2}
		for rel, tgt := range links {
			p := filepath.Join(root, rel)
			defer os.Remove(p)
			if err := os.Symlink(tgt, p); err != nil {
				return // an empty target, say
			}
		}
		s := &stager{}
		for rel, tgt := range links {
			_, v := resolveLink(rel, tgt, []string{root}, s.lstatIn(root))
			if v != linkInside {
				continue
			}
			got, err := filepath.EvalSymlinks(filepath.Join(root, rel))
			if err != nil {
				continue // dangling or a loop: the kernel reaches nothing
			}
			if !within(got, root) {
				t.Fatalf("%s -> %q (a/l1 -> %q, a/l2 -> %q) judged inside, but resolves to %s", rel, tgt, t1, t2, got)
			}
		}
	})
}
