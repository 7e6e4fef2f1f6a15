package verify

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Progress lines a resource probe prints before its verdict, so that the
// runner knows how far it got when the kernel kills it.
const progressPrefix = "progress: "

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stdout, progressPrefix+format+"\n", a...)
}

const maxForks = 4096

// probeForkBomb forks until the kernel refuses, at most twice the pids
// limit (and never more than maxForks), each child parked in pause(2).
func probeForkBomb(c *Config) Result {
	if c.PidsLimit <= 0 {
		return na("the policy sets no resources.pids")
	}
	n := min(2*c.PidsLimit, maxForks)
	warmThreads(8)
	runtime.LockOSThread()
	var kids []int
	defer func() {
		for _, k := range kids {
			unix.Kill(k, unix.SIGKILL)
		}
		for range kids {
			var ws unix.WaitStatus
			unix.Wait4(-1, &ws, 0, nil)
		}
	}()
	for int64(len(kids)) < n {
		pid, err := rawFork()
		if len(kids)%64 == 0 {
			progress("%d processes", len(kids))
		}
		if err != nil {
			return held("fork failed with %s after %d processes (resources.pids %d)", errno(err), len(kids), c.PidsLimit)
		}
		kids = append(kids, pid)
	}
	return escaped("%d processes forked under resources.pids %d without a refusal", len(kids), c.PidsLimit)
}

// probeMemoryBomb touches memory past the limit (by an eighth, at least
// 64 MiB), in 32 MiB steps. Killed by the kernel or refused by mmap is
// held; reaching the bound is an escape.
func probeMemoryBomb(c *Config) Result {
	if c.MemoryLimit <= 0 {
		return na("the policy sets no resources.memory")
	}
	target := c.MemoryLimit + max(64<<20, c.MemoryLimit/8)
	avail := c.HostMemAvailable
	if avail == 0 {
		avail = memAvailable()
	}
	if avail > 0 && target > avail*9/10 {
		return na("the bound, %d MiB, is more than this machine can safely use (%d MiB available)", target>>20, avail>>20)
	}
	const step = 32 << 20
	var total int64
	for total < target {
		b, err := unix.Mmap(-1, 0, step, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return held("mmap refused with %s after %d MiB (resources.memory %d MiB)", errno(err), total>>20, c.MemoryLimit>>20)
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		total += step
		progress("%d MiB", total>>20)
	}
	return escaped("%d MiB touched under resources.memory %d MiB", total>>20, c.MemoryLimit>>20)
}

func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemAvailable:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// probeFillTmp writes into /tmp until the file system is full, at most
// its size plus 64 MiB; the harness checks the file is not on the host.
func probeFillTmp(c *Config) Result {
	var st unix.Statfs_t
	if err := unix.Statfs("/tmp", &st); err != nil {
		return held("statfs /tmp: %s", errno(err))
	}
	size := int64(st.Blocks) * st.Bsize
	if c.TmpfsSize > 0 && c.TmpfsSize < size {
		size = c.TmpfsSize
	}
	const ceiling = 8 << 30
	if size > ceiling {
		return escaped("/tmp is %d GiB, not a bounded private tmpfs", size>>30)
	}
	p := filepath.Join("/tmp", c.Marker+"-fill")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return held("create %s: %s", p, errno(err))
	}
	defer os.Remove(p)
	defer f.Close()
	buf := make([]byte, 1<<20)
	var total int64
	for total < size+64<<20 {
		n, err := f.Write(buf)
		total += int64(n)
		if err != nil {
			return held("/tmp full (%s) after %d MiB (its size: %d MiB)", errno(err), total>>20, size>>20)
		}
	}
	return escaped("wrote %d MiB into /tmp, past its %d MiB", total>>20, size>>20)
}

// probeFDs opens descriptors until the per-process limit refuses them
// (at most 65536): the table that fills is this process's own.
func probeFDs(c *Config) Result {
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if rl.Max == unix.RLIM_INFINITY {
		return escaped("RLIMIT_NOFILE is unlimited")
	}
	rl.Cur = rl.Max
	unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	const bound = 65536
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for len(fds) < bound {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return held("%s after %d descriptors (RLIMIT_NOFILE %d, per process)", errno(err), len(fds)+3, rl.Max)
		}
		fds = append(fds, fd)
	}
	return held("stopped at %d open descriptors; RLIMIT_NOFILE is %d per process, so the host's table is not at stake", bound, rl.Max)
}

// probeCPUHog spins on every CPU for a second and a half and compares the
// CPU time it got with resources.cpus.
func probeCPUHog(c *Config) Result {
	if c.CPUs <= 0 {
		return na("the policy sets no resources.cpus")
	}
	n := runtime.NumCPU()
	if float64(n) <= c.CPUs {
		return na("this machine has %d CPUs, no more than resources.cpus %g", n, c.CPUs)
	}
	var stop atomic.Bool
	for range n {
		go func() {
			for !stop.Load() {
			}
		}()
	}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	time.Sleep(1500 * time.Millisecond)
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	wall := time.Since(start).Seconds()
	stop.Store(true)
	cpu := tv(after.Utime) + tv(after.Stime) - tv(before.Utime) - tv(before.Stime)
	used := cpu / wall
	if used > c.CPUs*1.5+0.2 {
		return escaped("used %.2f CPUs over %.1f s under resources.cpus %g", used, wall, c.CPUs)
	}
	return held("used %.2f CPUs over %.1f s on %d CPUs (resources.cpus %g)", used, wall, n, c.CPUs)
}

func tv(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
