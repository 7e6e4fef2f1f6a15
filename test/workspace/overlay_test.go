package workspace_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The agent changes a tree of every kind of entry in an overlay; the
// workspace is untouched until apply, diff shows each change and flags the
// sensitive ones, and apply makes the workspace what the agent saw.
func TestOverlayReviewAndApply(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("a.txt", "one\ntwo\nthree\n", 0o644)
	b.write("gone.txt", "to be deleted\n", 0o644)
	b.write("old-name.txt", "renamed content\n", 0o644)
	b.write("run.sh", "#!/bin/sh\necho hi\n", 0o644)
	b.write("dir/x.txt", "x\n", 0o644)
	b.write("dir/y.txt", "y\n", 0o644)
	b.write("doomed/z.txt", "z\n", 0o644)
	bin := []byte{0, 1, 2, 3, 0xff, 0xfe, 0}
	os.WriteFile(filepath.Join(b.ws, "blob.bin"), bin, 0o644)
	// A large tree: 2000 files in 40 directories; the agent edits 3.
	for d := 0; d < 40; d++ {
		for f := 0; f < 50; f++ {
			b.write(fmt.Sprintf("big/d%02d/f%02d.txt", d, f), fmt.Sprintf("file %d %d\n", d, f), 0o644)
		}
	}

	r := b.sh(`set -e
printf 'one\nTWO\nthree\nfour\n' > a.txt
rm gone.txt
mv old-name.txt new-name.txt
mv dir moved
rm -r doomed
chmod 755 run.sh
printf '\001\002\000' >> blob.bin
mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml
ln -s /etc/passwd outward
echo added > big/d07/new.txt
echo edit >> big/d03/f10.txt
rm big/d20/f00.txt
cat a.txt moved/x.txt new-name.txt`, "--workspace", "overlay")
	if r.code != 0 {
		t.Fatalf("moat run --workspace overlay: %v", r)
	}
	mustContain(t, "the agent's view", r.stdout, "TWO\nthree\nfour\n", "x\n", "renamed content\n")
	mustContain(t, "moat run's summary", r.stderr, "moat diff run-")

	// Nothing reached the workspace.
	if got := b.read("a.txt"); got != "one\ntwo\nthree\n" {
		t.Fatalf("the run changed the workspace: a.txt = %q", got)
	}
	for _, p := range []string{"gone.txt", "old-name.txt", "dir/x.txt", "doomed/z.txt", "big/d20/f00.txt"} {
		if _, err := os.Lstat(filepath.Join(b.ws, p)); err != nil {
			t.Errorf("the run deleted %s from the workspace: %v", p, err)
		}
	}
	for _, p := range []string{"new-name.txt", "moved", "outward", ".github"} {
		if _, err := os.Lstat(filepath.Join(b.ws, p)); err == nil {
			t.Errorf("the run created %s in the workspace", p)
		}
	}

	id := b.session()
	st := b.moat(nil, "diff", id, "--stat")
	if st.code != 0 {
		t.Fatalf("moat diff --stat: %v", st)
	}
	mustContain(t, "moat diff --stat", st.stdout,
		"M a.txt\n",
		"D gone.txt\n",
		"R old-name.txt -> new-name.txt\n",
		"R dir -> moved/",
		"D doomed/\n",
		"M run.sh  (mode 0644 -> 0755; SENSITIVE: shell script; SENSITIVE: made executable)",
		"M blob.bin  (binary)",
		"A .github/workflows/ci.yml  (SENSITIVE: CI configuration)",
		"A outward  (symlink to /etc/passwd; SENSITIVE: symlink pointing outside the workspace (/etc/passwd))",
		"A big/d07/new.txt\n", "M big/d03/f10.txt\n", "D big/d20/f00.txt\n",
	)
	mustNotContain(t, "moat diff --stat", st.stdout, "big/d03/f11.txt", "@@")
	full := b.moat(nil, "diff", id)
	mustContain(t, "moat diff", full.stdout, "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,4 @@\n one\n-two\n+TWO\n three\n+four\n",
		"--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-to be deleted\n")
	mustNotContain(t, "moat diff", full.stdout, "+++ b/blob.bin")

	ap := b.moat(nil, "apply", id)
	if ap.code != 0 {
		t.Fatalf("moat apply: %v", ap)
	}
	for p, want := range map[string]string{
		"a.txt": "one\nTWO\nthree\nfour\n", "new-name.txt": "renamed content\n", "moved/x.txt": "x\n", "moved/y.txt": "y\n",
		".github/workflows/ci.yml": "on: push\n", "big/d07/new.txt": "added\n", "big/d03/f10.txt": "file 3 10\nedit\n",
		"blob.bin": string(append(bin, 1, 2, 0)), "big/d03/f11.txt": "file 3 11\n",
	} {
		if got := b.read(p); got != want {
			t.Errorf("after apply, %s = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"gone.txt", "old-name.txt", "dir", "doomed", "big/d20/f00.txt"} {
		if _, err := os.Lstat(filepath.Join(b.ws, p)); err == nil {
			t.Errorf("after apply, %s still exists", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(b.ws, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("after apply, run.sh's mode: %v %v", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(b.ws, "outward")); err != nil || target != "/etc/passwd" {
		t.Errorf("after apply, outward is not the symlink the agent made: %q %v", target, err)
	}
	// Applied: no change is left, and apply's temporary files are gone.
	if st := b.moat(nil, "diff", id, "--stat"); !strings.Contains(st.stdout, "0 change(s)") {
		t.Errorf("after apply, diff still shows changes:\n%s", st.stdout)
	}
	filepath.Walk(b.ws, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".moat-apply-") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	if r := b.moat(nil, "discard", id); r.code != 0 {
		t.Fatalf("moat discard: %v", r)
	}
	if r := b.moat(nil, "diff", id); r.code == 0 || !strings.Contains(r.stderr, "no such session") {
		t.Fatalf("diff after discard: %v", r)
	}
}

// apply refuses, all at once, when a file it would write changed in the
// workspace since the session started; --force overwrites.
func TestApplyConflicts(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("a.txt", "base\n", 0o644)
	b.write("b.txt", "base\n", 0o644)
	if r := b.sh(`echo agent > a.txt; echo agent > b.txt; echo agent > c.txt`, "--workspace", "overlay"); r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	id := b.session()
	b.write("a.txt", "the user's edit\n", 0o644)
	b.write("c.txt", "the user's new file\n", 0o644)
	r := b.moat(nil, "apply", id)
	if r.code == 0 {
		t.Fatalf("apply over the user's edits succeeded: %v", r)
	}
	mustContain(t, "apply's refusal", r.stderr, "a.txt", "c.txt", "nothing applied", "--force")
	if b.read("a.txt") != "the user's edit\n" || b.read("b.txt") != "base\n" || b.read("c.txt") != "the user's new file\n" {
		t.Fatalf("a refused apply wrote: a=%q b=%q c=%q", b.read("a.txt"), b.read("b.txt"), b.read("c.txt"))
	}
	st := b.moat(nil, "diff", id, "--stat")
	mustContain(t, "diff", st.stdout, "M a.txt  (CONFLICT", "changed in the workspace since")
	// Naming the path without a conflict applies it alone.
	if r := b.moat(nil, "apply", id, "b.txt"); r.code != 0 || b.read("b.txt") != "agent\n" || b.read("a.txt") != "the user's edit\n" {
		t.Fatalf("apply b.txt: %v; a=%q b=%q", r, b.read("a.txt"), b.read("b.txt"))
	}
	if r := b.moat(nil, "apply", id, "--force"); r.code != 0 {
		t.Fatalf("apply --force: %v", r)
	}
	if b.read("a.txt") != "agent\n" || b.read("c.txt") != "agent\n" {
		t.Fatalf("apply --force: a=%q c=%q", b.read("a.txt"), b.read("c.txt"))
	}
}

// apply never writes through a symlink, even with --force: a directory of
// the workspace replaced by a link to elsewhere after the run is refused.
func TestApplyNeverFollowsSymlinks(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("sub/f.txt", "base\n", 0o644)
	outside := filepath.Join(filepath.Dir(b.ws), "outside")
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "f.txt"), []byte("outside\n"), 0o644)
	if r := b.sh(`echo agent > sub/f.txt`, "--workspace", "overlay"); r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	id := b.session()
	os.RemoveAll(filepath.Join(b.ws, "sub"))
	if err := os.Symlink(outside, filepath.Join(b.ws, "sub")); err != nil {
		t.Fatal(err)
	}
	// Both the link and the file behind it changed since the session
	// started: refused.
	r := b.moat(nil, "apply", id)
	mustContain(t, "apply's refusal", r.stderr, "sub, sub/f.txt", "nothing applied")
	// The file alone, forced: its directory is reached through a symlink,
	// which apply never follows.
	r = b.moat(nil, "apply", id, "sub/f.txt", "--force")
	if r.code == 0 {
		t.Fatalf("apply through a symlink succeeded: %v", r)
	}
	mustContain(t, "apply's refusal", r.stderr, "sub is reached through a symlink; refused")
	if got, _ := os.ReadFile(filepath.Join(outside, "f.txt")); string(got) != "outside\n" {
		t.Fatalf("apply wrote through the symlink: %q", got)
	}
	// All of it, forced: the link is replaced by the agent's directory;
	// still nothing is written outside.
	if r := b.moat(nil, "apply", id, "--force"); r.code != 0 {
		t.Fatalf("apply --force: %v", r)
	}
	if fi, err := os.Lstat(filepath.Join(b.ws, "sub")); err != nil || !fi.IsDir() || b.read("sub/f.txt") != "agent\n" {
		t.Fatalf("apply --force: sub is %v %v", fi.Mode(), err)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "f.txt")); string(got) != "outside\n" {
		t.Fatalf("apply wrote through the symlink: %q", got)
	}
}

// A crash in the middle of apply (SIGKILL after a random number of
// entries) leaves every file either old or new, never partial; applying
// again finishes the job without --force.
func TestApplyCrash(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	const n = 120
	big := strings.Repeat("new content line\n", 4000) // 68 KB: several writes each
	for i := 0; i < n; i++ {
		b.write(fmt.Sprintf("d%d/f%03d.txt", i%6, i), fmt.Sprintf("old %d\n", i), 0o644)
	}
	script := `for f in d*/f*.txt; do cp /dev/stdin "$f" <<EOF
` + big + `EOF
done`
	if r := b.sh(script, "--workspace", "overlay"); r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	id := b.session()
	crashAt := 1 + rand.IntN(n-2)
	r := b.moat([]string{"MOAT_TEST_APPLY_CRASH_AFTER=" + strconv.Itoa(crashAt)}, "apply", id)
	if r.code != -1 { // killed by a signal
		t.Fatalf("apply with a crash after %d entries did not crash: %v", crashAt, r)
	}
	olds, news := 0, 0
	for i := 0; i < n; i++ {
		got := b.read(fmt.Sprintf("d%d/f%03d.txt", i%6, i))
		switch got {
		case fmt.Sprintf("old %d\n", i):
			olds++
		case big:
			news++
		default:
			t.Fatalf("after a crash after %d entries, f%03d is neither old nor new (%d bytes)", crashAt, i, len(got))
		}
	}
	if news != crashAt || olds != n-crashAt {
		t.Errorf("crash after %d entries: %d new, %d old", crashAt, news, olds)
	}
	if r := b.moat(nil, "apply", id); r.code != 0 {
		t.Fatalf("apply after the crash: %v", r)
	}
	for i := 0; i < n; i++ {
		if got := b.read(fmt.Sprintf("d%d/f%03d.txt", i%6, i)); got != big {
			t.Fatalf("after the second apply f%03d is %d bytes", i, len(got))
		}
	}
}

// Without overlayfs (simulated), the overlay mode falls back to a copy,
// says so, and the review works the same.
func TestOverlayFallbackCopy(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("a.txt", "base\n", 0o644)
	b.write("b.txt", "keep\n", 0o644)
	r := b.moat([]string{"MOAT_TEST_NO_OVERLAY=1"}, "run", "--no-network", "--workspace", "overlay", "--", "sh", "-c", "echo agent > a.txt; rm b.txt")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	mustContain(t, "run's notes", r.stderr, "overlayfs is not available here")
	if b.read("a.txt") != "base\n" {
		t.Fatal("the fallback wrote the workspace")
	}
	id := b.session()
	st := b.moat(nil, "diff", id, "--stat")
	mustContain(t, "diff", st.stdout, "M a.txt\n", "D b.txt\n", "2 change(s)")
	if r := b.moat(nil, "apply", id); r.code != 0 || b.read("a.txt") != "agent\n" {
		t.Fatalf("apply: %v", r)
	}
}

// A session whose run is still going on cannot be applied or discarded.
func TestRunningSessionRefused(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("a.txt", "base\n", 0o644)
	fifo := filepath.Join(filepath.Dir(b.ws), "go")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		done <- b.moat(nil, "run", "--no-network", "--write", filepath.Dir(fifo), "--workspace", "overlay", "--",
			"sh", "-c", "echo agent > a.txt; read x < "+fifo)
	}()
	// The run has opened the fifo once this open returns.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := b.session()
	ap := b.moat(nil, "apply", id)
	dc := b.moat(nil, "discard", id)
	ls := b.moat(nil, "sessions")
	w.Write([]byte("go\n"))
	w.Close()
	if r := <-done; r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	mustContain(t, "apply during the run", ap.stderr, "still going on")
	mustContain(t, "discard during the run", dc.stderr, "still going on")
	mustContain(t, "sessions during the run", ls.stdout, "running")
	if ap.code == 0 || dc.code == 0 {
		t.Fatalf("apply %d, discard %d during the run", ap.code, dc.code)
	}
	if r := b.moat(nil, "apply", id); r.code != 0 || b.read("a.txt") != "agent\n" {
		t.Fatalf("apply after the run: %v", r)
	}
	if !bytes.Contains([]byte(b.moat(nil, "sessions").stdout), []byte("exit 0")) {
		t.Error("the ended run is not listed as exit 0")
	}
}
