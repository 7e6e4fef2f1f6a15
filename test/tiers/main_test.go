// Package tiers_test runs one behavioural table on every isolation tier
// moat has here: native, container (runc; crun where it runs), gvisor
// (runsc), docker and docker with runsc. The same policy, the same
// attacks, the same observable limits. Under CI=true no tier is skipped:
// a missing runtime is a failure.
package tiers_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moatsec/moat/internal/testmoat"
	"time"
)

var (
	moatBin string
	inCI    bool
)

func TestMain(m *testing.M) {
	inCI = testmoat.InCI
	testmoat.Main(m, "", "moat-tiers-", &moatBin)
}

// tier is one row of the table's other axis: moat run's flags for it.
type tier struct {
	name  string
	flags []string
	// gvisor: gVisor's kernel shows no NoNewPrivs line and Debian's 2022
	// runsc fails coreutils' statx, so the cases avoid ls -l and stat.
	gvisor bool
	docker bool
}

// tiers lists the tiers present; in CI a missing one fails the test.
func tiers(t *testing.T) []tier {
	t.Helper()
	if os.Geteuid() != 0 {
		if inCI {
			t.Fatal("the container tiers need root; CI runs as root")
		}
		t.Skip("the container tiers need root")
	}
	out := []tier{{name: "native"}}
	need := func(bin string) bool {
		if _, err := exec.LookPath(bin); err != nil {
			if inCI {
				t.Fatalf("%s is missing; CI must install it (scripts/test-deps.sh)", bin)
			}
			t.Logf("%s is not installed: its tier is left out", bin)
			return false
		}
		return true
	}
	if need("runc") {
		out = append(out, tier{name: "container-runc", flags: []string{"--isolation", "container", "--runtime", "runc"}})
	}
	if need("crun") && !hybridCgroups() {
		out = append(out, tier{name: "container-crun", flags: []string{"--isolation", "container", "--runtime", "crun"}})
	} else if hybridCgroups() {
		t.Log("container-crun: not applicable: crun 1.8 refuses this host's hybrid cgroup v1/v2 hierarchies (TestCrunHybridFallback checks moat's fallback)")
	}
	if need("runsc") {
		out = append(out, tier{name: "gvisor", flags: []string{"--isolation", "gvisor"}, gvisor: true})
	}
	if dockerRows == nil {
		if inCI {
			t.Fatal("the docker rows are missing (docker_rows_test.go)")
		}
		t.Log("docker rows: not built into this test binary")
	} else {
		out = append(out, dockerRows(t)...)
	}
	return out
}

// dockerRows lists the docker tiers (docker_rows_test.go sets it).
var dockerRows func(t *testing.T) []tier

func hybridCgroups() bool {
	var root, uni syscall.Statfs_t
	const cgroup2 = 0x63677270
	if syscall.Statfs("/sys/fs/cgroup", &root) != nil || root.Type == cgroup2 {
		return false
	}
	return syscall.Statfs("/sys/fs/cgroup/unified", &uni) == nil && uni.Type == cgroup2
}

// box is one case's world: a workspace owned by the agent's uid (so that
// every tier's agent, gVisor's included, is uid 1000 and may write it),
// with a policy in it.
type box struct {
	t     *testing.T
	ws    string
	audit string
	env   []string
}

const canary = "moat-canary-7c2f4a"

func newBox(t *testing.T, policy string) *box {
	t.Helper()
	root, err := os.MkdirTemp("/var/tmp", "moat-tiers-ws-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	b := &box{t: t, ws: filepath.Join(root, "ws"), audit: filepath.Join(root, "audit.jsonl")}
	if err := os.Mkdir(b.ws, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(b.ws, "secret.env"), []byte(canary+"\n"), 0o644)
	os.WriteFile(filepath.Join(b.ws, "readme.txt"), []byte("readable\n"), 0o644)
	os.WriteFile(filepath.Join(b.ws, "moat.yaml"), []byte("version: 1\n"+policy), 0o644)
	filepath.Walk(b.ws, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, 1000, 1000)
		}
		return nil
	})
	home := filepath.Join(root, "home")
	os.Mkdir(home, 0o755)
	b.env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + home, "LANG=C.UTF-8",
		"MOAT_MANAGED_POLICY=", "SECRET_TOKEN=" + canary}
	return b
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs moat run in the tier; when signal is set, it is sent to moat
// once the command has printed "ready".
func (b *box) run(tr tier, sig syscall.Signal, script string) result {
	b.t.Helper()
	args := append([]string{"run", "-q", "--tty", "never", "--audit", b.audit, "--policy", filepath.Join(b.ws, "moat.yaml")}, tr.flags...)
	args = append(args, "--", "sh", "-c", script)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, moatBin, args...)
	cmd.Dir = b.ws
	cmd.Env = b.env
	var out, errb bytes.Buffer
	cmd.Stderr = &errb
	done := make(chan struct{})
	var pw *os.File
	if sig == 0 {
		cmd.Stdout = &out
		close(done)
	} else {
		var pr *os.File
		pr, pw, _ = os.Pipe()
		cmd.Stdout = pw
		go func() {
			defer close(done)
			defer pr.Close()
			buf := make([]byte, 4096)
			for {
				n, err := pr.Read(buf)
				out.Write(buf[:n])
				if sig != 0 && strings.Contains(out.String(), "ready") {
					cmd.Process.Signal(sig)
					sig = 0
				}
				if err != nil {
					return
				}
			}
		}()
	}
	err := cmd.Start()
	if pw != nil {
		pw.Close() // the child has its copy
	}
	if err != nil {
		b.t.Fatalf("moat run: %v", err)
	}
	err = cmd.Wait()
	<-done
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("moat run: %v", err)
	}
	return result{code, out.String(), errb.String()}
}
