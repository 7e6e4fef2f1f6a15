package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsInit reports whether this process is one of the sandbox's re-executed
// stages. main must then call Init first, before any other work.
func IsInit() bool {
	if len(os.Args) < 1 {
		return false
	}
	if isContainerInit() {
		return true
	}
	switch os.Args[0] {
	case InitArg, ExecArg, usernsArg, ociStageArg:
		return true
	}
	return false
}

// Init runs the stage IsInit found and never returns.
func Init() {
	began := monotonic()
	if isContainerInit() {
		containerInit(began)
	}
	switch os.Args[0] {
	case InitArg:
		pid1(began)
	case ExecArg:
		lastStage(began)
	case usernsArg:
		usernsHelper()
	case ociStageArg:
		ociStage()
	}
	os.Exit(125)
}

const (
	ctlFD       = 3 // PID 1: the control socket
	stageCfgFD  = 3 // last stage: its config (a pipe)
	stageFailFD = 4 // last stage: where it reports a failure (a pipe)
)

// pid1 is the sandbox's init: the stages "mounts", "network" and "start",
// then a reaper that forwards signals and exits with the command's status.
func pid1(began int64) {
	// The main thread stays this goroutine's: the command's restrictions
	// are made on another (forkCommand), never on the thread that others
	// see as PID 1. That thread is started now, so that it exists by the
	// time the sandbox is built.
	runtime.LockOSThread()
	thread := newCommandThread()
	// Signals to forward, registered before the command exists so none
	// is lost; in parallel with building the sandbox, as each signal
	// enabled is a round trip to the Go runtime's signal thread.
	sigs := make(chan os.Signal, 16)
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
			syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP)
		close(notified)
	}()
	unix.CloseOnExec(ctlFD)
	typ, body, fds, err := recvMsg(ctlFD)
	if err != nil || typ != msgSpec {
		os.Exit(125)
	}
	var cfg initConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		failInit("start", fmt.Errorf("read the spec: %w", err), 125)
	}
	tr := traceFrom(cfg.Trace, began, "init", os.Stderr)
	tr.Mark("spec received")
	// Nothing inside may read this process's memory or open its files.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)

	idmapped := map[int]int{}
	for i, w := range cfg.IDMapped {
		if i < len(fds) {
			idmapped[w] = fds[i]
		}
	}
	if len(fds) > len(cfg.IDMapped) {
		cfg.Spec.srcFDs = fds[len(cfg.IDMapped):]
	}
	if err := buildRoot(&cfg.Spec, idmapped); err != nil {
		failInit("mounts", err, 125)
	}
	tr.Mark("mounts")
	fw := &forwarder{dial: (&ctlDialer{ctl: ctlFD}).dial}
	if err := setupNetwork(&cfg.Spec, fw); err != nil {
		failInit("network", err, 125)
	}
	tr.Mark("network")

	if cfg.AwaitCgroups {
		if typ, _, _, err := recvMsg(ctlFD); err != nil || typ != msgJoined {
			os.Exit(125) // the parent reports why
		}
		tr.Mark("in cgroups")
	}

	var stdio *os.File
	if cfg.Spec.TTY {
		master, slave, err := openPTY(cfg.Winsize)
		if err != nil {
			failInit("tty", err, 125)
		}
		if err := sendMsg(ctlFD, msgPTY, nil, master); err != nil {
			failInit("tty", err, 125)
		}
		unix.Close(master)
		stdio = os.NewFile(uintptr(slave), "pty")
	}
	<-notified
	pid, err := startLastStage(&cfg, stdio, tr, thread)
	if stdio != nil {
		stdio.Close()
	}
	if err != nil {
		var se *StageError
		if errors.As(err, &se) {
			failInit(se.Stage, se.Err, se.Code)
		}
		failInit("start", err, 125)
	}
	tr.Mark("command executed")
	if err := sendMsg(ctlFD, msgOK, nil); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		os.Exit(125)
	}
	if cfg.Spec.Egress {
		fw.serve()
	}
	go func() {
		for s := range sigs {
			unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	status := reapUntil(pid)
	tr.Mark("command exited")
	os.Exit(status)
}

// reapUntil reaps every child (orphans are re-parented to PID 1) until
// pid exits, and returns its shell-style status.
func reapUntil(pid int) int {
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 125
		}
		if p != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}

// failInit reports a failed stage to the parent and exits.
func failInit(stage string, err error, code int) {
	sendMsg(ctlFD, msgFail, stageFailure{Stage: stage, Err: err.Error(), Code: code})
	os.Exit(code)
}

