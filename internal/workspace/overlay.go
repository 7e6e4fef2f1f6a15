package workspace

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// An entry the agent's writes left: a path whose content is in src (an
// upper layer or the copy), or a deletion.
type written struct {
	rel     string
	src     string // absolute; "" for a deletion
	deleted bool
}

// Overlayfs' own attributes with userxattr (a user namespace's mount).
const (
	xattrOpaque   = "user.overlay.opaque"
	xattrWhiteout = "user.overlay.whiteout"
)

// isWhiteout reports whether an upper-layer entry records a deletion:
// a character device 0/0, or (made by userspace tools) a zero-size file
// carrying overlay.whiteout.
func isWhiteout(p string, st *syscall.Stat_t) bool {
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		return st.Rdev == 0
	case syscall.S_IFREG:
		if st.Size != 0 {
			return false
		}
		_, err := unix.Lgetxattr(p, xattrWhiteout, nil)
		if err == nil {
			return true
		}
		_, err = unix.Lgetxattr(p, "trusted.overlay.whiteout", nil)
		return err == nil
	}
	return false
}

func isOpaque(p string) bool {
	var b [4]byte
	for _, name := range []string{xattrOpaque, "trusted.overlay.opaque"} {
		if n, err := unix.Lgetxattr(p, name, b[:]); err == nil && n >= 1 && b[0] == 'y' {
			return true
		}
	}
	return false
}

// upperWrites reads an overlayfs upper layer: every entry in it is
// written (new, or copied up and perhaps changed); whiteouts are
// deletions; in an opaque directory, whatever the lower layer (base) has
// that the upper does not is deleted.
func upperWrites(upper, base string) ([]written, error) {
	var out []written
	var walk func(rel string) error
	walk = func(rel string) error {
		dir := filepath.Join(upper, filepath.FromSlash(rel))
		es, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		inUpper := map[string]bool{}
		for _, e := range es {
			inUpper[e.Name()] = true
			r := path.Join(rel, e.Name())
			p := filepath.Join(dir, e.Name())
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			if isWhiteout(p, &st) {
				out = append(out, written{rel: r, deleted: true})
				continue
			}
			out = append(out, written{rel: r, src: p})
			if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				if err := walk(r); err != nil {
					return err
				}
			}
		}
		if rel != "" && isOpaque(dir) {
			bes, err := os.ReadDir(filepath.Join(base, filepath.FromSlash(rel)))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			for _, e := range bes {
				if !inUpper[e.Name()] {
					out = append(out, written{rel: path.Join(rel, e.Name()), deleted: true})
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	return out, nil
}

// treeWrites compares a copy with its manifest taken when it was made:
// entries whose state moved are written, entries gone are deleted.
// What staging left out is in neither, so it is never a deletion.
func treeWrites(tree string, m Manifest) ([]written, error) {
	var out []written
	seen := map[string]bool{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == tree {
			return nil
		}
		rel, _ := filepath.Rel(tree, p)
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		old, ok := m[rel]
		cur := stateOf(&st)
		if ok && old.Size == cur.Size && old.Mtime == cur.Mtime && old.Ctime == cur.Ctime && old.Ino == cur.Ino && old.Mode == cur.Mode {
			return nil
		}
		out = append(out, written{rel: rel, src: p})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for rel := range m {
		if rel != "." && !seen[rel] {
			out = append(out, written{rel: rel, deleted: true})
		}
	}
	return out, nil
}
