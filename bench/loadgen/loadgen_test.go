package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the upstream child process, as the
// loadgen binary does (see StartUpstreamProcess).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == upstreamArg {
		if err := serveUpstream(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// brief is a load short enough for a test; the checks are about the
// harness working, never about how fast anything is.
func brief(proxy string, clients int) Load {
	return Load{Proxy: proxy, Clients: clients, Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond}
}

func startUpstream(t *testing.T) *Upstream {
	t.Helper()
	up, err := StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

// checkStats fails unless s shows completed work and no error.
func checkStats(t *testing.T, what string, s Stats) {
	t.Helper()
	if s.Ops == 0 || s.Errors != 0 {
		t.Errorf("%s: %d done, %d errors (first: %q); want some done and no error", what, s.Ops, s.Errors, s.FirstErr)
	}
	if s.P50 <= 0 || s.P99 < s.P50 {
		t.Errorf("%s: p50 %v, p99 %v; want 0 < p50 <= p99", what, s.P50, s.P99)
	}
}

func TestWorkloadsDirect(t *testing.T) {
	up := startUpstream(t)
	ctx := context.Background()

	s := RunHTTP(ctx, brief("", 4), up.HTTPAddr)
	checkStats(t, "RunHTTP direct", s)
	if s.Dials != 4 {
		t.Errorf("RunHTTP direct opened %d connections; want 4, one per kept-alive client", s.Dials)
	}
	paced := brief("", 4)
	paced.Rate = 200
	s = RunHTTP(ctx, paced, up.HTTPAddr)
	checkStats(t, "RunHTTP direct, paced", s)
	// Pacing can only slow the clients down: an upper bound, not a timing.
	if most := int64(paced.Rate*paced.Duration.Seconds()) + int64(paced.Clients); s.Ops > most {
		t.Errorf("RunHTTP paced to %v/s did %d requests in %v; want at most %d", paced.Rate, s.Ops, paced.Duration, most)
	}
	checkStats(t, "RunConnect direct", RunConnect(ctx, brief("", 2), up.TLSAddr, up.CertPool))
	b := RunBulk(ctx, "", up.BulkAddr, 1<<20, 8<<20, 5*time.Second)
	checkStats(t, "RunBulk direct", b)
	if b.Bytes != 8<<20 {
		t.Errorf("RunBulk direct moved %d bytes; want %d", b.Bytes, 8<<20)
	}
}

func TestWorkloadsThroughProxy(t *testing.T) {
	up := startUpstream(t)
	proxy := startTestProxy(t)
	ctx := context.Background()

	checkStats(t, "RunHTTP via proxy", RunHTTP(ctx, brief(proxy, 4), up.HTTPAddr))
	checkStats(t, "RunConnect via proxy", RunConnect(ctx, brief(proxy, 2), up.TLSAddr, up.CertPool))
	b := RunBulk(ctx, proxy, up.BulkAddr, 1<<20, 8<<20, 5*time.Second)
	checkStats(t, "RunBulk via proxy", b)
	if b.Bytes != 8<<20 {
		t.Errorf("RunBulk via proxy moved %d bytes; want %d", b.Bytes, 8<<20)
	}

	conns, err := OpenTunnels(ctx, proxy, up.BulkAddr, 40, 8)
	if err != nil || len(conns) != 40 {
		t.Fatalf("OpenTunnels = %d tunnels, %v; want 40, nil", len(conns), err)
	}
	if n := up.BulkConns(); n < 40 {
		t.Errorf("upstream holds %d bulk connections with 40 tunnels open; want at least 40", n)
	}
	CloseAll(conns)
}

// TestRefusingProxy checks that a proxy's refusal is counted as errors, so a
// broken peer shows in the report instead of passing as fast.
func TestRefusingProxy(t *testing.T) {
	up := startUpstream(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied by policy", http.StatusForbidden)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	for what, s := range map[string]Stats{
		"RunHTTP":    RunHTTP(context.Background(), brief(ln.Addr().String(), 1), up.HTTPAddr),
		"RunConnect": RunConnect(context.Background(), brief(ln.Addr().String(), 1), up.TLSAddr, up.CertPool),
	} {
		if s.Ops != 0 || s.Errors == 0 || !strings.Contains(s.FirstErr, "403") {
			t.Errorf("%s through a refusing proxy: %d done, %d errors (first: %q); want 0 done and 403 errors", what, s.Ops, s.Errors, s.FirstErr)
		}
	}
}

func TestUpstreamProcess(t *testing.T) {
	up, err := StartUpstreamProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	checkStats(t, "RunHTTP against the child upstream", RunHTTP(context.Background(), brief("", 2), up.HTTPAddr))
	checkStats(t, "RunConnect against the child upstream", RunConnect(context.Background(), brief("", 1), up.TLSAddr, up.CertPool))
}

func TestTreeMemory(t *testing.T) {
	m, err := TreeMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Procs < 1 {
		t.Errorf("TreeMemory(self) = %+v; want RSS > 0 in at least 1 process", m)
	}
}

// TestReport renders a report from real (direct) numbers filed under every
// peer, and checks that its tables and the bar are there.
func TestReport(t *testing.T) {
	up := startUpstream(t)
	ctx := context.Background()
	res := &Results{
		Date: time.Now(), Command: "bench/run.sh --test", Machine: describeMachine(),
		Settings: Settings{Rounds: 1, Duration: 250 * time.Millisecond, BulkBytes: 1 << 20, BulkLimit: time.Second, Tunnels: []int{10}},
	}
	for _, name := range []string{squid, tinyproxy, moat} {
		res.Targets = append(res.Targets, TargetInfo{Name: name, Label: (&Peer{Name: name}).Label()})
		res.Memory = append(res.Memory, Memory{Target: name, IdleRSS: 10 << 20, Steps: []MemStep{{Want: 10, Held: 10, RSS: 11 << 20}}})
	}
	runs := map[string]Stats{
		wHTTP1:   RunHTTP(ctx, brief("", 1), up.HTTPAddr),
		wHTTP16:  RunHTTP(ctx, brief("", 2), up.HTTPAddr),
		wHTTP64:  RunHTTP(ctx, brief("", 2), up.HTTPAddr),
		wPaced:   RunHTTP(ctx, brief("", 2), up.HTTPAddr),
		wConnect: RunConnect(ctx, brief("", 1), up.TLSAddr, up.CertPool),
		wBulk:    RunBulk(ctx, "", up.BulkAddr, 1<<20, 1<<20, time.Second),
	}
	for w, s := range runs {
		for _, target := range []string{direct, squid, tinyproxy, moat} {
			res.Runs = append(res.Runs, Run{Workload: w, Target: target, Round: 1, Stats: s})
		}
	}
	if err := harnessErr(res); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeReport(&b, res)
	report := b.String()
	for _, want := range []string{
		"| c=16 requests/s |",
		"| p99 added ms | 0.000 | 0.000 | 0.000 |",
		"| tunnels/s |",
		"| MB/s |",
		"| KiB per idle tunnel (at 10) | 102.4 | 102.4 | 102.4 | 1.00× | 1.00× |",
		"| at least Squid on every row |",
		"| < 10 KiB per idle tunnel (at 10) | 102.4 KiB | **no** |",
		"| p99 added latency < 1 ms at 16 clients | 0.000 ms | **yes** |",
		"| ≥ 1.5× Squid's requests/s (every HTTP row) | c=1: 1.00×, c=16: 1.00×, c=64: 1.00× | **no** |",
		"bench/run.sh --test",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q; the report:\n%s", want, report)
		}
	}
}

// startTestProxy starts a minimal forward proxy (absolute-form GET and
// CONNECT) so that the harness's proxied paths are tested without Squid.
func startTestProxy(t *testing.T) string {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			up, err := net.Dial("tcp", r.Host)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				up.Close()
				return
			}
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			go func() { io.Copy(up, brw.Reader); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
			return
		}
		r.RequestURI = ""
		resp, err := tr.RoundTrip(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}), ErrorLog: discardLogger()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return ln.Addr().String()
}
