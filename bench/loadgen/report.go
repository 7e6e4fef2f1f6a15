package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The bar moat is held to (bench/README.md says why each).
const (
	barRequestsRatio = 1.5              // moat's requests/s over Squid's, every HTTP row
	barAddedP99      = time.Millisecond // p99 through moat minus direct, 16 clients
	barPerTunnel     = 10 * kib         // RSS per idle tunnel
)

// row is one line of a report table: a value per target ("direct" and the
// peers' names; absent = not measured).
type row struct {
	name    string
	vals    map[string]float64
	format  func(float64) string
	higher  bool // bigger is better; false: smaller is better
	compare bool // counts toward "at least Squid on every row"
	note    map[string]string
}

type table struct {
	title, intro string
	short        string // names the table in the bar's list of rows
	direct       bool   // show the direct (no proxy) column
	rows         []row
}

// median picks, for each target, one round of a workload so that a cell's
// rate and latencies come from the same run: the median by key of the rounds
// that others did not disturb (see measured), or the least disturbed round
// if every round was.
func median(res *Results, workload string, key func(Stats) float64) map[string]Stats {
	by := map[string][]Stats{}
	for _, r := range res.Runs {
		if r.Workload == workload {
			by[r.Target] = append(by[r.Target], r.Stats)
		}
	}
	out := map[string]Stats{}
	for t, ss := range by {
		var quiet []Stats
		for _, s := range ss {
			if s.Others <= disturbed {
				quiet = append(quiet, s)
			}
		}
		if len(quiet) == 0 {
			out[t] = slices.MinFunc(ss, func(a, b Stats) int { return cmpFloat(a.Others, b.Others) })
			continue
		}
		slices.SortFunc(quiet, func(a, b Stats) int { return cmpFloat(key(a), key(b)) })
		out[t] = quiet[len(quiet)/2]
	}
	return out
}

func cpuRow(name string, m map[string]Stats) row {
	vals := map[string]float64{}
	for t, s := range m {
		if s.CPUPerOp > 0 {
			vals[t] = float64(s.CPUPerOp) / float64(time.Microsecond)
		}
	}
	return row{name: name, vals: vals, format: decimal1, compare: true}
}

// othersRow shows how much other processes used the CPUs during each kept
// cell of a workload.
func othersRow(name string, m map[string]Stats) row {
	vals := map[string]float64{}
	for t, s := range m {
		vals[t] = 100 * s.Others
	}
	return row{name: name, vals: vals, format: func(v float64) string { return fmt.Sprintf("%.0f%%", v) }}
}

