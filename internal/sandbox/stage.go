package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// stage is one named step of the last stage.
type stage struct {
	name string
	fn   func(*initConfig) error
}

// lastStageSteps are run in this order, on one locked thread, right before
// execve. Each comes where it does for a reason:
var lastStageSteps = []stage{
	{"rlimits", setRlimits},         // while setrlimit is still allowed to raise nothing; before the filter
	{"no_new_privs", setNoNewPrivs}, // first of the locks: Landlock and unprivileged seccomp need it, setuid binaries lose their power
	{"capabilities", dropCaps},      // the bounding set needs CAP_SETPCAP, so before capset empties it
	{"landlock", restrictPaths},     // after the mount tree is final: its rules bind to those paths
	{"seccomp", loadSeccomp},        // last: the fewest system calls run under it before execve
}

// lastStage is the process the command replaces. It never returns.
func lastStage(began int64) {
	runtime.LockOSThread() // never unlocked: the restrictions are this thread's, and execve runs on it
	unix.CloseOnExec(stageFailFD)
	var cfg initConfig
	f := os.NewFile(stageCfgFD, "config")
	err := json.NewDecoder(f).Decode(&cfg)
	f.Close()
	if err != nil {
		stageFail("exec", fmt.Errorf("read the config: %w", err), 125)
	}
	tr := traceFrom(cfg.Trace, began, "exec", os.Stderr)
	tr.Mark("config received")
	s := &cfg.Spec
	path, err := lookPath(s.Argv[0], s.Env)
	if err != nil {
		stageFail("exec", err, 127)
	}
	for _, st := range lastStageSteps {
		if err := st.fn(&cfg); err != nil {
			stageFail(st.name, err, 125)
		}
		tr.Mark(st.name)
	}
	err = unix.Exec(path, s.Argv, s.Env)
	code := 126
	if errors.Is(err, unix.ENOENT) {
		code = 127
	}
	stageFail("exec", fmt.Errorf("%s: %w", s.Argv[0], err), code)
}

func stageFail(stage string, err error, code int) {
	b, _ := json.Marshal(stageFailure{Stage: stage, Err: err.Error(), Code: code})
	unix.Write(stageFailFD, b)
	os.Exit(code)
}

// lookPath finds the command as a shell would, with the command's PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("%s: %w", name, errors.Unwrap(err))
		}
		return name, nil
	}
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			os.Setenv("PATH", p)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: not found in the sandbox's PATH", name)
	}
	return p, nil
}

func setRlimits(cfg *initConfig) error {
	set := func(what string, res int, v uint64) error {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := set("RLIMIT_CORE", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if !cfg.Rlimits {
		return nil
	}
	r := cfg.Spec.Resources
	if r.Memory > 0 {
		if err := set("RLIMIT_DATA", unix.RLIMIT_DATA, uint64(r.Memory)); err != nil {
			return err
		}
	}
	if r.Pids > 0 {
		if err := set("RLIMIT_NPROC", unix.RLIMIT_NPROC, uint64(r.Pids)); err != nil {
			return err
		}
	}
	return nil
}

func setNoNewPrivs(*initConfig) error {
	return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
}

// Securebits locked so that nothing regains capabilities: uid 0 is not
// special, setuid does not touch capabilities, no ambient raise.
const lockedSecurebits = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<5 | 1<<6 | 1<<7

// dropCaps empties every capability set: ambient, bounding, effective,
// permitted, inheritable; and locks the securebits.
func dropCaps(*initConfig) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	last := 63
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, lockedSecurebits, 0, 0, 0); err != nil {
		return fmt.Errorf("lock securebits: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
