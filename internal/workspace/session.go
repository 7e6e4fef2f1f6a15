package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Workspace modes of moat run (--workspace, filesystem.workspace).
const (
	ModeRW       = "rw"       // the workspace itself, writable (no review)
	ModeOverlay  = "overlay"  // writes land in the session's upper layer
	ModeCopy     = "copy"     // a sanitised copy (Stage) in the session
	ModeReadOnly = "readonly" // the workspace, read-only
	ModeTmpfs    = "tmpfs"    // an empty in-memory directory
)

// Modes lists the workspace modes, for help and errors.
var Modes = []string{ModeRW, ModeOverlay, ModeCopy, ModeReadOnly, ModeTmpfs}

// Where a session keeps the agent's writes (Record.Backing).
const (
	BackingOverlay = "overlay" // DIR/upper: an overlayfs upper layer
	BackingCopy    = "copy"    // DIR/tree: a copy of the workspace
)

// Session statuses.
const (
	StatusRunning = "running"
	StatusExited  = "exited"
	StatusFailed  = "failed" // the sandbox did not start the command
)

// ErrRunning is returned for a session whose run has not ended.
var ErrRunning = errors.New("the session's run is still going on")

// Record is a session's record file (session.json).
type Record struct {
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	Command  []string  `json:"command"`
	Policy   []string  `json:"policy,omitempty"` // the policy's layers, highest first
	Base     string    `json:"base"`             // the workspace (absolute, symlinks resolved)
	Mode     string    `json:"mode"`
	Backing  string    `json:"backing,omitempty"`
	Status   string    `json:"status"`
	ExitCode int       `json:"exit_code"`
	Omitted  []Omitted `json:"omitted,omitempty"` // what staging left out (copy)
	Notes    []string  `json:"notes,omitempty"`
}

// Session is one run's directory: its record, its manifest of the
// workspace as it was when the run started, and the agent's writes.
type Session struct {
	Record
	Dir  string
	lock *os.File
}

// SessionsDir is where sessions are kept: $XDG_STATE_HOME/moat/sessions,
// else ~/.local/state/moat/sessions.
func SessionsDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "moat", "sessions"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("neither XDG_STATE_HOME nor HOME is set: nowhere to keep sessions")
	}
	return filepath.Join(home, ".local", "state", "moat", "sessions"), nil
}

