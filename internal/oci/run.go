package oci

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/sandbox"
)

// Running is a started container of any tier.
type Running interface {
	Wait() (int, error)
	Signal(os.Signal)
}

// Options says how Start runs the container.
type Options struct {
	Runtime Runtime
	// Exe is moat's binary on the host: bound into the container as its
	// init, and run as the runtime's staging process. "" = this process's.
	Exe string
	// Image is a root filesystem: a directory or a tar archive (unpacked
	// into the run's private directory). "" = a read-only view of the
	// host's system directories.
	Image string
	// Sources: see GenerateOptions.Sources.
	Sources               map[string]string
	Stdin, Stdout, Stderr *os.File
	// Egress receives the agent's proxy and endpoint connections (Spec.Egress).
	Egress         *sandbox.Egress
	ForwardSignals bool
	// TTY gives the command a new pseudo-terminal, relayed to Stdin and
	// Stdout (a terminal) as the native tier does.
	TTY bool
	Log *slog.Logger
}

// Container is a started container: the runtime's process.
type Container struct {
	rt      Runtime
	dir     string // the run's private directory: bundle, state, run directory
	id      string
	cmd     *exec.Cmd
	ln      net.Listener
	tty     *sandbox.ContainerTTY
	egress  *sandbox.Egress
	started atomic.Bool     // the init reported that it runs
	eg      *sandbox.Egress // the one the socket serves
	sigs    chan os.Signal
	waitc   chan error
	once    sync.Once
	status  int
	err     error
}

