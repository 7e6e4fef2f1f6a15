package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/moatsec/moat/internal/workspace"
)

func init() {
	commands["stage"] = command{"make a sanitised copy of a directory for an agent", runStage}
}

const stageUsage = `usage: moat stage SRC DEST [--ignore-file F] [--no-scan] [--json]

Copies the directory SRC into DEST (new or empty), leaving out credential
files by name, files in which the scanner finds a secret (unless --no-scan),
paths matching the .dockerignore-style patterns of SRC/.moatignore or F,
devices, fifos and sockets, and symlinks that lead outside SRC. Modes, times,
directories and symlinks are kept; setuid and setgid bits are removed.
Prints every path left out and why. Exit status: 0 copied (omissions are not
failures), 2 usage, 4 the copy failed and was removed.
`

func runStage(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat stage", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, stageUsage); fs.PrintDefaults() }
	ignoreFile := fs.String("ignore-file", "", "read the patterns of what to leave out from `F` instead of SRC/.moatignore")
	noScan := fs.Bool("no-scan", false, "do not scan file contents for secrets (credential files are still left out by name)")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) != 2 {
		fmt.Fprintf(e.stderr, "moat: stage: want SRC and DEST, got %d arguments\n%s", len(pos), stageUsage)
		return exitUsage
	}
	src, dst := pos[0], pos[1]
	rep, err := workspace.Stage(ctx, src, dst, workspace.StageOptions{IgnoreFile: *ignoreFile, Scan: !*noScan})
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: stage: %v\n", err)
		if _, ok := errors.AsType[*workspace.StageArgError](err); ok {
			return exitUsage
		}
		return exitInternal
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(e.stderr, "moat: stage: %v\n", err)
			return exitInternal
		}
		return exitOK
	}
	var b strings.Builder
	for _, o := range rep.Omitted {
		fmt.Fprintf(&b, "left out  %s  (%s)\n", stagePath(o.Path), o.Reason)
	}
	for _, c := range rep.Changed {
		fmt.Fprintf(&b, "changed   %s  (%s)\n", stagePath(c.Path), c.Reason)
	}
	fmt.Fprintf(&b, "staged %s into %s: %d files and symlinks (%s), %d directories; %d left out",
		src, dst, rep.Copied, stageBytes(rep.Bytes), rep.Dirs, len(rep.Omitted))
	if rep.IgnoreFile != "" {
		fmt.Fprintf(&b, "; patterns from %s", rep.IgnoreFile)
	}
	b.WriteString("\n")
	fmt.Fprint(e.stdout, b.String())
	return exitOK
}

// stagePath quotes a path with spaces or control characters, so that a
// hostile name cannot forge or break report lines.
func stagePath(p string) string {
	if strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(p)
	}
	return p
}

func stageBytes(n int64) string {
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
