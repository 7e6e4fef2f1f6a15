// Package workspace_test runs moat run's workspace modes end to end with
// the real binary: overlayfs mounted inside the real sandbox, then moat
// sessions, diff, apply and discard on what the agent left.
package workspace_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testmoat"
)

var (
	moatBin string
	inCI    bool
)

func TestMain(m *testing.M) {
	inCI = testmoat.InCI
	testmoat.Main(m, "", "moat-workspace-e2e-", &moatBin)
}

// box is a workspace and a home (whose state directory holds the
// sessions), both outside /tmp, which is private in the sandbox.
type box struct {
	t    *testing.T
	ws   string
	home string
	env  []string
}

func newBox(t *testing.T) *box {
	t.Helper()
	testmoat.Need(t, "sh")
	root, err := os.MkdirTemp("/var/tmp", "moat-ws-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	b := &box{t: t, ws: filepath.Join(root, "ws"), home: filepath.Join(root, "home")}
	for _, d := range []string{b.ws, b.home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.home, "LANG=C.UTF-8", "MOAT_MANAGED_POLICY=",
		"XDG_CONFIG_HOME=" + filepath.Join(b.home, ".config")}
	return b
}

func (b *box) write(rel, content string, mode os.FileMode) {
	b.t.Helper()
	p := filepath.Join(b.ws, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		b.t.Fatal(err)
	}
	os.Chmod(p, mode)
}

func (b *box) read(rel string) string {
	b.t.Helper()
	data, err := os.ReadFile(filepath.Join(b.ws, rel))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(data)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// moat runs the binary in the workspace with extra environment.
func (b *box) moat(extraEnv []string, args ...string) result {
	b.t.Helper()
	cmd := exec.Command(moatBin, args...)
	cmd.Dir = b.ws
	cmd.Env = append(append([]string(nil), b.env...), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("moat %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// sh runs a script in the sandbox with flags.
func (b *box) sh(script string, flags ...string) result {
	b.t.Helper()
	args := append([]string{"run", "--no-network"}, flags...)
	return b.moat(nil, append(args, "--", "sh", "-c", script)...)
}

// session returns the id of the only session with writes to review.
func (b *box) session() string {
	b.t.Helper()
	r := b.moat(nil, "sessions")
	if r.code != 0 {
		b.t.Fatalf("moat sessions: %v", r)
	}
	var ids []string
	for _, line := range strings.Split(r.stdout, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && (f[3] == "overlay" || f[3] == "copy") {
			ids = append(ids, f[0])
		}
	}
	if len(ids) != 1 {
		b.t.Fatalf("want one overlay or copy session, got %v:\n%s", ids, r.stdout)
	}
	return ids[0]
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

func mustNotContain(t *testing.T, what, text string, bads ...string) {
	t.Helper()
	for _, bad := range bads {
		if strings.Contains(text, bad) {
			t.Errorf("%s contains %q:\n%s", what, bad, text)
		}
	}
}

// canary makes a secret that exists only for this test run.
func canary() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
