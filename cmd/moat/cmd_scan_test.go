package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scanCanary makes a token that exists nowhere but in this test run, so
// that any copy of it in moat's output is a leak.
func scanCanary(t *testing.T, prefix string, n int) string {
	return scanCanaryOf(t, prefix, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
}

func scanCanaryOf(t *testing.T, prefix string, n int, alnum string) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = alnum[k.Int64()]
	}
	return prefix + string(b)
}

func runScanCmd(t *testing.T, home string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}}
	code = run(context.Background(), e, append([]string{"scan"}, args...))
	return code, out.String(), errb.String()
}

// moat scan prints where credentials are, never what they are: the canaries
// appear neither on standard output nor on standard error, in text or JSON.
func TestScanCommand(t *testing.T) {
	gh := scanCanary(t, "ghp_", 36)
	ant := scanCanary(t, "sk-ant-api03-", 93) + "AA"
	pw := scanCanary(t, "", 24)
	dir := writeFiles(t, map[string]string{
		"proj/main.go":      "package main\n\nconst token = \"" + gh + "\"\n",
		"proj/.env":         "ANTHROPIC_API_KEY=" + ant + "\n",
		"proj/db.py":        "password = \"" + pw + "\"\n",
		"proj/.env.example": "ANTHROPIC_API_KEY=\n",
		"proj/\x1b[2Jx.pem": "not a key\n",
		"clean/main.go":     "package main\n",
	})
	t.Chdir(dir)
	wantText := `"proj/\x1b[2Jx.pem": pem-file: credential file by name` + "\n" + // quoted: the name holds an escape
		"proj/.env: dotenv-file: credential file by name\n" +
		"proj/.env:1: anthropic-api-key: sk-ant-a****\n" +
		"proj/db.py:1: generic-api-key: password = \"" + pw[:4] + "****\"\n" +
		"proj/main.go:3: github-pat: ghp_" + gh[4:8] + "****\n"
	code, out, errs := runScanCmd(t, dir, "proj")
	if code != exitFailure || out != wantText {
		t.Errorf("moat scan proj: exit %d, stdout:\n%s\nwant exit %d, stdout:\n%s", code, out, exitFailure, wantText)
	}
	if want := "moat: scan: 5 findings in 4 files; 5 files (265 B) scanned, 0 skipped (--json lists them)\n"; errs != want {
		t.Errorf("stderr %q; want %q", errs, want)
	}
	jcode, jout, jerrs := runScanCmd(t, dir, "--json", "proj", "clean")
	var doc scanOutput
	if err := json.Unmarshal([]byte(jout), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, jout)
	}
	if jcode != exitFailure || len(doc.Findings) != 5 || doc.Files != 6 || jerrs != "" {
		t.Errorf("moat scan --json: exit %d, %d findings, %d files, stderr %q; want 1, 5, 6, none", jcode, len(doc.Findings), doc.Files, jerrs)
	}
	for _, c := range []string{gh, ant, pw} {
		for what, text := range map[string]string{"text stdout": out, "text stderr": errs, "json stdout": jout, "json stderr": jerrs} {
			if strings.Contains(text, c) {
				t.Errorf("a canary (%.6s…) leaked into the %s", c, what)
			}
		}
	}
	if code, out, _ := runScanCmd(t, dir, "clean"); code != exitOK || out != "" {
		t.Errorf("moat scan clean: exit %d, stdout %q; want 0 and nothing", code, out)
	}
	if code, _, _ := runScanCmd(t, dir, "--exclude", "*.go", "--exclude", ".env", "--exclude", "*.py", "--exclude", "*.pem", "proj"); code != exitOK {
		t.Errorf("moat scan with everything excluded: exit %d; want 0", code)
	}
}

func TestScanCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"--exclude", "[", dir}, exitUsage, `moat: scan: exclude pattern "[": syntax error in pattern`},
		{[]string{"--max-size", "0", dir}, exitUsage, "moat: scan: --max-size: want a positive number of bytes"},
		{[]string{filepath.Join(dir, "absent")}, exitInternal, "moat: scan: stat " + filepath.Join(dir, "absent") + ": no such file or directory"},
		// The kernel refuses reads of write-only sysctls even to root.
		{[]string{"/proc/sys/vm"}, exitInternal, "drop_caches: permission denied"},
	} {
		code, _, errs := runScanCmd(t, dir, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.stderr) {
			t.Errorf("moat scan %q: exit %d, stderr %q; want %d and %q", tt.args, code, errs, tt.code, tt.stderr)
		}
	}
}

// --home scans the home directory's credential stores, and only them.
func TestScanCommandHome(t *testing.T) {
	t.Parallel()
	key := scanCanaryOf(t, "AKIA", 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
	home := writeFiles(t, map[string]string{
		".aws/credentials":     "[default]\naws_access_key_id = " + key + "\n",
		".ssh/id_ed25519":      "placeholder\n",
		".ssh/known_hosts":     "host ssh-ed25519 AAAA\n",
		"projects/app/.env":    "X=1\n", // not a credential store: --home passes over it
		".config/gh/hosts.yml": "github.com:\n  user: me\n",
	})
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runScanCmd(t, home, "--home")
	want := "~/.aws/credentials: aws-credentials: credential file by name\n" +
		"~/.aws/credentials:2: aws-access-token: AKIA****\n" +
		"~/.config/gh/hosts.yml: gh-hosts: credential file by name\n" +
		"~/.ssh/id_ed25519: ssh-private-key: credential file by name\n"
	if code != exitFailure || out != want {
		t.Errorf("moat scan --home: exit %d, stdout:\n%s\nwant exit 1 and:\n%s", code, out, want)
	}
	if strings.Contains(out, key) {
		t.Error("the canary leaked into stdout")
	}
	if code, _, errs := runScanCmd(t, "", "--home"); code != exitUsage || errs != "moat: scan --home: HOME is not set\n" {
		t.Errorf("moat scan --home without HOME: exit %d, stderr %q", code, errs)
	}
}
