package oci

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatsec/moat/internal/sandbox"
)

// Seccomp returns moat's container seccomp profile: Docker's default
// profile, as it comes out for a container with no capabilities, tightened
// with moat's own denials (sandbox.DeniedSyscalls are taken out of every
// allow rule, so the default action refuses them) and with this machine's
// native architecture only (32-bit and x32 system calls are refused, as
// the native tier refuses them).
//
// The profile is the container's, so it binds moat's init as well as the
// agent: it leaves socket(AF_UNIX) allowed (the init dials the proxy's
// socket with it). The agent gets the native tier's filter on top in the
// last stage, which refuses AF_UNIX sockets, TIOCSTI and namespace clones.
func Seccomp() (*specs.LinuxSeccomp, error) {
	// The rules that depend on capabilities are chosen for a container
	// whose bounding set is empty.
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	out, err := seccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("seccomp: Docker's default profile: %w", err)
	}
	deny := map[string]bool{}
	for _, n := range sandbox.DeniedSyscalls {
		deny[n] = true
	}
	var kept []specs.LinuxSyscall
	for _, sc := range out.Syscalls {
		if sc.Action == specs.ActAllow {
			sc.Names = slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool { return deny[n] })
			if len(sc.Names) == 0 {
				continue
			}
		}
		kept = append(kept, sc)
	}
	out.Syscalls = kept
	if a, ok := nativeArch[runtime.GOARCH]; ok {
		out.Architectures = []specs.Arch{a}
	}
	return out, nil
}

var nativeArch = map[string]specs.Arch{
	"amd64":   specs.ArchX86_64,
	"arm64":   specs.ArchAARCH64,
	"riscv64": specs.ArchRISCV64,
	"ppc64le": specs.ArchPPC64LE,
	"s390x":   specs.ArchS390X,
}

// SeccompJSON is Seccomp in the JSON format Docker reads with
// --security-opt seccomp=FILE (the runtime spec's own field names, which
// Docker accepts as they are).
func SeccompJSON() ([]byte, error) {
	s, err := Seccomp()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
