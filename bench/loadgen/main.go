// Command loadgen benchmarks moat's egress proxy against Squid and tinyproxy.
//
// It starts a local upstream (plain HTTP, TLS and a raw bulk endpoint, all on
// 127.0.0.1), starts each proxy with a generated configuration that allows
// only that upstream, drives the same workloads through each in turn, measures
// the proxies' memory with idle tunnels open, and writes a Markdown report
// (and, optionally, the raw numbers as JSON). bench/run.sh builds it and moat
// and calls it; bench/README.md says what each row means.
//
// Every loop is bounded in time and every address is on 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Workload keys, in report order.
const (
	wHTTP1    = "http-c1"
	wHTTP16   = "http-c16"
	wHTTP64   = "http-c64"
	wPaced    = "http-c16-paced"
	pacedRate = 1000 // requests/s in all for wPaced: well below every peer's c=16 rate but tinyproxy's
	wConnect  = "connect-c16"
	wBulk     = "bulk"
	direct    = "direct"
	mib       = 1 << 20
	kib       = 1 << 10
	openers   = 32 // concurrent tunnel openers in the memory phase
	settleFor = time.Second
	fdMargin  = 200 // descriptors a proxy needs besides its tunnels'
)

// Settings are the knobs of one run; --quick changes their defaults.
type Settings struct {
	Rounds    int           `json:"rounds"`
	Warmup    time.Duration `json:"warmup_ns"`
	Duration  time.Duration `json:"duration_ns"`
	BulkBytes int64         `json:"bulk_bytes"`
	BulkLimit time.Duration `json:"bulk_limit_ns"`
	Tunnels   []int         `json:"tunnels"`
}

type options struct {
	Settings
	out, jsonOut string
	quick        bool
	bins         map[string]string // peer → executable; empty: not measured
	skipWhy      map[string]string // peer → why it is not measured
	command      string
	moatRev      string
	keep         bool
	timeout      time.Duration
	quietBudget  time.Duration
	reportFrom   string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == upstreamArg {
		if err := serveUpstream(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: upstream: %v\n", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	if o.reportFrom != "" {
		if err := rerender(o); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{bins: map[string]string{}, skipWhy: map[string]string{}}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "write the Markdown report to `file` (default: standard output)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the raw numbers to `file`")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run of a few seconds: short windows, one round, few tunnels")
	squidBin := fs.String("squid", "/usr/sbin/squid", "Squid `executable`; empty skips Squid")
	tinyBin := fs.String("tinyproxy", "/usr/bin/tinyproxy", "tinyproxy `executable`; empty skips tinyproxy")
	moatBin := fs.String("moat", "", "moat `executable` with a proxy command; empty skips moat")
	moatWhy := fs.String("moat-skip-reason", "moat proxy not built", "what the report says when --moat is empty")
	fs.StringVar(&o.moatRev, "moat-rev", "", "the commit moat was built from, for the report")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds of the throughput workloads; the report shows each cell's median")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before each measured window")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured window of each throughput cell")
	bulk := fs.Int64("bulk-mib", 1024, "MiB to download through one tunnel (or as much as --bulk-limit allows)")
	fs.DurationVar(&o.BulkLimit, "bulk-limit", 5*time.Second, "time limit of the bulk download")
	tunnels := fs.String("tunnels", "1000,10000", "comma-separated counts of idle tunnels at which to measure memory")
	fs.StringVar(&o.command, "command", "", "the command line to print in the report (bench/run.sh passes its own)")
	fs.BoolVar(&o.keep, "keep", false, "keep each proxy's configuration and logs in its temporary directory")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop the whole run after this long (default: twice the longest the settings can take)")
	fs.DurationVar(&o.quietBudget, "quiet-budget", 10*time.Minute, "the longest to wait in all for a quiet machine before cells (0: never wait)")
	fs.StringVar(&o.reportFrom, "report-from", "", "measure nothing: write the report (--out) from the raw numbers of an earlier run in `file`")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected argument %q\n", fs.Arg(0))
		return o, errors.New("usage")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		for name, apply := range map[string]func(){
			"rounds":       func() { o.Rounds = 1 },
			"warmup":       func() { o.Warmup = 100 * time.Millisecond },
			"duration":     func() { o.Duration = 400 * time.Millisecond },
			"bulk-mib":     func() { *bulk = 64 },
			"bulk-limit":   func() { o.BulkLimit = 2 * time.Second },
			"tunnels":      func() { *tunnels = "100,500" },
			"quiet-budget": func() { o.quietBudget = 20 * time.Second },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	o.BulkBytes = *bulk * mib
	if o.timeout == 0 {
		// Every cell may run maxAttempts times; add the quiet waits, and
		// start-up and the memory phase's few minutes.
		cells := time.Duration(o.Rounds * 6 * 4 * maxAttempts)
		o.timeout = 2 * (cells*(o.Warmup+max(o.Duration, o.BulkLimit)) + o.quietBudget + 5*time.Minute)
	}
	for _, f := range strings.Split(*tunnels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "loadgen: --tunnels: %q is not a positive count\n", f)
			return o, errors.New("usage")
		}
		o.Tunnels = append(o.Tunnels, n)
	}
	slices.Sort(o.Tunnels)
	if o.Rounds < 1 || o.Duration <= 0 || o.BulkBytes <= 0 {
		fmt.Fprintln(stderr, "loadgen: --rounds, --duration and --bulk-mib must be positive")
		return o, errors.New("usage")
	}
	o.bins[squid], o.bins[tinyproxy], o.bins[moat] = *squidBin, *tinyBin, *moatBin
	for name, bin := range o.bins {
		if bin == "" {
			o.skipWhy[name] = "not requested"
		} else if _, err := os.Stat(bin); err != nil {
			o.skipWhy[name] = fmt.Sprintf("%s not found", bin)
			o.bins[name] = ""
		} else if abs, err := filepath.Abs(bin); err == nil {
			o.bins[name] = abs // each peer runs in its own directory
		}
	}
	if *moatBin == "" {
		o.skipWhy[moat] = *moatWhy
	}
	return o, nil
}

