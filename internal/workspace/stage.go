package workspace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// StageOptions tune Stage; the zero value reads SRC/.moatignore if there is
// one and does not scan content.
type StageOptions struct {
	IgnoreFile string // "": SRC/.moatignore if present
	Scan       bool   // also leave out files in which Scan finds a secret
	Workers    int    // large files copied at once; 0: defaultStageWorkers
}

// Omitted is an entry of SRC that is not in the copy, or one that is there
// but altered; Reason names the rule or pattern.
type Omitted struct {
	Path   string `json:"path"` // slash-separated, relative to SRC; a directory ends in "/"
	Reason string `json:"reason"`
}

// StageReport says what a Stage did. Omissions are not failures.
type StageReport struct {
	Copied     int       `json:"copied"`   // regular files and symlinks in the copy
	Symlinks   int       `json:"symlinks"` // of Copied
	Dirs       int       `json:"dirs"`     // directories made, DEST itself included
	Bytes      int64     `json:"bytes"`    // bytes of file content copied
	IgnoreFile string    `json:"ignore_file,omitempty"`
	Omitted    []Omitted `json:"omitted"` // sorted by path
	Changed    []Omitted `json:"changed"` // copied but altered (setuid/setgid removed, a link made relative)
}

// StageArgError is a SRC, DEST or ignore file that Stage refuses before
// copying anything.
type StageArgError struct{ Msg string }

func (e *StageArgError) Error() string { return e.Msg }

// Reasons that are not patterns or rules.
const (
	reasonSetid     = "setuid/setgid bits removed"
	reasonAbsLink   = "absolute symlink into SRC made relative"
	reasonVanished  = "disappeared while staging"
	reasonReplaced  = "changed type while staging"
	credentialFile  = "credential file: "
	secretInContent = "secret in content: "
)

// Files of parallelMin bytes or more are copied by defaultStageWorkers
// goroutines while the walk goes on; smaller ones by the walk itself: handing
// each to a worker cost a goroutine wake-up (futex calls in strace -c) and
// more system time than their copy_file_range on a 3,000-file tree.
const (
	defaultStageWorkers = 4
	parallelMin         = 256 << 10
)

// Stage makes a sanitised copy of the directory src in dst, which must not
// exist or be empty, and must neither contain src nor lie within it.
//
// Left out, each with its reason in the report: paths matching the ignore
// file's patterns (.moatignore in src, itself copied unless it matches its own
// patterns), credential files by name (CredentialFile), with o.Scan files in
// which Scan finds a secret, devices, fifos and sockets, unreadable entries,
// and symlinks that resolve outside src (through ".." or other links), that
// loop, or that are empty.
//
// Kept: directories, permission bits (setuid and setgid removed and
// reported), access and modification times, and symlinks as symlinks. A
// relative link that resolves inside src is copied as it is; an absolute one
// into src is rewritten as a relative link to the path it resolves to. Hard
// links become independent files. Owners and extended attributes are not
// copied: the copy belongs to whoever runs Stage.
//
// Stage never follows a symlink in src or dst: src is read through directory
// descriptors with O_NOFOLLOW, so a hostile tree cannot make it read outside
// src, and the copy's links are checked again once it is complete. Secrets are
// scanned in the copy itself, so what is scanned is what the agent gets. On
// an error the copy is removed; the error is a *StageArgError when nothing
// was copied because the arguments are wrong.
func Stage(ctx context.Context, src, dst string, o StageOptions) (*StageReport, error) {
	s, err := newStager(src, dst, o)
	if err != nil {
		return nil, err
	}
	rep, err := s.run(ctx)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	return rep, nil
}

type stager struct {
	ctx        context.Context
	src, dst   string   // absolute, links in their names resolved
	srcRoots   []string // the names an absolute link may give src
	dstCreated bool     // dst did not exist: remove it on failure
	started    bool     // dst is ours to fill, and to empty on failure
	ig         *Ignore
	scan       bool
	workers    int
	umask      uint32 // the process's, read once; all bits when unknown

	rep   StageReport
	jobs  chan copyJob
	dirs  []dirMeta // made in dst, in pre-order
	links []string  // symlinks made in dst
	lazy  []fileMeta

	mu  sync.Mutex // guards rep.Bytes, lazy and err once workers run
	err error
}

