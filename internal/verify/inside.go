package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StartedLine is the battery's first line of output.
const StartedLine = "moat-verify: battery started"

// ProbeTimeout bounds one probe's process; a probe that does not finish
// gets no verdict of held.
const ProbeTimeout = 60 * time.Second

// RunInside runs the named probes (all when names is empty), each in its
// own process so that one cannot take the battery down, and writes one
// JSON result per line to w.
func RunInside(ctx context.Context, cfgPath string, names []string, w io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ps := Catalogue()
	if len(names) > 0 {
		ps = ps[:0]
		for _, n := range names {
			p, ok := Lookup(n)
			if !ok {
				return fmt.Errorf("no probe %q", n)
			}
			ps = append(ps, p)
		}
	}
	// The fork bomb takes every pid the sandbox has for a moment; a thread
	// this process needed then would fail to start and take the runtime
	// down. Threads made now wait idle for reuse.
	warmThreads(8)
	// Tells the harness the sandbox started: from here, the sandbox
	// ending is the probe's doing, not a failure to start.
	fmt.Fprintln(w, StartedLine)
	enc := json.NewEncoder(w)
	for _, p := range ps {
		r := runChild(ctx, self, cfgPath, p)
		r.Name, r.Group, r.Title = p.Name, p.Group, p.Title
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func runChild(ctx context.Context, self, cfgPath string, p Probe) Result {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "__probe", "--config", cfgPath, "--one", p.Name)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var last string
	var res *Result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, progressPrefix); ok {
			last = v
			continue
		}
		var r Result
		if json.Unmarshal([]byte(line), &r) == nil && r.Status != "" {
			res = &r
		}
	}
	if res != nil {
		return *res
	}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return escaped("no verdict: the probe did not finish in %s (at %s)", ProbeTimeout, orNone(last))
	case p.Name == "fork-bomb" && strings.Contains(errb.String(), "failed to create new OS thread"):
		return held("the kernel refused a new thread (the probe's runtime stopped) at %s", orNone(last))
	case errors.As(err, &ee) && p.killedHeld && ee.Sys().(syscall.WaitStatus).Signaled() && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
		return held("killed by the kernel (SIGKILL) at %s", orNone(last))
	default:
		return escaped("no verdict: the probe's process ended with %v at %s: %s", err, orNone(last), strings.TrimSpace(tail(errb.String(), 300)))
	}
}

// RunOne runs one probe in this process and prints its result.
func RunOne(cfgPath, name string, w io.Writer) error {
	p, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("no probe %q", name)
	}
	cfg, err := ReadConfig(cfgPath)
	if err != nil {
		return err
	}
	r := p.run(cfg)
	r.Name, r.Group, r.Title = p.Name, p.Group, p.Title
	return json.NewEncoder(w).Encode(r)
}

// ReadConfig reads the harness's Config.
func ReadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// warmThreads has the Go runtime start n threads, each blocked in a
// system call at once; they stay parked for reuse afterwards.
func warmThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := unix.Timespec{Nsec: 20e6}
			unix.Nanosleep(&ts, nil)
		}()
	}
	wg.Wait()
}

func orNone(s string) string {
	if s == "" {
		return "the start"
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
