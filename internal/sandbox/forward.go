package sandbox

import (
	"context"
	"encoding/json"
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
// connection's bytes to a connection to the host that dial opens for the
// service. It runs in the init, outside the command's seccomp filter.
type forwarder struct {
	dial func(svc string) (net.Conn, error)
	lns  []service
}

// ctlDialer asks the parent, over the control socket, for connections
// (the native tier: no socket file, the parent hands each one over).
type ctlDialer struct {
	ctl int
	mu  sync.Mutex // one request on the control socket at a time
}

// service is one of the forwarder's listeners and the service its
// connections are for: "" for the proxy, else a reverse endpoint's name.
type service struct {
	ln   net.Listener
	name string
}

// setupNetwork brings loopback up and, when the spec has egress, opens the
// forwarder's listeners: the proxy's ports and each reverse endpoint's
// (before the command starts, so no wait is needed).
func setupNetwork(s *Spec, fw *forwarder) error {
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if !s.Egress {
		return nil
	}
	return fw.listen(s)
}

// listen opens the forwarder's listeners: the proxy's ports and each
// reverse endpoint's, on 127.0.0.1 (before the command starts, so no
// wait is needed).
func (fw *forwarder) listen(s *Spec) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	listen := func(port int, name string) error {
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			if name != "" {
				return fmt.Errorf("forwarder: endpoint %s on port %d: %w", name, port, err)
			}
			return fmt.Errorf("forwarder on port %d: %w", port, err)
		}
		fw.lns = append(fw.lns, service{ln, name})
		return nil
	}
	for _, port := range []int{HTTPProxyPort, SOCKSProxyPort} {
		if err := listen(port, ""); err != nil {
			return err
		}
	}
	for _, ep := range s.Endpoints {
		if err := listen(ep.Port, ep.Name); err != nil {
			return err
		}
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
	for _, sv := range fw.lns {
		go func() {
			for {
				c, err := sv.ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				go fw.handle(c, sv.name)
			}
		}()
	}
}

// dial asks the parent for a connection to the listener of the service
// (the proxy when empty, else the named reverse endpoint).
func (d *ctlDialer) dial(svc string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var body any
	if svc != "" {
		body = egressRequest{Service: svc}
	}
	if err := sendMsg(d.ctl, msgEgress, body); err != nil {
		return nil, err
	}
	typ, _, fds, err := recvMsg(d.ctl)
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

func (fw *forwarder) handle(c net.Conn, svc string) {
	defer c.Close()
	up, err := fw.dial(svc)
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

// egressRequest is the body of an 'E' message that names a reverse
// endpoint; an 'E' without a body asks for the proxy.
type egressRequest struct {
	Service string `json:"service"`
}

// serviceOf reads an 'E' message's body: the service it names, "" for
// the proxy.
func serviceOf(body []byte) (string, error) {
	if len(body) == 0 {
		return "", nil
	}
	var r egressRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("egress request: %w", err)
	}
	if r.Service == "" {
		return "", errors.New("egress request: empty service")
	}
	return r.Service, nil
}
