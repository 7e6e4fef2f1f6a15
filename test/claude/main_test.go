// Package claude_test runs the real Claude Code CLI (the pinned npm
// release, a native binary) under `moat run --profile claude`, as a user
// would: against a stand-in Messages API over HTTPS, with the key held by
// moat's proxy only, in -p mode and in its terminal UI.
package claude_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moatsec/moat/internal/testmoat"
	"time"
)

// claudeVersion is the Claude Code release the tests run.
const claudeVersion = "2.1.332"

// canary is the real API key: it may be found only at the stand-in.
const canary = "sk-ant-moat-canary-3f9d2a7c41e8b605"

var (
	moatBin string // built from this tree by TestMain
	binDir  string // readable by the sandbox's identity: moat, claude
	inCI    bool
)

func TestMain(m *testing.M) {
	inCI = testmoat.InCI
	// Outside /tmp (private in the sandbox) and readable by the agent's
	// unprivileged identity.
	bin, cleanup, err := testmoat.Build("/var/tmp", "moat-claude-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moatBin, binDir = bin, filepath.Dir(bin)
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// need fails (in CI) or skips the test when a tool is missing.
func need(t *testing.T, tools ...string) {
	t.Helper()
	testmoat.Need(t, tools...)
}

func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	testmoat.Unavailable(t, format, args...)
}

var (
	claudeOnce sync.Once
	claudePath string
	claudeErr  error
)

// claudeBin installs the pinned Claude Code once into the user's cache
// directory (npm install --prefix) and links its native binary into
// binDir, where the sandbox's identity can run it.
func claudeBin(t *testing.T) string {
	t.Helper()
	need(t, "npm")
	claudeOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			claudeErr = err
			return
		}
		prefix := filepath.Join(cache, "moat-test", "claude")
		pkg := filepath.Join(prefix, "node_modules", "@anthropic-ai", "claude-code")
		exe := filepath.Join(pkg, "bin", "claude.exe")
		var meta struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(pkg, "package.json")); err != nil || json.Unmarshal(b, &meta) != nil || meta.Version != claudeVersion || !isELF(exe) {
			if err := os.MkdirAll(prefix, 0o755); err != nil {
				claudeErr = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// The package's postinstall puts the platform's native binary
			// in place of bin/claude.exe.
			cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, "@anthropic-ai/claude-code@"+claudeVersion)
			if out, err := cmd.CombinedOutput(); err != nil {
				claudeErr = fmt.Errorf("npm install @anthropic-ai/claude-code@%s: %v\n%s", claudeVersion, err, out)
				return
			}
			if !isELF(exe) {
				claudeErr = fmt.Errorf("%s is not the native binary after npm install (did its postinstall run?)", exe)
				return
			}
		}
		claudePath = filepath.Join(binDir, "claude")
		if err := os.Link(exe, claudePath); err != nil {
			claudeErr = copyFile(exe, claudePath)
		}
	})
	if claudeErr != nil {
		unavailable(t, "Claude Code %s: %v", claudeVersion, claudeErr)
	}
	return claudePath
}

func isELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	_, err = f.Read(b[:])
	return err == nil && string(b[:]) == "\x7fELF"
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// world is one test's user: a home outside /tmp, a project, the stand-in
// API, the upstream CA, and moat's audit log.
type world struct {
	t       *testing.T
	home    string
	project string
	audit   string
	api     *messagesAPI
	ca      *testCA
	user    string   // the user policy file
	env     []string // moat's environment
}

const answer = "MOAT-ANSWER-7c1e: the sandbox answered"

func newWorld(t *testing.T) *world {
	t.Helper()
	claudeBin(t)
	home, err := os.MkdirTemp("/var/tmp", "moat-claude-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	os.Chmod(home, 0o755)
	w := &world{t: t, home: home, project: filepath.Join(home, "project"), audit: filepath.Join(t.TempDir(), "audit.jsonl")}
	os.MkdirAll(w.project, 0o755)
	os.WriteFile(filepath.Join(w.project, "README.md"), []byte("# a project\n"), 0o644)
	// A secret moat must mask, and the user's own Claude Code state, which
	// the agent must neither read nor change.
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte("SSH-PRIVATE-KEY-moat-e2d1\n"), 0o600)
	os.MkdirAll(filepath.Join(home, ".claude"), 0o755)
	os.WriteFile(filepath.Join(home, ".claude", "settings.json"), []byte(`{"theme":"dark"}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(home, ".claude.json"), []byte(`{"numStartups":1}`+"\n"), 0o644)
	if w.ca, err = newTestCA(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	w.api = newMessagesAPI(t, w.ca, canary, answer)
	// The user's policy: the stand-in on localhost may be dialled, and the
	// key goes to it (the profile's own credential goes only to
	// api.anthropic.com).
	w.user = filepath.Join(t.TempDir(), "policy.yaml")
	w.writeUserPolicy(fmt.Sprintf(`version: 1
network:
  allow_private: ["localhost"]
credentials:
  - name: standin
    hosts: ["localhost:%d"]
    header: "x-api-key: {secret}"
    env: MOAT_TEST_ANTHROPIC_KEY
    placeholder: ANTHROPIC_API_KEY
`, w.api.Port))
	w.env = []string{"HOME=" + home, "PATH=" + binDir + ":/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
		"TERM=xterm-256color", "MOAT_TEST_ANTHROPIC_KEY=" + canary}
	return w
}

func (w *world) writeUserPolicy(text string) {
	if err := os.WriteFile(w.user, []byte(text), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// moatArgs is `moat run` with the claude profile, the stand-in in place of
// the profile's upstream, then args.
func (w *world) moatArgs(args ...string) []string {
	return append([]string{"run", "--profile", "claude", "--user-policy", w.user, "--audit", w.audit,
		"--upstream-ca", w.ca.File, "--endpoint", fmt.Sprintf("anthropic=https://localhost:%d@127.0.0.1:8080", w.api.Port)}, args...)
}

// run runs moat with args (no terminal) in the project and returns its
// output and exit status.
func (w *world) run(args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, moatBin, args...)
	cmd.Dir, cmd.Env = w.project, w.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		w.t.Fatalf("moat %s: timed out\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), o.String(), e.String())
	} else if err != nil && code < 0 {
		w.t.Fatalf("moat %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// auditText is the audit log.
func (w *world) auditText() string {
	b, _ := os.ReadFile(w.audit)
	return string(b)
}

// stateDir is Claude Code's private state under moat.
func (w *world) stateDir() string { return filepath.Join(w.home, ".local", "state", "moat", "claude") }
