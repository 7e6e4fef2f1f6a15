package oci

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatsec/moat/internal/sandbox"
)

// DockerOptions says how a spec is run under Docker.
type DockerOptions struct {
	Image                 string // image name (required); it is never pulled
	Runtime               string // "" (the daemon's default, runc) or a runtime registered with the daemon ("runsc")
	Docker                string // CLI path; "" = "docker" on PATH
	Stdin, Stdout, Stderr *os.File
	TTY                   bool
	Log                   *slog.Logger

	// Require lists the layers the policy requires (sandbox.Spec.Require):
	// "userns" is refused unless the daemon remaps users.
	Require []string
	// Exe is moat's binary on the host, bound at MoatPath as the
	// container's init (RunDocker; "" = this process's). Egress serves the
	// agent's proxy and endpoint connections (Spec.Egress), and
	// ForwardSignals passes moat's SIGINT, SIGTERM, SIGHUP, SIGQUIT,
	// SIGUSR1 and SIGUSR2 to the container.
	Exe            string
	Egress         *sandbox.Egress
	ForwardSignals bool
	// Name is the container's name; "" = "moat-" and a random suffix.
	Name string
	// FilesDir is the directory the caller writes DockerArgs' files to
	// (StartDocker makes a private one); the arguments name them there.
	FilesDir string
}

// Names of the files DockerArgs returns, inside DockerOptions.FilesDir.
const (
	DockerSeccompFile = "seccomp.json"
	DockerEnvFile     = "env" // written 0600: it may hold the proxy session token
)

// Docker's own mounts: it makes these itself, with options at least as
// strict as a hardened spec's, so the spec's entries for them are checked
// (dockerOwnMount) rather than passed.
var dockerOwn = map[string]bool{
	"/proc": true, "/dev": true, "/dev/pts": true, "/dev/mqueue": true,
	"/sys": true, "/sys/fs/cgroup": true, "/dev/shm": true,
}

// dockerMasked and dockerReadonly are the /proc and /sys paths Docker 20.10
// masks or makes read-only in every container that is not privileged
// (moby's oci.DefaultLinuxSpec); a spec may ask for these, not for more:
// runc refuses other mounts over /proc, and Docker has no flag to add to
// the lists.
var (
	dockerMasked = []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	dockerReadonly = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	// sysfsEmpty are mount points in sysfs (debugfs, securityfs): in the
	// container's own sysfs mount they are empty directories, so masking
	// them, as Generate asks, is what Docker's /sys already gives.
	sysfsEmpty = []string{"/sys/kernel/debug", "/sys/kernel/security"}
)

// dockerDevices are the device numbers Docker's default rules let a
// container open: null, zero, full, random, urandom, tty, console, ptmx and
// the pseudo-terminals. A spec may allow no more.
var dockerDevices = map[[2]int64]bool{
	{1, 3}: true, {1, 5}: true, {1, 7}: true, {1, 8}: true, {1, 9}: true,
	{5, 0}: true, {5, 1}: true, {5, 2}: true, {136, -1}: true,
}

// kernelSysctls are the kernel's defaults for the two network sysctls
// Docker changes in every container with a network namespace of its own
// (unprivileged ICMP sockets, ports below 1024 for anyone): they are set
// back unless the spec sets them, so the container's network namespace is
// the one the native tier makes.
var kernelSysctls = [][2]string{
	{"net.ipv4.ip_unprivileged_port_start", "1024"},
	{"net.ipv4.ping_group_range", "1 0"},
}

var runtimeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// DockerArgs translates a hardened OCI runtime spec (Generate's) into the
// arguments of `docker run`, field by field, so that Docker runs the
// container with the same hardening as runc would run the bundle. args
// starts with "run"; files are the files the arguments name inside
// o.FilesDir (the seccomp profile and the environment, which holds the
// proxy session token and so never appears in argv), for the caller to
// write, the environment with mode 0600.
//
// What Docker cannot express and the spec needs is refused with the reason:
// capabilities, bind mounts with noexec, devices beyond Docker's default
// set, /proc and /sys paths beyond Docker's masked and read-only lists.
func DockerArgs(s *specs.Spec, o DockerOptions) (args []string, files map[string][]byte, err error) {
	if s == nil || s.Process == nil || s.Linux == nil {
		return nil, nil, errors.New("docker: the spec has no process or no linux section")
	}
	if o.Image == "" {
		return nil, nil, errors.New("docker: no image: name one with --image (a local image; moat never pulls)")
	}
	if o.FilesDir == "" || !filepath.IsAbs(o.FilesDir) {
		return nil, nil, fmt.Errorf("docker: the files' directory %q is not an absolute path", o.FilesDir)
	}
	if o.Runtime != "" && !runtimeName.MatchString(o.Runtime) {
		return nil, nil, fmt.Errorf("docker: runtime %q: Docker names a runtime registered with the daemon (runsc, runc), not a path", o.Runtime)
	}
	p := s.Process
	if len(p.Args) == 0 || p.Args[0] == "" {
		return nil, nil, errors.New("docker: the spec's process has no command")
	}
	name := o.Name
	if name == "" {
		name = "moat-" + randomSuffix()
	}
	file := func(n string) string { return filepath.Join(o.FilesDir, n) }

	a := []string{"run", "--rm", "--name", name, "--pull", "never", "--interactive"}
	if p.Terminal || o.TTY {
		a = append(a, "--tty")
	}
	// moat's binary is the container's init (it reaps and forwards
	// signals); Docker's own init would sit in between.
	a = append(a, "--init=false")
	// The logging driver would keep a copy of everything the agent prints
	// in the daemon's directory; attach streams the output without it.
	a = append(a, "--log-driver", "none")
	if o.Runtime != "" {
		a = append(a, "--runtime", o.Runtime)
	}

	// process.user: Docker takes numeric ids as they are, whatever the
	// image's /etc/passwd says.
	a = append(a, "--user", fmt.Sprintf("%d:%d", p.User.UID, p.User.GID))
	for _, g := range p.User.AdditionalGids {
		if g != p.User.GID {
			a = append(a, "--group-add", strconv.FormatUint(uint64(g), 10))
		}
	}
	if err := noCapabilities(p.Capabilities); err != nil {
		return nil, nil, err
	}
	a = append(a, "--cap-drop", "ALL")
	if p.NoNewPrivileges {
		a = append(a, "--security-opt", "no-new-privileges")
	}
	if p.ApparmorProfile != "" {
		a = append(a, "--security-opt", "apparmor="+p.ApparmorProfile)
	}
	if p.SelinuxLabel != "" {
		return nil, nil, errors.New("docker: process.selinuxLabel: Docker sets SELinux labels by type and level, not a whole label; moat does not use SELinux")
	}
	if p.OOMScoreAdj != nil {
		a = append(a, "--oom-score-adj", strconv.Itoa(*p.OOMScoreAdj))
	}
	if p.Scheduler != nil || p.IOPriority != nil || p.ExecCPUAffinity != nil {
		return nil, nil, errors.New("docker: process.scheduler, ioPriority and execCPUAffinity have no docker run flag")
	}
	for _, r := range p.Rlimits {
		n, ok := strings.CutPrefix(r.Type, "RLIMIT_")
		if !ok || !ulimitNames[n] {
			return nil, nil, fmt.Errorf("docker: rlimit %s has no --ulimit name", r.Type)
		}
		a = append(a, "--ulimit", fmt.Sprintf("%s=%d:%d", strings.ToLower(n), r.Soft, r.Hard))
	}
	if p.User.Umask != nil {
		return nil, nil, errors.New("docker: process.user.umask has no docker run flag (the image's default applies)")
	}

	if s.Root != nil && s.Root.Readonly {
		a = append(a, "--read-only")
	}
	if s.Hostname != "" {
		a = append(a, "--hostname", s.Hostname)
	}
	if s.Domainname != "" {
		a = append(a, "--domainname", s.Domainname)
	}
	if p.Cwd != "" {
		a = append(a, "--workdir", p.Cwd)
	}

	ns, err := dockerNamespaces(s)
	if err != nil {
		return nil, nil, err
	}
	hasShm := false
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" {
			hasShm = true
		}
	}
	if ns["network"] {
		a = append(a, "--network", "none")
	} else {
		return nil, nil, errors.New("docker: the spec shares the host's network namespace; moat's containers have loopback only")
	}
	switch {
	case ns["ipc"] && hasShm:
		a = append(a, "--ipc", "private")
	case ns["ipc"]:
		a = append(a, "--ipc", "none") // private, and no /dev/shm
	default:
		return nil, nil, errors.New("docker: the spec shares the host's IPC namespace")
	}
	if !ns["pid"] || !ns["uts"] || !ns["mount"] {
		return nil, nil, errors.New("docker: the spec shares the host's pid, uts or mount namespace; Docker makes new ones (and moat asks for them)")
	}
	if ns["cgroup"] {
		a = append(a, "--cgroupns", "private")
	}

	mounts, err := dockerMounts(s)
	if err != nil {
		return nil, nil, err
	}
	a = append(a, mounts...)
	if err := dockerProcPaths(s.Linux); err != nil {
		return nil, nil, err
	}

	res, err := dockerResources(s.Linux)
	if err != nil {
		return nil, nil, err
	}
	a = append(a, res...)
	if len(s.Linux.Devices) > 0 {
		return nil, nil, errors.New("docker: linux.devices: Docker makes the container's /dev itself; --device would pass host devices")
	}
	set := map[string]bool{}
	for _, k := range sortedKeys(s.Linux.Sysctl) {
		a = append(a, "--sysctl", k+"="+s.Linux.Sysctl[k])
		set[k] = true
	}
	for _, kv := range kernelSysctls {
		if !set[kv[0]] {
			a = append(a, "--sysctl", kv[0]+"="+kv[1])
		}
	}
	if s.Linux.IntelRdt != nil || s.Linux.Personality != nil || s.Linux.MountLabel != "" {
		return nil, nil, errors.New("docker: linux.intelRdt, personality and mountLabel have no docker run flag")
	}
	switch s.Linux.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave":
	default:
		return nil, nil, fmt.Errorf("docker: linux.rootfsPropagation %q: Docker's root is private", s.Linux.RootfsPropagation)
	}

	files = map[string][]byte{}
	if sc := s.Linux.Seccomp; sc != nil {
		// The spec's own filter, in the OCI form, which Docker's loader
		// reads as it reads its profiles (same field names, no includes
		// or excludes: the rules are already the container's).
		b, err := json.MarshalIndent(sc, "", "\t")
		if err != nil {
			return nil, nil, fmt.Errorf("docker: seccomp profile: %w", err)
		}
		files[DockerSeccompFile] = append(b, '\n')
		a = append(a, "--security-opt", "seccomp="+file(DockerSeccompFile))
	} else {
		return nil, nil, errors.New("docker: the spec has no seccomp profile; moat's containers always have one")
	}
	env, err := dockerEnvFile(p.Env)
	if err != nil {
		return nil, nil, err
	}
	files[DockerEnvFile] = env
	a = append(a, "--env-file", file(DockerEnvFile))

	a = append(a, "--entrypoint", p.Args[0], o.Image)
	a = append(a, p.Args[1:]...)
	return a, files, nil
}

