package credentials

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// need fails the test under CI, and skips it elsewhere, when a tool is not
// on PATH.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s is not installed (%v)", tool, err)
		}
	}
}

// unavailable reports a missing component: a failure under CI=true, a skip
// with the reason elsewhere. CI is read here, inside the test, so that go
// test's cache keys on it (it does not see what TestMain reads).
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format+"; under CI=true this fails", args...)
}

// noCanary fails the test when text holds the secret.
func noCanary(t testing.TB, what, text string) {
	t.Helper()
	if strings.Contains(text, canary) {
		i := strings.Index(text, canary)
		lo, hi := max(0, i-120), min(len(text), i+len(canary)+40)
		t.Errorf("the secret leaked into %s: …%s…", what, redact(text[lo:hi]))
	}
}

// redact replaces the secret in s, for failure messages.
func redact(s string) string { return strings.ReplaceAll(s, canary, "<SECRET>") }

// ---- moat ----

// moatOpts describes one `moat proxy` run.
type moatOpts struct {
	policy     string   // the policy file; %[1]s is replaced by the CA directory
	endpoints  []string // --endpoint values
	upstreamCA bool     // pass --upstream-ca with the upstreams' CA
}

// moatProc is a running `moat proxy`.
type moatProc struct {
	t         *testing.T
	dir       string // moat's side: policy, audit, CA; never given to the agent
	caDir     string
	auditFile string
	envFile   string
	Proxy     string            // host:port of the proxy listener
	Endpoints map[string]string // endpoint name → http://host:port
	cmd       *exec.Cmd
	stderr    *lineLog
	done      chan struct{}
	stopOnce  sync.Once
}

var (
	listenRE   = regexp.MustCompile(`^moat proxy: listening on tcp (\S+) \(http, socks5\)$`)
	endpointRE = regexp.MustCompile(`^moat proxy: endpoint (\S+) on (http://\S+) -> (\S+)$`)
)

// moatEnv is moat's own environment: the secret is in it, and its state
// directory (where the CA lives) is outside anything the agent is given.
func moatEnv(stateDir string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + stateDir,
		"XDG_STATE_HOME=" + stateDir,
		"MOAT_TEST_KEY=" + canary,
	}
}

// moatCmd runs a moat subcommand on moat's side and returns its output.
func moatCmd(t *testing.T, stateDir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, moatBin, args...)
	cmd.Env = moatEnv(stateDir)
	out, err := cmd.CombinedOutput()
	noCanary(t, "the output of moat "+strings.Join(args, " "), string(out))
	return string(out), err
}

