package sandbox

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// systemDirs stay readable when filesystem.read narrows reads.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys", "/dev", "/run"}

// landlockRules is the second fence behind the mount tree: reads (and
// execution) of the whole tree, or of filesystem.read and the system
// directories; writes to the writable paths, the private tmpfs mounts and
// the few device files programs write. ioctl on devices is allowed only on
// terminals and the pty multiplexer.
func landlockRules(s *Spec) []landlock.Rule {
	read := []string{"/"}
	if len(s.Read) > 0 {
		read = append(append(append([]string{}, s.Read...), systemDirs...), s.Dir)
	}
	rw := append([]string{}, s.Write...)
	for _, t := range s.Tmpfs {
		rw = append(rw, t.Path)
	}
	rw = append(rw, "/dev/shm")
	rw = append(rw, s.writableMounts()...)
	return []landlock.Rule{
		landlock.RODirs(read...).IgnoreIfMissing(),
		landlock.RWDirs(rw...).WithRefer().IgnoreIfMissing(),
		landlock.RWFiles("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom").IgnoreIfMissing(),
		landlock.RWFiles("/dev/tty").WithIoctlDev().IgnoreIfMissing(),
		landlock.RWDirs("/dev/pts").WithIoctlDev().IgnoreIfMissing(),
	}
}

// landlockConfig handles file access and IPC scopes (signals to, and
// abstract sockets of, processes outside the domain such as PID 1), at the
// best ABI the kernel has. TCP is left to the network namespace: the agent
// may run and reach its own servers on loopback.
func landlockConfig() landlock.Config {
	return landlock.Config{HandledAccessFS: landlock.V7.HandledAccessFS, Scoped: landlock.V7.Scoped}.BestEffort()
}

// restrictPaths applies the Landlock ruleset to this thread (execve runs
// on it; no_new_privs is already set).
func restrictPaths(cfg *initConfig) error {
	fd, flags, err := landlockConfig().NewRulesetFD(landlockRules(&cfg.Spec)...)
	if err != nil {
		return fmt.Errorf("build the ruleset: %w", err)
	}
	if fd < 0 {
		return nil // no Landlock here; Start refused already if the policy requires it
	}
	defer unix.Close(fd)
	if cfg.oneThread {
		flags &^= llsys.FlagRestrictSelfTSync // this thread's domain, not PID 1's
	}
	if err := llsys.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("restrict self: %w", err)
	}
	return nil
}
