package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeccompExport(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if code := cmdSeccomp(context.Background(), e, []string{"export"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if p.DefaultAction != "SCMP_ACT_ERRNO" || len(p.Syscalls) < 5 {
		t.Errorf("profile: default %q, %d rules", p.DefaultAction, len(p.Syscalls))
	}
	for _, r := range p.Syscalls {
		for _, n := range r.Names {
			if r.Action == "SCMP_ACT_ALLOW" && (n == "ptrace" || n == "bpf" || n == "io_uring_setup") {
				t.Errorf("%s is allowed", n)
			}
		}
	}
	file := filepath.Join(t.TempDir(), "seccomp.json")
	if code := cmdSeccomp(context.Background(), e, []string{"export", file}); code != exitOK {
		t.Fatalf("export FILE: exit %d", code)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, out.Bytes()) {
		t.Error("the file differs from standard output")
	}
	if code := cmdSeccomp(context.Background(), e, []string{"import"}); code != exitUsage {
		t.Errorf("moat seccomp import: exit %d, want usage", code)
	}
}
