package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/moatsec/moat/internal/verify"
)

// __probe is moat verify's inside half; it is not listed in the help.
func init() {
	commands["__probe"] = command{"", cmdProbe}
}

func cmdProbe(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat __probe", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg := fs.String("config", "", "the harness's config `FILE`")
	one := fs.String("one", "", "run this probe in this process")
	park := fs.String("park", "", "be the host's bait process: wait until standard input closes")
	noop := fs.Bool("noop", false, "exit at once (a child the namespace probe starts)")
	tiocsti := fs.Bool("tiocsti", false, "push a character into the controlling terminal")
	var names listFlag
	fs.Var(&names, "probe", "run only this probe; repeatable")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	switch {
	case *noop:
		return exitOK
	case *park != "":
		io.Copy(io.Discard, os.Stdin)
		return exitOK
	case *tiocsti:
		return verify.TIOCSTIChild()
	case *cfg == "":
		fmt.Fprintln(e.stderr, "moat __probe: --config is required")
		return exitUsage
	case *one != "":
		if err := verify.RunOne(*cfg, *one, e.stdout); err != nil {
			fmt.Fprintf(e.stderr, "moat __probe: %v\n", err)
			return exitInternal
		}
		return exitOK
	}
	if err := verify.RunInside(ctx, *cfg, names, e.stdout); err != nil {
		fmt.Fprintf(e.stderr, "moat __probe: %v\n", err)
		return exitInternal
	}
	return exitOK
}
