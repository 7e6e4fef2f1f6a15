package sandbox_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitStatus(t *testing.T) {
	b := newBox(t)
	for _, tt := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"kill -TERM $$", 128 + 15},
		{"kill -KILL $$", 128 + 9},
	} {
		if r := b.sh(tt.script); r.code != tt.want {
			t.Errorf("%q: %v\nwant exit %d", tt.script, r, tt.want)
		}
	}
	r := b.run(nil, "no-such-command-moat")
	if r.code != 127 || !strings.Contains(r.stderr, "moat: sandbox: exec: no-such-command-moat: not found") {
		t.Errorf("missing command: %v\nwant exit 127 and the exec stage's message", r)
	}
}

func TestSignalsForwarded(t *testing.T) {
	b := newBox(t)
	cmd := exec.Command(moatBin, "run", "--audit", b.audit, "--", "sh", "-c",
		`trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Dir, cmd.Env = b.ws, b.env
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("first line %q; want ready", sc.Text())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit %v; want 3 from the trap", err)
	}
	if strings.Join(rest, "\n") != "got-term" {
		t.Errorf("output after SIGTERM %q; want got-term (the trap ran inside)", rest)
	}
}

func TestNamespacesAndIdentity(t *testing.T) {
	b := newBox(t)
	r := b.sh(`echo pids: $(ls /proc | grep -c '^[0-9]'); cat /proc/1/cmdline | tr '\0' ' '; echo; hostname; id -u; cat /proc/self/uid_map; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ls /dev`)
	if r.code != 0 {
		t.Fatal(r)
	}
	mustContain(t, "PID 1", r.stdout, "__moat_sandbox_init")
	mustContain(t, "hostname", r.stdout, "\nmoat\n")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		mustContain(t, "status", r.stdout, want)
	}
	// Host processes are invisible: the sandbox holds a handful.
	var n int
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "pids: "); ok {
			n = len(v)
			if v > "9" || len(v) > 1 {
				t.Errorf("%s processes visible; want fewer than 10 (host processes hidden)", v)
			}
		}
	}
	if n == 0 {
		t.Errorf("no pid count in %v", r)
	}
	if strings.Contains(r.stdout, "vda") || strings.Contains(r.stdout, "mem\n") {
		t.Errorf("/dev shows host devices:\n%s", r.stdout)
	}
	if os.Geteuid() == 0 {
		// Root's agent is nobody on the host.
		mustContain(t, "uid_map", r.stdout, "1000      65534          1")
		if strings.Contains(r.stdout, "\n0\n") {
			t.Errorf("the agent is uid 0 inside: %s", r.stdout)
		}
	}
}

func TestFilesystem(t *testing.T) {
	need(t, "git")
	b := newBox(t)
	outside := filepath.Join(b.home, "outside.txt")
	b.write(outside, "original")
	os.Chmod(outside, 0o666) // writable by anyone: only the sandbox can refuse it
	hostTmp, _ := os.CreateTemp("/tmp", "moat-host-marker-")
	hostTmp.Close()
	defer os.Remove(hostTmp.Name())

	r := b.sh(`set -u
echo created > made-inside.txt && echo workspace-write-ok
echo evil > ` + outside + ` 2>&1 || echo outside-write-refused
touch /etc/moat-x 2>&1 || echo etc-write-refused
ls ` + hostTmp.Name() + ` >/dev/null 2>&1 || echo host-tmp-invisible
echo t > /tmp/own && echo private-tmp-write-ok
cat ` + filepath.Join(b.home, ".ssh/id_ed25519") + ` 2>&1; ls -A ` + filepath.Join(b.home, ".ssh") + `; echo ssh-listed
cat ` + filepath.Join(b.home, ".netrc") + `; echo netrc-read
cat ` + filepath.Join(b.home, "notes.txt") + `; echo
`)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"workspace-write-ok", "outside-write-refused", "Read-only file system", "etc-write-refused",
		"host-tmp-invisible", "private-tmp-write-ok", "ssh-listed", "netrc-read", "readable notes"} {
		mustContain(t, "stdout", r.stdout+r.stderr, want)
	}
	if strings.Contains(r.stdout, canary) {
		t.Errorf("a masked secret was read:\n%s", r.stdout)
	}
	if b, _ := os.ReadFile(outside); string(b) != "original" {
		t.Errorf("the file outside the workspace was changed to %q", b)
	}
	fi, err := os.Stat(filepath.Join(b.ws, "made-inside.txt"))
	if err != nil {
		t.Fatalf("the workspace write did not reach the host: %v", err)
	}
	ws, _ := os.Stat(b.ws)
	if fi.Sys().(*syscall.Stat_t).Uid != ws.Sys().(*syscall.Stat_t).Uid {
		t.Errorf("a file the agent made is owned by uid %d; want the workspace owner's %d", fi.Sys().(*syscall.Stat_t).Uid, ws.Sys().(*syscall.Stat_t).Uid)
	}
	if _, err := os.Stat("/tmp/own"); err == nil {
		t.Errorf("the sandbox's /tmp leaked to the host's")
	}
}

func TestDenyReadGlobs(t *testing.T) {
	b := newBox(t)
	b.policy("profile: strict\nnetwork:\n  allow: []\n")
	b.write(filepath.Join(b.ws, "server.pem"), canary+" pem")
	b.write(filepath.Join(b.ws, "sub", "deep.key"), canary+" key")
	b.write(filepath.Join(b.ws, ".env"), "TOKEN="+canary)
	b.write(filepath.Join(b.ws, "main.go"), "package main")
	r := b.sh(`cat server.pem sub/deep.key .env; echo; cat main.go`)
	if strings.Contains(r.stdout, canary) {
		t.Errorf("a deny_read glob did not mask:\n%v", r)
	}
	mustContain(t, "control read", r.stdout, "package main")
	// Writes to a masked file do not reach the host's.
	b.sh(`echo x > server.pem`)
	if got, _ := os.ReadFile(filepath.Join(b.ws, "server.pem")); !strings.Contains(string(got), canary) {
		t.Errorf("server.pem on the host is now %q", got)
	}
}

func TestMandatoryProtections(t *testing.T) {
	need(t, "git")
	b := newBox(t)
	if out, err := exec.Command("git", "init", "-q", b.ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	protected := []string{".bashrc", ".profile", ".zshrc", ".gitconfig", ".gitmodules", ".git/config", ".ripgreprc",
		".mcp.json", ".vscode/settings.json", ".idea/workspace.xml", ".claude/commands/x.md", ".claude/agents/a.md", "moat.yaml", "sub/.bashrc"}
	for _, p := range protected {
		switch p {
		case ".git/config":
		case "moat.yaml":
			b.policy("network:\n  allow: []\n")
		default:
			b.write(filepath.Join(b.ws, p), "original\n")
		}
	}
	before, _ := os.ReadFile(filepath.Join(b.ws, ".git/config"))
	var script strings.Builder
	for _, p := range protected {
		script.WriteString("echo evil >> " + p + " 2>/dev/null && echo WROTE " + p + "\n")
		script.WriteString("rm -f " + p + " 2>/dev/null && echo REMOVED " + p + "\n")
	}
	script.WriteString("echo hook > .git/hooks/pre-commit 2>/dev/null && echo WROTE hook\n")
	script.WriteString("mv .git .git-moved 2>/dev/null && echo MOVED .git\n")
	script.WriteString("mv .claude .claude-moved 2>/dev/null && echo MOVED .claude\n")
	script.WriteString("echo ok > ordinary.txt && echo control-ok\n")
	r := b.sh(script.String())
	mustContain(t, "stdout", r.String(), "control-ok")
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "WROTE") || strings.HasPrefix(l, "REMOVED") || strings.HasPrefix(l, "MOVED") {
			t.Errorf("protection failed: %s", l)
		}
	}
	for _, p := range protected {
		got, _ := os.ReadFile(filepath.Join(b.ws, p))
		if strings.Contains(string(got), "evil") {
			t.Errorf("%s was changed on the host: %q", p, got)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(b.ws, ".git/config")); string(after) != string(before) {
		t.Errorf(".git/config changed")
	}
	if _, err := os.Stat(filepath.Join(b.ws, ".git/hooks/pre-commit")); err == nil {
		t.Errorf("a git hook was planted")
	}
}

func TestEnvironment(t *testing.T) {
	b := newBox(t)
	b.policy("process:\n  env: [PASSED_ON, SET_HERE=fixed]\n")
	b.env = append(b.env, "PASSED_ON=yes-passed", "NOT_LISTED=no")
	r := b.sh(`env`)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"PASSED_ON=yes-passed", "SET_HERE=fixed", "HOME=" + b.home, "LANG=C.UTF-8", "PATH=", "NO_PROXY=localhost,127.0.0.1,::1", "NODE_USE_ENV_PROXY=1"} {
		mustContain(t, "env", r.stdout, want)
	}
	for _, bad := range []string{canary, "NOT_LISTED"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("env leaked %q:\n%s", bad, r.stdout)
		}
	}
}

func TestRequiredLayerMissing(t *testing.T) {
	b := newBox(t)
	b.policy("isolation:\n  require: [landlock]\n")
	b.env = append(b.env, "MOAT_TEST_HIDE_LAYERS=landlock")
	r := b.sh(`echo RAN`)
	if r.code != 125 || strings.Contains(r.stdout, "RAN") {
		t.Fatalf("%v\nwant exit 125 and the command not run", r)
	}
	mustContain(t, "stderr", r.stderr, "moat: sandbox: landlock: not available: hidden by MOAT_TEST_HIDE_LAYERS, which the policy requires (isolation.require); use a kernel with Landlock enabled")
	// Control: without the requirement it runs, and says what is missing.
	b.policy("network:\n  allow: []\n")
	r = b.sh(`echo RAN`)
	mustContain(t, "stdout", r.stdout, "RAN")
	mustContain(t, "stderr", r.stderr, "moat: note: landlock: not available")
}
