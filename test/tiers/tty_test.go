package tiers_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/testmoat"
)

// TestTTY: in the container and gvisor tiers the command gets a terminal
// of its own (made by moat's init inside, relayed by moat), with the
// user's window size, input reaching it, and TIOCSTI refused.
func TestTTY(t *testing.T) {
	for _, tr := range tiers(t) {
		// The native tier's is test/sandbox's TestTTY; gVisor cannot
		// hand its pty to moat (moat says so and runs without one).
		if tr.docker || tr.gvisor || tr.name == "native" {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			b := newBox(t, "filesystem:\n  write: [\".\"]\n")
			master, slave := testmoat.OpenPTY(t)
			defer master.Close()
			unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100})
			script := `import fcntl, os, struct, sys, termios
r, c = struct.unpack("hh", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 4))
print("isatty", os.isatty(0), "size %dx%d" % (r, c), flush=True)
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x"); print("tiocsti-ok", flush=True)
except OSError as e:
    print("tiocsti-errno", e.errno, flush=True)
print("ready", flush=True)
print("read", sys.stdin.readline().strip(), flush=True)
`
			args := append([]string{"run", "-q", "--tty", "always", "--no-network", "--audit", b.audit, "--policy", filepath.Join(b.ws, "moat.yaml")}, tr.flags...)
			cmd := exec.Command(moatBin, append(args, "--", "python3", "-c", script)...)
			cmd.Dir, cmd.Env = b.ws, append(b.env, "TERM=xterm")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			watchdog := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
			defer watchdog.Stop()
			out := &testmoat.PTYReader{F: master}
			if !out.WaitFor("ready", 60*time.Second) {
				cmd.Process.Kill()
				t.Fatalf("no ready line; output:\n%s", out.Text())
			}
			master.Write([]byte("typed-line\r"))
			out.WaitFor("read typed-line", 30*time.Second)
			cmd.Wait()
			for _, want := range []string{"isatty True size 30x100", "tiocsti-errno 1", "read typed-line"} {
				if !strings.Contains(out.Text(), want) {
					t.Errorf("terminal output lacks %q:\n%s", want, out.Text())
				}
			}
		})
	}
}
