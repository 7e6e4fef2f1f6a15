package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatsec/moat/internal/sandbox"
)

// fixtureSpec is a compiled policy as sandbox.Compile makes it, with
// fixture paths (none of them needs to exist: Generate reads the host
// only for the host-root view).
func fixtureSpec() *sandbox.Spec {
	return &sandbox.Spec{
		Argv:      []string{"claude", "--print", "hi"},
		Dir:       "/repo/proj",
		Env:       []string{"PATH=/usr/bin:/bin", "HOME=/home/dev", "HTTPS_PROXY=http://run-1:token@127.0.0.1:3128"},
		Hostname:  "moat",
		Write:     []string{"/repo/proj", "/home/dev/.local/state/moat/claude"},
		Protect:   []string{"/repo/proj/.git/hooks", "/repo/proj/moat.yaml"},
		Pin:       []string{"/repo/proj/.git"},
		MaskDirs:  []string{"/repo/proj/.secrets"},
		MaskFiles: []string{"/repo/proj/.env"},
		Tmpfs:     []sandbox.Tmpfs{{Path: "/tmp", Size: 1 << 30}},
		Egress:    true,
		Endpoints: []sandbox.EndpointPort{{Name: "audit", Port: 3129}},
		Resources: sandbox.Resources{Memory: 2 << 30, CPUs: 1.5, Pids: 512},
		Require:   []string{"seccomp"},
	}
}

// TestGenerateGolden compares the generated config.json with
// testdata/config.golden.json; the seccomp profile (it follows the
// kernel's version) and the open-files limit (the host's hard limit caps
// it) are summarised.
func TestGenerateGolden(t *testing.T) {
	rs, err := Generate(fixtureSpec(), GenerateOptions{Rootfs: "/bundle/rootfs", Exe: "/usr/local/bin/moat", RunDir: "/bundle/run", ID: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Linux.Seccomp == nil || len(rs.Linux.Seccomp.Syscalls) == 0 {
		t.Fatal("no seccomp profile")
	}
	rs.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: rs.Linux.Seccomp.DefaultAction, Architectures: []specs.Arch{"(native)"}}
	for i := range rs.Process.Rlimits {
		if rs.Process.Rlimits[i].Type == "RLIMIT_NOFILE" {
			rs.Process.Rlimits[i].Hard, rs.Process.Rlimits[i].Soft = 0, 0
		}
	}
	// The init's config is the Spec itself (its fields are sandbox's):
	// checked decoded, not byte for byte.
	var cc sandbox.ContainerConfig
	v, _ := strings.CutPrefix(rs.Process.Env[0], sandbox.ContainerEnvVar+"=")
	if err := json.Unmarshal([]byte(v), &cc); err != nil {
		t.Fatalf("the init's config: %v", err)
	}
	if cc.Socket != RunPath+"/"+sandbox.ContainerSocket || !slices.Equal(cc.Spec.Argv, fixtureSpec().Argv) || !hasTmpfs(cc.Spec.Tmpfs, "/home/dev") || cc.UserNS != 0 {
		t.Errorf("the init's config: %+v", cc)
	}
	rs.Process.Env[0] = sandbox.ContainerEnvVar + "=(the init's config)"
	got, err := json.MarshalIndent(rs, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "config.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestGenerateGolden -update writes it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("config.json differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
}

// TestGenerateGVisorUserNS: under gVisor the process runs as the
// workspace's owner, so the init is told to give the agent AgentID in a
// user namespace of its own, and how to start itself again there.
func TestGenerateGVisorUserNS(t *testing.T) {
	rs, err := Generate(fixtureSpec(), GenerateOptions{Rootfs: "/bundle/rootfs", Exe: "/usr/local/bin/moat", RunDir: "/bundle/run", GVisor: true})
	if err != nil {
		t.Fatal(err)
	}
	var cc sandbox.ContainerConfig
	v, _ := strings.CutPrefix(rs.Process.Env[0], sandbox.ContainerEnvVar+"=")
	if err := json.Unmarshal([]byte(v), &cc); err != nil {
		t.Fatalf("the init's config: %v", err)
	}
	if cc.UserNS != AgentID || !slices.Equal(cc.Argv, rs.Process.Args) {
		t.Errorf("the init's config: UserNS %d, Argv %q; want %d and the process's args %q", cc.UserNS, cc.Argv, AgentID, rs.Process.Args)
	}
	if slices.ContainsFunc(rs.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
		t.Error("the gVisor spec asks the runtime for a user namespace")
	}
}

// TestGenerateHardening checks the list field by field, so a
// golden file rewritten carelessly cannot drop one.
func TestGenerateHardening(t *testing.T) {
	rs, err := Generate(fixtureSpec(), GenerateOptions{HostRoot: true, Rootfs: "/bundle/rootfs", Exe: "/usr/local/bin/moat", RunDir: "/bundle/run"})
	if err != nil {
		t.Fatal(err)
	}
	p := rs.Process
	c := p.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities not empty: %+v", c)
	}
	if !p.NoNewPrivileges || p.User.UID != AgentID || p.User.GID != AgentID {
		t.Errorf("process: nnp %v, user %+v", p.NoNewPrivileges, p.User)
	}
	if !rs.Root.Readonly {
		t.Error("the root is writable")
	}
	ns := map[specs.LinuxNamespaceType]bool{}
	for _, n := range rs.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %s", n.Type, n.Path)
		}
		ns[n.Type] = true
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.UserNamespace, specs.CgroupNamespace} {
		if !ns[want] {
			t.Errorf("no new %s namespace", want)
		}
	}
	if m := rs.Linux.UIDMappings; len(m) != 1 || m[0].HostID == 0 || m[0].ContainerID != 0 {
		t.Errorf("uid mappings %+v: want the container's ids on an unprivileged host range", m)
	}
	r := rs.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 2<<30 || r.Pids == nil || r.Pids.Limit != 512 || r.CPU == nil || *r.CPU.Quota != 150000 {
		t.Errorf("resources %+v", r)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range rs.Mounts {
		mounts[m.Destination] = m
	}
	for _, d := range []string{"/tmp", "/home/dev"} {
		m, ok := mounts[d]
		if !ok || m.Type != "tmpfs" || !hasAll(m.Options, "noexec", "nosuid", "nodev") || !hasPrefix(m.Options, "size=") {
			t.Errorf("%s: %+v, want a sized noexec,nosuid,nodev tmpfs", d, m)
		}
	}
	for _, d := range []string{"/usr", "/etc", MoatPath, "/repo/proj/moat.yaml", "/repo/proj/.git/hooks"} {
		if m, ok := mounts[d]; !ok || !slices.Contains(m.Options, "ro") {
			t.Errorf("%s: %+v, want a read-only bind", d, m)
		}
	}
	if m := mounts["/repo/proj"]; !slices.Contains(m.Options, "rw") || !hasAll(m.Options, "nosuid", "nodev") {
		t.Errorf("the workspace: %+v, want rw,nosuid,nodev", m)
	}
	if m := mounts["/repo/proj/.env"]; m.Source != "/dev/null" {
		t.Errorf("deny_read file not masked: %+v", m)
	}
	if m := mounts["/repo/proj/.secrets"]; m.Type != "tmpfs" || !slices.Contains(m.Options, "ro") {
		t.Errorf("deny_read directory not masked: %+v", m)
	}
	if _, err := os.Stat("/etc/shadow"); err == nil {
		if m := mounts["/etc/shadow"]; m.Source != "/dev/null" {
			t.Errorf("/etc/shadow not masked in the host-root view: %+v", m)
		}
	}
	if !slices.Contains(rs.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(rs.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("the /proc masks are missing")
	}
	// The agent's command and environment travel to the init, not in args.
	if strings.Join(p.Args, " ") != MoatPath+" "+sandbox.ContainerInitArg || len(p.Env) != 1 || !strings.HasPrefix(p.Env[0], sandbox.ContainerEnvVar+"=") {
		t.Errorf("process args %q env %d", p.Args, len(p.Env))
	}
	// Order: a mask comes after the bind it covers.
	idx := func(d string) int {
		return slices.IndexFunc(rs.Mounts, func(m specs.Mount) bool { return m.Destination == d })
	}
	if idx("/repo/proj/.env") < idx("/repo/proj") || idx("/repo/proj/.git/hooks") < idx("/repo/proj/.git") {
		t.Error("a mask or protection is mounted before what it covers")
	}
}

func hasAll(opts []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(opts, w) {
			return false
		}
	}
	return true
}

