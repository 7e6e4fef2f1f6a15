package main

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The machine may be shared (other builds, tests, fuzzers): a cell measured
// while others used the CPUs measures them, not the proxy. So each cell is
// preceded by a wait for a quiet machine, its interference is measured, and a
// disturbed cell is run again.
const (
	quietBelow   = 0.10 // others' share of the CPUs under which the machine counts as quiet
	disturbed    = 0.15 // others' share during a cell above which it is run again
	maxAttempts  = 3    // runs of a disturbed cell; the least disturbed is kept
	quietPoll    = 500 * time.Millisecond
	quietWaitCap = 60 * time.Second // per cell
	clkTck       = 100              // USER_HZ of /proc/stat and /proc/PID/stat
)

// cpuSample is the machine's busy CPU time and this process tree's, in ticks.
type cpuSample struct {
	at         time.Time
	busy, ours int64
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		// cpu user nice system idle iowait irq softirq steal …: user, nice,
		// system and steal are busy; interrupt time is left out, as loopback
		// traffic lands there without being charged to any process.
		f := strings.Fields(line)
		for _, i := range []int{1, 2, 3, 8} {
			if i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				s.busy += v
			}
		}
	}
	s.ours = treeCPU(os.Getpid())
	return s
}

// treeCPU sums utime and stime over pid and its descendants, in ticks.
func treeCPU(pid int) int64 {
	children, err := processChildren()
	if err != nil {
		return 0
	}
	var total int64
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		// After "pid (comm)": state is field 3, utime 14 and stime 15.
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + st
		}
		queue = append(queue, children[p]...)
	}
	return total
}

// othersShare is the fraction of the machine's CPU capacity that processes
// outside this tree used between a and b.
func othersShare(a, b cpuSample) float64 {
	capacity := b.at.Sub(a.at).Seconds() * clkTck * float64(runtime.NumCPU())
	if capacity <= 0 {
		return 0
	}
	return max(0, float64((b.busy-a.busy)-(b.ours-a.ours))) / capacity
}

// waitQuiet waits until others use less than quietBelow of the CPUs, for at
// most limit; it returns how long it waited and the last share it saw.
func waitQuiet(ctx context.Context, limit time.Duration) (time.Duration, float64) {
	start := time.Now()
	for {
		a := sampleCPU()
		select {
		case <-ctx.Done():
			return time.Since(start), 0
		case <-time.After(quietPoll):
		}
		share := othersShare(a, sampleCPU())
		if share < quietBelow || time.Since(start) >= limit {
			return time.Since(start), share
		}
	}
}

// measured runs one cell: it waits for a quiet machine, runs f, and runs it
// again (up to maxAttempts) while others took more than disturbed of the
// CPUs, keeping the least disturbed attempt.
func measured(ctx context.Context, logf func(string, ...any), what string, budget *time.Duration, f func() Stats) Stats {
	var best Stats
	tries, all := 0, int64(0)
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		tries = attempt
		if *budget > 0 {
			waited, share := waitQuiet(ctx, min(quietWaitCap, *budget))
			*budget -= waited
			if waited > 2*quietPoll {
				logf("%s: waited %v for a quiet machine (others at %.0f%%)", what, waited.Round(time.Second), 100*share)
			}
		}
		a := sampleCPU()
		s := f()
		s.Others = othersShare(a, sampleCPU())
		all += s.AllOps
		if attempt == 1 || s.Others < best.Others {
			best = s
		}
		if s.Others <= disturbed || ctx.Err() != nil {
			break
		}
		if attempt < maxAttempts {
			logf("%s: others used %.0f%% of the CPUs during attempt %d; running it again", what, 100*s.Others, attempt)
		} else {
			logf("%s: others used %.0f%% of the CPUs during attempt %d; keeping the least disturbed attempt", what, 100*s.Others, attempt)
		}
	}
	best.Attempts, best.AllOps = tries, all
	return best
}
