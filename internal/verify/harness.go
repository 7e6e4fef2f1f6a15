package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moatsec/moat/internal/policy"
	"golang.org/x/sys/unix"
)

// Options configure one run of the battery.
type Options struct {
	Moat    string         // the moat binary: run as `moat run`, and copied into the workspace for the probes
	Policy  *policy.Policy // the user's effective policy; verify layers its scratch additions on a copy
	RunArgs []string       // more flags for moat run (--isolation, --runtime, --image)
	Tier    string         // for the report
	Probes  []string       // only these; all when empty
	Environ []string       // moat's environment, as os.Environ
	Keep    bool           // keep the scratch directory (its path is in the report)
}

// Report is a run's outcome.
type Report struct {
	Tier    string   `json:"tier"`
	Policy  []string `json:"policy"` // the user's layers, highest first
	Results []Result `json:"results"`
	Dir     string   `json:"dir,omitempty"` // the scratch directory, when kept
}

// Counts tallies the verdicts.
func (r *Report) Counts() (held, escaped, na int) {
	for _, x := range r.Results {
		switch x.Status {
		case Held:
			held++
		case Escaped:
			escaped++
		default:
			na++
		}
	}
	return
}

// ConfigError is a policy the battery could not run under.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// SecretEnv is where `moat run` reads the test credential's secret from:
// set only in moat's own environment, never inside.
const SecretEnv = "MOAT_VERIFY_SECRET"

// PlaceholderEnv is the test credential's placeholder variable inside.
const PlaceholderEnv = "MOAT_VERIFY_KEY"

// CredentialHost is where the test credential may go; nothing listens
// there: the probes only check it is sent nowhere else.
const CredentialHost = "credential.moat-verify.test"

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// scratchBase is where the scratch directory goes: not /tmp, whose
// private tmpfs inside would hide the outside bait and make the file
// probes trivially held.
func scratchBase() string {
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() && unix.Access("/var/tmp", unix.W_OK) == nil {
		return "/var/tmp"
	}
	return os.TempDir()
}

// Run plants the bait, runs the probes inside `moat run` and cross-checks
// the bait outside.
func Run(ctx context.Context, o Options) (*Report, error) {
	scratch, err := os.MkdirTemp(scratchBase(), "moat-verify-")
	if err != nil {
		return nil, err
	}
	rep := &Report{Tier: o.Tier}
	for _, l := range o.Policy.Layers {
		rep.Policy = append(rep.Policy, l.File)
	}
	if o.Keep {
		rep.Dir = scratch
	} else {
		defer os.RemoveAll(scratch)
	}
	h := &harness{o: o, scratch: scratch, marker: "mv" + random(6)}
	defer h.cleanup()
	if err := h.prepare(); err != nil {
		return nil, err
	}
	results, err := h.run(ctx)
	if err != nil {
		return nil, err
	}
	h.crossCheck(results)
	rep.Results = results
	return rep, nil
}

type harness struct {
	o       Options
	scratch string
	ws      string
	marker  string
	cfg     Config
	b       *baits
	bait    *exec.Cmd
	secret  string // the test credential's secret
	hashes  map[string][32]byte
	dirs    map[string]int
	policyF string
	emptyF  string
	extra   []hit // what the harness found besides the bait
}

func (h *harness) cleanup() {
	if h.bait != nil && h.bait.Process != nil && h.bait.ProcessState == nil {
		h.bait.Process.Kill()
		h.bait.Wait()
	}
	if h.b != nil {
		h.b.close()
	}
}

