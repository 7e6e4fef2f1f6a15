package workspace

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Kinds of change.
const (
	Added    = "added"
	Modified = "modified"
	Deleted  = "deleted"
	Renamed  = "renamed"
	ModeOnly = "mode" // same content, other permission bits
)

// Change is one path the agent changed, compared with the workspace as
// it is now.
type Change struct {
	Path     string      // slash-separated, relative to the workspace
	Kind     string      // Added, Modified, Deleted, Renamed, ModeOnly
	From     string      // Renamed: the old path (deleted by apply)
	Type     string      // "file", "dir", "symlink", "other"
	Link     string      // symlink: its target
	Binary   bool        // not text: listed, not diffed
	OldMode  fs.FileMode // permission bits before (0 when added)
	NewMode  fs.FileMode // after (0 when deleted)
	Flags    []string    // why it needs a careful look (sensitive)
	Conflict bool        // the workspace's file changed since the session started

	src string // where the new content is (absolute)
}

// Changes lists what the session's run changed, in path order.
func (s *Session) Changes() ([]Change, error) {
	var ws []written
	var err error
	switch s.Backing {
	case BackingOverlay:
		ws, err = upperWrites(s.Upper(), s.Base)
	case BackingCopy:
		var m Manifest
		if m, err = s.LoadManifest(treeManifest); err == nil {
			ws, err = treeWrites(s.Tree(), m)
		}
	default:
		return nil, fmt.Errorf("session %s: mode %s records no changes", s.ID, s.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", s.ID, err)
	}
	if len(ws) == 0 {
		return nil, nil
	}
	// Without a manifest (the run was killed before it was written),
	// every change is a conflict: apply needs --force.
	base, _ := s.LoadManifest(baseManifest)
	return classify(s.Base, ws, base)
}

func classify(root string, ws []written, base Manifest) ([]Change, error) {
	sort.Slice(ws, func(i, j int) bool { return ws[i].rel < ws[j].rel })
	var out []Change
	deletedDirs := map[string]bool{}
	addedDirs := map[string]bool{}
	for _, w := range ws {
		if !relOK(w.rel) {
			return nil, fmt.Errorf("%q: not a path inside the workspace", w.rel)
		}
		if parentIn(w.rel, deletedDirs) && w.deleted {
			continue // inside a deleted directory: that deletion covers it
		}
		orig := filepath.Join(root, filepath.FromSlash(w.rel))
		var ost syscall.Stat_t
		oerr := syscall.Lstat(orig, &ost)
		exists := oerr == nil
		c := Change{Path: w.rel}
		if exists {
			c.OldMode = fs.FileMode(ost.Mode & 0o7777)
		}
		if w.deleted {
			if !exists {
				continue // gone already (applied, or deleted meanwhile)
			}
			c.Kind, c.Type = Deleted, typeOf(ost.Mode)
			if c.Type == "dir" {
				deletedDirs[w.rel] = true
			}
			out = append(out, c)
			continue
		}
		var nst syscall.Stat_t
		if err := syscall.Lstat(w.src, &nst); err != nil {
			return nil, err
		}
		c.src, c.Type, c.NewMode = w.src, typeOf(nst.Mode), fs.FileMode(nst.Mode&0o7777)
		if c.Type == "other" {
			continue // devices, fifos, sockets: never applied
		}
		if c.Type == "symlink" {
			c.Link, _ = os.Readlink(w.src)
		}
		switch {
		case !exists || typeOf(ost.Mode) != c.Type:
			c.Kind = Added
			if exists && typeOf(ost.Mode) == "dir" {
				deletedDirs[w.rel] = true // replaced by a file: apply removes the tree
			}
		case c.Type == "dir":
			if c.OldMode == c.NewMode {
				continue
			}
			c.Kind = ModeOnly
		case c.Type == "symlink":
			if old, _ := os.Readlink(orig); old == c.Link {
				continue
			}
			c.Kind = Modified
		default:
			same, err := sameContent(orig, w.src, ost.Size, nst.Size)
			if err != nil {
				return nil, err
			}
			switch {
			case same && c.OldMode == c.NewMode:
				continue // copied up, not changed (opened for writing, touched)
			case same:
				c.Kind = ModeOnly
			default:
				c.Kind = Modified
			}
		}
		if c.Kind == Added && c.Type == "dir" {
			addedDirs[w.rel] = true
		}
		if c.Type == "file" && c.Kind != ModeOnly {
			c.Binary = binaryFile(w.src)
		}
		out = append(out, c)
	}
	out = findRenames(root, out)
	for i := range out {
		c := &out[i]
		c.Flags = sensitive(c)
		c.Conflict = conflicted(root, c.Path, base) || c.From != "" && conflicted(root, c.From, base)
	}
	return out, nil
}

func parentIn(rel string, dirs map[string]bool) bool {
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		if dirs[d] {
			return true
		}
	}
	return false
}

