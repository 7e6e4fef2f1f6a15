// Package oci compiles moat's native sandbox Spec into a hardened OCI
// runtime spec and runs it with runc, crun or runsc: the container and
// gVisor tiers. The same policy, compiled once by sandbox.Compile, gives
// every tier its limits; inside each, moat's own binary runs as the
// container's init (the forwarder to the proxy, then the native tier's
// last stage: Landlock and moat's seccomp filter) before the agent.
package oci

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/sandbox"
)

// Paths inside every container tier.
const (
	MoatPath = "/.moat/moat" // moat's binary, read-only: the container's init
	RunPath  = "/.moat/run"  // the per-run directory with the proxy's socket
	RunDir   = RunPath
)

// Identities. The agent is 1000:1000 inside; the user namespace maps the
// container's ids 0…65535 onto an unprivileged host range (as Docker's
// userns-remap does with its subordinate range), so the agent is host uid
// HostIDBase+1000 and owns nothing on the host.
const (
	AgentID    = 1000
	HostIDBase = 100000
	IDRange    = 65536
)

// SystemDirs are bound read-only from the host when there is no image.
var SystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}

// EtcSecrets are masked in the host-root view of /etc whatever the policy
// says: password hashes, sudo rules and host keys are the host's.
var EtcSecrets = []string{
	"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
	"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key",
	"/etc/docker", "/etc/ssl/private", "/etc/machine-id",
}

// Docker's masked and read-only /proc and /sys paths (its oci defaults),
// and moat's additions.
var (
	MaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/debug", "/sys/kernel/security",
	}
	ReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// GenerateOptions is what Generate needs beyond the Spec.
type GenerateOptions struct {
	// HostRoot: the root is an empty directory (Rootfs) with the host's
	// SystemDirs bound read-only into it; no image is needed. Without it,
	// Rootfs is the image's root filesystem (or "" for Docker's image) and
	// the system binds are left out.
	HostRoot bool
	Rootfs   string
	Exe      string // moat's binary on the host (bound at MoatPath)
	RunDir   string // the per-run host directory (bound at RunPath)
	// ID names the container's cgroup ("moat-ID"); the runner makes it
	// unique per run.
	ID string
	// Sources replaces the host source of a writable path's bind (a key
	// is a Spec.Write entry): the seam for the workspace overlay's merged
	// directory, or any other view of the path prepared outside.
	Sources map[string]string
	// GVisor shapes the spec for runsc. The user namespace is left out:
	// gVisor's kernel is the container's, with its own user namespace,
	// and its gofer opens host files for it as root (in a user namespace
	// it could not open the files it masks). The host's pids cgroup
	// counts gVisor's own threads too: it gets headroom, and the policy's
	// limit is the agent's RLIMIT_NPROC inside, which gVisor enforces.
	GVisor bool
	// NoUserNamespace leaves the user namespace and its mappings out (as
	// GVisor does): Docker's user namespace is the daemon's
	// (--userns-remap), not the container's to ask for.
	NoUserNamespace bool
	// BindLoader binds the dynamic loader and the libraries moat's
	// binary needs at LibPath and starts the init through the loader:
	// an image need not have the C library moat was linked with.
	BindLoader bool
	// TTY: the init gives the command a new pseudo-terminal of size
	// Winsize and sends its master over the run's socket.
	TTY     bool
	Winsize *unix.Winsize
}

// LibPath holds the loader and libraries of moat's binary (BindLoader).
const LibPath = "/.moat/lib"

// gvisorPids is the headroom the host's pids cgroup gives gVisor's
// sentry and gofer threads.
const gvisorPids = 256