// dirMeta is a directory's mode and times, set once all below it is written.
type dirMeta struct {
	rel   string
	mode  uint32
	times [2]unix.Timespec
}

// fileMeta is a file whose mode must wait for the content scan: it cannot be
// read by its owner.
type fileMeta struct {
	rel  string
	mode uint32
}

type copyJob struct {
	rel      string
	src, dst int // descriptors, closed by copyOne
	size     int64
	mode     uint32
	chmod    bool // mode is still to be set
	times    [2]unix.Timespec
}

// dirNode is a directory being walked: open in src, and in dst once made.
type dirNode struct {
	rel    string // "" for the root
	name   string
	parent *dirNode
	srcF   *os.File
	srcFd  int // srcF's
	dstFd  int // -1 until made
	st     unix.Stat_t
}

func newStager(src, dst string, o StageOptions) (*stager, error) {
	if src == "" || dst == "" {
		return nil, &StageArgError{"SRC and DEST must both be given"}
	}
	srcAbs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	srcReal, err := filepath.EvalSymlinks(srcAbs)
	if err != nil {
		return nil, &StageArgError{fmt.Sprintf("SRC %s: %v", src, unwrapPath(err))}
	}
	if fi, err := os.Stat(srcReal); err != nil {
		return nil, &StageArgError{fmt.Sprintf("SRC %s: %v", src, unwrapPath(err))}
	} else if !fi.IsDir() {
		return nil, &StageArgError{fmt.Sprintf("SRC %s is not a directory", src)}
	}
	dstAbs, err := filepath.Abs(dst)
	if err != nil {
		return nil, err
	}
	s := &stager{src: srcReal, scan: o.Scan, workers: cmp.Or(o.Workers, defaultStageWorkers), umask: readUmask()}
	s.srcRoots = []string{srcReal}
	if srcAbs != srcReal {
		s.srcRoots = append(s.srcRoots, srcAbs)
	}
	s.dst = realPathOfNew(dstAbs)
	for _, d := range []string{dstAbs, s.dst} {
		for _, r := range s.srcRoots {
			if within(d, r) {
				return nil, &StageArgError{fmt.Sprintf("DEST %s is inside SRC %s", dst, src)}
			}
			if within(r, d) {
				return nil, &StageArgError{fmt.Sprintf("SRC %s is inside DEST %s", src, dst)}
			}
		}
	}
	switch fi, err := os.Lstat(dstAbs); {
	case errors.Is(err, fs.ErrNotExist):
		s.dstCreated = true
	case err != nil:
		return nil, &StageArgError{fmt.Sprintf("DEST %s: %v", dst, unwrapPath(err))}
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, &StageArgError{fmt.Sprintf("DEST %s is a symlink; name the directory itself", dst)}
	case !fi.IsDir():
		return nil, &StageArgError{fmt.Sprintf("DEST %s exists and is not a directory", dst)}
	default:
		ents, err := os.ReadDir(dstAbs)
		if err != nil {
			return nil, &StageArgError{fmt.Sprintf("DEST %s: %v", dst, unwrapPath(err))}
		}
		if len(ents) > 0 {
			return nil, &StageArgError{fmt.Sprintf("DEST %s is not empty; give a new or empty directory", dst)}
		}
	}
	if err := s.loadIgnore(o.IgnoreFile); err != nil {
		return nil, err
	}
	return s, nil
}

// loadIgnore reads the ignore file: the one named, else SRC/.moatignore,
// which is read without following a link, as all of SRC is.
func (s *stager) loadIgnore(name string) error {
	if name != "" {
		ig, err := LoadIgnore(name, name)
		if err != nil {
			var ie *IgnoreError
			if errors.As(err, &ie) {
				return &StageArgError{ie.Error()}
			}
			return &StageArgError{fmt.Sprintf("ignore file %s: %v", name, unwrapPath(err))}
		}
		s.ig, s.rep.IgnoreFile = ig, name
		return nil
	}
	p := filepath.Join(s.src, IgnoreFileName)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, syscall.ELOOP):
		return &StageArgError{IgnoreFileName + " in SRC is a symlink; make it a regular file or name one with --ignore-file"}
	case err != nil:
		return &StageArgError{fmt.Sprintf("%s: %v", IgnoreFileName, unwrapPath(err))}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return &StageArgError{IgnoreFileName + " in SRC is not a regular file"}
	}
	ig, err := ParseIgnore(IgnoreFileName, f)
	if err != nil {
		return &StageArgError{err.Error()}
	}
	s.ig, s.rep.IgnoreFile = ig, IgnoreFileName
	return nil
}

