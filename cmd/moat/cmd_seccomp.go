package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/moatsec/moat/internal/oci"
)

func init() {
	commands["seccomp"] = command{"moat seccomp export [FILE]: write moat's container seccomp profile (JSON for docker --security-opt seccomp=FILE)", cmdSeccomp}
}

// cmdSeccomp writes the profile the container tiers use: Docker's default
// tightened with moat's denials, for people who run containers themselves.
func cmdSeccomp(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat seccomp", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat seccomp export [FILE]   (standard output without FILE)")
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] != "export" || len(rest) > 2 {
		fs.Usage()
		return exitUsage
	}
	b, err := oci.SeccompJSON()
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitInternal
	}
	if len(rest) == 1 {
		if _, err := e.stdout.Write(b); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if err := os.WriteFile(rest[1], b, 0o644); err != nil {
		fmt.Fprintf(e.stderr, "moat seccomp export: %v\n", err)
		return exitFailure
	}
	return exitOK
}