// Generate compiles the native tier's Spec into a hardened OCI runtime
// spec: empty capability sets, no_new_privs, moat's seccomp profile, a
// read-only root, private tmpfs mounts (noexec,nosuid,nodev, sized),
// masked and read-only /proc and /sys paths, deny_read masked, the
// writable paths bound read-write and the protected ones read-only, new
// pid/ipc/uts/mount/network/cgroup namespaces (the runtime brings up
// loopback only), a user namespace, cgroup limits and rlimits. The
// process is moat's init; the agent's command travels in its
// environment (InitEnv).
func Generate(s *sandbox.Spec, o GenerateOptions) (*specs.Spec, error) {
	if s == nil || len(s.Argv) == 0 {
		return nil, errors.New("oci: no command")
	}
	if o.Exe == "" || o.RunDir == "" {
		return nil, errors.New("oci: the moat binary and the run directory are required")
	}
	if s.Workspace != nil || len(s.Binds) > 0 {
		// The seam for them is GenerateOptions.Sources; until a tier
		// fills it, refusing beats binding the workspace read-write.
		return nil, errors.New("oci: the workspace modes other than rw and filesystem.volumes are the native tier's; run with --isolation native, or --workspace rw")
	}
	inner := containerSpec(s)
	cc := sandbox.ContainerConfig{Spec: *inner, Socket: RunPath + "/" + sandbox.ContainerSocket}
	if o.GVisor {
		cc.Nproc = s.Resources.Pids
	}
	cc.TTY, cc.Winsize = o.TTY, o.Winsize
	sc, err := Seccomp()
	if err != nil {
		return nil, err
	}
	empty := []string{}
	rs := &specs.Spec{
		Version:  specs.Version,
		Hostname: s.Hostname,
		Root:     &specs.Root{Path: o.Rootfs, Readonly: true},
		Process: &specs.Process{
			Args: []string{MoatPath, sandbox.ContainerInitArg},
			Cwd:  s.Dir,
			User: specs.User{UID: AgentID, GID: AgentID},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: empty, Effective: empty, Inheritable: empty, Permitted: empty, Ambient: empty,
			},
			NoNewPrivileges: true,
			Rlimits:         rlimits(),
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.UserNamespace},
				{Type: specs.CgroupNamespace},
			},
			UIDMappings:   []specs.LinuxIDMapping{{ContainerID: 0, HostID: HostIDBase, Size: IDRange}},
			GIDMappings:   []specs.LinuxIDMapping{{ContainerID: 0, HostID: HostIDBase, Size: IDRange}},
			Resources:     resources(s.Resources),
			Seccomp:       sc,
			MaskedPaths:   slices.Clone(MaskedPaths),
			ReadonlyPaths: slices.Clone(ReadonlyPaths),
		},
	}
	if o.GVisor || o.NoUserNamespace {
		rs.Linux.Namespaces = slices.DeleteFunc(rs.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
		rs.Linux.UIDMappings, rs.Linux.GIDMappings = nil, nil
	}
	if o.GVisor {
		if p := rs.Linux.Resources.Pids; p != nil {
			p.Limit += gvisorPids
		}
	}
	if o.ID != "" {
		rs.Linux.CgroupsPath = "/moat-" + o.ID
	}
	rs.Mounts = mounts(inner, o)
	if o.BindLoader {
		interp, libs, err := dynamicDeps(o.Exe)
		if err != nil {
			return nil, fmt.Errorf("oci: moat's binary: %w", err)
		}
		if interp != "" {
			// Before the tmpfs and workspace mounts: only under /.moat.
			var extra []specs.Mount
			extra = append(extra, bind(interp, LibPath+"/"+filepath.Base(interp), true))
			for _, l := range libs {
				extra = append(extra, bind(l[1], LibPath+"/"+l[0], true))
			}
			rs.Mounts = append(rs.Mounts[:6:6], append(extra, rs.Mounts[6:]...)...)
			rs.Process.Args = append([]string{LibPath + "/" + filepath.Base(interp), "--library-path", LibPath}, rs.Process.Args...)
		}
	}
	if o.GVisor {
		// The process runs as the workspace's owner (the callers set
		// it); the init gives the agent AgentID in a user namespace
		// mapped onto it.
		cc.UserNS, cc.Argv = AgentID, rs.Process.Args
	}
	env, err := sandbox.ContainerInitEnv(cc)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	rs.Process.Env = []string{env}
	return rs, nil
}

// containerSpec is the Spec as the init inside sees it: the agent's home
// directory gets a private tmpfs when no writable path covers it (the
// host's home is not in the container), and it is listed with the other
// tmpfs mounts so that Landlock lets the agent write it.
func containerSpec(s *sandbox.Spec) *sandbox.Spec {
	c := *s
	c.Tmpfs = slices.Clone(s.Tmpfs)
	c.TTY = false
	home := ""
	for _, kv := range s.Env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = filepath.Clean(v)
		}
	}
	if home != "" && home != "/" && filepath.IsAbs(home) && !covered(home, s.Write) && !hasTmpfs(c.Tmpfs, home) {
		c.Tmpfs = append(c.Tmpfs, sandbox.Tmpfs{Path: home, Size: 256 << 20})
	}
	return &c
}

func covered(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") || r == "/" {
			return true
		}
	}
	return false
}

func hasTmpfs(ts []sandbox.Tmpfs, p string) bool {
	for _, t := range ts {
		if t.Path == p {
			return true
		}
	}
	return false
}