// ulimitNames are the rlimits docker run's --ulimit knows.
var ulimitNames = map[string]bool{
	"AS": true, "CORE": true, "CPU": true, "DATA": true, "FSIZE": true, "LOCKS": true,
	"MEMLOCK": true, "MSGQUEUE": true, "NICE": true, "NOFILE": true, "NPROC": true,
	"RSS": true, "RTPRIO": true, "RTTIME": true, "SIGPENDING": true, "STACK": true,
}

// noCapabilities refuses a spec that keeps any capability: docker run
// gives its capabilities to every set at once, so only the empty sets
// translate exactly (to --cap-drop ALL), and moat never keeps one.
func noCapabilities(c *specs.LinuxCapabilities) error {
	if c == nil {
		return nil
	}
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		if len(set) > 0 {
			return fmt.Errorf("docker: the spec keeps capabilities (%s); moat's containers have none", strings.Join(set, ", "))
		}
	}
	return nil
}

// dockerNamespaces returns the namespaces the spec makes new. Joining an
// existing one (a path) is refused, and so is a user namespace: Docker's is
// the daemon's --userns-remap, one mapping for every container, which no
// docker run flag sets. Without it the agent's uid in the container is the
// same uid on the host (still without capabilities, in its own pid, mount
// and network namespaces).
func dockerNamespaces(s *specs.Spec) (map[string]bool, error) {
	ns := map[string]bool{}
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			return nil, fmt.Errorf("docker: the spec joins the %s namespace %s; docker run makes its own", n.Type, n.Path)
		}
		switch n.Type {
		case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace:
			ns[string(n.Type)] = true
		case specs.UserNamespace:
			// Docker's user namespace is the daemon's --userns-remap: one
			// subordinate range for every container (dockerd
			// --userns-remap=default maps 0…65535 onto dockremap's range,
			// as Generate's mapping does onto 100000…), not a docker run
			// flag. StartDocker reports which the daemon does, and refuses
			// a policy that requires the namespace from a daemon without it.
			ns["user"] = true
		default:
			return nil, fmt.Errorf("docker: the %s namespace has no docker run flag", n.Type)
		}
	}
	return ns, nil
}

