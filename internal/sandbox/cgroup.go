package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroup is the set of cgroup directories made for one sandbox.
type cgroup struct {
	dirs []string
	v1   bool
}

// probeCgroups says which cgroup version is mounted, which of the
// controllers moat uses are there, and whether moat may create cgroups.
func probeCgroups() (version string, controllers []string, writable bool, why string) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		base, err := selfCgroupV2()
		if err != nil {
			return "v2", nil, false, err.Error()
		}
		dir := filepath.Join(cgroupRoot, base)
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		for _, c := range strings.Fields(string(b)) {
			if c == "memory" || c == "pids" || c == "cpu" {
				controllers = append(controllers, c)
			}
		}
		if unix.Access(dir, unix.W_OK) != nil {
			return "v2", controllers, false, dir + " is not writable (no delegation)"
		}
		return "v2", controllers, len(controllers) > 0, "no controller is enabled in " + filepath.Join(dir, "cgroup.subtree_control")
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c, "cgroup.procs")); err == nil {
			controllers = append(controllers, c)
		}
	}
	if len(controllers) == 0 {
		return "", nil, false, "no cgroup hierarchy with memory, pids or cpu is mounted under " + cgroupRoot
	}
	writable = true
	for _, c := range controllers {
		if unix.Access(v1Dir(c), unix.W_OK) != nil {
			writable, why = false, v1Dir(c)+" is not writable"
		}
	}
	return "v1", controllers, writable, why
}

func selfCgroupV2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// v1Dir is this process's cgroup directory for a v1 controller.
func v1Dir(controller string) string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 {
			for _, c := range strings.Split(f[1], ",") {
				if c == controller {
					return filepath.Join(cgroupRoot, controller, f[2])
				}
			}
		}
	}
	return filepath.Join(cgroupRoot, controller)
}

// prepareResources makes new cgroups with the limits, when moat may
// create them; the child joins them with join. Otherwise it returns a nil
// cgroup and the last stage sets rlimits; that fails only if the policy
// requires cgroups. No cgroup is made when the policy sets no limit.
func prepareResources(r Resources, require []string, host *Host) (*cgroup, string, error) {
	if r == (Resources{}) {
		return nil, "none (the policy sets no limit)", nil
	}
	required := false
	for _, l := range require {
		required = required || l == "cgroups"
	}
	version, writable, why := host.CgroupVersion, host.CgroupWritable, host.CgroupErr
	var cg *cgroup
	var err error
	if writable {
		if version == "v2" {
			cg, err = cgroupV2(r)
		} else {
			cg, err = cgroupV1(r)
		}
		if err == nil {
			return cg, "cgroup " + version + " (" + describeLimits(r) + ")", nil
		}
		why = err.Error()
	}
	if required {
		return nil, "", fmt.Errorf("moat cannot create cgroups here (%s), which the policy requires; run moat as root or in a delegated cgroup v2 subtree", why)
	}
	desc := "rlimits (" + describeRlimits(r) + "; cgroups unavailable: " + why + ")"
	return nil, desc, nil
}

func describeLimits(r Resources) string {
	var s []string
	if r.Memory > 0 {
		s = append(s, "memory "+formatSize(r.Memory))
	}
	if r.Pids > 0 {
		s = append(s, "pids "+strconv.FormatInt(r.Pids, 10))
	}
	if r.CPUs > 0 {
		s = append(s, "cpus "+strconv.FormatFloat(r.CPUs, 'f', -1, 64))
	}
	return strings.Join(s, ", ")
}

func describeRlimits(r Resources) string {
	var s []string
	if r.Memory > 0 {
		s = append(s, "RLIMIT_DATA "+formatSize(r.Memory))
	}
	if r.Pids > 0 {
		s = append(s, "RLIMIT_NPROC "+strconv.FormatInt(r.Pids, 10))
	}
	if r.CPUs > 0 {
		s = append(s, "cpus not enforced")
	}
	return strings.Join(s, ", ")
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "g"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "m"
	}
	return strconv.FormatInt(n, 10)
}

