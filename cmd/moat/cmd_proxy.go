package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/proxy"
)

func init() {
	commands["proxy"] = command{"run the egress proxy under the policy", cmdProxy}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdProxy(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat proxy", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var pf policyFlags
	pf.register(fs)
	var listens listFlag
	fs.Var(&listens, "listen", "`ADDR` to listen on: host:port, or unix:/path/to.sock; repeatable (default 127.0.0.1:3128)")
	auditPath := fs.String("audit", "", "audit log `FILE`; - for standard output (default: the policy's audit.file, else "+audit.DefaultPath(e.getenv)+")")
	sessionsFile := fs.String("sessions", "", "`FILE` of NAME:TOKEN lines; when given, clients must authenticate and audit records name the session")
	maxConns := fs.Int("max-conns", proxy.DefaultMaxConns, "concurrent client connections")
	headerTimeout := fs.Duration("header-timeout", proxy.DefaultHeaderTimeout, "time allowed to read a request's headers")
	idleTimeout := fs.Duration("idle-timeout", proxy.DefaultIdleTimeout, "time a kept-alive connection may sit idle between requests")
	maxHeaderBytes := fs.Int("max-header-bytes", proxy.DefaultMaxHeaderBytes, "largest request line and headers accepted")
	var endpoints listFlag
	fs.Var(&endpoints, "endpoint", "reverse endpoint `NAME=https://host[@ADDR]`: plain HTTP on ADDR (default 127.0.0.1:0) forwarded to the upstream with its credentials; repeatable")
	upstreamCA := fs.String("upstream-ca", "", "PEM `FILE` of extra roots to verify upstream servers with (the system's roots are always used)")
	envFile := fs.String("env-file", "", "write the credentials' placeholder variables (NAME=VALUE lines) to `FILE`, mode 0600, for the agent's environment")
	verbose := fs.Bool("v", false, "log debug details to standard error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "moat proxy: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if len(listens) == 0 {
		listens = listFlag{"127.0.0.1:3128"}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	pol, err := pf.load(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	var sessions map[string]string
	if *sessionsFile != "" {
		if sessions, err = readSessions(*sessionsFile); err != nil {
			fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
			return exitConfig
		}
	}

	creds, err := proxy.ResolveCredentials(ctx, pol.Credentials, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
		return exitConfig
	}
	var eps []endpointFlag
	for _, v := range endpoints {
		ep, err := parseEndpointFlag(v)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
			return exitUsage
		}
		eps = append(eps, ep)
	}
	upTLS, err := upstreamTLS(*upstreamCA)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
		return exitConfig
	}
	ca, intercept, exclude, err := interceptConfig(e, pol)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
		return exitConfig
	}
	if *envFile != "" {
		if err := writePlaceholders(*envFile, pol.Credentials, creds); err != nil {
			fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
			return exitInternal
		}
	}

	rec, err := openAudit(e, *auditPath, pol)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
		return exitInternal
	}
	defer rec.Close()

	srv := &proxy.Server{
		Recorder:         rec,
		Log:              log,
		Sessions:         sessions,
		MaxConns:         *maxConns,
		HeaderTimeout:    *headerTimeout,
		IdleTimeout:      *idleTimeout,
		MaxHeaderBytes:   *maxHeaderBytes,
		Credentials:      creds,
		UpstreamTLS:      upTLS,
		CA:               ca,
		Intercept:        intercept,
		InterceptExclude: exclude,
	}
	srv.SetDecider(pol)

	var ls []net.Listener
	for _, a := range listens {
		l, err := proxy.Listen(a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
			return exitInternal
		}
		ls = append(ls, l)
	}
	errc := make(chan error, len(ls)+len(eps))
	for _, l := range ls {
		go func() { errc <- srv.Serve(l) }()
		fmt.Fprintf(e.stderr, "moat proxy: listening on %s (http, socks5)\n", proxy.Describe(l))
	}
	for _, ep := range eps {
		l, err := proxy.Listen(ep.addr)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat proxy: endpoint %s: %v\n", ep.Name, err)
			srv.Close()
			return exitInternal
		}
		ls = append(ls, l)
		go func() { errc <- srv.ServeEndpoint(l, ep.Endpoint) }()
		fmt.Fprintf(e.stderr, "moat proxy: endpoint %s on http://%s -> %s\n", ep.Name, l.Addr(), ep.Upstream)
	}
	rec.Record(audit.Record{Kind: audit.KindLifecycle, Event: "start", Decision: "allow",
		Detail: fmt.Sprintf("listening on %s; policy %s", describeAll(ls), layerNames(pol))})

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	status := exitOK
loop:
	for {
		select {
		case <-hup:
			next, err := pf.load(e)
			if err != nil {
				fmt.Fprintf(e.stderr, "moat proxy: reload failed, still enforcing the previous policy: %v\n", err)
				rec.Record(audit.Record{Kind: audit.KindLifecycle, Event: "reload-failed", Decision: "deny", Detail: err.Error()})
				continue
			}
			srv.SetDecider(next)
			fmt.Fprintf(e.stderr, "moat proxy: policy reloaded from %s\n", layerNames(next))
			rec.Record(audit.Record{Kind: audit.KindLifecycle, Event: "reload", Decision: "allow", Detail: "policy " + layerNames(next)})
		case err := <-errc:
			if !errors.Is(err, proxy.ErrServerClosed) {
				fmt.Fprintf(e.stderr, "moat proxy: %v\n", err)
				status = exitInternal
			}
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	for _, a := range listens {
		if p, ok := strings.CutPrefix(a, "unix:"); ok {
			os.Remove(p)
		}
	}
	rec.Record(audit.Record{Kind: audit.KindLifecycle, Event: "stop", Decision: "allow"})
	return status
}

func openAudit(e *env, path string, pol *policy.Policy) (*audit.Writer, error) {
	if path == "" {
		path = pol.Audit.File.Value
	}
	if path == "" {
		path = audit.DefaultPath(e.getenv)
	}
	if path == "-" {
		return audit.NewStreamWriter(e.stdout), nil
	}
	var o audit.Options
	if pol.Audit.MaxFiles.Set {
		o.MaxFiles = int(pol.Audit.MaxFiles.Value)
	}
	if v := pol.Audit.MaxSize.Value; v != "" {
		n, err := policy.ParseSize(v)
		if err != nil {
			return nil, fmt.Errorf("audit.max_size: %w", err)
		}
		o.MaxSize = n
	}
	return audit.Open(path, o)
}

// readSessions reads NAME:TOKEN lines. Tokens never appear in errors.
func readSessions(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	defer f.Close()
	m := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, token, ok := strings.Cut(line, ":")
		switch {
		case !ok || name == "" || token == "":
			return nil, fmt.Errorf("sessions %s:%d: expected NAME:TOKEN", path, n)
		case strings.ContainsAny(name, " \t"):
			return nil, fmt.Errorf("sessions %s:%d: session name %q contains a space", path, n, name)
		case len(token) < 16:
			return nil, fmt.Errorf("sessions %s:%d: the token for %q is shorter than 16 characters", path, n, name)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("sessions %s:%d: session %q is listed twice", path, n, name)
		}
		m[name] = token
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sessions %s: %w", path, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("sessions %s: no NAME:TOKEN line; omit --sessions to run without proxy authentication", path)
	}
	return m, nil
}