// validID is a session id as NewSession makes them: nothing a path could
// be made of.
func validID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '.' {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewSession creates the session directory root/ID (0700) and its record,
// and holds the session's lock until Finish or Close: apply and discard
// refuse a session whose lock is held.
func NewSession(root string, r Record) (*Session, error) {
	if !validID(r.ID) {
		return nil, fmt.Errorf("session id %q: letters, digits, - and _ only", r.ID)
	}
	// Parents as XDG makes them; the sessions themselves private.
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, fmt.Errorf("sessions directory: %w", err)
	}
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("sessions directory: %w", err)
	}
	dir := filepath.Join(root, r.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("session %s: %w", r.ID, err)
	}
	s := &Session{Record: r, Dir: dir}
	if s.Status == "" {
		s.Status = StatusRunning
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock session %s: %w", r.ID, err)
	}
	s.lock = lock
	if err := s.Save(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Save writes the record atomically.
func (s *Session) Save() error {
	b, err := json.MarshalIndent(&s.Record, "", "  ")
	if err != nil {
		return err
	}
	// Synced only when the session keeps writes to review: a record of
	// a plain run is not worth a flush on every start.
	return writeAtomic(filepath.Join(s.Dir, "session.json"), append(b, '\n'), 0o600, s.Backing != "")
}

// Finish records the run's end and releases the session's lock.
func (s *Session) Finish(status string, code int) error {
	s.Status, s.ExitCode, s.Ended = status, code, time.Now().UTC().Truncate(time.Millisecond)
	err := s.Save()
	s.Close()
	return err
}

// Close releases the session's lock.
func (s *Session) Close() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// OpenSession reads the session id in root.
func OpenSession(root, id string) (*Session, error) {
	if !validID(id) {
		return nil, fmt.Errorf("session %q: no such session (ids are letters, digits, - and _)", id)
	}
	dir := filepath.Join(root, id)
	b, err := os.ReadFile(filepath.Join(dir, "session.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("session %s: no such session in %s (moat sessions lists them)", id, root)
	}
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	s := &Session{Dir: dir}
	if err := json.Unmarshal(b, &s.Record); err != nil {
		return nil, fmt.Errorf("session %s: record: %w", id, err)
	}
	if s.ID != id {
		return nil, fmt.Errorf("session %s: its record names session %q", id, s.ID)
	}
	return s, nil
}

// ListSessions returns the sessions in root, oldest first; unreadable
// ones are skipped.
func ListSessions(root string) ([]*Session, error) {
	es, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Session
	for _, e := range es {
		if !e.IsDir() {
			continue
		}
		if s, err := OpenSession(root, e.Name()); err == nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// Running reports whether the session's run still holds its lock.
func (s *Session) Running() bool {
	if s.lock != nil {
		return true
	}
	f, err := os.Open(filepath.Join(s.Dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	return false
}

// Acquire takes the session's lock for apply or discard; ErrRunning if
// its run holds it.
func (s *Session) Acquire() error {
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrRunning
		}
		return err
	}
	s.lock = f
	return nil
}

// StatusText is the status as listed: a run that ended without writing
// its end (moat was killed) is "interrupted".
func (s *Session) StatusText() string {
	if s.Status == StatusRunning && !s.Running() {
		return "interrupted"
	}
	if s.Status == StatusExited {
		return fmt.Sprintf("exit %d", s.ExitCode)
	}
	return s.Status
}

// Discard removes the session. The overlay's work directory holds a
// directory overlayfs made unreadable (work/work, mode 0), so modes are
// restored on the way.
func Discard(root, id string) error {
	s, err := OpenSession(root, id)
	if err != nil {
		return err
	}
	if err := s.Acquire(); err != nil {
		return fmt.Errorf("session %s: %w", id, err)
	}
	defer s.Close()
	return removeTree(s.Dir)
}

func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// Upper and Tree are where the agent's writes are.
func (s *Session) Upper() string { return filepath.Join(s.Dir, "layers", "upper") }
func (s *Session) Tree() string  { return filepath.Join(s.Dir, "tree") }

// Layers is the directory the sandbox mounts the overlay's layers from.
func (s *Session) Layers() string { return filepath.Join(s.Dir, "layers") }

// PrepareOverlay makes the overlay's upper and work directories.
func (s *Session) PrepareOverlay() error {
	for _, d := range []string{s.Layers(), s.Upper(), filepath.Join(s.Layers(), "work")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("session %s: %w", s.ID, err)
		}
	}
	// The merged view's root takes the upper layer's mode.
	if fi, err := os.Stat(s.Base); err == nil {
		os.Chmod(s.Upper(), fi.Mode().Perm())
	}
	s.Backing = BackingOverlay
	return s.Save()
}

// FileState is what the manifest keeps of a file: enough to tell that it
// changed (a write moves mtime and ctime; a replacement, the inode).
type FileState struct {
	Size  int64  `json:"s"`
	Mtime int64  `json:"m"`
	Ctime int64  `json:"c"`
	Ino   uint64 `json:"i"`
	Mode  uint32 `json:"o"` // st_mode: type and permission bits
}

// Manifest maps slash-separated relative paths to their state.
type Manifest map[string]FileState

func stateOf(st *syscall.Stat_t) FileState {
	return FileState{Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Mode: st.Mode}
}

// TakeManifest records the state of every entry below root (symlinks not
// followed). The root itself is "." .
func TakeManifest(root string) (Manifest, error) {
	m := Manifest{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // unreadable: not recorded, so a change there is a conflict
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		m[filepath.ToSlash(rel)] = stateOf(&st)
		return nil
	})
	return m, err
}

// SaveManifest writes the manifest as name in the session.
func (s *Session) SaveManifest(name string, m Manifest) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.Dir, name), b, 0o600, false)
}

// LoadManifest reads a manifest SaveManifest wrote.
func (s *Session) LoadManifest(name string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, name))
	if err != nil {
		return nil, fmt.Errorf("session %s: manifest: %w", s.ID, err)
	}
	m := Manifest{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("session %s: manifest: %w", s.ID, err)
	}
	return m, nil
}

// Manifest names in the session directory.
const (
	baseManifest = "base.manifest.json" // the workspace when the run started
	treeManifest = "tree.manifest.json" // the copy, right after it was made
)

// RecordBase records the workspace's manifest.
func (s *Session) RecordBase() error {
	m, err := TakeManifest(s.Base)
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", s.Base, err)
	}
	return s.SaveManifest(baseManifest, m)
}

// RecordBaseAsync records the workspace's manifest while the sandbox
// starts (the agent cannot change the workspace under an overlay or a
// copy, and an edit of the user's in those milliseconds is the one a
// manifest cannot tell from the start anyway); wait returns its error.
// Until it is written, every change counts as a conflict.
func (s *Session) RecordBaseAsync() (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- s.RecordBase() }()
	var err error
	waited := false
	return func() error {
		if !waited {
			err, waited = <-done, true
		}
		return err
	}
}

// RecordTree records the copy's manifest, once it is made.
func (s *Session) RecordTree() error {
	m, err := TakeManifest(s.Tree())
	if err != nil {
		return fmt.Errorf("manifest of the copy: %w", err)
	}
	s.Backing = BackingCopy
	if err := s.SaveManifest(treeManifest, m); err != nil {
		return err
	}
	return s.Save()
}

// writeAtomic writes a file by a temporary file renamed over it, synced
// first if sync.
func writeAtomic(path string, data []byte, mode os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// relOK reports whether rel is a clean relative path inside the root.
func relOK(rel string) bool {
	return rel != "" && rel != "." && !strings.HasPrefix(rel, "/") && !strings.HasPrefix(rel, "../") && rel != ".." && filepath.ToSlash(filepath.Clean(rel)) == rel
}
