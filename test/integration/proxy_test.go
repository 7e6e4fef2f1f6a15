package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

// proxyOpts describes one `moat proxy` run.
type proxyOpts struct {
	policy   string   // the policy file's content
	listen   []string // --listen values; default one "127.0.0.1:0"
	args     []string // more flags
	sessions string   // the --sessions file's content; "" for no --sessions
	noHosts  bool     // run without the private /etc/hosts
}

// moatProxy is a running `moat proxy` process.
type moatProxy struct {
	t                     testing.TB
	dir                   string
	PolicyFile, AuditFile string
	cmd                   *exec.Cmd
	PID                   int
	listeners             []proxyListener
	stderr                *lineLog
	done                  chan struct{} // closed when the process exited
	waitErr               error
	stopOnce              sync.Once
}

type proxyListener struct{ Network, Addr string }

var listeningRE = regexp.MustCompile(`^moat proxy: listening on (tcp|unix) (\S+) \(http, socks5\)$`)

// startProxy writes the policy (and sessions) to a temporary directory,
// starts moat proxy, waits up to 10 s for one "listening on" line per
// listener and stops the proxy when the test ends.
func startProxy(t testing.TB, o proxyOpts) *moatProxy {
	t.Helper()
	dir := t.TempDir()
	p := &moatProxy{
		t: t, dir: dir,
		PolicyFile: filepath.Join(dir, "moat.yaml"),
		AuditFile:  filepath.Join(dir, "audit.jsonl"),
		stderr:     newLineLog(),
		done:       make(chan struct{}),
	}
	if err := os.WriteFile(p.PolicyFile, []byte(o.policy), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"proxy", "--policy", p.PolicyFile, "--audit", p.AuditFile}
	listen := o.listen
	if len(listen) == 0 {
		listen = []string{"127.0.0.1:0"}
	}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	if o.sessions != "" {
		f := filepath.Join(dir, "sessions")
		if err := os.WriteFile(f, []byte(o.sessions), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--sessions", f)
	}
	args = append(args, o.args...)

	if hostsOK && !o.noHosts {
		// unshare and sh both exec: the PID is moat's own, signals reach it.
		sh := append([]string{"--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/hosts && exec "$@"`, hostsFile, moatBin}, args...)
		p.cmd = exec.Command("unshare", sh...)
	} else {
		p.cmd = exec.Command(moatBin, args...)
	}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	p.cmd.Env = cleanEnv(t)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", p.cmd.Args, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("moat proxy %v\n--- stderr ---\n%s--- audit ---\n%s", listen, p.Stderr(), p.auditText())
		}
	})

	deadline := time.After(10 * time.Second)
	for len(p.listeners) < len(listen) {
		select {
		case line := <-p.stderr.lines:
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				p.listeners = append(p.listeners, proxyListener{m[1], m[2]})
			}
		case <-p.done:
			t.Fatalf("moat proxy exited before listening (%v)\nargs: %q\nstderr:\n%s", p.waitErr, args, p.Stderr())
		case <-deadline:
			t.Fatalf("moat proxy printed %d of %d \"listening on\" lines in 10 s\nargs: %q\nstderr:\n%s",
				len(p.listeners), len(listen), args, p.Stderr())
		}
	}
	return p
}

// TCP is the first TCP listener's address.
func (p *moatProxy) TCP() string {
	for _, l := range p.listeners {
		if l.Network == "tcp" {
			return l.Addr
		}
	}
	p.t.Fatalf("proxy has no tcp listener: %v", p.listeners)
	return ""
}

// Unix is the first unix listener's path.
func (p *moatProxy) Unix() string {
	for _, l := range p.listeners {
		if l.Network == "unix" {
			return l.Addr
		}
	}
	p.t.Fatalf("proxy has no unix listener: %v", p.listeners)
	return ""
}

// Stop sends SIGTERM and waits up to 10 s for the process to exit; a proxy
// that does not is killed and the test fails. It returns the exit error.
func (p *moatProxy) Stop() error { return p.StopWith(syscall.SIGTERM) }

// StopWith is Stop with another signal.
func (p *moatProxy) StopWith(sig syscall.Signal) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.t.Errorf("moat proxy did not exit within 10 s of %v; killing it", sig)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	return p.waitErr
}

func (p *moatProxy) Signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("signal %v to the proxy: %v", s, err)
	}
}

// Stderr is everything the proxy wrote so far (stdout included).
func (p *moatProxy) Stderr() string { return p.stderr.String() }

// WaitStderr waits up to 5 s for a line containing sub in what the proxy
// wrote after the first from bytes.
func (p *moatProxy) WaitStderr(from int, sub string) (string, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(p.Stderr()[from:], "\n") {
			if strings.Contains(l, sub) {
				return l, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", false
}

// WaitCount waits up to 5 s for n audit records that match accepts.
func (p *moatProxy) WaitCount(desc string, n int, match func(audit.Record) bool) {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		for _, r := range p.Records() {
			if match(r) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d audit records for %s within 5 s; want %d; audit:\n%s", got, desc, n, p.auditText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *moatProxy) auditText() string {
	b, _ := os.ReadFile(p.AuditFile)
	return string(b)
}

// Records parses the audit file; a line that is not a JSON record fails the test.
func (p *moatProxy) Records() []audit.Record {
	p.t.Helper()
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(p.auditText()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("}")) { // a line still being written
			continue
		}
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			p.t.Errorf("audit line is not a record: %v: %s", err, line)
			continue
		}
		recs = append(recs, r)
	}
	return recs
}

// WaitRecord waits up to 5 s for an audit record that match accepts; desc
// says what was looked for when none arrives.
func (p *moatProxy) WaitRecord(desc string, match func(audit.Record) bool) audit.Record {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range p.Records() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no audit record for %s within 5 s; audit:\n%s", desc, p.auditText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineLog collects a process's output and hands complete lines to lines.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   chan string
}

func newLineLog() *lineLog { return &lineLog{lines: make(chan string, 64)} }

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
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		select {
		case l.lines <- line:
		default: // nobody waits for lines any more
		}
	}
	return len(b), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// policy builds a version-1 policy from allow and allow_private entries.
func policy(allow, allowPrivate []string) string {
	q := func(xs []string) string {
		var b strings.Builder
		for i, x := range xs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", x)
		}
		return "[" + b.String() + "]"
	}
	return fmt.Sprintf("version: 1\nnetwork:\n  allow: %s\n  allow_private: %s\n", q(allow), q(allowPrivate))
}
