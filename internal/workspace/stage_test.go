package workspace

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeTree makes files below root: a path ending in "/" is a directory,
// a content starting with "->" a symlink to the rest.
func writeStageTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		c := files[rel]
		var err error
		switch {
		case strings.HasSuffix(rel, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], p)
		default:
			err = os.WriteFile(p, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readTree lists the tree below root as writeTree's map, directories
// included.
func readStageTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
		case d.IsDir():
			got[rel+"/"] = ""
		case d.Type()&fs.ModeSymlink != 0:
			tgt, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "->" + tgt
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func stageInto(t *testing.T, src string, o StageOptions) (string, *StageReport) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	rep, err := Stage(context.Background(), src, dst, o)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	return dst, rep
}

func diffStageTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("copy lacks %s", k)
		} else if g != want[k] {
			t.Errorf("copy's %s = %q; want %q", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("copy has %s (%q), which it should not", k, got[k])
		}
	}
}

func diffStageOmitted(t *testing.T, what string, got []Omitted, want map[string]string) {
	t.Helper()
	gotm := map[string]string{}
	for _, o := range got {
		if _, dup := gotm[o.Path]; dup {
			t.Errorf("%s lists %s twice", what, o.Path)
		}
		gotm[o.Path] = o.Reason
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := gotm[k]; !ok {
			t.Errorf("%s lacks %s (%s)", what, k, want[k])
		} else if g != want[k] {
			t.Errorf("%s: %s: reason %q; want %q", what, k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(gotm)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s has %s (%s), which it should not", what, k, gotm[k])
		}
	}
}

func TestStagePatterns(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{
		".moatignore": "# build output\n" +
			"node_modules\n" +
			"!node_modules/keep/**\n" +
			"*.log\n" +
			"**/*.tmp\n" +
			"/build/\n" +
			"docs/secret*\n" +
			"!docs/secret-ok.md\n",
		"main.go":                    "package main",
		"app.log":                    "log",
		"sub/app.log":                "kept: *.log is for the top directory only",
		"sub/deep/x.tmp":             "tmp",
		"x.tmp":                      "tmp",
		"build/out.bin":              "bin",
		"sub/build/src.go":           "kept: /build/ is anchored",
		"node_modules/left/index.js": "js",
		"node_modules/keep/a/b.js":   "keep",
		"docs/secret-plan.md":        "plan",
		"docs/secret-ok.md":          "ok",
		"docs/readme.md":             "readme",
		"empty/":                     "",
	})
	dst, rep := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{
		".moatignore":              readStageTree(t, src)[".moatignore"],
		"main.go":                  "package main",
		"sub/":                     "",
		"sub/app.log":              "kept: *.log is for the top directory only",
		"sub/deep/":                "",
		"sub/build/":               "",
		"sub/build/src.go":         "kept: /build/ is anchored",
		"node_modules/":            "",
		"node_modules/keep/":       "",
		"node_modules/keep/a/":     "",
		"node_modules/keep/a/b.js": "keep",
		"docs/":                    "",
		"docs/secret-ok.md":        "ok",
		"docs/readme.md":           "readme",
		"empty/":                   "",
	})
	diffStageOmitted(t, "Omitted", rep.Omitted, map[string]string{
		"app.log":             "ignored by .moatignore:4: *.log",
		"build/":              "ignored by .moatignore:6: build",
		"docs/secret-plan.md": "ignored by .moatignore:7: docs/secret*",
		"node_modules/left/":  "ignored by .moatignore:2: node_modules",
		"sub/deep/x.tmp":      "ignored by .moatignore:5: **/*.tmp",
		"x.tmp":               "ignored by .moatignore:5: **/*.tmp",
	})
	if rep.IgnoreFile != ".moatignore" || rep.Copied != 7 || rep.Dirs != 9 {
		t.Errorf("report: ignore file %q, %d copied, %d dirs; want .moatignore, 7, 9", rep.IgnoreFile, rep.Copied, rep.Dirs)
	}
}

