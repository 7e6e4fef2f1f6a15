package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The hook's work in-process: flags, the policy load, the audit record and
// the decision; what bench/hook.sh measures beyond this is the process's
// own start.
func BenchmarkHookClaudeInProcess(b *testing.B) {
	in, err := os.ReadFile("testdata/hook/bash-allow.json")
	if err != nil {
		b.Fatal(err)
	}
	auditPath := filepath.Join(b.TempDir(), "audit.jsonl")
	getenv := func(k string) string {
		if k == "HOME" {
			return "/home/u"
		}
		return ""
	}
	args := []string{"hook", "claude", "--policy", "testdata/hook/moat.yaml", "--claude-settings=false", "--audit", auditPath}
	b.ReportAllocs()
	for b.Loop() {
		var out, errb bytes.Buffer
		e := &env{stdin: bytes.NewReader(in), stdout: &out, stderr: &errb, getenv: getenv}
		if code := run(context.Background(), e, args); code != 0 || !bytes.Contains(out.Bytes(), []byte(`"allow"`)) {
			b.Fatalf("exit %d; stdout %s; stderr %s", code, out.String(), errb.String())
		}
	}
}
