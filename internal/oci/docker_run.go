package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/sandbox"
)

// StartDocker runs the spec with the docker CLI: DockerArgs' files are
// written to a private directory, `docker run` is started with the
// caller's stdio, and the returned Running's Wait gives the container's
// exit status (docker run's own 125 when Docker could not start it, 126
// and 127 when the command could not be run or found). Signals are
// forwarded with docker kill. The container is removed when it ends, and
// when ctx is cancelled and it has not ended stopGrace later, it is
// stopped (SIGTERM, then SIGKILL two seconds later) and removed; the
// files are removed with it. Nothing is ever pulled. The spec's run directory and its socket are the caller's
// (RunDocker makes them).
func StartDocker(ctx context.Context, s *specs.Spec, o DockerOptions) (Running, error) {
	docker := o.Docker
	if docker == "" {
		docker = "docker"
	}
	bin, err := exec.LookPath(docker)
	if err != nil {
		return nil, fmt.Errorf("docker: the docker CLI %q: %w (install docker.io, or name it with DockerOptions.Docker)", docker, err)
	}
	o.Docker = bin
	info, err := daemonInfo(ctx, bin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "moat-docker-")
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	o.FilesDir = dir
	r, err := startDocker(ctx, s, o, info)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.cleanup = func() { os.RemoveAll(dir) }
	return r, nil
}

