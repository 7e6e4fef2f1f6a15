package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	run1 := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		return run(context.Background(), e, args), out.String(), errb.String()
	}
	if code, out, _ := run1("ca", "init", "--dir", dir); code != 0 || !strings.HasPrefix(out, "moat CA created: "+filepath.Join(dir, "ca.pem")) {
		t.Fatalf("ca init: %d %q", code, out)
	}
	if code, out, _ := run1("ca", "init", "--dir", dir); code != 0 || !strings.HasPrefix(out, "moat CA exists: ") {
		t.Fatalf("second ca init: %d %q", code, out)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	// Flags after the FILE, as people type them.
	if code, _, errs := run1("ca", "bundle", bundle, "--dir", dir); code != 0 {
		t.Fatalf("ca bundle FILE --dir DIR: %d %s", code, errs)
	}
	b, _ := os.ReadFile(bundle)
	pem, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if !bytes.HasSuffix(b, pem) {
		t.Error("the bundle does not end with moat's CA certificate")
	}
	if code, _, errs := run1("ca", "bundle", "--dir", dir); code != exitUsage || !strings.Contains(errs, "name the FILE") {
		t.Errorf("ca bundle without FILE: %d %q", code, errs)
	}
	if code, _, errs := run1("ca", "show", "--dir", filepath.Join(t.TempDir(), "none")); code != exitInternal || !strings.Contains(errs, "moat ca init") {
		t.Errorf("ca show without a CA: %d %q; want a hint to run moat ca init", code, errs)
	}
}
