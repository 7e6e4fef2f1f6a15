// Command mitm benchmarks moat's TLS termination against mitmproxy
// (mitmdump), both injecting the same Authorization header, and moat's
// reverse endpoint against a direct connection. bench/mitm.sh builds and
// runs it; see bench/RESULTS-mitm.md for what it measures.
//
// Everything listens on 127.0.0.1; every window is bounded, and so is the
// whole run (-timeout). The upstream, moat and mitmdump are children that
// die with it.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	var (
		moatBin  = flag.String("moat", "", "the moat `binary` to measure (required)")
		mitmBin  = flag.String("mitmdump", "mitmdump", "the mitmdump `binary`; the mitmproxy row is n/a when it is missing")
		addon    = flag.String("addon", "bench/mitm/inject.py", "the mitmdump addon `file` that injects the header")
		rounds   = flag.Int("rounds", 3, "rounds; each cell of the report is the median round")
		warm     = flag.Duration("warmup", time.Second, "warm-up before each window")
		window   = flag.Duration("window", 5*time.Second, "measured window of each row")
		conc     = flag.Int("c", 16, "concurrent keep-alive clients of the throughput rows")
		out      = flag.String("out", "bench/RESULTS-mitm.md", "the Markdown report `file`")
		jsonOut  = flag.String("json", "", "also write the raw rows to this JSON `file`")
		cmdline  = flag.String("cmdline", "", "the command line to print in the report")
		moatRev  = flag.String("moat-rev", "", "the moat commit measured, for the report")
		timeout  = flag.Duration("timeout", 15*time.Minute, "bound on the whole run")
		upstream = flag.String("upstream-child", "", "internal: run as the upstream with the certificates in `dir`")
		upH1     = flag.Bool("upstream-h1", false, "internal: the upstream speaks HTTP/1.1 only")
	)
	flag.Parse()
	if *upstream != "" {
		if err := runUpstream(*upstream, os.Getenv("MOAT_BENCH_SECRET"), *upH1); err != nil {
			fmt.Fprintf(os.Stderr, "mitm: upstream: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *moatBin == "" {
		fmt.Fprintln(os.Stderr, "mitm: -moat is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cfg := config{moat: *moatBin, mitmdump: *mitmBin, addon: *addon, rounds: *rounds, warm: *warm,
		window: *window, conc: *conc, cmdline: *cmdline, moatRev: *moatRev}
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitm: %v\n", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, []byte(rep.markdown()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "mitm: %v\n", err)
		os.Exit(1)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "mitm: %v\n", err)
			os.Exit(1)
		}
	}
	fmt.Print(rep.summary())
}

type config struct {
	moat, mitmdump, addon string
	rounds, conc          int
	warm, window          time.Duration
	cmdline, moatRev      string
}

// report is what one run found.
type report struct {
	Date        time.Time `json:"date"`
	Machine     string    `json:"machine"`
	Go          string    `json:"go"`
	MoatRev     string    `json:"moat_rev"`
	Mitmproxy   string    `json:"mitmproxy"`
	MitmMissing string    `json:"mitmproxy_missing,omitempty"`
	Command     string    `json:"command"`
	Rounds      int       `json:"rounds"`
	Warm        string    `json:"warmup"`
	Window      string    `json:"window"`
	LoadBefore  string    `json:"loadavg_before"`
	LoadAfter   string    `json:"loadavg_after"`
	Rows        []result  `json:"rows"`       // medians, in scenario order
	Rounds_     []result  `json:"rounds_all"` // every round's rows
}

// Row names.
const (
	rowDirect    = "direct"
	rowMoatMITM  = "moat, TLS termination"
	rowMitmproxy = "mitmproxy (mitmdump)"
	rowMoatMITM1 = "moat, TLS termination, c=1"
	rowDirect1   = "direct, c=1"
	rowEndpoint1 = "moat reverse endpoint, c=1"
	rowEndpointN = "moat reverse endpoint"
	// The same against an upstream that speaks HTTP/1.1 only: moat's
	// endpoints prefer HTTP/2 upstream, and these rows show what that costs.
	rowDirectH1    = "direct, c=1, HTTP/1.1-only upstream"
	rowEndpointH1  = "moat reverse endpoint, c=1, HTTP/1.1-only upstream"
	rowEndpointH1N = "moat reverse endpoint, HTTP/1.1-only upstream"
)

