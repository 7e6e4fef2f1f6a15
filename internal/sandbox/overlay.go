package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Workspace modes other than a plain writable bind (WorkspaceMount.Mode).
const (
	WorkspaceOverlay  = "overlay"  // overlayfs: lower = the workspace, writes in Upper
	WorkspaceBind     = "bind"     // Source (a staged copy) bound read-write at Path
	WorkspaceReadOnly = "readonly" // the workspace bound read-only
	WorkspaceTmpfs    = "tmpfs"    // an empty tmpfs (noexec), nothing persists
)

// WorkspaceMount is how the working directory is mounted when it is not
// one of the writable paths. It is mounted after the writable paths and
// before the pins, protections and masks, which therefore apply to it.
type WorkspaceMount struct {
	Mode string
	Path string // the workspace, as the agent sees it (absolute)
	// Overlay: Lower is the host directory seen through (the workspace
	// itself); Layers is a host directory holding "upper" and "work" (on
	// one file system, as overlayfs wants).
	Lower, Layers string
	Source        string // bind: the host directory bound at Path
	Size          int64  // tmpfs: bytes
}

// Bind is a dedicated host directory bound read-write at Target
// (filesystem.volumes).
type Bind struct {
	Source, Target string
}

// sources lists the host directories PID 1 mounts from, in the order
// their fds are sent (as root) or their paths opened (otherwise).
func (s *Spec) sources() []string {
	var out []string
	if w := s.Workspace; w != nil {
		switch w.Mode {
		case WorkspaceOverlay:
			out = append(out, w.Lower, w.Layers)
		case WorkspaceBind:
			out = append(out, w.Source)
		}
	}
	for _, b := range s.Binds {
		out = append(out, b.Source)
	}
	return out
}

// writableMounts lists the paths the workspace and the volumes make
// writable, for Landlock.
func (s *Spec) writableMounts() []string {
	var out []string
	if w := s.Workspace; w != nil && w.Mode != WorkspaceReadOnly {
		out = append(out, w.Path)
	}
	for _, b := range s.Binds {
		out = append(out, b.Target)
	}
	return out
}

// SetWorkspace makes the working directory mounted as w says instead of
// as a writable path: it leaves the writable paths (keeping what Compile
// found to protect and mask in it), drops the writable paths inside it
// (returned, for a note), and pins the directories above it inside a
// writable path, so that it cannot be renamed away.
func (s *Spec) SetWorkspace(w WorkspaceMount) (dropped []string) {
	w.Path = filepath.Clean(w.Path)
	var keep []string
	for _, p := range s.Write {
		switch {
		case p == w.Path:
		case strings.HasPrefix(p, w.Path+"/"):
			dropped = append(dropped, p)
		default:
			keep = append(keep, p)
		}
	}
	s.Write = keep
	if root := under(w.Path, s.Write); root != "" {
		for d := filepath.Dir(w.Path); len(d) > len(root) && strings.HasPrefix(d, root+"/"); d = filepath.Dir(d) {
			s.Pin = appendUnique(s.Pin, d)
		}
	}
	if w.Mode == WorkspaceTmpfs {
		// Nothing of the workspace is there: its protections and masks
		// would only make mount points in the empty tmpfs.
		s.Protect, s.Pin = without(s.Protect, w.Path), without(s.Pin, w.Path)
		s.MaskDirs, s.MaskFiles = without(s.MaskDirs, w.Path), without(s.MaskFiles, w.Path)
	}
	s.Workspace = &w
	return dropped
}