// TestStageIgnoreFileFlag: a file named by the caller replaces .moatignore;
// a .moatignore that lists itself is not copied.
func TestStageIgnoreFileFlag(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{".moatignore": ".moatignore\na\n", "a": "a", "b": "b"})
	dst, rep := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"b": "b"})
	diffStageOmitted(t, "Omitted", rep.Omitted, map[string]string{
		".moatignore": "ignored by .moatignore:1: .moatignore", "a": "ignored by .moatignore:2: a"})

	other := filepath.Join(t.TempDir(), "patterns")
	os.WriteFile(other, []byte("b\n"), 0o644)
	dst, rep = stageInto(t, src, StageOptions{IgnoreFile: other})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{".moatignore": ".moatignore\na\n", "a": "a"})
	diffStageOmitted(t, "Omitted", rep.Omitted, map[string]string{"b": "ignored by " + other + ":1: b"})
}

func TestStageIgnoreErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ file, want string }{
		{"ok\n!\n", `.moatignore:2: "!" alone: write the pattern to take back after it, as in "!keep.txt"`},
		{"# c\n\n[a-\n", `.moatignore:3: "[a-": syntax error in pattern`},
		{"a\n!b[\n", `.moatignore:2: "!b[": syntax error in pattern`},
	} {
		src := t.TempDir()
		writeStageTree(t, src, map[string]string{".moatignore": tt.file, "x": "x"})
		dst := filepath.Join(t.TempDir(), "copy")
		_, err := Stage(context.Background(), src, dst, StageOptions{})
		var ae *StageArgError
		if !errors.As(err, &ae) || err.Error() != tt.want {
			t.Errorf("Stage with .moatignore %q: error %v; want StageArgError %q", tt.file, err, tt.want)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("DEST exists after a refused Stage: %v", err)
		}
	}
	src := t.TempDir()
	os.Symlink("/etc/passwd", filepath.Join(src, ".moatignore"))
	_, err := Stage(context.Background(), src, filepath.Join(t.TempDir(), "c"), StageOptions{})
	if want := ".moatignore in SRC is a symlink; make it a regular file or name one with --ignore-file"; err == nil || err.Error() != want {
		t.Errorf("Stage with a linked .moatignore: %v; want %q", err, want)
	}
}

func TestStageCredentialFiles(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{
		".env":                   "X=1",
		".env.example":           "X=",
		"config/.env.production": "X=2",
		"home/.aws/credentials":  "[default]",
		"home/.ssh/id_ed25519":   "key",
		"certs/server.pem":       "pem",
		".npmrc":                 "npm",
		"envlink/.env":           "->../README",
		"README":                 "read me",
	})
	dst, rep := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{
		".env.example": "X=", "README": "read me",
		"config/": "", "home/": "", "home/.aws/": "", "home/.ssh/": "", "certs/": "", "envlink/": "",
	})
	want := map[string]string{}
	for _, p := range []string{".env", "config/.env.production", "home/.aws/credentials", "home/.ssh/id_ed25519", "certs/server.pem", ".npmrc", "envlink/.env"} {
		rule, ok := CredentialFile(p)
		if !ok {
			t.Fatalf("CredentialFile(%q) = false; the test needs names it knows", p)
		}
		want[p] = "credential file: " + rule
	}
	diffStageOmitted(t, "Omitted", rep.Omitted, want)
}

// canaryAWSKey makes an access key ID of the form AWS issues, random at each
// run, so that no real-looking secret is committed.
func stageCanaryAWS(t *testing.T) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "AKIA" + string(b)
}

func TestStageContentSecret(t *testing.T) {
	t.Parallel()
	key := stageCanaryAWS(t)
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{
		"deploy/settings.py": "import os\n\nAWS_ACCESS_KEY_ID = \"" + key + "\"\n",
		"deploy/clean.py":    "print('nothing here')\n",
	})
	dst, rep := stageInto(t, src, StageOptions{Scan: true})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"deploy/": "", "deploy/clean.py": "print('nothing here')\n"})
	if len(rep.Omitted) != 1 || rep.Omitted[0].Path != "deploy/settings.py" ||
		!strings.HasPrefix(rep.Omitted[0].Reason, "secret in content: ") || !strings.HasSuffix(rep.Omitted[0].Reason, "(line 3)") {
		t.Errorf("Omitted = %+v; want deploy/settings.py with a secret in content at line 3", rep.Omitted)
	}
	if rep.Copied != 1 || rep.Bytes != int64(len("print('nothing here')\n")) {
		t.Errorf("report counts %d files, %d bytes; want the clean file only", rep.Copied, rep.Bytes)
	}
	if j, _ := json.Marshal(rep); strings.Contains(string(j), key) {
		t.Errorf("the report holds the secret: %s", j)
	}

	// The control: without the scan the file is copied, secret and all.
	dst, rep = stageInto(t, src, StageOptions{Scan: false})
	if got := readStageTree(t, dst)["deploy/settings.py"]; !strings.Contains(got, key) || len(rep.Omitted) != 0 {
		t.Errorf("without Scan: settings.py = %q, omitted %v; want it copied", got, rep.Omitted)
	}
}

func TestStageSymlinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeStageTree(t, base, map[string]string{"outside/secret": "outside"})
	writeStageTree(t, src, map[string]string{
		"a/b/f":            "f",
		"top":              "top",
		"in":               "->a/b/f",
		"a/b/up":           "->../../top",
		"a/dir":            "->b",
		"a/viadir":         "->dir/f",
		"out":              "->../outside/secret",
		"a/b/dotdot":       "->../../../outside",
		"abs-out":          "->/etc/passwd",
		"abs-in":           "->" + src + "/a/b/f",
		"a/abs-dir":        "->" + src + "/a/b",
		"abs-root":         "->" + src,
		"dangling":         "->nothere",
		"dangling-out":     "->nothere/../../outside",
		"loop1":            "->loop2",
		"loop2":            "->loop1",
		"to-out":           "->out",
		"chain/1":          "->2",
		"chain/2":          "->3",
		"chain/3":          "->" + base + "/outside",
		"a/up-then-out":    "->dir/../../../outside",
		"a/b/viaabs":       "->../abs-dir/f",
		"a/b/phys-dotdot":  "->../dir/../../top",
		"a/b/escape-phys":  "->../../abs-root/../outside/secret",
		"a/b/escape-phys2": "->../../in/../../../outside",
	})
	dst, rep := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{
		"a/": "", "a/b/": "", "a/b/f": "f", "top": "top", "chain/": "",
		"in":               "->a/b/f",
		"a/b/up":           "->../../top",
		"a/dir":            "->b",
		"a/viadir":         "->dir/f",
		"abs-in":           "->a/b/f",
		"a/abs-dir":        "->b",
		"abs-root":         "->.",
		"dangling":         "->nothere",
		"a/b/viaabs":       "->../abs-dir/f",
		"a/b/phys-dotdot":  "->../dir/../../top",
		"a/b/escape-phys2": "->../../in/../../../outside", // in is a file: no kernel resolves it
	})
	esc := "symlink escapes SRC"
	diffStageOmitted(t, "Omitted", rep.Omitted, map[string]string{
		"out": esc, "a/b/dotdot": esc, "abs-out": esc, "dangling-out": esc, "to-out": esc,
		"chain/1": esc, "chain/2": esc, "chain/3": esc, "a/up-then-out": esc, "a/b/escape-phys": esc,
		"loop1": "symlink loop (more than 40 links on the way)", "loop2": "symlink loop (more than 40 links on the way)",
	})
	diffStageOmitted(t, "Changed", rep.Changed, map[string]string{
		"abs-in": reasonAbsLink, "a/abs-dir": reasonAbsLink, "abs-root": reasonAbsLink,
	})
	// Every link kept resolves inside the copy, as the kernel sees it.
	for rel, c := range readStageTree(t, dst) {
		if !strings.HasPrefix(c, "->") {
			continue
		}
		if p, err := filepath.EvalSymlinks(filepath.Join(dst, rel)); err == nil && !within(p, dst) {
			t.Errorf("copy's %s resolves to %s, outside the copy", rel, p)
		}
	}
	if rep.Symlinks != 11 {
		t.Errorf("report: %d symlinks; want 11", rep.Symlinks)
	}
}

// TestStageNoFollow: links to a directory and a file outside are never
// followed while copying; the control shows the files are readable.
func TestStageNoFollow(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	writeStageTree(t, base, map[string]string{"private/key": "private", "src/x": "x"})
	src := filepath.Join(base, "src")
	os.Symlink(filepath.Join(base, "private"), filepath.Join(src, "dir"))
	os.Symlink(filepath.Join(base, "private/key"), filepath.Join(src, "file"))
	if b, err := os.ReadFile(filepath.Join(src, "dir/key")); err != nil || string(b) != "private" {
		t.Fatalf("control: reading through the link: %q, %v", b, err)
	}
	dst, _ := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"x": "x"})
}

