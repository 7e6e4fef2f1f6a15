package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100 ms, %v) = %v; want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil, 99) = %v; want 0", got)
	}
}

func TestMedianAndReport(t *testing.T) {
	m := median([]result{
		{Name: rowMoatMITM, Conc: 16, Requests: 10, RPS: 3000, P99: 9, Failed: 1},
		{Name: rowMoatMITM, Conc: 16, Requests: 20, RPS: 1000, P99: 30},
		{Name: rowMoatMITM, Conc: 16, Requests: 30, RPS: 2000, P99: 10},
	})
	if m.RPS != 2000 || m.P99 != 10 || m.Requests != 60 || m.Failed != 1 {
		t.Errorf("median = %+v; want 2000 req/s, p99 10, 60 requests, 1 failed", m)
	}
	rep := &report{Rows: []result{
		{Name: rowDirect, Conc: 16, RPS: 9000},
		{Name: rowMoatMITM, Conc: 16, RPS: 2000},
		{Name: rowMitmproxy, Conc: 16, RPS: 250},
		{Name: rowDirect1, Conc: 1, P50: 0.2, P99: 0.5},
		{Name: rowEndpoint1, Conc: 1, P50: 0.4, P99: 1.7},
	}}
	md := rep.markdown()
	for _, want := range []string{"= **8.0×**", "p99 1.70 − 0.50 = **+1.20 ms** | **not met** |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
