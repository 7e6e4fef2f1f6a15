package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the benchmark: the upstream, moat or
// mitmdump. It dies with the benchmark (Pdeathsig).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder // what it printed, for errors
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() < 1<<20 {
		p.out.Write(b)
	}
	return len(b), nil
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process with SIGTERM, and SIGKILL after 5 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cpu returns the process's user and system CPU time so far.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// waitLine waits for a line of r that re matches, and returns its groups.
func waitLine(ctx context.Context, p *proc, lines <-chan string, re *regexp.Regexp) ([]string, error) {
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return nil, fmt.Errorf("%s exited before it was ready:\n%s", p.name, p.output())
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%s not ready: %w\n%s", p.name, ctx.Err(), p.output())
		}
	}
}

// lineTee copies r to p, and hands its lines to the returned channel.
func lineTee(r io.Reader, p *proc) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.Write([]byte(sc.Text() + "\n"))
			select {
			case ch <- sc.Text():
			default:
			}
		}
	}()
	return ch
}

// startUpstream re-executes this program as the upstream.
func startUpstream(ctx context.Context, dir, secret string, h1 bool) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "-upstream-child", dir, fmt.Sprintf("-upstream-h1=%v", h1))
	cmd.Env = append(os.Environ(), "MOAT_BENCH_SECRET="+secret)
	stdin, _ := cmd.StdinPipe() // closes when we exit: the child follows
	_ = stdin
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	p, err := start("upstream", cmd)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := waitLine(ctx, p, lineTee(out, p), regexp.MustCompile(`^upstream (\S+)$`))
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, m[1], nil
}

// moatProc is moat proxy with TLS termination for the upstream and
// reverse endpoints for it and for the HTTP/1.1-only upstream, all
// injecting the bearer token.
type moatProc struct {
	*proc
	proxy      string // host:port
	endpoint   string // http://host:port, to the upstream
	endpointH1 string // http://host:port, to the HTTP/1.1-only upstream
	ca         *x509.CertPool
	audit      string
}

func startMoat(ctx context.Context, bin, dir, upstream, upstreamH1, secret string) (*moatProc, error) {
	policy := fmt.Sprintf(`version: 1
network:
  allow: [%[1]q, %[2]q]
  allow_private: ["127.0.0.1"]
credentials:
  - name: bench
    hosts: [%[1]q, %[2]q]
    header: "Authorization: Bearer {secret}"
    env: MOAT_BENCH_SECRET
tls:
  intercept: [%[1]q]
  ca: %[3]q
`, upstream, upstreamH1, filepath.Join(dir, "moat-ca"))
	pf := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(pf, []byte(policy), 0o600); err != nil {
		return nil, err
	}
	m := &moatProc{audit: filepath.Join(dir, "moat-audit.jsonl")}
	cmd := exec.Command(bin, "proxy", "--policy", pf, "--listen", "127.0.0.1:0", "--audit", m.audit,
		"--upstream-ca", filepath.Join(dir, "ca.pem"), "--endpoint", "bench=https://"+upstream, "--endpoint", "bench1=https://"+upstreamH1)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "MOAT_BENCH_SECRET=" + secret}
	errp, _ := cmd.StderrPipe()
	p, err := start("moat", cmd)
	if err != nil {
		return nil, err
	}
	m.proc = p
	lines := lineTee(errp, p)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	l, err := waitLine(ctx, p, lines, regexp.MustCompile(`^moat proxy: listening on tcp (\S+) `))
	if err != nil {
		p.stop()
		return nil, err
	}
	e, err := waitLine(ctx, p, lines, regexp.MustCompile(`^moat proxy: endpoint bench on (http://\S+) `))
	if err != nil {
		p.stop()
		return nil, err
	}
	e1, err := waitLine(ctx, p, lines, regexp.MustCompile(`^moat proxy: endpoint bench1 on (http://\S+) `))
	if err != nil {
		p.stop()
		return nil, err
	}
	m.proxy, m.endpoint, m.endpointH1 = l[1], e[1], e1[1]
	if m.ca, err = poolFrom(filepath.Join(dir, "moat-ca", "ca.pem")); err != nil {
		p.stop()
		return nil, err
	}
	go func() { // keep reading so that moat never blocks on a full pipe
		for range lines {
		}
	}()
	return m, nil
}

// mitmProc is mitmdump with the injecting addon.
type mitmProc struct {
	*proc
	proxy   string
	ca      *x509.CertPool
	log     string
	version string
}

func startMitmdump(ctx context.Context, bin, addon, dir, upstream, secret string) (*mitmProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mitm")
	host, uport, _ := net.SplitHostPort(upstream)
	m := &mitmProc{proxy: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: filepath.Join(dir, "mitmdump.log")}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		m.version = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Mitmproxy:"))
	}
	logf, err := os.Create(m.log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--listen-host", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--set", "confdir="+conf, "--set", "ssl_verify_upstream_trusted_ca="+filepath.Join(dir, "ca.pem"),
		"-s", addon)
	cmd.Env = append(os.Environ(), "HOME="+dir, "MOAT_BENCH_SECRET="+secret, "MOAT_BENCH_HOST="+host, "MOAT_BENCH_PORT="+uport)
	cmd.Stdout, cmd.Stderr = logf, logf // one line per flow, as moat writes one audit record
	p, err := start("mitmdump", cmd)
	logf.Close()
	if err != nil {
		return nil, err
	}
	m.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m.ca, err = poolFrom(filepath.Join(conf, "mitmproxy-ca-cert.pem")); err == nil {
			c := client(m.proxy, m.ca)
			if resp, err := c.Get("https://" + upstream + "/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return m, nil
				}
				err = fmt.Errorf("probe through mitmdump: %s", resp.Status)
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(m.log)
			return nil, fmt.Errorf("mitmdump exited: %s", b)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			b, _ := os.ReadFile(m.log)
			return nil, fmt.Errorf("mitmdump not ready in 30 s (%v): %s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func poolFrom(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(file + ": no certificate")
	}
	return pool, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// client is one benchmark client: one kept-alive HTTP/1.1 connection,
// through proxy (CONNECT, then TLS trusting roots) when proxy is set.
func client(proxy string, roots *x509.CertPool) *http.Client {
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if proxy != "" {
		t.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})
	}
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}