func cgroupName() string {
	var b [6]byte
	rand.Read(b[:])
	return "moat-" + hex.EncodeToString(b[:])
}

func cgroupV1(r Resources) (*cgroup, error) {
	cg := &cgroup{v1: true}
	name := cgroupName()
	type setting struct{ file, value string }
	var plan []struct {
		controller string
		settings   []setting
	}
	if r.Memory > 0 {
		m := strconv.FormatInt(r.Memory, 10)
		plan = append(plan, struct {
			controller string
			settings   []setting
		}{"memory", []setting{{"memory.limit_in_bytes", m}, {"memory.memsw.limit_in_bytes", m}, {"memory.swappiness", "0"}}})
	}
	if r.Pids > 0 {
		plan = append(plan, struct {
			controller string
			settings   []setting
		}{"pids", []setting{{"pids.max", strconv.FormatInt(r.Pids, 10)}}})
	}
	if r.CPUs > 0 {
		plan = append(plan, struct {
			controller string
			settings   []setting
		}{"cpu", []setting{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", strconv.FormatInt(int64(r.CPUs*100000), 10)}}})
	}
	for _, p := range plan {
		dir := filepath.Join(v1Dir(p.controller), name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		cg.dirs = append(cg.dirs, dir)
		for _, s := range p.settings {
			err := os.WriteFile(filepath.Join(dir, s.file), []byte(s.value), 0)
			if err != nil && !(errors.Is(err, os.ErrNotExist) && s.file != "memory.limit_in_bytes" || s.file == "memory.swappiness") {
				cg.remove()
				return nil, fmt.Errorf("cgroup %s: %w", filepath.Join(dir, s.file), err)
			}
		}
	}
	return cg, nil
}

func cgroupV2(r Resources) (*cgroup, error) {
	base, err := selfCgroupV2()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cgroupRoot, base, cgroupName())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	cg := &cgroup{dirs: []string{dir}}
	write := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			return fmt.Errorf("cgroup %s: %w", filepath.Join(dir, file), err)
		}
		return nil
	}
	var errs []error
	if r.Memory > 0 {
		errs = append(errs, write("memory.max", strconv.FormatInt(r.Memory, 10)))
		write("memory.swap.max", "0")
	}
	if r.Pids > 0 {
		errs = append(errs, write("pids.max", strconv.FormatInt(r.Pids, 10)))
	}
	if r.CPUs > 0 {
		errs = append(errs, write("cpu.max", strconv.FormatInt(int64(r.CPUs*100000), 10)+" 100000"))
	}
	if err := errors.Join(errs...); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

// enterThread moves the calling thread alone into every (v1) cgroup, so
// that a process it forks is born in them. A thread that moves itself
// needs no lock on every thread group in the system, which moving another
// process (join) takes, waiting for an RCU grace period: milliseconds.
// The thread must be locked (runtime.LockOSThread), and call leaveThread
// once it has forked.
func (cg *cgroup) enterThread() error {
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "tasks"), []byte("0"), 0); err != nil {
			cg.leaveThread()
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
	}
	return nil
}

// leaveThread moves the calling thread back to its process's cgroups.
func (cg *cgroup) leaveThread() {
	for _, d := range cg.dirs {
		home := filepath.Dir(d) // the sandbox's cgroup is made in this process's
		os.WriteFile(filepath.Join(home, "tasks"), []byte("0"), 0)
	}
}

// join moves pid (with its threads) into every cgroup.
func (cg *cgroup) join(pid int) error {
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
	}
	return nil
}

// remove deletes the cgroups; their processes are gone by then (PID 1 of
// a PID namespace is reaped only after every other process in it).
func (cg *cgroup) remove() {
	for _, d := range cg.dirs {
		for i := 0; i < 50; i++ {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond) // a dying task may hold it briefly
		}
	}
	cg.dirs = nil
}
