package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ociStageArg runs the OCI runtime (runc, crun, runsc) in a private mount
// namespace in which the container's bind sources are first attached
// below the bundle (StagePlan): the runtime sets the container up as the
// container's root, a host uid that could not search the directories the
// sources live in (a 0700 temporary directory, a home), and the writable
// paths are attached as idmapped clones in which their owner appears as
// the agent's host uid (runc 1.1 has no idmapped mounts of its own).
// Everything staged goes with the namespace when the runtime exits.
const ociStageArg = "__moat_oci_stage"

// OCIStageArg is the argument a staged runtime is started with (the
// process's argv[0]); OCIStageEnv carries its StagePlan.
const (
	OCIStageArg = ociStageArg
	OCIStageEnv = "MOAT_OCI_STAGE"
)

// StagePlan is what the staging process attaches before it executes the
// runtime.
type StagePlan struct {
	Mounts []StageMount
	Path   string   // the runtime's binary
	Args   []string // its argv
	Env    []string
}

// StageMount attaches Source (or the mount passed as file descriptor FD,
// when FD > 0) at Target, recursive, nosuid and nodev, read-only if
// ReadOnly. Target exists (the bundle made it).
type StageMount struct {
	Source   string `json:",omitempty"`
	FD       int    `json:",omitempty"`
	Target   string
	ReadOnly bool `json:",omitempty"`
}

// ociStage is the staging process. It never returns.
func ociStage() {
	var plan StagePlan
	if err := json.Unmarshal([]byte(os.Getenv(OCIStageEnv)), &plan); err != nil {
		fmt.Fprintf(os.Stderr, "moat: sandbox: mounts: read the plan: %v\n", err)
		os.Exit(125)
	}
	for _, m := range plan.Mounts {
		if err := stageMount(m); err != nil {
			fmt.Fprintf(os.Stderr, "moat: sandbox: mounts: %v\n", err)
			os.Exit(125)
		}
	}
	err := unix.Exec(plan.Path, plan.Args, plan.Env)
	fmt.Fprintf(os.Stderr, "moat: sandbox: start the runtime %s: %v\n", plan.Path, err)
	os.Exit(125)
}

func stageMount(m StageMount) error {
	fd := m.FD
	what := fmt.Sprintf("mount %d", fd)
	if fd <= 0 {
		what = m.Source
		var err error
		fd, err = unix.OpenTree(unix.AT_FDCWD, m.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("open_tree %s: %w", m.Source, err)
		}
	}
	defer unix.Close(fd)
	attr := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if m.ReadOnly {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr}); err != nil {
		return fmt.Errorf("%s: set nosuid,nodev: %w", what, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, m.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s at %s: %w", what, filepath.Base(m.Target), err)
	}
	return nil
}

// IDMappedClone returns a detached, recursive clone of path's mount tree
// in which path's owner appears as hostUID:hostGID (the agent's host
// identity), for a container's writable bind; nil when that identity owns
// path already. exe is the moat binary (it starts the helper that holds
// the mapping's user namespace).
func IDMappedClone(path string, hostUID, hostGID int, exe string) (*os.File, error) {
	fds, _, err := idmapWrites([]string{path}, hostUID, hostGID, exe)
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	if len(fds) == 0 {
		return nil, nil
	}
	return os.NewFile(uintptr(fds[0]), "idmapped "+path), nil
}

// IDMappedRangeClone returns a detached, recursive clone of path's mount
// tree in which the ids 0…size-1 on disk appear as hostBase… (an image's
// root filesystem, owned by its root, becomes the container root's).
func IDMappedRangeClone(path string, hostBase, size int, exe string) (*os.File, error) {
	in, out, err := os.Pipe() // the helper exits when out is closed
	if err != nil {
		return nil, err
	}
	defer in.Close()
	defer out.Close()
	p, err := os.StartProcess(exe, []string{usernsArg}, &os.ProcAttr{Env: []string{}, Files: []*os.File{in},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostBase, Size: size}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostBase, Size: size}},
			Pdeathsig:   syscall.SIGKILL,
		}})
	if err != nil {
		return nil, fmt.Errorf("user namespace helper: %w", err)
	}
	ns, err := unix.Open("/proc/"+strconv.Itoa(p.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	p.Kill()
	p.Wait()
	if err != nil {
		return nil, fmt.Errorf("user namespace helper: %w", err)
	}
	defer unix.Close(ns)
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", path, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(ns)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("idmapped mount of %s: %w; the filesystem may not support idmapped mounts", path, err)
	}
	return os.NewFile(uintptr(fd), "idmapped "+path), nil
}
