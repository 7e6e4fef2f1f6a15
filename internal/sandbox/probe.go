package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what this kernel and machine offer the sandbox.
type Host struct {
	Kernel string

	MaxUserNamespaces    int    // user.max_user_namespaces; 0 forbids them
	UnprivilegedUserns   string // "", "0" or "1": kernel.unprivileged_userns_clone where it exists
	AppArmorRestrictsNS  string // "", "0" or "1": kernel.apparmor_restrict_unprivileged_userns
	LandlockABI          int    // 0: none
	LandlockErr          string // why 0
	Seccomp              bool
	SeccompErr           string
	CgroupVersion        string   // "v2", "v1" or ""
	CgroupControllers    []string // the ones moat can use (memory, pids, cpu)
	CgroupWritable       bool     // moat may create cgroups
	CgroupErr            string
	Overlayfs            bool
	IDMappedMountsKernel bool // kernel ≥ 5.12
	Runtimes             map[string]string
}

// Probe inspects the host. It is cheap (no process is started) and safe
// to call from any goroutine.
func Probe() *Host {
	h := probeLayers()
	fsList, _ := os.ReadFile("/proc/filesystems")
	h.Overlayfs = bytes.Contains(fsList, []byte("\toverlay\n"))
	h.IDMappedMountsKernel = kernelAtLeast(h.Kernel, 5, 12)
	for _, r := range []string{"runc", "crun", "runsc", "docker", "podman", "bwrap"} {
		if p, err := exec.LookPath(r); err == nil {
			h.Runtimes[r] = p
		}
	}
	return h
}

// probeLayers is the part of Probe that Start needs: the layers native
// runs use (no search of PATH for the other tiers' runtimes).
func probeLayers() *Host {
	h := &Host{Runtimes: map[string]string{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	h.MaxUserNamespaces, _ = strconv.Atoi(readTrim("/proc/sys/user/max_user_namespaces"))
	h.UnprivilegedUserns = readTrim("/proc/sys/kernel/unprivileged_userns_clone")
	h.AppArmorRestrictsNS = readTrim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")

	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch {
	case errno == 0:
		h.LandlockABI = int(abi)
	case errno == unix.EOPNOTSUPP:
		h.LandlockErr = "built into the kernel but not enabled: add landlock to the lsm= boot parameter"
	case errno == unix.ENOSYS:
		h.LandlockErr = "the kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK)"
	default:
		h.LandlockErr = errno.Error()
	}

	// Tests pretend a layer is missing to check that moat fails closed;
	// hiding a layer can only make moat refuse more, never less.
	for _, l := range strings.Split(os.Getenv("MOAT_TEST_HIDE_LAYERS"), ",") {
		switch l {
		case "landlock":
			h.LandlockABI, h.LandlockErr = 0, "hidden by MOAT_TEST_HIDE_LAYERS"
		case "seccomp":
			defer func() { h.Seccomp, h.SeccompErr = false, "hidden by MOAT_TEST_HIDE_LAYERS" }()
		}
	}

	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		h.SeccompErr = "the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): " + err.Error()
	} else {
		h.Seccomp = true
	}

	h.CgroupVersion, h.CgroupControllers, h.CgroupWritable, h.CgroupErr = probeCgroups()
	return h
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma > major || ma == major && mi >= minor
}

// Layers a policy may require (isolation.require).
var Layers = []string{"namespaces", "userns", "landlock", "seccomp", "no_new_privs", "cgroups"}

// check refuses a spec whose required layers the host lacks, with the
// layer, the reason and the fix; it notes the missing layers nobody
// required.
func (h *Host) check(s *Spec) (notes []string, err error) {
	required := map[string]bool{}
	for _, r := range s.Require {
		required[r] = true
	}
	var errs []error
	fail := func(layer, reason, fix string) {
		errs = append(errs, &StageError{Stage: layer, Code: 125,
			Err: fmt.Errorf("%s, which the policy requires (isolation.require); %s", reason, fix)})
	}
	// Namespaces are the native tier itself: always required.
	if h.MaxUserNamespaces == 0 {
		errs = append(errs, &StageError{Stage: "namespaces", Code: 125, Err: errors.New("user namespaces are disabled (user.max_user_namespaces = 0), and moat run needs them; enable them with sysctl user.max_user_namespaces=15000, or use --isolation=container")})
	}
	if h.UnprivilegedUserns == "0" && os.Geteuid() != 0 {
		errs = append(errs, &StageError{Stage: "namespaces", Code: 125, Err: errors.New("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0), and moat run needs them; enable them with sysctl kernel.unprivileged_userns_clone=1, or run moat as root")})
	}
	if h.LandlockABI == 0 {
		switch {
		case required["landlock"]:
			fail("landlock", "not available: "+h.LandlockErr, "use a kernel with Landlock enabled, or --isolation=gvisor")
		case len(s.Read) > 0:
			fail("landlock", "not available ("+h.LandlockErr+"), and filesystem.read needs it", "use a kernel with Landlock enabled, or remove filesystem.read")
		default:
			notes = append(notes, "landlock: not available ("+h.LandlockErr+"); the mount namespace alone limits files")
		}
	}
	if !h.Seccomp {
		if required["seccomp"] {
			fail("seccomp", "not available: "+h.SeccompErr, "use a kernel built with CONFIG_SECCOMP_FILTER")
		} else {
			notes = append(notes, "seccomp: not available ("+h.SeccompErr+"); dangerous system calls stay open")
		}
	}
	if required["cgroups"] && !h.CgroupWritable {
		fail("cgroups", "moat cannot create cgroups here ("+h.CgroupErr+")", "run moat as root, or delegate a cgroup v2 subtree to your user (systemd-run --user --scope -p Delegate=yes moat run …)")
	}
	return notes, errors.Join(errs...)
}

// TryUserNamespace starts a helper in a new user namespace (with the
// mapping moat run uses) and reports why that failed, or nil.
func TryUserNamespace(exe string) error {
	if exe == "" {
		exe = "/proc/self/exe"
	}
	uid, gid := os.Getuid(), os.Getgid()
	hostUID, hostGID, inUID, inGID := uid, gid, uid, gid
	if uid == 0 {
		hostUID, hostGID, inUID, inGID = NobodyID, NobodyID, agentID, agentID
	}
	fd, err := mappingNamespace(exe, inUID, inGID, hostUID, hostGID)
	if err != nil {
		return namespaceError(errors.Unwrap(err))
	}
	unix.Close(fd)
	return nil
}
