package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Peer names, in the order the report shows them.
const (
	squid     = "squid"
	tinyproxy = "tinyproxy"
	moat      = "moat"
)

// maxConns is what each peer is configured to hold at once: enough for the
// largest idle-tunnel step with room to spare.
const maxConns = 20000

// Peer is one proxy under test. Start writes its configuration into a fresh
// directory, starts it and waits until it forwards a request and a tunnel to
// the upstream; Stop ends it and its children. A Peer is not safe for
// concurrent use.
type Peer struct {
	Name string // squid, tinyproxy or moat
	Bin  string // the executable
	Keep bool   // keep the configuration and log directory after Stop

	Addr    string // 127.0.0.1:port it listens on, once started
	Dir     string // its configuration and logs, once started
	LogFile string // the access or audit log it writes per request

	cmd    *exec.Cmd
	exited chan struct{}
	output string // its stdout and stderr
}

// Label is the peer's name as the report prints it.
func (p *Peer) Label() string {
	switch p.Name {
	case squid:
		return "Squid"
	}
	return p.Name
}

// Start configures and starts the peer for upstream u, and waits (at most 30 s)
// until it forwards traffic.
func (p *Peer) Start(ctx context.Context, u *Endpoints) error {
	dir, err := os.MkdirTemp("", "moat-bench-"+p.Name+"-")
	if err != nil {
		return err
	}
	p.Dir = dir
	port, err := freePort()
	if err != nil {
		return err
	}
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ports := []string{portOf(u.HTTPAddr), portOf(u.TLSAddr), portOf(u.BulkAddr)}

	var args []string
	switch p.Name {
	case squid:
		args, err = p.configureSquid(port, ports)
	case tinyproxy:
		args, err = p.configureTinyproxy(port, ports)
	case moat:
		args, err = p.configureMoat(ports)
	default:
		err = fmt.Errorf("unknown peer %q", p.Name)
	}
	if err != nil {
		return fmt.Errorf("configure %s: %w", p.Name, err)
	}
	if os.Geteuid() == 0 && p.Name != moat {
		// Squid and tinyproxy drop root for the "proxy" user, which must be
		// able to write their logs and PID files.
		if err := chownTree(dir, "proxy"); err != nil {
			return err
		}
	}

	p.output = filepath.Join(dir, "output.log")
	out, err := os.Create(p.output)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	p.cmd = exec.Command(p.Bin, args...)
	p.cmd.Dir, p.cmd.Stdout, p.cmd.Stderr = dir, out, out
	// Its own process group, so Stop reaches Squid's children too; and
	// killed with us if we die.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.probe(u)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start-up (%v); its output:\n%s", p.Name, p.cmd.ProcessState, p.tail())
		case <-ctx.Done():
			p.Stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("%s not ready after 30 s: %v; its output:\n%s", p.Name, err, p.tail())
		}
	}
}

// probe sends one request and opens one tunnel through the peer.
func (p *Peer) probe(u *Endpoints) error {
	if s := RunHTTP(context.Background(), Load{Proxy: p.Addr, Clients: 1, Duration: time.Millisecond}, u.HTTPAddr); s.Errors > 0 {
		return errors.New(s.FirstErr)
	}
	conn, err := dialVia(p.Addr, u.BulkAddr, time.Now().Add(2*time.Second))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = fetch(conn, make([]byte, 1), 1)
	return err
}

// PID is the peer's main process.
func (p *Peer) PID() int { return p.cmd.Process.Pid }

// Stop asks the peer to stop (SIGTERM), kills its process group after 10 s,
// and removes its directory unless Keep is set.
func (p *Peer) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	// Whatever it left behind in its group (Squid's log daemon) goes too.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd = nil
}

// Cleanup removes the peer's directory unless Keep is set.
func (p *Peer) Cleanup() {
	if !p.Keep && p.Dir != "" {
		os.RemoveAll(p.Dir)
	}
}