// without returns list without the paths at or below dir.
func without(list []string, dir string) []string {
	var out []string
	for _, p := range list {
		if p != dir && !strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// AddVolume binds the host directory src at dst, read-write, after
// checking that it is kept apart from what must stay out of the agent's
// reach: the home directory's dot-directories, the workspace's .git, the
// protected and the masked paths. home may be "". src is created (0700)
// if missing; dst must exist or lie in a tmpfs.
func (s *Spec) AddVolume(src, dst, home string) error {
	if !filepath.IsAbs(src) || !filepath.IsAbs(dst) {
		return fmt.Errorf("volume %s:%s: both paths must be absolute", src, dst)
	}
	if err := os.MkdirAll(src, 0o700); err != nil {
		return fmt.Errorf("volume %s: %w", src, err)
	}
	r, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("volume %s: %w", src, err)
	}
	if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
		return fmt.Errorf("volume %s: not a directory", src)
	}
	dst = filepath.Clean(dst)
	overlaps := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/") || a == "/" || b == "/"
	}
	type sensitive struct{ path, why string }
	var list []sensitive
	if home != "" {
		if es, err := os.ReadDir(home); err == nil {
			for _, e := range es {
				if strings.HasPrefix(e.Name(), ".") {
					list = append(list, sensitive{filepath.Join(home, e.Name()), "a dot-directory or dot-file of the home directory"})
				}
			}
		}
		// Sessions and other moat state live there: a volume there would
		// let the agent edit a session it is then asked to apply.
		list = append(list, sensitive{filepath.Join(home, ".local"), "moat's state"})
	}
	ws := s.Dir
	if s.Workspace != nil {
		ws = s.Workspace.Path
	}
	list = append(list, sensitive{filepath.Join(ws, ".git"), "the workspace's .git"})
	for _, p := range s.Protect {
		list = append(list, sensitive{p, "a protected path"})
	}
	for _, p := range append(append([]string(nil), s.MaskDirs...), s.MaskFiles...) {
		list = append(list, sensitive{p, "a path filesystem.deny_read masks"})
	}
	for _, x := range list {
		if overlaps(r, x.path) {
			return fmt.Errorf("volume %s: overlaps %s (%s); pick a directory of its own", src, x.path, x.why)
		}
		if overlaps(dst, x.path) {
			return fmt.Errorf("volume %s:%s: the inside path overlaps %s (%s); pick another", src, dst, x.path, x.why)
		}
	}
	if found, _ := findProtected([]string{r}); len(found) > 0 {
		return fmt.Errorf("volume %s: holds %s, which must stay read-only; pick a directory of its own", src, found[0])
	}
	if overlaps(dst, ws) {
		return fmt.Errorf("volume %s:%s: the inside path overlaps the workspace %s; pick another", src, dst, ws)
	}
	s.Binds = append(s.Binds, Bind{Source: r, Target: dst})
	return nil
}

