package sandbox

import (
	"io"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Trace prints how long each step of the start path took, one line per
// step, for MOAT_TRACE_START=1:
//
//	moat: trace:   4.210 ms (+0.312) sandbox  cgroups
//
// Times are CLOCK_MONOTONIC offsets from the trace's origin (the same
// clock in every namespace), so the lines of moat and of the sandbox's
// processes (PID 1 "init", the last stage "exec") merge by time. A nil
// *Trace prints nothing and costs one comparison. It is safe for
// concurrent use.
type Trace struct {
	w        io.Writer
	who      string
	mu       sync.Mutex
	t0, last int64 // nanoseconds; last is guarded by mu
}

// NewTrace starts a trace at now, written to w.
func NewTrace(w io.Writer) *Trace {
	t := monotonic()
	return &Trace{w: w, who: "moat", t0: t, last: t}
}

// origin is what a sandbox process needs to continue the trace (0: off).
func (tr *Trace) origin() int64 {
	if tr == nil {
		return 0
	}
	return tr.t0
}

// traceFrom continues in a sandbox process a trace whose origin the
// parent set (0: none); the process began at began (monotonic ns), which
// is marked as "started": exec and the Go runtime's start-up.
func traceFrom(t0, began int64, who string, w io.Writer) *Trace {
	if t0 == 0 {
		return nil
	}
	tr := &Trace{w: w, who: who, t0: t0, last: t0}
	tr.markAt("started", began)
	return tr
}

// Mark prints the time since the origin and since the previous mark in
// this process (a sandbox process's first mark: since the origin).
func (tr *Trace) Mark(step string) {
	if tr == nil {
		return
	}
	tr.markAt(step, monotonic())
}

func (tr *Trace) markAt(step string, now int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	b := make([]byte, 0, 80)
	b = append(b, "moat: trace: "...)
	b = appendMS(b, now-tr.t0, 8)
	b = append(b, " ms (+"...)
	b = appendMS(b, now-tr.last, 0)
	b = append(b, ") "...)
	b = append(b, tr.who...)
	for i := len(tr.who); i < 8; i++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = append(b, step...)
	b = append(b, '\n')
	tr.w.Write(b)
	tr.last = now
}

// appendMS appends ns as milliseconds with three decimals, right-aligned
// in width.
func appendMS(b []byte, ns int64, width int) []byte {
	s := strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
