package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsInit reports whether this process is one of the sandbox's re-executed
// stages. main must then call Init first, before any other work.
func IsInit() bool {
	if len(os.Args) < 1 {
		return false
	}
	switch os.Args[0] {
	case InitArg, ExecArg, usernsArg:
		return true
	}
	return false
}

// Init runs the stage IsInit found and never returns.
func Init() {
	began := monotonic()
	switch os.Args[0] {
	case InitArg:
		pid1(began)
	case ExecArg:
		lastStage(began)
	case usernsArg:
		usernsHelper()
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
	if err := buildRoot(&cfg.Spec, idmapped); err != nil {
		failInit("mounts", err, 125)
	}
	tr.Mark("mounts")
	fw := &forwarder{ctl: ctlFD}
	if err := setupNetwork(&cfg.Spec, fw); err != nil {
		failInit("network", err, 125)
	}
	tr.Mark("network")

	// Signals to forward, registered before the command exists so none
	// is lost.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP)

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
	pid, err := startLastStage(&cfg, stdio, tr)
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
	os.Exit(reapUntil(pid))
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

// startLastStage starts the moat binary again as the last stage, with the
// config on a pipe, and waits until it has executed the command (its
// failure pipe closes) or reported a failure.
func startLastStage(cfg *initConfig, stdio *os.File, tr *Trace) (int, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	failR, failW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{ExecArg},
		Env:        []string{},
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{cfgR, failW},
		// Its own session: no controlling terminal of moat's, so TIOCSTI
		// cannot reach the user's terminal; with a TTY, the new one.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: cfg.Spec.TTY, Ctty: 0},
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
