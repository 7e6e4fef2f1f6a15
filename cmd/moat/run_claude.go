package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/sandbox"
)

// prepareClaudeState readies the private Claude Code configuration that
// the claude profile gives the agent (CLAUDE_CONFIG_DIR inside moat's
// state directory), before the sandbox starts:
//
//   - onboarding is marked done: its first step checks connectivity by
//     tunnelling to api.anthropic.com and platform.claude.com itself,
//     around ANTHROPIC_BASE_URL, which moat refuses (the API is reached
//     through the reverse endpoint only);
//   - the run's placeholder for ANTHROPIC_API_KEY is marked approved:
//     Claude Code asks before it uses a key from the environment, and the
//     placeholder is new every run.
//
// It touches only a .claude.json inside moat's own state directory, never
// the user's ~/.claude.json; a file it cannot read as JSON is left alone,
// with a note.
func prepareClaudeState(home string, pol *policy.Policy, placeholders []string) []string {
	dir := ""
	for _, e := range pol.Process.Env {
		if v, ok := strings.CutPrefix(e.Value, "CLAUDE_CONFIG_DIR="); ok {
			dir = v
		}
	}
	state := strings.TrimPrefix(sandbox.StateDir, "~/")
	if home == "" || !strings.HasPrefix(dir, "~/"+state+"/") {
		return nil
	}
	dir = filepath.Join(home, dir[2:])
	if !strings.HasPrefix(dir, filepath.Join(home, state)+"/") {
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	key := ""
	for _, kv := range placeholders {
		if v, ok := strings.CutPrefix(kv, "ANTHROPIC_API_KEY="); ok {
			key = v
		}
	}
	file := filepath.Join(dir, ".claude.json")
	cfg := map[string]any{}
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return []string{fmt.Sprintf("%s is not JSON (%v); Claude Code may ask to onboard or to approve the key", file, err)}
		}
	} else if !os.IsNotExist(err) {
		return []string{fmt.Sprintf("Claude Code state: %v", err)}
	}
	cfg["hasCompletedOnboarding"] = true
	if key != "" {
		// Claude Code records a key by its last 20 characters. Only this
		// run's placeholder is approved: the earlier ones are gone.
		short := key[max(0, len(key)-20):]
		resp, _ := cfg["customApiKeyResponses"].(map[string]any)
		if resp == nil {
			resp = map[string]any{}
		}
		resp["approved"] = []string{short}
		if _, ok := resp["rejected"]; !ok {
			resp["rejected"] = []string{}
		}
		cfg["customApiKeyResponses"] = resp
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return []string{fmt.Sprintf("Claude Code state: %v", err)}
	}
	tmp := file + ".moat-tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return []string{fmt.Sprintf("Claude Code state: %v", err)}
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return []string{fmt.Sprintf("Claude Code state: %v", err)}
	}
	return nil
}