// realPathOfNew resolves the links in the longest existing prefix of p, which
// may not exist yet, so that containment is judged on real names.
func realPathOfNew(p string) string {
	var rest []string
	for cur := p; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		if cur == filepath.Dir(cur) {
			return p
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir+"/")
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (s *stager) run(ctx context.Context) (*StageReport, error) {
	s.ctx = ctx
	if s.dstCreated {
		if err := os.MkdirAll(filepath.Dir(s.dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.Mkdir(s.dst, 0o700); err != nil {
			return nil, err // made by someone else since newStager, maybe: leave it alone
		}
	}
	s.started = true
	srcFd, err := unix.Open(s.src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.src, err)
	}
	dstFd, err := unix.Open(s.dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(srcFd)
		return nil, fmt.Errorf("open %s: %w", s.dst, err)
	}
	root := &dirNode{srcF: os.NewFile(uintptr(srcFd), s.src), srcFd: srcFd, dstFd: dstFd}
	defer root.srcF.Close()
	if err := unix.Fstat(srcFd, &root.st); err != nil {
		unix.Close(dstFd)
		return nil, fmt.Errorf("%s: %w", s.src, err)
	}
	s.addDir(root)

	s.jobs = make(chan copyJob, 64)
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(s.work)
	}
	_, walkErr := s.walk(root, ignoreState{}, false)
	close(s.jobs)
	wg.Wait()
	unix.Close(dstFd)
	if err := cmp.Or(walkErr, s.err, ctx.Err()); err != nil {
		return nil, err
	}

	s.checkCopiedLinks()
	if s.scan {
		if err := s.scanCopy(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	rep := s.rep
	slices.SortFunc(rep.Omitted, func(a, b Omitted) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(rep.Changed, func(a, b Omitted) int { return strings.Compare(a.Path, b.Path) })
	if rep.Omitted == nil {
		rep.Omitted = []Omitted{}
	}
	if rep.Changed == nil {
		rep.Changed = []Omitted{}
	}
	return &rep, nil
}

func (s *stager) omit(rel, reason string) {
	s.rep.Omitted = append(s.rep.Omitted, Omitted{Path: rel, Reason: reason})
}

func (s *stager) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *stager) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// walk copies the directory d's entries. excluded says d itself is left out
// by a pattern and is walked only because an exception may take back
// something below; then d is made in dst only when something is. It returns
// how many entries it put in dst.
func (s *stager) walk(d *dirNode, parent ignoreState, excluded bool) (int, error) {
	ents, err := d.srcF.ReadDir(-1)
	if err != nil {
		return 0, fmt.Errorf("read directory %s: %w", s.relName(d.rel), unwrapPath(err))
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	included := 0
	for _, ent := range ents {
		name := ent.Name()
		if err := s.ctx.Err(); err != nil {
			return included, err
		}
		if s.failed() {
			return included, nil
		}
		rel := name
		if d.rel != "" {
			rel = d.rel + "/" + name
		}
		// The directory's entry types spare files and directories a stat:
		// both are opened without following links and checked by fstat.
		var st unix.Stat_t
		switch ent.Type() {
		case 0:
			st.Mode = unix.S_IFREG
		case fs.ModeDir:
			st.Mode = unix.S_IFDIR
		default:
			if err := unix.Fstatat(d.srcFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				s.omitErr(rel, err)
				continue
			}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		ignored, ms := s.ig.match(rel, parent)
		if ignored {
			if isDir && s.ig.mayReinclude(rel) {
				mark := len(s.rep.Omitted)
				n, err := s.walkChild(d, name, rel, &st, ms, true)
				if err != nil {
					return included, err
				}
				if n == 0 { // nothing taken back: one line for the whole directory
					s.rep.Omitted = append(s.rep.Omitted[:mark], Omitted{rel + "/", s.ig.reason(rel)})
				}
				included += n
				continue
			}
			why := s.ig.reason(rel)
			if isDir {
				rel += "/"
			}
			s.omit(rel, why)
			continue
		}
		var n int
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n, err = s.walkChild(d, name, rel, &st, ms, false)
		case unix.S_IFREG:
			n, err = s.copyFile(d, name, rel, &st)
		case unix.S_IFLNK:
			n, err = s.copyLink(d, name, rel, &st)
		default:
			s.omit(rel, "special file: "+specialKind(st.Mode))
		}
		if err != nil {
			return included, err
		}
		included += n
	}
	return included, nil
}

// walkChild walks the directory name in d.
func (s *stager) walkChild(d *dirNode, name, rel string, st *unix.Stat_t, ms ignoreState, excluded bool) (int, error) {
	fd, err := unix.Openat(d.srcFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		s.omitErr(rel+"/", err)
		return 0, nil
	}
	child := &dirNode{rel: rel, name: name, parent: d, srcF: os.NewFile(uintptr(fd), rel), srcFd: fd, dstFd: -1}
	if err := unix.Fstat(fd, &child.st); err != nil {
		child.srcF.Close()
		return 0, fmt.Errorf("%s: %w", s.relName(rel), err)
	}
	defer func() {
		child.srcF.Close()
		if child.dstFd >= 0 {
			unix.Close(child.dstFd)
		}
	}()
	n := 0
	if !excluded {
		if err := s.makeDir(child); err != nil {
			return 0, err
		}
		n = 1
	}
	m, err := s.walk(child, ms, excluded)
	return n + m, err
}

// makeDir makes d in dst, and its parents if they were left for later.
func (s *stager) makeDir(d *dirNode) error {
	if d.dstFd >= 0 {
		return nil
	}
	if err := s.makeDir(d.parent); err != nil {
		return err
	}
	if err := unix.Mkdirat(d.parent.dstFd, d.name, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", s.dstName(d.rel), err)
	}
	fd, err := unix.Openat(d.parent.dstFd, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.dstName(d.rel), err)
	}
	d.dstFd = fd
	s.addDir(d)
	return nil
}

func (s *stager) addDir(d *dirNode) {
	mode := stMode(d.st.Mode)
	if d.st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		s.rep.Changed = append(s.rep.Changed, Omitted{d.rel + "/", reasonSetid})
	}
	s.dirs = append(s.dirs, dirMeta{rel: d.rel, mode: mode, times: stTimes(&d.st)})
	s.rep.Dirs++
}

// copyFile opens the file in src and makes it in dst; a worker copies it.
func (s *stager) copyFile(d *dirNode, name, rel string, st *unix.Stat_t) (int, error) {
	if rule, ok := CredentialFile(rel); ok {
		s.omit(rel, credentialFile+rule)
		return 0, nil
	}
	// O_NONBLOCK: a file swapped for a fifo since the stat must not hang
	// the copy; O_NOFOLLOW: nor may one swapped for a link lead anywhere.
	fd, err := unix.Openat(d.srcFd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		s.omitErr(rel, err)
		return 0, nil
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		s.omit(rel, reasonReplaced)
		return 0, nil
	}
	if err := s.makeDir(d); err != nil {
		unix.Close(fd)
		return 0, err
	}
	// Made with its final mode when the umask leaves it whole (no fchmod
	// then), else 0600 and set after the copy; a file its owner cannot
	// read stays 0600 until the content scan is done.
	mode := stMode(now.Mode)
	create, chmod := mode, false
	if mode&0o400 == 0 || mode&s.umask != 0 {
		create, chmod = 0o600, true
	}
	out, err := unix.Openat(d.dstFd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, create)
	if err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("create %s: %w", s.dstName(rel), err)
	}
	if now.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		s.rep.Changed = append(s.rep.Changed, Omitted{rel, reasonSetid})
	}
	job := copyJob{rel: rel, src: fd, dst: out, size: now.Size, mode: mode, chmod: chmod, times: stTimes(&now)}
	s.rep.Copied++
	if now.Size < parallelMin {
		// Handing a small file to a worker costs more than copying it.
		return 1, s.copyOne(job)
	}
	select {
	case s.jobs <- job:
	case <-s.ctx.Done():
		unix.Close(fd)
		unix.Close(out)
		return 0, s.ctx.Err()
	}
	return 1, nil
}

