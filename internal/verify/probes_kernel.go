package verify

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pids lists the processes /proc shows.
func pids() []int {
	es, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range es {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func probeHostProcs(c *Config) Result {
	var a attempts
	ps := pids()
	for _, p := range ps {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		if err == nil && c.BaitCmdline != "" && bytes.Contains(b, []byte(c.BaitCmdline)) {
			a.ok("the host's bait process is visible as pid %d", p)
		}
	}
	for _, p := range c.HostPids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline"); err == nil && bytes.Contains(b, []byte(c.BaitCmdline)) {
			a.ok("host pid %d readable in /proc", p)
		}
	}
	a.note("%d processes visible, none of the host's", len(ps))
	return a.result()
}

func probePtrace(c *Config) Result {
	var a attempts
	targets := append([]int{1}, c.HostPids...)
	if pp := os.Getppid(); pp > 1 {
		targets = append(targets, pp)
	}
	for _, p := range targets {
		err := unix.PtraceAttach(p)
		if err != nil {
			a.fail(sprintf("PTRACE_ATTACH %d", p), err)
			continue
		}
		unix.PtraceDetach(p)
		a.ok("attached to pid %d", p)
	}
	// process_vm_readv of PID 1.
	buf := make([]byte, 8)
	local := []unix.Iovec{{Base: &buf[0], Len: 8}}
	remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
	if _, err := unix.ProcessVMReadv(1, local, remote, 0); err != nil {
		a.fail("process_vm_readv 1", err)
	} else {
		a.ok("read PID 1's memory")
	}
	return a.result()
}

// probeSignal asks the kernel whether PID 1 (moat's forwarder) and the
// host's processes may be signalled, then sends the host's bait SIGKILL
// (the harness checks that it survived).
func probeSignal(c *Config) Result {
	var a attempts
	// PID 1 is the sandbox's own init: signalling it can end the sandbox,
	// not reach outside. The native tier refuses it (Landlock's signal
	// scope); where it is allowed, it is reported, not scored.
	if err := unix.Kill(1, 0); err != nil {
		a.fail("kill(1, 0)", err)
	} else {
		a.note("kill(1, 0) allowed: PID 1, the sandbox's own init, may be signalled")
	}
	for _, p := range c.HostPids {
		if err := unix.Kill(p, 0); err != nil {
			a.fail(sprintf("kill(%d, 0)", p), err)
		} else if p != os.Getpid() && p != os.Getppid() && !mine(p) {
			a.note("kill(%d, 0): a process of the sandbox's own has this number", p)
		}
	}
	if len(c.HostPids) > 1 {
		bait := c.HostPids[len(c.HostPids)-1]
		if !mine(bait) {
			if err := unix.Kill(bait, unix.SIGKILL); err != nil {
				a.fail(sprintf("kill(%d, SIGKILL)", bait), err)
			}
		}
	}
	return a.result()
}

// mine says whether pid is visible in this sandbox's /proc.
func mine(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	return err == nil && len(b) > 0
}

func probeMoatEnv(c *Config) Result {
	var a attempts
	for _, p := range append([]int{1}, c.HostPids...) {
		path := "/proc/" + strconv.Itoa(p) + "/environ"
		b, err := os.ReadFile(path)
		if err != nil {
			a.fail(path, err)
			continue
		}
		if what, ok := c.findCanary(b); ok {
			a.ok("%s holds the canary of %s", path, what)
			continue
		}
		a.note("%s: readable, no canary", path)
	}
	return a.result()
}

func probeCapability(c *Config) Result {
	var a attempts
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "CapEff", "CapPrm", "CapAmb", "CapInh":
				if strings.Trim(v, "0") != "" {
					a.ok("%s is %s", k, v)
				}
			case "CapBnd":
				if strings.Trim(v, "0") != "" {
					a.note("CapBnd %s", v)
				}
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	const capSysAdmin = 21
	data[0].Effective = 1 << capSysAdmin
	data[0].Permitted = 1 << capSysAdmin
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		a.fail("capset CAP_SYS_ADMIN", err)
	} else {
		a.ok("capset raised CAP_SYS_ADMIN")
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, capSysAdmin, 0, 0); err != nil {
		a.fail("raise ambient CAP_SYS_ADMIN", err)
	} else {
		a.ok("raised ambient CAP_SYS_ADMIN")
	}
	return a.result()
}

