// Package verify_test runs `moat verify` end to end: the real binary, the
// real sandbox, the real bait. The native tier must hold every probe under
// the default and the strict profiles; a deliberately weakened policy must
// make the matching probe report escaped, with evidence, and exit 1; the
// other tiers are run where the machine has them (always in CI).
package verify_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testmoat"
)

var (
	moatBin string
	inCI    bool
)

func TestMain(m *testing.M) {
	inCI = testmoat.InCI
	testmoat.Main(m, "", "moat-verify-e2e-", &moatBin)
}

type result struct {
	Name, Group, Title, Status, Evidence string
}

type report struct {
	Tier          string
	Results       []result
	Held, Escaped int
	NA            int `json:"not_applicable"`
}

// verify runs moat verify in a fresh directory with a private home (no
// user or managed policy of the machine's), and returns its report,
// exit status and standard error.
func verify(t *testing.T, args ...string) (report, int, string) {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	cmd := exec.Command(moatBin, append([]string{"verify", "--json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "MOAT_MANAGED_POLICY=",
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("moat verify: %v", err)
	}
	var r report
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("moat verify --json: %v\n%s\nstderr:\n%s", err, out.String(), errb.String())
		}
	}
	return r, code, errb.String()
}

func (r report) byName() map[string]result {
	m := map[string]result{}
	for _, x := range r.Results {
		m[x.Name] = x
	}
	return m
}

// knownEscapes are escapes a tier is known to have today, each with the
// reason; the test expects them explicitly so that a fix shows up too.
var knownEscapes = map[string]map[string]string{}

// allHeld asserts the whole battery ran and nothing escaped but the
// tier's known escapes.
func allHeld(t *testing.T, tier string, r report, code int, stderr string) {
	t.Helper()
	if len(r.Results) < 40 {
		t.Fatalf("%s: %d results, want the whole battery (at least 40); exit %d\n%s", tier, len(r.Results), code, stderr)
	}
	known := knownEscapes[tier]
	for _, x := range r.Results {
		if x.Status == "escaped" && known[x.Name] == "" {
			t.Errorf("%s: %s escaped: %s", tier, x.Name, x.Evidence)
		}
		if x.Status != "escaped" && known[x.Name] != "" {
			t.Errorf("%s: %s now %s (%s); it was a known escape (%s): take it off the list", tier, x.Name, x.Status, x.Evidence, known[x.Name])
		}
		if x.Evidence == "" {
			t.Errorf("%s: %s: no evidence", tier, x.Name)
		}
	}
	want := 0
	if len(known) > 0 {
		want = 1
	}
	if code != want {
		t.Errorf("%s: exit %d, want %d; stderr:\n%s", tier, code, want, stderr)
	}
	held := r.Held
	t.Logf("%s: %d/%d held, %d not applicable, %d escaped", tier, held, held+r.Escaped, r.NA, r.Escaped)
}

// TestNative: the native tier holds every probe under the default and the
// strict profiles; the probes that have their component here apply.
func TestNative(t *testing.T) {
	needRoot(t)
	for _, profile := range []string{"default", "strict"} {
		t.Run(profile, func(t *testing.T) {
			r, code, stderr := verify(t, "--profile", profile)
			allHeld(t, "native", r, code, stderr)
			m := r.byName()
			// These have everything they need on this machine: each must
			// have been tried, not skipped.
			for _, name := range []string{"read-masked", "open-by-handle", "write-protected", "setuid-file", "host-loopback",
				"unix-socket", "abstract-socket", "connect-ip", "connect-private", "sni-mismatch", "host-mismatch",
				"placeholder", "dns-exfil", "ptrace", "tiocsti", "fork-bomb", "memory-bomb", "fill-tmp", "secret-env"} {
				if m[name].Status != "held" {
					t.Errorf("%s: %s %q: %s; want held", profile, name, m[name].Status, m[name].Evidence)
				}
			}
		})
	}
}