func (s *stager) work() {
	for j := range s.jobs {
		if err := s.copyOne(j); err != nil {
			s.fail(err)
		}
	}
}

func (s *stager) copyOne(j copyJob) error {
	defer unix.Close(j.src)
	defer unix.Close(j.dst)
	if s.ctx.Err() != nil || s.failed() {
		return nil // drain
	}
	n, err := copyFd(j.dst, j.src, j.size)
	if err != nil {
		return fmt.Errorf("copy %s: %w", s.relName(j.rel), err)
	}
	fd := j.dst
	if j.chmod && j.mode&0o400 != 0 {
		if err := unix.Fchmod(fd, j.mode); err != nil {
			return fmt.Errorf("%s: %w", s.dstName(j.rel), err)
		}
	}
	if err := futimensFd(fd, &j.times); err != nil {
		return fmt.Errorf("times of %s: %w", s.dstName(j.rel), err)
	}
	s.mu.Lock()
	s.rep.Bytes += n
	if j.mode&0o400 == 0 {
		// Unreadable by its owner: the content scan could not read it.
		s.lazy = append(s.lazy, fileMeta{j.rel, j.mode})
	}
	s.mu.Unlock()
	return nil
}

// copyLink copies the link at rel if it stays inside src.
func (s *stager) copyLink(d *dirNode, name, rel string, st *unix.Stat_t) (int, error) {
	if rule, ok := CredentialFile(rel); ok {
		s.omit(rel, credentialFile+rule)
		return 0, nil
	}
	target, err := readlinkat(d.srcFd, name)
	if err != nil {
		s.omitErr(rel, err)
		return 0, nil
	}
	to, v := resolveLink(rel, target, s.srcRoots, s.lstatIn(s.src))
	if v != linkInside {
		s.omit(rel, v.reason())
		return 0, nil
	}
	if strings.HasPrefix(target, "/") {
		target = relLink(rel, to)
		s.rep.Changed = append(s.rep.Changed, Omitted{rel, reasonAbsLink})
	}
	if err := s.makeDir(d); err != nil {
		return 0, err
	}
	if err := unix.Symlinkat(target, d.dstFd, name); err != nil {
		return 0, fmt.Errorf("symlink %s: %w", s.dstName(rel), err)
	}
	times := stTimes(st)
	if err := unix.UtimesNanoAt(d.dstFd, name, times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, fmt.Errorf("times of %s: %w", s.dstName(rel), err)
	}
	s.links = append(s.links, rel)
	s.rep.Copied++
	s.rep.Symlinks++
	return 1, nil
}

