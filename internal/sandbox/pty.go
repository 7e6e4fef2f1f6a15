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
	master, slave *os.File
	in, out       *os.File
	saved         *unix.Termios
	winch         chan os.Signal
	outDone       chan struct{}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newTTY(in, out *os.File) (*ttyRelay, error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, fmt.Errorf("unlock the pty: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY)
	if errno != 0 {
		unix.Close(mfd)
		return nil, fmt.Errorf("open the pty's slave: %w", errno)
	}
	t := &ttyRelay{in: in, out: out, outDone: make(chan struct{})}
	t.slave = os.NewFile(sfd, "pty-slave")
	if ws, err := unix.IoctlGetWinsize(int(in.Fd()), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, ws)
	} else if ws, err := unix.IoctlGetWinsize(int(out.Fd()), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, ws)
	}
	unix.SetNonblock(mfd, true) // so the relay's reads go through the poller and can end
	t.master = os.NewFile(uintptr(mfd), "pty-master")
	return t, nil
}

// start puts the user's terminal in raw mode and relays both ways; window
// size changes (SIGWINCH) are copied to the pty, whose kernel side signals
// the command.
func (t *ttyRelay) start() {
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
	t.winch = make(chan os.Signal, 4)
	signal.Notify(t.winch, syscall.SIGWINCH)
	go func() {
		for range t.winch {
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
	t.master.Close()
	t.slave.Close()
}
