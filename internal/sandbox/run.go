package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Arguments the moat binary is re-executed with. main (and a test binary's
// TestMain) must call Init before anything else when IsInit reports one.
const (
	InitArg   = "__moat_sandbox_init"   // PID 1 of the sandbox
	ExecArg   = "__moat_sandbox_exec"   // the last stage before the command
	usernsArg = "__moat_sandbox_userns" // holds a user namespace for an idmapped mount
)

// NobodyID is the host identity the agent runs as when moat runs as root:
// it owns nothing on the host, so the agent is root on no host object.
const NobodyID = 65534

// agentID is the agent's uid and gid inside the sandbox when moat runs as
// root (otherwise the caller's own ids are kept).
const agentID = 1000

// Options says how Start connects the sandbox to the outside.
type Options struct {
	Stdin, Stdout, Stderr *os.File
	// TTY gives the command a new pseudo-terminal whose master moat relays
	// to Stdin and Stdout (which must be a terminal), as docker run -t.
	TTY bool
	// Egress receives the agent's proxy connections; nil when Spec.Egress
	// is false.
	Egress *Egress
	// ForwardSignals relays SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
	// SIGUSR2 that moat receives to the command.
	ForwardSignals bool
	// Exe is the moat binary to re-execute; empty means /proc/self/exe.
	Exe string
	Log *slog.Logger // nil: discard
	// Trace, when not nil, receives the start path's steps, the
	// sandbox's processes' included (MOAT_TRACE_START=1).
	Trace *Trace
}

// Sandbox is a started sandbox.
type Sandbox struct {
	// Resources says how the limits are enforced: "cgroup v1 (memory,
	// pids, cpu)", "rlimits (…)", or "none".
	Resources string
	// Notes are things the operator should know (a layer the kernel lacks
	// that the policy does not require).
	Notes []string

	cmd        *exec.Cmd
	ctl        int // parent's end of the control socket
	egress     *Egress
	cg         *cgroup
	tty        *ttyRelay
	sigs       chan os.Signal
	waitc      chan error
	ctlDone    chan struct{}
	waitOnce   sync.Once
	ctlStarted bool
	status     int
	err        error
	trace      *Trace
}

// Start creates the sandbox and starts the command in it. It returns once
// the command has been executed (or a stage failed: then a *StageError).
func Start(s *Spec, o Options) (sb *Sandbox, err error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if s.Egress && o.Egress == nil {
		return nil, errors.New("the spec wants egress but Options.Egress is nil")
	}
	tr := o.Trace
	go warmPidfd() // before the helper and the child are started
	host := probeLayers()
	notes, err := host.check(s)
	if err != nil {
		return nil, err
	}
	tr.Mark("probe")
	sb = &Sandbox{Notes: notes, egress: o.Egress, waitc: make(chan error, 1), ctlDone: make(chan struct{}), ctl: -1, trace: tr}
	self := sb
	defer func() {
		if err != nil {
			self.cleanup()
		}
	}()

	uid, gid := os.Getuid(), os.Getgid()
	hostUID, hostGID, inUID, inGID := uid, gid, uid, gid
	if uid == 0 {
		hostUID, hostGID, inUID, inGID = NobodyID, NobodyID, agentID, agentID
	}
	exe := o.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}

	// What needs no child is prepared at once, in parallel: the cgroups
	// (the child is started in them, or moved into them before it starts
	// the command) and, as root, the idmapped copies of the writable paths
	// the agent's host identity does not own (they need the host's
	// privilege; PID 1 attaches them), which are ready while the child
	// starts.
	var prep sync.WaitGroup
	var resErr, idmapErr error
	var idmapFDs, idmapped, srcFDs []int
	cgReady := make(chan struct{})
	prep.Go(func() {
		defer close(cgReady)
		sb.cg, sb.Resources, resErr = prepareResources(s.Resources, s.Require, host)
		tr.Mark("cgroups made")
	})
	if uid == 0 {
		prep.Go(func() {
			idmapFDs, idmapped, idmapErr = idmapWrites(s.Write, hostUID, hostGID, exe)
			if idmapErr == nil {
				srcFDs, idmapErr = sourceFDs(s, hostUID, hostGID, exe)
			}
			tr.Mark("idmap")
		})
	}
	defer func() {
		prep.Wait() // on an early return
		for _, fd := range idmapFDs {
			unix.Close(fd)
		}
		closeAll(srcFDs)
	}()
	if o.ForwardSignals {
		// Registered before the command exists (prep is waited for before
		// the spec is sent), so a signal that arrives while it starts is
		// held and forwarded, not lost; in parallel, as each signal
		// enabled is a round trip to the Go runtime's signal thread.
		sb.sigs = make(chan os.Signal, 8)
		prep.Go(func() {
			signal.Notify(sb.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		})
	}

	stdin, stdout, stderr := o.Stdin, o.Stdout, o.Stderr
	if o.TTY {
		sb.tty, err = newTTY(o.Stdin, o.Stdout)
		if err != nil {
			return nil, fmt.Errorf("tty: %w", err)
		}
		// PID 1 makes the pty; it gets no terminal of moat's itself.
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer devnull.Close()
		stdin, stdout, stderr = devnull, devnull, devnull
		s.TTY = true
	}

	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	sb.ctl = pair[0]
	child := os.NewFile(uintptr(pair[1]), "moat-control")
	defer child.Close()

	sb.cmd = &exec.Cmd{
		Path:       exe,
		Args:       []string{InitArg},
		Env:        []string{},
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{child},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
				unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: inUID, HostID: hostUID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: inGID, HostID: hostGID, Size: 1}},
			GidMappingsEnableSetgroups: false,
			Credential:                 &syscall.Credential{Uid: uint32(inUID), Gid: uint32(inGID), NoSetGroups: true},
			// PID 1 keeps what it needs to build the sandbox; the last
			// stage drops them all.
			AmbientCaps: append([]uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETPCAP, unix.CAP_SYS_CHROOT}, overlayCaps(s)...),
			Setsid:      true,
			Pdeathsig:   syscall.SIGKILL,
		},
	}
	// Pdeathsig fires when the thread that started the child exits, so
	// start it from a thread that lives until the child is reaped.
	// With cgroup v1, this thread moves itself into the sandbox's cgroups
	// to start the child, which is born in them.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		<-cgReady
		if resErr != nil {
			started <- resErr
			return
		}
		cg := sb.cg
		if cg != nil && cg.v1 {
			if err := cg.enterThread(); err != nil {
				started <- &StageError{Stage: "cgroups", Err: err, Code: 125}
				return
			}
		}
		err := sb.cmd.Start()
		if cg != nil && cg.v1 {
			cg.leaveThread()
		}
		if err != nil {
			started <- err
			return
		}
		started <- nil
		sb.waitc <- sb.cmd.Wait()
	}()
	if err := <-started; err != nil {
		var se *StageError
		switch {
		case err == resErr:
			return nil, &StageError{Stage: "cgroups", Err: err, Code: 125}
		case errors.As(err, &se):
			return nil, se
		}
		return nil, &StageError{Stage: "namespaces", Err: namespaceError(err), Code: 125}
	}
	child.Close()
	pid := sb.cmd.Process.Pid
	tr.Mark("clone")

	cfg := initConfig{Spec: *s, Trace: tr.origin()}
	if sb.tty != nil {
		cfg.Winsize = sb.tty.winsize()
	}
	prep.Wait()
	if resErr != nil {
		return nil, &StageError{Stage: "cgroups", Err: resErr, Code: 125}
	}
	if idmapErr != nil {
		return nil, &StageError{Stage: "mounts", Err: idmapErr, Code: 125}
	}
	// Without cgroups, the last stage sets rlimits.
	cfg.Rlimits = sb.cg == nil && s.Resources != (Resources{})
	cfg.IDMapped = idmapped
	cfg.AwaitCgroups = sb.cg != nil && !sb.cg.v1
	if err := sendMsg(sb.ctl, msgSpec, cfg, append(idmapFDs[:len(idmapFDs):len(idmapFDs)], srcFDs...)...); err != nil {
		return nil, &StageError{Stage: "start", Err: fmt.Errorf("send the spec to the sandbox: %w", err), Code: 125}
	}
	tr.Mark("spec sent")
	// With cgroup v2, PID 1 builds the sandbox while it is moved into its
	// cgroups (moving a process waits for an RCU grace period:
	// milliseconds), and starts nothing until told that it is in them.
	if cfg.AwaitCgroups {
		err := sb.cg.join(pid)
		if err == nil {
			err = sendMsg(sb.ctl, msgJoined, nil)
		}
		if err != nil {
			// A stage that failed meanwhile is the better report.
			sb.cmd.Process.Kill()
			if typ, body, _, rerr := recvMsg(sb.ctl); rerr == nil && typ == msgFail {
				var f stageFailure
				if json.Unmarshal(body, &f) == nil {
					sb.reap()
					return nil, &StageError{Stage: f.Stage, Err: errors.New(f.Err), Code: f.Code}
				}
			}
			return nil, &StageError{Stage: "cgroups", Err: err, Code: 125}
		}
		tr.Mark("cgroups joined")
	}

	// The first reply says whether the command started; with a TTY, the
	// pty's master comes first.
	typ, body, rfds, err := recvMsg(sb.ctl)
	if err == nil && typ == msgPTY && len(rfds) == 1 && sb.tty != nil {
		sb.tty.attach(rfds[0])
		typ, body, _, err = recvMsg(sb.ctl)
	}
	switch {
	case err != nil:
		return nil, &StageError{Stage: "start", Err: fmt.Errorf("the sandbox's init exited before the command started (%v)", sb.exitText()), Code: 125}
	case typ == msgFail:
		var f stageFailure
		if err := json.Unmarshal(body, &f); err != nil {
			return nil, &StageError{Stage: "start", Err: fmt.Errorf("unreadable failure report: %w", err), Code: 125}
		}
		sb.reap()
		return nil, &StageError{Stage: f.Stage, Err: errors.New(f.Err), Code: f.Code}
	case typ != msgOK:
		return nil, &StageError{Stage: "start", Err: fmt.Errorf("unexpected message %q from the sandbox", typ), Code: 125}
	}
	tr.Mark("command started")
	log.Debug("sandbox started", "pid", pid, "resources", sb.Resources)

	sb.ctlStarted = true
	go sb.serveControl()
	if sb.tty != nil {
		sb.tty.start()
	}
	if sigs := sb.sigs; sigs != nil { // cleanup clears the field
		go func() {
			for sig := range sigs {
				sb.Signal(sig)
			}
		}()
	}
	return sb, nil
}