// dockerMounts translates the spec's mounts: binds to --mount type=bind,
// tmpfs to --tmpfs with its options (which docker passes to mount(2)),
// Docker's own mounts checked, anything else refused.
func dockerMounts(s *specs.Spec) ([]string, error) {
	var a []string
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		dst := path.Clean(m.Destination)
		if !path.IsAbs(dst) {
			return nil, fmt.Errorf("docker: mount destination %q is not absolute", m.Destination)
		}
		if seen[dst] {
			return nil, fmt.Errorf("docker: two mounts on %s; docker run takes one per destination", dst)
		}
		seen[dst] = true
		opts := m.Options
		if dst == "/dev/shm" && m.Type == "tmpfs" {
			// Docker's /dev/shm is a tmpfs with nosuid,nodev,noexec; only
			// its size is the container's to set.
			if err := onlyOptions(dst, opts, "rw", "nosuid", "nodev", "noexec", "mode=1777", "size="); err != nil {
				return nil, err
			}
			if v := optionValue(opts, "size"); v != "" {
				a = append(a, "--shm-size", v)
			}
			continue
		}
		if dockerOwn[dst] {
			if err := dockerOwnMount(dst, m); err != nil {
				return nil, err
			}
			continue
		}
		if strings.ContainsAny(dst, ",:=\"'\n") {
			return nil, fmt.Errorf("docker: mount destination %q: docker run's mount flags cannot carry , : = or quotes in a path", dst)
		}
		switch {
		case m.Type == "tmpfs":
			a = append(a, "--tmpfs", dst+":"+strings.Join(tmpfsOptions(opts), ","))
		case m.Type == "bind" || slices.Contains(opts, "bind") || slices.Contains(opts, "rbind"):
			b, err := dockerBind(m.Source, dst, opts)
			if err != nil {
				return nil, err
			}
			a = append(a, "--mount", b)
		default:
			return nil, fmt.Errorf("docker: mount on %s of type %q has no docker run flag that keeps its options", dst, m.Type)
		}
	}
	return a, nil
}

// dockerBind returns the --mount value for a bind mount. Docker binds are
// recursive and have no nosuid, nodev or noexec: nosuid is what
// no-new-privileges already gives, nodev what Docker's device rules give
// (no device but the default ones opens, and without CAP_MKNOD none is
// made); noexec cannot be had, so it is refused. A read-only bind whose
// source has mounts below it is made non-recursive, because Docker 20.10
// leaves those submounts writable.
func dockerBind(src, dst string, opts []string) (string, error) {
	if strings.ContainsAny(src, ",\"'\n") || !filepath.IsAbs(src) {
		return "", fmt.Errorf("docker: bind source %q: docker run's --mount needs an absolute path without , or quotes", src)
	}
	b := "type=bind,src=" + src + ",dst=" + dst
	ro := false
	recursive := true
	for _, o := range opts {
		switch o {
		case "ro", "rro":
			ro = true
		case "rw", "bind", "nosuid", "nodev", "rnosuid", "rnodev":
		case "rbind":
		case "private", "rprivate", "slave", "rslave":
			b += ",bind-propagation=" + o
		case "noexec", "rnoexec":
			return "", fmt.Errorf("docker: bind on %s is noexec; Docker's bind mounts cannot be", dst)
		default:
			return "", fmt.Errorf("docker: bind on %s: option %q has no --mount equivalent", dst, o)
		}
	}
	if !slices.Contains(opts, "rbind") && slices.Contains(opts, "bind") {
		recursive = false
	}
	if ro {
		b += ",readonly"
		if recursive && hasSubmounts(src) {
			recursive = false
		}
	}
	if !recursive {
		b += ",bind-nonrecursive=true"
	}
	return b, nil
}