// startMoat writes the policy and starts moat proxy with an env file, and
// waits for its listener and endpoints. When the test ends the proxy is
// stopped and its standard error, audit file and env file are searched for
// the secret.
func startMoat(t *testing.T, o moatOpts) *moatProc {
	t.Helper()
	dir := t.TempDir()
	m := &moatProc{
		t: t, dir: dir,
		caDir:     filepath.Join(dir, "moat", "ca"), // moat's default under XDG_STATE_HOME=dir
		auditFile: filepath.Join(dir, "audit.jsonl"),
		envFile:   filepath.Join(dir, "agent.env"),
		Endpoints: map[string]string{},
		stderr:    newLineLog(),
		done:      make(chan struct{}),
	}
	if strings.Contains(o.policy, "{CA}") {
		// As a user would: create the CA first, outside the agent's reach.
		out, err := moatCmd(t, dir, "ca", "init", "--dir", m.caDir)
		if err != nil || !strings.HasPrefix(out, "moat CA created: "+filepath.Join(m.caDir, "ca.pem")) {
			t.Fatalf("moat ca init --dir %s: %v\n%s", m.caDir, err, out)
		}
	}
	policyFile := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(policyFile, []byte(strings.ReplaceAll(o.policy, "{CA}", m.caDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"proxy", "--policy", policyFile, "--listen", "127.0.0.1:0", "--audit", m.auditFile, "--env-file", m.envFile}
	for _, e := range o.endpoints {
		args = append(args, "--endpoint", e)
	}
	if o.upstreamCA {
		args = append(args, "--upstream-ca", upCAFile)
	}
	m.cmd = exec.Command(moatBin, args...)
	m.cmd.Env = moatEnv(dir)
	m.cmd.Stdout, m.cmd.Stderr = m.stderr, m.stderr
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start moat proxy: %v", err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.Stop()
		noCanary(t, "moat's standard error", m.Stderr())
		noCanary(t, "the audit file", m.AuditText())
		env, _ := os.ReadFile(m.envFile)
		noCanary(t, "the env file", string(env))
		if t.Failed() {
			t.Logf("moat %q\n--- stderr ---\n%s--- audit ---\n%s", args, redact(m.Stderr()), redact(m.AuditText()))
		}
	})
	deadline := time.After(10 * time.Second)
	for m.Proxy == "" || len(m.Endpoints) < len(o.endpoints) {
		select {
		case line := <-m.stderr.lines:
			if s := listenRE.FindStringSubmatch(line); s != nil {
				m.Proxy = s[1]
			}
			if s := endpointRE.FindStringSubmatch(line); s != nil {
				m.Endpoints[s[1]] = s[2]
			}
		case <-m.done:
			t.Fatalf("moat proxy exited before it was ready (%v)\nargs: %q\nstderr:\n%s", m.cmd.ProcessState, args, m.Stderr())
		case <-deadline:
			t.Fatalf("moat proxy not ready within 10 s\nargs: %q\nstderr:\n%s", args, m.Stderr())
		}
	}
	return m
}

// Stop ends moat with SIGTERM, killing it after 10 s.
func (m *moatProc) Stop() {
	m.stopOnce.Do(func() {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			m.t.Errorf("moat proxy did not exit within 10 s of SIGTERM; killing it")
			m.cmd.Process.Kill()
			<-m.done
		}
	})
}

func (m *moatProc) Stderr() string { return m.stderr.String() }

func (m *moatProc) AuditText() string {
	b, _ := os.ReadFile(m.auditFile)
	return string(b)
}

// Placeholder returns the value the env file gives variable name.
func (m *moatProc) Placeholder(name string) string {
	m.t.Helper()
	b, err := os.ReadFile(m.envFile)
	if err != nil {
		m.t.Fatalf("env file: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			if v == "" {
				m.t.Fatalf("env file sets %s to nothing:\n%s", name, b)
			}
			return v
		}
	}
	m.t.Fatalf("env file has no %s=:\n%s", name, b)
	return ""
}

// AgentEnv is the agent's whole environment: a fresh HOME, PATH, the env
// file's lines and extra. It is searched for the secret before it is used.
func (m *moatProc) AgentEnv(extra ...string) []string {
	m.t.Helper()
	b, err := os.ReadFile(m.envFile)
	if err != nil {
		m.t.Fatalf("env file: %v", err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + m.t.TempDir(), "LANG=C.UTF-8"}
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" {
			env = append(env, line)
		}
	}
	env = append(env, extra...)
	noCanary(m.t, "the agent's environment", strings.Join(env, "\n"))
	return env
}

// Bundle runs `moat ca bundle` for the agent and returns the file: the
// system's roots and moat's CA, never the upstreams' CA.
func (m *moatProc) Bundle() string {
	m.t.Helper()
	f := filepath.Join(m.t.TempDir(), "moat-bundle.pem")
	if out, err := moatCmd(m.t, m.dir, "ca", "bundle", "--dir", m.caDir, f); err != nil {
		m.t.Fatalf("moat ca bundle: %v\n%s", err, out)
	}
	return f
}