// Start writes a bundle for s, runs it with the runtime and returns once
// the runtime has started. Every layer is the runtime's or moat's init's
// to enforce; what it cannot provide fails the start (the runtime's or the
// init's message on Stderr, exit status 125 or the runtime's).
func Start(s *sandbox.Spec, o Options) (c *Container, err error) {
	if o.Runtime.Path == "" {
		return nil, errors.New("no runtime")
	}
	if s.Egress && o.Egress == nil {
		return nil, errors.New("the spec wants egress but Options.Egress is nil")
	}
	if os.Geteuid() != 0 {
		return nil, &sandbox.StageError{Stage: "container", Code: 125, Err: errors.New("the container tiers run the OCI runtime as root (the user namespace maps the container onto host ids 100000-165535); run moat as root, or use the native tier")}
	}
	exe := o.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	var b [8]byte
	rand.Read(b[:])
	c = &Container{rt: o.Runtime, id: "moat-" + hex.EncodeToString(b[:]), waitc: make(chan error, 1)}
	self := c
	defer func() {
		if err != nil {
			self.cleanup()
		}
	}()
	sweepStale()
	if c.dir, err = os.MkdirTemp("", "moat-oci-"); err != nil {
		return nil, err
	}
	// Who owns the run: a later run removes what a killed moat left.
	owner := fmt.Sprintf("%d %s %s %s\n", os.Getpid(), procStart(os.Getpid()), o.Runtime.Path, c.id)
	if err := os.WriteFile(filepath.Join(c.dir, "owner"), []byte(owner), 0o600); err != nil {
		return nil, err
	}
	// The container's root (host uid HostIDBase) sets the container up:
	// it must search the bundle (not list it) to reach the staged mounts.
	if err := os.Chmod(c.dir, 0o711); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(c.dir, "rootfs")
	runDir := filepath.Join(c.dir, "run")
	state := filepath.Join(c.dir, "state")
	for _, d := range []string{rootfs, runDir, state, filepath.Join(c.dir, "m")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	// The agent's and the container root's host identities: gVisor's
	// are its own kernel's, in no user namespace of the host's.
	gvisor := o.Runtime.Name == "runsc"
	agentHost, rootHost := HostIDBase+AgentID, HostIDBase
	agentGID := agentHost
	if gvisor {
		// gVisor's gofer cannot serve idmapped mounts (their ids are
		// not its own): the agent takes the workspace owner's ids
		// instead, which gVisor's kernel, not the host's, checks.
		agentHost, agentGID = workspaceOwner(s)
		rootHost = 0
	}
	if err := chownMode(rootfs, rootHost, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(c.dir, "m"), 0o711); err != nil {
		return nil, err
	}
	// Only the agent's identity (the init's) may connect to the socket.
	if err := chownIDs(runDir, agentHost, agentGID, 0o700); err != nil {
		return nil, err
	}
	var imageFD *os.File
	if o.Image != "" {
		if imageFD, err = prepareImage(o.Image, c.dir, exe, !gvisor); err != nil {
			return nil, &sandbox.StageError{Stage: "image", Code: 125, Err: err}
		}
		defer imageFD.Close()
	}

	var winsize *unix.Winsize
	if o.TTY {
		c.tty = sandbox.NewContainerTTY(o.Stdin, o.Stdout)
		winsize = c.tty.Winsize()
	}
	rs, err := Generate(s, GenerateOptions{TTY: o.TTY, Winsize: winsize, HostRoot: o.Image == "", Rootfs: rootfs, Exe: exe, RunDir: runDir, ID: c.id, Sources: o.Sources, GVisor: gvisor, BindLoader: o.Image != ""})
	if err != nil {
		return nil, err
	}
	if gvisor {
		rs.Process.User = specs.User{UID: uint32(agentHost), GID: uint32(agentGID)}
	}
	plan, files, err := stage(rs, c.dir, exe, agentHost, !gvisor)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return nil, &sandbox.StageError{Stage: "mounts", Code: 125, Err: err}
	}
	if imageFD != nil {
		files = append(files, imageFD)
		plan.Mounts = append([]sandbox.StageMount{{FD: 2 + len(files), Target: rootfs}}, plan.Mounts...)
	}
	cfg, err := json.MarshalIndent(rs, "", "\t")
	if err != nil {
		return nil, err
	}
	// config.json holds the agent's environment (the proxy token): 0600.
	if err := os.WriteFile(filepath.Join(c.dir, "config.json"), cfg, 0o600); err != nil {
		return nil, err
	}
	eg := o.Egress
	if eg == nil {
		eg = sandbox.NewEgress() // for the terminal and the start report: nothing serves its Accept
		c.egress = eg
	}
	eg.OnStarted(func() { c.started.Store(true) })
	c.eg = eg
	if c.tty != nil {
		eg.SetTTY(c.tty)
	}
	{
		sock := filepath.Join(runDir, sandbox.ContainerSocket)
		if c.ln, err = net.Listen("unix", sock); err != nil {
			return nil, fmt.Errorf("the run's socket: %w", err)
		}
		if err := chownIDs(sock, agentHost, agentGID, 0o600); err != nil {
			return nil, err
		}
		go eg.ServeSocket(c.ln)
	}
	plan.Path = o.Runtime.Path
	plan.Args = o.Runtime.args(state, c.dir, c.id)
	plan.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	pj, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	stdin, stdout, stderr := o.Stdin, o.Stdout, o.Stderr
	if o.TTY {
		// The init makes the command's terminal; nothing inside gets
		// the user's.
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer devnull.Close()
		stdin, stdout = devnull, devnull
	}
	c.cmd = &exec.Cmd{
		Path:       exe,
		Args:       []string{sandbox.OCIStageArg},
		Env:        []string{sandbox.OCIStageEnv + "=" + string(pj)},
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Unshareflags: unix.CLONE_NEWNS, // the staged mounts are the runtime's alone
			Pdeathsig:    syscall.SIGKILL,
		},
	}
	if o.ForwardSignals {
		c.sigs = make(chan os.Signal, 8)
		signal.Notify(c.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	}
	// Pdeathsig follows the thread that started the process: one that
	// lives until the runtime is reaped.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitc <- c.cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, &sandbox.StageError{Stage: "container", Code: 125, Err: fmt.Errorf("start %s: %w", o.Runtime.Name, err)}
	}
	if sigs := c.sigs; sigs != nil {
		go func() {
			for sig := range sigs {
				c.Signal(sig)
			}
		}()
	}
	return c, nil
}

// Signal sends sig to the runtime, which passes it to the container's
// init, which passes it to the command.
func (c *Container) Signal(sig os.Signal) {
	if c.rt.Name == "runsc" {
		// runsc run does not pass signals on (it dies of SIGTERM):
		// runsc kill delivers it to the container's init.
		if n, ok := sig.(syscall.Signal); ok {
			exec.Command(c.rt.Path, "--root", filepath.Join(c.dir, "state"), "kill", c.id, strconv.Itoa(int(n))).Run()
		}
		return
	}
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(sig)
	}
}

