package verify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// errno names an error by its errno when it has one: "EPERM".
func errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n := errnoNames[e]; n != "" {
			return n
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	if err == nil {
		return "ok"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH", syscall.EIO: "EIO",
	syscall.ENXIO: "ENXIO", syscall.EBADF: "EBADF", syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM",
	syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST",
	syscall.EXDEV: "EXDEV", syscall.ENODEV: "ENODEV", syscall.ENOTDIR: "ENOTDIR", syscall.EISDIR: "EISDIR",
	syscall.EINVAL: "EINVAL", syscall.ENFILE: "ENFILE", syscall.EMFILE: "EMFILE", syscall.ENOTTY: "ENOTTY",
	syscall.ENOSPC: "ENOSPC", syscall.EROFS: "EROFS", syscall.ENOSYS: "ENOSYS", syscall.EAFNOSUPPORT: "EAFNOSUPPORT",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ENETUNREACH: "ENETUNREACH", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.EHOSTUNREACH: "EHOSTUNREACH", syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EOPNOTSUPP: "EOPNOTSUPP",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT", syscall.ECONNRESET: "ECONNRESET",
}

// attempts collects what each try of a probe did; any success is the
// probe's escape.
type attempts struct {
	held, escaped []string
}

func (a *attempts) fail(what string, err error) { a.held = append(a.held, what+": "+errno(err)) }
func (a *attempts) ok(format string, v ...any) {
	a.escaped = append(a.escaped, fmt.Sprintf(format, v...))
}
func (a *attempts) note(format string, v ...any) { a.held = append(a.held, fmt.Sprintf(format, v...)) }

func (a *attempts) result() Result {
	if len(a.escaped) > 0 {
		return escaped("%s", strings.Join(a.escaped, "; "))
	}
	if len(a.held) == 0 {
		return na("nothing to try")
	}
	return held("%s", strings.Join(a.held, "; "))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
