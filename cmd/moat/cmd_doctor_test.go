package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/moatsec/moat/internal/sandbox"
)

func TestDoctorReportsEveryLayer(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: os.Getenv}
	code := cmdDoctor(context.Background(), e, nil)
	h := sandbox.Probe()
	for _, layer := range []string{"kernel", "namespaces", "landlock", "seccomp", "no_new_privs", "cgroups", "overlayfs", "idmapped mounts", "runtime runc", "runtime runsc"} {
		if !regexp.MustCompile(`(?m)^` + layer + `\s+(ok|missing|read-only|-)\s`).Match(out.Bytes()) {
			t.Errorf("no %q row:\n%s", layer, out.String())
		}
	}
	if h.LandlockABI > 0 && !regexp.MustCompile(`(?m)^landlock\s+ok\s+ABI \d+$`).Match(out.Bytes()) {
		t.Errorf("landlock ABI %d not reported:\n%s", h.LandlockABI, out.String())
	}
	if code != exitOK && !bytes.Contains(errb.Bytes(), []byte("moat run cannot work")) {
		t.Errorf("exit %d without saying why: %s", code, errb.String())
	}

	// A missing layer is reported as missing, with the reason.
	t.Setenv("MOAT_TEST_HIDE_LAYERS", "landlock,seccomp")
	out.Reset()
	cmdDoctor(context.Background(), e, nil)
	for _, want := range []string{`(?m)^landlock\s+missing\s+hidden by MOAT_TEST_HIDE_LAYERS$`, `(?m)^seccomp\s+missing\s+hidden by MOAT_TEST_HIDE_LAYERS$`} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("no match for %s:\n%s", want, out.String())
		}
	}
}