// Signal sends sig to the sandbox's PID 1, which passes it to the command.
func (sb *Sandbox) Signal(sig os.Signal) {
	if sb.cmd != nil && sb.cmd.Process != nil {
		sb.cmd.Process.Signal(sig)
	}
}

// Wait waits for the command and returns its exit status: its code, or
// 128+n when a signal n ended it. The sandbox is then gone: every process
// in it has been killed, the cgroups removed, the terminal restored.
func (sb *Sandbox) Wait() (int, error) {
	sb.waitOnce.Do(func() {
		sb.reap()
		sb.trace.Mark("sandbox exited")
		if sb.tty != nil {
			sb.tty.wait()
		}
		sb.cleanup()
		sb.trace.Mark("cleaned up")
	})
	return sb.status, sb.err
}

// reap waits for PID 1 and records its status.
func (sb *Sandbox) reap() {
	err := <-sb.waitc
	sb.waitc <- err // for a second reader
	sb.status = exitStatus(sb.cmd.ProcessState)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		sb.err = err
	}
}

func (sb *Sandbox) exitText() string {
	select {
	case err := <-sb.waitc:
		sb.waitc <- err
		if err != nil {
			return err.Error()
		}
		return "exit status 0"
	default:
		return "still running"
	}
}

func (sb *Sandbox) cleanup() {
	if sb.sigs != nil {
		signal.Stop(sb.sigs)
		close(sb.sigs)
		sb.sigs = nil
	}
	if sb.cmd != nil && sb.cmd.Process != nil && sb.cmd.ProcessState == nil {
		sb.cmd.Process.Kill()
		<-sb.waitc
	}
	if sb.ctl >= 0 {
		unix.Shutdown(sb.ctl, unix.SHUT_RDWR)
		<-sb.ctlWait()
		unix.Close(sb.ctl)
		sb.ctl = -1
	}
	if sb.tty != nil {
		sb.tty.close()
	}
	if sb.cg != nil {
		sb.cg.remove()
	}
}

