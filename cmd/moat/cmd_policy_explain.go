package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/moatsec/moat/internal/permission"
)

// cmdPolicyExplain reports the lethal trifecta of the effective policy:
// whether one session may hold private data, take in untrusted input and
// send data out, and what to take away to break it. Exit status: 0 when it
// is broken, 1 when it is lethal, 3 when the policy does not load.
func cmdPolicyExplain(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat policy explain", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if code, ok := parsePolicyFlags(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "moat: policy explain: unexpected argument %q; name the project file with --policy\n", fs.Arg(0))
		return exitUsage
	}
	p, err := pf.load(e)
	if err != nil {
		printPolicyErrors(e.stderr, err)
		return exitConfig
	}
	t := permission.Explain(p)
	if *asJSON {
		out, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			fmt.Fprintf(e.stderr, "moat: policy explain: %v\n", err)
			return exitInternal
		}
		fmt.Fprintf(e.stdout, "%s\n", out)
	} else {
		fmt.Fprint(e.stdout, t.FormatText())
	}
	if t.Lethal {
		return exitFailure
	}
	return exitOK
}
