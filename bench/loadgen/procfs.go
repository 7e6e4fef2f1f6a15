package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// TreeMem is the memory of a process and its descendants.
type TreeMem struct {
	RSS   int64 // summed VmRSS, in bytes: what the report's rows use
	PSS   int64 // summed Pss, in bytes: shared pages split between the sharers
	Procs int   // processes summed
}

// TreeMemory sums the memory of pid and all its descendants. Squid is a
// master, a worker and a log daemon; each of them is part of what the proxy
// costs. Summed VmRSS counts pages they share once per process; PSS does not.
func TreeMemory(pid int) (TreeMem, error) {
	children, err := processChildren()
	if err != nil {
		return TreeMem{}, err
	}
	var m TreeMem
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		rss, err := procKB(fmt.Sprintf("/proc/%d/status", p), "VmRSS:")
		if err != nil {
			if p == pid {
				return TreeMem{}, err
			}
			continue // a child that exited meanwhile
		}
		pss, _ := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
		m.RSS += rss
		m.PSS += pss
		m.Procs++
		queue = append(queue, children[p]...)
	}
	return m, nil
}

// processChildren maps each process ID to its children's, from /proc/*/stat.
func processChildren() (map[int][]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 {
			continue
		}
		pid, err1 := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, err2 := strconv.Atoi(fields[1])
		if err1 == nil && err2 == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	return children, nil
}

// procKB reads the first "key  N kB" line of a /proc file, in bytes.
func procKB(file, key string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s of %s: %w", key, file, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %s line (a zombie?)", file, key)
}

// raiseNoFile raises RLIMIT_NOFILE towards want (the hard limit too, when the
// process may) and returns the soft and hard limits then in force. Because it
// calls Setrlimit itself, the processes it starts inherit the raised limit
// (os/exec otherwise restores the limit Go found at start-up).
func raiseNoFile(want uint64) (cur, hard uint64, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, err
	}
	if r.Max < want {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if max, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && want > max {
				want = max
			}
		}
		// Needs CAP_SYS_RESOURCE, which root in a container may lack.
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
			return want, want, nil
		}
	}
	r.Cur = min(want, r.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, fmt.Errorf("set RLIMIT_NOFILE to %d: %w", r.Cur, err)
	}
	return r.Cur, r.Max, nil
}

// Machine describes where a run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	MemTotal string `json:"mem_total"`
	Go       string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	return m
}

// procField returns the value of the first "key: value" line of file.
func procField(file, key string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
