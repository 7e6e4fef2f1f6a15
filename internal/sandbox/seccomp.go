package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DeniedSyscalls fail with EPERM inside the sandbox: debugging other
// processes, mounting, new namespaces, kernel keyrings, BPF, perf,
// io_uring (whose operations bypass this filter), kexec and modules,
// userfaultfd, and the rest of the host-administration calls.
var DeniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"unshare", "setns",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open", "fanotify_init",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
	"userfaultfd",
	"acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "quotactl_fd",
	"open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "nfsservctl",
	"vhangup", "iopl", "ioperm", "uselib", "sethostname", "setdomainname",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
}

// Argument checks the library cannot express safely. The kernel reads
// ioctl's request and socket's domain as 32-bit ints, so only the low word
// is compared (a set high bit must not slip past, as it did in
// CVE-2019-10063).
const (
	nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	// Offsets in struct seccomp_data (little-endian: an argument's low word first).
	offNr   = 0
	offArch = 4
	offArg0 = 16
	offArg1 = 24
	offArg2 = 32
	offArg3 = 40
	// setidBits in a mode: a file the agent makes setuid or setgid keeps
	// the bit on the host, owned by the workspace's owner (root, through
	// the idmapped mount), for anyone outside to run.
	setidBits = unix.S_ISUID | unix.S_ISGID
)

// seccompProgram assembles the filter: any other architecture's system
// calls (i386 int 0x80 on x86-64, x32) kill the process; then the
// argument checks; then the deny list; everything else is allowed.
func seccompProgram(allowUnix bool) ([]bpf.RawInstruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	nr := func(name string) (uint32, error) {
		n, ok := info.SyscallNames[name]
		if !ok {
			return 0, fmt.Errorf("no system call %q on %s", name, runtime.GOARCH)
		}
		return uint32(n), nil
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
	}
	block := func(name string, body ...bpf.Instruction) error {
		n, err := nr(name)
		if err != nil {
			return err
		}
		prog = append(prog,
			bpf.LoadAbsolute{Off: offNr, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: n, SkipFalse: uint8(len(body))})
		prog = append(prog, body...)
		return nil
	}
	errs := []error{
		block("ioctl",
			bpf.LoadAbsolute{Off: offArg1, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCSTI, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCLINUX, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM}),
		block("clone",
			bpf.LoadAbsolute{Off: offArg0, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: nsCloneFlags, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM}),
		// clone3 passes its flags in memory a filter cannot read: ENOSYS
		// makes the C library fall back to clone, which is checked.
		block("clone3", bpf.RetConstant{Val: retENOSYS}),
		// openat2 likewise (its mode is in memory); openat is checked.
		block("openat2", bpf.RetConstant{Val: retENOSYS}),
	}
	// No setuid or setgid files (found by moat verify's setuid-file
	// probe): every call that sets a mode is refused when it carries
	// either bit. open's mode is checked whatever the flags: without
	// O_CREAT nobody passes those bits.
	for _, m := range []struct {
		name string
		off  uint32
	}{
		{"chmod", offArg1}, {"fchmod", offArg1}, {"fchmodat", offArg2}, {"fchmodat2", offArg2},
		{"mknod", offArg1}, {"mknodat", offArg2}, {"creat", offArg1}, {"open", offArg2}, {"openat", offArg3},
	} {
		if _, ok := info.SyscallNames[m.name]; !ok {
			continue // arm64 has no chmod, mknod, creat or open
		}
		errs = append(errs, block(m.name,
			bpf.LoadAbsolute{Off: m.off, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: setidBits, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM}))
	}
	if !allowUnix {
		for _, name := range []string{"socket", "socketpair"} {
			if name == "socketpair" {
				continue // an unnamed pair reaches nothing outside; programs need it
			}
			errs = append(errs, block(name,
				bpf.LoadAbsolute{Off: offArg0, Size: 4},
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipFalse: 1},
				bpf.RetConstant{Val: retEPERM}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pol := seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls:      []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: knownSyscalls(info, DeniedSyscalls)}},
	}
	rest, err := pol.Assemble()
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(append(prog, rest...))
}

// knownSyscalls drops names this architecture does not have (iopl on
// arm64, say).
func knownSyscalls(info *arch.Info, names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := info.SyscallNames[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// loadSeccomp installs the filter on every thread (TSYNC), or on this
// thread only when the command is forked from it (oneThread); no_new_privs
// is already set.
func loadSeccomp(cfg *initConfig) error {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return nil // no seccomp here; Start refused already if the policy requires it
	}
	raw, err := seccompProgram(cfg.Spec.AllowUnixSockets)
	if err != nil {
		return fmt.Errorf("assemble the filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	if cfg.oneThread {
		flags = 0
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	switch {
	case errno != 0:
		return fmt.Errorf("load the filter: %w", errno)
	case r != 0:
		return fmt.Errorf("load the filter: thread %d could not be synchronised", r)
	}
	return nil
}
