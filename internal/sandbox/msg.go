package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The parent and PID 1 talk over a SOCK_SEQPACKET pair (fd 3 in the
// child). One message a packet; its first byte is its type:
//
//	parent → init  'S' initConfig (JSON), with the idmapped mount fds
//	parent → init  'J' init is in its cgroups (when AwaitCgroups): it may
//	                   start the command
//	init → parent  'T' with one fd: the master of the command's new pty
//	init → parent  'O' the command started
//	init → parent  'F' stageFailure (JSON): a stage failed; init exits
//	init → parent  'E' an egress connection is wanted: for the proxy
//	               without a body, else egressRequest (JSON) naming the
//	               reverse endpoint
//	parent → init  'C' with one fd: a connection to that listener; without
//	               one, refused (no such endpoint)
//
// The last stage reports to PID 1 over a pipe (fd 4 in it): a
// stageFailure, or nothing when execve closes the pipe.
const (
	msgSpec    = 'S'
	msgJoined  = 'J'
	msgOK      = 'O'
	msgFail    = 'F'
	msgEgress  = 'E'
	msgConn    = 'C'
	msgPTY     = 'T'
	maxMsgSize = 4 << 20
)

// initConfig is what the parent sends PID 1 and PID 1 passes on.
type initConfig struct {
	Spec     Spec
	Rlimits  bool          // no cgroups: the last stage sets rlimits instead
	IDMapped []int         // indexes into Spec.Write of the mount fds sent along, in order
	Winsize  *unix.Winsize // with Spec.TTY: the size of the user's terminal
	Trace    int64         // the start trace's origin (CLOCK_MONOTONIC ns); 0: no trace
	// AwaitCgroups: the parent moves init into its cgroups after sending
	// this, and sends 'J' when it has; init starts nothing before.
	AwaitCgroups bool

	oneThread bool // the steps run on a thread of PID 1: restrict that thread only (not sent)
}

type stageFailure struct {
	Stage string `json:"stage"`
	Err   string `json:"err"`
	Code  int    `json:"code"` // exit status: 125, or 126/127 for exec
}

// StageError is a sandbox stage that failed: "landlock: …".
type StageError struct {
	Stage string
	Err   error
	Code  int // the exit status moat run returns for it
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

func sendMsg(fd int, typ byte, v any, fds ...int) error {
	b := []byte{typ}
	if v != nil {
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b = append(b, j...)
	}
	if len(b) > maxMsgSize {
		return fmt.Errorf("message of %d bytes is too large", len(b))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err := unix.Sendmsg(fd, b, oob, nil, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// recvMsg reads one message; a closed peer gives io.EOF-like errEOF.
func recvMsg(fd int) (typ byte, body []byte, fds []int, err error) {
	// The packet's size first (MSG_PEEK|MSG_TRUNC returns it whole), so
	// that a message takes its size, not maxMsgSize: a 4 MiB buffer for
	// each message would cost every new process a garbage collection.
	var n, oobn int
	var peek [1]byte
	for {
		n, _, err = unix.Recvfrom(fd, peek[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, nil, nil, err
	}
	buf := make([]byte, max(min(n, maxMsgSize), 1))
	oob := make([]byte, unix.CmsgSpace(64*4))
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, nil, nil, err
	}
	if oobn > 0 {
		cms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return 0, nil, nil, err
		}
		for _, cm := range cms {
			if rights, err := unix.ParseUnixRights(&cm); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	if n == 0 {
		return 0, nil, fds, errEOF
	}
	return buf[0], buf[1:n], fds, nil
}

var errEOF = errors.New("peer closed the connection")
