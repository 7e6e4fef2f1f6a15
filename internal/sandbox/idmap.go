package sandbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// idmapWrites returns, for each writable path that the agent's host
// identity does not own, a detached idmapped copy of its mount tree in
// which the path's owner appears as that identity: the agent writes the
// workspace without chown, and what it creates belongs on disk to the
// workspace's owner. idx says which Write entry each fd is for.
func idmapWrites(writes []string, hostUID, hostGID int, exe string) (fds, idx []int, err error) {
	userns := map[[2]int]int{} // (uid, gid) on disk → user namespace fd
	defer func() {
		for _, fd := range userns {
			unix.Close(fd)
		}
	}()
	for i, w := range writes {
		var st unix.Stat_t
		if err := unix.Stat(w, &st); err != nil {
			return fds, idx, fmt.Errorf("stat %s: %w", w, err)
		}
		if int(st.Uid) == hostUID && int(st.Gid) == hostGID {
			continue
		}
		key := [2]int{int(st.Uid), int(st.Gid)}
		ns, ok := userns[key]
		if !ok {
			ns, err = mappingNamespace(exe, key[0], key[1], hostUID, hostGID)
			if err != nil {
				return fds, idx, fmt.Errorf("idmapped mount of %s: %w", w, err)
			}
			userns[key] = ns
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, w, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fds, idx, fmt.Errorf("open_tree %s: %w", w, err)
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(ns)}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			unix.Close(fd)
			return fds, idx, fmt.Errorf("idmapped mount of %s (owner %d): %w; the filesystem may not support idmapped mounts (kernel 5.12+, ext4/xfs/btrfs/tmpfs 6.3+): run moat as the workspace's owner instead of root", w, st.Uid, err)
		}
		fds = append(fds, fd)
		idx = append(idx, i)
	}
	return fds, idx, nil
}

// mappingNamespace returns a user namespace in which uid:gid are mapped
// to hostUID:hostGID, held open by an fd. A helper process creates it (a
// multi-threaded Go program cannot unshare a user namespace) and is
// killed once the fd is open. The helper asks to be traced, so it stops
// at its first instruction after execve: it runs no code at all, and
// costs a fork and an exec, not a Go runtime's start. Where ptrace is
// forbidden (Yama's ptrace_scope 3), it runs usernsHelper instead.
func mappingNamespace(exe string, uid, gid, hostUID, hostGID int) (int, error) {
	attr := &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: hostUID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: hostGID, Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
		Ptrace:      true,
	}
	// The tracer is this thread: it stays locked until the helper is
	// reaped (and Pdeathsig follows it, see Start).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	in, out, err := os.Pipe() // the untraced helper exits when out is closed
	if err != nil {
		return -1, err
	}
	defer in.Close()
	defer out.Close()
	p, err := os.StartProcess(exe, []string{usernsArg}, &os.ProcAttr{Env: []string{}, Files: []*os.File{in}, Sys: attr})
	if errors.Is(err, unix.EPERM) {
		attr.Ptrace = false
		p, err = os.StartProcess(exe, []string{usernsArg}, &os.ProcAttr{Env: []string{}, Files: []*os.File{in}, Sys: attr})
	}
	if err != nil {
		return -1, fmt.Errorf("user namespace helper: %w", err)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(p.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	p.Kill()
	p.Wait()
	if err != nil {
		return -1, fmt.Errorf("user namespace helper: %w", err)
	}
	return fd, nil
}

// usernsHelper is the untraced helper's whole life: wait for the parent
// to close standard input.
func usernsHelper() {
	var b [1]byte
	os.Stdin.Read(b[:])
	os.Exit(0)
}