// Results is everything one run measured; the report and the JSON file are
// made from it alone.
type Results struct {
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	// Rerendered is the command that wrote the report again from the JSON.
	Rerendered string  `json:"-"`
	Quick      bool    `json:"quick"`
	Machine    Machine `json:"machine"`
	NoFile     uint64  `json:"rlimit_nofile"`
	LoadAvg    string  `json:"loadavg"` // /proc/loadavg as the throughput phase began
	Nice       string  `json:"nice"`    // the benchmark's scheduling niceness
	// TunnelCap says why the largest idle-tunnel step is lower than asked.
	TunnelCap string       `json:"tunnel_cap,omitempty"`
	Settings  Settings     `json:"settings"`
	Targets   []TargetInfo `json:"targets"` // the three peers, measured or not
	Runs      []Run        `json:"runs"`
	Memory    []Memory     `json:"memory"`
}

// TargetInfo says what a peer was and whether it was measured.
type TargetInfo struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Version  string `json:"version,omitempty"`
	Skipped  string `json:"skipped,omitempty"` // why it has no numbers
	LogBytes int64  `json:"log_bytes"`         // its per-request log after the throughput phase
	LogLines int64  `json:"log_lines"`
}

// Run is one workload against one target in one round.
type Run struct {
	Workload string `json:"workload"`
	Target   string `json:"target"` // "direct" or a peer name
	Round    int    `json:"round"`
	Stats    Stats  `json:"stats"`
}

// Memory is a peer's process-tree RSS, fresh and with idle tunnels open.
type Memory struct {
	Target       string    `json:"target"`
	IdleRSS      int64     `json:"idle_rss"`       // fresh start, after the readiness probe
	IdlePSS      int64     `json:"idle_pss"`       // the same, shared pages split
	Procs        int       `json:"procs"`          // processes in its tree
	AfterLoadRSS int64     `json:"after_load_rss"` // idle again after the throughput phase
	Steps        []MemStep `json:"steps"`
}

// MemStep is the RSS with Held tunnels open, having asked for Want.
type MemStep struct {
	Want int    `json:"want"`
	Held int    `json:"held"`
	RSS  int64  `json:"rss"`
	PSS  int64  `json:"pss"`
	Err  string `json:"error,omitempty"`
}

