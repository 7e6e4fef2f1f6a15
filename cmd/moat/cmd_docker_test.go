package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

// shellWords parses a printed command line as a POSIX shell would.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(line), "")
	if err != nil {
		t.Fatalf("the printed command does not parse: %v\n%s", err, line)
	}
	if len(f.Stmts) != 1 {
		t.Fatalf("%d statements printed, want 1:\n%s", len(f.Stmts), line)
	}
	call, ok := f.Stmts[0].Cmd.(*syntax.CallExpr)
	if !ok || len(call.Assigns) > 0 {
		t.Fatalf("not a plain command: %s", line)
	}
	var words []string
	for _, w := range call.Args {
		var b strings.Builder
		for _, p := range w.Parts {
			switch p := p.(type) {
			case *syntax.Lit:
				b.WriteString(p.Value)
			case *syntax.SglQuoted:
				b.WriteString(p.Value)
			case *syntax.DblQuoted:
				for _, q := range p.Parts {
					l, ok := q.(*syntax.Lit)
					if !ok {
						t.Fatalf("an expansion in a printed word: %s", line)
					}
					b.WriteString(l.Value)
				}
			default:
				t.Fatalf("an expansion in a printed word (%T): %s", p, line)
			}
		}
		words = append(words, b.String())
	}
	return words
}

func TestDockerArgsCommand(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"moat.yaml":  "version: 1\nfilesystem:\n  write: [\".\"]\n  deny_read: [\"secret.env\"]\nresources:\n  memory: 256m\n  pids: 128\n",
		"secret.env": "S=1\n",
	})
	dir, _ = filepath.EvalSymlinks(dir)
	out := filepath.Join(t.TempDir(), "files")
	weird := `it's "quoted" $HOME; rm -rf /`
	code, stdout, stderr := runPolicyCLI(t, dir, map[string]string{"HOME": dir},
		"docker", "args", "--policy", filepath.Join(dir, "moat.yaml"), "--image", "moat-test/img:1", "--runtime", "runsc", "--dir", out,
		"--", "sh", "-c", weird)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	words := shellWords(t, strings.TrimSuffix(stdout, "\n"))
	line := strings.Join(words, " ")
	if words[0] != "docker" || words[1] != "run" {
		t.Fatalf("got %q; want docker run …", words[:2])
	}
	for _, want := range []string{
		"--cap-drop ALL", "--security-opt no-new-privileges", "--read-only", "--network none", "--runtime runsc",
		"--memory 268435456 --memory-swap 268435456", "--security-opt seccomp=" + filepath.Join(out, "seccomp.json"),
		"--env-file " + filepath.Join(out, "env"), "--mount type=bind,src=/dev/null,dst=" + filepath.Join(dir, "secret.env") + ",readonly",
		"--mount type=bind,src=" + filepath.Join(out, "run") + ",dst=/.moat/run", "--pull never",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the command lacks %q:\n%s", want, line)
		}
	}
	if i := slices.Index(words, "moat-test/img:1"); i < 0 || words[i-2] != "--entrypoint" {
		t.Errorf("the image is not the first word after --entrypoint's value: %q", words)
	}
	// The agent's command travels in the environment file, with the
	// session's token; neither is in argv.
	env, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), `rm -rf /`) {
		t.Errorf("the env file lacks the command:\n%.300s", env)
	}
	tok := regexp.MustCompile(`run-[0-9a-f]+:([0-9a-f]{32})@`).FindStringSubmatch(string(env))
	if tok == nil {
		t.Fatalf("no session token in the env file:\n%.300s", env)
	}
	if strings.Contains(stdout, tok[1]) || strings.Contains(stderr, tok[1]) {
		t.Error("the session token was printed")
	}
	for _, f := range []string{"env", "seccomp.json"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v; want mode 0600", f, err)
		}
	}
	if !strings.Contains(stderr, "nothing serves here") {
		t.Errorf("no note about the unserved proxy socket:\n%s", stderr)
	}
}

func TestDockerArgsQuoting(t *testing.T) {
	dir := writeFiles(t, map[string]string{"moat.yaml": "version: 1\n"})
	dir, _ = filepath.EvalSymlinks(dir)
	code, stdout, stderr := runPolicyCLI(t, dir, map[string]string{"HOME": dir},
		"docker", "args", "--policy", filepath.Join(dir, "moat.yaml"), "--no-network", "--image", "img with space", "--dir", t.TempDir(), "--", "true")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	words := shellWords(t, strings.TrimSuffix(stdout, "\n"))
	if !slices.Contains(words, "img with space") || !slices.Contains(words, "net.ipv4.ping_group_range=1 0") {
		t.Errorf("words did not survive the shell: %q", words)
	}
	if strings.Contains(stderr, "nothing serves") {
		t.Errorf("a note about the proxy with --no-network:\n%s", stderr)
	}
}

func TestDockerArgsErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"moat.yaml": "version: 1\n", "bad.yaml": "version: 1\nnetwork:\n  alow: []\n"})
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"docker"}, exitUsage, "usage: moat docker args"},
		{[]string{"docker", "pull"}, exitUsage, `unknown subcommand "pull"`},
		{[]string{"docker", "args", "--image", "i"}, exitUsage, "no command"},
		{[]string{"docker", "args", "--", "true"}, exitUsage, "--image NAME is required"},
		{[]string{"docker", "args", "--policy", filepath.Join(dir, "bad.yaml"), "--image", "i", "--", "true"}, exitConfig, "bad.yaml:3"},
		{[]string{"docker", "args", "--image", "i", "--runtime", "/usr/bin/runsc", "--dir", t.TempDir(), "--", "true"}, exitConfig, "not a path"},
	} {
		code, _, stderr := runPolicyCLI(t, dir, map[string]string{"HOME": dir}, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("moat %s: exit %d, stderr %q; want %d and %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
	}
}