func TestStageModesAndTimes(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{
		"bin/tool": "#!/bin/sh\n", "private": "p", "ro/file": "r", "setuid": "s", "setgid": "g", "sticky/": "",
		"link": "->bin/tool", "noread": "n", "shared/": "", "group": "g", "all": "a",
	})
	modes := map[string]fs.FileMode{
		"bin/tool": 0o755, "private": 0o600, "ro/file": 0o444, "ro": 0o555, "setuid": 0o4755 | fs.ModeSetuid,
		"setgid": 0o2750 | fs.ModeSetgid, "sticky": 0o1777 | fs.ModeSticky, "noread": 0o200, "shared": 0o2775 | fs.ModeSetgid,
		"group": 0o664, "all": 0o777, // beyond a usual umask: set after creation
	}
	for _, rel := range []string{"bin/tool", "private", "ro/file", "ro", "noread", "sticky", "group", "all"} {
		if err := os.Chmod(filepath.Join(src, rel), modes[rel]); err != nil {
			t.Fatal(err)
		}
	}
	for rel, m := range map[string]uint32{"setuid": 0o4755, "setgid": 0o2750, "shared": 0o2775} {
		if err := syscall.Chmod(filepath.Join(src, rel), m); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC)
	for _, rel := range []string{"bin/tool", "ro/file", "bin", "link", "ro", ""} {
		p := filepath.Join(src, rel)
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		if err := stageUtimes(p, ts); err != nil {
			t.Fatal(err)
		}
	}
	defer os.Chmod(filepath.Join(src, "ro"), 0o755) // so that TempDir can be removed
	dst, rep := stageInto(t, src, StageOptions{Scan: true})
	defer os.Chmod(filepath.Join(dst, "ro"), 0o755)
	want := map[string]fs.FileMode{
		"bin/tool": 0o755, "private": 0o600, "ro/file": 0o444, "ro": 0o555 | fs.ModeDir, "setuid": 0o755,
		"setgid": 0o750, "sticky": 0o777 | fs.ModeSticky | fs.ModeDir, "noread": 0o200, "shared": 0o775 | fs.ModeDir,
		"group": 0o664, "all": 0o777,
	}
	for rel, m := range want {
		fi, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != m {
			t.Errorf("copy's %s mode %v; want %v", rel, fi.Mode(), m)
		}
	}
	for _, rel := range []string{"bin/tool", "ro/file", "bin", "link", "ro", ""} {
		fi, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(old) {
			t.Errorf("copy's %q modified at %v; want %v", rel, fi.ModTime(), old)
		}
	}
	diffStageOmitted(t, "Changed", rep.Changed, map[string]string{"setuid": reasonSetid, "setgid": reasonSetid, "shared/": reasonSetid})
}

func stageUtimes(p string, ts []unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func TestStageSpecialFiles(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{"a": "a"})
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A socket path must be short: bind in src with a relative name.
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "unix", stageSocketPath(t, src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[string]string{"fifo": "special file: fifo", "sock": "special file: socket"}
	if err := syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
		want["null"] = "special file: character device"
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("mknod (CI runs as root): %v", err)
	}
	dst, rep := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"a": "a"})
	diffStageOmitted(t, "Omitted", rep.Omitted, want)
}

// shortSocketPath binds below dir even when dir's path is longer than a
// socket address allows, through /proc/self/fd.
func stageSocketPath(t *testing.T, dir, name string) string {
	p := filepath.Join(dir, name)
	if len(p) < 100 {
		return p
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)
}

func TestStageHardLinks(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{"a": "same"})
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	dst, _ := stageInto(t, src, StageOptions{})
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"a": "same", "b": "same"})
	fa, _ := os.Stat(filepath.Join(dst, "a"))
	fb, _ := os.Stat(filepath.Join(dst, "b"))
	if os.SameFile(fa, fb) {
		t.Error("the copy's a and b are one file; want independent copies")
	}
}

