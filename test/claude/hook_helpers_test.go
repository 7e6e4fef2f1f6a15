package claude_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// hookInstall runs the built `moat hook install ARGS` in the project, as
// a user would, and returns its output.
func (w *world) hookInstall(args ...string) string {
	w.t.Helper()
	cmd := exec.Command(moatBin, append([]string{"hook", "install"}, args...)...)
	cmd.Dir, cmd.Env = w.project, w.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("moat hook install %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// claudeSettings is the part of .claude/settings.json the tests read.
type claudeSettings struct {
	IncludeCoAuthoredBy *bool `json:"includeCoAuthoredBy"`
	Hooks               struct {
		PreToolUse []struct {
			Matcher string `json:"matcher"`
			Hooks   []struct {
				Type    string `json:"type"`
				Command string `json:"command"`
				Timeout int    `json:"timeout"`
			} `json:"hooks"`
		} `json:"PreToolUse"`
	} `json:"hooks"`
}

func readClaudeSettings(t *testing.T, path string) claudeSettings {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s claudeSettings
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return s
}

// toolResult is a tool_result block Claude Code sent to the stand-in.
type toolResult struct {
	ToolUseID string
	IsError   bool
	Text      string
}

// toolResults lists the tool_result blocks of the last user turn of each
// Messages request, in the order the requests came.
func (a *messagesAPI) toolResults() []toolResult {
	var out []toolResult
	for _, r := range a.Messages() {
		var req struct {
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if json.Unmarshal([]byte(r.Body), &req) != nil || len(req.Messages) == 0 {
			continue
		}
		last := req.Messages[len(req.Messages)-1]
		var blocks []struct {
			Type      string          `json:"type"`
			ToolUseID string          `json:"tool_use_id"`
			IsError   bool            `json:"is_error"`
			Content   json.RawMessage `json:"content"`
		}
		if last.Role != "user" || json.Unmarshal(last.Content, &blocks) != nil {
			continue
		}
		for _, b := range blocks {
			if b.Type != "tool_result" {
				continue
			}
			var text string
			if json.Unmarshal(b.Content, &text) != nil {
				var parts []struct{ Text string }
				json.Unmarshal(b.Content, &parts)
				for _, p := range parts {
					text += p.Text
				}
			}
			out = append(out, toolResult{ToolUseID: b.ToolUseID, IsError: b.IsError, Text: text})
		}
	}
	return out
}

// auditRecord is one line of an audit file.
type auditRecord struct {
	Kind, Session, Client, Decision, Rule, Reason, Detail string
}

// permissionRecords reads the permission records of an audit file.
func permissionRecords(t *testing.T, path string) []auditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("the hook's audit: %v", err)
		return nil
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Kind == "permission" {
			out = append(out, r)
		}
	}
	return out
}
