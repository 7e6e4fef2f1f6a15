package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

func TestRequestRulesAndRateLimit(t *testing.T) {
	var hits []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.Method+" "+r.URL.Path)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["gh.test:`+port+`"]
  allow_private: ["gh.test"]
  request_allow: ["gh.test GET /repos/acme/**"]
  request_deny: ["gh.test POST /gists"]
  limits: ["gh.test 3/min"]
`, map[string]string{"gh.test": "127.0.0.1"})
	do := func(method, path string) *http.Response {
		req, _ := http.NewRequest(method, "http://gh.test:"+port+path, nil)
		resp, err := f.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp
	}
	if r := do("GET", "/repos/acme/moat"); r.StatusCode != 200 {
		t.Fatalf("control: %d", r.StatusCode)
	}
	if r := do("POST", "/gists"); r.StatusCode != 403 || !strings.Contains(r.Header.Get(ErrorHeader), "network.request_deny[0]") {
		t.Errorf("POST /gists: %d %q; want 403 naming the deny rule", r.StatusCode, r.Header.Get(ErrorHeader))
	}
	if r := do("GET", "/repos/evil/x"); r.StatusCode != 403 || !strings.HasPrefix(r.Header.Get(ErrorHeader), "request-not-allowed") {
		t.Errorf("GET /repos/evil/x: %d %q; want 403 request-not-allowed", r.StatusCode, r.Header.Get(ErrorHeader))
	}
	// The two refused requests were not counted against the rate (they
	// were refused first); two more allowed ones use up 3/min, the fourth
	// is refused with 429.
	do("GET", "/repos/acme/a")
	do("GET", "/repos/acme/b")
	r := do("GET", "/repos/acme/c")
	if r.StatusCode != 429 || !strings.Contains(r.Header.Get(ErrorHeader), "network.limits[0]") {
		t.Errorf("fourth request in a minute: %d %q; want 429 naming the limit", r.StatusCode, r.Header.Get(ErrorHeader))
	}
	if want := "GET /repos/acme/moat,GET /repos/acme/a,GET /repos/acme/b"; strings.Join(hits, ",") != want {
		t.Errorf("upstream saw %q; want %q", strings.Join(hits, ","), want)
	}
	f.rec.find(t, func(r audit.Record) bool { return r.Status == 429 && r.Decision == "deny" })
}

func TestByteBudgetEndsTunnel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	f := newFixture(t, `version: 1
network:
  allow: ["sink.test:`+port+`"]
  allow_private: ["sink.test"]
  limits: ["sink.test 64k out"]
`, map[string]string{"sink.test": "127.0.0.1"})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT sink.test:%s HTTP/1.1\r\n\r\n", port)
	if resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	chunk := make([]byte, 16<<10)
	var sent int64
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 64; i++ { // 1 MiB offered
		n, err := c.Write(chunk)
		sent += int64(n)
		if err != nil {
			break
		}
	}
	c.Close()
	select {
	case n := <-received:
		if n > 64<<10 {
			t.Errorf("upstream received %d bytes; the budget is 65536", n)
		}
		if n == 0 {
			t.Errorf("upstream received nothing: the control part of the budget did not pass")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel did not end")
	}
	// A new tunnel to the same host is refused while the budget is spent.
	code, hdr := rawConnect(t, f.addr, "sink.test:"+port, "")
	if code != 429 || !strings.Contains(hdr, "network.limits[0]") {
		t.Errorf("CONNECT after the budget: %d %q; want 429", code, hdr)
	}
}
