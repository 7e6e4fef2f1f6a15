package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
	xproxy "golang.org/x/net/proxy"
)

func TestCAInitAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, created, err := InitCA(dir)
	if err != nil || !created {
		t.Fatalf("InitCA: %v, created %v", err, created)
	}
	fi, _ := os.Stat(filepath.Join(dir, caKeyFile))
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("key mode %v, dir mode %v; want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	again, created, err := InitCA(dir)
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("second InitCA made a new CA (created %v, err %v)", created, err)
	}
	leaf, err := ca.Leaf("api.test")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: pool}); err != nil {
		t.Errorf("leaf does not verify against the CA: %v", err)
	}
	if d := leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore); d > 25*60*60*1e9 {
		t.Errorf("leaf valid for %v; leaves must be short-lived", d)
	}
	if !strings.Contains(string(ca.Bundle()), string(ca.CertPEM)) {
		t.Error("the bundle lacks the CA certificate")
	}
	os.Chmod(filepath.Join(dir, caKeyFile), 0o644)
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "readable by its owner only") {
		t.Errorf("a world-readable key loaded: %v", err)
	}
}

func TestInterceptInjectsOverHTTP1AndHTTP2(t *testing.T) {
	upCA := newTestCA(t)
	var seen []string
	up := upCA.tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("X-Api-Key"))
		fmt.Fprintf(w, "key=%s proto=%s", r.Header.Get("X-Api-Key"), r.Proto)
	}), "api.test")
	port := portOf(t, up.URL)
	moatCA, _, err := InitCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cred := testCredential(t, "api.test:"+port)
	rule, _ := policy.ParseHostRule("api.test:" + port)
	f := newFixture(t, `version: 1
network:
  allow: ["api.test:`+port+`"]
  allow_private: ["api.test"]
`, map[string]string{"api.test": "127.0.0.1"}, func(s *Server) {
		s.Credentials = []*Credential{cred}
		s.UpstreamTLS = &tls.Config{RootCAs: upCA.pool}
		s.CA = moatCA
		s.Intercept = []policy.HostRule{rule}
	})
	agentRoots := x509.NewCertPool()
	agentRoots.AddCert(moatCA.Cert)

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: f.addr}),
			TLSClientConfig:   &tls.Config{RootCAs: agentRoots},
			ForceAttemptHTTP2: h2,
		}
		req, _ := http.NewRequest("GET", "https://api.test:"+port+"/v1/models", nil)
		req.Header.Set("X-Api-Key", cred.Placeholder)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		body := readBody(t, resp)
		wantProto := "HTTP/1.1"
		if h2 {
			wantProto = "HTTP/2.0"
		}
		if resp.Proto != wantProto {
			t.Errorf("agent side spoke %s; want %s", resp.Proto, wantProto)
		}
		if want := "key=" + cred.Placeholder + " proto=HTTP/1.1"; body != want {
			t.Errorf("h2=%v: body %q; want %q (the key injected upstream, re-masked on the way back)", h2, body, want)
		}
		tr.CloseIdleConnections()
	}
	if len(seen) != 2 || seen[0] != canary || seen[1] != canary {
		t.Fatalf("upstream saw keys %q; want the secret twice", seen)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Proto == "mitm" && r.Status == 200 })
	if r.Credential != "api" || r.Path != "/v1/models" || r.Host != "api.test" {
		t.Errorf("mitm record %+v", r)
	}
	if strings.Contains(f.rec.dump(), canary) {
		t.Error("the secret leaked into the audit")
	}

	// Inside the terminated tunnel, a request for another host is refused.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT api.test:%s HTTP/1.1\r\n\r\n", port)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(&bufConn{Conn: c, r: br}, &tls.Config{ServerName: "api.test", RootCAs: agentRoots})
	fmt.Fprintf(tc, "GET /v1/models HTTP/1.1\r\nHost: evil.test\r\nX-Api-Key: %s\r\n\r\n", cred.Placeholder)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 421 || !strings.HasPrefix(resp.Header.Get(ErrorHeader), "host-mismatch") {
		t.Errorf("Host evil.test inside a tunnel to api.test: %d %q; want 421 host-mismatch", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if len(seen) != 2 {
		t.Errorf("the upstream saw the mismatched request")
	}

	// A client that names another server in its SNI gets no certificate.
	c2, _ := net.Dial("tcp", f.addr)
	defer c2.Close()
	fmt.Fprintf(c2, "CONNECT api.test:%s HTTP/1.1\r\n\r\n", port)
	br2 := bufio.NewReader(c2)
	http.ReadResponse(br2, &http.Request{Method: "CONNECT"})
	err = tls.Client(&bufConn{Conn: c2, r: br2}, &tls.Config{ServerName: "evil.test", RootCAs: agentRoots}).Handshake()
	if err == nil {
		t.Fatal("the proxy completed a handshake for SNI evil.test inside a tunnel to api.test")
	}
	f.rec.find(t, func(r audit.Record) bool { return r.Rule == "sni-mismatch" && r.SNI == "evil.test" })
}

// A SOCKS5 connection to an intercepted host is terminated too: asking
// through SOCKS must not step around credentials and request rules.
func TestInterceptThroughSOCKS5(t *testing.T) {
	upCA := newTestCA(t)
	var seen []string
	up := upCA.tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Api-Key"))
	}), "api.test")
	port := portOf(t, up.URL)
	moatCA, _, err := InitCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cred := testCredential(t, "api.test:"+port)
	rule, _ := policy.ParseHostRule("api.test:" + port)
	f := newFixture(t, `version: 1
network:
  allow: ["api.test:`+port+`"]
  allow_private: ["api.test"]
  request_deny: ["api.test POST /gists"]
`, map[string]string{"api.test": "127.0.0.1"}, func(s *Server) {
		s.Credentials = []*Credential{cred}
		s.UpstreamTLS = &tls.Config{RootCAs: upCA.pool}
		s.CA = moatCA
		s.Intercept = []policy.HostRule{rule}
	})
	roots := x509.NewCertPool()
	roots.AddCert(moatCA.Cert)
	d, _ := xproxy.SOCKS5("tcp", f.addr, nil, xproxy.Direct)
	c := &http.Client{Transport: &http.Transport{Dial: d.Dial, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Get("https://api.test:" + port + "/v1")
	if err != nil {
		t.Fatalf("GET through SOCKS5 (the certificate must be moat's): %v", err)
	}
	readBody(t, resp)
	resp, err = c.Post("https://api.test:"+port+"/gists", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != 403 {
		t.Errorf("POST /gists through SOCKS5: %d; want 403 by the request rule", resp.StatusCode)
	}
	if len(seen) != 1 || seen[0] != "GET /v1 "+canary {
		t.Errorf("upstream saw %q; want only the GET, with the injected key", seen)
	}
}