func hasPrefix(opts []string, p string) bool {
	return slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, p) })
}

// TestSeccomp: Docker's default, with moat's denials taken out of every
// allow rule and this machine's architecture only.
func TestSeccomp(t *testing.T) {
	sc, err := Seccomp()
	if err != nil {
		t.Fatal(err)
	}
	if sc.DefaultAction != specs.ActErrno {
		t.Errorf("default action %s", sc.DefaultAction)
	}
	if a, ok := nativeArch[runtime.GOARCH]; ok && !slices.Equal(sc.Architectures, []specs.Arch{a}) {
		t.Errorf("architectures %v, want only %s", sc.Architectures, a)
	}
	allowed := map[string]bool{}
	for _, r := range sc.Syscalls {
		if r.Action == specs.ActAllow {
			for _, n := range r.Names {
				allowed[n] = true
			}
		}
	}
	for _, n := range sandbox.DeniedSyscalls {
		if allowed[n] {
			t.Errorf("%s is allowed", n)
		}
	}
	for _, n := range []string{"read", "write", "openat", "socket", "landlock_restrict_self", "seccomp", "prctl"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed: the init and its last stage need it", n)
		}
	}
	j, err := SeccompJSON()
	if err != nil || !json.Valid(j) {
		t.Fatalf("SeccompJSON: %v", err)
	}
}

// TestGenerateRefusesWorkspaceModes: a workspace mode or volumes the
// container spec does not express are refused, not dropped.
func TestGenerateRefusesWorkspaceModes(t *testing.T) {
	for _, s := range []*sandbox.Spec{
		func() *sandbox.Spec { s := fixtureSpec(); s.Workspace = &sandbox.WorkspaceMount{}; return s }(),
		func() *sandbox.Spec { s := fixtureSpec(); s.Binds = []sandbox.Bind{{}}; return s }(),
	} {
		if _, err := Generate(s, GenerateOptions{Exe: "/usr/local/bin/moat", RunDir: "/bundle/run"}); err == nil {
			t.Error("a workspace mode or volumes were dropped silently")
		}
	}
}
