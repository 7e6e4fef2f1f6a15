package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The container tiers (internal/oci) run moat's binary as the container's
// process: ContainerInitArg is its first argument, ContainerEnvVar holds
// its ContainerConfig. It is PID 1 of the container, with no capabilities
// and the agent's uid: it serves the forwarder, dialling the run's Unix
// socket (ContainerSocket in the run directory) for each connection, then
// runs the last stage (no_new_privs, Landlock, moat's seccomp filter) on a
// thread of its own and forks the agent's command from it, as the native
// PID 1 does; then it reaps, forwards signals and exits with the
// command's status.
const (
	ContainerInitArg = "__moat_container_init"
	ContainerEnvVar  = "MOAT_CONTAINER_INIT"
	ContainerSocket  = "egress.sock"
)

// ContainerConfig is what the container's init reads.
type ContainerConfig struct {
	Spec   Spec
	Socket string // the egress socket's path inside the container
	// Nproc, when set, is the command's RLIMIT_NPROC (gVisor: the host's
	// pids cgroup holds gVisor's threads too).
	Nproc int64 `json:",omitempty"`
	// TTY: the init makes a pseudo-terminal of this size for the command
	// and sends its master to moat over the socket (TTYService).
	TTY     bool          `json:",omitempty"`
	Winsize *unix.Winsize `json:",omitempty"`
	// UserNS, when set, is the uid and gid the init and the command take
	// in a user namespace of their own that maps them onto the ids the
	// init starts with; Argv is the init's command line. gVisor's tiers
	// start the init as the workspace's owner (its gofer serves no
	// idmapped mounts), who may be root: in the namespace the command is
	// UserNS, still writes what the owner owns, and cannot become uid 0,
	// which is not mapped there. An init that already runs as UserNS
	// needs no namespace (and keeps an empty bounding set).
	UserNS int      `json:",omitempty"`
	Argv   []string `json:",omitempty"`
	// InUserNS tells the init that containerUserNS started it: the new
	// namespace filled the bounding set, and execve took the capability
	// (CAP_SETPCAP) that could empty it (gVisor 2022 has no ambient
	// capabilities to carry it across), so the last stage checks the
	// other sets only. With them empty, no_new_privs set and no uid 0 in
	// the namespace, no execve gains anything from it.
	InUserNS bool `json:",omitempty"`
}

// TTYService is the line the init sends before a pty master's fd;
// StartedService tells moat that the init runs (so a runtime that exits
// without it failed before the container started), and moat answers it.
const (
	TTYService     = "!tty"
	StartedService = "!started"
)

// ContainerInitEnv returns the NAME=VALUE variable that carries c to the
// container's init (JSON: no newline, so it fits Docker's --env-file).
func ContainerInitEnv(c ContainerConfig) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return ContainerEnvVar + "=" + string(b), nil
}

func isContainerInit() bool {
	return len(os.Args) > 1 && os.Args[1] == ContainerInitArg && os.Getenv(ContainerEnvVar) != ""
}

// containerFail reports a failed stage on standard error (the runtime
// gives the container moat's) and exits with code.
func containerFail(stage string, err error, code int) {
	fmt.Fprintf(os.Stderr, "moat: sandbox: %s: %v\n", stage, err)
	os.Exit(code)
}