func describeAll(ls []net.Listener) string {
	var s []string
	for _, l := range ls {
		s = append(s, proxy.Describe(l))
	}
	return strings.Join(s, ", ")
}

func layerNames(p *policy.Policy) string {
	var s []string
	for _, o := range p.Layers {
		s = append(s, o.File)
	}
	if len(s) == 0 {
		return "profile:" + p.Profile
	}
	return strings.Join(s, ", ")
}

type endpointFlag struct {
	proxy.Endpoint
	addr string
}

// parseEndpointFlag reads NAME=https://host[/path][@ADDR].
func parseEndpointFlag(v string) (endpointFlag, error) {
	addr := "127.0.0.1:0"
	if i := strings.LastIndex(v, "@"); i >= 0 {
		if _, _, err := net.SplitHostPort(v[i+1:]); err == nil {
			v, addr = v[:i], v[i+1:]
		}
	}
	ep, err := proxy.ParseEndpoint(v)
	return endpointFlag{ep, addr}, err
}

func upstreamTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("upstream CA: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream CA %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{RootCAs: pool}, nil
}

// writePlaceholders writes the placeholder variables the agent's
// environment should hold. It never writes a secret.
func writePlaceholders(path string, pcs []policy.Credential, creds []*proxy.Credential) error {
	var b strings.Builder
	for i, c := range creds {
		if c.Placeholder != "" {
			fmt.Fprintf(&b, "%s=%s\n", pcs[i].Placeholder, c.Placeholder)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	return nil
}

// interceptConfig loads the CA when the policy terminates any TLS. A
// policy that names hosts to intercept without a CA fails closed: moat
// never quietly leaves traffic it was told to inspect uninspected.
func interceptConfig(e *env, pol *policy.Policy) (*proxy.CA, []policy.HostRule, []policy.HostRule, error) {
	if len(pol.TLS.Intercept) == 0 {
		return nil, nil, nil, nil
	}
	parse := func(es []policy.Entry) ([]policy.HostRule, error) {
		var rs []policy.HostRule
		for _, en := range es {
			r, err := policy.ParseHostRule(en.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", en.Origin, err)
			}
			r.Origin = en.Origin
			rs = append(rs, r)
		}
		return rs, nil
	}
	in, err := parse(pol.TLS.Intercept)
	if err != nil {
		return nil, nil, nil, err
	}
	ex, err := parse(pol.TLS.Exclude)
	if err != nil {
		return nil, nil, nil, err
	}
	dir := pol.TLS.CA.Value
	if dir == "" {
		dir = proxy.DefaultCADir(e.getenv)
	}
	ca, _, err := proxy.InitCA(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls.intercept needs moat's CA: %w", err)
	}
	return ca, in, ex, nil
}