// startDocker checks the daemon against the spec, writes DockerArgs'
// files into o.FilesDir and starts the CLI (o.Docker, a path).
func startDocker(ctx context.Context, s *specs.Spec, o DockerOptions, info *dockerInfo) (*dockerRun, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := info.check(s, o, log); err != nil {
		return nil, &sandbox.StageError{Stage: "docker", Code: 125, Err: err}
	}
	if o.Name == "" {
		o.Name = "moat-" + randomSuffix()
	}
	args, files, err := DockerArgs(s, o)
	if err != nil {
		return nil, &sandbox.StageError{Stage: "docker", Code: 125, Err: err}
	}
	if err := writeFiles(o.FilesDir, files); err != nil {
		return nil, err
	}
	tty := o.TTY || s.Process.Terminal
	if !tty {
		// The CLI runs in a process group of its own, so a ^C reaches
		// only moat, which forwards it once (docker kill); with a
		// terminal the CLI must stay in the foreground group, and a ^C
		// is a byte it passes to the container's terminal.
		args = slices.Insert(args, 1, "--sig-proxy=false")
	}
	log.Debug("docker", "cli", o.Docker, "args", strings.Join(args, " "))
	cmd := exec.Command(o.Docker, args...)
	// A nil *os.File in an io.Reader would not be nil: set only the
	// ones given (the others are /dev/null).
	if o.Stdin != nil {
		cmd.Stdin = o.Stdin
	}
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	if !tty {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	r := &dockerRun{bin: o.Docker, name: o.Name, cmd: cmd, log: log, done: make(chan struct{})}
	go r.watch(ctx)
	return r, nil
}

// dockerRun is a running `docker run`.
type dockerRun struct {
	bin, name string
	cmd       *exec.Cmd
	log       *slog.Logger
	done      chan struct{} // closed when the CLI has exited
	cleanup   func()        // the run's files, socket and mounts
	cleaned   sync.Once
	removed   atomic.Bool // docker run --rm removed the container

	once   sync.Once
	status int
	err    error
}

// Wait waits for the container to end, removes it and the files, and
// returns its exit status.
func (r *dockerRun) Wait() (int, error) {
	r.once.Do(func() {
		err := r.cmd.Wait()
		close(r.done)
		st := r.cmd.ProcessState
		switch {
		case st == nil:
			r.status, r.err = 125, fmt.Errorf("docker: %w", err)
		case st.Exited():
			r.status = st.ExitCode()
			if r.status != 125 {
				// docker run --rm returned after the daemon removed the
				// container; 125 may leave a created one behind.
				r.removed.Store(true)
			}
		default:
			// The CLI itself was killed: the container may live on.
			ws, _ := st.Sys().(syscall.WaitStatus)
			r.status = 128 + int(ws.Signal())
			r.err = fmt.Errorf("docker: the docker CLI was killed by %v", ws.Signal())
		}
		r.remove()
	})
	return r.status, r.err
}

// Signal forwards sig to the container's init (moat's, which passes it
// on to the agent). A signal sent before Docker has created the container
// is retried until it exists or the CLI exits.
func (r *dockerRun) Signal(sig os.Signal) {
	n, ok := sig.(syscall.Signal)
	if !ok {
		return
	}
	go func() {
		for i := 0; i < 40; i++ {
			out, err := exec.Command(r.bin, "kill", "--signal", strconv.Itoa(int(n)), r.name).CombinedOutput()
			if err == nil {
				return
			}
			select {
			case <-r.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r.log.Debug("docker kill", "signal", n, "output", strings.TrimSpace(string(out)))
		}
	}()
}

// stopGrace is how long a cancelled run's container may take to end by
// itself (moat's SIGINT or SIGTERM is forwarded to it, as the native tier
// forwards it) before it is stopped.
const stopGrace = 10 * time.Second

// watch stops and removes the container when ctx is cancelled (moat is
// interrupted) and the container has not ended stopGrace later.
func (r *dockerRun) watch(ctx context.Context) {
	select {
	case <-r.done:
		return
	case <-ctx.Done():
	}
	select {
	case <-r.done:
	case <-time.After(stopGrace):
		r.log.Debug("docker: interrupted; stopping the container", "name", r.name)
		exec.Command(r.bin, "stop", "--time", "2", r.name).Run()
		r.remove()
	}
}

// remove removes the container (docker run --rm does it too, unless the
// CLI was killed) and the run's files.
func (r *dockerRun) remove() {
	r.cleaned.Do(func() {
		if !r.removed.Load() {
			out, err := exec.Command(r.bin, "rm", "--force", r.name).CombinedOutput()
			if err != nil && !strings.Contains(string(out), "No such container") && !strings.Contains(string(out), "already in progress") {
				r.log.Warn("docker: removing the container", "name", r.name, "error", strings.TrimSpace(string(out)))
			}
		}
		if r.cleanup != nil {
			r.cleanup()
		}
	})
}

// dockerInfo is what moat asks of the daemon.
type dockerInfo struct {
	SecurityOptions []string
	DockerRootDir   string
	Runtimes        map[string]struct {
		Path string   `json:"path"`
		Args []string `json:"runtimeArgs"`
	}
}

func daemonInfo(ctx context.Context, bin string) (*dockerInfo, error) {
	out, err := exec.CommandContext(ctx, bin, "info", "--format", "{{json .}}").Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("docker: the daemon does not answer (%s): start dockerd (moat's scripts/start-dockerd.sh starts one for its tests)", msg)
	}
	var info dockerInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("docker: docker info: %w", err)
	}
	return &info, nil
}

// remapBase is the first host id of the daemon's --userns-remap range
// (its root directory is DIR/UID.GID then), or -1 without remapping.
func (i *dockerInfo) remapBase() int {
	if !slices.ContainsFunc(i.SecurityOptions, func(o string) bool { return strings.Contains(o, "name=userns") }) {
		return -1
	}
	uid, _, ok := strings.Cut(filepath.Base(i.DockerRootDir), ".")
	n, err := strconv.Atoi(uid)
	if !ok || err != nil {
		return -1
	}
	return n
}

// gvisor reports whether the runtime is gVisor's.
func (i *dockerInfo) gvisor(runtime string) bool {
	if runtime == "" {
		return false
	}
	rt, ok := i.Runtimes[runtime]
	return runtime == "runsc" || ok && filepath.Base(rt.Path) == "runsc"
}

// hostID is the host identity of the container's id.
func (i *dockerInfo) hostID(id int) int {
	if b := i.remapBase(); b >= 0 {
		return b + id
	}
	return id
}

