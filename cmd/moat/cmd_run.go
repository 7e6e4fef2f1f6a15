package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/proxy"
	"github.com/moatsec/moat/internal/sandbox"
)

func init() {
	commands["run"] = command{"run a command in the native sandbox: moat run [flags] -- CMD [ARGS…]", cmdRun}
}

// exitSandbox is moat run's status when the sandbox could not start the
// command (docker run's convention; 126 and 127 are exec's).
const exitSandbox = 125

func cmdRun(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat run [flags] -- CMD [ARGS…]")
		fs.PrintDefaults()
	}
	var pf policyFlags
	pf.register(fs)
	var iso isolationFlags
	iso.register(fs)
	var allow, write listFlag
	fs.Var(&allow, "allow-domain", "allow egress to `DOMAIN` (example.com, *.example.com, host:port); repeatable")
	fs.Var(&write, "write", "make `PATH` writable too; repeatable")
	readOnly := fs.Bool("read-only", false, "make nothing writable but what --write names (drops the policy's filesystem.write)")
	wsMode := fs.String("workspace", "", workspaceUsage)
	noNetwork := fs.Bool("no-network", false, "no network at all: no proxy, no forwarder")
	settings := fs.String("settings", "", "import a sandbox-runtime settings `FILE` (allowedDomains, denyRead, allowWrite, …)")
	auditPath := fs.String("audit", "", "audit log `FILE` (default: the policy's audit.file, else "+audit.DefaultPath(e.getenv)+")")
	tty := fs.String("tty", "auto", "give the command a new terminal: auto (when standard input and output are terminals), always, never")
	quiet := fs.Bool("q", false, "no summary of refusals at exit")
	verbose := fs.Bool("v", false, "report the sandbox's layers and limits on standard error")
	var endpoints listFlag
	fs.Var(&endpoints, "endpoint", "reverse endpoint `NAME=https://host[/base]@127.0.0.1:PORT` inside the sandbox, forwarded to the upstream with its credentials; replaces the policy's endpoint of that name; repeatable")
	upstreamCA := fs.String("upstream-ca", "", "PEM `FILE` of extra roots to verify upstream servers with (the system's roots are always used)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(e.stderr, "moat run: no command; write moat run [flags] -- CMD [ARGS…]")
		return exitUsage
	}
	if *tty != "auto" && *tty != "always" && *tty != "never" {
		fmt.Fprintf(e.stderr, "moat run: --tty %q: write auto, always or never\n", *tty)
		return exitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	var tr *sandbox.Trace // MOAT_TRACE_START=1: how long each start-up step takes
	if e.getenv("MOAT_TRACE_START") == "1" {
		tr = sandbox.NewTrace(e.stderr)
	}

	pol, err := pf.load(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	tr.Mark("policy")
	var notes []string
	var allowUnix bool
	if *settings != "" {
		data, err := os.ReadFile(*settings)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat run: --settings: %v\n", err)
			return exitConfig
		}
		ov, n, err := sandbox.ImportSettings(*settings, data)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat run: %v\n", err)
			return exitConfig
		}
		notes = append(notes, n...)
		if pol, err = ov.Apply(pol); err != nil {
			fmt.Fprintf(e.stderr, "moat run: %v\n", err)
			return exitConfig
		}
		allowUnix = ov.AllowUnixSockets
	}
	pol, err = sandbox.Overrides{AllowDomains: allow, Write: write, ReadOnly: *readOnly, NoNetwork: *noNetwork}.Apply(pol)
	if err == nil {
		iso.projectVouched = pf.project != ""
		pol, err = iso.resolve(pol)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat run: %v\n", err)
		return exitUsage
	}

	rn := &runNet{}
	if !*noNetwork {
		if rn, err = resolveRunNet(ctx, e, pol, endpoints, *upstreamCA); err != nil {
			fmt.Fprintf(e.stderr, "moat run: %v\n", err)
			return exitConfig
		}
		notes = append(notes, rn.Notes...)
	}

	session, token := newSession()
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(e.stderr, "moat run: working directory: %v\n", err)
		return exitInternal
	}
	auditFile := *auditPath
	if auditFile == "" {
		auditFile = pol.Audit.File.Value
	}
	if auditFile == "" {
		auditFile = audit.DefaultPath(e.getenv)
	}
	spec, cnotes, err := sandbox.Compile(pol, sandbox.CompileOptions{
		Argv: argv, Dir: cwd, Home: e.getenv("HOME"), Environ: os.Environ(),
		Egress: !*noNetwork, ProxyUser: session, ProxyToken: token,
		Protect: []string{auditFile},
		Mask:    rn.Mask, Endpoints: append(rn.Ports(), sandbox.EndpointPort{Name: auditService, Port: auditPort}),
		Placeholders: rn.Placeholders,
	})
	if err == nil && spec.Egress {
		spec.Env = append(spec.Env, auditEnv+"="+auditURL())
	}
	if err == nil {
		err = checkSecretEnv(spec.Env, pol, rn)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat run: %v\n", err)
		return exitConfig
	}
	spec.AllowUnixSockets = allowUnix
	if spec.Egress {
		notes = append(notes, prepareClaudeState(e.getenv("HOME"), pol, rn.Placeholders)...)
	}
	notes = append(notes, cnotes...)
	ws, code := setupWorkspace(ctx, e, pol, spec, *wsMode, session, argv, iso.tier)
	if code != 0 {
		return code
	}
	defer ws.failed(e) // unless exited says how it ended
	notes = append(notes, ws.notes...)
	tr.Mark("compile")

	rec, err := openAudit(e, auditFile, pol)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat run: %v\n", err)
		return exitInternal
	}
	defer rec.Close()
	refusals := &refusalRecorder{next: rec, session: session}

	var egress *sandbox.Egress
	var srv *proxy.Server
	serveDone := make(chan struct{})
	if spec.Egress {
		egress = sandbox.NewEgress()
		srv = &proxy.Server{Recorder: refusals, Log: log, Sessions: map[string]string{session: token},
			Credentials: rn.Credentials, UpstreamTLS: rn.UpstreamTLS}
		srv.SetDecider(pol)
		for _, ep := range rn.Endpoints {
			// Registered before the sandbox starts: its forwarder asks for
			// the endpoint by name.
			go srv.ServeEndpoint(egress.Endpoint(ep.Name), ep.Endpoint)
			log.Debug("endpoint", "name", ep.Name, "inside", fmt.Sprintf("http://127.0.0.1:%d", ep.Port), "upstream", ep.Upstream.String(), "origin", ep.Origin)
		}
		go serveSandboxAudit(egress.Endpoint(auditService), rec, session)
		go func() {
			srv.Serve(egress)
			close(serveDone)
		}()
	} else {
		close(serveDone)
	}
	tr.Mark("audit, proxy")

	in, out, errf := fileOf(e.stdin, os.Stdin), fileOf(e.stdout, os.Stdout), fileOf(e.stderr, os.Stderr)
	useTTY := *tty == "always" || *tty == "auto" && sandbox.IsTerminal(in) && sandbox.IsTerminal(out)
	if useTTY && !sandbox.IsTerminal(in) {
		fmt.Fprintln(e.stderr, "moat run: --tty always: standard input is not a terminal")
		return exitUsage
	}
	for _, n := range notes {
		fmt.Fprintf(e.stderr, "moat: note: %s\n", n)
	}
	start := time.Now()
	sb, err := iso.start(ctx, spec, sandbox.Options{
		Stdin: in, Stdout: out, Stderr: errf, TTY: useTTY, Egress: egress, ForwardSignals: true, Log: log, Trace: tr,
	}, log)
	if err != nil {
		stopProxy(ctx, srv, egress, serveDone)
		code := exitSandbox
		var se *sandbox.StageError
		if errors.As(err, &se) && se.Code != 0 {
			code = se.Code
		}
		rec.Record(audit.Record{Kind: audit.KindLifecycle, Session: session, Event: "sandbox-failed", Decision: "deny", Detail: err.Error()})
		fmt.Fprintf(e.stderr, "moat: sandbox: %v\n", err)
		return code
	}
	for _, n := range sb.Notes {
		fmt.Fprintf(e.stderr, "moat: note: %s\n", n)
	}
	log.Debug("sandbox", "session", session, "resources", sb.Resources, "write", strings.Join(spec.Write, ","),
		"masked", len(spec.MaskDirs)+len(spec.MaskFiles), "protected", len(spec.Protect))
	rec.Record(audit.Record{Kind: audit.KindLifecycle, Session: session, Event: "sandbox-start", Decision: "allow",
		Detail: fmt.Sprintf("command %s; policy %s; resources %s", argv[0], layerNames(pol), sb.Resources)})
	status, werr := sb.Wait()
	stopProxy(ctx, srv, egress, serveDone)
	tr.Mark("proxy stopped")
	rec.Record(audit.Record{Kind: audit.KindLifecycle, Session: session, Event: "sandbox-stop", Decision: "allow",
		Detail: fmt.Sprintf("exit status %d", status), Duration: float64(time.Since(start).Microseconds()) / 1000})
	if werr != nil {
		fmt.Fprintf(e.stderr, "moat: sandbox: %v\n", werr)
	}
	if !*quiet {
		refusals.summary(e.stderr)
	}
	ws.exited(e, status)
	return status
}