func (h *harness) write(p, content string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

func (h *harness) prepare() error {
	c := &h.cfg
	h.ws = filepath.Join(h.scratch, "ws")
	vd := filepath.Join(h.ws, ".moat-verify")
	outside := filepath.Join(h.scratch, "outside")
	for _, d := range []string{h.scratch, h.ws, vd} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		os.Chmod(d, 0o755)
	}
	// World-writable, so that only the sandbox stands between the agent
	// and this directory.
	os.Mkdir(outside, 0o777)
	os.Chmod(outside, 0o777)
	c.Tier, c.Workspace, c.Scratch, c.OutsideDir, c.Marker = h.o.Tier, h.ws, h.scratch, outside, h.marker
	c.Canaries = map[string]string{}
	canary := func(what string) string {
		v := CanaryPrefix + random(16)
		c.Canaries[Hash(v)] = what
		return v
	}

	// The secrets: a workspace .env and a file outside, both masked by
	// verify's layer; the test credential's secret in moat's environment.
	envFile := filepath.Join(h.ws, ".env")
	outSecret := filepath.Join(h.scratch, "secret", "id_moat_verify")
	if err := h.write(envFile, "API_KEY="+canary("the workspace's .env")+"\n", 0o644); err != nil {
		return err
	}
	if err := h.write(outSecret, canary("a masked file outside the workspace")+"\n", 0o644); err != nil {
		return err
	}
	os.Chmod(filepath.Dir(outSecret), 0o755)
	h.secret = canary("the test credential's secret (" + SecretEnv + ")")
	c.SecretFiles = []string{envFile, outSecret}
	if fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, outSecret, 0); err == nil {
		c.HandleType, c.HandleBytes = fh.Type(), hex.EncodeToString(fh.Bytes())
	}

	// The mandatory protected names, planted so that they exist.
	h.hashes, h.dirs = map[string][32]byte{}, map[string]int{}
	for _, f := range []string{".bashrc", ".profile", ".gitconfig", ".git/config", ".mcp.json", ".claude/settings.json", "moat.yaml"} {
		p := filepath.Join(h.ws, f)
		content := "# planted by moat verify\n"
		if f == "moat.yaml" {
			content = "version: 1\n"
		}
		if err := h.write(p, content, 0o644); err != nil {
			return err
		}
		h.hashes[p] = sha256.Sum256([]byte(content))
		c.Protected = append(c.Protected, p)
	}
	for _, d := range []string{".git/hooks", ".claude/commands", ".vscode"} {
		p := filepath.Join(h.ws, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		h.dirs[p] = 0
		c.Protected = append(c.Protected, p)
	}

	// The probes: this very binary, so the image needs no tools.
	if err := copyFile(h.o.Moat, filepath.Join(vd, "moat"), 0o755); err != nil {
		return fmt.Errorf("copy moat into the workspace: %w", err)
	}

	// The bait.
	sockDir := filepath.Join(h.scratch, "sock")
	os.Mkdir(sockDir, 0o777)
	os.Chmod(sockDir, 0o777)
	c.UnixSocket = filepath.Join(sockDir, "bait.sock")
	c.Abstract = "moat-verify-" + h.marker
	b, err := startBaits(c.UnixSocket, c.Abstract)
	if err != nil {
		return err
	}
	h.b = b
	os.Chmod(c.UnixSocket, 0o777)
	tp, up := port(b.tcp), b.udp.LocalAddr().(*net.UDPAddr).Port
	c.TCPLoopback = "127.0.0.1:" + strconv.Itoa(tp)
	c.UDP = []string{"127.0.0.1:" + strconv.Itoa(up)}
	c.HTTPDirect = "127.0.0.1:" + strconv.Itoa(port(b.direct))
	if v4, v6 := hostAddrs(); v4 != "" || len(v6) > 0 {
		if v4 != "" {
			c.TCPExternal = net.JoinHostPort(v4, strconv.Itoa(tp))
			c.UDP = append(c.UDP, net.JoinHostPort(v4, strconv.Itoa(up)))
			c.ConnectIP = c.TCPExternal
		}
		for _, a := range v6 {
			c.TCPv6 = append(c.TCPv6, net.JoinHostPort(a, strconv.Itoa(tp)))
		}
	}
	if c.ConnectIP == "" {
		c.ConnectIP = c.TCPLoopback
	}
	if fi, err := os.Stat("/var/run/docker.sock"); err == nil && fi.Mode()&os.ModeSocket != 0 {
		c.DockerSock = "/var/run/docker.sock"
	}
	c.AllowedHTTP = "localhost:" + strconv.Itoa(port(b.allowed))
	c.AllowedTLS = "localhost:" + strconv.Itoa(port(b.tls))
	c.PrivateName = "localhost:" + strconv.Itoa(port(b.private))
	c.PlaceholderEnv, c.CredentialHost, c.ExfilDomain = PlaceholderEnv, CredentialHost, "exfil.moat-verify.test"
	c.BlockDevices = blockDevices()
	c.HostMemAvailable = memAvailable()

	// A host process for the process probes to look for, ptrace and kill.
	c.BaitCmdline = "moat-verify-park-" + h.marker
	h.bait = exec.Command(h.o.Moat, "__probe", "--park", c.BaitCmdline)
	pr, pw, _ := os.Pipe()
	h.bait.Stdin = pr
	if err := h.bait.Start(); err != nil {
		return fmt.Errorf("start the bait process: %w", err)
	}
	pr.Close()
	h.b.closers = append(h.b.closers, func() { pw.Close() })
	c.HostPids = []int{os.Getpid(), h.bait.Process.Pid}

	c.AuditPath = filepath.Join(vd, "audit.jsonl")
	if err := h.write(c.AuditPath, "", 0o644); err != nil {
		return err
	}
	h.policyF = filepath.Join(vd, "policy.yaml")
	h.emptyF = filepath.Join(vd, "empty.yaml")
	c.PolicyPath = h.policyF
	if err := h.writePolicy(); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	return h.write(filepath.Join(vd, "config.json"), string(data), 0o644)
}