// containerInit is the container's PID 1. It never returns.
func containerInit(began int64) {
	runtime.LockOSThread()
	thread := newCommandThread()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP)
	// The agent runs as the same uid: it must not read this process's
	// memory, environment or files through /proc, nor trace it.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// The runtime is this process's parent: if it dies (moat was killed
	// and took it along), so does the container.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	raw := os.Getenv(ContainerEnvVar)
	os.Unsetenv(ContainerEnvVar)
	var cfg ContainerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		containerFail("start", fmt.Errorf("read the config: %w", err), 125)
	}
	if cfg.UserNS != 0 && (os.Getuid() != cfg.UserNS || os.Getgid() != cfg.UserNS) {
		os.Exit(containerUserNS(cfg, sigs))
	}
	// The init may not be PID 1 (containerUserNS): its command's
	// orphans are its to reap.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	s := &cfg.Spec
	if err := containerLayers(s); err != nil {
		var se *StageError
		if errors.As(err, &se) {
			containerFail(se.Stage, se.Err, 125)
		}
		containerFail("start", err, 125)
	}
	notifyStarted(cfg.Socket)
	var stdio *os.File
	if cfg.TTY {
		f, err := sendPTY(cfg.Socket, cfg.Winsize)
		if err != nil {
			containerFail("tty", err, 125)
		}
		stdio = f
	}
	fw := &forwarder{dial: sockDial(cfg.Socket)}
	if s.Egress {
		if err := fw.listen(s); err != nil {
			containerFail("network", fmt.Errorf("%w (is loopback up? the runtime brings it up in the container's network namespace)", err), 125)
		}
	}
	ic := initConfig{Spec: *s}
	steps := containerSteps
	if cfg.InUserNS {
		steps = slices.Clone(steps)
		for i := range steps {
			if steps[i].name == "capabilities" {
				steps[i].fn = checkNoCapsUserNS
			}
		}
	}
	pid, err := containerFork(&ic, thread, steps, cfg.Nproc, stdio)
	if stdio != nil {
		stdio.Close()
	}
	if err != nil {
		var se *StageError
		if errors.As(err, &se) {
			containerFail(se.Stage, se.Err, se.Code)
		}
		containerFail("start", err, 125)
	}
	if s.Egress {
		fw.serve()
	}
	go func() {
		for sig := range sigs {
			unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	_ = began
	os.Exit(reapUntil(pid))
}

// containerUserNS runs the init again in a new user namespace in which
// its uid and gid are cfg.UserNS, mapped onto its own (one id each, which
// a process may map without capabilities; setgroups is denied, as the
// kernel requires then), then forwards signals to it, reaps and returns
// its status. The command's seccomp filter, loaded later, refuses a
// further user namespace.
func containerUserNS(cfg ContainerConfig, sigs <-chan os.Signal) int {
	id := cfg.UserNS
	argv := cfg.Argv
	cfg.UserNS, cfg.Argv, cfg.InUserNS = 0, nil, true
	if len(argv) == 0 {
		containerFail("user namespace", errors.New("the init's command line is missing"), 125)
	}
	env, err := ContainerInitEnv(cfg)
	if err != nil {
		containerFail("user namespace", err, 125)
	}
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Env: append(os.Environ(), env),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: id, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: id, HostID: os.Getgid(), Size: 1}},
		}}
	// The child's /proc files, its uid_map among them, belong to root
	// while this process is not dumpable: the owner who is not root
	// could not write the map. No agent runs yet.
	unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	err = cmd.Start()
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		containerFail("user namespace", fmt.Errorf("start the init in a user namespace mapping uid %d to %d: %w", id, os.Getuid(), err), 125)
	}
	pid := cmd.Process.Pid
	go func() {
		for sig := range sigs {
			unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	return reapUntil(pid)
}

// containerLayers refuses what the policy requires and this kernel (or
// gVisor's) lacks, as Start does for the native tier.
func containerLayers(s *Spec) error {
	h := probeLayers()
	required := map[string]bool{}
	for _, r := range s.Require {
		required[r] = true
	}
	var errs []error
	if h.LandlockABI == 0 {
		switch {
		case required["landlock"]:
			errs = append(errs, &StageError{Stage: "landlock", Code: 125, Err: fmt.Errorf("not available in this container (%s), which the policy requires (isolation.require); use --isolation=container on a kernel with Landlock", h.LandlockErr)})
		case len(s.Read) > 0:
			errs = append(errs, &StageError{Stage: "landlock", Code: 125, Err: fmt.Errorf("not available in this container (%s), and filesystem.read needs it; use --isolation=container on a kernel with Landlock, or remove filesystem.read", h.LandlockErr)})
		}
	}
	if !h.Seccomp && required["seccomp"] {
		errs = append(errs, &StageError{Stage: "seccomp", Code: 125, Err: fmt.Errorf("not available in this container (%s), which the policy requires (isolation.require)", h.SeccompErr)})
	}
	return errors.Join(errs...)
}

// containerSteps are the last stage's steps in a container: the runtime
// has emptied every capability set already (and without CAP_SETPCAP
// nothing could be dropped again), so the step checks that they are empty.
var containerSteps = []stage{
	{"rlimits", setRlimits},
	{"no_new_privs", setNoNewPrivs},
	{"capabilities", checkNoCaps},
	{"landlock", restrictPaths},
	{"seccomp", loadSeccomp},
}

// checkNoCaps fails unless the effective, permitted, inheritable and
// bounding sets are empty.
func checkNoCaps(*initConfig) error { return checkCaps(true) }

// checkNoCapsUserNS is checkNoCaps in containerUserNS's namespace, whose
// bounding set is full (see ContainerConfig.InUserNS). The ambient set
// is a subset of the permitted one, which must be empty.
func checkNoCapsUserNS(*initConfig) error { return checkCaps(false) }

func checkCaps(bounding bool) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return fmt.Errorf("the container's process has capabilities (%#x); the runtime did not drop them", d.Permitted)
		}
	}
	for c := 0; bounding && c < 64; c++ {
		v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			break // past the last capability
		}
		if v == 1 {
			return fmt.Errorf("capability %d is in the bounding set; the runtime did not drop it", c)
		}
	}
	return nil
}

