// Package sandbox_test runs the moat binary's `moat run` end to end: real
// namespaces, real sh, coreutils, curl, git and python3 inside, each limit
// with an attack, a control and a signature only the defence leaves.
package sandbox_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testmoat"
)

var (
	moatBin string // built from this tree by TestMain
	inCI    bool
)

func TestMain(m *testing.M) {
	inCI = testmoat.InCI
	testmoat.Main(m, "", "moat-sandbox-e2e-", &moatBin)
}

// need fails (in CI) or skips the test when a tool is missing.
func need(t *testing.T, tools ...string) {
	t.Helper()
	testmoat.Need(t, tools...)
}

// box is one test's world: a workspace, a home with secrets outside it,
// and an audit log.
type box struct {
	t     *testing.T
	ws    string // the workspace (the working directory, writable)
	home  string // HOME: outside the workspace, readable through the read-only root
	audit string
	env   []string // moat's own environment
}

const canary = "moat-canary-5b1e9d" // any leak of it is unambiguous

func newBox(t *testing.T) *box {
	t.Helper()
	need(t, "sh")
	root := t.TempDir()
	// HOME must be outside /tmp (the sandbox's /tmp is private) and
	// readable by the agent's unprivileged identity, so that only a mask
	// can hide what is in it.
	home, err := os.MkdirTemp("/var/tmp", "moat-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	os.Chmod(home, 0o755)
	b := &box{t: t, ws: filepath.Join(root, "ws"), home: home, audit: filepath.Join(root, "audit.jsonl")}
	os.Mkdir(b.ws, 0o755)
	b.write(filepath.Join(home, ".ssh", "id_ed25519"), canary+" ssh key")
	b.write(filepath.Join(home, ".netrc"), "machine example.com password "+canary)
	b.write(filepath.Join(home, "notes.txt"), "readable notes")
	for _, p := range []string{home, filepath.Join(home, ".ssh")} {
		os.Chmod(p, 0o755)
	}
	filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			os.Chmod(p, 0o644)
		}
		return nil
	})
	b.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"MOAT_MANAGED_POLICY=", "SECRET_TOKEN=" + canary, "AWS_SECRET_ACCESS_KEY=" + canary}
	return b
}

func (b *box) write(path, content string) {
	b.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// policy writes moat.yaml in the workspace.
func (b *box) policy(yaml string) {
	b.write(filepath.Join(b.ws, "moat.yaml"), "version: 1\n"+yaml)
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs moat run with flags, then the command after "--".
func (b *box) run(flags []string, argv ...string) result {
	b.t.Helper()
	args := append([]string{"run", "--audit", b.audit}, flags...)
	args = append(append(args, "--"), argv...)
	cmd := exec.Command(moatBin, args...)
	cmd.Dir = b.ws
	cmd.Env = b.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("moat run: %v", err)
	}
	return result{code, out.String(), errb.String()}
}

// sh runs a shell script in the sandbox.
func (b *box) sh(script string, flags ...string) result {
	b.t.Helper()
	return b.run(flags, "sh", "-c", script)
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

func mustContain(t *testing.T, what, text, want string) {
	t.Helper()
	if !strings.Contains(text, want) {
		t.Errorf("%s does not contain %q:\n%s", what, want, text)
	}
}
