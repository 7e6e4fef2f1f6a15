package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

// endpointFixture is a reverse endpoint in front of a TLS upstream that
// requires the canary key.
func endpointFixture(t *testing.T, h http.Handler, creds ...*Credential) (*fixture, string) {
	t.Helper()
	ca := newTestCA(t)
	up := ca.tlsUpstream(t, h, "api.test")
	port := portOf(t, up.URL)
	creds = append([]*Credential{testCredential(t, "api.test:"+port)}, creds...)
	f := newFixture(t, `version: 1
network:
  allow_private: ["api.test"]
`, map[string]string{"api.test": "127.0.0.1"}, func(s *Server) {
		s.Credentials = creds
		s.UpstreamTLS = &tls.Config{RootCAs: ca.pool}
	})
	ep, err := ParseEndpoint("api=https://api.test:" + port)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.ServeEndpoint(l, ep)
	return f, "http://" + l.Addr().String()
}

func TestEndpointStreamsWithCredential(t *testing.T) {
	next := make(chan struct{})
	gone := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != canary {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"bad key"}`)
			return
		}
		if r.URL.Path == "/overloaded" {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(529)
			io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message_start\ndata: {\"key\":\""+r.Header.Get("X-Api-Key")+"\"}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			close(gone)
			return
		}
		io.WriteString(w, "event: message_stop\ndata: {}\n\n")
	})
	f, base := endpointFixture(t, h)
	cred := f.srv.Credentials[0]

	req, _ := http.NewRequest("POST", base+"/v1/messages", strings.NewReader(`{"stream":true}`))
	req.Header.Set("X-Api-Key", cred.Placeholder)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		var ev strings.Builder
		for {
			line, err := br.ReadString('\n')
			ev.WriteString(line)
			if line == "\n" || err != nil {
				break
			}
		}
		first <- ev.String()
	}()
	select {
	case ev := <-first:
		if want := "event: message_start\ndata: {\"key\":\"" + cred.Placeholder + "\"}\n\n"; ev != want {
			t.Errorf("first event %q; want %q (the echoed key re-masked)", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the upstream held the stream open: the endpoint buffers")
	}
	// The client goes away mid-stream: the upstream must see it.
	cancel()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the client did not cancel the upstream request")
	}
	close(next)

	// An upstream error reaches the client unchanged.
	req, _ = http.NewRequest("POST", base+"/overloaded", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != 529 || resp.Header.Get("Retry-After") != "3" || body != `{"type":"error","error":{"type":"overloaded_error"}}` || resp.Header.Get(ErrorHeader) != "" {
		t.Errorf("upstream error: %d %q %q", resp.StatusCode, resp.Header, body)
	}
	r := f.rec.find(t, func(r audit.Record) bool { return r.Proto == "reverse" && r.Status == 529 })
	if r.Credential != "api" || r.Decision != "allow" || r.Path != "/overloaded" || !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Errorf("record %+v", r)
	}
	if strings.Contains(f.rec.dump(), canary) {
		t.Error("the secret leaked into the audit")
	}
}

func TestEndpointStreamsRequestBody(t *testing.T) {
	gotFirst := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		io.ReadFull(r.Body, buf)
		close(gotFirst)
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", string(buf))
		io.WriteString(w, strings.Repeat("x", int(n%7)))
	})
	_, base := endpointFixture(t, h)
	pr, pw := io.Pipe()
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(base+"/upload", "application/octet-stream", pr)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	pw.Write([]byte("first"))
	select {
	case <-gotFirst:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream did not get the body's first bytes while the client was still sending: the endpoint buffers requests")
	}
	pw.Write(make([]byte, 1<<20))
	pw.Close()
	if resp := <-done; resp == nil || resp.Header.Get("X-Got") != "first" {
		t.Errorf("upload response %v", resp)
	}
}

func TestEndpointRefusesForeignPlaceholder(t *testing.T) {
	other := testCredential(t, "github.test")
	other.Name = "github"
	var hit bool
	f, base := endpointFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }), other)
	req, _ := http.NewRequest("GET", base+"/v1/models?token="+other.Placeholder, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get(ErrorHeader), "credential-exfiltration") || hit {
		t.Fatalf("foreign placeholder: %d %q, upstream hit %v; want 403 credential-exfiltration", resp.StatusCode, resp.Header.Get(ErrorHeader), hit)
	}
	f.rec.find(t, func(r audit.Record) bool {
		return r.Rule == "credential-exfiltration" && r.Detail == "attempted exfiltration"
	})
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"anthropic=https://api.anthropic.com": "",
		"a=http://api.example":                `endpoint a: "http://api.example": the upstream must be https:// (credentials never travel in clear text)`,
		"noequals":                            `endpoint "noequals": expected NAME=https://host`,
		"a=https://u:p@h":                     `endpoint a: "https://u:p@h": expected https://host[:port][/base-path]`,
	} {
		_, err := ParseEndpoint(in)
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("ParseEndpoint(%q) = %q; want %q", in, got, want)
			}
		} else if want != "" {
			t.Errorf("ParseEndpoint(%q) succeeded; want %q", in, want)
		}
	}
}