func typeOf(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// conflicted reports whether the workspace's entry at rel is not as the
// manifest recorded it when the session started (or appeared since).
func conflicted(root, rel string, base Manifest) bool {
	var st syscall.Stat_t
	err := syscall.Lstat(filepath.Join(root, filepath.FromSlash(rel)), &st)
	old, had := base[rel]
	if err != nil {
		return had // deleted since
	}
	if !had {
		return true // created since
	}
	cur := stateOf(&st)
	if cur.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		// A directory's times move with every entry made in it; its
		// entries are checked one by one.
		return cur.Mode != old.Mode || cur.Ino != old.Ino
	}
	return cur != old
}

func sameContent(a, b string, sa, sb int64) (bool, error) {
	if sa != sb {
		return false, nil
	}
	fa, err := openNoFollow(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := openNoFollow(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// binaryFile reports whether a file looks binary: a NUL, or invalid
// UTF-8, in its first 8 KiB (git's rule, and UTF-8 for the diff's sake).
func binaryFile(p string) bool {
	f, err := openNoFollow(p)
	if err != nil {
		return true
	}
	defer f.Close()
	b := make([]byte, 8192)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	if bytes.IndexByte(b, 0) >= 0 {
		return true
	}
	// A multi-byte character cut at the 8 KiB boundary is not binary.
	for i := 0; i < 3 && len(b) > 0 && !utf8.Valid(b) && n == 8192; i++ {
		b = b[:len(b)-1]
	}
	return !utf8.Valid(b)
}

func hashFile(p string) (string, bool) {
	f, err := openNoFollow(p)
	if err != nil {
		return "", false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false
	}
	return string(h.Sum(nil)), true
}

// findRenames pairs a deleted file with an added one of the same content
// (git's exact-rename rule), and a deleted directory with an added one
// holding the same files: overlayfs in a user namespace has no
// redirect_dir, so renaming a directory of the workspace fails with
// EXDEV and mv copies it, then deletes the original.
func findRenames(root string, cs []Change) []Change {
	type key struct {
		size int64
		hash string
	}
	deleted := map[key][]int{}
	for i, c := range cs {
		if c.Kind != Deleted || c.Type != "file" {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(c.Path))
		fi, err := os.Lstat(p)
		if err != nil || fi.Size() == 0 {
			continue // empty files are all alike
		}
		if h, ok := hashFile(p); ok {
			k := key{fi.Size(), h}
			deleted[k] = append(deleted[k], i)
		}
	}
	drop := map[int]bool{}
	if len(deleted) > 0 {
		for i := range cs {
			c := &cs[i]
			if c.Kind != Added || c.Type != "file" {
				continue
			}
			fi, err := os.Lstat(c.src)
			if err != nil || fi.Size() == 0 {
				continue
			}
			h, ok := hashFile(c.src)
			if !ok {
				continue
			}
			k := key{fi.Size(), h}
			if ds := deleted[k]; len(ds) > 0 {
				c.Kind, c.From, c.OldMode = Renamed, cs[ds[0]].Path, cs[ds[0]].OldMode
				drop[ds[0]] = true
				deleted[k] = ds[1:]
			}
		}
	}
	// Directories: a deleted one whose files all reappear, the same, in
	// one added directory.
	for i := range cs {
		d := &cs[i]
		if d.Kind != Deleted || d.Type != "dir" {
			continue
		}
		for j := range cs {
			a := &cs[j]
			if a.Kind != Added || a.Type != "dir" || drop[j] {
				continue
			}
			if sameTree(filepath.Join(root, filepath.FromSlash(d.Path)), a.src) {
				a.Kind, a.From = Renamed, d.Path
				drop[i] = true
				break
			}
		}
	}
	if len(drop) == 0 {
		return cs
	}
	out := cs[:0:0]
	for i, c := range cs {
		if !drop[i] {
			out = append(out, c)
		}
	}
	return out
}

// sameTree reports whether two directories hold the same names, types
// and contents (small trees only: it gives up past 1000 entries).
func sameTree(a, b string) bool {
	n := 0
	errDiffer := errors.New("differ")
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > 1000 {
			return errDiffer
		}
		rel, _ := filepath.Rel(a, p)
		q := filepath.Join(b, rel)
		fa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fb, err := os.Lstat(q)
		if err != nil || fa.Mode() != fb.Mode() {
			return errDiffer
		}
		if fa.Mode().IsRegular() {
			if same, err := sameContent(p, q, fa.Size(), fb.Size()); err != nil || !same {
				return errDiffer
			}
		}
		return nil
	})
	if err != nil {
		return false
	}
	m := 0
	filepath.WalkDir(b, func(string, fs.DirEntry, error) error { m++; return nil })
	return m == n
}

// sensitive says why a change deserves a careful look before it is
// applied: it runs code on the user's machine or in CI, configures an
// agent or an editor, pins dependencies, or holds credentials.
func sensitive(c *Change) []string {
	var why []string
	p := c.Path
	base := path.Base(p)
	dir := path.Dir(p)
	has := func(prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	contains := func(seg string) bool { return has(seg) || strings.Contains("/"+p+"/", "/"+seg+"/") }
	switch {
	case has(".git/hooks"):
		why = append(why, "git hook (runs on git commands)")
	case p == ".git/config" || has(".git"):
		why = append(why, "git metadata")
	}
	if has(".github/workflows") || p == ".gitlab-ci.yml" || has(".gitlab-ci") || has(".circleci") ||
		base == "Jenkinsfile" || p == ".travis.yml" || p == "azure-pipelines.yml" || p == "bitbucket-pipelines.yml" ||
		has(".buildkite") || has(".drone.yml") {
		why = append(why, "CI configuration")
	}
	switch {
	case contains(".claude") && (strings.HasPrefix(base, "settings") || strings.Contains(p, "/hooks") || strings.Contains(p, "/commands") || strings.Contains(p, "/agents")),
		base == ".mcp.json", base == "CLAUDE.md", base == "AGENTS.md":
		why = append(why, "agent configuration")
	case contains(".vscode"), contains(".idea"), base == ".envrc":
		why = append(why, "editor or shell configuration that runs code")
	}
	switch base {
	case "Makefile", "makefile", "GNUmakefile", "Justfile", "justfile", "Taskfile.yml", "Rakefile", "build.gradle", "build.gradle.kts", "pom.xml", "CMakeLists.txt", "Dockerfile", "docker-compose.yml", "compose.yaml", "setup.py", "conftest.py", "package.json", ".pre-commit-config.yaml", ".gitattributes", ".gitmodules":
		why = append(why, "build or install configuration that runs code")
	case "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "go.sum", "go.mod", "Cargo.lock", "poetry.lock", "Pipfile.lock", "Gemfile.lock", "composer.lock", "uv.lock", "bun.lockb", "requirements.txt":
		why = append(why, "dependency lockfile or manifest")
	case ".bashrc", ".zshrc", ".profile", ".bash_profile", ".npmrc", ".pypirc", ".gitconfig":
		why = append(why, "shell or tool configuration")
	}
	if strings.HasSuffix(base, ".mk") || contains(".husky") {
		why = append(why, "build configuration that runs code")
	}
	switch path.Ext(base) {
	case ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd":
		why = append(why, "shell script")
	}
	if c.Type == "file" && c.NewMode&0o111 != 0 && (c.Kind == Added || c.OldMode&0o111 == 0) {
		why = append(why, "made executable")
	}
	if c.NewMode&(fs.FileMode(syscall.S_ISUID)|fs.FileMode(syscall.S_ISGID)) != 0 {
		why = append(why, "setuid or setgid")
	}
	if rule, ok := CredentialFile(p); ok {
		why = append(why, "credential file ("+rule+")")
	}
	if c.Type == "symlink" {
		t := c.Link
		if !path.IsAbs(t) {
			t = path.Join(dir, t)
		}
		if path.IsAbs(t) || t == ".." || strings.HasPrefix(t, "../") {
			why = append(why, "symlink pointing outside the workspace ("+c.Link+")")
		}
	}
	return why
}

// Mark is a one-letter sign for a change's kind, as git status --short.
func (c *Change) Mark() string {
	switch c.Kind {
	case Added:
		return "A"
	case Deleted:
		return "D"
	case Renamed:
		return "R"
	case ModeOnly:
		return "M"
	}
	return "M"
}

// Describe is the change's line in a listing.
func (c *Change) Describe() string {
	var b strings.Builder
	b.WriteString(c.Mark())
	b.WriteString(" ")
	if c.From != "" {
		b.WriteString(c.From + " -> ")
	}
	b.WriteString(c.Path)
	if c.Type == "dir" {
		b.WriteString("/")
	}
	var notes []string
	switch {
	case c.Kind == ModeOnly:
		notes = append(notes, fmt.Sprintf("mode %04o -> %04o", c.OldMode, c.NewMode))
	case c.Kind == Modified && c.OldMode != c.NewMode && c.Type == "file":
		notes = append(notes, fmt.Sprintf("mode %04o -> %04o", c.OldMode, c.NewMode))
	}
	if c.Type == "symlink" {
		notes = append(notes, "symlink to "+c.Link)
	}
	if c.Binary {
		notes = append(notes, "binary")
	}
	if c.Conflict {
		notes = append(notes, "CONFLICT: changed in the workspace since the session started")
	}
	for _, f := range c.Flags {
		notes = append(notes, "SENSITIVE: "+f)
	}
	if len(notes) > 0 {
		b.WriteString("  (" + strings.Join(notes, "; ") + ")")
	}
	return b.String()
}

// WriteDiff writes a unified diff of the text files among cs.
func WriteDiff(w io.Writer, root string, cs []Change) error {
	for _, c := range cs {
		if c.Type != "file" || c.Binary || c.Kind == ModeOnly {
			continue
		}
		var oldText, newText []byte
		var err error
		oldName, newName := "a/"+c.Path, "b/"+c.Path
		switch c.Kind {
		case Added:
			oldName = "/dev/null"
		case Renamed:
			oldName = "a/" + c.From
		case Deleted:
			newName = "/dev/null"
		}
		if c.Kind != Added {
			from := c.Path
			if c.From != "" {
				from = c.From
			}
			if oldText, err = readText(filepath.Join(root, filepath.FromSlash(from))); err != nil {
				return err
			}
		}
		if c.Kind != Deleted {
			if newText, err = readText(c.src); err != nil {
				return err
			}
		}
		if c.Kind == Deleted && binaryBytes(oldText) {
			continue
		}
		if c.Kind == Renamed && bytes.Equal(oldText, newText) {
			continue
		}
		fmt.Fprintf(w, "--- %s\n+++ %s\n", oldName, newName)
		if err := unifiedDiff(w, splitLines(oldText), splitLines(newText)); err != nil {
			return err
		}
	}
	return nil
}

// maxDiffFile bounds the files diffed line by line.
const maxDiffFile = 4 << 20

func readText(p string) ([]byte, error) {
	f, err := openNoFollow(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxDiffFile))
}

func binaryBytes(b []byte) bool {
	if len(b) > 8192 {
		b = b[:8192]
	}
	return bytes.IndexByte(b, 0) >= 0
}

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// openNoFollow opens a file for reading without following a symlink in
// its last component: the agent wrote the upper layer and the copy, and
// could swap a file for a link to one of the user's between the walk and
// the read.
func openNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
