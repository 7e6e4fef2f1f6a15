package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Listen opens a listener for addr: "unix:/path/to.sock" or a TCP
// "host:port". A Unix socket is made mode 0600 inside a directory of mode
// 0700 (created if missing; an existing directory must not be writable by
// others), so only its owner can reach the proxy through it. A stale socket
// left by a crashed proxy is replaced; a live one is an error.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		if strings.HasPrefix(addr, "tcp:") {
			addr = strings.TrimPrefix(addr, "tcp:")
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l, nil
	}
	if path == "" {
		return nil, errors.New("listen: empty Unix socket path; write unix:/path/to.sock")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("listen on unix %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("listen on unix %s: %w", path, err)
	case fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0:
		return nil, fmt.Errorf("listen on unix %s: directory %s is writable by everyone; use a private directory", path, dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on unix %s: the path exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on unix %s: another process is listening on it", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix %s: %w", path, err)
	}
	// The socket inherits the umask; tighten it before anyone is told the
	// path. The private directory covers the moment in between.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on unix %s: %w", path, err)
	}
	return l, nil
}

// Describe names a listener the way moat prints it: "tcp 127.0.0.1:3128".
func Describe(l net.Listener) string {
	return l.Addr().Network() + " " + l.Addr().String()
}
