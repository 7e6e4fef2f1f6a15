package verify

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// rawFork forks without exec. The child only parks in pause(2) until it
// is killed (or its parent dies), making raw system calls and nothing
// else: after fork, only the calling thread exists, so it must not enter
// the Go runtime.
//
//go:norace
func rawFork() (int, error) {
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
		for {
			syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
		}
	}
	return int(pid), nil
}