// TestWeakenedPolicyEscapes: a policy that makes the scratch area
// writable lets the write-outside probe through; the scorecard says
// escaped, with the file that appeared on the host, and exits 1. The
// control probe in the same run still holds.
func TestWeakenedPolicyEscapes(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "weak.yaml")
	os.WriteFile(pol, []byte("version: 1\nfilesystem:\n  write: [\".\", /var/tmp]\n"), 0o644)
	r, code, stderr := verify(t, "--policy", pol, "--probe", "write-outside", "--probe", "read-masked")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (an escape); stderr:\n%s", code, stderr)
	}
	m := r.byName()
	w := m["write-outside"]
	if w.Status != "escaped" || !strings.Contains(w.Evidence, "wrote /var/tmp/moat-verify-") {
		t.Errorf("write-outside: %s %q; want escaped with the path written", w.Status, w.Evidence)
	}
	if !strings.Contains(w.Evidence, "appeared on the host") {
		t.Errorf("write-outside: the harness did not confirm it outside: %q", w.Evidence)
	}
	if m["read-masked"].Status != "held" {
		t.Errorf("read-masked (the control): %s %q", m["read-masked"].Status, m["read-masked"].Evidence)
	}
	if r.Escaped != 1 || r.Held != 1 {
		t.Errorf("counts: held %d escaped %d; want 1 and 1", r.Held, r.Escaped)
	}

	// The same run as a table: the summary line and the escaped row.
	cmd := exec.Command(moatBin, "verify", "--policy", pol, "--probe", "write-outside")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "MOAT_MANAGED_POLICY=", "XDG_CONFIG_HOME=" + dir}
	out, _ := cmd.Output()
	for _, want := range []string{"\nfiles\n", "escaped  write-outside", "0/1 held, 0 not applicable, 1 escaped"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("scorecard lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "\x1b[") {
		t.Errorf("colour on a pipe:\n%q", out)
	}
}

// TestWeakenedPidsLimit: a pids limit far above the fork bomb's bound
// lets it fork all of its processes: escaped, and exit 1.
func TestWeakenedPidsLimit(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "weak.yaml")
	os.WriteFile(pol, []byte("version: 1\nresources:\n  pids: 1000000\n"), 0o644)
	r, code, stderr := verify(t, "--policy", pol, "--probe", "fork-bomb")
	f := r.byName()["fork-bomb"]
	if code != 1 || f.Status != "escaped" || !strings.Contains(f.Evidence, "processes forked under resources.pids 1000000") {
		t.Errorf("exit %d, fork-bomb %s %q; want 1, escaped with the count\n%s", code, f.Status, f.Evidence, stderr)
	}
}

// TestReportModeEscapes: network.mode report lets the proxy's refusals
// through; the proxy probes say escaped, and the host's bait confirms the
// tunnels reached it.
func TestReportModeEscapes(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "report.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork:\n  mode: report\n"), 0o644)
	r, code, stderr := verify(t, "--policy", pol, "--probe", "connect-ip", "--probe", "connect-private", "--probe", "dns-exfil", "--probe", "direct-ip")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	m := r.byName()
	for name, want := range map[string]string{
		"connect-ip":      "accepted a connection",
		"connect-private": "the host's private bait",
		"dns-exfil":       "looked the name up before refusing it",
	} {
		if m[name].Status != "escaped" || !strings.Contains(m[name].Evidence, want) {
			t.Errorf("%s: %s %q; want escaped with %q", name, m[name].Status, m[name].Evidence, want)
		}
	}
	// The control: report mode does not open a route around the proxy.
	if m["direct-ip"].Status != "held" {
		t.Errorf("direct-ip: %s %q; want held (the bait must not blame it for the proxy's tunnels)", m["direct-ip"].Status, m["direct-ip"].Evidence)
	}
}

