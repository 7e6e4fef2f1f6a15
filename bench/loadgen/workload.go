package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"
)

// opTimeout bounds every single operation (a request, a tunnel, a transfer
// step), so a stuck proxy costs a counted error, never a hung run.
const opTimeout = 10 * time.Second

// Stats summarises one timed run of a workload against one target.
type Stats struct {
	Ops      int64         `json:"ops"`     // operations completed inside the measured window
	AllOps   int64         `json:"all_ops"` // operations completed at all: warm-up, and earlier attempts of the cell (see measured)
	Errors   int64         `json:"errors"`  // failed operations, warm-up included
	FirstErr string        `json:"first_error,omitempty"`
	Dials    int64         `json:"dials"`     // TCP connections the clients opened, warm-up included
	Window   time.Duration `json:"window_ns"` // length of the measured window
	Bytes    int64         `json:"bytes,omitempty"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	// Others is the share of the machine's CPU time that processes outside
	// the benchmark used during the run; Attempts counts the runs of a cell
	// disturbed by them (see measured).
	Others float64 `json:"others_cpu"`
	// CPUPerOp is the CPU time (user and system) the proxy's process tree
	// spent per completed operation over the whole run, warm-up included:
	// unlike rates, it does not depend on who else shares the CPUs.
	CPUPerOp time.Duration `json:"proxy_cpu_per_op_ns,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
}

// PerSecond is the completed operations per second of the measured window.
func (s Stats) PerSecond() float64 {
	if s.Window <= 0 {
		return 0
	}
	return float64(s.Ops) / s.Window.Seconds()
}

// MBPerSecond is the payload throughput in MB (10^6 bytes) per second.
func (s Stats) MBPerSecond() float64 {
	if s.Window <= 0 {
		return 0
	}
	return float64(s.Bytes) / 1e6 / s.Window.Seconds()
}

// Load is what a workload needs to know about its target. Proxy is the
// proxy's host:port; empty means the clients go straight to the upstream
// (the baseline rows).
type Load struct {
	Proxy    string
	Clients  int
	Warmup   time.Duration // run, but not measured, before the window
	Duration time.Duration // the measured window
	// Rate, if positive, paces the clients to this many operations per
	// second in all, each on its own schedule; latency then counts from the
	// scheduled start, so a stall shows in full (no coordinated omission).
	// Zero: each client starts its next operation as the last one ends.
	Rate float64
}

// op is one client's operation; it returns the number of TCP connections it
// opened. A client keeps its state (a kept-alive connection) between calls
// and releases it in close.
type op interface {
	do() (dials int, err error)
	close()
}

// closedLoop runs l.Clients clients, each calling its op back to back (or
// paced, see Load.Rate) for l.Warmup+l.Duration. Latency samples count only
// for operations that start after the warm-up and end inside the window.
func closedLoop(ctx context.Context, l Load, newOp func() op) Stats {
	start := time.Now()
	from, end := start.Add(l.Warmup), start.Add(l.Warmup+l.Duration)
	var every time.Duration // each client's interval when paced
	if l.Rate > 0 {
		every = time.Duration(float64(max(l.Clients, 1)) / l.Rate * float64(time.Second))
	}
	type result struct {
		lat              []time.Duration
		errs, dials, all int64
		firstErr         error
	}
	results := make([]result, max(l.Clients, 1))
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		// Paced clients start spread over one interval.
		next := start.Add(every * time.Duration(i) / time.Duration(len(results)))
		go func(r *result) {
			defer wg.Done()
			o := newOp()
			defer o.close()
			for ctx.Err() == nil {
				t0 := time.Now()
				if every > 0 {
					if wait := next.Sub(t0); wait > 0 {
						time.Sleep(wait)
					}
					t0, next = next, next.Add(every)
				}
				if !t0.Before(end) {
					return
				}
				d, err := o.do()
				t1 := time.Now()
				r.dials += int64(d)
				if err != nil {
					r.errs++
					if r.firstErr == nil {
						r.firstErr = err
					}
					// A refusing proxy must not turn the loop into a spin.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				r.all++
				if !t0.Before(from) && !t1.After(end) {
					r.lat = append(r.lat, t1.Sub(t0))
				}
			}
		}(&results[i])
	}
	wg.Wait()

	s := Stats{Window: l.Duration}
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.lat...)
		s.Errors += r.errs
		s.Dials += r.dials
		s.AllOps += r.all
		if r.firstErr != nil && s.FirstErr == "" {
			s.FirstErr = r.firstErr.Error()
		}
	}
	slices.Sort(all)
	s.Ops = int64(len(all))
	s.P50, s.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return s
}