// spread is the largest (max−min)/median over the rounds of any cell.
func spread(res *Results) (float64, string) {
	by := map[[2]string][]float64{}
	for _, r := range res.Runs {
		v := r.Stats.PerSecond()
		if r.Workload == wBulk {
			v = r.Stats.MBPerSecond()
		}
		k := [2]string{r.Workload, r.Target}
		by[k] = append(by[k], v)
	}
	worst, where := 0.0, ""
	for k, vs := range by {
		if len(vs) < 2 {
			continue
		}
		slices.Sort(vs)
		if med := vs[len(vs)/2]; med > 0 {
			if s := (vs[len(vs)-1] - vs[0]) / med; s > worst {
				worst, where = s, k[0]+" "+k[1]
			}
		}
	}
	return worst, where
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func buildTables(res *Results) []table {
	rate := func(s Stats) float64 { return s.PerSecond() }
	var tables []table

	http := table{
		short:  "HTTP",
		title:  "HTTP forward proxy: GET for 1 KiB, keep-alive clients",
		intro:  "Absolute-form requests (as `HTTP_PROXY` clients send them), each client on its own kept-alive connection; a client whose connection the proxy closes opens a new one, and that dial counts in its next request's latency.",
		direct: true,
	}
	for _, w := range []struct {
		key     string
		clients int
	}{{wHTTP1, 1}, {wHTTP16, 16}, {wHTTP64, 64}} {
		m := median(res, w.key, rate)
		c := fmt.Sprintf("c=%d ", w.clients)
		http.rows = append(http.rows,
			row{name: c + "requests/s", vals: pick(m, rate), format: count, higher: true, compare: true},
			row{name: c + "p50 ms", vals: pick(m, func(s Stats) float64 { return ms(s.P50) }), format: millis, compare: true},
			row{name: c + "p99 ms", vals: pick(m, func(s Stats) float64 { return ms(s.P99) }), format: millis, compare: true},
			cpuRow(c+"proxy CPU µs per request", m),
		)
	}
	m16 := median(res, wHTTP16, rate)
	http.rows = append(http.rows,
		othersRow("c=16 others' CPU share in the kept round", m16),
		row{name: "c=16 connections opened per 1,000 requests", vals: pick(m16, func(s Stats) float64 {
			if s.Ops == 0 {
				return math.NaN()
			}
			return 1000 * float64(s.Dials) / float64(s.Ops)
		}), format: decimal1},
		row{name: "failed requests (all HTTP rows and rounds)", vals: errorsOf(res, wHTTP1, wHTTP16, wHTTP64), format: count},
	)
	tables = append(tables, http)

	added := table{
		short: "added latency",
		title: "Added latency at 16 clients: through the proxy minus direct",
		intro: "From the c=16 rows above (the kept round of each): closed loop, so every target runs at its saturation and the numbers include queueing for the CPUs.",
	}
	addedBy := func(m map[string]Stats, q func(Stats) time.Duration) map[string]float64 {
		out := map[string]float64{}
		d, ok := m[direct]
		if !ok {
			return out
		}
		for t, s := range m {
			if t != direct && s.Ops > 0 {
				out[t] = ms(q(s) - q(d))
			}
		}
		return out
	}
	p50 := func(s Stats) time.Duration { return s.P50 }
	p99 := func(s Stats) time.Duration { return s.P99 }
	mp := median(res, wPaced, func(s Stats) float64 { return ms(s.P99) })
	added.rows = []row{
		{name: "p50 added ms", vals: addedBy(m16, p50), format: millis, compare: true},
		{name: "p99 added ms", vals: addedBy(m16, p99), format: millis, compare: true},
	}
	tables = append(tables, added)

	tables = append(tables, table{
		short:  "paced",
		title:  fmt.Sprintf("For reference, not in the bar: 16 clients paced to %s requests/s in all", count(pacedRate)),
		intro:  "Latency counted from each request's scheduled start, so a stall counts in full: the proxy's cost below saturation. A p99 is the 50th-worst of about 5,000 samples, so a single pause moves it by milliseconds; a negative added p99 means the direct baseline's kept round had the larger pause.",
		direct: true,
		rows: []row{
			{name: "requests/s achieved", vals: pick(mp, rate), format: count},
			{name: "p50 ms", vals: pick(mp, func(s Stats) float64 { return ms(s.P50) }), format: millis},
			{name: "p99 ms", vals: pick(mp, func(s Stats) float64 { return ms(s.P99) }), format: millis},
			{name: "p50 added ms", vals: addedBy(mp, p50), format: millis},
			{name: "p99 added ms", vals: addedBy(mp, p99), format: millis},
			func() row { r := cpuRow("proxy CPU µs per request", mp); r.compare = false; return r }(),
			othersRow("others' CPU share in the kept round", mp),
		},
	})

	mc := median(res, wConnect, rate)
	tables = append(tables, table{
		short:  "CONNECT",
		title:  "New CONNECT tunnels, one TLS request each, 16 clients",
		intro:  "Each operation: TCP connect, CONNECT, TLS handshake through the tunnel (sessions resumed from a shared cache), one GET for 1 KiB, close. Direct: the same without the proxy.",
		direct: true,
		rows: []row{
			{name: "tunnels/s", vals: pick(mc, rate), format: count, higher: true, compare: true},
			{name: "p50 ms", vals: pick(mc, func(s Stats) float64 { return ms(s.P50) }), format: millis, compare: true},
			{name: "p99 ms", vals: pick(mc, func(s Stats) float64 { return ms(s.P99) }), format: millis, compare: true},
			cpuRow("proxy CPU µs per tunnel", mc),
			othersRow("others' CPU share in the kept round", mc),
			{name: "failed tunnels (all rounds)", vals: errorsOf(res, wConnect), format: count},
		},
	})

	mbps := func(s Stats) float64 { return s.MBPerSecond() }
	mb := median(res, wBulk, mbps)
	tables = append(tables, table{
		short: "bulk",
		title: "Bulk download through one CONNECT tunnel",
		intro: fmt.Sprintf("Plain bytes (no TLS, so the proxy's copy is what is measured): %d MiB or as much as %v allows, after an unmeasured warm-up transfer. MB = 10^6 bytes.",
			res.Settings.BulkBytes/mib, res.Settings.BulkLimit),
		direct: true,
		rows: []row{
			{name: "MB/s", vals: pick(mb, mbps), format: count, higher: true, compare: true},
			othersRow("others' CPU share in the kept round", mb),
			{name: "failed transfers (all rounds)", vals: errorsOf(res, wBulk), format: count},
		},
	})

	memT := table{
		short: "memory",
		title: "Memory: VmRSS summed over the proxy's process tree",
		intro: fmt.Sprintf("A fresh proxy, idle; then with idle CONNECT tunnels open to the upstream (each proved with a one-byte transfer, then left idle; %v to settle before reading /proc). \"After load\" is the throughput phase's instance, idle again at its end.", settleFor),
	}
	idle := map[string]float64{}
	after := map[string]float64{}
	procs := map[string]float64{}
	idlePSS := map[string]float64{}
	for _, m := range res.Memory {
		idle[m.Target] = float64(m.IdleRSS) / mib
		idlePSS[m.Target] = float64(m.IdlePSS) / mib
		procs[m.Target] = float64(m.Procs)
		if m.AfterLoadRSS > 0 {
			after[m.Target] = float64(m.AfterLoadRSS) / mib
		}
	}
	if res.TunnelCap != "" {
		memT.intro += " **" + res.TunnelCap + ".**"
	}
	memT.rows = append(memT.rows, row{name: "idle MiB", vals: idle, format: decimal1, compare: true})
	for _, want := range res.Settings.Tunnels {
		r := row{name: fmt.Sprintf("with %s idle tunnels MiB", count(float64(want))), vals: map[string]float64{}, format: decimal1, compare: true, note: map[string]string{}}
		per := row{name: fmt.Sprintf("KiB per idle tunnel (at %s)", count(float64(want))), vals: map[string]float64{}, format: decimal1, compare: true, note: map[string]string{}}
		for _, m := range res.Memory {
			for _, st := range m.Steps {
				if st.Want != want {
					continue
				}
				if st.Held == st.Want {
					r.vals[m.Target] = float64(st.RSS) / mib
					per.vals[m.Target] = float64(st.RSS-m.IdleRSS) / kib / float64(st.Held)
				} else {
					r.note[m.Target] = fmt.Sprintf("held %s of %s", count(float64(st.Held)), count(float64(want)))
					per.note[m.Target] = r.note[m.Target]
				}
			}
		}
		memT.rows = append(memT.rows, r, per)
	}
	memT.rows = append(memT.rows,
		row{name: "after load, idle MiB", vals: after, format: decimal1, compare: true},
		row{name: "idle PSS MiB (shared pages split, for reference)", vals: idlePSS, format: decimal1},
		row{name: "processes in the tree", vals: procs, format: count},
	)
	tables = append(tables, memT)
	return tables
}

func pick(m map[string]Stats, f func(Stats) float64) map[string]float64 {
	out := map[string]float64{}
	for t, s := range m {
		if s.Ops > 0 {
			out[t] = f(s)
		}
	}
	return out
}

func errorsOf(res *Results, workloads ...string) map[string]float64 {
	out := map[string]float64{}
	for _, r := range res.Runs {
		if slices.Contains(workloads, r.Workload) {
			out[r.Target] += float64(r.Stats.Errors)
		}
	}
	return out
}

// writeReport renders res as Markdown.
func writeReport(w io.Writer, res *Results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	labels := map[string]string{direct: "direct"}
	var peers []string
	for _, t := range res.Targets {
		labels[t.Name] = t.Label
		peers = append(peers, t.Name)
	}
	measured := func(name string) bool {
		for _, t := range res.Targets {
			if t.Name == name {
				return t.Skipped == ""
			}
		}
		return false
	}

	p("# moat proxy benchmark\n\n")
	if res.Quick {
		p("**A `--quick` smoke run: windows of %v, one round, few tunnels. These numbers check that the harness works; they are not results.**\n\n", res.Settings.Duration)
	}
	p("Generated by `bench/loadgen` on %s with:\n\n```\n%s\n```\n\n", res.Date.Format("2006-01-02 15:04 MST"), res.Command)
	if res.Rerendered != "" {
		p("This report was written again from that run's raw numbers (`%s`), measuring nothing, with:\n\n```\n%s\n```\n\n", "RESULTS.json", res.Rerendered)
	}
	mc := res.Machine
	p("Machine: %d CPUs (%s), kernel %s, %s memory; %s; RLIMIT_NOFILE %d. The load generator, the upstream and the proxy share these CPUs, so absolute numbers are lower bounds and the ratios are what carries over.\n\n",
		mc.CPUs, mc.CPUModel, mc.Kernel, mc.MemTotal, mc.Go, res.NoFile)
	p("Peers:\n\n")
	for _, t := range res.Targets {
		switch {
		case t.Skipped != "":
			p("- %s: **not measured** (%s)\n", t.Label, t.Skipped)
		case t.Version != "":
			p("- %s: %s\n", t.Label, t.Version)
		default:
			p("- %s\n", t.Label)
		}
	}
	worst, where := spread(res)
	p("\nEach throughput cell comes from one of %d round(s) of a %v window after a %v warm-up (every round runs all targets back to back): the median of the rounds in which other processes took at most %.0f%% of the CPUs, or the least disturbed round if none was that quiet. ", res.Settings.Rounds, res.Settings.Duration, res.Settings.Warmup, 100*disturbed)
	if res.Settings.Rounds > 1 {
		p("Largest round-to-round spread of a cell, (max − min) / median: %.0f%% (%s). ", 100*worst, where)
	}
	p("%s ", interference(res))
	p("Ratios are to Squid: above 1 is better for rates, below 1 is better for latency, CPU and memory. The proxy CPU rows (user + system time of the proxy's process tree per completed operation, from /proc, warm-up included) do not depend on how the CPUs are shared, so they carry over to other machines best.\n\n")

	tables := buildTables(res)
	for _, t := range tables {
		p("## %s\n\n%s\n\n", t.title, t.intro)
		cols := []string{}
		if t.direct {
			cols = append(cols, direct)
		}
		cols = append(cols, peers...)
		p("| |")
		for _, c := range cols {
			p(" %s |", labels[c])
		}
		p(" tinyproxy/Squid | moat/Squid |\n|---|")
		for range len(cols) + 2 {
			p("---:|")
		}
		p("\n")
		for _, r := range t.rows {
			p("| %s |", r.name)
			for _, c := range cols {
				p(" %s |", cell(r, c, c == direct || measured(c)))
			}
			for _, c := range []string{tinyproxy, moat} {
				p(" %s |", ratio(r, c))
			}
			p("\n")
		}
		p("\n")
	}

	p("## Logs written per request (throughput phase)\n\n")
	p("Operations are the HTTP requests and CONNECT tunnels each proxy completed in the throughput phase, warm-ups and repeated attempts included; lines are non-blank lines of its log.\n\n")
	p("| | bytes | lines | operations | lines per operation | bytes per line |\n|---|---:|---:|---:|---:|---:|\n")
	for _, t := range res.Targets {
		if t.Skipped != "" {
			continue
		}
		var ops int64
		for _, r := range res.Runs {
			if r.Target == t.Name && r.Workload != wBulk {
				ops += r.Stats.AllOps
			}
		}
		perOp, perLine := "–", "–"
		if ops > 0 {
			perOp = fmt.Sprintf("%.2f", float64(t.LogLines)/float64(ops))
		}
		if t.LogLines > 0 {
			perLine = count(float64(t.LogBytes) / float64(t.LogLines))
		}
		p("| %s | %s | %s | %s | %s | %s |\n", t.Label, count(float64(t.LogBytes)), count(float64(t.LogLines)), count(float64(ops)), perOp, perLine)
	}
	p("\n")

	p("## Notes on the peers\n\n")
	p("- tinyproxy answers every request with `Connection: close` (see the connections-per-1,000-requests row), so its clients pay a TCP connect per request, and it calls `fsync` on its log file after every line it writes (seven lines per proxied request at `LogLevel Info`; seen with `strace -c`): its rows measure both, which are how it runs in production with a log file.\n")
	p("- Squid's rows include its log daemon (`access_log daemon:`), which writes the access log from a pipe; its summed VmRSS counts the pages that its master, worker and log daemon share once per process (the PSS row splits them).\n")
	p("- A cell whose operations all failed shows `–`; failures are counted in each table's failed row and never as completed work.\n\n")
	p("## The bar for moat\n\n")
	if !measured(moat) {
		p("Not evaluated: moat was not measured (%s).\n", skipReason(res, moat))
		return
	}
	p("| bar | moat | met? |\n|---|---|---|\n")
	var below []string
	compared := 0
	for _, t := range tables {
		for _, r := range t.rows {
			if !r.compare {
				continue
			}
			mv, okM := r.vals[moat]
			sv, okS := r.vals[squid]
			noteM, hasNoteM := r.note[moat]
			_, hasNoteS := r.note[squid]
			switch {
			case hasNoteM || !okM:
				compared++
				if !hasNoteM {
					noteM = "not measured"
				}
				below = append(below, fmt.Sprintf("%s %s: %s", t.short, r.name, noteM))
			case hasNoteS:
				compared++ // moat held what Squid could not
			case !okS:
				// Squid has no number here: nothing to compare with
			default:
				compared++
				if (r.higher && mv < sv) || (!r.higher && mv > sv) {
					below = append(below, fmt.Sprintf("%s %s: %s vs Squid's %s", t.short, r.name, r.format(mv), r.format(sv)))
				}
			}
		}
	}
	p("| at least Squid on every row | %d of %d rows at least Squid's", compared-len(below), compared)
	if len(below) > 0 {
		p("; below: %s", strings.Join(below, "; "))
	}
	p(" | %s |\n", yesNo(len(below) == 0 && compared > 0))

	var ratios []string
	okRatio := true
	for _, r := range tables[0].rows {
		if !strings.HasSuffix(r.name, "requests/s") {
			continue
		}
		mv, okM := r.vals[moat]
		sv, okS := r.vals[squid]
		if !okM || !okS || sv == 0 {
			ratios = append(ratios, strings.TrimSuffix(r.name, " requests/s")+": n/a")
			okRatio = false
			continue
		}
		ratios = append(ratios, fmt.Sprintf("%s: %.2f×", strings.TrimSuffix(r.name, " requests/s"), mv/sv))
		okRatio = okRatio && mv/sv >= barRequestsRatio
	}
	p("| ≥ %.1f× Squid's requests/s (every HTTP row) | %s | %s |\n", barRequestsRatio, strings.Join(ratios, ", "), yesNo(okRatio))

	if v, ok := tables[1].rows[1].vals[moat]; ok {
		p("| p99 added latency < %g ms at 16 clients | %.3f ms | %s |\n", ms(barAddedP99), v, yesNo(v < ms(barAddedP99)))
	} else {
		p("| p99 added latency < %g ms at 16 clients | n/a | **no** |\n", ms(barAddedP99))
	}
	largest := res.Settings.Tunnels[len(res.Settings.Tunnels)-1]
	var perTunnel row
	for _, t := range tables {
		for _, r := range t.rows {
			if r.name == fmt.Sprintf("KiB per idle tunnel (at %s)", count(float64(largest))) {
				perTunnel = r
			}
		}
	}
	if v, ok := perTunnel.vals[moat]; ok {
		p("| < %d KiB per idle tunnel (at %s) | %.1f KiB | %s |\n", barPerTunnel/kib, count(float64(largest)), v, yesNo(v < barPerTunnel/kib))
	} else {
		p("| < %d KiB per idle tunnel (at %s) | could not hold them | **no** |\n", barPerTunnel/kib, count(float64(largest)))
	}
}

func skipReason(res *Results, name string) string {
	for _, t := range res.Targets {
		if t.Name == name {
			return t.Skipped
		}
	}
	return "unknown"
}

func cell(r row, target string, measured bool) string {
	if !measured {
		return "n/a"
	}
	if n, ok := r.note[target]; ok {
		return n
	}
	v, ok := r.vals[target]
	if !ok || math.IsNaN(v) {
		return "–"
	}
	return r.format(v)
}

func ratio(r row, target string) string {
	if !r.compare {
		return ""
	}
	v, ok1 := r.vals[target]
	s, ok2 := r.vals[squid]
	if !ok1 || !ok2 || s <= 0 || v < 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/s)
}

func yesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

// count formats a number rounded to an integer with thousands separators.
func count(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func millis(v float64) string   { return strconv.FormatFloat(v, 'f', 3, 64) }
func decimal1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// interference summarises how much other processes used the CPUs during the
// cells, and how many cells were run again because of them.
func interference(res *Results) string {
	var shares []float64
	again, worst, where := 0, 0.0, ""
	for _, r := range res.Runs {
		shares = append(shares, r.Stats.Others)
		if r.Stats.Attempts > 1 {
			again++
		}
		if r.Stats.Others > worst {
			worst, where = r.Stats.Others, r.Workload+" "+r.Target
		}
	}
	if len(shares) == 0 {
		return ""
	}
	slices.Sort(shares)
	s := fmt.Sprintf("The benchmark ran at nice %s; load average as the run began: %s. Other processes' share of the CPUs during the kept cells: median %.0f%%, worst %.0f%% (%s)",
		res.Nice, res.LoadAvg, 100*shares[len(shares)/2], 100*worst, where)
	if again > 0 {
		s += fmt.Sprintf("; %d cell(s) were run again because others took more than %.0f%%", again, 100*disturbed)
	}
	return s + "."
}
