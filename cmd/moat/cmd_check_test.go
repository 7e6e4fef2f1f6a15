package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// permissions.severity decides what findings force in moat check and moat
// hook claude; --severity overrides it, but cannot loosen a managed lock.
func TestCheckSeverity(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"empty.yaml":   "version: 1\n",
		"moat.yaml":    "version: 1\npermissions:\n  severity: {high: deny}\n",
		"managed.yaml": "version: 1\nlock: [permissions.severity]\npermissions:\n  severity: {high: deny}\n",
	})
	t.Chdir(dir)
	const hookIn = `{"session_id":"s","hook_event_name":"PreToolUse","cwd":"/repo/proj","tool_name":"Bash","tool_input":{"command":"sudo ls"}}`
	const (
		asks   = "ask: sudo runs a command with another user's privileges (high)"
		denies = "deny: sudo runs a command with another user's privileges (high)"
	)
	for _, tt := range []struct {
		flags  []string // after the command's name; moat check gets "sudo ls" after them
		hook   bool
		code   int
		stdout string // moat check: the first line
		stderr string
	}{
		// The control: no mapping, the default asks.
		{flags: []string{"--policy", "empty.yaml"}, code: exitAsk, stdout: asks},
		{flags: []string{"--policy", "moat.yaml"}, code: exitFailure, stdout: denies},
		{flags: []string{"--policy", "moat.yaml", "--severity", "high=ask"}, code: exitAsk, stdout: asks},
		{flags: []string{"--policy", "empty.yaml", "--managed", "managed.yaml", "--severity", "critical=deny"}, code: exitFailure, stdout: denies},
		{flags: []string{"--policy", "empty.yaml", "--managed", "managed.yaml", "--severity", "high=allow"}, code: exitConfig,
			stderr: `moat: --severity: "high=allow": loosens high findings, but permissions.severity is locked by managed.yaml:2 lock[0]` + "\n"},
		{flags: []string{"--policy", "empty.yaml", "--severity", "high=block"}, code: exitConfig,
			stderr: `moat: --severity: "high=block": in "high=block": unknown verdict; want deny, ask or allow` + "\n"},
		{flags: []string{"--policy", "moat.yaml"}, hook: true, code: exitOK,
			stdout: `{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":"moat: deny: sudo runs a command with another user's privileges (high) [analyser:privilege]; findings: privilege/high sudo runs a command with another user's privileges"}}`},
	} {
		args := []string{"check"}
		if tt.hook {
			args = []string{"hook", "claude"}
		}
		args = append(append(args, tt.flags...), "--claude-settings=false", "--audit", dir+"/audit.jsonl")
		if !tt.hook {
			args = append(args, "sudo ls")
		}
		var out, errb bytes.Buffer
		e := &env{stdin: strings.NewReader(hookIn), stdout: &out, stderr: &errb, getenv: func(k string) string {
			return map[string]string{"HOME": dir, "XDG_CONFIG_HOME": dir}[k]
		}}
		code := run(context.Background(), e, args)
		first, _, _ := strings.Cut(out.String(), "\n")
		if code != tt.code || first != tt.stdout || errb.String() != tt.stderr {
			t.Errorf("moat %s: exit %d, stdout %q, stderr %q; want %d, %q, %q", strings.Join(args, " "), code, first, errb.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}
