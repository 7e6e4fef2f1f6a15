package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"
)

// stagingDir is where PID 1 assembles the new root before pivoting into
// it; a private tmpfs is mounted on it first.
const stagingDir = "/tmp"

// buildRoot builds the sandbox's mount tree and pivots into it, in this
// order (later mounts cover earlier ones):
//
//  1. detached copies of the writable paths and of the host's root (which
//     is made read-only, nosuid and nodev), taken before anything hides
//     their sources;
//  2. the root copy attached on a private staging tmpfs;
//  3. a fresh /proc (this is PID 1 of a new PID namespace), a minimal /dev,
//     the private tmpfs mounts (/tmp);
//  4. the writable paths, shallowest first;
//  5. pins (directories above protected paths, bound onto themselves so
//     they cannot be renamed away), then the protected paths read-only;
//  6. deny_read masks: an empty read-only tmpfs over directories,
//     /dev/null over files;
//  7. pivot_root into it, the old root detached; chdir to the workspace.
func buildRoot(s *Spec, idmapped map[int]int) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	writeFDs := make([]int, len(s.Write))
	for i, w := range s.Write {
		if fd, ok := idmapped[i]; ok {
			writeFDs[i] = fd
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, w, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("open_tree %s: %w", w, err)
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
			&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}); err != nil {
			return fmt.Errorf("nosuid,nodev on %s: %w", w, err)
		}
		writeFDs[i] = fd
	}
	rootFD, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree /: %w", err)
	}
	if err := unix.MountSetattr(rootFD, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}); err != nil {
		return fmt.Errorf("make the root read-only: %w", err)
	}
	nullFD, err := unix.OpenTree(unix.AT_FDCWD, "/dev/null", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree /dev/null: %w", err)
	}

	if err := unix.Mount("moat-staging", stagingDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64k"); err != nil {
		return fmt.Errorf("staging tmpfs on %s: %w", stagingDir, err)
	}
	r := filepath.Join(stagingDir, "root")
	if err := os.Mkdir(r, 0o700); err != nil {
		return err
	}
	if err := unix.MoveMount(rootFD, "", unix.AT_FDCWD, r, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the root copy: %w", err)
	}
	unix.Close(rootFD)
	at := func(p string) string { return filepath.Join(r, p) }

	if err := unix.Mount("proc", at("/proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount a fresh /proc: %w", err)
	}
	if err := mountDev(at("/dev")); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	for _, t := range s.Tmpfs {
		if err := unix.Mount("tmpfs", at(t.Path), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
			"mode=1777,size="+strconv.FormatInt(t.Size, 10)); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", t.Path, err)
		}
	}

	order := make([]int, len(s.Write))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(s.Write[order[a]]) < len(s.Write[order[b]]) })
	for _, i := range order {
		w := s.Write[i]
		var st unix.Stat_t
		if err := unix.Fstat(writeFDs[i], &st); err != nil {
			return fmt.Errorf("writable %s: %w", w, err)
		}
		if err := ensureMountPoint(at(w), st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return fmt.Errorf("writable %s: %w", w, err)
		}
		if err := unix.MoveMount(writeFDs[i], "", unix.AT_FDCWD, at(w), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("bind %s writable: %w", w, err)
		}
		unix.Close(writeFDs[i])
	}
	if err := mountWorkspace(s, at); err != nil {
		return err
	}
	// A pin or protection whose path was removed since Compile listed it
	// (another process's directory in a shared writable /var/tmp, say) is
	// skipped: the run is then as if it had been absent at Compile.
	for _, p := range s.Pin {
		if err := rebind(at(p), 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("pin %s: %w", p, err)
		}
	}
	for _, p := range s.Protect {
		if err := rebind(at(p), unix.MOUNT_ATTR_RDONLY); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("protect %s: %w", p, err)
		}
	}
	for _, d := range s.MaskDirs {
		if _, err := os.Stat(at(d)); err != nil {
			continue // hidden already (under a private tmpfs)
		}
		if err := unix.Mount("moat-masked", at(d), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0555,size=4k"); err != nil {
			return fmt.Errorf("mask %s: %w", d, err)
		}
	}
	for _, f := range s.MaskFiles {
		if _, err := os.Stat(at(f)); err != nil {
			continue
		}
		fd, err := unix.OpenTree(nullFD, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
		if err != nil {
			return fmt.Errorf("mask %s: %w", f, err)
		}
		err = unix.MoveMount(fd, "", unix.AT_FDCWD, at(f), unix.MOVE_MOUNT_F_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mask %s: %w", f, err)
		}
	}
	unix.Close(nullFD)
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}

	if err := unix.Chdir(r); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Chdir(s.Dir); err != nil {
		if errors.Is(err, unix.EACCES) {
			return fmt.Errorf("the working directory %s is not reachable by the sandbox's unprivileged identity: a directory above it is not searchable by others; chmod o+x it, or run from a workspace outside it", s.Dir)
		}
		return fmt.Errorf("working directory %s: %w", s.Dir, err)
	}
	return nil
}

// mountDev makes a minimal /dev: the harmless character devices bound from
// the host, a private devpts (ptys the agent makes stay its own), /dev/shm.
func mountDev(dev string) error {
	if err := unix.Mount("moat-dev", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, n)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, "/dev/"+n, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("open_tree /dev/%s: %w", n, err)
		}
		err = unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("devpts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("/dev/shm: %w", err)
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return unix.MountSetattr(unix.AT_FDCWD, dev, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
}

// ensureMountPoint makes sure p exists (as a directory, or a file); it
// can only create it on a tmpfs (the root is read-only).
func ensureMountPoint(p string, dir bool) error {
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, nil, 0o644)
}

// rebind binds p onto itself with attrs set (read-only, or none: a pin).
func rebind(p string, attrs uint64) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if attrs != 0 {
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attrs}); err != nil {
			return err
		}
	}
	return unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
}