// containerFork runs containerSteps on the init's command thread and
// forks the command from it (see forkCommand).
func containerFork(cfg *initConfig, thread chan<- func(), steps []stage, nproc int64, stdio *os.File) (int, error) {
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	thread <- func() {
		c := *cfg
		c.oneThread = true
		s := &c.Spec
		path, err := lookPath(s.Argv[0], s.Env)
		if err != nil {
			done <- result{err: &StageError{Stage: "exec", Err: err, Code: 127}}
			return
		}
		for _, st := range steps {
			if err := st.fn(&c); err != nil {
				done <- result{err: &StageError{Stage: st.name, Err: err, Code: 125}}
				return
			}
		}
		cmd := &exec.Cmd{Path: path, Args: s.Argv, Env: s.Env, Dir: s.Dir,
			Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
		if stdio != nil {
			cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio, stdio, stdio
			cmd.SysProcAttr.Setctty = true // fd 0: the pty's slave
		}
		if err := cmd.Start(); err != nil {
			code := 126
			if errors.Is(err, unix.ENOENT) {
				code = 127
			}
			done <- result{err: &StageError{Stage: "exec", Err: err, Code: code}}
			return
		}
		if nproc > 0 {
			// Set on the command alone: in the init, the limit would
			// count (and could starve) the init's own threads.
			lim := unix.Rlimit{Cur: uint64(nproc), Max: uint64(nproc)}
			if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NPROC, &lim, nil); err != nil {
				cmd.Process.Kill()
				done <- result{err: &StageError{Stage: "rlimits", Err: fmt.Errorf("RLIMIT_NPROC: %w", err), Code: 125}}
				return
			}
		}
		done <- result{pid: cmd.Process.Pid}
	}
	r := <-done
	return r.pid, r.err
}

// sockDial is the container forwarder's dial: a new connection to the
// run's Unix socket, which starts with one line naming the service (""
// for the proxy).
func sockDial(path string) func(string) (net.Conn, error) {
	return func(svc string) (net.Conn, error) {
		up, err := net.Dial("unix", path)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(up, svc+"\n"); err != nil {
			up.Close()
			return nil, err
		}
		return up, nil
	}
}

// ServeSocket accepts the container forwarder's connections on ln (the
// run's Unix socket) and hands each to the listener of the service its
// first line names: Accept for the proxy, Endpoint(name) for a reverse
// endpoint. So the proxy, the endpoints and the audit service are served
// exactly as for the native tier. It returns when ln is closed.
func (e *Egress) ServeSocket(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go e.route(c)
	}
}