// check asks the daemon what the spec depends on: for a named runtime,
// that it is registered, with gVisor's flags for moat's socket
// (--host-uds=open) and its network (--network=none). It reports the daemon's user namespace remapping
// (--userns-remap), which docker run cannot ask for, and refuses when the
// policy requires a user namespace and the daemon has none.
func (i *dockerInfo) check(s *specs.Spec, o DockerOptions, log *slog.Logger) error {
	base := i.remapBase()
	log.Debug("docker daemon", "userns-remap", base >= 0, "agent host uid", i.hostID(AgentID))
	if base < 0 && slices.Contains(o.Require, "userns") {
		return errors.New("the policy requires a user namespace (isolation.require: userns) and the Docker daemon does not remap users: start dockerd with --userns-remap=default, or use --isolation container")
	}
	if o.Runtime == "" {
		return nil
	}
	rt, ok := i.Runtimes[o.Runtime]
	if !ok {
		names := make([]string, 0, len(i.Runtimes))
		for n := range i.Runtimes {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("the Docker daemon has no runtime %q (it has %s): register it in daemon.json's \"runtimes\"", o.Runtime, strings.Join(names, ", "))
	}
	if i.gvisor(o.Runtime) {
		var missing []string
		for _, f := range runscFlags(s) {
			if !slices.Contains(rt.Args, f) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the Docker daemon's runtime %q lacks %s in its runtimeArgs; moat needs them (gVisor's own network with loopback only, host sockets for its proxy): in daemon.json, \"runtimes\": {%q: {\"path\": %q, \"runtimeArgs\": [\"--network=none\", \"--host-uds=open\"]}}",
				o.Runtime, strings.Join(missing, " "), o.Runtime, rt.Path)
		}
	}
	return nil
}

// runscFlags are the gVisor flags a spec needs from the daemon's runtime
// registration (docker run cannot pass runtime flags). Not --oci-seccomp:
// runsc 2022 ignores a rule's errnoRet, so clone3's ENOSYS would become
// EPERM and no thread could start; gVisor's kernel is the boundary, and
// moat's own filter still binds the agent inside it (the gvisor tier
// runs the same way).
func runscFlags(s *specs.Spec) []string {
	f := []string{"--network=none"}
	for _, m := range s.Mounts {
		if m.Destination == RunPath {
			f = append(f, "--host-uds=open")
			break
		}
	}
	return f
}

// writeFiles writes DockerArgs' files into dir, all 0600.
func writeFiles(dir string, files map[string][]byte) error {
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return fmt.Errorf("docker: %w", err)
		}
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RunDocker runs the native tier's Spec under Docker, as Start runs it
// under an OCI runtime: it makes the run's private directory (the run
// directory with the egress socket, served by o.Egress, and DockerArgs'
// files), generates the spec for the image (Generate without HostRoot),
// and, when moat runs as root, gives each writable bind an idmapped view
// in which its owner is the agent's host identity (Docker cannot map ids
// per container; Start does the same for runc). Then as StartDocker.
func RunDocker(ctx context.Context, s *sandbox.Spec, o DockerOptions) (run Running, err error) {
	if s.Egress && o.Egress == nil {
		return nil, errors.New("docker: the spec wants egress but DockerOptions.Egress is nil")
	}
	exe := o.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	docker := o.Docker
	if docker == "" {
		docker = "docker"
	}
	bin, err := exec.LookPath(docker)
	if err != nil {
		return nil, &sandbox.StageError{Stage: "docker", Code: 125, Err: fmt.Errorf("the docker CLI %q: %w (install docker.io)", docker, err)}
	}
	o.Docker = bin
	info, err := daemonInfo(ctx, bin)
	if err != nil {
		return nil, &sandbox.StageError{Stage: "docker", Code: 125, Err: err}
	}
	dir, err := os.MkdirTemp("", "moat-docker-")
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	var attached []string
	cleanup := func() {
		if ln != nil {
			ln.Close()
		}
		detach(attached)
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	root := os.Geteuid() == 0
	// The daemon (root) mounts what is below; the container's processes
	// reach the run directory as the agent's host identity.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	gvisor := info.gvisor(o.Runtime)
	agentHost, agentGID := info.hostID(AgentID), info.hostID(AgentID)
	if gvisor {
		agentHost, agentGID = workspaceOwner(s)
	}
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		return nil, err
	}
	if root {
		if err := os.Chown(runDir, agentHost, agentGID); err != nil {
			return nil, err
		}
	}
	rs, err := GenerateDocker(s, exe, runDir, gvisor)
	if err != nil {
		return nil, err
	}
	if root && !gvisor {
		if attached, err = idmapBinds(rs, runDir, filepath.Join(dir, "m"), agentHost, exe); err != nil {
			return nil, &sandbox.StageError{Stage: "mounts", Code: 125, Err: err}
		}
	}
	if s.Egress {
		sock := filepath.Join(runDir, sandbox.ContainerSocket)
		if ln, err = net.Listen("unix", sock); err != nil {
			return nil, fmt.Errorf("docker: the run's socket: %w", err)
		}
		if root {
			if err := os.Chown(sock, agentHost, agentGID); err != nil {
				return nil, err
			}
		}
		go o.Egress.ServeSocket(ln)
	}
	o.Require = append(slices.Clone(o.Require), s.Require...)
	o.FilesDir = filepath.Join(dir, "files")
	if err := os.Mkdir(o.FilesDir, 0o700); err != nil {
		return nil, err
	}
	r, err := startDocker(ctx, rs, o, info)
	if err != nil {
		return nil, err
	}
	r.cleanup = cleanup
	if o.ForwardSignals {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		go func() {
			defer signal.Stop(sigs)
			for {
				select {
				case sig := <-sigs:
					r.Signal(sig)
				case <-r.done:
					return
				}
			}
		}()
	}
	return r, nil
}

