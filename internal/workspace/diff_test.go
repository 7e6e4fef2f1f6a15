package workspace

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// applyScript rebuilds b from a and an edit script, checking that the
// script's kept and removed lines are a's, in order.
func applyScript(t testing.TB, a []string, ops []editOp) []string {
	var out []string
	i := 0
	for _, op := range ops {
		switch op.op {
		case ' ', '-':
			if i >= len(a) || a[i] != op.line {
				t.Fatalf("op %q %q does not match a[%d]", op.op, op.line, i)
			}
			i++
			if op.op == ' ' {
				out = append(out, op.line)
			}
		case '+':
			out = append(out, op.line)
		}
	}
	if i != len(a) {
		t.Fatalf("script consumed %d of %d lines", i, len(a))
	}
	return out
}

func TestMyers(t *testing.T) {
	for _, c := range [][2]string{
		{"", ""}, {"a\n", ""}, {"", "a\n"}, {"a\nb\nc\n", "a\nc\n"}, {"a\nb\nc\n", "a\nB\nc\nd\n"},
		{"x\ny\nz\n", "z\ny\nx\n"}, {"a\nb", "a\nb\n"},
	} {
		a, b := splitLines([]byte(c[0])), splitLines([]byte(c[1]))
		got := applyScript(t, a, myers(a, b))
		if strings.Join(got, "") != strings.Join(b, "") {
			t.Errorf("%q -> %q: rebuilt %q", c[0], c[1], got)
		}
	}
	var buf bytes.Buffer
	unifiedDiff(&buf, splitLines([]byte("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n")), splitLines([]byte("1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\ntwelve\n")))
	want := "@@ -1,6 +1,6 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+twelve\n"
	if buf.String() != want {
		t.Errorf("unified diff:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	unifiedDiff(&buf, splitLines([]byte("a")), splitLines([]byte("b")))
	if buf.String() != "@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n" {
		t.Errorf("no final newline:\n%s", buf.String())
	}
}

// The agent controls both sides of a diff: any pair of texts must give a
// script that rebuilds the new text from the old.
func FuzzMyers(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\nd\n")
	f.Add("", "x")
	f.Add("x\nx\nx\n", "x\ny\nx\n")
	f.Fuzz(func(t *testing.T, x, y string) {
		a, b := splitLines([]byte(x)), splitLines([]byte(y))
		got := applyScript(t, a, myers(a, b))
		if strings.Join(got, "") != y {
			t.Fatalf("rebuilt %q, want %q", strings.Join(got, ""), y)
		}
		var buf bytes.Buffer
		if err := unifiedDiff(&buf, a, b); err != nil {
			t.Fatal(err)
		}
	})
}

// An upper layer as overlayfs (and userspace tools) leave it: whiteouts as
// 0/0 character devices or user.overlay.whiteout files, an opaque
// directory; the sensitive paths flagged.
func TestUpperWrites(t *testing.T) {
	base, upper := t.TempDir(), t.TempDir()
	for p, c := range map[string]string{"keep.txt": "k", "del.txt": "d", "del2.txt": "d2", "opq/a": "a", "opq/b": "b", "same.txt": "s"} {
		os.MkdirAll(filepath.Dir(filepath.Join(base, p)), 0o755)
		os.WriteFile(filepath.Join(base, p), []byte(c), 0o644)
	}
	if err := unix.Mknod(filepath.Join(upper, "del.txt"), unix.S_IFCHR, 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mknod a whiteout: %v", err)
		}
		t.Skipf("mknod a whiteout: %v", err) // not root
	}
	os.WriteFile(filepath.Join(upper, "del2.txt"), nil, 0o644)
	if err := unix.Setxattr(filepath.Join(upper, "del2.txt"), xattrWhiteout, []byte("y"), 0); err != nil {
		t.Fatalf("user xattr: %v", err)
	}
	os.Mkdir(filepath.Join(upper, "opq"), 0o755)
	os.WriteFile(filepath.Join(upper, "opq", "b"), []byte("new b"), 0o644)
	unix.Setxattr(filepath.Join(upper, "opq"), xattrOpaque, []byte("y"), 0)
	os.WriteFile(filepath.Join(upper, "same.txt"), []byte("s"), 0o644) // copied up, unchanged
	os.MkdirAll(filepath.Join(upper, ".git", "hooks"), 0o755)
	os.WriteFile(filepath.Join(upper, ".git", "hooks", "pre-commit"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(upper, "Makefile"), []byte("all:\n"), 0o644)

	ws, err := upperWrites(upper, base)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := TakeManifest(base)
	cs, err := classify(base, ws, m)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Describe())
	}
	want := []string{
		"A .git/  (SENSITIVE: git metadata)",
		"A .git/hooks/  (SENSITIVE: git hook (runs on git commands))",
		"A .git/hooks/pre-commit  (SENSITIVE: git hook (runs on git commands); SENSITIVE: made executable)",
		"A Makefile  (SENSITIVE: build or install configuration that runs code)",
		"D del.txt",
		"D del2.txt",
		"D opq/a",
		"M opq/b",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSessionLockAndIDs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sessions")
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "x y"} {
		if _, err := NewSession(root, Record{ID: bad}); err == nil {
			t.Errorf("id %q accepted", bad)
		}
		if _, err := OpenSession(root, bad); err == nil {
			t.Errorf("open %q accepted", bad)
		}
	}
	s, err := NewSession(root, Record{ID: "run-1", Base: t.TempDir(), Mode: ModeOverlay})
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenSession(root, "run-1")
	if err != nil || !o.Running() || o.StatusText() != StatusRunning {
		t.Fatalf("open a running session: %v %v", err, o)
	}
	if err := o.Acquire(); err != ErrRunning {
		t.Fatalf("acquire a running session: %v", err)
	}
	if err := Discard(root, "run-1"); err == nil {
		t.Fatal("discarded a running session")
	}
	s.Finish(StatusExited, 3)
	o, _ = OpenSession(root, "run-1")
	if o.Running() || o.StatusText() != "exit 3" {
		t.Fatalf("after Finish: running %v, %s", o.Running(), o.StatusText())
	}
	if err := Discard(root, "run-1"); err != nil {
		t.Fatal(err)
	}
	if ss, _ := ListSessions(root); len(ss) != 0 {
		t.Fatalf("after discard: %d sessions", len(ss))
	}
}
