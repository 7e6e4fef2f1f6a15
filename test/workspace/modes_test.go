package workspace_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --workspace readonly: the agent reads the workspace and cannot write it.
func TestReadOnlyWorkspace(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("a.txt", "base\n", 0o644)
	r := b.sh(`cat a.txt; echo x > a.txt && echo WROTE; echo y > new.txt && echo CREATED; rm a.txt && echo REMOVED; exit 0`, "--workspace", "readonly")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	mustContain(t, "readonly run", r.stdout, "base\n")
	mustNotContain(t, "readonly run", r.stdout, "WROTE", "CREATED", "REMOVED")
	mustContain(t, "readonly run", r.stderr, "Read-only file system")
	if b.read("a.txt") != "base\n" {
		t.Fatal("a readonly run changed the workspace")
	}
	// The control: the default (rw) writes.
	if r := b.sh(`echo x > a.txt`); r.code != 0 || b.read("a.txt") != "x\n" {
		t.Fatalf("rw run: %v", r)
	}
}

// --workspace tmpfs: an empty, size-limited, noexec directory; nothing
// the agent writes persists, and the workspace is not visible.
func TestTmpfsWorkspace(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	b.write("secret-notes.txt", "do not show\n", 0o644)
	r := b.sh(`ls -A; echo made > f.txt; cat f.txt
printf '#!/bin/sh\necho RAN\n' > s.sh; chmod +x s.sh; ./s.sh || echo NOEXEC
dd if=/dev/zero of=big bs=1M count=8 2>/dev/null || echo FULL; exit 0`, "--workspace", "tmpfs:4m")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	mustContain(t, "tmpfs run", r.stdout, "made\n", "NOEXEC", "FULL")
	mustNotContain(t, "tmpfs run", r.stdout, "secret-notes.txt", "RAN")
	if _, err := os.Stat(filepath.Join(b.ws, "f.txt")); err == nil {
		t.Fatal("a tmpfs run's file persisted in the workspace")
	}
}

// --workspace copy: a sanitised copy (credential files left out, said so),
// reviewed and applied like an overlay.
func TestCopyWorkspace(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	secret := canary()
	b.write("a.txt", "base\n", 0o644)
	b.write(".env", "API_KEY="+secret+"\n", 0o600)
	r := b.sh(`cat .env 2>&1; echo agent > a.txt; echo new > b.txt`, "--workspace", "copy")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	mustNotContain(t, "copy run", r.stdout+r.stderr, secret)
	mustContain(t, "copy run's notes", r.stderr, "left out of the copy: .env")
	if b.read("a.txt") != "base\n" {
		t.Fatal("a copy run changed the workspace")
	}
	id := b.session()
	st := b.moat(nil, "diff", id, "--stat")
	mustContain(t, "diff", st.stdout, "M a.txt\n", "A b.txt\n", "2 change(s)")
	mustNotContain(t, "diff", st.stdout, ".env")
	if r := b.moat(nil, "apply", id); r.code != 0 || b.read("a.txt") != "agent\n" || b.read("b.txt") != "new\n" {
		t.Fatalf("apply: %v", r)
	}
	if b.read(".env") != "API_KEY="+secret+"\n" {
		t.Fatal("apply touched the left-out .env")
	}
}

// filesystem.scan: block refuses to start, naming the file and rule but
// never the secret; warn runs with the file masked.
func TestScanWarnBlock(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	// A GitHub token shape, made now: never committed.
	token := "ghp_" + strings.ToUpper(canary())[:20] + canary()[:16]
	b.write("config/settings.py", "GITHUB_TOKEN = \""+token+"\"\n", 0o644)
	b.write("a.txt", "fine\n", 0o644)
	pol := func(mode string) string {
		p := filepath.Join(b.home, "scan-"+mode+".yaml")
		os.WriteFile(p, []byte("version: 1\nfilesystem:\n  scan: "+mode+"\n"), 0o600)
		return p
	}
	r := b.sh(`echo STARTED`, "--policy", pol("block"))
	if r.code != 3 {
		t.Fatalf("scan: block: want exit 3, got %v", r)
	}
	mustContain(t, "block's refusal", r.stderr, "config/settings.py:1", "refusing to start")
	mustNotContain(t, "block's refusal", r.stdout+r.stderr, token, "STARTED")

	r = b.sh(`cat config/settings.py; echo; cat a.txt`, "--policy", pol("warn"))
	if r.code != 0 {
		t.Fatalf("scan: warn: %v", r)
	}
	mustContain(t, "warn's report", r.stderr, "config/settings.py:1", "masked from the agent")
	mustContain(t, "warn run", r.stdout, "fine\n")
	mustNotContain(t, "warn run", r.stdout+r.stderr, token)
}

// filesystem.volumes: a dedicated directory the agent writes and that
// persists; one overlapping a sensitive path is refused.
func TestVolumes(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	out := filepath.Join(filepath.Dir(b.ws), "out")
	pol := filepath.Join(b.home, "vol.yaml")
	os.WriteFile(pol, []byte("version: 1\nfilesystem:\n  volumes: [\""+out+":/tmp/out\"]\n"), 0o600)
	r := b.sh(`echo result > /tmp/out/r.txt && cat /tmp/out/r.txt`, "--policy", pol, "--workspace", "readonly")
	if r.code != 0 {
		t.Fatalf("run with a volume: %v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "r.txt")); string(got) != "result\n" {
		t.Fatalf("the volume's file: %q", got)
	}
	os.MkdirAll(filepath.Join(b.home, ".ssh"), 0o700)
	for _, v := range []string{b.home + "/.ssh:/tmp/x", b.ws + "/.git:/tmp/x", b.home + ":/tmp/x", out + ":" + b.ws + "/sub"} {
		os.MkdirAll(filepath.Join(b.ws, ".git"), 0o755)
		os.WriteFile(pol, []byte("version: 1\nfilesystem:\n  volumes: [\""+v+"\"]\n"), 0o600)
		r := b.sh(`echo STARTED`, "--policy", pol)
		if r.code != 3 || strings.Contains(r.stdout, "STARTED") {
			t.Errorf("volume %s: want a refusal (exit 3), got %v", v, r)
		}
		mustContain(t, "volume "+v, r.stderr, "filesystem.volumes", "overlaps")
	}
}