// GenerateDocker is Generate for Docker: the image is the root, so the
// host's system directories are left out (moat's init starts through the
// host's loader and libraries bound at LibPath: the image need not have
// them), and the user namespace is the daemon's (--userns-remap), not
// the spec's. Under gVisor (the runtime
// runsc) the spec is shaped for it as in the gvisor tier (Start): the
// agent takes the workspace owner's ids (gVisor's gofer cannot serve
// idmapped mounts, and gVisor's kernel, not the host's, checks the ids),
// and the pids limit is the agent's RLIMIT_NPROC inside, the host's
// cgroup getting headroom for gVisor's own threads.
func GenerateDocker(s *sandbox.Spec, exe, runDir string, gvisor bool) (*specs.Spec, error) {
	rs, err := Generate(s, GenerateOptions{Exe: exe, RunDir: runDir, NoUserNamespace: true, GVisor: gvisor, BindLoader: true})
	if err != nil {
		return nil, err
	}
	if gvisor {
		uid, gid := workspaceOwner(s)
		rs.Process.User = specs.User{UID: uint32(uid), GID: uint32(gid)}
	}
	return rs, nil
}

// idmapBinds gives each writable bind of rs (but the run directory) whose
// source the agent's host identity does not own an idmapped view, attached
// below dir, in which the owner is that identity; the bind's source
// becomes the view. It returns the views attached (detach them).
func idmapBinds(rs *specs.Spec, runDir, dir string, agentHost int, exe string) (attached []string, err error) {
	views := map[string]string{}
	for i := range rs.Mounts {
		m := &rs.Mounts[i]
		if m.Type != "bind" || !slices.Contains(m.Options, "rw") || m.Source == runDir {
			continue
		}
		if v, ok := views[m.Source]; ok {
			m.Source = v
			continue
		}
		f, err := sandbox.IDMappedClone(m.Source, agentHost, agentHost, exe)
		if err != nil {
			return attached, err
		}
		if f == nil {
			continue
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		err = os.MkdirAll(dir, 0o711)
		if err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(m.Source); err == nil && fi.IsDir() {
				err = os.Mkdir(target, 0o700)
			} else if err == nil {
				err = os.WriteFile(target, nil, 0o600)
			}
		}
		if err == nil {
			err = unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
		}
		f.Close()
		if err != nil {
			return attached, fmt.Errorf("idmapped view of %s: %w", m.Source, err)
		}
		attached = append(attached, target)
		views[m.Source] = target
		m.Source = target
	}
	return attached, nil
}

func detach(mounts []string) {
	for _, m := range slices.Backward(mounts) {
		unix.Unmount(m, unix.MNT_DETACH)
	}
}