// writePolicy writes the user's effective policy, flattened into one
// file, with verify's scratch layer on top: the two canary files masked;
// a test credential for a host nothing listens on; and names for three
// of verify's own loopback listeners, two of them with their private
// address allowed (the controls the proxy probes need), the third
// allowed by name only (its address must still be refused). It adds no
// other host, path or permission.
func (h *harness) writePolicy() error {
	c := &h.cfg
	np := *h.o.Policy
	scratch := policy.Origin{Layer: policy.LayerFlag, File: "moat verify", Key: "scratch"}
	fs, nw := &np.Filesystem, &np.Network
	fs.DenyRead = append(append([]policy.Entry(nil), fs.DenyRead...),
		policy.Entry{Value: c.SecretFiles[0], Origin: scratch}, policy.Entry{Value: c.SecretFiles[1], Origin: scratch})
	var creds []policy.Credential
	for _, cr := range np.Credentials {
		// moat run skips a built-in profile's credential whose variable
		// is unset; flattened, it would be the user's own and required.
		if strings.HasPrefix(cr.Origin.File, "profile:") && cr.Env != "" && getenv(h.o.Environ, cr.Env) == "" {
			continue
		}
		creds = append(creds, cr)
	}
	hr := func(s string) (policy.HostRule, error) {
		r, err := policy.ParseHostRule(s)
		r.Origin = scratch
		return r, err
	}
	creds = append(creds, policy.Credential{Name: "moat-verify", Hosts: []policy.Entry{{Value: CredentialHost, Origin: scratch}},
		Header: "Authorization: Bearer {secret}", Env: SecretEnv, Placeholder: PlaceholderEnv, Origin: scratch})
	np.Credentials = creds
	nw.Allow = append([]policy.HostRule(nil), nw.Allow...)
	nw.AllowPrivate = append([]policy.HostRule(nil), nw.AllowPrivate...)
	for _, s := range []string{c.AllowedHTTP, c.AllowedTLS, c.PrivateName} {
		r, err := hr(s)
		if err != nil {
			return err
		}
		nw.Allow = append(nw.Allow, r)
	}
	for _, s := range []string{c.AllowedHTTP, c.AllowedTLS} {
		r, err := hr(strings.Replace(s, "localhost", "127.0.0.1", 1))
		if err != nil {
			return err
		}
		nw.AllowPrivate = append(nw.AllowPrivate, r)
	}
	_, pp, _ := net.SplitHostPort(c.PrivateName)
	pn, _ := strconv.Atoi(pp)
	if d := np.EgressAddr("localhost", netip.MustParseAddr("127.0.0.1"), uint16(pn)); d.Allowed() && !d.WouldDeny {
		c.PrivateNA = fmt.Sprintf("the policy lets the proxy dial 127.0.0.1 (%s)", d.Rule)
	}

	// Limits, for the resource probes.
	if v := np.Resources.Memory.Value; v != "" {
		c.MemoryLimit, _ = policy.ParseSize(v)
	}
	if np.Resources.Pids.Set {
		c.PidsLimit = np.Resources.Pids.Value
	}
	if v := np.Resources.CPUs.Value; v != "" {
		c.CPUs, _ = strconv.ParseFloat(v, 64)
	}
	for _, t := range np.Filesystem.Tmpfs {
		p, size, ok := strings.Cut(t.Value, ":")
		if filepath.Clean(p) == "/tmp" {
			c.TmpfsSize = 1 << 30
			if ok {
				c.TmpfsSize, _ = policy.ParseSize(size)
			}
		}
	}
	if err := h.write(h.policyF, string(np.FormatYAML()), 0o644); err != nil {
		return err
	}
	return h.write(h.emptyF, "version: 1\n", 0o644)
}

func getenv(env []string, k string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], k+"="); ok {
			return v
		}
	}
	return ""
}

// RunError is `moat run` failing before the probes gave their results.
type RunError struct {
	Code   int
	Stderr string
}

func (e *RunError) Error() string {
	return fmt.Sprintf("moat run exited %d before the probes reported:\n%s", e.Code, strings.TrimSpace(tail(e.Stderr, 2000)))
}

// resourceProbes press on a limit; if the sandbox itself ends while one
// runs, the limit held (the host is untouched) but the battery must go
// on in a new sandbox.
var resourceProbes = map[string]bool{"fork-bomb": true, "memory-bomb": true, "fill-tmp": true, "fd-exhaustion": true, "cpu-hog": true}

