package sandbox

import (
	"errors"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Egress is the sandbox's only way out, seen from outside: a net.Listener
// whose connections are the ones the agent opens to the forwarder on
// 127.0.0.1 inside. The caller serves it (moat serves its proxy on it). No
// socket file exists for it: PID 1 asks the parent for each connection, and
// the parent hands it one end of a fresh socket pair, so nothing in the
// sandbox has a path it could connect to. It is safe for concurrent use.
type Egress struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewEgress returns an open Egress; Close it when the run is over.
func NewEgress() *Egress {
	return &Egress{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next connection from inside the sandbox.
func (e *Egress) Accept() (net.Conn, error) {
	select {
	case c := <-e.ch:
		return c, nil
	case <-e.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections already accepted stay open.
func (e *Egress) Close() error {
	e.once.Do(func() { close(e.done) })
	return nil
}

// Addr is a placeholder: the listener has no address.
func (e *Egress) Addr() net.Addr { return egressAddr{} }

type egressAddr struct{}

func (egressAddr) Network() string { return "unix" }
func (egressAddr) String() string  { return "sandbox" }

// newConn makes a socket pair, queues one end for Accept and returns the
// other's fd for the sandbox.
func (e *Egress) newConn() (int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	f := os.NewFile(uintptr(fds[0]), "egress")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return -1, err
	}
	go func() {
		select {
		case e.ch <- c:
		case <-e.done:
			c.Close()
		}
	}()
	return fds[1], nil
}

var errNoEgress = errors.New("this sandbox has no network")
