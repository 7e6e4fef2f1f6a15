package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/permission"
	"github.com/moatsec/moat/internal/policy"
)

func init() {
	commands["check"] = command{"decide a command or tool call under the permission rules", cmdCheck}
}

// exitAsk is moat check's status for an "ask" decision (allow is 0, deny
// exitFailure).
const exitAsk = 5

// permFlags are the flags moat check and moat hook share.
type permFlags struct {
	policyFlags
	audit          string
	claudeSettings bool
	severity       string
}

func (pf *permFlags) register(fs *flag.FlagSet, e *env) {
	pf.policyFlags.register(fs)
	fs.StringVar(&pf.audit, "audit", "", "audit log `FILE`; - for standard error (default: the policy's audit.file, else "+audit.DefaultPath(e.getenv)+")")
	fs.BoolVar(&pf.claudeSettings, "claude-settings", true, "also enforce the permission rules of Claude Code's settings files (managed, ~/.claude, the project's .claude)")
	fs.StringVar(&pf.severity, "severity", "", "how findings' severities map to verdicts, over the policy's permissions.severity: `LIST` of severity=verdict (default critical=deny,high=ask)")
}

// engine loads the policy and builds the permission engine.
func (pf *permFlags) engine(e *env, projectDir, cwd string) (*permission.Engine, *policy.Policy, error) {
	pol, err := pf.load(e)
	if err != nil {
		return nil, nil, err
	}
	rules, err := permission.PolicyRules(pol)
	if err != nil {
		return nil, nil, err
	}
	if pf.claudeSettings {
		cr, err := permission.LoadClaudeRules(permission.ClaudeSources(projectDir, cwd, e.getenv("HOME")))
		if err != nil {
			return nil, nil, err
		}
		rules = append(rules, cr...)
	}
	o := permission.PolicyOptions(pol)
	o.Resolve = resolveLinks
	if pf.severity != "" {
		sev, err := permission.SeverityMap(pf.severity, o.Severity)
		if err != nil {
			return nil, nil, fmt.Errorf("--severity: %v", err)
		}
		// A managed lock on the mapping holds against the flag too: the
		// flag may only tighten it.
		if lock := severityLock(pol); lock != "" {
			if s := permission.LoosensSeverity(sev, o.Severity); s != "" {
				return nil, nil, fmt.Errorf("--severity: %q: loosens %s findings, but permissions.severity is locked by %s", pf.severity, s, lock)
			}
		}
		o.Severity = sev
	}
	return permission.New(rules, o), pol, nil
}

// severityLock cites the managed lock on permissions.severity, or "".
func severityLock(p *policy.Policy) string {
	for _, l := range p.Locks {
		if l.Value == "permissions.severity" || l.Value == "permissions" {
			return l.Origin.String()
		}
	}
	return ""
}

// resolveLinks follows symbolic links in the longest existing prefix of p.
func resolveLinks(p string) string {
	rest := ""
	for dir := p; ; {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return p
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// openPermAudit opens the audit stream; "-" is standard error, so that a
// hook's standard output carries only its answer.
func openPermAudit(e *env, path string, pol *policy.Policy) (*audit.Writer, error) {
	if path == "-" {
		return audit.NewStreamWriter(e.stderr), nil
	}
	if path == "" {
		// Inside moat run: decisions go to the run's audit stream, outside.
		if w := sandboxAuditWriter(e.getenv); w != nil {
			return w, nil
		}
	}
	return openAudit(e, path, pol)
}

// recordDecision writes one permission record to the audit stream.
func recordDecision(w *audit.Writer, session, tool string, input map[string]any, r permission.Result) {
	w.Record(audit.Record{Kind: audit.KindPermission, Session: session, Decision: r.Verdict.String(),
		Rule: r.Rule, Reason: r.Reason, Detail: permission.Describe(tool, input, 200)})
}

// checkInput turns moat check's argument into a tool input.
func checkInput(tool, arg string) map[string]any {
	switch tool {
	case "Bash":
		return map[string]any{"command": arg}
	case "Read", "Edit", "Write", "MultiEdit":
		return map[string]any{"file_path": arg}
	case "NotebookEdit":
		return map[string]any{"notebook_path": arg}
	case "Grep", "Glob", "LS":
		return map[string]any{"path": arg}
	case "WebFetch":
		return map[string]any{"url": arg}
	case "WebSearch":
		return map[string]any{"query": arg}
	}
	var m map[string]any
	if json.Unmarshal([]byte(arg), &m) == nil {
		return m
	}
	return map[string]any{}
}

func cmdCheck(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var pf permFlags
	pf.register(fs, e)
	tool := fs.String("tool", "Bash", "the `TOOL` the argument is for: Bash, Read, Edit, Write, WebFetch, mcp__srv__tool …")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	cwdFlag := fs.String("cwd", "", "working `DIR` the command runs in (default: the current directory)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat check [flags] ARG\n\nARG is the command (Bash), the path (Read, Edit …), the URL (WebFetch) or the\ntool input as JSON (other tools). Exit status: 0 allow, 1 deny, 5 ask.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "moat check: want exactly one argument (quote the command)")
		return exitUsage
	}
	cwd := *cwdFlag
	if cwd == "" {
		var err error
		if cwd, err = os.Getwd(); err != nil {
			fmt.Fprintf(e.stderr, "moat check: %v\n", err)
			return exitInternal
		}
	}
	cwd, _ = filepath.Abs(cwd)
	eng, pol, err := pf.engine(e, cwd, cwd)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	rec, err := openPermAudit(e, pf.audit, pol)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat check: %v\n", err)
		return exitInternal
	}
	defer rec.Close()
	input := checkInput(*tool, fs.Arg(0))
	r := eng.Check(permission.Request{Tool: *tool, Input: input, Cwd: cwd, Home: e.getenv("HOME")})
	recordDecision(rec, "", *tool, input, r)
	if *asJSON {
		out := struct {
			Decision string               `json:"decision"`
			Rule     string               `json:"rule"`
			Reason   string               `json:"reason"`
			Findings []permission.Finding `json:"findings"`
		}{r.Verdict.String(), r.Rule, r.Reason, r.Findings}
		if out.Findings == nil {
			out.Findings = []permission.Finding{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		fmt.Fprintf(e.stdout, "%s: %s\nrule: %s\n", r.Verdict, r.Reason, r.Rule)
		for _, f := range r.Findings {
			fmt.Fprintf(e.stdout, "finding: %s/%s at %s: %s\n", f.Category, f.Severity, f.Pos, f.Reason)
		}
	}
	switch r.Verdict {
	case policy.Allow:
		return exitOK
	case policy.Ask:
		return exitAsk
	}
	return exitFailure
}