func probeSetuidCall(c *Config) Result {
	var a attempts
	uid := os.Getuid()
	if uid == 0 {
		a.ok("the probe runs as uid 0")
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0); e != 0 {
		a.fail("setresuid(0)", e)
	} else {
		a.ok("setresuid(0) succeeded")
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, 0, 0); e != 0 {
		a.fail("setresgid(0)", e)
	} else {
		a.ok("setresgid(0) succeeded")
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		a.fail("setgroups", e)
	} else {
		a.ok("setgroups succeeded")
	}
	return a.result()
}

func probeMount(c *Config) Result {
	var a attempts
	dir := c.scratchPath("mnt")
	os.Mkdir(dir, 0o755)
	defer os.Remove(dir)
	for _, m := range []struct {
		what, src, fstype string
		flags             uintptr
	}{
		{"mount tmpfs", "none", "tmpfs", 0},
		{"bind /", "/", "", unix.MS_BIND},
		{"remount / read-write", "", "", unix.MS_REMOUNT | unix.MS_BIND},
	} {
		target := dir
		if m.flags&unix.MS_REMOUNT != 0 {
			target = "/"
		}
		if err := unix.Mount(m.src, target, m.fstype, m.flags, ""); err != nil {
			a.fail(m.what, err)
			continue
		}
		unix.Unmount(target, unix.MNT_DETACH)
		a.ok("%s succeeded", m.what)
	}
	if fd, err := unix.Fsopen("tmpfs", 0); err != nil {
		a.fail("fsopen", err)
	} else {
		unix.Close(fd)
		a.ok("fsopen tmpfs succeeded")
	}
	return a.result()
}

// probeUserns starts a child in a new user namespace (and, separately, in
// new mount and network namespaces), as an agent would to regain
// capabilities there.
func probeUserns(c *Config) Result {
	var a attempts
	self, _ := os.Executable()
	for _, ns := range []struct {
		name  string
		flags uintptr
	}{
		{"CLONE_NEWUSER", unix.CLONE_NEWUSER},
		{"CLONE_NEWUSER|CLONE_NEWNS", unix.CLONE_NEWUSER | unix.CLONE_NEWNS},
		{"CLONE_NEWNET", unix.CLONE_NEWNET},
	} {
		cmd := exec.Command(self, "__probe", "--noop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: ns.flags}
		if err := cmd.Run(); err != nil {
			a.fail("clone("+ns.name+")", err)
			continue
		}
		a.ok("a child started in clone(%s)", ns.name)
	}
	return a.result()
}

func probeModule(c *Config) Result {
	var a attempts
	if err := unix.InitModule([]byte{0x7f, 'E', 'L', 'F'}, ""); err != nil {
		a.fail("init_module", err)
	} else {
		a.ok("init_module accepted")
	}
	if f, err := os.Open("/dev/null"); err == nil {
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
			a.fail("finit_module", err)
		} else {
			a.ok("finit_module accepted")
		}
		f.Close()
	}
	return judgeKernel(a)
}

// judgeKernel treats an answer other than a refusal (EPERM, EACCES,
// ENOSYS) as the kernel having got past its permission checks.
func judgeKernel(a attempts) Result {
	for _, h := range a.held {
		if !strings.HasSuffix(h, "EPERM") && !strings.HasSuffix(h, "EACCES") && !strings.HasSuffix(h, "ENOSYS") && !strings.HasSuffix(h, "ENOENT") {
			a.escaped = append(a.escaped, h+" (past the permission check)")
		}
	}
	return a.result()
}

func probeKeyctl(c *Config) Result {
	var a attempts
	if id, err := unix.AddKey("user", "moat-verify", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING); err != nil {
		a.fail("add_key", err)
	} else {
		a.ok("add_key made key %d", id)
	}
	if _, err := unix.KeyctlJoinSessionKeyring("moat-verify"); err != nil {
		a.fail("keyctl(JOIN_SESSION_KEYRING)", err)
	} else {
		a.ok("joined a new session keyring")
	}
	return a.result()
}