func stopProxy(ctx context.Context, srv *proxy.Server, eg *sandbox.Egress, done chan struct{}) {
	if srv == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	eg.Close()
	<-done
}

// fileOf returns w as an *os.File when it is one, else def: the sandbox
// hands file descriptors to the command.
func fileOf(w any, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}

// newSession names the run's proxy session; the token is a secret that
// only the command's environment holds.
func newSession() (name, token string) {
	var b [16]byte
	rand.Read(b[:6])
	name = "run-" + hex.EncodeToString(b[:6])
	rand.Read(b[:])
	return name, hex.EncodeToString(b[:])
}

// refusalRecorder passes records on and keeps the run's refusals for the
// summary at exit.
type refusalRecorder struct {
	next    proxy.Recorder
	session string
	mu      sync.Mutex
	denied  map[string]*refusal
}

type refusal struct {
	count int
	rule  string
}

func (r *refusalRecorder) Record(rec audit.Record) {
	r.next.Record(rec)
	if rec.Decision != "deny" || rec.Session != r.session || rec.Host == "" {
		return
	}
	key := rec.Host
	if rec.Port != 0 && rec.Port != 80 && rec.Port != 443 {
		key = fmt.Sprintf("%s:%d", rec.Host, rec.Port)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.denied == nil {
		r.denied = map[string]*refusal{}
	}
	d := r.denied[key]
	if d == nil {
		d = &refusal{rule: rec.Rule}
		r.denied[key] = d
	}
	d.count++
}

// summary prints what was refused, with what would allow it.
func (r *refusalRecorder) summary(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.denied) == 0 {
		return
	}
	keys := make([]string, 0, len(r.denied))
	for k := range r.denied {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "moat: refused during this run:")
	for _, k := range keys {
		d := r.denied[k]
		times := ""
		if d.count > 1 {
			times = fmt.Sprintf(" (%d×)", d.count)
		}
		hint := ""
		if d.rule == policy.RuleDefaultDeny {
			hint = "; to allow: --allow-domain " + k
		}
		fmt.Fprintf(w, "  network  %s%s: %s%s\n", k, times, d.rule, hint)
	}
}
