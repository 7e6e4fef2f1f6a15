package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// ttyRelay is the new pseudo-terminal a TTY sandbox gets: moat holds the
// master and relays it to the user's terminal, which it puts in raw mode;
// the command gets the slave as its controlling terminal. Nothing inside
// can reach the user's own terminal (TIOCSTI included).
type ttyRelay struct {
	master  *os.File // nil until PID 1 sends it
	in, out *os.File
	saved   *unix.Termios
	winch   chan os.Signal
	outDone chan struct{}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newTTY(in, out *os.File) (*ttyRelay, error) {
	t := &ttyRelay{in: in, out: out, outDone: make(chan struct{})}
	return t, nil
}

// winsize is the user's terminal's size, for the new pty.
func (t *ttyRelay) winsize() *unix.Winsize {
	if ws, err := unix.IoctlGetWinsize(int(t.in.Fd()), unix.TIOCGWINSZ); err == nil {
		return ws
	}
	if ws, err := unix.IoctlGetWinsize(int(t.out.Fd()), unix.TIOCGWINSZ); err == nil {
		return ws
	}
	return nil
}

// attach takes the master PID 1 made in the sandbox's own devpts (so the
// command's terminal is /dev/pts/0 there, and ttyname works).
func (t *ttyRelay) attach(fd int) {
	unix.SetNonblock(fd, true) // so the relay's reads go through the poller and can end
	t.master = os.NewFile(uintptr(fd), "pty-master")
}

// openPTY makes a pseudo-terminal in the current /dev/pts (PID 1 calls it
// after the pivot) with the given size.
func openPTY(ws *unix.Winsize) (master, slave int, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("unlock the pty: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(master)
		return -1, -1, fmt.Errorf("open the pty's slave: %w", errno)
	}
	if ws != nil {
		unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws)
	}
	return master, int(sfd), nil
}

// start puts the user's terminal in raw mode and relays both ways; window
// size changes (SIGWINCH) are copied to the pty, whose kernel side signals
// the command.
func (t *ttyRelay) start() {
	if t.master == nil {
		return
	}
	if tio, err := unix.IoctlGetTermios(int(t.in.Fd()), unix.TCGETS); err == nil {
		saved := *tio
		t.saved = &saved
		raw := *tio
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		unix.IoctlSetTermios(int(t.in.Fd()), unix.TCSETS, &raw)
	}
	winch := make(chan os.Signal, 4) // close clears t.winch
	t.winch = winch
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			if ws, err := unix.IoctlGetWinsize(int(t.in.Fd()), unix.TIOCGWINSZ); err == nil {
				unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}()
	go io.Copy(t.master, t.in) // ends with moat; a read pending on the user's terminal is harmless
	go func() {
		io.Copy(t.out, t.master) // until EIO: every slave fd is closed
		close(t.outDone)
	}()
}

// wait returns when the command's output has all been relayed.
func (t *ttyRelay) wait() {
	if t.winch != nil {
		<-t.outDone
	}
}

// close restores the user's terminal and releases the pty.
func (t *ttyRelay) close() {
	if t.winch != nil {
		signal.Stop(t.winch)
		close(t.winch)
		t.winch = nil
	}
	if t.saved != nil {
		unix.IoctlSetTermios(int(t.in.Fd()), unix.TCSETS, t.saved)
		t.saved = nil
	}
	if t.master != nil {
		t.master.Close()
	}
}
