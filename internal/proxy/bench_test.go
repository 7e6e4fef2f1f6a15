package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkForward measures one kept-alive absolute-form GET for 1 KiB
// through the proxy, the policy and an audit recorder included.
func BenchmarkForward(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	f := newFixture(b, "version: 1\nnetwork:\n  allow: [\"up.test:"+port+"\"]\n  allow_private: [\"up.test\"]\n",
		map[string]string{"up.test": "127.0.0.1"}, func(s *Server) { s.Recorder = nil })
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := fmt.Sprintf("GET http://up.test:%s/ HTTP/1.1\r\nHost: up.test:%s\r\n\r\n", port, port)
	b.ReportAllocs()
	for b.Loop() {
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != 1024 || resp.StatusCode != 200 {
			b.Fatalf("got %d, %d bytes", resp.StatusCode, n)
		}
		resp.Body.Close()
	}
}