func TestStageDestChecks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeStageTree(t, base, map[string]string{"src/x": "x", "full/y": "y", "file": "f", "empty/": ""})
	os.Symlink("empty", filepath.Join(base, "linked"))
	for _, tt := range []struct{ src, dst, want string }{
		{src, filepath.Join(base, "full"), "DEST " + base + "/full is not empty; give a new or empty directory"},
		{src, filepath.Join(base, "file"), "DEST " + base + "/file exists and is not a directory"},
		{src, filepath.Join(base, "linked"), "DEST " + base + "/linked is a symlink; name the directory itself"},
		{src, filepath.Join(src, "copy"), "DEST " + src + "/copy is inside SRC " + src},
		{src, src, "DEST " + src + " is inside SRC " + src},
		{src, base, "SRC " + src + " is inside DEST " + base},
		{filepath.Join(base, "empty"), filepath.Join(base, "empty/x/y"), "DEST " + base + "/empty/x/y is inside SRC " + base + "/empty"},
		{filepath.Join(base, "file"), filepath.Join(base, "new"), "SRC " + base + "/file is not a directory"},
		{filepath.Join(base, "none"), filepath.Join(base, "new"), "SRC " + base + "/none: no such file or directory"},
		{filepath.Join(base, "linked"), filepath.Join(base, "empty/sub"), "DEST " + base + "/empty/sub is inside SRC " + base + "/linked"},
	} {
		_, err := Stage(context.Background(), tt.src, tt.dst, StageOptions{})
		var ae *StageArgError
		if !errors.As(err, &ae) || err.Error() != tt.want {
			t.Errorf("Stage(%s, %s): %v; want StageArgError %q", tt.src, tt.dst, err, tt.want)
		}
	}
	// The same directory through a link.
	os.Symlink(filepath.Join(base, "empty"), filepath.Join(base, "empty2"))
	_, err := Stage(context.Background(), filepath.Join(base, "empty2"), filepath.Join(base, "empty"), StageOptions{})
	if want := "DEST " + base + "/empty is inside SRC " + base + "/empty2"; err == nil || err.Error() != want {
		t.Errorf("Stage(linked, its target): %v; want %q", err, want)
	}

	// An empty DEST that exists is used.
	_, err = Stage(context.Background(), src, filepath.Join(base, "empty"), StageOptions{})
	if err != nil {
		t.Fatalf("Stage into an empty directory: %v", err)
	}
	diffStageTrees(t, readStageTree(t, filepath.Join(base, "empty")), map[string]string{"x": "x"})
}

// TestStageLargeTree copies thousands of files in nested directories and
// compares every byte.
func TestStageLargeTree(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	files := map[string]string{}
	for i := range 3000 {
		rel := fmt.Sprintf("d%02d/e%02d/f%04d.txt", i%37, i%11, i)
		files[rel] = strings.Repeat(fmt.Sprintf("line %d\n", i), i%50)
	}
	big := make([]byte, 8<<20+17) // larger than one copy_file_range chunk in some kernels
	rand.Read(big)
	writeStageTree(t, src, files)
	os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644)
	files["big.bin"] = string(big)
	dst, rep := stageInto(t, src, StageOptions{Scan: false, Workers: 3})
	got := readStageTree(t, dst)
	for rel, c := range files {
		if got[rel] != c {
			t.Fatalf("copy's %s differs (%d bytes; want %d)", rel, len(got[rel]), len(c))
		}
	}
	if rep.Copied != len(files) || len(rep.Omitted) != 0 {
		t.Errorf("report: %d copied, %d omitted; want %d, 0", rep.Copied, len(rep.Omitted), len(files))
	}
}

// TestStageCanceled: a cancelled Stage removes its copy.
func TestStageCanceled(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeStageTree(t, src, map[string]string{"a/b": "b"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "copy")
	if _, err := Stage(ctx, src, dst, StageOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage with a cancelled context: %v; want context.Canceled", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DEST left behind: %v", err)
	}
}

// TestStageCheckCopiedLinks: the last check finds a link that leaves the
// copy, as one made from a SRC changed during the copy would, and removes it.
func TestStageCheckCopiedLinks(t *testing.T) {
	t.Parallel()
	dst := t.TempDir()
	writeStageTree(t, dst, map[string]string{"a/f": "f", "a/in": "->f", "a/out": "->../../x", "a/via": "->out/y"})
	s := &stager{dst: dst, links: []string{"a/in", "a/via", "a/out"}}
	s.rep.Copied, s.rep.Symlinks = 4, 3
	s.checkCopiedLinks()
	diffStageTrees(t, readStageTree(t, dst), map[string]string{"a/": "", "a/f": "f", "a/in": "->f"})
	diffStageOmitted(t, "Omitted", s.rep.Omitted, map[string]string{"a/out": "symlink escapes SRC", "a/via": "symlink escapes SRC"})
	if s.rep.Copied != 2 || s.rep.Symlinks != 1 {
		t.Errorf("counts after the check: %d copied, %d symlinks; want 2, 1", s.rep.Copied, s.rep.Symlinks)
	}
}
