package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// scenario is one row of the report.
type scenario struct {
	Name      string
	Conc      int
	URL       string
	Header    string               // Authorization the client sends itself (the direct rows: the agent holds the key)
	NewClient func() *http.Client  // one per concurrent client
	CPU       func() time.Duration // the proxy's CPU time so far; nil for direct rows
}

// result is one measured window.
type result struct {
	Name      string  `json:"name"`
	Conc      int     `json:"concurrency"`
	Requests  int     `json:"requests"`
	Failed    int     `json:"failed"`
	RPS       float64 `json:"requests_per_s"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	CPUPerReq float64 `json:"proxy_cpu_us_per_request,omitempty"`
}

// measure runs sc's clients for warm+window and measures the requests that
// started inside the window. Each client sends its next request when the
// last one is answered (a closed loop); a failed request (an error or a
// status other than 200, such as the upstream's 401 for a missing header)
// is counted, never timed.
func measure(ctx context.Context, sc scenario, warm, window time.Duration) result {
	start := time.Now()
	t0, t1 := start.Add(warm), start.Add(warm+window)
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var wg sync.WaitGroup
	for range sc.Conc {
		c := sc.NewClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseIdleConnections()
			var mine []time.Duration
			bad := 0
			for ctx.Err() == nil {
				s := time.Now()
				if !s.Before(t1) {
					break
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", sc.URL, nil)
				if sc.Header != "" {
					req.Header.Set("Authorization", sc.Header)
				}
				resp, err := c.Do(req)
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(s)
				if s.Before(t0) {
					continue
				}
				if ok {
					mine = append(mine, d)
				} else {
					bad++
					time.Sleep(10 * time.Millisecond) // no hot loop against a broken proxy
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		}()
	}
	var cpu0, cpu1 time.Duration
	if sc.CPU != nil {
		time.Sleep(time.Until(t0))
		cpu0 = sc.CPU()
		time.Sleep(time.Until(t1))
		cpu1 = sc.CPU()
	}
	wg.Wait()
	r := result{Name: sc.Name, Conc: sc.Conc, Requests: len(lat), Failed: failed,
		RPS: float64(len(lat)) / window.Seconds()}
	slices.Sort(lat)
	r.P50, r.P99 = ms(percentile(lat, 50)), ms(percentile(lat, 99))
	if sc.CPU != nil && len(lat) > 0 {
		r.CPUPerReq = float64((cpu1 - cpu0).Microseconds()) / float64(len(lat))
	}
	return r
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// median returns, field by field, the median of rs (all rows of one
// scenario, one per round).
func median(rs []result) result {
	m := rs[0]
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.RPS = pick(func(r result) float64 { return r.RPS })
	m.P50 = pick(func(r result) float64 { return r.P50 })
	m.P99 = pick(func(r result) float64 { return r.P99 })
	m.CPUPerReq = pick(func(r result) float64 { return r.CPUPerReq })
	m.Requests, m.Failed = 0, 0
	for _, r := range rs {
		m.Requests += r.Requests
		m.Failed += r.Failed
	}
	return m
}
