// Package testmoat is what moat's end-to-end test packages share: the moat
// binary built once from this tree, the rule that CI never skips, and a
// pseudo-terminal to drive the binary as a person would.
package testmoat

import (
	"fmt"
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

// InCI is true under CI=true, where a missing component fails a test
// instead of skipping it.
var InCI = os.Getenv("CI") == "true"

// Build compiles cmd/moat into a new directory made under parent ("" for
// the default temporary directory) and returns the binary's path and a
// function that removes the directory. The directory is world-readable:
// sandboxes read the binary as their unprivileged identity.
func Build(parent, prefix string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	bin = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", bin, "github.com/moatsec/moat/cmd/moat")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build moat: %w", err)
	}
	return bin, cleanup, nil
}

// Main is a TestMain: it builds moat into *bin (under parent, "" for the
// default temporary directory), runs the tests, removes the binary and
// exits with the tests' status.
func Main(m *testing.M, parent, prefix string, bin *string) {
	b, cleanup, err := Build(parent, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Unavailable fails the test under CI and skips it elsewhere, saying why.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI {
		t.Fatalf(format+"; CI must provide it", args...)
	}
	t.Skipf(format, args...)
}

// Need calls Unavailable when one of the tools is not on PATH.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "%s is not installed", tool)
		}
	}
}

// OpenPTY opens a new pseudo-terminal pair; the test closes both ends.
func OpenPTY(t testing.TB) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// PTYReader collects what a pty master reads, in the background once the
// first WaitFor starts it.
type PTYReader struct {
	F     *os.File
	buf   []byte
	ch    chan []byte
	start bool
}

// WaitFor reports whether s has appeared in the output within timeout.
func (p *PTYReader) WaitFor(s string, timeout time.Duration) bool {
	if !p.start {
		p.start = true
		p.ch = make(chan []byte, 64)
		go func() {
			for {
				b := make([]byte, 4096)
				n, err := p.F.Read(b)
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

// Text is everything read so far.
func (p *PTYReader) Text() string { return string(p.buf) }