// TestUsageAndConfig: the exit statuses for bad flags and a bad policy.
func TestUsageAndConfig(t *testing.T) {
	_, code, stderr := verify(t, "--probe", "no-such-probe")
	if code != 2 || !strings.Contains(stderr, `--probe "no-such-probe": no such probe`) {
		t.Errorf("unknown probe: exit %d, stderr %q; want 2", code, stderr)
	}
	_, code, _ = verify(t, "stray")
	if code != 2 {
		t.Errorf("stray argument: exit %d; want 2", code)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nnetwork:\n  allwo: []\n"), 0o644)
	_, code, stderr = verify(t, "--policy", bad)
	if code != 3 || !strings.Contains(stderr, "bad.yaml:3") {
		t.Errorf("bad policy: exit %d, stderr %q; want 3 naming bad.yaml:3", code, stderr)
	}
	out, err := exec.Command(moatBin, "verify", "--list").Output()
	if err != nil || strings.Count(string(out), "\n") < 40 {
		t.Errorf("--list: %v, %d lines:\n%s", err, strings.Count(string(out), "\n"), out)
	}
	help, _ := exec.Command(moatBin, "help").CombinedOutput()
	if strings.Contains(string(help), "__probe") || !strings.Contains(string(help), "verify") {
		t.Errorf("help lists __probe or misses verify:\n%s", help)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if inCI {
			t.Fatal("moat verify's end-to-end tests need root; CI runs as root")
		}
		t.Skip("needs root (the idmapped workspace, the cgroups)")
	}
}

// TestTiers runs the battery on every other tier this machine has
// (every one, in CI): container on runc, gvisor on runsc, docker, and
// docker with runsc, under the default profile.
func TestTiers(t *testing.T) {
	needRoot(t)
	type row struct {
		name  string
		needs []string
		flags []string
	}
	rows := []row{
		{"container", []string{"runc"}, []string{"--isolation", "container", "--runtime", "runc"}},
		{"gvisor", []string{"runsc"}, []string{"--isolation", "gvisor", "--runtime", "runsc"}},
		{"docker", []string{"docker"}, []string{"--isolation", "docker"}},
		{"docker-runsc", []string{"docker", "runsc"}, []string{"--isolation", "docker", "--runtime", "runsc"}},
	}
	for _, rw := range rows {
		t.Run(rw.name, func(t *testing.T) {
			for _, bin := range rw.needs {
				if _, err := exec.LookPath(bin); err != nil {
					if inCI {
						t.Fatalf("%s is missing; CI must install it (scripts/test-deps.sh)", bin)
					}
					t.Skipf("%s is not installed", bin)
				}
			}
			flags := rw.flags
			if strings.HasPrefix(rw.name, "docker") {
				flags = append(flags, "--image", probeImage(t))
			}
			r, code, stderr := verify(t, flags...)
			allHeld(t, rw.name, r, code, stderr)
		})
	}
}

// probeImage imports the smallest image the probes need: the C library
// that moat's binary loads, and an /etc/passwd. Nothing is pulled.
func probeImage(t *testing.T) string {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		if inCI {
			t.Fatalf("no Docker daemon answers (scripts/start-dockerd.sh starts one): %v", err)
		}
		t.Skipf("no Docker daemon: %v", err)
	}
	out, err := exec.Command("ldd", moatBin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", moatBin, err)
	}
	root := t.TempDir()
	for _, d := range []string{"etc", "tmp", "proc", "sys", "dev", "root"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/tmp:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nagent:x:1000:\n"), 0o644)
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasPrefix(f, "/") {
			continue
		}
		dst := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if b, err := exec.Command("cp", "-L", f, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v: %s", f, err, b)
		}
	}
	tag := "moat-verify/probe:test"
	imp := exec.Command("sh", "-c", `tar -C "$1" -cf - . | docker import - "$2"`, "sh", root, tag)
	if b, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v: %s", err, b)
	}
	return tag
}
