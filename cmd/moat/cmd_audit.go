package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

func init() {
	commands["audit"] = command{summary: "show, follow and summarise the audit log", run: runAudit}
}

const auditUsage = `usage: moat audit [FILE] [--follow] [--host H] [--decision allow|deny|ask] [--kind K]
                  [--session S] [--since 10m|RFC3339] [--json]
       moat audit summary [FILE] [--host H] [--decision D] [--kind K] [--session S]
                  [--since T] [--top N] [--json]

FILE defaults to $XDG_STATE_HOME/moat/audit.jsonl (else
~/.local/state/moat/audit.jsonl); "-" reads standard input.
`

// auditOptions are the flags both forms share.
type auditOptions struct {
	host, decision, kind, session, since string
	json                                 bool
}

func (o *auditOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.host, "host", "", "only records for host `H` (exact, or *.suffix for its subdomains)")
	fs.StringVar(&o.decision, "decision", "", "only records with this `decision`: allow, deny or ask")
	fs.StringVar(&o.kind, "kind", "", "only records of this `kind`: request, connect, permission, lifecycle")
	fs.StringVar(&o.session, "session", "", "only records of this `session`")
	fs.StringVar(&o.since, "since", "", "only records from this `time` on: a duration back from now (10m, 2h, 3d) or RFC 3339")
}

func (o *auditOptions) filter(now time.Time) (audit.Filter, error) {
	f := audit.Filter{Host: o.host, Decision: o.decision, Kind: o.kind, Session: o.session}
	if o.since != "" {
		t, err := audit.ParseSince(o.since, now)
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	return f, f.Validate()
}

func runAudit(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 && args[0] == "summary" {
		return runAuditSummary(e, args[1:])
	}
	var o auditOptions
	fs := flag.NewFlagSet("moat audit", flag.ContinueOnError)
	o.register(fs)
	follow := fs.Bool("follow", false, "after the file's records, print those appended to it, across rotations, until interrupted")
	fs.BoolVar(&o.json, "json", false, "print records as JSON lines instead of text")
	file, code, ok := parseAuditArgs(e, fs, args)
	if !ok {
		return code
	}
	filter, err := o.filter(time.Now())
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: audit: %v\n", err)
		return exitUsage
	}
	if file, ok = auditFile(e, file); !ok {
		return exitUsage
	}

	out := bufio.NewWriter(e.stdout)
	jw := audit.NewStreamWriter(out)
	emit := func(r audit.Record) error {
		if !filter.Match(r) {
			return nil
		}
		if o.json {
			return jw.Write(r)
		}
		_, err := fmt.Fprintln(out, audit.FormatText(r))
		return err
	}
	var bad int
	switch {
	case *follow && file != "-":
		bad, err = audit.Follow(ctx, file, func(r audit.Record) error {
			if err := emit(r); err != nil {
				return err
			}
			return out.Flush() // a follower wants each record as it comes
		})
	default:
		bad, err = scanAuditFile(e, file, emit)
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return finishAudit(e, file, bad, err)
}

func runAuditSummary(e *env, args []string) int {
	var o auditOptions
	fs := flag.NewFlagSet("moat audit summary", flag.ContinueOnError)
	o.register(fs)
	top := fs.Int("top", 10, "show the `N` busiest hosts and rules (0: all)")
	fs.BoolVar(&o.json, "json", false, "print the summary as JSON")
	file, code, ok := parseAuditArgs(e, fs, args)
	if !ok {
		return code
	}
	if *top < 0 {
		fmt.Fprintf(e.stderr, "moat: audit: --top %d: want 0 (all) or more\n", *top)
		return exitUsage
	}
	filter, err := o.filter(time.Now())
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: audit: %v\n", err)
		return exitUsage
	}
	if file, ok = auditFile(e, file); !ok {
		return exitUsage
	}
	var z audit.Summarizer
	bad, err := scanAuditFile(e, file, func(r audit.Record) error {
		if filter.Match(r) {
			z.Add(r)
		}
		return nil
	})
	if err == nil {
		s := z.Summary()
		if o.json {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(s.Top(*top))
		} else {
			err = s.WriteText(e.stdout, *top)
		}
	}
	return finishAudit(e, file, bad, err)
}

// parseAuditArgs parses flags and at most one FILE, in any order, and
// returns FILE ("" if none was given). When ok is false, code is the exit
// code.
func parseAuditArgs(e *env, fs *flag.FlagSet, args []string) (file string, code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, auditUsage+"\nflags:\n")
			fs.SetOutput(e.stdout)
			fs.PrintDefaults()
			return "", exitOK, false
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "moat: audit: %v\n%s", err, auditUsage)
			return "", exitUsage, false
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is a FILE
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) > 1 {
		fmt.Fprintf(e.stderr, "moat: audit: %d files given (%s); want at most one\n%s", len(pos), strings.Join(pos, " "), auditUsage)
		return "", exitUsage, false
	}
	if len(pos) == 1 {
		return pos[0], exitOK, true
	}
	return "", exitOK, true
}

// auditFile returns file, or the default path when it is "". When ok is
// false, it has reported why there is none.
func auditFile(e *env, file string) (string, bool) {
	if file != "" {
		return file, true
	}
	if file = audit.DefaultPath(e.getenv); file == "" {
		fmt.Fprintln(e.stderr, "moat: audit: no FILE given, and neither XDG_STATE_HOME nor HOME is set to find the default")
		return "", false
	}
	return file, true
}

// scanAuditFile scans FILE, or standard input for "-".
func scanAuditFile(e *env, file string, fn func(audit.Record) error) (bad int, err error) {
	if file == "-" {
		return audit.Scan(e.stdin, fn)
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return audit.Scan(f, fn)
}

// finishAudit reports skipped lines and the error, if any, and returns the
// exit code.
func finishAudit(e *env, file string, bad int, err error) int {
	if bad > 0 {
		name := file
		if file == "-" {
			name = "standard input"
		}
		lines := "lines"
		if bad == 1 {
			lines = "line"
		}
		fmt.Fprintf(e.stderr, "moat: audit: skipped %d malformed %s in %s\n", bad, lines, name)
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(e.stderr, "moat: audit: %v; is the proxy writing elsewhere? (--audit / audit.file)\n", err)
	default:
		fmt.Fprintf(e.stderr, "moat: audit: %v\n", err)
	}
	return exitInternal
}
