package sandbox

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// serveSocket starts ServeSocket on a Unix socket in a temporary
// directory and returns its path.
func serveSocket(t testing.TB, e *Egress) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), ContainerSocket)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go e.ServeSocket(ln)
	return sock
}

// TestServeSocket: the first line routes a connection to the proxy's
// listener or an endpoint's, what follows it stays in the connection, and
// a service nobody registered is refused.
func TestServeSocket(t *testing.T) {
	e := NewEgress()
	defer e.Close()
	audit := e.Endpoint("audit")
	sock := serveSocket(t, e)
	echo := func(ln net.Listener) {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, ln.Addr().String()+": "+line)
	}
	for _, c := range []struct{ svc, want string }{{"", "sandbox: hello\n"}, {"audit", "sandbox endpoint audit: hello\n"}} {
		go echo(map[string]net.Listener{"": e, "audit": audit}[c.svc])
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, c.svc+"\nhello\n")
		got, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if got != c.want {
			t.Errorf("service %q: got %q, want %q", c.svc, got, c.want)
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "nosuch\nhello\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("an unknown service was served (%d, %v)", n, err)
	}
}

// FuzzRoute: whatever the container sends first, moat neither panics nor
// hands the connection to a listener other than the one named.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"\n", "audit\n", TTYService + "\n", "nosuch\nx", "", "\x00\xff\n", string(make([]byte, 300))} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e := NewEgress()
		defer e.Close()
		a, c := net.Pipe()
		done := make(chan struct{})
		go func() {
			e.route(a)
			close(done)
		}()
		go func() {
			c.Write(b)
			c.Close()
		}()
		select {
		case got := <-e.ch:
			got.Close()
		case <-done:
		}
	})
}
