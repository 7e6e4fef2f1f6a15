package workspace

import (
	"io/fs"
	"slices"
	"strings"
)

// linkVerdict is what following a symbolic link within a tree comes to.
type linkVerdict int

const (
	linkInside  linkVerdict = iota // it stays in the tree, or dangles there
	linkEscapes                    // it reaches outside the tree
	linkLoop                       // too many links on the way: the kernel's ELOOP
	linkEmpty                      // an empty target, which no kernel resolves
)

func (v linkVerdict) reason() string {
	switch v {
	case linkEscapes:
		return "symlink escapes SRC"
	case linkLoop:
		return "symlink loop (more than 40 links on the way)"
	case linkEmpty:
		return "symlink with an empty target"
	}
	return ""
}

// maxLinkHops is the kernel's limit on links followed in one lookup.
const maxLinkHops = 40

// lstatFunc reports the type of the entry at the slash-separated path rel
// below a tree's root ("" is the root) and, for a link, its target. It must
// not follow a link in the last component; resolveLink only asks for paths
// whose other components it has found to be directories.
type lstatFunc func(rel string) (typ fs.FileMode, target string, err error)

// resolveLink follows the link at rel, whose target is target, as the kernel
// would (each ".." applies to the directory reached so far, not to the text),
// without ever leaving the tree. It returns the path reached, relative to the
// root, and whether that path is inside. roots are the absolute names of the
// tree's root that an absolute target may begin with; with none, every
// absolute target escapes. A component that does not exist, or cannot be
// read, ends the lookup's use of the tree: the rest is judged by its text, so
// a dangling link is kept only when its text stays inside too.
func resolveLink(rel, target string, roots []string, lstat lstatFunc) (string, linkVerdict) {
	if target == "" {
		return "", linkEmpty
	}
	var stack []string // the directories reached, all real (no links)
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		stack = splitPath(rel[:i])
	}
	pending, ok := startLink(target, &stack, roots)
	if !ok {
		return "", linkEscapes
	}
	hops, missing := 1, false
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		if c == ".." {
			if len(stack) == 0 {
				return "", linkEscapes
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		if missing {
			continue
		}
		typ, t, err := lstat(strings.Join(stack, "/"))
		if err != nil {
			missing = true
			continue
		}
		if typ&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", linkLoop
		}
		if t == "" {
			missing = true // the kernel says ENOENT; keep it as a name
			continue
		}
		stack = stack[:len(stack)-1]
		next, ok := startLink(t, &stack, roots)
		if !ok {
			return "", linkEscapes
		}
		pending = append(next, pending...)
	}
	return strings.Join(stack, "/"), linkInside
}

// startLink returns the components of a link's target still to follow; for
// an absolute target it also empties stack, after finding which root the
// target begins with (ok false: none, so it escapes).
func startLink(target string, stack *[]string, roots []string) ([]string, bool) {
	comps := splitPath(target)
	if !strings.HasPrefix(target, "/") {
		return comps, true
	}
	for _, r := range roots {
		rc := splitPath(r)
		if len(rc) <= len(comps) && slices.Equal(rc, comps[:len(rc)]) {
			*stack = (*stack)[:0]
			return comps[len(rc):], true
		}
	}
	return nil, false
}

// splitPath splits a slash-separated path into its components, dropping
// empty ones and ".", but keeping "..", which only a lookup can apply.
func splitPath(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// relLink returns the relative link target that leads from the directory of
// the link at rel to the path to, both relative to the same root.
func relLink(rel, to string) string {
	var from []string
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		from = splitPath(rel[:i])
	}
	dest := splitPath(to)
	n := 0
	for n < len(from) && n < len(dest) && from[n] == dest[n] {
		n++
	}
	var parts []string
	for range from[n:] {
		parts = append(parts, "..")
	}
	parts = append(parts, dest[n:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