// hasSubmounts reports whether a mount point lies strictly below dir.
func hasSubmounts(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return true // unknown: non-recursive is the safe answer
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, dir+"/") || dir == "/" && mp != "/" {
			return true
		}
	}
	return false
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// dockerOwnMount checks a spec's mount of one of the paths Docker mounts
// itself: Docker's is used, so the spec's may not ask for more than it.
func dockerOwnMount(dst string, m specs.Mount) error {
	want := map[string]string{
		"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/mqueue": "mqueue",
		"/sys": "sysfs", "/sys/fs/cgroup": "cgroup",
	}
	if t := want[dst]; m.Type != t && !(dst == "/sys/fs/cgroup" && m.Type == "cgroup2") {
		return fmt.Errorf("docker: %s is Docker's own %s mount; the spec's %q mount cannot replace it", dst, want[dst], m.Type)
	}
	// Docker's sysfs and cgroup mounts are read-only (the container is
	// not privileged); the spec must not need them writable for anything.
	return nil
}

// dockerProcPaths checks linux.maskedPaths and readonlyPaths against what
// Docker does in every container.
func dockerProcPaths(l *specs.Linux) error {
	for _, p := range l.MaskedPaths {
		if !slices.Contains(dockerMasked, p) && !slices.Contains(sysfsEmpty, p) {
			return fmt.Errorf("docker: linux.maskedPaths %s: Docker masks only its own list (%s)", p, strings.Join(dockerMasked, " "))
		}
	}
	for _, p := range l.ReadonlyPaths {
		if !slices.Contains(dockerReadonly, p) && !slices.Contains(dockerMasked, p) {
			return fmt.Errorf("docker: linux.readonlyPaths %s: Docker makes only its own list read-only (%s)", p, strings.Join(dockerReadonly, " "))
		}
	}
	return nil
}