// run runs the battery in `moat run`; when the sandbox ends before every
// probe reported, the probe that was running gets its verdict and the
// rest run in a new sandbox.
func (h *harness) run(ctx context.Context) ([]Result, error) {
	var todo []string
	if len(h.o.Probes) > 0 {
		todo = h.o.Probes
	} else {
		for _, p := range Catalogue() {
			todo = append(todo, p.Name)
		}
	}
	var results []Result
	for first := true; len(todo) > 0; first = false {
		names := todo
		if first && len(h.o.Probes) == 0 {
			names = nil // all of them
		}
		got, started, code, stderr, err := h.runOnce(ctx, names)
		if err != nil {
			return nil, err
		}
		if !started {
			if code == 3 {
				return nil, &ConfigError{&RunError{code, stderr}}
			}
			return nil, &RunError{code, stderr}
		}
		results = append(results, got...)
		todo = todo[len(got):]
		if len(todo) == 0 {
			break
		}
		p, _ := Lookup(todo[0])
		r := Result{Name: p.Name, Group: p.Group, Title: p.Title, Status: Escaped,
			Evidence: sprintf("no verdict: the sandbox ended during this probe (moat run exit %d): %s", code, strings.TrimSpace(tail(stderr, 300)))}
		if resourceProbes[p.Name] {
			r.Status = Held
			r.Evidence = sprintf("the sandbox itself ended (moat run exit %d) while this probe pressed on its limit: the limit held, the sandbox's own processes did not survive it", code)
		}
		results = append(results, r)
		todo = todo[1:]
	}
	return results, nil
}

func (h *harness) runOnce(ctx context.Context, names []string) (results []Result, started bool, code int, stderr string, err error) {
	args := append([]string{"run"}, h.o.RunArgs...)
	// The user's layers are in the flattened file; the managed and user
	// slots are filled with an empty one so that nothing loads twice.
	args = append(args, "--policy", h.policyF, "--managed", h.emptyF, "--user-policy", h.emptyF,
		"--audit", h.cfg.AuditPath, "--tty", "never", "-q", "--",
		"./.moat-verify/moat", "__probe", "--config", ".moat-verify/config.json")
	for _, p := range names {
		args = append(args, "--probe", p)
	}
	cmd := exec.CommandContext(ctx, h.o.Moat, args...)
	cmd.Dir = h.ws
	var env []string
	for _, kv := range h.o.Environ {
		if !strings.HasPrefix(kv, "MOAT_MANAGED_POLICY=") && !strings.HasPrefix(kv, SecretEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, SecretEnv+"="+h.secret)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return nil, false, 0, "", fmt.Errorf("moat run: %w", err)
	}
	results = ParseResults(out.Bytes(), names)
	started = bytes.Contains(out.Bytes(), []byte(StartedLine+"\n"))
	stderr = errb.String()
	if strings.Contains(stderr, CanaryPrefix) {
		h.extra = append(h.extra, hit{"stderr", "secret-files", "moat run's standard error holds a canary"})
	}
	return results, started, code, stderr, nil
}

// ParseResults reads the battery's output: one JSON result a line, from
// inside the sandbox, so not trusted. Only the expected probes, in the
// expected order, are taken, with their group and title from the
// catalogue; a verdict other than the three is an escape; it stops at
// the first line out of order, so that nothing inside can skip a probe.
func ParseResults(out []byte, names []string) []Result {
	if len(names) == 0 {
		for _, p := range Catalogue() {
			names = append(names, p.Name)
		}
	}
	var results []Result
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(results) == len(names) {
			break
		}
		var r Result
		if json.Unmarshal(line, &r) != nil || r.Name == "" {
			continue
		}
		if r.Name != names[len(results)] {
			break
		}
		p, _ := Lookup(r.Name)
		r.Group, r.Title = p.Group, p.Title
		switch r.Status {
		case Held, Escaped, NotApplicable:
		default:
			r.Evidence = sprintf("invalid verdict %q: %s", r.Status, r.Evidence)
			r.Status = Escaped
		}
		results = append(results, r)
	}
	return results
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// hostAddrs returns a non-loopback IPv4 address and the IPv6 addresses
// (loopback and global) the bait can be reached on from the host.
func hostAddrs() (v4 string, v6 []string) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := n.IP
		switch {
		case ip.To4() != nil && !ip.IsLoopback() && v4 == "":
			v4 = ip.String()
		case ip.To4() == nil && (ip.IsLoopback() || ip.IsGlobalUnicast()) && !ip.IsLinkLocalUnicast():
			v6 = append(v6, ip.String())
		}
	}
	return v4, v6
}

func blockDevices() []string {
	es, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range es {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if _, err := os.Stat("/dev/" + n); err == nil {
			out = append(out, n)
		}
	}
	return out
}
