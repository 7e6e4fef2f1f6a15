package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatsec/moat/internal/workspace"
)

func init() {
	commands["sessions"] = command{"list moat run's sessions: moat sessions", cmdSessions}
	commands["diff"] = command{"show what a session's run changed: moat diff SESSION [--stat]", cmdDiff}
	commands["apply"] = command{"apply a session's changes to the workspace: moat apply SESSION [PATH…] [--force]", cmdApply}
	commands["discard"] = command{"remove a session and the changes it kept: moat discard SESSION", cmdDiscard}
}

func sessionsRoot(e *env) (string, error) {
	root, err := workspace.SessionsDir(e.getenv)
	if err != nil {
		return "", fmt.Errorf("sessions: %w", err)
	}
	return root, nil
}

func cmdSessions(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat sessions", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: moat sessions")
		return exitUsage
	}
	root, err := sessionsRoot(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	ss, err := workspace.ListSessions(root)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: sessions: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tMODE\tSTATUS\tCHANGES\tBASE\tCOMMAND")
	for _, s := range ss {
		changes := "-"
		if s.Backing != "" {
			if s.Running() {
				changes = "?"
			} else if cs, err := s.Changes(); err == nil {
				changes = strconv.Itoa(len(cs))
			} else {
				changes = "error"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Started.Local().Format(time.DateTime), s.Mode, s.StatusText(),
			changes, s.Base, shortCommand(s.Command))
	}
	tw.Flush()
	return exitOK
}

func shortCommand(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// openReviewable opens a session whose writes can be reviewed.
func openReviewable(e *env, id string) (*workspace.Session, int) {
	root, err := sessionsRoot(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return nil, exitConfig
	}
	s, err := workspace.OpenSession(root, id)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return nil, exitFailure
	}
	if s.Backing == "" {
		fmt.Fprintf(e.stderr, "moat: session %s ran with --workspace %s: it kept no changes to review (overlay and copy do)\n", id, s.Mode)
		return nil, exitFailure
	}
	return s, exitOK
}

// splitFlags parses fs from args that may put flags after positional
// arguments (moat apply SESSION PATH --force).
func splitFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func cmdDiff(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat diff", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	stat := fs.Bool("stat", false, "list the changed paths only, not the diff")
	pos, err := splitFlags(fs, args)
	if err != nil || len(pos) < 1 {
		fmt.Fprintln(e.stderr, "usage: moat diff SESSION [PATH…] [--stat]")
		return exitUsage
	}
	s, code := openReviewable(e, pos[0])
	if s == nil {
		return code
	}
	if s.Running() {
		fmt.Fprintf(e.stderr, "moat: note: session %s is still running: its changes may still move\n", s.ID)
	}
	cs, err := s.Changes()
	if err == nil {
		cs, err = workspace.Select(cs, pos[1:])
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitFailure
	}
	flagged, conflicts := 0, 0
	for _, c := range cs {
		fmt.Fprintln(e.stdout, c.Describe())
		if len(c.Flags) > 0 {
			flagged++
		}
		if c.Conflict {
			conflicts++
		}
	}
	fmt.Fprintf(e.stdout, "%d change(s) in session %s (base %s, mode %s)", len(cs), s.ID, s.Base, s.Mode)
	if flagged > 0 {
		fmt.Fprintf(e.stdout, "; %d SENSITIVE: read them before applying", flagged)
	}
	if conflicts > 0 {
		fmt.Fprintf(e.stdout, "; %d changed in the workspace since (apply refuses them without --force)", conflicts)
	}
	fmt.Fprintln(e.stdout)
	if *stat {
		return exitOK
	}
	fmt.Fprintln(e.stdout)
	if err := workspace.WriteDiff(e.stdout, s.Base, cs); err != nil {
		fmt.Fprintf(e.stderr, "moat: diff: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func cmdApply(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat apply", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	force := fs.Bool("force", false, "apply changes to files that changed in the workspace since the session started (overwriting those changes)")
	pos, err := splitFlags(fs, args)
	if err != nil || len(pos) < 1 {
		fmt.Fprintln(e.stderr, "usage: moat apply SESSION [PATH…] [--force]")
		return exitUsage
	}
	s, code := openReviewable(e, pos[0])
	if s == nil {
		return code
	}
	if err := s.Acquire(); err != nil {
		fmt.Fprintf(e.stderr, "moat: session %s: %v; apply it once the run has ended\n", s.ID, err)
		return exitFailure
	}
	defer s.Close()
	cs, err := s.Changes()
	if err == nil {
		cs, err = workspace.Select(cs, pos[1:])
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitFailure
	}
	if len(cs) == 0 {
		fmt.Fprintf(e.stderr, "moat: session %s: nothing to apply\n", s.ID)
		return exitOK
	}
	crash, _ := strconv.Atoi(e.getenv("MOAT_TEST_APPLY_CRASH_AFTER"))
	done, err := s.Apply(cs, workspace.ApplyOptions{Force: *force, CrashAfter: crash})
	for _, p := range done {
		fmt.Fprintf(e.stdout, "applied %s\n", p)
	}
	var ce *workspace.ConflictError
	if errors.As(err, &ce) {
		fmt.Fprintf(e.stderr, "moat: session %s: %v\n", s.ID, err)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: apply %s: %v (%d applied before it)\n", s.ID, err, len(done))
		return exitFailure
	}
	fmt.Fprintf(e.stderr, "moat: session %s: %d change(s) applied to %s; moat discard %s removes the session\n", s.ID, len(cs), s.Base, s.ID)
	return exitOK
}

func cmdDiscard(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat discard", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 {
		fmt.Fprintln(e.stderr, "usage: moat discard SESSION…")
		return exitUsage
	}
	root, err := sessionsRoot(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	code := exitOK
	for _, id := range fs.Args() {
		if err := workspace.Discard(root, id); err != nil {
			fmt.Fprintf(e.stderr, "moat: discard: %v\n", err)
			code = exitFailure
			continue
		}
		fmt.Fprintf(e.stderr, "moat: session %s discarded\n", id)
	}
	return code
}