// dockerResources translates linux.resources to the cgroup flags.
func dockerResources(l *specs.Linux) ([]string, error) {
	r := l.Resources
	if r == nil {
		return nil, nil
	}
	var a []string
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			a = append(a, "--memory", strconv.FormatInt(*m.Limit, 10))
			// Docker's default swap is twice the memory: say it.
			swap := *m.Limit
			if m.Swap != nil && *m.Swap != 0 {
				swap = *m.Swap
			}
			a = append(a, "--memory-swap", strconv.FormatInt(swap, 10))
		} else if m.Swap != nil && *m.Swap > 0 {
			return nil, errors.New("docker: linux.resources.memory.swap without a limit: docker run's --memory-swap needs --memory")
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			a = append(a, "--memory-reservation", strconv.FormatInt(*m.Reservation, 10))
		}
		if m.Swappiness != nil {
			a = append(a, "--memory-swappiness", strconv.FormatUint(*m.Swappiness, 10))
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return nil, errors.New("docker: linux.resources.memory.disableOOMKiller: a container at its memory limit would hang instead of being killed")
		}
		if m.Kernel != nil || m.KernelTCP != nil {
			return nil, errors.New("docker: kernel memory limits have no docker run flag that works on this kernel")
		}
	}
	if c := r.CPU; c != nil {
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			if period == 100000 {
				a = append(a, "--cpus", strconv.FormatFloat(float64(*c.Quota)/1e5, 'f', -1, 64))
			} else {
				a = append(a, "--cpu-period", strconv.FormatUint(period, 10), "--cpu-quota", strconv.FormatInt(*c.Quota, 10))
			}
		}
		if c.Shares != nil && *c.Shares > 0 {
			a = append(a, "--cpu-shares", strconv.FormatUint(*c.Shares, 10))
		}
		if c.Cpus != "" {
			a = append(a, "--cpuset-cpus", c.Cpus)
		}
		if c.Mems != "" {
			a = append(a, "--cpuset-mems", c.Mems)
		}
		if c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Idle != nil || c.Burst != nil {
			return nil, errors.New("docker: realtime, idle and burst CPU settings have no docker run flag")
		}
	}
	if r.Pids != nil && r.Pids.Limit > 0 {
		a = append(a, "--pids-limit", strconv.FormatInt(r.Pids.Limit, 10))
	}
	if b := r.BlockIO; b != nil {
		if b.Weight != nil && *b.Weight > 0 {
			a = append(a, "--blkio-weight", strconv.FormatUint(uint64(*b.Weight), 10))
		}
		if len(b.WeightDevice)+len(b.ThrottleReadBpsDevice)+len(b.ThrottleWriteBpsDevice)+
			len(b.ThrottleReadIOPSDevice)+len(b.ThrottleWriteIOPSDevice) > 0 {
			return nil, errors.New("docker: per-device block I/O limits name host devices; moat sets none")
		}
	}
	for _, d := range r.Devices {
		if !d.Allow {
			continue
		}
		major, minor := int64(-1), int64(-1)
		if d.Major != nil {
			major = *d.Major
		}
		if d.Minor != nil {
			minor = *d.Minor
		}
		if d.Type != "c" || !dockerDevices[[2]int64{major, minor}] {
			return nil, fmt.Errorf("docker: the spec lets the container open device %s %d:%d; Docker's default rules allow only null, zero, full, random, urandom, tty, console and the pseudo-terminals", d.Type, major, minor)
		}
	}
	if len(r.HugepageLimits) > 0 || r.Network != nil || len(r.Rdma) > 0 || len(r.Unified) > 0 {
		return nil, errors.New("docker: hugepage, network, rdma and unified cgroup settings have no docker run flag moat uses")
	}
	return a, nil
}

// dockerEnvFile writes the environment in --env-file's format: one
// NAME=VALUE a line, read as it is (no quotes, no escapes). What the
// format cannot carry is refused: a newline in a value, a name that is
// empty, starts with #, or holds = or white space, and text that is not
// UTF-8 (docker refuses the file).
func dockerEnvFile(env []string) ([]byte, error) {
	var b bytes.Buffer
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.HasPrefix(k, "#") || strings.IndexFunc(k, unicode.IsSpace) >= 0 {
			return nil, fmt.Errorf("docker: environment variable %q cannot be written to an --env-file", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(kv) || len(kv) >= 64<<10 {
			return nil, fmt.Errorf("docker: environment variable %s: its value holds a line break, NUL or invalid UTF-8, or is 64 KiB long or more, which --env-file cannot carry", k)
		}
		b.WriteString(kv)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// tmpfsOptions returns a tmpfs mount's options for --tmpfs: Docker puts
// noexec, nosuid and nodev before the given ones, so a spec's tmpfs without
// them says exec, suid or dev to keep its meaning (they are overridden
// flag by flag).
func tmpfsOptions(opts []string) []string {
	out := slices.Clone(opts)
	for _, pair := range [][2]string{{"noexec", "exec"}, {"nosuid", "suid"}, {"nodev", "dev"}} {
		if !slices.Contains(opts, pair[0]) && !slices.Contains(opts, pair[1]) {
			out = append(out, pair[1])
		}
	}
	return out
}

func onlyOptions(dst string, opts []string, allowed ...string) error {
	for _, o := range opts {
		ok := false
		for _, a := range allowed {
			if o == a || strings.HasSuffix(a, "=") && strings.HasPrefix(o, a) {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("docker: %s: option %q: Docker makes this mount itself and takes only its size", dst, o)
		}
	}
	return nil
}

func optionValue(opts []string, key string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
