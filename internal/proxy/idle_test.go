package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestIdleTunnelCost opens idle CONNECT tunnels and reports what each one
// costs the proxy in heap and stacks. It asserts only that they all open
// and all go away: sizes are measured (bench/), not asserted.
func TestIdleTunnelCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const n = 2000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // idle upstream: holds, never reads
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	f := newFixture(t, "version: 1\nnetwork:\n  allow: [\"idle.test:"+port+"\"]\n  allow_private: [\"idle.test\"]\n",
		map[string]string{"idle.test": "127.0.0.1"})

	measure := func() (heap, stack uint64, g int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse, m.StackInuse, runtime.NumGoroutine()
	}
	h0, s0, g0 := measure()
	var clients []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		fmt.Fprintf(c, "CONNECT idle.test:%s HTTP/1.1\r\n\r\n", port)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("tunnel %d: %v %v", i, resp, err)
		}
		clients = append(clients, c)
	}
	time.Sleep(200 * time.Millisecond)
	h1, s1, g1 := measure()
	t.Logf("%d idle tunnels: heap %+d B/tunnel, stacks %+d B/tunnel, %.1f goroutines/tunnel (client ends and upstream ends included)",
		n, (int64(h1)-int64(h0))/n, (int64(s1)-int64(s0))/n, float64(g1-g0)/n)
	for _, c := range clients {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.ActiveConns() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a := f.srv.ActiveConns(); a != 0 {
		t.Errorf("%d connections still served after every client closed", a)
	}
}