// mounts lists the container's mounts in the order they must be made
// (a later one covers an earlier one): the kernel file systems, the
// system directories, moat's files, the tmpfs mounts, the writable paths
// shallowest first, pins and protections, then the masks.
func mounts(s *sandbox.Spec, o GenerateOptions) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	if o.HostRoot {
		for _, d := range SystemDirs {
			fi, err := os.Lstat(d)
			if err != nil {
				continue
			}
			src := d
			if fi.Mode()&os.ModeSymlink != 0 {
				// Merged /usr: /bin → usr/bin. Bound from its target, so
				// the path works in the empty root too.
				r, err := filepath.EvalSymlinks(d)
				if err != nil {
					continue
				}
				src = r
			}
			ms = append(ms, bind(src, d, true))
		}
	}
	ms = append(ms, bind(o.Exe, MoatPath, true), bind(o.RunDir, RunPath, true))
	for _, t := range s.Tmpfs {
		ms = append(ms, specs.Mount{Destination: t.Path, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=1777", "size=" + strconv.FormatInt(t.Size, 10)}})
	}
	writes := slices.Clone(s.Write)
	sort.SliceStable(writes, func(a, b int) bool { return len(writes[a]) < len(writes[b]) })
	for _, w := range writes {
		src := w
		if v, ok := o.Sources[w]; ok {
			src = v
		}
		ms = append(ms, bind(src, w, false))
	}
	for _, p := range s.Pin {
		ms = append(ms, bind(p, p, false))
	}
	for _, p := range s.Protect {
		ms = append(ms, bind(p, p, true))
	}
	var maskDirs, maskFiles []string
	maskDirs = append(maskDirs, s.MaskDirs...)
	maskFiles = append(maskFiles, s.MaskFiles...)
	if o.HostRoot {
		for _, p := range EtcSecrets {
			fi, err := os.Stat(p)
			switch {
			case err != nil:
			case fi.IsDir():
				maskDirs = appendNew(maskDirs, p)
			default:
				maskFiles = appendNew(maskFiles, p)
			}
		}
	}
	for _, d := range maskDirs {
		if !visible(d, o.HostRoot, s) {
			continue
		}
		ms = append(ms, specs.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"ro", "nosuid", "nodev", "noexec", "mode=0555", "size=4k"}})
	}
	for _, f := range maskFiles {
		if !visible(f, o.HostRoot, s) {
			continue
		}
		ms = append(ms, bind("/dev/null", f, true))
	}
	return ms
}

// visible reports whether p is in the container's tree at all: masking a
// path that is not there would create it.
func visible(p string, hostRoot bool, s *sandbox.Spec) bool {
	if covered(p, s.Write) {
		return true
	}
	if hostRoot && covered(p, SystemDirs) {
		return true
	}
	return false
}

func bind(src, dst string, ro bool) specs.Mount {
	opts := []string{"rbind", "nosuid", "nodev"}
	if ro {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
}

func appendNew(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

// cpuPeriod is the CFS period the CPU quota is a share of.
const cpuPeriod = 100000

func resources(r sandbox.Resources) *specs.LinuxResources {
	out := &specs.LinuxResources{
		// No devices but the runtime's defaults (null, zero, full,
		// random, urandom, tty, ptmx).
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if r.Memory > 0 {
		m := r.Memory
		out.Memory = &specs.LinuxMemory{Limit: &m, Swap: &m} // no swap beyond the limit
	}
	if r.CPUs > 0 {
		q := int64(r.CPUs * cpuPeriod)
		p := uint64(cpuPeriod)
		out.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	if r.Pids > 0 {
		out.Pids = &specs.LinuxPids{Limit: r.Pids}
	}
	return out
}

// maxNoFile caps the open files limit (below the usual hard limits, so a
// runtime without CAP_SYS_RESOURCE can set it).
const maxNoFile = 16384

func rlimits() []specs.POSIXRlimit {
	nofile := uint64(maxNoFile)
	var cur unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &cur) == nil && cur.Max < nofile {
		nofile = cur.Max
	}
	return []specs.POSIXRlimit{
		{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
		{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile},
	}
}

// dynamicDeps returns exe's program interpreter and the host paths of
// the libraries it names, or "" for a static binary.
// Each library is its name and its host path.
func dynamicDeps(exe string) (interp string, libs [][2]string, err error) {
	f, err := elf.Open(exe)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return "", nil, nil
	}
	names, err := f.ImportedLibraries()
	if err != nil {
		return "", nil, err
	}
	for _, n := range names {
		found := ""
		for _, d := range libDirs {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				found = filepath.Join(d, n)
				break
			}
		}
		if found == "" {
			return "", nil, fmt.Errorf("its library %s is in none of %s", n, strings.Join(libDirs, ", "))
		}
		r, err := filepath.EvalSymlinks(found)
		if err != nil {
			return "", nil, err
		}
		libs = append(libs, [2]string{n, r})
	}
	r, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return "", nil, fmt.Errorf("its loader: %w", err)
	}
	return r, libs, nil
}

var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
