package claude_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hookPolicy is the project's moat policy (./moat.yaml, which `moat hook
// claude` reads from Claude Code's working directory). Claude Code never
// reads it: only moat's hook can enforce these rules.
const hookPolicy = `version: 1
permissions:
  deny: ["Bash(rm -rf *)"]
  allow: ["Bash(echo *)"]
`

const (
	denyRule  = "moat.yaml:3 permissions.deny[0]"
	allowRule = "moat.yaml:4 permissions.allow[0]"
	denied    = "rm -rf victim"
	allowed   = "echo ok > allowed.txt"
)

// hookWorkspace is a world whose project has files for the agent to harm,
// a .claude/settings.json with a key of the user's own, and moat's policy.
func hookWorkspace(t *testing.T) *world {
	t.Helper()
	need(t, "npm", "node")
	w := newWorld(t)
	for name, text := range map[string]string{
		"victim/keep.txt":       "the agent must not remove this\n",
		"moat.yaml":             hookPolicy,
		".claude/settings.json": `{"includeCoAuthoredBy": false}` + "\n",
	} {
		p := filepath.Join(w.project, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// claudeRun runs `claude -p "RUN: cmd"` under moat run with extra flags;
// Claude Code and the run must succeed, and the answer must quote the
// tool's result.
func (w *world) claudeRun(cmd string, flags ...string) string {
	w.t.Helper()
	args := append([]string{"--", "claude", "-p", "RUN: " + cmd}, flags...)
	out, errs, code := w.run(w.moatArgs(args...)...)
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "tool said:") {
		w.t.Fatalf("claude -p %q %s = %d; want the stand-in's final answer\nstdout:\n%s\nstderr:\n%s",
			"RUN: "+cmd, strings.Join(flags, " "), code, out, errs)
	}
	return out
}

// `moat hook claude`, installed by `moat hook install` in the project's
// .claude/settings.json, decides the real Claude Code's Bash calls under
// moat run: a command its policy denies never runs, even with Claude
// Code's own permission checks bypassed, and Claude (the stand-in) gets
// moat's reason; a command its policy allows runs where Claude Code alone
// would refuse it. Every decision is a permission record in the hook's
// audit.
func TestHookEnforcesPolicyOnClaudeCode(t *testing.T) {
	w := hookWorkspace(t)
	settings := filepath.Join(w.project, ".claude", "settings.json")
	victim := filepath.Join(w.project, "victim", "keep.txt")
	marker := filepath.Join(w.project, "allowed.txt")

	// Claude Code alone, in its default mode, will not run the control in
	// -p: nothing grants Bash. (So below, moat's allow is what runs it.)
	w.claudeRun(allowed)
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("without the hook Claude Code ran %q; the control proves nothing", allowed)
	}

	// The default install: moat's absolute path, every tool, 30 s; the
	// user's key kept; installing again changes nothing.
	out := w.hookInstall()
	s := readClaudeSettings(t, settings)
	pre := s.Hooks.PreToolUse
	if len(pre) != 1 || pre[0].Matcher != "*" || len(pre[0].Hooks) != 1 || pre[0].Hooks[0].Type != "command" ||
		pre[0].Hooks[0].Command != moatBin+" hook claude" || pre[0].Hooks[0].Timeout != 30 || s.IncludeCoAuthoredBy == nil {
		b, _ := os.ReadFile(settings)
		t.Fatalf("moat hook install: %s\nwrote:\n%s", out, b)
	}
	if out := w.hookInstall(); !strings.Contains(out, "already installed") {
		t.Errorf("a second moat hook install: %s", out)
	}
	// Inside the sandbox the default audit file (~/.local/state/moat) is
	// read-only (see TestHookDefaultInstallUnderMoatRun): the hook writes
	// its records into Claude Code's private state, which is writable. The
	// install replaces its own hook in place.
	hookAudit := filepath.Join(w.stateDir(), "hook-audit.jsonl")
	command := moatBin + " hook claude --audit " + hookAudit
	w.hookInstall("--command", command)
	s = readClaudeSettings(t, settings)
	if pre := s.Hooks.PreToolUse; len(pre) != 1 || len(pre[0].Hooks) != 1 || pre[0].Hooks[0].Command != command {
		b, _ := os.ReadFile(settings)
		t.Fatalf("moat hook install --command did not replace the hook:\n%s", b)
	}

	// Denied: Claude Code's own checks bypassed, so only moat stands in the
	// way. The directory survives, Claude gets moat's reason as the tool's
	// error, and the session carries on to the final answer.
	w.claudeRun(denied, "--permission-mode", "bypassPermissions")
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("%q ran despite moat's deny rule: %v", denied, err)
	}
	reason := fmt.Sprintf(`moat: deny: %q matches deny rule Bash(rm -rf *) [%s]`, denied, denyRule)
	trs := w.api.toolResults()
	if len(trs) != 2 { // the control's refusal, then this one
		t.Fatalf("the stand-in got %d tool results; want 2: %+v", len(trs), trs)
	}
	if tr := trs[1]; !tr.IsError || !strings.Contains(tr.Text, reason) {
		t.Errorf("the denied call's tool_result = %+v; want an error carrying %q", tr, reason)
	}

	// Allowed by moat's rule, in Claude Code's default mode: it runs.
	w.claudeRun(allowed)
	if b, err := os.ReadFile(marker); err != nil || string(b) != "ok\n" {
		t.Errorf("%q, allowed by moat, did not run: %q, %v", allowed, b, err)
	}
	if trs := w.api.toolResults(); len(trs) != 3 || trs[2].IsError {
		t.Errorf("the allowed call's tool_result: %+v", trs)
	}

	// The hook's audit: one record per decision, with the rule.
	recs := permissionRecords(t, hookAudit)
	want := []auditRecord{
		{Kind: "permission", Decision: "deny", Rule: denyRule, Detail: "Bash: " + denied},
		{Kind: "permission", Decision: "allow", Rule: allowRule, Detail: "Bash: " + allowed},
	}
	if len(recs) != len(want) {
		t.Fatalf("the hook's audit has %d permission records; want %d: %+v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		wr := want[i]
		if r.Decision != wr.Decision || r.Rule != wr.Rule || r.Detail != wr.Detail || r.Session == "" || r.Reason == "" {
			t.Errorf("permission record %d = %+v; want %s by %s for %q, with a session and a reason", i, r, wr.Decision, wr.Rule, wr.Detail)
		}
	}
	noCanary(t, "the hook's audit", func() string { b, _ := os.ReadFile(hookAudit); return string(b) }())
}

// The hook exactly as `moat hook install` writes it by default must work
// under `moat run --profile claude`: an allowed command runs.
func TestHookDefaultInstallUnderMoatRun(t *testing.T) {
	w := hookWorkspace(t)
	w.hookInstall()
	w.claudeRun(allowed)
	trs := w.api.toolResults()
	if len(trs) != 1 {
		t.Fatalf("the stand-in got %d tool results; want 1: %+v", len(trs), trs)
	}
	if b, err := os.ReadFile(filepath.Join(w.project, "allowed.txt")); err != nil || string(b) != "ok\n" || trs[0].IsError {
		t.Errorf("%q, allowed by moat, did not run (%q, %v); tool_result %+v", allowed, b, err, trs[0])
	}
	// The hook ran inside the sandbox, yet its decision is in the run's
	// own audit stream, outside, where the agent cannot rewrite it.
	recs := permissionRecords(t, w.audit)
	if len(recs) != 1 || recs[0].Decision != "allow" || recs[0].Rule != allowRule || recs[0].Client != "sandbox" ||
		recs[0].Session == "" || recs[0].Detail != "Bash: "+allowed {
		t.Errorf("the run's audit has permission records %+v; want one allow by %s reported by the sandbox", recs, allowRule)
	}
}