func run(ctx context.Context, cfg config) (*report, error) {
	dir, err := os.MkdirTemp("", "moat-bench-mitm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := make([]byte, 16)
	rand.Read(b)
	secret := "sk-bench-" + hex.EncodeToString(b)

	if err := upstreamCA(dir); err != nil {
		return nil, fmt.Errorf("upstream CA: %w", err)
	}
	up, upAddr, err := startUpstream(ctx, dir, secret, false)
	if err != nil {
		return nil, err
	}
	defer up.stop()
	up1, upAddr1, err := startUpstream(ctx, dir, secret, true)
	if err != nil {
		return nil, err
	}
	defer up1.stop()
	upPool, err := poolFrom(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	m, err := startMoat(ctx, cfg.moat, dir, upAddr, upAddr1, secret)
	if err != nil {
		return nil, err
	}
	defer m.stop()

	rep := &report{Date: time.Now().UTC(), Machine: machine(), Go: runtime.Version(), MoatRev: cfg.moatRev,
		Command: cfg.cmdline, Rounds: cfg.rounds, Warm: cfg.warm.String(), Window: cfg.window.String(), LoadBefore: loadavg()}
	defer func() { rep.LoadAfter = loadavg() }()
	var mitm *mitmProc
	if _, err := exec.LookPath(cfg.mitmdump); err != nil {
		rep.MitmMissing = fmt.Sprintf("%s not found", cfg.mitmdump)
	} else if mitm, err = startMitmdump(ctx, cfg.mitmdump, cfg.addon, dir, upAddr, secret); err != nil {
		return nil, err
	} else {
		defer mitm.stop()
		rep.Mitmproxy = mitm.version
	}

	url := "https://" + upAddr + "/"
	bearer := "Bearer " + secret
	scs := []scenario{
		{Name: rowDirect, Conc: cfg.conc, URL: url, Header: bearer, NewClient: func() *http.Client { return client("", upPool) }},
		{Name: rowMoatMITM, Conc: cfg.conc, URL: url, NewClient: func() *http.Client { return client(m.proxy, m.ca) }, CPU: m.cpu},
	}
	if mitm != nil {
		scs = append(scs, scenario{Name: rowMitmproxy, Conc: cfg.conc, URL: url,
			NewClient: func() *http.Client { return client(mitm.proxy, mitm.ca) }, CPU: mitm.cpu})
	}
	scs = append(scs,
		scenario{Name: rowMoatMITM1, Conc: 1, URL: url, NewClient: func() *http.Client { return client(m.proxy, m.ca) }, CPU: m.cpu},
		scenario{Name: rowDirect1, Conc: 1, URL: url, Header: bearer, NewClient: func() *http.Client { return client("", upPool) }},
		scenario{Name: rowEndpoint1, Conc: 1, URL: m.endpoint + "/", NewClient: func() *http.Client { return client("", nil) }, CPU: m.cpu},
		scenario{Name: rowEndpointN, Conc: cfg.conc, URL: m.endpoint + "/", NewClient: func() *http.Client { return client("", nil) }, CPU: m.cpu},
		scenario{Name: rowDirectH1, Conc: 1, URL: "https://" + upAddr1 + "/", Header: bearer, NewClient: func() *http.Client { return client("", upPool) }},
		scenario{Name: rowEndpointH1, Conc: 1, URL: m.endpointH1 + "/", NewClient: func() *http.Client { return client("", nil) }, CPU: m.cpu},
		scenario{Name: rowEndpointH1N, Conc: cfg.conc, URL: m.endpointH1 + "/", NewClient: func() *http.Client { return client("", nil) }, CPU: m.cpu},
	)
	byName := map[string][]result{}
	for r := range cfg.rounds {
		for _, sc := range scs {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res := measure(ctx, sc, cfg.warm, cfg.window)
			fmt.Fprintf(os.Stderr, "round %d: %-28s c=%-2d %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  failed %d\n",
				r+1, res.Name, res.Conc, res.RPS, res.P50, res.P99, res.Failed)
			if res.Requests == 0 && sc.Header != "" {
				return nil, fmt.Errorf("the direct row %q completed no request: the harness is broken", sc.Name)
			}
			byName[sc.Name] = append(byName[sc.Name], res)
			rep.Rounds_ = append(rep.Rounds_, res)
		}
	}
	for _, sc := range scs {
		rep.Rows = append(rep.Rows, median(byName[sc.Name]))
	}
	return rep, nil
}

func (rep *report) row(name string) (result, bool) {
	for _, r := range rep.Rows {
		if r.Name == name {
			return r, true
		}
	}
	return result{}, false
}

// Bars from issue 3.
const (
	barRatio    = 10.0 // moat's requests/s over mitmproxy's
	barAddedP99 = 1.0  // ms added at p99 by the reverse endpoint
)

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# moat TLS termination against mitmproxy; reverse-endpoint latency\n\n")
	p("Written by `bench/mitm.sh` (the program is `bench/mitm/`). Numbers are from one machine, where the clients, the proxy\n")
	p("and the upstream share its cores: compare rows, not machines. Each cell is the median of %d rounds; each round runs\n", rep.Rounds)
	p("every row back to back (%s warm-up, then a %s window).\n\n", rep.Warm, rep.Window)
	p("- Date: %s\n", rep.Date.Format("2006-01-02 15:04 UTC"))
	p("- Machine: %s\n", rep.Machine)
	p("- Go: %s; moat: %s; mitmproxy: %s\n", rep.Go, orNA(rep.MoatRev), orNA(rep.Mitmproxy))
	p("- Command: `%s`\n", rep.Command)
	p("- Load average (1, 5, 15 min) before the run: %s; after: %s\n\n", rep.LoadBefore, rep.LoadAfter)
	if busy(rep.LoadBefore) || busy(rep.LoadAfter) {
		p("> **The machine was busy with other work during this run** (load average above half its %d cores): every latency,\n", runtime.NumCPU())
		p("> the p99s above all, is inflated by waiting for a core, and more so for a proxy's extra hops than for a direct\n")
		p("> connection. Requests/s ratios and CPU per request hold up better. Rerun on a quiet machine before judging the\n")
		p("> latency bar.\n\n")
	}

	p("## What is measured\n\n")
	p("An HTTPS upstream on 127.0.0.1 (Go, ECDSA P-256 certificate from a CA made for the run) answers 1 KiB to a request that\n")
	p("carries `Authorization: Bearer <secret>` and 401 to any other, so a proxy that failed to inject the header shows as\n")
	p("failed requests. Clients are closed loops, each on its own kept-alive HTTP/1.1 connection; a request counts when it\n")
	p("started inside the window and got 200.\n\n")
	p("| Row | Client → | Who adds the header |\n|---|---|---|\n")
	p("| direct | TLS straight to the upstream, trusting its CA | the client itself (it holds the key) |\n")
	p("| moat, TLS termination | `CONNECT` through `moat proxy` (`tls.intercept` the upstream), TLS to moat's leaf, trusting moat's CA | moat: a credential for the upstream's host; `--audit FILE` writes a record per request; upstream verified with `--upstream-ca` |\n")
	p("| mitmproxy (mitmdump) | `CONNECT` through `mitmdump`, TLS to its leaf, trusting its CA | an addon (`bench/mitm/inject.py`) that sets the same header for the upstream's host and port; flow lines to a file; upstream verified with `ssl_verify_upstream_trusted_ca` |\n")
	p("| moat reverse endpoint | plain HTTP to `moat proxy --endpoint bench=https://UPSTREAM` on 127.0.0.1 | moat, forwarding over TLS (the `ANTHROPIC_BASE_URL` mode); moat offers HTTP/2 upstream and the upstream takes it |\n")
	p("| …, HTTP/1.1-only upstream | the same, to a second upstream that speaks HTTP/1.1 only | moat, forwarding over TLS with HTTP/1.1 |\n\n")
	p("Proxy CPU per request is the proxy process's user + system time over the window divided by the requests completed\n")
	p("(from `/proc/PID/stat`, 10 ms ticks): the portable number when the machine's cores are shared.\n\n")

	p("## Results\n\n")
	p("| Row | c | requests/s | p50 ms | p99 ms | failed | proxy CPU µs/request |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Rows {
		cpu := "–"
		if r.CPUPerReq > 0 {
			cpu = fmt.Sprintf("%.0f", r.CPUPerReq)
		}
		p("| %s | %d | %.0f | %.2f | %.2f | %d | %s |\n", r.Name, r.Conc, r.RPS, r.P50, r.P99, r.Failed, cpu)
	}
	if rep.MitmMissing != "" {
		p("| mitmproxy (mitmdump) | | n/a: %s | | | | |\n", rep.MitmMissing)
	}
	p("\n`failed` is summed over all rounds.\n\n")

	p("## Against the bars of issue 3\n\n")
	p("| Bar | Measured | Verdict |\n|---|---|---|\n")
	moat, okM := rep.row(rowMoatMITM)
	mitm, okP := rep.row(rowMitmproxy)
	direct, _ := rep.row(rowDirect)
	if okM && okP && mitm.RPS > 0 {
		ratio := moat.RPS / mitm.RPS
		p("| TLS termination: ≥ %.0f× mitmproxy's requests/s (c=%d) | moat %.0f/s ÷ mitmproxy %.0f/s = **%.1f×** (p99 %.2f vs %.2f ms; CPU/request %.0f vs %.0f µs, %.1f× less) | %s |\n",
			barRatio, moat.Conc, moat.RPS, mitm.RPS, ratio, moat.P99, mitm.P99, moat.CPUPerReq, mitm.CPUPerReq,
			safeDiv(mitm.CPUPerReq, moat.CPUPerReq), verdict(ratio >= barRatio && moat.Failed == 0))
	} else {
		p("| TLS termination: ≥ %.0f× mitmproxy's requests/s | mitmproxy not measured | n/a |\n", barRatio)
	}
	d1, ok1 := rep.row(rowDirect1)
	e1, okE := rep.row(rowEndpoint1)
	if ok1 && okE {
		add50, add99 := e1.P50-d1.P50, e1.P99-d1.P99
		p("| Reverse endpoint: < %.0f ms added at p99 (c=1) | p50 %.2f − %.2f = **%+.2f ms**; p99 %.2f − %.2f = **%+.2f ms** | %s |\n",
			barAddedP99, e1.P50, d1.P50, add50, e1.P99, d1.P99, add99, verdict(add99 < barAddedP99 && e1.Failed == 0))
	}
	dh, okDH := rep.row(rowDirectH1)
	eh, okEH := rep.row(rowEndpointH1)
	if okDH && okEH {
		p("| Reverse endpoint, HTTP/1.1-only upstream (c=1), for reference | p50 %+.2f ms, p99 %+.2f ms | %s |\n",
			eh.P50-dh.P50, eh.P99-dh.P99, verdict(eh.P99-dh.P99 < barAddedP99 && eh.Failed == 0))
	}
	eN, okN := rep.row(rowEndpointN)
	if okN {
		add50, add99 := eN.P50-direct.P50, eN.P99-direct.P99
		p("| Reverse endpoint under load (c=%d), for reference | p50 %+.2f ms, p99 %+.2f ms against direct at c=%d | %s at c=%d |\n",
			eN.Conc, add50, add99, direct.Conc, verdict(add99 < barAddedP99 && eN.Failed == 0), eN.Conc)
	}
	if okM {
		p("\nmoat's TLS termination against direct at c=%d: %.0f vs %.0f requests/s (%.0f%%), p99 %.2f vs %.2f ms.\n",
			moat.Conc, moat.RPS, direct.RPS, 100*safeDiv(moat.RPS, direct.RPS), moat.P99, direct.P99)
	}
	p("\nThe bar for the reverse endpoint is judged at c=1, where latency is not queueing: an agent's requests to its model are\n")
	p("sequential. At c=%d the clients, moat and the upstream contend for the machine's cores and the added p99 is mostly\n", eN.Conc)
	p("waiting for a core; the row is there so that a change in it is seen.\n")
	return b.String()
}

func (rep *report) summary() string {
	var b strings.Builder
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "%-28s c=%-2d %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  failed %d  cpu %5.0f µs/req\n",
			r.Name, r.Conc, r.RPS, r.P50, r.P99, r.Failed, r.CPUPerReq)
	}
	return b.String()
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// busy reports whether a loadavg string's 1-minute load exceeds half the cores.
func busy(load string) bool {
	var l float64
	if _, err := fmt.Sscanf(load, "%g", &l); err != nil {
		return false
	}
	return l > float64(runtime.NumCPU())/2
}

// machine describes the CPU, cores, memory and kernel.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores%s%s", model, runtime.NumCPU(), mem, kernel)
}