// lstatIn returns an lstatFunc for the tree at root.
func (s *stager) lstatIn(root string) lstatFunc {
	return func(rel string) (fs.FileMode, string, error) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return 0, "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return fi.Mode().Type(), "", nil
		}
		t, err := os.Readlink(p)
		return fs.ModeSymlink, t, err
	}
}

// checkCopiedLinks follows every link in the finished copy within dst and
// removes those that leave it. Each was checked in src already; this closes
// the gap of a src changed while it was copied.
func (s *stager) checkCopiedLinks() {
	lstat := s.lstatIn(s.dst)
	for _, rel := range s.links {
		_, target, err := lstat(rel)
		if err != nil {
			continue
		}
		if _, v := resolveLink(rel, target, []string{s.dst}, lstat); v != linkInside {
			os.Remove(filepath.Join(s.dst, filepath.FromSlash(rel)))
			s.omit(rel, v.reason())
			s.rep.Copied--
			s.rep.Symlinks--
		}
	}
}

// scanCopy scans the copy and removes each file with a finding.
func (s *stager) scanCopy(ctx context.Context) error {
	findings, err := Scan(ctx, s.dst, ScanOptions{})
	if err != nil {
		// A file the scan could not read may hold a secret: fail closed.
		return err
	}
	byPath := map[string][]string{}
	var order []string
	for _, f := range findings {
		why := f.Rule
		if f.Kind == KindContent && f.Line > 0 {
			why = fmt.Sprintf("%s (line %d)", f.Rule, f.Line)
		}
		if _, ok := byPath[f.Path]; !ok {
			order = append(order, f.Path)
		}
		if !slices.Contains(byPath[f.Path], why) {
			byPath[f.Path] = append(byPath[f.Path], why)
		}
	}
	for _, rel := range order {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return fmt.Errorf("scan returned a path outside the copy: %q", rel)
		}
		p := filepath.Join(s.dst, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove %s: %w", s.dstName(rel), unwrapPath(err))
		}
		s.omit(rel, secretInContent+strings.Join(byPath[rel], ", "))
		s.rep.Copied--
		if fi.Mode()&fs.ModeSymlink != 0 {
			s.rep.Symlinks--
		} else {
			s.rep.Bytes -= fi.Size()
		}
	}
	return nil
}

