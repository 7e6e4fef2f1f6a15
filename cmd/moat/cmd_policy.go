package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

func init() {
	commands["policy"] = command{summary: "show the effective policy, validate policy files, or explain its risks", run: runPolicy}
}

const policyUsage = `usage: moat policy show [--policy FILE] [--profile NAME] [--managed FILE]
                        [--user-policy FILE] [--json]
       moat policy validate [--layer project|user|managed] FILE...
       moat policy explain [--policy FILE] [--profile NAME] [--json]

show prints the effective policy (the profile, the user, project and managed
files stacked) as YAML, each value followed by the file and line it comes
from; --json prints it as JSON with the same origins.

validate checks each FILE as a layer of the given kind (default project),
stacked on the profile it names, and prints "FILE: ok" for each good one.

explain reports the lethal trifecta: whether one session may hold private
data, take in untrusted input and send data out, and what to take away to
break it; exit status 1 when it may.
`

func runPolicy(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, policyUsage)
		return exitUsage
	}
	switch args[0] {
	case "show":
		return runPolicyShow(e, args[1:])
	case "validate":
		return runPolicyValidate(e, args[1:])
	case "explain":
		return cmdPolicyExplain(ctx, e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, policyUsage)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "moat: policy: unknown subcommand %q; want show, validate or explain\n", args[0])
	return exitUsage
}

// parsePolicyFlags parses a subcommand's flags; ok is false when the
// command should exit with code.
func parsePolicyFlags(e *env, fs *flag.FlagSet, args []string) (code int, ok bool) {
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), policyUsage, "\nflags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

func runPolicyShow(e *env, args []string) int {
	fs := flag.NewFlagSet("moat policy show", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "print the policy as JSON, every value with its origin")
	if code, ok := parsePolicyFlags(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "moat: policy show: unexpected argument %q; name the project file with --policy\n", fs.Arg(0))
		return exitUsage
	}
	p, err := pf.load(e)
	if err != nil {
		printPolicyErrors(e.stderr, err)
		return exitConfig
	}
	out := p.FormatYAML()
	if *asJSON {
		if out, err = p.FormatJSON(); err != nil {
			fmt.Fprintf(e.stderr, "moat: policy show: %v\n", err)
			return exitInternal
		}
	}
	if _, err := e.stdout.Write(out); err != nil {
		fmt.Fprintf(e.stderr, "moat: policy show: %v\n", err)
		return exitInternal
	}
	return exitOK
}

func runPolicyValidate(e *env, args []string) int {
	fs := flag.NewFlagSet("moat policy validate", flag.ContinueOnError)
	layer := fs.String("layer", policy.LayerProject, "check the files as this `layer`: project, user or managed")
	if code, ok := parsePolicyFlags(e, fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprint(e.stderr, policyUsage)
		return exitUsage
	}
	load := map[string]func(string) (*policy.Policy, error){
		policy.LayerProject: policy.LoadFile,
		policy.LayerUser: func(f string) (*policy.Policy, error) {
			return policy.Load(policy.LoadOptions{User: f, UserRequired: true})
		},
		policy.LayerManaged: func(f string) (*policy.Policy, error) {
			return policy.Load(policy.LoadOptions{Managed: f, ManagedRequired: true})
		},
	}[*layer]
	if load == nil {
		fmt.Fprintf(e.stderr, "moat: policy validate: --layer %q: want project, user or managed\n", *layer)
		return exitUsage
	}
	code := exitOK
	for _, f := range fs.Args() {
		if _, err := load(f); err != nil {
			printPolicyErrors(e.stderr, err)
			code = exitConfig
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", f)
	}
	return code
}

// printPolicyErrors prints each problem on its own line:
// "moat: policy moat.yaml:14: network.allow[2]: ...".
func printPolicyErrors(w io.Writer, err error) {
	var es policy.Errors
	if !errors.As(err, &es) {
		fmt.Fprintf(w, "moat: policy %v\n", err)
		return
	}
	for _, e := range es {
		fmt.Fprintf(w, "moat: policy %s\n", strings.ReplaceAll(e.Error(), "\n", " "))
	}
}