// route reads the service line (byte by byte: what follows is the
// client's and stays in the connection) and queues c for it.
func (e *Egress) route(c net.Conn) {
	var line []byte
	var b [1]byte
	for {
		if _, err := c.Read(b[:]); err != nil || len(line) > 256 {
			c.Close()
			return
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	svc := strings.TrimSpace(string(line))
	if svc == StartedService {
		if fn, ok := containerStarted.Load(e); ok {
			fn.(func())()
		}
		io.WriteString(c, "ok\n")
		c.Close()
		return
	}
	if svc == TTYService {
		if t, ok := containerTTYs.Load(e); ok {
			t.(*ContainerTTY).receive(c)
		}
		c.Close()
		return
	}
	ch, done := e.ch, e.done
	if svc != "" {
		e.mu.Lock()
		l := e.endpoints[svc]
		e.mu.Unlock()
		if l == nil {
			c.Close()
			return
		}
		ch, done = l.ch, l.done
	}
	select {
	case ch <- c:
	case <-done:
		c.Close()
	case <-e.done:
		c.Close()
	}
}

// sendPTY makes the command's pseudo-terminal in the container's devpts
// and sends its master to moat; it returns the slave.
func sendPTY(socket string, ws *unix.Winsize) (*os.File, error) {
	master, slave, err := openPTY(ws)
	if errors.Is(err, unix.ENOTTY) {
		master, slave, err = openPTYByName(ws) // no TIOCGPTPEER (before Linux 4.13)
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(master)
	c, err := net.Dial("unix", socket)
	if err != nil {
		unix.Close(slave)
		return nil, err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if _, err := io.WriteString(uc, TTYService+"\n"); err != nil {
		unix.Close(slave)
		return nil, err
	}
	if _, _, err := uc.WriteMsgUnix([]byte{0}, unix.UnixRights(master), nil); err != nil {
		unix.Close(slave)
		return nil, err
	}
	return os.NewFile(uintptr(slave), "pty"), nil
}

// ContainerTTY relays a container's pseudo-terminal to the user's, as
// the native tier does: the init sends the master over the run's socket
// (Egress.SetTTY routes it here).
type ContainerTTY struct {
	relay    *ttyRelay
	mu       sync.Mutex
	attached bool
}

// NewContainerTTY prepares the relay; in and out are the user's terminal.
func NewContainerTTY(in, out *os.File) *ContainerTTY {
	r, _ := newTTY(in, out)
	return &ContainerTTY{relay: r}
}

// Winsize is the user's terminal's size, for the init's pty.
func (t *ContainerTTY) Winsize() *unix.Winsize { return t.relay.winsize() }

func (t *ContainerTTY) receive(c net.Conn) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := uc.ReadMsgUnix(make([]byte, 1), oob)
	if err != nil {
		return
	}
	cms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cms) != 1 {
		return
	}
	fds, err := unix.ParseUnixRights(&cms[0])
	if err != nil || len(fds) != 1 {
		return
	}
	t.attach(fds[0])
}

func (t *ContainerTTY) attach(fd int) {
	fds := []int{fd}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.attached {
		unix.Close(fds[0]) // one terminal a run
		return
	}
	t.attached = true
	t.relay.attach(fds[0])
	t.relay.start()
}

// Wait returns when the command's output has been relayed; Close then
// restores the user's terminal.
func (t *ContainerTTY) Wait() { t.relay.wait() }

// Close restores the user's terminal and releases the pty.
func (t *ContainerTTY) Close() { t.relay.close() }

// SetTTY routes the container's pty master to t.
func (e *Egress) SetTTY(t *ContainerTTY) {
	if t == nil {
		containerTTYs.Delete(e)
		return
	}
	containerTTYs.Store(e, t)
}

// containerTTYs holds each Egress's ContainerTTY (kept here, not in
// Egress, which the native tier owns).
var containerTTYs sync.Map

// openPTYByName is openPTY opening the slave by its name in /dev/pts.
func openPTYByName(ws *unix.Winsize) (master, slave int, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0)
	}
	if err == nil {
		slave, err = unix.Open("/dev/pts/"+strconv.Itoa(n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("open the pty's slave: %w", err)
	}
	if ws != nil {
		unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws)
	}
	return master, slave, nil
}

// notifyStarted tells moat that the init runs and waits for its answer,
// so the news is in before anything the command does. Without a socket
// (a runtime that moat does not run) there is nobody to tell.
func notifyStarted(socket string) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, StartedService+"\n"); err == nil {
		c.Read(make([]byte, 3))
	}
}

// OnStarted calls fn when the container's init reports that it runs.
// OnStarted(nil) forgets it.
func (e *Egress) OnStarted(fn func()) {
	if fn == nil {
		containerStarted.Delete(e)
		return
	}
	containerStarted.Store(e, fn)
}

var containerStarted sync.Map
