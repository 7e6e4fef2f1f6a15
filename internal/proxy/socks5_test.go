package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
	xproxy "golang.org/x/net/proxy"
)

func socksConnectMsg(host string, port uint16) []byte {
	b := []byte{socksVersion, cmdConnect, 0, atypDomain, byte(len(host))}
	b = append(b, host...)
	return binary.BigEndian.AppendUint16(b, port)
}

func TestSOCKS5(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via socks") }))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"})

	// The control: a real SOCKS5 client, names resolved by the proxy.
	d, err := xproxy.SOCKS5("tcp", f.addr, nil, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{Dial: d.Dial}}
	resp, err := c.Get("http://up.test:" + port + "/")
	if err != nil {
		t.Fatalf("GET through SOCKS5: %v", err)
	}
	if body := readBody(t, resp); body != "via socks" {
		t.Fatalf("body %q", body)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Proto == "socks5" && r.Event == "open" })
	if r.Decision != "allow" || r.Host != "up.test" || r.Addr != "127.0.0.1:"+port {
		t.Errorf("socks record %+v", r)
	}

	// A refused name: reply 0x02, and no lookup.
	before := f.lookups.Load()
	if _, err := d.Dial("tcp", "evil.test:443"); err == nil {
		t.Fatal("SOCKS5 CONNECT to evil.test succeeded")
	}
	if n := f.lookups.Load() - before; n != 0 {
		t.Errorf("refused name looked up %d times", n)
	}
	f.rec.find(t, func(r audit.Record) bool {
		return r.Proto == "socks5" && r.Host == "evil.test" && r.Decision == "deny" && r.Status == repNotAllowed
	})

	// BIND and UDP ASSOCIATE are not served.
	for _, cmd := range []byte{cmdBind, cmdUDP} {
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte{socksVersion, 1, authNone})
		var m [2]byte
		io.ReadFull(conn, m[:])
		msg := socksConnectMsg("up.test", 53)
		msg[1] = cmd
		conn.Write(msg)
		var rep [10]byte
		if _, err := io.ReadFull(conn, rep[:]); err != nil {
			t.Fatalf("cmd %d: no reply: %v", cmd, err)
		}
		if rep[1] != repCmdUnsupp {
			t.Errorf("cmd %d: reply %d; want %d (command not supported)", cmd, rep[1], repCmdUnsupp)
		}
		conn.Close()
	}
}

func TestSOCKS5Auth(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	port := portOf(t, up.URL)
	f := newFixture(t, `version: 1
network:
  allow: ["up.test:`+port+`"]
  allow_private: ["up.test"]
`, map[string]string{"up.test": "127.0.0.1"}, func(s *Server) { s.Sessions = map[string]string{"s1": "0123456789abcdef-token"} })
	bad, _ := xproxy.SOCKS5("tcp", f.addr, &xproxy.Auth{User: "s1", Password: "wrong-token-xxxxxxxx"}, xproxy.Direct)
	if _, err := bad.Dial("tcp", "up.test:"+port); err == nil {
		t.Fatal("a wrong token was accepted")
	}
	good, _ := xproxy.SOCKS5("tcp", f.addr, &xproxy.Auth{User: "s1", Password: "0123456789abcdef-token"}, xproxy.Direct)
	c, err := good.Dial("tcp", "up.test:"+port)
	if err != nil {
		t.Fatalf("the right token: %v", err)
	}
	c.Close()
	r := f.rec.find(t, func(r audit.Record) bool { return r.Proto == "socks5" && r.Event == "open" })
	if r.Session != "s1" {
		t.Errorf("session %q; want s1", r.Session)
	}
}

var socksRequestSeeds = [][]byte{
	socksConnectMsg("example.com", 443),
	{5, 1, 0, 1, 127, 0, 0, 1, 0, 80},
	{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 187},
	{5, 2, 0, 1, 0, 0, 0, 0, 0, 0},
	{5, 3, 0, 3, 0},
	{5, 1, 0, 9},
	{4, 1, 0, 80},
	{5, 1, 0, 3, 255},
}

func FuzzSOCKSRequest(f *testing.F) {
	for _, s := range socksRequestSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readSOCKSRequest(bytes.NewReader(b))
		if err != nil {
			var se *errSOCKS
			if errors.As(err, &se) && se.rep == repSucceeded {
				t.Fatalf("an error carries the success reply: %v", err)
			}
			return
		}
		if req.cmd != cmdConnect || req.port == 0 || req.host == "" {
			t.Fatalf("accepted %+v from %x", req, b)
		}
		// What was accepted re-encodes to the bytes it came from.
		if b[3] == atypDomain {
			if want := socksConnectMsg(req.host, req.port); !bytes.HasPrefix(b, want) {
				t.Fatalf("re-encoded %x is not a prefix of %x", want, b)
			}
		}
	})
}

func FuzzSOCKSGreeting(f *testing.F) {
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2})
	f.Add([]byte{5, 0})
	f.Add([]byte{1, 3, 'a', 'b', 'c', 2, 'x', 'y'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := readGreeting(bytes.NewReader(b)); err == nil && (len(m) == 0 || len(m) != int(b[1])) {
			t.Fatalf("greeting %x gave methods %x", b, m)
		}
		if u, p, err := readUserPass(bytes.NewReader(b)); err == nil && len(u)+len(p)+3 > len(b) {
			t.Fatalf("user/pass %x gave %q %q, longer than the input", b, u, p)
		}
	})
}
