package permission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// HookInput is Claude Code's PreToolUse hook input (JSON on stdin, or the
// body of an HTTP hook request). Unknown fields are ignored.
type HookInput struct {
	SessionID      string         `json:"session_id"`
	TranscriptPath string         `json:"transcript_path"`
	Cwd            string         `json:"cwd"`
	PermissionMode string         `json:"permission_mode"`
	HookEventName  string         `json:"hook_event_name"`
	ToolName       string         `json:"tool_name"`
	ToolInput      map[string]any `json:"tool_input"`
	ToolUseID      string         `json:"tool_use_id"`
}

// HookOutput is the PreToolUse answer Claude Code reads on stdout.
type HookOutput struct {
	HookSpecificOutput HookDecision `json:"hookSpecificOutput"`
}

// HookDecision carries the verdict: "allow", "deny" or "ask", and a reason
// (shown to Claude on deny, to the user on allow and ask).
type HookDecision struct {
	HookEventName            string `json:"hookEventName"`
	PermissionDecision       string `json:"permissionDecision"`
	PermissionDecisionReason string `json:"permissionDecisionReason"`
}

// MaxHookInput bounds what a hook reads from Claude Code.
const MaxHookInput = 4 << 20

// ReadHookInput decodes a PreToolUse input. Anything but a PreToolUse
// event with a tool name is an error.
func ReadHookInput(r io.Reader) (HookInput, error) {
	var in HookInput
	data, err := io.ReadAll(io.LimitReader(r, MaxHookInput+1))
	if err != nil {
		return in, fmt.Errorf("read hook input: %w", err)
	}
	if len(data) > MaxHookInput {
		return in, fmt.Errorf("hook input is over %d bytes", MaxHookInput)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return in, fmt.Errorf("hook input is not JSON: %v", err)
	}
	if in.HookEventName != "" && in.HookEventName != "PreToolUse" {
		return in, fmt.Errorf("hook event %q: moat hook claude handles PreToolUse only", in.HookEventName)
	}
	if in.ToolName == "" {
		return in, fmt.Errorf("hook input has no tool_name")
	}
	if in.ToolInput == nil {
		in.ToolInput = map[string]any{}
	}
	return in, nil
}

// HookAnswer builds the PreToolUse answer for a result: the verdict, and a
// reason that names moat, the rule and the first findings.
func HookAnswer(r Result) HookOutput {
	return HookOutput{HookSpecificOutput: HookDecision{
		HookEventName:            "PreToolUse",
		PermissionDecision:       r.Verdict.String(),
		PermissionDecisionReason: HookReason(r),
	}}
}

// HookReason is the one-line reason moat gives Claude Code.
func HookReason(r Result) string {
	var b strings.Builder
	b.WriteString("moat: ")
	b.WriteString(r.Verdict.String())
	b.WriteString(": ")
	b.WriteString(r.Reason)
	if r.Rule != "" {
		b.WriteString(" [")
		b.WriteString(r.Rule)
		b.WriteString("]")
	}
	n := 0
	for _, f := range r.Findings {
		if f.Severity < High || n == 2 {
			continue
		}
		if n == 0 {
			b.WriteString("; findings: ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s/%s %s", f.Category, f.Severity, f.Reason)
		n++
	}
	return b.String()
}

// FailClosed is the answer when moat could not decide: deny, saying why.
func FailClosed(err error) HookOutput {
	return HookAnswer(Result{Decision: policy.Decision{Verdict: policy.Deny, Rule: "builtin:internal-error",
		Reason: "moat could not decide, so it refuses: " + err.Error()}})
}

// CheckHook decides a hook input with the engine.
func (e *Engine) CheckHook(in HookInput, home string) Result {
	return e.Check(Request{Tool: in.ToolName, Input: in.ToolInput, Cwd: in.Cwd, Home: home})
}

// Describe summarises a tool call for the audit stream: the tool and its
// main input, cut to max bytes.
func Describe(tool string, input map[string]any, max int) string {
	s := tool
	for _, k := range []string{"command", "file_path", "notebook_path", "path", "url", "query", "subagent_type"} {
		if v, ok := input[k].(string); ok {
			s += ": " + v
			break
		}
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// InstallHook adds "command" as a PreToolUse hook for every tool to a
// Claude Code settings document, idempotently: an existing hook whose
// command contains marker is replaced in place, and every other key and
// hook is kept in its order. An empty or absent document starts a new one.
func InstallHook(settings []byte, command, marker string) ([]byte, bool, error) {
	root := &orderedObject{}
	if len(bytes.TrimSpace(settings)) > 0 {
		if err := root.UnmarshalJSON(settings); err != nil {
			return nil, false, fmt.Errorf("settings are not a JSON object: %v", err)
		}
	}
	hooks := &orderedObject{}
	if raw, ok := root.get("hooks"); ok {
		if err := hooks.UnmarshalJSON(raw); err != nil {
			return nil, false, fmt.Errorf("settings: hooks is not an object: %v", err)
		}
	}
	var pre []map[string]any
	if raw, ok := hooks.get("PreToolUse"); ok {
		if err := json.Unmarshal(raw, &pre); err != nil {
			return nil, false, fmt.Errorf("settings: hooks.PreToolUse is not a list of matchers: %v", err)
		}
	}
	want := map[string]any{"type": "command", "command": command, "timeout": 30}
	found, changed := false, false
	for _, m := range pre {
		hs, _ := m["hooks"].([]any)
		for i, h := range hs {
			hm, _ := h.(map[string]any)
			if c, _ := hm["command"].(string); hm != nil && strings.Contains(c, marker) {
				found = true
				if c != command || fmt.Sprint(hm["timeout"]) != "30" || hm["type"] != "command" {
					hs[i] = want
					changed = true
				}
			}
		}
	}
	if !found {
		pre = append(pre, map[string]any{"matcher": "*", "hooks": []any{want}})
		changed = true
	}
	if !changed {
		return settings, false, nil
	}
	raw, err := json.Marshal(pre)
	if err != nil {
		return nil, false, err
	}
	hooks.set("PreToolUse", raw)
	hraw, err := hooks.MarshalJSON()
	if err != nil {
		return nil, false, err
	}
	root.set("hooks", hraw)
	out, err := root.MarshalJSON()
	if err != nil {
		return nil, false, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		return nil, false, err
	}
	pretty.WriteByte('\n')
	return pretty.Bytes(), true, nil
}

// orderedObject is a JSON object that keeps its keys' order.
type orderedObject struct {
	keys []string
	vals map[string]json.RawMessage
}

func (o *orderedObject) get(k string) (json.RawMessage, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *orderedObject) set(k string, v json.RawMessage) {
	if o.vals == nil {
		o.vals = map[string]json.RawMessage{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *orderedObject) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		o.set(k, v)
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	return nil
}

func (o *orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kq, _ := json.Marshal(k)
		b.Write(kq)
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
