package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// moat policy explain prints internal/permission's report (whose golden
// files it is checked against) and says in its exit status whether the
// trifecta is lethal.
func TestPolicyExplain(t *testing.T) {
	golden, err := filepath.Abs("../../internal/permission/testdata/explain")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		profile string
		json    bool
		code    int
	}{
		{"dev", false, exitOK},
		{"claude", false, exitOK},
		{"strict", true, exitOK},
		{"dev", true, exitOK},
	} {
		dir := t.TempDir()
		env := map[string]string{"HOME": dir, "XDG_CONFIG_HOME": dir}
		args := []string{"policy", "explain", "--profile", tt.profile}
		want := filepath.Join(golden, "profile-"+tt.profile+".txt")
		if tt.json {
			args = append(args, "--json")
			want = strings.TrimSuffix(want, ".txt") + ".json"
		}
		code, stdout, stderr := runPolicyCLI(t, dir, env, args...)
		if code != tt.code || stderr != "" {
			t.Errorf("moat %s: exit %d, stderr %q; want %d and nothing", strings.Join(args, " "), code, stderr, tt.code)
		}
		w, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		if stdout != string(w) {
			t.Errorf("moat %s: stdout:\n%s\nwant (%s):\n%s", strings.Join(args, " "), stdout, want, w)
		}
		if tt.json && !json.Valid([]byte(stdout)) {
			t.Errorf("moat %s: not JSON", strings.Join(args, " "))
		}
	}
}

// A policy with all three legs exits 1.
func TestPolicyExplainLethal(t *testing.T) {
	open, err := os.ReadFile("../../internal/permission/testdata/explain/open.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{"open.yaml": string(open)})
	env := map[string]string{"HOME": dir, "XDG_CONFIG_HOME": dir}
	code, stdout, stderr := runPolicyCLI(t, dir, env, "policy", "explain", "--policy", "open.yaml")
	if code != exitFailure || stderr != "" || !strings.HasPrefix(stdout, "lethal trifecta: yes") {
		t.Errorf("moat policy explain --policy open.yaml: exit %d, stderr %q, stdout:\n%s\nwant exit 1 and a lethal trifecta", code, stderr, stdout)
	}
}

func TestPolicyExplainErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"moat.yaml": "version: 1\nnetwork:\n  alow: [x.example.com]\n"})
	env := map[string]string{"HOME": dir, "XDG_CONFIG_HOME": dir}
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"policy", "explain"}, exitConfig, `moat: policy moat.yaml:3: network.alow: unknown key; did you mean "allow"?` + "\n"},
		{[]string{"policy", "explain", "extra"}, exitUsage, `moat: policy explain: unexpected argument "extra"; name the project file with --policy` + "\n"},
	} {
		code, _, stderr := runPolicyCLI(t, dir, env, tt.args...)
		if code != tt.code || stderr != tt.stderr {
			t.Errorf("moat %s: exit %d, stderr %q; want %d, %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.stderr)
		}
	}
}
