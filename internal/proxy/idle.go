package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
)

// An idle tunnel must cost little: thousands of them sit open while agents
// hold streams. So the relay loops wait for a connection to become readable
// before they take a buffer from the pool, and an idle direction holds no
// buffer at all.

// waitReadable blocks until c has data, an EOF or an error to report, or
// its read deadline passes. It consumes nothing.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var probe [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Peek rather than trust the poller's last state: data may have
		// arrived while nobody was reading.
		_, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
	return err
}

// relay copies src to dst until EOF or an error, counting bytes, holding a
// pooled buffer only while data is moving.
func relay(dst io.Writer, src net.Conn, n *atomic.Int64) error {
	for {
		if err := waitReadable(src); err != nil {
			return err
		}
		buf := bufPool.Get().(*[]byte)
		nr, rerr := src.Read(*buf)
		var werr error
		if nr > 0 {
			var nw int
			nw, werr = dst.Write((*buf)[:nr])
			n.Add(int64(nw))
		}
		bufPool.Put(buf)
		switch {
		case werr != nil:
			return werr
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return rerr
		}
	}
}
