package tiers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrunHybridFallback: on a host with cgroup v1 and v2 hierarchies
// side by side crun refuses to run; moat says so and runs runc instead.
// Elsewhere --runtime crun runs crun.
func TestCrunHybridFallback(t *testing.T) {
	tiers(t) // root, and CI's runtimes
	if _, err := exec.LookPath("crun"); err != nil {
		if inCI {
			t.Fatal("crun is missing; CI installs it")
		}
		t.Skip("crun is not installed")
	}
	b := newBox(t, "filesystem:\n  write: [\".\"]\n")
	r := b.run(tier{flags: []string{"--isolation", "container", "--runtime", "crun", "--no-network"}}, 0, `id -u`)
	wantCode(t, r, 0)
	want(t, r, "1000")
	if hybridCgroups() != strings.Contains(r.stderr, "crun 1.8 refuses hosts with both cgroup v1 and v2") {
		t.Errorf("hybrid host %v, but the note is not as expected:\n%v", hybridCgroups(), r)
	}
}

// TestFailClosed: a runtime that is not there, or one of the wrong
// kind, refuses the run with the reason; nothing runs.
func TestFailClosed(t *testing.T) {
	tiers(t)
	b := newBox(t, "filesystem:\n  write: [\".\"]\n")
	for _, c := range []struct {
		flags []string
		msg   string
	}{
		{[]string{"--isolation", "container", "--runtime", "/nonexistent/runc"}, "not found"},
		{[]string{"--isolation", "container", "--runtime", "runsc"}, "runsc is the gvisor tier"},
		{[]string{"--isolation", "gvisor", "--runtime", "runc"}, "the gvisor tier runs runsc"},
		{[]string{"--isolation", "container", "--image", "/nonexistent"}, "--image"},
		{[]string{"--isolation", "vm"}, `--isolation "vm"`},
	} {
		r := b.run(tier{flags: append(c.flags, "--no-network")}, 0, `echo ran`)
		if r.code == 0 || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%v: want a refusal naming %q:\n%v", c.flags, c.msg, r)
		}
	}
	// A runtime that fails before the container starts: moat's status
	// is the sandbox's (125), not a command's.
	fake := filepath.Join(t.TempDir(), "runc-fails")
	os.WriteFile(fake, []byte("#!/bin/sh\necho cannot create the container >&2\nexit 1\n"), 0o755)
	r := b.run(tier{flags: []string{"--isolation", "container", "--runtime", fake, "--no-network"}}, 0, `echo ran`)
	if r.code != 125 || !strings.Contains(r.stderr, "before the container started") {
		t.Errorf("a failing runtime: want status 125 and the reason:\n%v", r)
	}
	// moat runs the runtime as root: a policy names one, never a file.
	b = newBox(t, "isolation:\n  tier: container\n  runtime: ./runc\n")
	r = b.run(tier{flags: []string{"--no-network"}}, 0, `echo ran`)
	if r.code == 0 || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, "not a path") {
		t.Errorf("isolation.runtime ./runc: want a refusal:\n%v", r)
	}
	// A repository's moat.yaml, found rather than named, chooses neither
	// the runtime nor the image.
	b = newBox(t, "isolation:\n  tier: container\n  image: /\n")
	cmd := exec.Command(moatBin, "run", "-q", "--no-network", "--", "echo", "ran")
	cmd.Dir, cmd.Env = b.ws, b.env
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "ran\n") || !strings.Contains(string(out), "may not set isolation.image") {
		t.Errorf("a found project's isolation.image: want a refusal: %v\n%s", err, out)
	}
}

// TestKilledMoat: moat killed with SIGKILL (no cleanup of its own) takes
// the container with it: the runtime dies with moat, the container's
// init with the runtime, and nothing of the agent's keeps running.
func TestKilledMoat(t *testing.T) {
	for _, tr := range tiers(t) {
		if tr.docker || tr.name == "native" {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			b := newBox(t, "filesystem:\n  write: [\".\"]\n")
			marker := "317" + strconv.Itoa(os.Getpid()%1000)
			args := append([]string{"run", "-q", "--tty", "never", "--no-network", "--policy", filepath.Join(b.ws, "moat.yaml")}, tr.flags...)
			cmd := exec.Command(moatBin, append(args, "--", "sh", "-c", "echo ready; exec sleep "+marker)...)
			cmd.Dir, cmd.Env = b.ws, b.env
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if n, _ := out.Read(buf); !strings.Contains(string(buf[:n]), "ready") {
				t.Fatalf("no ready line: %q", buf[:n])
			}
			cmd.Process.Kill()
			cmd.Wait()
			for i := 0; ; i++ {
				if !sleeping(marker) {
					return
				}
				if i == 100 {
					t.Fatalf("the agent's sleep %s still runs after moat was killed", marker)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// sleeping reports whether a process "sleep ARG" runs on the host (gVisor's
// processes are not host processes: its sandbox's command line names the
// container instead, and moat's containers are named moat-…).
func sleeping(arg string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		if s == "sleep\x00"+arg+"\x00" || strings.HasPrefix(s, "runsc-sandbox") && strings.Contains(s, "moat-oci-") {
			return true
		}
	}
	return false
}
