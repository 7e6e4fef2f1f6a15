package claude_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// noCanary fails if the real key is in text.
func noCanary(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, canary) {
		t.Errorf("the real key leaked into %s", what)
	}
}

// filesWithCanary lists the files under root that hold the real key.
func filesWithCanary(root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), canary) {
				out = append(out, p)
			}
		}
		return nil
	})
	return out
}

// claude -p answers through the reverse endpoint: the stand-in got the
// real key from moat's proxy, while the sandbox held only a placeholder
// (its environment, its files, the output and the audit hold no key).
func TestPrintModeKeyStaysOutside(t *testing.T) {
	w := newWorld(t)
	out, errs, code := w.run(w.moatArgs("--", "claude", "-p", "hello from the test")...)
	if code != 0 || !strings.Contains(out, answer) {
		t.Fatalf("claude -p = %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	msgs := w.api.Messages()
	if len(msgs) == 0 {
		t.Fatal("no request reached the stand-in")
	}
	for _, r := range msgs {
		if r.APIKey != canary { // the control: the key was added outside
			t.Errorf("the stand-in got x-api-key %q; want the real key", r.APIKey)
		}
	}
	if !strings.Contains(msgs[0].Body, "hello from the test") {
		t.Errorf("the stand-in's request lacks the prompt:\n%.300s", msgs[0].Body)
	}
	if !strings.Contains(errs, `credential "anthropic" (profile:claude) skipped: ANTHROPIC_API_KEY is not set`) {
		t.Errorf("no note about the profile's unset key:\n%s", errs)
	}
	noCanary(t, "moat's output", out+errs)
	noCanary(t, "the audit log", w.auditText())
	if !strings.Contains(w.auditText(), `"credential":"standin"`) {
		t.Errorf("the audit does not say the request got the credential:\n%s", w.auditText())
	}
	if fs := append(filesWithCanary(w.home), filesWithCanary(w.stateDir())...); len(fs) > 0 {
		t.Errorf("files hold the real key: %q", fs)
	}
	// The state went to moat's private directory, not the user's own.
	for _, p := range []string{".claude.json", "projects"} {
		if _, err := os.Stat(filepath.Join(w.stateDir(), p)); err != nil {
			t.Errorf("Claude Code's state: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(w.home, ".claude.json")); string(b) != `{"numStartups":1}`+"\n" {
		t.Errorf("the user's ~/.claude.json changed: %s", b)
	}

	// Inside: the placeholder, the base URL, no key; the user's Claude
	// state and the SSH key masked; nothing writable in ~/.claude.
	out, errs, code = w.run(w.moatArgs("--", "sh", "-c",
		`tr '\0' '\n' < /proc/self/environ; echo ---; cat ~/.claude/settings.json ~/.claude.json ~/.ssh/id_ed25519 2>&1; echo ---; `+
			`echo '{"hooks":{}}' > ~/.claude/settings.json 2>&1 || echo WRITE-REFUSED; grep -rl "`+canary+`" ~ /tmp . 2>/dev/null; echo END`)...)
	if code != 0 {
		t.Fatalf("inspect = %d\n%s\n%s", code, out, errs)
	}
	env, rest, _ := strings.Cut(out, "---")
	for _, want := range []string{"ANTHROPIC_API_KEY=moat-placeholder-", "ANTHROPIC_BASE_URL=http://127.0.0.1:8080",
		"CLAUDE_CONFIG_DIR=" + w.stateDir(), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"} {
		if !strings.Contains(env, want) {
			t.Errorf("the sandbox's environment lacks %s:\n%s", want, env)
		}
	}
	for _, leak := range []string{canary, "MOAT_TEST_ANTHROPIC_KEY", "SSH-PRIVATE-KEY", `"theme":"dark"`, "numStartups"} {
		if strings.Contains(out, leak) {
			t.Errorf("the sandbox saw %q:\n%s", leak, rest)
		}
	}
	if !strings.Contains(rest, "WRITE-REFUSED") || !strings.HasSuffix(strings.TrimSpace(rest), "END") {
		t.Errorf("the agent could write ~/.claude/settings.json, or the search found the key:\n%s", rest)
	}
}

// A prompt-injected turn: the model asks for Bash commands that read a
// masked key and reach a host the policy does not allow. Claude Code runs
// them, moat's sandbox refuses both (an empty file, a 403), and Claude
// Code carries on to the next turn.
func TestToolUseRefusedBySandbox(t *testing.T) {
	need(t, "curl")
	w := newWorld(t)
	for _, tt := range []struct{ cmd, want, not string }{
		// ~/.ssh is masked by an empty directory: the file is not there.
		{"cat ~/.ssh/id_ed25519; echo CAT-DONE", "id_ed25519: No such file or directory CAT-DONE", "SSH-PRIVATE-KEY"},
		{"curl -sS https://example.com/ 2>&1; echo CURL-DONE", "403", "Example Domain"},
	} {
		out, errs, code := w.run(w.moatArgs("--", "claude", "-p", "RUN: "+tt.cmd, "--allowedTools", "Bash")...)
		if code != 0 || !strings.Contains(out, tt.want) || strings.Contains(out, tt.not) {
			t.Errorf("claude -p RUN: %s = %d; want %q in the answer\nstdout:\n%s\nstderr:\n%s", tt.cmd, code, tt.want, out, errs)
		}
	}
	if a := w.auditText(); !strings.Contains(a, `"host":"example.com"`) || !strings.Contains(a, `"decision":"deny"`) {
		t.Errorf("the audit does not record the refused example.com:\n%s", a)
	}
	// Both tool results went back to the model (Claude Code carried on).
	n := 0
	for _, r := range w.api.Messages() {
		if strings.Contains(r.Body, `"tool_result"`) {
			n++
		}
	}
	if n < 2 {
		t.Errorf("%d requests carried a tool_result; want one per command", n)
	}
}

// The profile's own credential goes only to api.anthropic.com: an endpoint
// pointed elsewhere (here by --endpoint, as a hostile policy would) gets
// Claude Code's placeholder refused, and the key never travels.
func TestEndpointCannotRedirectTheKey(t *testing.T) {
	w := newWorld(t)
	w.writeUserPolicy("version: 1\nnetwork:\n  allow_private: [\"localhost\"]\n")
	w.env = append(w.env, "ANTHROPIC_API_KEY="+canary)
	out, errs, code := w.run(w.moatArgs("--", "claude", "-p", "hello")...)
	if code == 0 || strings.Contains(out, answer) {
		t.Errorf("claude -p through a redirected endpoint = %d\n%s", code, out)
	}
	for _, r := range w.api.Requests() {
		if r.APIKey == canary || strings.Contains(r.Body, canary) {
			t.Errorf("the key reached the redirected upstream: %s %s", r.Method, r.Path)
		}
	}
	if a := w.auditText(); !strings.Contains(a, `"rule":"credential-exfiltration"`) {
		t.Errorf("the audit has no credential-exfiltration refusal:\n%s", a)
	}
	noCanary(t, "moat's output", out+errs)
	noCanary(t, "the audit log", w.auditText())
}

// The terminal UI, in a real pseudo-terminal (tmux): the workspace trust
// dialog, a prompt typed, the answer on screen, /exit; the conversation is
// saved in moat's private state.
func TestTUI(t *testing.T) {
	need(t, "tmux")
	w := newWorld(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	var b strings.Builder
	b.WriteString("#!/bin/sh\ncd '" + w.project + "' || exit 99\nenv -i")
	for _, kv := range w.env {
		b.WriteString(" '" + kv + "'")
	}
	b.WriteString(" '" + moatBin + "' '" + strings.Join(w.moatArgs("--", "claude"), "' '") + "'\necho \"MOAT-EXIT=$?\"\nsleep 30\n")
	if err := os.WriteFile(script, []byte(b.String()), 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tmux.sock")
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-x", "120", "-y", "40", script)
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	screen := func() string { return tmux("capture-pane", "-p") }
	waitFor := func(what string) string {
		t.Helper()
		for i := 0; i < 300; i++ { // a bound on polling, not a timing assertion
			if s := screen(); strings.Contains(s, what) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%q never appeared on the screen:\n%s", what, screen())
		return ""
	}
	waitFor("Yes, I trust this folder")
	// Answer the trust dialog once it takes keys: Down until "Yes" is
	// selected, then Enter (never Enter on "No, exit").
	for i := 0; i < 150; i++ {
		s := screen()
		if strings.Contains(s, "shift+tab to cycle") {
			break
		}
		switch {
		case strings.Contains(s, "❯ Yes, I trust this folder"):
			tmux("send-keys", "Enter")
		case strings.Contains(s, "❯ No, exit"):
			tmux("send-keys", "Down")
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor("shift+tab to cycle")
	tmux("send-keys", "-l", "hello from the terminal")
	waitFor("hello from the terminal")
	tmux("send-keys", "Enter")
	s := waitFor(answer)
	noCanary(t, "the screen", s)
	tmux("send-keys", "-l", "/exit")
	waitFor("/exit")
	tmux("send-keys", "Enter")
	s = waitFor("MOAT-EXIT=")
	if !strings.Contains(s, "MOAT-EXIT=0") {
		t.Errorf("moat run -- claude exited with a failure:\n%s", s)
	}
	if msgs := w.api.Messages(); len(msgs) == 0 || msgs[len(msgs)-1].APIKey != canary {
		t.Errorf("the stand-in did not get the prompt with the real key (%d requests)", len(msgs))
	}
	// State: the project trusted and the conversation saved, in moat's
	// private directory.
	var cfg struct {
		HasCompletedOnboarding bool
		Projects               map[string]struct{ HasTrustDialogAccepted bool }
	}
	b2, err := os.ReadFile(filepath.Join(w.stateDir(), ".claude.json"))
	if err != nil || json.Unmarshal(b2, &cfg) != nil || !cfg.Projects[w.project].HasTrustDialogAccepted {
		t.Errorf("state .claude.json: %v; want the project trusted:\n%s", err, b2)
	}
	sessions, _ := filepath.Glob(filepath.Join(w.stateDir(), "projects", "*", "*.jsonl"))
	found := false
	for _, p := range sessions {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "hello from the terminal") {
			found = true
		}
	}
	if !found {
		t.Errorf("no saved conversation holds the prompt: %q", sessions)
	}
	if fs := filesWithCanary(w.home); len(fs) > 0 {
		t.Errorf("files hold the real key: %q", fs)
	}
	noCanary(t, "the audit log", w.auditText())
	_ = fmt.Sprint
}
