package proxy

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDependencies keeps the proxy to its lane: it may use policy and
// audit, never a sibling's internals, and never a proxy library that
// resolves names before a rule check.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil || !strings.Contains(string(out), "/internal/policy\n") {
		t.Fatalf("go list -deps: %v (the control: policy must be listed)", err)
	}
	if m := regexp.MustCompile(`(?m)/internal/(sandbox|permission|oci|workspace|verify)$`).Find(out); m != nil {
		t.Errorf("proxy depends on %s; share types through policy or audit", m)
	}
	if m := regexp.MustCompile(`(?m)^(github.com/elazarl/goproxy|github.com/armon/go-socks5|github.com/things-go/go-socks5)`).Find(out); m != nil {
		t.Errorf("proxy depends on %s, which the references reject", m)
	}
}