func run(ctx context.Context, o options, logw io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "loadgen: "+format+"\n", args...) }
	res := &Results{Date: time.Now().UTC(), Command: o.command, Quick: o.quick, Machine: describeMachine(), Settings: o.Settings}
	if res.Command == "" {
		res.Command = "loadgen " + strings.Join(os.Args[1:], " ")
	}
	cur, hard, err := raiseNoFile(1 << 20)
	if err != nil {
		return err
	}
	res.NoFile = cur
	// A proxy spends two descriptors per tunnel, and inherits our limit.
	// Where the limit cannot be raised (root without CAP_SYS_RESOURCE in a
	// container), measure at the most tunnels it allows and say so.
	if most := int(cur-fdMargin) / 2 / 100 * 100; most < o.Tunnels[len(o.Tunnels)-1] {
		res.TunnelCap = fmt.Sprintf("RLIMIT_NOFILE is %d (hard limit %d, which this process could not raise), and a proxy spends two descriptors per tunnel, so the largest step is %s tunnels instead of %s",
			cur, hard, count(float64(most)), count(float64(o.Tunnels[len(o.Tunnels)-1])))
		logf("warning: %s", res.TunnelCap)
		for i := range o.Tunnels {
			o.Tunnels[i] = min(o.Tunnels[i], most)
		}
		o.Tunnels = slices.Compact(o.Tunnels)
		res.Settings.Tunnels = o.Tunnels
	}

	upProc, err := StartUpstreamProcess()
	if err != nil {
		return fmt.Errorf("start upstream: %w", err)
	}
	defer upProc.Close()
	up := &upProc.Endpoints

	var peers []*Peer
	for _, name := range []string{squid, tinyproxy, moat} {
		p := &Peer{Name: name, Bin: o.bins[name], Keep: o.keep}
		ti := TargetInfo{Name: name, Label: p.Label(), Skipped: o.skipWhy[name]}
		if p.Bin != "" {
			ti.Version = p.Version()
			if name == moat && o.moatRev != "" {
				ti.Version = "moat " + o.moatRev
			}
			peers = append(peers, p)
		}
		res.Targets = append(res.Targets, ti)
	}
	target := func(name string) *TargetInfo {
		for i := range res.Targets {
			if res.Targets[i].Name == name {
				return &res.Targets[i]
			}
		}
		panic("unknown target " + name)
	}
	mem := map[string]*Memory{}

	// Phase 1: throughput. All peers run at once, idle but for the one under
	// load; each round runs every target back to back, so drift in the
	// machine hits all of them alike.
	var live []*Peer
	defer func() {
		for _, p := range live {
			p.Stop()
			p.Cleanup()
		}
	}()
	for _, p := range peers {
		if err := p.Start(ctx, up); err != nil {
			logf("%v", err)
			target(p.Name).Skipped = fmt.Sprintf("did not start: %v", firstLine(err))
			p.Cleanup()
			continue
		}
		live = append(live, p)
		mem[p.Name] = &Memory{Target: p.Name}
		logf("%s ready on %s (pid %d, %s)", p.Label(), p.Addr, p.PID(), p.Dir)
	}
	budget := o.quietBudget
	res.LoadAvg = loadAvg()
	res.Nice = niceness()
	for round := 1; round <= o.Rounds; round++ {
		for _, w := range workloads(o.Settings, up) {
			for _, t := range append([]*Peer{{Name: direct}}, live...) {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("stopped during round %d: %w", round, err)
				}
				what := fmt.Sprintf("round %d/%d %s %s", round, o.Rounds, w.key, t.Name)
				s := measured(ctx, logf, what, &budget, func() Stats {
					if t.cmd == nil {
						return w.run(ctx, t.Addr) // direct: no proxy to account
					}
					c0 := treeCPU(t.PID())
					s := w.run(ctx, t.Addr)
					if s.AllOps > 0 {
						s.CPUPerOp = time.Duration(treeCPU(t.PID())-c0) * (time.Second / clkTck) / time.Duration(s.AllOps)
					}
					return s
				})
				res.Runs = append(res.Runs, Run{Workload: w.key, Target: t.Name, Round: round, Stats: s})
				logf("round %d/%d %-11s %-9s %s", round, o.Rounds, w.key, t.Name, summary(w.key, s))
			}
		}
	}
	for _, p := range live {
		if tm, err := TreeMemory(p.PID()); err == nil {
			mem[p.Name].AfterLoadRSS = tm.RSS
		}
		p.Stop()
		ti := target(p.Name)
		ti.LogBytes, ti.LogLines = p.LogStats()
		p.Cleanup()
	}
	live = nil

	// Phase 2: memory, one fresh peer at a time, so that the load
	// generator's file descriptors suffice for the largest step.
	for _, p := range peers {
		m := mem[p.Name]
		if m == nil {
			continue // did not start in phase 1
		}
		if err := p.Start(ctx, up); err != nil {
			return fmt.Errorf("restart for the memory phase: %w", err)
		}
		live = []*Peer{p}
		time.Sleep(settleFor)
		tm, err := TreeMemory(p.PID())
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		m.IdleRSS, m.IdlePSS, m.Procs = tm.RSS, tm.PSS, tm.Procs
		logf("memory %-9s idle: %.1f MiB in %d processes", p.Name, float64(m.IdleRSS)/mib, m.Procs)
		var open []net.Conn
		for _, want := range o.Tunnels {
			more, err := OpenTunnels(ctx, p.Addr, up.BulkAddr, want-len(open), openers)
			open = append(open, more...)
			step := MemStep{Want: want, Held: len(open)}
			if err != nil {
				step.Err = err.Error()
			}
			time.Sleep(settleFor)
			tm, _ := TreeMemory(p.PID())
			step.RSS, step.PSS = tm.RSS, tm.PSS
			m.Steps = append(m.Steps, step)
			logf("memory %-9s %d/%d tunnels: %.1f MiB %s", p.Name, step.Held, want, float64(step.RSS)/mib, step.Err)
			if err != nil {
				break
			}
		}
		CloseAll(open)
		p.Stop()
		p.Cleanup()
		live = nil
		res.Memory = append(res.Memory, *m)
	}

	if err := writeOutputs(o, res); err != nil {
		return err
	}
	return harnessErr(res)
}

