package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/sandbox"
	"github.com/moatsec/moat/internal/workspace"
)

// workspaceUsage is --workspace's help.
const workspaceUsage = "how the workspace (the working directory) is mounted: rw (itself, writable), overlay (writes kept in a session for moat diff/apply), copy (a sanitised copy, kept in a session), readonly, tmpfs[:SIZE] (empty, noexec, gone at exit); default: the policy's filesystem.workspace, else rw"

// runWorkspace is what moat run does with the workspace: the session that
// records the run and, in overlay and copy modes, keeps the agent's writes.
type runWorkspace struct {
	mode  string
	sess  *workspace.Session // nil if none could be made (rw: a note)
	notes []string
	done  bool
	// waitBase waits for the manifest of the workspace, taken while the
	// sandbox starts.
	waitBase func() error
}

// wait waits for the manifest; without it, apply needs --force.
func (w *runWorkspace) wait(e *env) {
	if w.waitBase == nil {
		return
	}
	if err := w.waitBase(); err != nil {
		fmt.Fprintf(e.stderr, "moat: session %s: %v; moat apply will need --force\n", w.sess.ID, err)
	}
}

// setupWorkspace scans the workspace when the policy asks, opens the run's
// session and changes spec to mount the workspace as the mode says, and
// binds the policy's volumes. A non-zero code means moat run must stop.
func setupWorkspace(ctx context.Context, e *env, pol *policy.Policy, spec *sandbox.Spec, flagMode, id string, argv []string, tier string) (*runWorkspace, int) {
	fail := func(code int, format string, a ...any) (*runWorkspace, int) {
		fmt.Fprintf(e.stderr, "moat run: "+format+"\n", a...)
		return nil, code
	}
	mode, origin := flagMode, "--workspace"
	if mode == "" && pol.Filesystem.Workspace.Value != "" {
		mode, origin = pol.Filesystem.Workspace.Value, "filesystem.workspace ("+pol.Filesystem.Workspace.Origin.String()+")"
	}
	if mode == "" {
		mode = workspace.ModeRW
	}
	mode, sizeText, hasSize := strings.Cut(mode, ":")
	var size int64
	if hasSize {
		n, err := policy.ParseSize(sizeText)
		if mode != workspace.ModeTmpfs || err != nil {
			return fail(exitUsage, "%s %q: only tmpfs takes a size (tmpfs:256m)", origin, mode+":"+sizeText)
		}
		size = n
	}
	known := false
	for _, m := range workspace.Modes {
		known = known || m == mode
	}
	if !known {
		return fail(exitUsage, "%s %q: write one of %s", origin, mode, strings.Join(workspace.Modes, ", "))
	}
	if tier != "" && tier != "native" && (mode != workspace.ModeRW || len(pol.Filesystem.Volumes) > 0) {
		return fail(exitConfig, "%s %s and filesystem.volumes are the native tier's; run with --isolation native, or --workspace rw", origin, mode)
	}
	w := &runWorkspace{mode: mode}
	base := spec.Dir

	// The scan comes first: block must refuse before anything is made.
	if scan := pol.Filesystem.Scan.Value; (scan == "warn" || scan == "block") && mode != workspace.ModeTmpfs {
		findings, err := workspace.Scan(ctx, base, workspace.ScanOptions{})
		if err != nil {
			return fail(exitConfig, "filesystem.scan %s (%s): the scan of %s failed: %v; fix it, or set filesystem.scan: off", scan, pol.Filesystem.Scan.Origin, base, err)
		}
		if len(findings) > 0 {
			verb := "masked from the agent"
			if scan == "block" {
				verb = "refusing to start (filesystem.scan: block)"
			}
			fmt.Fprintf(e.stderr, "moat: the workspace holds %d credential finding(s); %s:\n", len(findings), verb)
			for _, f := range findings {
				where := f.Path
				if f.Line > 0 {
					where += ":" + strconv.Itoa(f.Line)
				}
				fmt.Fprintf(e.stderr, "  %s  %s  %s\n", where, f.Rule, f.Excerpt)
			}
			if scan == "block" {
				fmt.Fprintln(e.stderr, "moat run: move the credentials out of the workspace, list the paths in a .moatignore with --workspace copy, or set filesystem.scan: warn to mask them")
				return nil, exitConfig
			}
			for _, f := range findings {
				p := filepath.Join(base, filepath.FromSlash(f.Path))
				if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
					spec.MaskFiles = appendNew(spec.MaskFiles, p)
				}
			}
		}
	}

	root, err := workspace.SessionsDir(e.getenv)
	if err == nil && (mode == workspace.ModeOverlay || mode == workspace.ModeCopy) {
		// A session inside the workspace would be part of its own lower
		// layer (overlayfs refuses) or of its own copy.
		if r, rerr := filepath.EvalSymlinks(filepath.Dir(root)); rerr == nil && (r == base || strings.HasPrefix(r, base+"/")) || root == base || strings.HasPrefix(root, base+"/") {
			return fail(exitConfig, "--workspace %s: the sessions directory %s is inside the workspace %s; run from a project directory, or set XDG_STATE_HOME outside it", mode, root, base)
		}
	}
	if err == nil {
		pruneSessions(root)
		var layers []string
		for _, l := range pol.Layers {
			layers = append(layers, l.File)
		}
		w.sess, err = workspace.NewSession(root, workspace.Record{
			ID: id, Started: time.Now().UTC().Truncate(time.Millisecond), Command: argv, Policy: layers, Base: base, Mode: mode,
		})
	}
	if err != nil {
		if mode == workspace.ModeOverlay || mode == workspace.ModeCopy {
			return fail(exitInternal, "session: %v", err)
		}
		w.notes = append(w.notes, fmt.Sprintf("the run is not recorded as a session: %v", err))
	} else {
		// The agent may neither read nor write the sessions: a record
		// names the directory apply writes to.
		spec.MaskDirs = appendNew(spec.MaskDirs, root)
	}
	failSession := func(format string, a ...any) (*runWorkspace, int) {
		w.wait(e)
		w.sess.Finish(workspace.StatusFailed, exitInternal)
		return fail(exitInternal, format, a...)
	}

	var dropped []string
	switch mode {
	case workspace.ModeOverlay:
		w.waitBase = w.sess.RecordBaseAsync()
		if sandbox.OverlayAvailable() && e.getenv("MOAT_TEST_NO_OVERLAY") != "1" {
			if err := w.sess.PrepareOverlay(); err != nil {
				return failSession("%v", err)
			}
			dropped = spec.SetWorkspace(sandbox.WorkspaceMount{Mode: sandbox.WorkspaceOverlay, Path: base, Lower: base, Layers: w.sess.Layers()})
			break
		}
		// No overlayfs: a full copy (credential files left out all the
		// same), reviewed the same way.
		rep, err := workspace.Stage(ctx, base, w.sess.Tree(), workspace.StageOptions{})
		if err != nil {
			return failSession("overlayfs is unavailable and copying the workspace failed: %v", err)
		}
		if err := w.sess.RecordTree(); err != nil {
			return failSession("%v", err)
		}
		w.sess.Omitted = rep.Omitted
		w.sess.Notes = append(w.sess.Notes, "overlayfs unavailable: a copy")
		w.sess.Save()
		w.notes = append(w.notes, "overlayfs is not available here: the agent works on a copy of the workspace instead, reviewed the same way (moat diff "+id+")")
		w.notes = append(w.notes, omittedNote(rep.Omitted)...)
		dropped = spec.SetWorkspace(sandbox.WorkspaceMount{Mode: sandbox.WorkspaceBind, Path: base, Source: w.sess.Tree()})
	case workspace.ModeCopy:
		w.waitBase = w.sess.RecordBaseAsync()
		rep, err := workspace.Stage(ctx, base, w.sess.Tree(), workspace.StageOptions{Scan: true})
		if err != nil {
			return failSession("--workspace copy: %v", err)
		}
		if err := w.sess.RecordTree(); err != nil {
			return failSession("%v", err)
		}
		w.sess.Omitted = rep.Omitted
		w.sess.Save()
		w.notes = append(w.notes, fmt.Sprintf("the agent works on a copy of the workspace (%d files; session %s)", rep.Copied, id))
		w.notes = append(w.notes, omittedNote(rep.Omitted)...)
		dropped = spec.SetWorkspace(sandbox.WorkspaceMount{Mode: sandbox.WorkspaceBind, Path: base, Source: w.sess.Tree()})
	case workspace.ModeReadOnly:
		dropped = spec.SetWorkspace(sandbox.WorkspaceMount{Mode: sandbox.WorkspaceReadOnly, Path: base})
	case workspace.ModeTmpfs:
		dropped = spec.SetWorkspace(sandbox.WorkspaceMount{Mode: sandbox.WorkspaceTmpfs, Path: base, Size: size})
	}
	for _, d := range dropped {
		w.notes = append(w.notes, fmt.Sprintf("filesystem.write %s is inside the workspace, which is mounted %s: not writable on its own", d, mode))
	}

	for _, v := range pol.Filesystem.Volumes {
		host, inside, two := strings.Cut(v.Value, ":")
		if !two {
			inside = host
		}
		host, inside = expandHome(host, e.getenv("HOME"), base), expandHome(inside, e.getenv("HOME"), base)
		if err := spec.AddVolume(host, inside, e.getenv("HOME")); err != nil {
			if w.sess != nil {
				w.wait(e)
				w.sess.Finish(workspace.StatusFailed, exitConfig)
			}
			return fail(exitConfig, "filesystem.volumes %q (%s): %v", v.Value, v.Origin, err)
		}
	}
	return w, 0
}