func probeBPF(c *Config) Result {
	var a attempts
	// BPF_MAP_CREATE of a one-entry array: the smallest thing bpf does.
	attr := [16]uint32{2, 4, 4, 1}
	fd, _, e := unix.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	if e != 0 {
		a.fail("bpf(BPF_MAP_CREATE)", e)
	} else {
		unix.Close(int(fd))
		a.ok("bpf created a map")
	}
	return a.result()
}

func probePerf(c *Config) Result {
	var a attempts
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})), Bits: unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv}
	fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		a.fail("perf_event_open", err)
	} else {
		unix.Close(fd)
		a.ok("perf_event_open opened a counter")
	}
	return a.result()
}

func probeIOUring(c *Config) Result {
	var a attempts
	var params [120]byte
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if e != 0 {
		a.fail("io_uring_setup", e)
	} else {
		unix.Close(int(fd))
		a.ok("io_uring_setup made a ring")
	}
	return a.result()
}

func probeUserfaultfd(c *Config) Result {
	var a attempts
	const userModeOnly = 1
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|userModeOnly, 0, 0)
	if e != 0 {
		a.fail("userfaultfd", e)
	} else {
		unix.Close(int(fd))
		a.ok("userfaultfd made a descriptor")
	}
	return a.result()
}

// probeTIOCSTI pushes a character into a terminal: the controlling one if
// any, and a new pseudo-terminal made the controlling terminal of a child.
func probeTIOCSTI(c *Config) Result {
	var a attempts
	if f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err != nil {
		a.fail("open /dev/tty", err)
	} else {
		ch := byte('#')
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.TIOCSTI, int(ch)); err != nil {
			a.fail("TIOCSTI on /dev/tty", err)
		} else {
			a.ok("TIOCSTI pushed a character into the controlling terminal")
		}
		f.Close()
	}
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		a.fail("open /dev/ptmx", err)
		return a.result()
	}
	defer m.Close()
	unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0)
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		a.fail("TIOCGPTN", err)
		return a.result()
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		a.fail("open the new terminal", err)
		return a.result()
	}
	defer s.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "__probe", "--tiocsti")
	cmd.Stdin, cmd.Stdout = s, s
	var out bytes.Buffer
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Run()
	switch {
	case err == nil:
		a.ok("TIOCSTI pushed a character into a new controlling terminal")
	case out.Len() > 0:
		a.note("TIOCSTI on a new controlling terminal: %s", strings.TrimSpace(out.String()))
	default:
		a.fail("start a child on a new terminal", err)
	}
	return a.result()
}

// TIOCSTIChild is the child of probeTIOCSTI: exit 0 when TIOCSTI worked.
func TIOCSTIChild() int {
	if err := unix.IoctlSetPointerInt(0, unix.TIOCSTI, int('#')); err != nil {
		os.Stderr.WriteString(errno(err))
		return 3
	}
	return 0
}

func probeRawDevices(c *Config) Result {
	var a attempts
	devs := []string{"/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg"}
	for _, d := range c.BlockDevices {
		devs = append(devs, "/dev/"+d)
	}
	for _, d := range devs {
		f, err := os.OpenFile(d, os.O_RDONLY, 0)
		if err != nil {
			a.fail(d, err)
			continue
		}
		b := make([]byte, 16)
		n, _ := f.Read(b)
		f.Close()
		a.ok("opened %s (read %d bytes)", d, n)
	}
	node := c.scratchPath("mem")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))); err != nil {
		a.fail("mknod c 1 1", err)
	} else {
		if f, err := os.Open(node); err != nil {
			a.fail("open a mknod'ed /dev/mem", err)
		} else {
			f.Close()
			a.ok("opened a mknod'ed /dev/mem")
		}
		os.Remove(node)
	}
	return a.result()
}

func probeWriteSys(c *Config) Result {
	var a attempts
	for _, p := range []string{"/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger",
		"/proc/sys/kernel/modprobe", "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/uevent_helper",
		"/sys/fs/cgroup/cgroup.procs"} {
		if !exists(p) {
			continue
		}
		// Opened for writing and closed without a byte: nothing changes.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			a.fail(filepath.Clean(p), err)
			continue
		}
		f.Close()
		a.ok("opened %s for writing", p)
	}
	if len(a.held) == 0 && len(a.escaped) == 0 {
		a.note("none of the kernel's tunables (/proc/sys/kernel, /proc/sys/vm, /proc/sysrq-trigger, /sys/kernel) is present here")
	}
	return a.result()
}