// percentile returns the nearest-rank p-quantile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// RunHTTP measures GET requests for a 1 KiB reply from upstream (host:port of
// the plain HTTP server) over keep-alive connections, one per client. Through
// a proxy the requests are absolute-form, as a client configured with
// HTTP_PROXY sends them. When the server closes a connection (tinyproxy does
// after every reply), the client opens a new one, and that dial counts in the
// next request's latency, as a real client would feel it.
func RunHTTP(ctx context.Context, l Load, upstream string) Stats {
	target, uri := upstream, "/"
	if l.Proxy != "" {
		target, uri = l.Proxy, "http://"+upstream+"/"
	}
	req := []byte("GET " + uri + " HTTP/1.1\r\nHost: " + upstream + "\r\nUser-Agent: moat-bench\r\nAccept: */*\r\n\r\n")
	return closedLoop(ctx, l, func() op {
		return &httpClient{addr: target, req: req, br: bufio.NewReaderSize(nil, 16<<10)}
	})
}

type httpClient struct {
	addr string
	req  []byte
	conn net.Conn
	br   *bufio.Reader
}

func (c *httpClient) do() (int, error) {
	dials := 0
	// A kept-alive connection may have been closed by the server between two
	// requests; like net/http's Transport, retry once on a fresh connection
	// when a reused one fails before any reply.
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if !reused {
			conn, err := net.DialTimeout("tcp", c.addr, opTimeout)
			if err != nil {
				return dials, fmt.Errorf("dial %s: %w", c.addr, err)
			}
			dials++
			c.conn = conn
			c.br.Reset(conn)
		}
		err := c.roundTrip()
		if err == nil {
			return dials, nil
		}
		c.drop()
		if !reused || attempt > 0 || !retryable(err) {
			return dials, err
		}
	}
}

func (c *httpClient) roundTrip() error {
	c.conn.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.conn.Write(c.req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("read body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %q", resp.Status)
	case n != replySize:
		return fmt.Errorf("body of %d bytes; want %d", n, replySize)
	}
	if resp.Close {
		c.drop()
	}
	return nil
}

func (c *httpClient) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *httpClient) close() { c.drop() }

// retryable reports whether err is what a server closing an idle kept-alive
// connection produces.
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// RunConnect measures new CONNECT tunnels per second: each operation opens a
// tunnel to tlsAddr, does a TLS handshake through it, sends one GET for 1 KiB
// and closes. With no proxy it connects to tlsAddr directly. TLS sessions are
// resumed from a shared cache, as a real client talking to one host does, so
// that the proxy's share of the cost is not drowned in key exchanges.
func RunConnect(ctx context.Context, l Load, tlsAddr string, roots *x509.CertPool) Stats {
	host, _, _ := net.SplitHostPort(tlsAddr)
	conf := &tls.Config{
		RootCAs:            roots,
		ServerName:         host,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
		CurvePreferences:   []tls.CurveID{tls.X25519},
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + tlsAddr + "\r\nUser-Agent: moat-bench\r\nConnection: close\r\n\r\n")
	return closedLoop(ctx, l, func() op {
		return &connectClient{proxy: l.Proxy, target: tlsAddr, conf: conf, req: req}
	})
}

type connectClient struct {
	proxy, target string
	conf          *tls.Config
	req           []byte
}