// ctlWait returns a channel closed when serveControl has returned (or was
// never started).
func (sb *Sandbox) ctlWait() chan struct{} {
	select {
	case <-sb.ctlDone:
	default:
		if !sb.ctlStarted {
			close(sb.ctlDone)
		}
	}
	return sb.ctlDone
}

// serveControl answers PID 1's egress requests (for the proxy or a named
// reverse endpoint) until the socket closes.
func (sb *Sandbox) serveControl() {
	defer close(sb.ctlDone)
	for {
		typ, body, fds, err := recvMsg(sb.ctl)
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err != nil {
			return
		}
		if typ != msgEgress || sb.egress == nil {
			continue
		}
		svc, err := serviceOf(body)
		if err != nil {
			sendMsg(sb.ctl, msgConn, nil)
			continue
		}
		fd, err := sb.egress.newConn(svc)
		if err != nil {
			sendMsg(sb.ctl, msgConn, nil)
			continue
		}
		sendMsg(sb.ctl, msgConn, nil, fd)
		unix.Close(fd)
	}
}

// exitStatus maps a process state to a shell-style status.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func namespaceError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("cannot create user namespaces: %w; unprivileged user namespaces are disabled or restricted (AppArmor's kernel.apparmor_restrict_unprivileged_userns, a container's seccomp profile): enable them (sysctl kernel.unprivileged_userns_clone=1, an AppArmor profile for moat) or use --isolation=container", err)
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("cannot create namespaces: %w; user.max_user_namespaces (or another namespace limit) is exhausted: raise it with sysctl", err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("cannot create namespaces: %w; the kernel lacks one of user, mount, PID, network, IPC, UTS or cgroup namespaces", err)
	}
	return fmt.Errorf("start the sandbox: %w", err)
}

var _ io.Reader = (*os.File)(nil)