// workload is one row group of the report, run against one target at a time;
// proxy is the target's address, empty for the direct baseline.
type workload struct {
	key string
	run func(ctx context.Context, proxy string) Stats
}

func workloads(s Settings, up *Endpoints) []workload {
	httpAt := func(clients int) func(context.Context, string) Stats {
		return func(ctx context.Context, proxy string) Stats {
			return RunHTTP(ctx, Load{Proxy: proxy, Clients: clients, Warmup: s.Warmup, Duration: s.Duration}, up.HTTPAddr)
		}
	}
	return []workload{
		{wHTTP1, httpAt(1)},
		{wHTTP16, httpAt(16)},
		{wHTTP64, httpAt(64)},
		{wPaced, func(ctx context.Context, proxy string) Stats {
			return RunHTTP(ctx, Load{Proxy: proxy, Clients: 16, Warmup: s.Warmup, Duration: s.Duration, Rate: pacedRate}, up.HTTPAddr)
		}},
		{wConnect, func(ctx context.Context, proxy string) Stats {
			return RunConnect(ctx, Load{Proxy: proxy, Clients: 16, Warmup: s.Warmup, Duration: s.Duration}, up.TLSAddr, up.CertPool)
		}},
		{wBulk, func(ctx context.Context, proxy string) Stats {
			return RunBulk(ctx, proxy, up.BulkAddr, min(s.BulkBytes/16, 64*mib), s.BulkBytes, s.BulkLimit)
		}},
	}
}

func summary(key string, s Stats) string {
	var b strings.Builder
	if key == wBulk {
		fmt.Fprintf(&b, "%8.0f MB/s (%d MiB in %v)", s.MBPerSecond(), s.Bytes/mib, s.Window.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "%8.0f/s p50 %.3f ms p99 %.3f ms dials %d", s.PerSecond(), ms(s.P50), ms(s.P99), s.Dials)
	}
	if s.CPUPerOp > 0 {
		fmt.Fprintf(&b, " cpu/op %v", s.CPUPerOp.Round(time.Microsecond/10))
	}
	fmt.Fprintf(&b, " others %.0f%%", 100*s.Others)
	if s.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", s.Attempts)
	}
	if s.Errors > 0 {
		fmt.Fprintf(&b, " errors %d (first: %s)", s.Errors, s.FirstErr)
	}
	return b.String()
}

// harnessErr fails the run when the harness itself is broken: the direct
// baseline, which involves no proxy, must complete with no error.
func harnessErr(res *Results) error {
	for _, r := range res.Runs {
		if r.Target == direct && (r.Stats.Errors > 0 || r.Stats.Ops == 0) {
			return fmt.Errorf("the direct baseline of %s failed (%d done, %d errors: %s): the harness is broken",
				r.Workload, r.Stats.Ops, r.Stats.Errors, r.Stats.FirstErr)
		}
	}
	return nil
}

func writeOutputs(o options, res *Results) error {
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	var b strings.Builder
	writeReport(&b, res)
	if o.out == "" {
		_, err := io.WriteString(os.Stdout, b.String())
		return err
	}
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// niceness reads this process's nice value (field 19 of /proc/self/stat).
func niceness() string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 17 {
		return "unknown"
	}
	return f[16]
}

// rerender writes the report of an earlier run from its JSON, so that the
// report's presentation can change without measuring again.
func rerender(o options) error {
	b, err := os.ReadFile(o.reportFrom)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("read %s: %w", o.reportFrom, err)
	}
	o.jsonOut = ""
	res.Rerendered = "go run ./bench/loadgen " + strings.Join(os.Args[1:], " ")
	return writeOutputs(o, &res)
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