func expandHome(p, home, base string) string {
	switch {
	case p == "~":
		return home
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(home, p[2:])
	case !filepath.IsAbs(p):
		return filepath.Join(base, p)
	}
	return filepath.Clean(p)
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// omittedNote says what a copy left out.
func omittedNote(om []workspace.Omitted) []string {
	if len(om) == 0 {
		return nil
	}
	var names []string
	for i, o := range om {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(om)-5))
			break
		}
		names = append(names, o.Path+" ("+o.Reason+")")
	}
	return []string{fmt.Sprintf("left out of the copy: %s", strings.Join(names, ", "))}
}

// failed records a run whose command did not start (or run), unless
// exited recorded its end already.
func (w *runWorkspace) failed(e *env) {
	if w == nil || w.sess == nil || w.done {
		return
	}
	w.done = true
	w.wait(e)
	w.sess.Finish(workspace.StatusFailed, exitSandbox)
}

// exited records the run's end and, for a session with writes to review,
// says how many there are and what to do with them.
func (w *runWorkspace) exited(e *env, code int) {
	if w == nil || w.sess == nil || w.done {
		return
	}
	w.done = true
	w.wait(e)
	w.sess.Finish(workspace.StatusExited, code)
	if w.sess.Backing == "" {
		return
	}
	cs, err := w.sess.Changes()
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: session %s: %v\n", w.sess.ID, err)
		return
	}
	flagged := 0
	for _, c := range cs {
		if len(c.Flags) > 0 {
			flagged++
		}
	}
	id := w.sess.ID
	if len(cs) == 0 {
		fmt.Fprintf(e.stderr, "moat: session %s: no changes (moat discard %s)\n", id, id)
		return
	}
	fmt.Fprintf(e.stderr, "moat: session %s: %d change(s), %d flagged sensitive; review: moat diff %s; then moat apply %s or moat discard %s\n",
		id, len(cs), flagged, id, id, id)
}

// keepRecords is how many sessions without writes to review (rw,
// readonly, tmpfs) are kept; older ones are removed at the next run.
const keepRecords = 100

// pruneSessions removes the oldest records of sessions that hold nothing
// to review, once there are many; sessions with writes are the user's to
// discard.
func pruneSessions(root string) {
	es, err := os.ReadDir(root)
	if err != nil || len(es) <= 2*keepRecords {
		return
	}
	ss, err := workspace.ListSessions(root)
	if err != nil {
		return
	}
	var plain []*workspace.Session
	for _, s := range ss {
		if s.Backing == "" && !s.Running() {
			plain = append(plain, s)
		}
	}
	sort.Slice(plain, func(i, j int) bool { return plain[i].Started.Before(plain[j].Started) })
	for i := 0; i < len(plain)-keepRecords; i++ {
		workspace.Discard(root, plain[i].ID)
	}
}
