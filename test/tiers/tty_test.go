package tiers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
			master, slave := openPTY(t)
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
			out := &ptyReader{f: master}
			if !out.waitFor("ready", 60*time.Second) {
				cmd.Process.Kill()
				t.Fatalf("no ready line; output:\n%s", out.text())
			}
			master.Write([]byte("typed-line\r"))
			out.waitFor("read typed-line", 30*time.Second)
			cmd.Wait()
			for _, want := range []string{"isatty True size 30x100", "tiocsti-errno 1", "read typed-line"} {
				if !strings.Contains(out.text(), want) {
					t.Errorf("terminal output lacks %q:\n%s", want, out.text())
				}
			}
		})
	}
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// ptyReader collects a pty master's output in the background.
type ptyReader struct {
	f     *os.File
	buf   []byte
	ch    chan []byte
	start bool
}

func (p *ptyReader) waitFor(s string, timeout time.Duration) bool {
	if !p.start {
		p.start = true
		p.ch = make(chan []byte, 64)
		go func() {
			for {
				b := make([]byte, 4096)
				n, err := p.f.Read(b)
				if n > 0 {
					p.ch <- b[:n]
				}
				if err != nil {
					close(p.ch)
					return
				}
			}
		}()
	}
	deadline := time.After(timeout)
	for !strings.Contains(string(p.buf), s) {
		select {
		case b, ok := <-p.ch:
			if !ok {
				return strings.Contains(string(p.buf), s)
			}
			p.buf = append(p.buf, b...)
		case <-deadline:
			return false
		}
	}
	return true
}

func (p *ptyReader) text() string { return string(p.buf) }
