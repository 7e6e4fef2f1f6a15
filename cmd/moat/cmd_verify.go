package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/moatsec/moat/internal/sandbox"
	"github.com/moatsec/moat/internal/verify"
)

func init() {
	commands["verify"] = command{"run escape attempts inside a sandbox and print the scorecard: moat verify [--isolation T] [--json]", cmdVerify}
}

// cmdVerify runs the battery through `moat run` under the user's policy.
// Exit status: 0 all held, 1 something escaped, 2 usage, 3 the policy, 4
// the battery could not run.
func cmdVerify(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat verify [--isolation T] [--runtime R] [--image I] [policy flags] [--json] [--probe NAME]…")
		fmt.Fprintln(e.stderr, "\nRuns escape attempts inside the sandbox `moat run` makes under your policy and prints a scorecard.")
		fmt.Fprintln(e.stderr, "Exit status: 0 all held, 1 something escaped, 2 usage, 3 policy, 4 could not run.")
		fs.PrintDefaults()
	}
	var pf policyFlags
	pf.register(fs)
	isolation := fs.String("isolation", "", "the tier to verify: native, container, gvisor or docker (default: moat run's)")
	runtime := fs.String("runtime", "", "the OCI runtime for the container tiers (runc, crun, runsc)")
	image := fs.String("image", "", "the image for the container tiers")
	asJSON := fs.Bool("json", false, "write the report as JSON")
	keep := fs.Bool("keep", false, "keep the scratch directory (its path is in the report)")
	list := fs.Bool("list", false, "list the probes and exit")
	var probeNames listFlag
	fs.Var(&probeNames, "probe", "run only the probe `NAME`; repeatable (see --list)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "moat verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *list {
		for _, p := range verify.Catalogue() {
			fmt.Fprintf(e.stdout, "%-22s %-18s %s\n", p.Group, p.Name, p.Title)
		}
		return exitOK
	}
	for _, n := range probeNames {
		if _, ok := verify.Lookup(n); !ok {
			fmt.Fprintf(e.stderr, "moat verify: --probe %q: no such probe; moat verify --list names them\n", n)
			return exitUsage
		}
	}
	pol, err := pf.load(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(e.stderr, "moat verify: %v\n", err)
		return exitInternal
	}
	var runArgs []string
	tier := *isolation
	for _, f := range [][2]string{{"--isolation", *isolation}, {"--runtime", *runtime}, {"--image", *image}} {
		if f[1] != "" {
			runArgs = append(runArgs, f[0], f[1])
		}
	}
	if tier == "" {
		tier = pol.Isolation.Tier.Value
	}
	rep, err := verify.Run(ctx, verify.Options{Moat: self, Policy: pol, RunArgs: runArgs, Tier: tier,
		Probes: probeNames, Environ: os.Environ(), Keep: *keep})
	var ce *verify.ConfigError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(e.stderr, "moat verify: %v\n", err)
		return exitConfig
	case err != nil && rep == nil:
		fmt.Fprintf(e.stderr, "moat verify: could not run the battery: %v\n", err)
		return exitInternal
	}
	if *asJSON {
		verify.WriteJSON(e.stdout, rep)
	} else {
		out := fileOf(e.stdout, os.Stdout)
		colour := out == e.stdout && sandbox.IsTerminal(out) && e.getenv("NO_COLOR") == ""
		verify.Scorecard(e.stdout, rep, colour)
	}
	if _, esc, _ := rep.Counts(); esc > 0 {
		return exitFailure
	}
	return exitOK
}
