package sandbox

import (
	"errors"
	"fmt"
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
//
// Besides the proxy, the sandbox may have reverse endpoints: the forwarder
// listens on each one's loopback port too and names the endpoint when it
// asks for a connection; Endpoint returns the listener those arrive on.
type Egress struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	endpoints map[string]*endpointListener
}

// NewEgress returns an open Egress; Close it when the run is over.
func NewEgress() *Egress {
	return &Egress{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Endpoint returns the listener for the connections the agent opens to the
// reverse endpoint name (Spec.Endpoints), for the caller to serve. Closing
// it or the Egress stops its Accept. It must be called before Start: a
// connection for an endpoint nobody asked for is refused.
func (e *Egress) Endpoint(name string) net.Listener {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.endpoints == nil {
		e.endpoints = map[string]*endpointListener{}
	}
	l := e.endpoints[name]
	if l == nil {
		l = &endpointListener{e: e, name: name, ch: make(chan net.Conn), done: make(chan struct{})}
		e.endpoints[name] = l
	}
	return l
}

// endpointListener is one reverse endpoint's share of an Egress.
type endpointListener struct {
	e    *Egress
	name string
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *endpointListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.e.done:
		return nil, net.ErrClosed
	}
}

func (l *endpointListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *endpointListener) Addr() net.Addr { return egressAddr{name: l.name} }

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

type egressAddr struct{ name string }

func (egressAddr) Network() string { return "unix" }
func (a egressAddr) String() string {
	if a.name != "" {
		return "sandbox endpoint " + a.name
	}
	return "sandbox"
}

// newConn makes a socket pair, queues one end for the Accept of service
// (the proxy when empty, else the reverse endpoint of that name) and
// returns the other's fd for the sandbox.
func (e *Egress) newConn(service string) (int, error) {
	ch, done := e.ch, e.done
	if service != "" {
		e.mu.Lock()
		l := e.endpoints[service]
		e.mu.Unlock()
		if l == nil {
			return -1, fmt.Errorf("no endpoint %q", service)
		}
		ch, done = l.ch, l.done
	}
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
		case ch <- c:
		case <-done:
			c.Close()
		case <-e.done:
			c.Close()
		}
	}()
	return fds[1], nil
}

var errNoEgress = errors.New("this sandbox has no network")
