package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/permission"
)

func init() {
	commands["hook"] = command{"Claude Code hooks: hook claude (PreToolUse), hook install, hook serve", cmdHook}
}

func cmdHook(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: moat hook claude|install|serve [flags]")
		return exitUsage
	}
	switch args[0] {
	case "claude":
		return cmdHookClaude(ctx, e, args[1:])
	case "install":
		return cmdHookInstall(ctx, e, args[1:])
	case "serve":
		return cmdHookServe(ctx, e, args[1:])
	}
	fmt.Fprintf(e.stderr, "moat hook: unknown subcommand %q; want claude, install or serve\n", args[0])
	return exitUsage
}

// cmdHookClaude answers one PreToolUse call: JSON in on stdin, the
// decision as JSON on stdout, exit 0. When moat cannot decide (bad input,
// a policy that does not load) it fails closed: a deny on stdout and the
// reason on stderr with exit status 2, which Claude Code treats as a block
// even if it cannot read the JSON.
func cmdHookClaude(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat hook claude", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var pf permFlags
	pf.register(fs, e)
	if err := fs.Parse(args); err != nil {
		return failHook(e, fmt.Errorf("bad flags: %v", err))
	}
	in, err := permission.ReadHookInput(e.stdin)
	if err != nil {
		return failHook(e, err)
	}
	if in.Cwd == "" || !filepath.IsAbs(in.Cwd) {
		return failHook(e, fmt.Errorf("hook input cwd %q is not an absolute path", in.Cwd))
	}
	project := e.getenv("CLAUDE_PROJECT_DIR")
	if project == "" {
		project = in.Cwd
	}
	eng, pol, err := pf.engine(e, project, in.Cwd)
	if err != nil {
		return failHook(e, err)
	}
	rec, err := openPermAudit(e, pf.audit, pol)
	if err != nil {
		return failHook(e, err)
	}
	defer rec.Close()
	r := eng.CheckHook(in, e.getenv("HOME"))
	recordDecision(rec, in.SessionID, in.ToolName, in.ToolInput, r)
	json.NewEncoder(e.stdout).Encode(permission.HookAnswer(r))
	return exitOK
}

func failHook(e *env, err error) int {
	json.NewEncoder(e.stdout).Encode(permission.FailClosed(err))
	fmt.Fprintf(e.stderr, "moat: %v\n", err)
	return 2
}

// cmdHookInstall adds moat to a project's .claude/settings.json.
func cmdHookInstall(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat hook install", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	project := fs.String("project", ".", "project `DIR` whose .claude/settings.json gets the hook")
	command := fs.String("command", "", "the hook `COMMAND` (default: this moat binary's absolute path, then \"hook claude\")")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "moat hook install: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cmd := *command
	if cmd == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(e.stderr, "moat hook install: %v\n", err)
			return exitInternal
		}
		cmd = shellQuote(exe) + " hook claude"
	}
	path := filepath.Join(*project, ".claude", "settings.json")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		fmt.Fprintf(e.stderr, "moat hook install: %v\n", err)
		return exitInternal
	}
	out, changed, err := permission.InstallHook(old, cmd, "hook claude")
	if err != nil {
		fmt.Fprintf(e.stderr, "moat hook install: %s: %v\n", path, err)
		return exitConfig
	}
	if !changed {
		fmt.Fprintf(e.stdout, "%s: moat hook already installed\n", path)
		return exitOK
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fmt.Fprintf(e.stderr, "moat hook install: %v\n", err)
		return exitInternal
	}
	tmp := path + ".moat-tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		fmt.Fprintf(e.stderr, "moat hook install: %v\n", err)
		return exitInternal
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		fmt.Fprintf(e.stderr, "moat hook install: %v\n", err)
		return exitInternal
	}
	fmt.Fprintf(e.stdout, "%s: PreToolUse hook %q installed\n", path, cmd)
	return exitOK
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// cmdHookServe answers Claude Code's HTTP hooks (type "http"): POST the
// PreToolUse input, get the decision as JSON. The policy is loaded once.
func cmdHookServe(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat hook serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var pf permFlags
	pf.register(fs, e)
	listen := fs.String("listen", "127.0.0.1:8765", "`ADDR` to listen on")
	project := fs.String("project", ".", "project `DIR` whose Claude Code settings are read")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	dir, _ := filepath.Abs(*project)
	eng, pol, err := pf.engine(e, dir, dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	rec, err := openPermAudit(e, pf.audit, pol)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat hook serve: %v\n", err)
		return exitInternal
	}
	defer rec.Close()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat hook serve: %v\n", err)
		return exitInternal
	}
	home := e.getenv("HOME")
	srv := &http.Server{Handler: hookHandler(eng, rec, home), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	fmt.Fprintf(e.stderr, "moat hook serve: listening on http://%s\n", l.Addr())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(e.stderr, "moat hook serve: %v\n", err)
		return exitInternal
	}
	return exitOK
}

// hookHandler decides POSTed PreToolUse inputs. Bad input is answered
// with a deny (status 200, so Claude Code reads it).
func hookHandler(eng *permission.Engine, rec *audit.Writer, home string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "moat hook serve: POST a PreToolUse input", http.StatusMethodNotAllowed)
			return
		}
		var out permission.HookOutput
		in, err := permission.ReadHookInput(http.MaxBytesReader(w, r.Body, permission.MaxHookInput))
		if err == nil && !filepath.IsAbs(in.Cwd) {
			err = fmt.Errorf("hook input cwd %q is not an absolute path", in.Cwd)
		}
		if err != nil {
			out = permission.FailClosed(err)
			rec.Record(audit.Record{Kind: audit.KindPermission, Decision: "deny", Rule: "builtin:internal-error", Reason: err.Error()})
		} else {
			res := eng.CheckHook(in, home)
			recordDecision(rec, in.SessionID, in.ToolName, in.ToolInput, res)
			out = permission.HookAnswer(res)
		}
		var b bytes.Buffer
		json.NewEncoder(&b).Encode(out)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b.Bytes())
	})
}