// tail returns the end of the peer's output and of its own log.
func (p *Peer) tail() string {
	var b strings.Builder
	for _, f := range []string{p.output, filepath.Join(p.Dir, "cache.log")} {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}

// LogStats counts the bytes and the non-blank lines of the peer's
// per-request log, the files it rotated away (LOG.1, LOG.2, …) included;
// moat pads its audit log with blank lines so that no record straddles a
// page.
func (p *Peer) LogStats() (bytesN, lines int64) {
	files, _ := filepath.Glob(p.LogFile + ".[0-9]*")
	for _, name := range append(files, p.LogFile) {
		b, l := countLines(name)
		bytesN += b
		lines += l
	}
	return bytesN, lines
}

func countLines(name string) (bytesN, lines int64) {
	f, err := os.Open(name)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	blank := true // the current line has only white space so far
	for {
		n, err := f.Read(buf)
		bytesN += int64(n)
		for _, c := range buf[:n] {
			switch c {
			case '\n':
				if !blank {
					lines++
				}
				blank = true
			case ' ', '\t', '\r':
			default:
				blank = false
			}
		}
		if err != nil {
			return bytesN, lines
		}
	}
}

// Version asks the peer's binary for its version, best effort.
func (p *Peer) Version() string {
	var args []string
	switch p.Name {
	case squid, tinyproxy:
		args = []string{"-v"}
	default:
		return ""
	}
	out, _ := exec.Command(p.Bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// configureSquid writes a squid.conf for a fair comparison: no caching, one
// worker, an access log written by the log daemon as in Debian's default
// configuration, only 127.0.0.1 as source and destination, CONNECT only to
// the upstream's ports.
func (p *Peer) configureSquid(port int, upPorts []string) ([]string, error) {
	p.LogFile = filepath.Join(p.Dir, "access.log")
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by bench/loadgen
http_port 127.0.0.1:%d
visible_hostname moat-bench
workers 1
cache deny all
acl localsrc src 127.0.0.1/32
acl localdst dst 127.0.0.1/32
acl upstream_ports port %s
acl CONNECT method CONNECT
http_access deny !localdst
http_access deny CONNECT !upstream_ports
http_access allow localsrc
http_access deny all
access_log daemon:%s squid
cache_log %s/cache.log
cache_store_log none
logfile_rotate 0
pid_filename %s/squid.pid
coredump_dir %s
max_filedescriptors %d
pinger_enable off
shutdown_lifetime 1 seconds
`, port, strings.Join(upPorts, " "), p.LogFile, p.Dir, p.Dir, p.Dir, 3*maxConns)
	if os.Geteuid() == 0 {
		b.WriteString("cache_effective_user proxy\n")
	}
	conf := filepath.Join(p.Dir, "squid.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return []string{"--foreground", "-f", conf}, nil
}

// configureTinyproxy writes a tinyproxy.conf: 127.0.0.1 only, CONNECT to the
// upstream's ports, logging each request to a file at the default level, and
// MaxClients high enough for the idle-tunnel rows.
func (p *Peer) configureTinyproxy(port int, upPorts []string) ([]string, error) {
	p.LogFile = filepath.Join(p.Dir, "tinyproxy.log")
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by bench/loadgen
Port %d
Listen 127.0.0.1
Timeout 600
LogFile "%s"
LogLevel Info
PidFile "%s/tinyproxy.pid"
MaxClients %d
Allow 127.0.0.1
`, port, p.LogFile, p.Dir, maxConns)
	for _, up := range upPorts {
		fmt.Fprintf(&b, "ConnectPort %s\n", up)
	}
	if os.Geteuid() == 0 {
		b.WriteString("User proxy\nGroup proxy\n")
	}
	conf := filepath.Join(p.Dir, "tinyproxy.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return []string{"-d", "-c", conf}, nil
}

// configureMoat writes a policy allowing exactly the upstream's ports and
// returns moat's command line, audit log on disk as in production.
func (p *Peer) configureMoat(upPorts []string) ([]string, error) {
	p.LogFile = filepath.Join(p.Dir, "audit.log")
	var allow []string
	for _, host := range []string{"127.0.0.1", "localhost"} {
		for _, up := range upPorts {
			allow = append(allow, strconv.Quote(host+":"+up))
		}
	}
	policy := fmt.Sprintf(`# generated by bench/loadgen
version: 1
network:
  allow: [%s]
  allow_private: ["127.0.0.1", "localhost"]
`, strings.Join(allow, ", "))
	file := filepath.Join(p.Dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		return nil, err
	}
	return []string{"proxy", "--policy", file, "--listen", p.Addr, "--audit", p.LogFile,
		"--max-conns", strconv.Itoa(maxConns)}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// portOf returns the port of a host:port.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// chownTree gives dir and everything in it to the named user and its group.
func chownTree(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}
