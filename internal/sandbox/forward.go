package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// forwarder listens on 127.0.0.1 inside the sandbox and carries each
// connection's bytes to a connection that the parent hands over the
// control socket. It runs in PID 1, outside the command's seccomp filter.
type forwarder struct {
	ctl int
	mu  sync.Mutex // one request on the control socket at a time
	lns []net.Listener
}

// setupNetwork brings loopback up and, when the spec has egress, opens the
// forwarder's listeners (before the command starts, so no wait is needed).
func setupNetwork(s *Spec, fw *forwarder) error {
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if !s.Egress {
		return nil
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	for _, port := range []int{HTTPProxyPort, SOCKSProxyPort} {
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("forwarder: %w", err)
		}
		fw.lns = append(fw.lns, ln)
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// serve accepts on every listener in the background.
func (fw *forwarder) serve() {
	for _, ln := range fw.lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				go fw.handle(c)
			}
		}()
	}
}

// dial asks the parent for a connection to the egress listener.
func (fw *forwarder) dial() (net.Conn, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err := sendMsg(fw.ctl, msgEgress, nil); err != nil {
		return nil, err
	}
	typ, _, fds, err := recvMsg(fw.ctl)
	if err != nil {
		return nil, err
	}
	if typ != msgConn || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("no egress connection")
	}
	f := os.NewFile(uintptr(fds[0]), "egress")
	defer f.Close()
	return net.FileConn(f)
}

func (fw *forwarder) handle(c net.Conn) {
	defer c.Close()
	up, err := fw.dial()
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, up)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
}