// startLastStage runs the last stage and starts the command. Without
// rlimits to set, it runs on a thread of PID 1 (forkCommand); rlimits
// belong to the whole process, so then the moat binary is executed again
// as the last stage (execLastStage), whose only job that is.
func startLastStage(cfg *initConfig, stdio *os.File, tr *Trace, thread chan<- func()) (int, error) {
	if cfg.Rlimits {
		close(thread) // unused: it exits
		return execLastStage(cfg, stdio, tr)
	}
	return forkCommand(cfg, stdio, tr, thread)
}

// newCommandThread starts a goroutine locked to a new thread, which runs
// the one function sent to it, or nothing if the channel is closed, and
// then exits with the thread.
func newCommandThread() chan<- func() {
	job := make(chan func(), 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		warmPidfd()
		if f, ok := <-job; ok {
			f()
		}
	}()
	return job
}

// warmPidfd has the Go runtime make, now, the check it makes once before
// the first process is started or found (whether pidfds work: a throwaway
// vfork), so that starting a process later does not wait for it.
func warmPidfd() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Release()
	}
}

// lastStageAttr is how the command is started: in its own session, so it
// has no controlling terminal of moat's and TIOCSTI cannot reach the
// user's terminal; with a TTY, the new one (standard input) is its own.
func lastStageAttr(cfg *initConfig) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Setctty: cfg.Spec.TTY, Ctty: 0}
}

// forkCommand runs the last stage's steps on a thread of PID 1 that
// exists for nothing else (newCommandThread), and forks the command from
// it. Every
// restriction the steps make is the thread's own (no_new_privs, the
// capability sets and securebits, the Landlock domain, the seccomp filter
// loaded without TSYNC) and a forked child inherits its parent thread's:
// so the command starts with all of them, PID 1's other threads keep what
// the forwarder needs, and no second Go runtime has to start. The thread
// is never handed back to the Go scheduler: its goroutine ends locked, so
// the thread exits with it. It is never the main thread (which pid1
// keeps), so PID 1 as others see it is not in the command's Landlock
// domain.
func forkCommand(cfg *initConfig, stdio *os.File, tr *Trace, thread chan<- func()) (int, error) {
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	thread <- func() {
		if unix.Gettid() == unix.Getpid() {
			done <- result{err: errors.New("the last stage would run on PID 1's main thread")}
			return
		}
		c := *cfg
		c.oneThread = true
		s := &c.Spec
		path, err := lookPath(s.Argv[0], s.Env)
		if err != nil {
			done <- result{err: &StageError{Stage: "exec", Err: err, Code: 127}}
			return
		}
		for _, st := range lastStageSteps {
			if err := st.fn(&c); err != nil {
				done <- result{err: &StageError{Stage: st.name, Err: err, Code: 125}}
				return
			}
			tr.Mark(st.name)
		}
		cmd := &exec.Cmd{Path: path, Args: s.Argv, Env: s.Env,
			Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, SysProcAttr: lastStageAttr(&c)}
		if stdio != nil {
			cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio, stdio, stdio
		}
		if err := cmd.Start(); err != nil {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				done <- result{err: &StageError{Stage: "exec", Err: err, Code: 126}}
				return
			}
			code := 126
			if errno == unix.ENOENT {
				code = 127
			}
			done <- result{err: &StageError{Stage: "exec", Err: fmt.Errorf("%s: %w", s.Argv[0], errno), Code: code}}
			return
		}
		done <- result{pid: cmd.Process.Pid}
	}
	r := <-done
	return r.pid, r.err
}

// execLastStage starts the moat binary again as the last stage, with the
// config on a pipe, and waits until it has executed the command (its
// failure pipe closes) or reported a failure.
func execLastStage(cfg *initConfig, stdio *os.File, tr *Trace) (int, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	failR, failW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{ExecArg},
		Env:         []string{},
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  []*os.File{cfgR, failW},
		SysProcAttr: lastStageAttr(cfg),
	}
	if stdio != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio, stdio, stdio
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the last stage: %w", err)
	}
	tr.Mark("last stage forked")
	cfgR.Close()
	failW.Close()
	go func() {
		json.NewEncoder(cfgW).Encode(cfg)
		cfgW.Close()
	}()
	b, _ := io.ReadAll(failR)
	failR.Close()
	if len(b) > 0 {
		var f stageFailure
		if err := json.Unmarshal(b, &f); err != nil {
			f = stageFailure{Stage: "exec", Err: "unreadable failure report", Code: 125}
		}
		var ws unix.WaitStatus
		unix.Wait4(cmd.Process.Pid, &ws, 0, nil)
		return 0, &StageError{Stage: f.Stage, Err: errors.New(f.Err), Code: f.Code}
	}
	return cmd.Process.Pid, nil
}
