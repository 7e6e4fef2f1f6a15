package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/workspace"
)

func runStageCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(context.Background(), e, append([]string{"stage"}, args...))
	return out.String(), errb.String(), code
}

// stageCanary is a GitHub token of the issued form, random at each run.
func stageCanary(t *testing.T) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 36)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "ghp_" + string(b)
}

func stageSrc(t *testing.T, canary string) string {
	t.Helper()
	src := t.TempDir()
	for rel, c := range map[string]string{
		".moatignore":   "*.log\n",
		"main.go":       "package main\n",
		"debug.log":     "log\n",
		".env":          "X=1\n",
		"ci/deploy.sh":  "#!/bin/sh\nexport GITHUB_TOKEN=" + canary + "\n",
		"a name\nwith":  "x",
		"docs/guide.md": "# guide\n",
	} {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "passwd")); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestStageCommandText(t *testing.T) {
	t.Parallel()
	canary := stageCanary(t)
	src := stageSrc(t, canary)
	dst := filepath.Join(t.TempDir(), "copy")
	stdout, stderr, code := runStageCmd(t, src, dst)
	if code != exitOK || stderr != "" {
		t.Fatalf("moat stage: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := []string{
		"left out  .env  (credential file: dotenv-file)",
		"left out  ci/deploy.sh  (secret in content: github-pat (line 2))",
		"left out  debug.log  (ignored by .moatignore:1: *.log)",
		"left out  passwd  (symlink escapes SRC)",
		"staged " + src + " into " + dst + ": 4 files and symlinks (28 B), 3 directories; 4 left out; patterns from .moatignore",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("moat stage printed:\n%s\nwant:\n%s", stdout, strings.Join(want, "\n"))
	}
	if strings.Contains(stdout, canary) {
		t.Errorf("the report holds the secret")
	}
	if _, err := os.Stat(filepath.Join(dst, "a name\nwith")); err != nil {
		t.Errorf("a file with a newline in its name was not copied: %v", err)
	}
}

func TestStageCommandJSON(t *testing.T) {
	t.Parallel()
	canary := stageCanary(t)
	src := stageSrc(t, canary)
	dst := filepath.Join(t.TempDir(), "copy")
	stdout, stderr, code := runStageCmd(t, "--json", src, dst, "--no-scan")
	if code != exitOK || stderr != "" {
		t.Fatalf("moat stage --json: exit %d, stderr %q", code, stderr)
	}
	var rep workspace.StageReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("moat stage --json printed %q: %v", stdout, err)
	}
	// --no-scan: the token's file is copied; names still decide.
	var paths []string
	for _, o := range rep.Omitted {
		paths = append(paths, o.Path)
	}
	if got := strings.Join(paths, " "); got != ".env debug.log passwd" || rep.Copied != 5 {
		t.Errorf("--json --no-scan: omitted %q, %d copied; want .env debug.log passwd, 5", got, rep.Copied)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "ci/deploy.sh")); !bytes.Contains(b, []byte(canary)) {
		t.Errorf("--no-scan: ci/deploy.sh not copied whole")
	}
}

func TestStageCommandErrors(t *testing.T) {
	t.Parallel()
	src := stageSrc(t, "none")
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	bad := filepath.Join(t.TempDir(), "bad.ignore")
	os.WriteFile(bad, []byte("ok\n[\n"), 0o644)
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{src}, exitUsage, "moat: stage: want SRC and DEST, got 1 arguments\n"},
		{[]string{src, full}, exitUsage, "moat: stage: DEST " + full + " is not empty; give a new or empty directory\n"},
		{[]string{src, filepath.Join(src, "copy")}, exitUsage, "moat: stage: DEST " + src + "/copy is inside SRC " + src + "\n"},
		{[]string{src, filepath.Join(full, "new"), "--ignore-file", bad}, exitUsage, "moat: stage: " + bad + `:2: "[": syntax error in pattern` + "\n"},
		{[]string{src, "/proc/self/moat-stage"}, exitInternal, "moat: stage: mkdir /proc/"},
	} {
		_, stderr, code := runStageCmd(t, tt.args...)
		if code != tt.code || !strings.HasPrefix(stderr, tt.stderr) {
			t.Errorf("moat stage %q: exit %d, stderr %q; want %d, %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
}