// sourceFDs returns, as root, a detached copy of each of the spec's
// source directories: idmapped (as idmapWrites does) when the agent's
// host identity does not own it, so that the agent writes it without
// chown and PID 1 reaches it whatever the modes of the directories above.
func sourceFDs(s *Spec, hostUID, hostGID int, exe string) ([]int, error) {
	srcs := s.sources()
	if len(srcs) == 0 {
		return nil, nil
	}
	// One call for all: sources with the same owner share a namespace
	// (one helper process).
	mapped, idx, err := idmapWrites(srcs, hostUID, hostGID, exe)
	if err != nil {
		closeAll(mapped)
		return nil, err
	}
	fds := make([]int, len(srcs))
	for i := range fds {
		fds[i] = -1
	}
	for j, i := range idx {
		fds[i] = mapped[j]
	}
	cleanup := func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	for i, src := range srcs {
		if fds[i] >= 0 {
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err == nil {
			err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
				&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV})
		}
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			cleanup()
			return nil, fmt.Errorf("open_tree %s: %w", src, err)
		}
		fds[i] = fd
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// mountWorkspace mounts the spec's workspace and volumes into the new root
// at r (PID 1, after the writable paths).
func mountWorkspace(s *Spec, at func(string) string) error {
	if s.Workspace == nil && len(s.Binds) == 0 {
		return nil
	}
	srcs := s.sources()
	// Each source is reached through a path PID 1 can resolve: as root, the
	// detached copy the parent sent, attached on the staging tmpfs (so the
	// mount belongs to this namespace, as overlayfs requires of its
	// layers); otherwise the host path itself.
	paths := make([]string, len(srcs))
	for i, src := range srcs {
		paths[i] = src
		if i >= len(s.srcFDs) {
			continue
		}
		p := filepath.Join(stagingDir, "src"+strconv.Itoa(i))
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if err := unix.MoveMount(s.srcFDs[i], "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach %s: %w", src, err)
		}
		unix.Close(s.srcFDs[i])
		paths[i] = p
	}
	next := 0
	if w := s.Workspace; w != nil {
		target := at(w.Path)
		if err := ensureMountPoint(target, true); err != nil {
			return fmt.Errorf("workspace %s: %w", w.Path, err)
		}
		switch w.Mode {
		case WorkspaceOverlay:
			if err := mountOverlay(paths[0], filepath.Join(paths[1], "upper"), filepath.Join(paths[1], "work"), target); err != nil {
				return fmt.Errorf("overlay on %s: %w; overlayfs in a user namespace needs Linux 5.11+ and an upper file system with user xattrs (not NFS): use --workspace copy", w.Path, err)
			}
			next = 2
		case WorkspaceBind:
			if err := bindAt(paths[0], target, 0); err != nil {
				return fmt.Errorf("bind the staged copy at %s: %w", w.Path, err)
			}
			next = 1
		case WorkspaceReadOnly:
			if err := rebind(target, unix.MOUNT_ATTR_RDONLY); err != nil {
				return fmt.Errorf("workspace %s read-only: %w", w.Path, err)
			}
		case WorkspaceTmpfs:
			size := w.Size
			if size <= 0 {
				size = 512 << 20
			}
			if err := unix.Mount("moat-workspace", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
				"mode=0777,size="+strconv.FormatInt(size, 10)); err != nil {
				return fmt.Errorf("tmpfs on %s: %w", w.Path, err)
			}
		default:
			return fmt.Errorf("workspace mode %q: want overlay, bind, readonly or tmpfs", w.Mode)
		}
	}
	for i, b := range s.Binds {
		target := at(b.Target)
		if err := ensureMountPoint(target, true); err != nil {
			return fmt.Errorf("volume %s: %w; the inside path must exist or lie in a tmpfs", b.Target, err)
		}
		if err := bindAt(paths[next+i], target, 0); err != nil {
			return fmt.Errorf("volume %s at %s: %w", b.Source, b.Target, err)
		}
	}
	return nil
}

// overlayCaps are the capabilities PID 1 also needs to mount an overlay:
// overlayfs reaches its layers with the credentials of whoever mounted it
// (copy-up chowns and sets xattrs; its work directory is mode 0), and a
// user namespace's capabilities count only for the files whose owners
// it maps: the workspace's and the session's, seen through their idmaps.
// The last stage drops them with the rest.
func overlayCaps(s *Spec) []uintptr {
	if s.Workspace == nil || s.Workspace.Mode != WorkspaceOverlay {
		return nil
	}
	return []uintptr{unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER, unix.CAP_CHOWN, unix.CAP_FSETID, unix.CAP_MKNOD}
}

// mountOverlay mounts overlayfs at target with the new mount API: each
// layer is one fsconfig call, so no path needs escaping, and userxattr
// keeps overlayfs' own attributes in user.overlay.* (a user namespace may
// not write trusted.*).
func mountOverlay(lower, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fd)
	for _, kv := range [][2]string{{"lowerdir+", lower}, {"upperdir", upper}, {"workdir", work}} {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			return fmt.Errorf("%s %s: %w", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
		return fmt.Errorf("userxattr: %w", err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// bindAt binds src (recursively) at target.
func bindAt(src, target string, attrs uint64) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: attrs | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}); err != nil {
		return err
	}
	return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// OverlayAvailable reports whether the kernel has overlayfs (registered,
// or a module it can load); moat run falls back to a copy without it.
func OverlayAvailable() bool {
	if b, err := os.ReadFile("/proc/filesystems"); err == nil && strings.Contains(string(b), "\toverlay\n") {
		return true
	}
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join("/lib/modules", strings.TrimSpace(string(rel)), "kernel/fs/overlayfs"))
	return err == nil
}