// record is the part of an audit record the tests read; the names are the
// audit contract.
type record struct {
	Kind       string `json:"kind"`
	Proto      string `json:"proto"`
	Method     string `json:"method"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Path       string `json:"path"`
	SNI        string `json:"sni"`
	Decision   string `json:"decision"`
	Rule       string `json:"rule"`
	Reason     string `json:"reason"`
	Status     int    `json:"status"`
	Credential string `json:"credential"`
	Event      string `json:"event"`
	Detail     string `json:"detail"`
}

// Mark returns the number of audit records so far, for WaitRecord.
func (m *moatProc) Mark() int { return len(m.Records()) }

func (m *moatProc) Records() []record {
	var rs []record
	sc := bufio.NewScanner(strings.NewReader(m.AuditText()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// WaitRecord waits up to 5 s for an audit record that match accepts,
// after the first since records (see Mark).
func (m *moatProc) WaitRecord(since int, desc string, match func(record) bool) record {
	m.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs := m.Records()
		for _, r := range rs[min(since, len(rs)):] {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("no audit record for %s within 5 s; audit:\n%s", desc, m.AuditText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineLog collects a process's output and hands on complete lines.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   chan string
}

func newLineLog() *lineLog { return &lineLog{lines: make(chan string, 256)} }

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(b)
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		select {
		case l.lines <- string(l.partial[:i]):
		default: // nobody is reading lines any more
		}
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// ---- upstreams ----

// upstream is a local server that remembers every request it was sent, so
// a test can prove what arrived, and that a refused request never did.
type upstream struct {
	srv   *httptest.Server
	Port  int
	conns atomic.Int64
	mu    sync.Mutex
	seen  []*http.Request // clones without bodies
	h     http.Handler
}

// newUpstream starts a TLS upstream (HTTP/2 and HTTP/1.1) certified by the
// upstreams' CA, or a plain HTTP one when plain is set.
func newUpstream(t *testing.T, plain bool, h http.Handler) *upstream {
	u := &upstream{h: h}
	u.srv = httptest.NewUnstartedServer(u)
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are part of the tests
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	if plain {
		u.srv.Start()
	} else {
		u.srv.EnableHTTP2 = true
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{upLeaf}}
		u.srv.StartTLS()
	}
	t.Cleanup(u.srv.Close)
	_, p, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	u.Port, _ = strconv.Atoi(p)
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Clone(context.Background()))
	u.mu.Unlock()
	u.h.ServeHTTP(w, r)
}

// Seen returns the requests that arrived.
func (u *upstream) Seen() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.seen...)
}

// Last returns the last request that arrived; the test fails when none did.
func (u *upstream) Last(t *testing.T) *http.Request {
	t.Helper()
	s := u.Seen()
	if len(s) == 0 {
		t.Fatalf("no request reached the upstream on port %d", u.Port)
	}
	return s[len(s)-1]
}

// At is "host:port" for host.
func (u *upstream) At(host string) string { return net.JoinHostPort(host, strconv.Itoa(u.Port)) }

// echo answers with the credentials a request arrived with, in the body and
// in response headers: a server that reflects what it was sent, as a
// prompt-injected agent would look for.
func echo(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
	w.Header().Set("X-Echo-Api-Key", r.Header.Get("X-Api-Key"))
	fmt.Fprintf(w, "authorization=%s\nx-api-key=%s\nquery=%s\n", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.URL.RawQuery)
}

// ---- clients ----

// runClient runs an agent-side client and returns its standard output and
// error, both searched for the secret (and returned with it redacted).
func runClient(t *testing.T, env []string, dir string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = env, dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	noCanary(t, name+"'s standard output", o.String())
	noCanary(t, name+"'s standard error", e.String())
	return redact(o.String()), redact(e.String()), err
}

// credPolicy is a policy with one credential, svc, that sends the secret
// as a bearer token to credHosts, allows allow, and terminates intercept.
func credPolicy(allow, credHosts, intercept []string) string {
	q := func(xs []string) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = strconv.Quote(x)
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	p := fmt.Sprintf(`version: 1
network:
  allow: %s
  allow_private: ["localhost", "127.0.0.1"]
credentials:
  - name: svc
    hosts: %s
    header: "Authorization: Bearer {secret}"
    env: MOAT_TEST_KEY
    placeholder: SVC_TOKEN
`, q(allow), q(credHosts))
	if len(intercept) > 0 {
		p += fmt.Sprintf("tls:\n  intercept: %s\n  ca: {CA}\n", q(intercept))
	}
	return p
}
