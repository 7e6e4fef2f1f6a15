package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moatsec/moat/internal/workspace"
)

func init() {
	commands["scan"] = command{"find credential files and secrets in a directory before it is mounted", runScan}
}

const scanUsage = `usage: moat scan [DIR...] [--json] [--home] [--exclude PATTERN]...

Finds credential files by name (.env, id_rsa, *.pem, .aws/credentials, ...)
and secrets by content (gitleaks' default rules) below each DIR (default .),
or in the home directory's credential stores with --home. Files .gitignore
hides are scanned; .git/objects and what --exclude names are not.
Exit status: 0 clean, 1 findings, 2 usage, 4 a file or directory could not
be read.
`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// scanOutput is moat scan --json's document; paths are as the user named
// them (DIR/rel, or ~/rel with --home).
type scanOutput struct {
	Findings []workspace.Finding `json:"findings"`
	Skipped  []workspace.Skipped `json:"skipped"`
	Files    int                 `json:"files"`
	Bytes    int64               `json:"bytes"`
	Errors   []string            `json:"errors,omitempty"`
}

func runScan(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat scan", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, scanUsage); fs.PrintDefaults() }
	asJSON := fs.Bool("json", false, "print one JSON document: findings, skipped files, files and bytes scanned")
	home := fs.Bool("home", false, "scan the home directory's credential stores (~/.ssh, ~/.aws, ~/.config/gcloud, ...)")
	maxSize := fs.Int64("max-size", workspace.DefaultMaxFileSize, "skip the content of files larger than `BYTES`")
	var exclude stringList
	fs.Var(&exclude, "exclude", "skip paths matching this .dockerignore-style `PATTERN` (repeatable)")
	dirs, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if *maxSize <= 0 {
		fmt.Fprintln(e.stderr, "moat: scan: --max-size: want a positive number of bytes")
		return exitUsage
	}
	type target struct{ root, shown string }
	var targets []target
	if *home {
		h := e.getenv("HOME")
		if h == "" {
			fmt.Fprintln(e.stderr, "moat: scan --home: HOME is not set")
			return exitUsage
		}
		targets = append(targets, target{h, "~"})
	}
	for _, d := range dirs {
		targets = append(targets, target{d, d})
	}
	if len(targets) == 0 {
		targets = append(targets, target{".", "."})
	}

	o := workspace.ScanOptions{Exclude: exclude, MaxFileSize: *maxSize}
	var out scanOutput
	code := exitOK
	for i, t := range targets {
		var r *workspace.ScanReport
		if *home && i == 0 {
			r, err = workspace.ScanPaths(ctx, t.root, workspace.HomeLocations, o)
		} else {
			r, err = workspace.ScanDir(ctx, t.root, o)
		}
		if err != nil {
			if xe := (*workspace.ExcludeError)(nil); errors.As(err, &xe) {
				fmt.Fprintf(e.stderr, "moat: %v\n", err)
				return exitUsage
			}
			fmt.Fprintf(e.stderr, "moat: %v\n", err)
			out.Errors = append(out.Errors, err.Error())
			code = exitInternal
		}
		if r == nil {
			continue
		}
		for _, f := range r.Findings {
			f.Path = shownPath(t.shown, f.Path)
			out.Findings = append(out.Findings, f)
		}
		for _, s := range r.Skipped {
			s.Path = shownPath(t.shown, s.Path)
			out.Skipped = append(out.Skipped, s)
		}
		out.Files += r.Files
		out.Bytes += r.Bytes
	}
	if code == exitOK && len(out.Findings) > 0 {
		code = exitFailure
	}
	if *asJSON {
		if out.Findings == nil {
			out.Findings = []workspace.Finding{}
		}
		if out.Skipped == nil {
			out.Skipped = []workspace.Skipped{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(e.stderr, "moat: scan: %v\n", err)
			return exitInternal
		}
		return code
	}
	printFindings(e.stdout, out.Findings)
	files := map[string]bool{}
	for _, f := range out.Findings {
		files[f.Path] = true
	}
	fmt.Fprintf(e.stderr, "moat: scan: %d findings in %d files; %d files (%s) scanned, %d skipped (--json lists them)\n",
		len(out.Findings), len(files), out.Files, humanBytes(out.Bytes), len(out.Skipped))
	return code
}

// printFindings writes one line per finding: path:line: rule: excerpt, or
// path: rule: excerpt for a file found by its name.
func printFindings(w io.Writer, fs []workspace.Finding) {
	for _, f := range fs {
		p := printablePath(f.Path)
		if f.Line > 0 {
			p += ":" + strconv.Itoa(f.Line)
		}
		fmt.Fprintf(w, "%s: %s: %s\n", p, f.Rule, f.Excerpt)
	}
}

// shownPath joins a finding's path to the root as the user named it.
func shownPath(root, rel string) string {
	if root == "~" {
		return "~/" + rel
	}
	return path.Join(filepath.ToSlash(root), rel)
}

// printablePath quotes a path a terminal would act on (control characters,
// invalid UTF-8) or that would break the line's format.
func printablePath(p string) string {
	for _, r := range p {
		if r < ' ' || r == 0x7f || r == '\ufffd' || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(p)
		}
	}
	return p
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