// Wait waits for the container and returns the command's exit status;
// the container, its cgroups and the run's directory are then gone.
func (c *Container) Wait() (int, error) {
	c.once.Do(func() {
		err := <-c.waitc
		c.status = exitStatus(c.cmd.ProcessState)
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			c.err = err
		}
		if c.tty != nil {
			c.tty.Wait()
		}
		if !c.started.Load() && c.err == nil && c.status != 0 {
			// The runtime failed before the container's init ran (its
			// message is on Stderr): the sandbox's status, not the
			// command's.
			c.err = &sandbox.StageError{Stage: c.rt.Name, Code: 125, Err: fmt.Errorf("the runtime exited with status %d before the container started", c.status)}
			c.status = 125
		}
		c.cleanup()
	})
	return c.status, c.err
}

func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// cleanup deletes the container (its state and cgroups; a no-op when the
// runtime did it) and the run's directory.
func (c *Container) cleanup() {
	if c.sigs != nil {
		signal.Stop(c.sigs)
		close(c.sigs)
		c.sigs = nil
	}
	if c.cmd != nil && c.cmd.Process != nil && c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		<-c.waitc
	}
	if c.ln != nil {
		c.ln.Close()
	}
	if c.tty != nil {
		c.tty.Close()
	}
	if c.eg != nil {
		c.eg.OnStarted(nil)
		c.eg.SetTTY(nil)
	}
	if c.egress != nil {
		c.egress.Close()
	}
	if c.dir == "" {
		return
	}
	if c.cmd != nil {
		state := filepath.Join(c.dir, "state")
		exec.Command(c.rt.Path, "--root", state, "delete", "--force", c.id).Run()
	}
	os.RemoveAll(c.dir)
}

func chownMode(p string, id, mode int) error { return chownIDs(p, id, id, mode) }

func chownIDs(p string, uid, gid, mode int) error {
	if err := os.Chown(p, uid, gid); err != nil {
		return err
	}
	return os.Chmod(p, os.FileMode(mode))
}

// stage rewrites each bind mount's source to a path below dir/m that the
// staging process attaches before it runs the runtime (see
// sandbox.StagePlan): the writable ones as idmapped clones in which their
// owner is the agent's host identity. files are the clones, passed to
// the staging process from fd 3 on.
func stage(rs *specs.Spec, dir, exe string, agentHost int, idmap bool) (plan sandbox.StagePlan, files []*os.File, err error) {
	for i := range rs.Mounts {
		m := &rs.Mounts[i]
		if m.Type != "bind" || m.Source == "/dev/null" {
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return plan, files, fmt.Errorf("%s: %w", m.Destination, err)
		}
		target := filepath.Join(dir, "m", strconv.Itoa(i))
		if fi.IsDir() {
			err = os.Mkdir(target, 0o700)
		} else {
			err = os.WriteFile(target, nil, 0o600)
		}
		if err != nil {
			return plan, files, err
		}
		sm := sandbox.StageMount{Source: m.Source, Target: target, ReadOnly: slices.Contains(m.Options, "ro")}
		if !sm.ReadOnly && idmap {
			f, err := sandbox.IDMappedClone(m.Source, agentHost, agentHost, exe)
			if err != nil {
				return plan, files, fmt.Errorf("%s: %w", m.Destination, err)
			}
			if f != nil {
				files = append(files, f)
				sm = sandbox.StageMount{FD: 2 + len(files), Target: target}
			}
		}
		plan.Mounts = append(plan.Mounts, sm)
		m.Source = target
	}
	return plan, files, nil
}

// workspaceOwner is the owner of the working directory when it is
// writable, else of the first writable path, else AgentID.
func workspaceOwner(s *sandbox.Spec) (uid, gid int) {
	paths := s.Write
	if covered(s.Dir, s.Write) {
		paths = append([]string{s.Dir}, paths...)
	}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			return int(st.Uid), int(st.Gid)
		}
	}
	return AgentID, AgentID
}

// procStart is a process's start time (field 22 of /proc/PID/stat), so a
// reused pid is not taken for the owner.
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// sweepStale deletes the containers and run directories of moat runs that
// were killed before they could clean up (their owner is gone).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "moat-oci-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue // not yet written, or not ours
		}
		f := strings.Fields(string(b))
		if len(f) != 4 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || procStart(pid) == f[1] {
			continue // still running
		}
		exec.Command(f[2], "--root", filepath.Join(d, "state"), "delete", "--force", f[3]).Run()
		os.RemoveAll(d)
	}
}
