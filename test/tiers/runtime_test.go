package tiers_test

import (
	"os/exec"
	"strings"
	"testing"
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
}