// finish sets the modes left for last, then every directory's mode and
// times, deepest first, so that writing below a directory no longer changes
// its time and a read-only directory is made so after its entries.
func (s *stager) finish() error {
	for _, f := range s.lazy {
		p := filepath.Join(s.dst, filepath.FromSlash(f.rel))
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue // removed by the scan
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, p, f.mode, 0); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	for i := len(s.dirs) - 1; i >= 0; i-- {
		d := s.dirs[i]
		p := filepath.Join(s.dst, filepath.FromSlash(d.rel))
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = unix.Fchmod(fd, d.mode)
		if err == nil {
			err = futimensFd(fd, &d.times)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// cleanup removes what a failed Stage made.
func (s *stager) cleanup() {
	if !s.started {
		return
	}
	// Directories may have been made read-only: give them back write
	// permission so that RemoveAll can empty them.
	filepath.WalkDir(s.dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	if s.dstCreated {
		os.RemoveAll(s.dst)
		return
	}
	ents, _ := os.ReadDir(s.dst)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(s.dst, e.Name()))
	}
}

// omitErr leaves out an entry that could not be read.
func (s *stager) omitErr(rel string, err error) {
	switch {
	case errors.Is(err, unix.ENOENT):
		s.omit(rel, reasonVanished)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		s.omit(rel, reasonReplaced)
	default:
		s.omit(rel, "unreadable: "+err.Error())
	}
}

func (s *stager) relName(rel string) string { return path.Join("SRC", rel) }
func (s *stager) dstName(rel string) string { return filepath.Join(s.dst, filepath.FromSlash(rel)) }

func specialKind(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", m&unix.S_IFMT)
}

// stMode is the permission bits and sticky bit of a stat mode: setuid and
// setgid are never copied.
func stMode(m uint32) uint32 { return m & (0o777 | unix.S_ISVTX) }

func stTimes(st *unix.Stat_t) [2]unix.Timespec { return [2]unix.Timespec{st.Atim, st.Mtim} }

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// futimensFd is futimens(3): utimensat with a NULL path sets the times of
// the descriptor itself, which x/sys/unix's UtimesNanoAt cannot express.
func futimensFd(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// copyFd copies size bytes, or up to src's end if it shrank, from src to dst,
// both at offset 0: the copy is of the file as it was stat'ed. It uses
// copy_file_range, so the bytes never enter moat and a file system that can
// share extents does; where the kernel cannot (another file system, an old
// kernel, a seccomp filter), it reads and writes.
func copyFd(dst, src int, size int64) (int64, error) {
	var total int64
	for total < size {
		n, err := unix.CopyFileRange(src, nil, dst, nil, int(min(size-total, 1<<30)), 0)
		if err == nil {
			if n == 0 {
				return total, nil
			}
			total += int64(n)
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if total == 0 && (err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOSYS ||
			err == unix.EOPNOTSUPP || err == unix.EPERM) {
			return readWrite(dst, src, size)
		}
		return total, err
	}
	return total, nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func readWrite(dst, src int, size int64) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for total < size {
		n, err := unix.Read(src, buf[:min(int64(len(buf)), size-total)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		for w := buf[:n]; len(w) > 0; {
			m, err := unix.Write(dst, w)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return total, err
			}
			w = w[m:]
			total += int64(m)
		}
	}
	return total, nil
}

// readUmask reads the umask from /proc/self/status (Linux 4.7 and later):
// setting it to read it would race with other goroutines creating files.
func readUmask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o7777
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o7777
}
