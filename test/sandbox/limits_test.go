package sandbox_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/testmoat"
)

// TestMemoryLimit: allocating past resources.memory kills the command (the
// OOM killer's SIGKILL: 137); the control allocates less and succeeds.
func TestMemoryLimit(t *testing.T) {
	need(t, "python3")
	b := newBox(t)
	b.policy("resources:\n  memory: 64m\n  pids: 64\n")
	alloc := `import sys; b = bytearray(int(sys.argv[1]) << 20); b[::4096] = b"x" * len(b[::4096]); print("allocated")`
	r := b.run([]string{"-v"}, "python3", "-c", alloc, "16")
	if r.code != 0 || !strings.Contains(r.stdout, "allocated") {
		t.Fatalf("control (16 MiB under a 64 MiB limit): %v", r)
	}
	mech := "cgroup"
	if !strings.Contains(r.stderr, "resources=\"cgroup") {
		mech = "rlimits"
	}
	r = b.run(nil, "python3", "-c", alloc, "256")
	if strings.Contains(r.stdout, "allocated") {
		t.Fatalf("256 MiB allocated under a 64 MiB limit (%s): %v", mech, r)
	}
	if mech == "cgroup" && r.code != 137 {
		t.Errorf("exit %d; want 137 (killed by the cgroup's OOM killer)", r.code)
	}
}

// TestPidsLimit: a fork loop stops at resources.pids; the control forks
// fewer.
func TestPidsLimit(t *testing.T) {
	b := newBox(t)
	b.policy("resources:\n  pids: 24\n")
	spawn := `n=0; i=0; while [ $i -lt $1 ]; do sleep 2 & if [ $? -eq 0 ]; then n=$((n+1)); fi; i=$((i+1)); done 2>/dev/null; echo started $n; kill $(jobs -p) 2>/dev/null; true`
	r := b.run(nil, "sh", "-c", spawn, "sh", "10")
	mustContain(t, "control", r.stdout, "started 10")
	r = b.run(nil, "sh", "-c", spawn, "sh", "60")
	if strings.Contains(r.stdout, "started 60") {
		t.Errorf("60 processes started under pids: 24: %v", r)
	}
}

// TestSettingsImport maps a sandbox-runtime settings file and reports
// what it cannot map.
func TestSettingsImport(t *testing.T) {
	b := newBox(t)
	extra := t.TempDir()
	os.Chmod(extra, 0o777)
	secret := filepath.Join(b.home, "project-secret.txt")
	b.write(secret, canary)
	settings, _ := json.Marshal(map[string]any{
		"network":          map[string]any{"allowedDomains": []string{"example.org"}, "deniedDomains": []string{"evil.example.org"}, "allowLocalBinding": true},
		"filesystem":       map[string]any{"denyRead": []string{secret}, "allowWrite": []string{extra}, "allowRead": []string{"/x"}},
		"ignoreViolations": map[string]any{},
	})
	f := filepath.Join(b.home, "srt-settings.json")
	b.write(f, string(settings))
	r := b.sh(`cat `+secret+`; echo; echo w > `+filepath.Join(extra, "w.txt")+` && echo extra-writable`, "--settings", f)
	if strings.Contains(r.stdout, canary) {
		t.Errorf("denyRead not applied: %v", r)
	}
	mustContain(t, "stdout", r.String(), "extra-writable")
	for _, want := range []string{
		"moat: note: " + f + ": ignoreViolations is not mapped; moat ignores it",
		"filesystem.allowRead is not mapped",
		"network.allowLocalBinding is not needed",
	} {
		mustContain(t, "stderr", r.stderr, want)
	}
}

// TestTTY drives moat run through a real pseudo-terminal: the command gets
// a new terminal (not moat's), sees the window size and its changes, and
// TIOCSTI on it is refused by the filter (EPERM; the kernel's own refusal
// would be EIO).
func TestTTY(t *testing.T) {
	need(t, "python3")
	b := newBox(t)
	master, slave := testmoat.OpenPTY(t)
	defer master.Close()
	unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100})
	script := `import fcntl, os, select, signal, sys, termios, struct
def size():
    r, c = struct.unpack("hh", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 4))
    return "%dx%d" % (r, c)
print("isatty", os.isatty(0), os.ttyname(0), "size", size(), flush=True)
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x"); print("tiocsti-ok", flush=True)
except OSError as e:
    print("tiocsti-errno", e.errno, flush=True)

# The handler writes unbuffered (a print in a handler that interrupts a
# print fails: reentrant BufferedWriter), and the main loop wakes up
# often, so a signal that comes between print and read is handled now.
signal.signal(signal.SIGWINCH, lambda *a: os.write(1, ("winch %s\n" % size()).encode()))
print("ready", flush=True)
while not select.select([0], [], [], 0.05)[0]:
    pass
line = sys.stdin.readline()
print("read", line.strip(), flush=True)
`
	cmd := exec.Command(moatBin, "run", "--audit", b.audit, "--", "python3", "-c", script)
	cmd.Dir, cmd.Env = b.ws, append(b.env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	watchdog := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	out := &testmoat.PTYReader{F: master}
	if !out.WaitFor("ready", 20*time.Second) {
		cmd.Process.Kill()
		t.Fatalf("no ready line; output:\n%s", out.Text())
	}
	unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120})
	if !out.WaitFor("winch 40x120", 20*time.Second) {
		t.Errorf("window change not seen inside; output:\n%s", out.Text())
	}
	master.Write([]byte("typed-line\r"))
	out.WaitFor("read typed-line", 20*time.Second)
	cmd.Wait()
	text := out.Text()
	for _, want := range []string{"isatty True /dev/pts/0 size 30x100", "tiocsti-errno 1", "read typed-line"} {
		mustContain(t, "terminal", text, want)
	}
}