func (c *connectClient) do() (int, error) {
	deadline := time.Now().Add(opTimeout)
	conn, err := dialVia(c.proxy, c.target, deadline)
	if err != nil {
		return 1, err
	}
	defer conn.Close()
	tc := tls.Client(conn, c.conf)
	if err := tc.Handshake(); err != nil {
		return 1, fmt.Errorf("tls handshake through the tunnel: %w", err)
	}
	if _, err := tc.Write(c.req); err != nil {
		return 1, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return 1, fmt.Errorf("read response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return 1, fmt.Errorf("read body: %w", err)
	case resp.StatusCode != http.StatusOK || n != replySize:
		return 1, fmt.Errorf("got %q with %d bytes; want 200 with %d", resp.Status, n, replySize)
	}
	return 1, nil
}

func (c *connectClient) close() {}

// dialVia opens a TCP connection to target, through a CONNECT tunnel of proxy
// unless proxy is empty. The returned connection has deadline set.
func dialVia(proxy, target string, deadline time.Time) (net.Conn, error) {
	addr := target
	if proxy != "" {
		addr = proxy
	}
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	conn.SetDeadline(deadline)
	if proxy == "" {
		return conn, nil
	}
	if _, err := io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nUser-Agent: moat-bench\r\n\r\n"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read CONNECT reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %s: proxy answered %q", target, resp.Status)
	}
	if br.Buffered() == 0 {
		return conn, nil
	}
	return &bufferedConn{Conn: conn, r: br}, nil // the tunnel's first bytes came with the reply
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// RunBulk measures one download through one tunnel to the upstream's bulk
// endpoint (directly when proxy is empty): warm is transferred first and not
// measured, then size bytes or as many as arrive within limit.
func RunBulk(ctx context.Context, proxy, bulkAddr string, warm, size int64, limit time.Duration) Stats {
	s := Stats{Ops: 1, AllOps: 1, Dials: 1}
	fail := func(err error) Stats {
		s.Ops, s.AllOps, s.Errors, s.FirstErr = 0, 0, 1, err.Error()
		return s
	}
	conn, err := dialVia(proxy, bulkAddr, time.Now().Add(opTimeout))
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 256<<10)

	conn.SetDeadline(time.Now().Add(opTimeout))
	if _, err := fetch(conn, buf, warm); err != nil {
		return fail(fmt.Errorf("warm-up transfer: %w", err))
	}
	t0 := time.Now()
	conn.SetDeadline(t0.Add(limit))
	n, err := fetch(conn, buf, size)
	s.Window, s.Bytes = time.Since(t0), n
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout() && n > 0 && ctx.Err() == nil) {
		return fail(fmt.Errorf("transfer after %d bytes: %w", n, err))
	}
	s.P50, s.P99 = s.Window, s.Window
	return s
}

// fetch asks the bulk endpoint for size bytes and reads them.
func fetch(conn net.Conn, buf []byte, size int64) (int64, error) {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	if _, err := conn.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("write request: %w", err)
	}
	var got int64
	for got < size {
		n, err := conn.Read(buf[:min(int64(len(buf)), size-got)])
		got += int64(n)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// OpenTunnels opens n CONNECT tunnels through proxy to the bulk endpoint,
// parallel at a time, proves each end to end with a one-byte transfer, and
// leaves them open and idle. On failure it returns the tunnels it holds and
// the first error.
func OpenTunnels(ctx context.Context, proxy, bulkAddr string, n, parallel int) ([]net.Conn, error) {
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, n)
		firstErr error
		next     = make(chan struct{}, n)
		wg       sync.WaitGroup
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one := make([]byte, 1)
			for range next {
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed || ctx.Err() != nil {
					return
				}
				conn, err := dialVia(proxy, bulkAddr, time.Now().Add(opTimeout))
				if err == nil {
					if _, err = fetch(conn, one, 1); err != nil {
						conn.Close()
						err = fmt.Errorf("first byte through the tunnel: %w", err)
					}
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("tunnel %d: %w", len(conns)+1, err)
					}
				} else {
					conn.SetDeadline(time.Time{})
					conns = append(conns, conn)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return conns, firstErr
}

// CloseAll closes every connection in conns.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
