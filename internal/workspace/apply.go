package workspace

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ApplyOptions says what Apply applies.
type ApplyOptions struct {
	// Paths, when not empty, limits Apply to these paths and what is
	// below them (slash-separated, relative to the workspace).
	Paths []string
	// Force applies changes to files changed in the workspace since the
	// session started (they are refused otherwise).
	Force bool
	// CrashAfter, for tests only, kills the process with SIGKILL once
	// that many entries are applied (MOAT_TEST_APPLY_CRASH_AFTER).
	CrashAfter int
}

// ConflictError lists the changes refused because the workspace's file
// changed since the session started.
type ConflictError struct{ Paths []string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%d path(s) changed in the workspace since the session started: %s; nothing applied (name other paths, or --force to overwrite)",
		len(e.Paths), strings.Join(e.Paths, ", "))
}

// Select returns the changes at or below one of paths (all if none).
func Select(cs []Change, paths []string) ([]Change, error) {
	if len(paths) == 0 {
		return cs, nil
	}
	var clean []string
	for _, p := range paths {
		q := path.Clean(filepath.ToSlash(p))
		q = strings.TrimPrefix(q, "./")
		if !relOK(q) {
			return nil, fmt.Errorf("%q: name a path relative to the workspace", p)
		}
		clean = append(clean, q)
	}
	in := func(p string) bool {
		if p == "" {
			return false
		}
		for _, q := range clean {
			if p == q || strings.HasPrefix(p, q+"/") {
				return true
			}
		}
		return false
	}
	var out []Change
	for _, c := range cs {
		if in(c.Path) || in(c.From) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no change at %s", strings.Join(clean, ", "))
	}
	return out, nil
}

// Apply writes the changes onto the workspace, entry by entry: a file is
// written to a temporary file in its directory and renamed over the old
// one, so each is either old or new, whatever happens midway. Every path
// is resolved below the workspace without following any symlink
// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so nothing is written
// through a link. Changes to files that changed in the workspace since
// the session started are refused, all of them before anything is
// written, unless o.Force. It returns the paths applied.
func (s *Session) Apply(cs []Change, o ApplyOptions) ([]string, error) {
	var conflicts []string
	for _, c := range cs {
		if c.Conflict {
			conflicts = append(conflicts, c.Path)
		}
	}
	if len(conflicts) > 0 && !o.Force {
		return nil, &ConflictError{conflicts}
	}
	root, err := unix.Open(s.Base, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", s.Base, err)
	}
	defer unix.Close(root)
	a := &applier{root: root, crashAfter: o.CrashAfter}

	// Directories and files first (shallowest first, so a directory
	// exists before what goes in it), then deletions (deepest first).
	var writes, deletes []Change
	for _, c := range cs {
		if c.Kind == Deleted {
			deletes = append(deletes, c)
			continue
		}
		writes = append(writes, c)
		if c.Kind == Renamed {
			deletes = append(deletes, Change{Path: c.From, Kind: Deleted})
		}
	}
	sort.SliceStable(writes, func(i, j int) bool { return depth(writes[i].Path) < depth(writes[j].Path) })
	sort.SliceStable(deletes, func(i, j int) bool { return depth(deletes[i].Path) > depth(deletes[j].Path) })
	var done []string
	for _, c := range writes {
		if err := a.write(c); err != nil {
			return done, fmt.Errorf("%s: %w", c.Path, err)
		}
		done = append(done, c.Path)
	}
	for _, c := range deletes {
		if err := a.remove(c.Path); err != nil {
			return done, fmt.Errorf("delete %s: %w", c.Path, err)
		}
		done = append(done, c.Path)
	}
	// The manifest follows what was applied, so that applying again, or
	// applying the rest later, does not see moat's own writes as
	// conflicts.
	if m, err := s.LoadManifest(baseManifest); err == nil {
		for _, p := range done {
			var st syscall.Stat_t
			if syscall.Lstat(filepath.Join(s.Base, filepath.FromSlash(p)), &st) == nil {
				m[p] = stateOf(&st)
			} else {
				delete(m, p)
			}
		}
		if err := s.SaveManifest(baseManifest, m); err != nil {
			return done, err
		}
	}
	return done, nil
}

func depth(p string) int { return strings.Count(p, "/") }

type applier struct {
	root       int
	n          int
	crashAfter int
}

// step counts an applied entry; a test's crash hook fires here.
func (a *applier) step() {
	a.n++
	if a.crashAfter > 0 && a.n >= a.crashAfter {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// parent opens the directory holding rel, below the workspace, without
// following symlinks.
func (a *applier) parent(rel string) (int, string, error) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Openat2(a.root, dir, &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return -1, "", fmt.Errorf("%s is reached through a symlink; refused (apply never writes through one)", dir)
	}
	if err != nil {
		return -1, "", err
	}
	return fd, name, nil
}

func tempName() string {
	var b [6]byte
	rand.Read(b[:])
	return ".moat-apply-" + hex.EncodeToString(b[:])
}

func (a *applier) write(c Change) error {
	if !relOK(c.Path) {
		return errors.New("not a path inside the workspace")
	}
	pfd, name, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	existing := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	mode := uint32(c.NewMode.Perm()) | uint32(c.NewMode)&(unix.S_ISVTX)
	switch c.Type {
	case "dir":
		if existing && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(pfd, name); err != nil {
				return err
			}
			existing = false
		}
		if !existing {
			if err := unix.Mkdirat(pfd, name, mode); err != nil {
				return err
			}
		}
		dfd, err := unix.Openat(pfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Fchmod(dfd, mode)
		unix.Close(dfd)
		if err != nil {
			return err
		}
	case "symlink":
		tmp := tempName()
		if err := unix.Symlinkat(c.Link, pfd, tmp); err != nil {
			return err
		}
		if err := a.replace(pfd, tmp, name, existing, &st); err != nil {
			return err
		}
	case "file":
		src, err := os.OpenFile(c.src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer src.Close()
		tmp := tempName()
		fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		dst := os.NewFile(uintptr(fd), tmp)
		_, err = io.Copy(dst, src)
		if err == nil {
			err = unix.Fchmod(fd, uint32(c.NewMode.Perm()))
		}
		if err == nil {
			err = dst.Sync()
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = a.replace(pfd, tmp, name, existing, &st)
		}
		if err != nil {
			unix.Unlinkat(pfd, tmp, 0)
			return err
		}
	default:
		return fmt.Errorf("cannot apply a %s", c.Type)
	}
	a.step()
	return nil
}

// replace renames tmp over name; a directory in the way is removed first
// (rename cannot replace a directory with a file).
func (a *applier) replace(pfd int, tmp, name string, existing bool, st *unix.Stat_t) error {
	if existing && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeAt(pfd, name); err != nil {
			return err
		}
	}
	if err := unix.Renameat(pfd, tmp, pfd, name); err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return err
	}
	return nil
}

func (a *applier) remove(rel string) error {
	if !relOK(rel) {
		return errors.New("not a path inside the workspace")
	}
	pfd, name, err := a.parent(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, name); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	a.step()
	return nil
}

// removeAt removes name in the directory dfd, and what is below it if it
// is a directory, never following a symlink.
func removeAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	sub, err := unix.Openat(dfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(sub), name)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return err
	}
	for _, n := range names {
		if err := removeAt(sub, n); err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	return unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
}
