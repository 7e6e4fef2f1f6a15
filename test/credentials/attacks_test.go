package credentials

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
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
	"time"
)

// attackScene is one moat in front of four upstreams:
//
//	api     localhost:P     TLS, terminated; the credential svc's host
//	other   127.0.0.1:P     TLS, terminated, allowed; no credential of its own
//	opaque  localhost:P     TLS, allowed, listed in svc's hosts but not terminated
//	plain   localhost:P     plain HTTP; the credential plainsvc's host
//
// and reverse endpoints "other" and "api" for those two. Every upstream echoes the
// credentials it was sent.
type attackScene struct {
	m                         *moatProc
	api, other, opaque, plain *upstream
	bundle                    *x509.CertPool // the agent's trust: the system's roots and moat's CA
	ph, plainPH               string         // the placeholders of svc and plainsvc
}

func newAttackScene(t *testing.T) *attackScene {
	s := &attackScene{}
	echoH := http.HandlerFunc(echo)
	apiMux := http.NewServeMux()
	apiMux.Handle("/echo", echoH)
	apiMux.HandleFunc("/echo-gzip", echoGzip)
	apiMux.HandleFunc("/echo-split", echoSplit)
	apiMux.HandleFunc("/echo-br", func(w http.ResponseWriter, r *http.Request) {
		// Labelled brotli, which moat cannot decode; the secret is in it
		// literally, so only a refusal keeps it from the agent.
		w.Header().Set("Content-Encoding", "br")
		fmt.Fprintf(w, "authorization=%s\n", r.Header.Get("Authorization"))
	})
	apiMux.HandleFunc("/echo-gzip-listed", func(w http.ResponseWriter, r *http.Request) {
		// Two Content-Encoding lines, "identity" then "gzip": a client that
		// reads the whole list decodes gzip (curl --compressed does, and
		// prints the plain text).
		w.Header()["Content-Encoding"] = []string{"identity", "gzip"}
		zw := gzip.NewWriter(w)
		fmt.Fprintf(zw, "authorization=%s\n", r.Header.Get("Authorization"))
		zw.Close()
	})
	s.api = newUpstream(t, false, apiMux)
	s.other = newUpstream(t, false, echoH)
	s.opaque = newUpstream(t, false, echoH)
	s.plain = newUpstream(t, true, echoH)
	api, other, opaque, plain := s.api.At("localhost"), s.other.At("127.0.0.1"), s.opaque.At("localhost"), s.plain.At("localhost")
	s.m = startMoat(t, moatOpts{
		policy: fmt.Sprintf(`version: 1
network:
  allow: [%q, %q, %q, %q]
  allow_private: ["localhost", "127.0.0.1"]
credentials:
  - name: svc
    hosts: [%q, %q]
    header: "Authorization: Bearer {secret}"
    env: MOAT_TEST_KEY
    placeholder: SVC_TOKEN
  - name: plainsvc
    hosts: [%q]
    header: "x-api-key: {secret}"
    env: MOAT_TEST_KEY
    placeholder: PLAIN_TOKEN
tls:
  intercept: [%q, %q]
  ca: {CA}
`, api, other, opaque, plain, api, opaque, plain, api, other),
		endpoints:  []string{"other=https://" + other, "api=https://" + api},
		upstreamCA: true,
	})
	pem, err := os.ReadFile(s.m.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	s.bundle = x509.NewCertPool()
	if !s.bundle.AppendCertsFromPEM(pem) {
		t.Fatal("moat ca bundle wrote no certificate")
	}
	s.ph, s.plainPH = s.m.Placeholder("SVC_TOKEN"), s.m.Placeholder("PLAIN_TOKEN")
	s.m.AgentEnv() // searched for the secret
	return s
}

// echoGzip reflects the Authorization header in a gzip-encoded body,
// whether or not the client asked for one.
func echoGzip(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Encoding", "gzip")
	zw := gzip.NewWriter(w)
	fmt.Fprintf(zw, "authorization=%s\n", r.Header.Get("Authorization"))
	zw.Close()
}

// echoSplit reflects the Authorization header in two flushed writes that
// split the secret in the middle, as a stream would.
func echoSplit(w http.ResponseWriter, r *http.Request) {
	v := "authorization=" + r.Header.Get("Authorization") + "\n"
	i := strings.Index(v, canary) + len(canary)/2
	if i < len(canary)/2 {
		i = len(v) / 2
	}
	io.WriteString(w, v[:i])
	w.(http.Flusher).Flush()
	time.Sleep(50 * time.Millisecond)
	io.WriteString(w, v[i:])
}

// tunnel returns a transport whose every connection is a CONNECT to target
// through moat, then TLS with server name sni (by default target's host; an
// address is verified but not sent), trusting roots, offering HTTP/2 when
// h2 is set. With roots nil the client accepts any certificate, as an
// attacker's client would: then a failed handshake is moat's refusal.
func (s *attackScene) tunnel(target, sni string, roots *x509.CertPool, h2 bool) *http.Transport {
	if sni == "" {
		sni, _, _ = net.SplitHostPort(target)
	}
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &http.Transport{
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := connectThrough(ctx, s.m.Proxy, target)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: roots, InsecureSkipVerify: roots == nil, NextProtos: protos})
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
	}
}

// connectThrough opens a CONNECT tunnel to target through proxy.
func connectThrough(ctx context.Context, proxy, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %w", target, err)
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s (%s)", target, resp.Status, resp.Header.Get("X-Moat-Error"))
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: bytes after the response", target)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// forward returns a transport that sends plain http:// requests to moat as
// a forward proxy.
func (s *attackScene) forward() *http.Transport {
	return &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: s.m.Proxy}), DisableKeepAlives: true}
}

// absoluteHTTPS sends "GET https://… HTTP/1.1" to moat itself, asking it to
// make the TLS connection (absolute-form https, which moat serves).
func (s *attackScene) absoluteHTTPS(t *testing.T, rawURL string, hdr http.Header) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.m.Proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	u, _ := url.Parse(rawURL)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", rawURL, u.Host)
	hdr.Write(&b)
	b.WriteString("\r\n")
	io.WriteString(c, b.String())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s through moat: %v", rawURL, err)
	}
	return resp
}

// do sends req with rt and returns the response with its body read.
func do(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp, readBody(t, resp)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read the response: %v", err)
	}
	noCanary(t, "a response body the agent read", string(b))
	var h strings.Builder
	resp.Header.Write(&h)
	noCanary(t, "response headers the agent read", h.String())
	return redact(string(b))
}

func get(rawURL string, hdr ...string) *http.Request {
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// TestPlaceholderToOtherHostRefused: a prompt-injected agent sends its
// placeholder to a host the credential does not belong to, by every way
// moat sees requests. moat must refuse it, and no byte of it may reach
// that host.
//
// Control: the same request without the placeholder reaches the host (200,
// counted there, no credential added); the placeholder sent to its own host
// is swapped for the secret. Signature: 403 with X-Moat-Error
// credential-exfiltration (or credential-plaintext, for the credential's
// own host over plain http), an audit record with that rule (and, for
// exfiltration, detail "attempted exfiltration"), and the host's request
// count unchanged.
func TestPlaceholderToOtherHostRefused(t *testing.T) {
	s := newAttackScene(t)
	other, plain := s.other.At("127.0.0.1"), s.plain.At("localhost")
	auth := "Bearer " + s.ph

	// The placeholder to its own host is welcome, and becomes the secret.
	resp, body := do(t, s.tunnel(s.api.At("localhost"), "localhost", s.bundle, false), get("https://"+s.api.At("localhost")+"/echo", "Authorization", auth))
	if resp.StatusCode != 200 || s.api.Last(t).Header.Get("Authorization") != "Bearer "+canary {
		t.Fatalf("the placeholder to its own host: %s, upstream got %q; want 200 and the secret", resp.Status, s.api.Last(t).Header.Get("Authorization"))
	}
	if !strings.Contains(body, "authorization="+auth+"\n") {
		t.Errorf("the reflected secret was not re-masked to the placeholder:\n%s", body)
	}

	for _, tt := range []struct {
		name   string
		up     *upstream
		port   int
		proto  string                                                   // the audit record's proto
		rule   string                                                   // the refusal's rule
		detail string                                                   // the audit record's detail
		send   func(t *testing.T, withPH bool) (*http.Response, string) // the request, with or without the placeholder
	}{
		{"terminated tunnel, header", s.other, s.other.Port, "mitm", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			req := get("https://" + other + "/echo")
			if withPH {
				req.Header.Set("Authorization", auth)
			}
			return do(t, s.tunnel(other, "", s.bundle, false), req)
		}},
		{"terminated tunnel, HTTP/2, custom header", s.other, s.other.Port, "mitm", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			req := get("https://" + other + "/echo")
			if withPH {
				req.Header.Set("X-Notes", "token was "+s.ph)
			}
			resp, body := do(t, s.tunnel(other, "", s.bundle, true), req)
			if resp.ProtoMajor != 2 {
				t.Errorf("the terminated tunnel spoke %s; want HTTP/2", resp.Proto)
			}
			return resp, body
		}},
		{"terminated tunnel, query", s.other, s.other.Port, "mitm", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			q := "q=1"
			if withPH {
				q = "key=" + s.ph
			}
			return do(t, s.tunnel(other, "", s.bundle, false), get("https://"+other+"/echo?"+q))
		}},
		{"absolute-form https", s.other, s.other.Port, "http", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			h := http.Header{}
			if withPH {
				h.Set("Authorization", auth)
			}
			resp := s.absoluteHTTPS(t, "https://"+other+"/echo", h)
			return resp, readBody(t, resp)
		}},
		{"plain http", s.plain, s.plain.Port, "http", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			req := get("http://" + plain + "/echo")
			if withPH {
				req.Header.Set("Authorization", auth)
			}
			return do(t, s.forward(), req)
		}},
		{"plain http to the credential's own host", s.plain, s.plain.Port, "http", "credential-plaintext", "", func(t *testing.T, withPH bool) (*http.Response, string) {
			req := get("http://" + plain + "/echo")
			if withPH {
				req.Header.Set("X-Api-Key", s.plainPH)
			}
			return do(t, s.forward(), req)
		}},
		{"reverse endpoint", s.other, s.other.Port, "reverse", "credential-exfiltration", "attempted exfiltration", func(t *testing.T, withPH bool) (*http.Response, string) {
			req := get(s.m.Endpoints["other"] + "/echo")
			if withPH {
				req.Header.Set("Authorization", auth)
			}
			return do(t, &http.Transport{DisableKeepAlives: true}, req)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The control: without the placeholder the host is reachable and
			// gets no credential.
			n := len(tt.up.Seen())
			resp, body := tt.send(t, false)
			if resp.StatusCode != 200 || len(tt.up.Seen()) != n+1 {
				t.Fatalf("control without the placeholder: %s, %d requests arrived; want 200 and 1\n%s", resp.Status, len(tt.up.Seen())-n, body)
			}
			if h := tt.up.Last(t).Header; h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
				t.Errorf("a host that is not the credential's (or plain http) got Authorization %q, x-api-key %q", h.Get("Authorization"), h.Get("X-Api-Key"))
			}

			n, mark := len(tt.up.Seen()), s.m.Mark()
			resp, body = tt.send(t, true)
			if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get("X-Moat-Error"), tt.rule+";") {
				t.Errorf("with the placeholder: %s, X-Moat-Error %q; want 403 and %s\n%s", resp.Status, resp.Header.Get("X-Moat-Error"), tt.rule, body)
			}
			if got := len(tt.up.Seen()) - n; got != 0 {
				t.Errorf("%d requests carrying the placeholder reached the host; want none", got)
			}
			r := s.m.WaitRecord(mark, tt.rule+" for "+tt.name, func(r record) bool {
				return r.Rule == tt.rule && r.Port == tt.port && r.Proto == tt.proto
			})
			if r.Decision != "deny" || r.Status != 403 || r.Detail != tt.detail {
				t.Errorf("audit record: decision %q, status %d, detail %q; want deny, 403, %q", r.Decision, r.Status, r.Detail, tt.detail)
			}
			if r.Credential != "" {
				t.Errorf("the refused request's audit record names credential %q; none was added", r.Credential)
			}
		})
	}
}

// TestHostMismatchInsideTunnel: the agent opens a terminated tunnel to a
// host with no credential, and inside it names the credential's host in
// Host (HTTP/2 :authority), hoping moat keys its injection on the header
// (the mitmproxy sandboxes that used pretty_host did). moat must answer 421
// and send nothing anywhere.
//
// Control: the same tunnel with its own Host gets 200 and no credential.
// Signature: 421 with X-Moat-Error host-mismatch, an audit record, and no
// request at either upstream.
func TestHostMismatchInsideTunnel(t *testing.T) {
	s := newAttackScene(t)
	other, api := s.other.At("127.0.0.1"), s.api.At("localhost")
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			rt := s.tunnel(other, "", s.bundle, h2)
			resp, _ := do(t, rt, get("https://"+other+"/echo"))
			if resp.StatusCode != 200 || s.other.Last(t).Header.Get("Authorization") != "" {
				t.Fatalf("control: %s, Authorization %q at the host; want 200 and none", resp.Status, s.other.Last(t).Header.Get("Authorization"))
			}
			if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
				t.Errorf("the terminated tunnel spoke %s; want HTTP/%d", resp.Proto, want)
			}

			nOther, nAPI, mark := len(s.other.Seen()), len(s.api.Seen()), s.m.Mark()
			req := get("https://" + other + "/echo")
			req.Host = api
			resp, body := do(t, rt, req)
			if resp.StatusCode != 421 || !strings.HasPrefix(resp.Header.Get("X-Moat-Error"), "host-mismatch;") {
				t.Errorf("Host %s inside a tunnel to %s: %s, X-Moat-Error %q; want 421 host-mismatch\n%s", api, other, resp.Status, resp.Header.Get("X-Moat-Error"), body)
			}
			if len(s.other.Seen()) != nOther || len(s.api.Seen()) != nAPI {
				t.Errorf("the mismatched request reached an upstream (tunnel's host: %d, Host's host: %d)", len(s.other.Seen())-nOther, len(s.api.Seen())-nAPI)
			}
			r := s.m.WaitRecord(mark, "host-mismatch", func(r record) bool { return r.Rule == "host-mismatch" && r.Port == s.other.Port })
			if r.Status != 421 || r.Decision != "deny" || r.Credential != "" {
				t.Errorf("audit record: status %d, decision %q, credential %q; want 421, deny, none", r.Status, r.Decision, r.Credential)
			}
		})
	}
}

// TestSNIMismatchGetsNoCredential: a TLS server name that differs from the
// tunnel's destination, either way round, must not reach the credential's
// host nor let a request carry the credential elsewhere.
//
// Control: the tunnel to the credential's host with its own name gets the
// secret injected. Signature: the handshake is refused, the audit records
// sni-mismatch with the name, and no upstream saw a request.
func TestSNIMismatchGetsNoCredential(t *testing.T) {
	s := newAttackScene(t)
	api, other := s.api.At("localhost"), s.other.At("127.0.0.1")
	resp, _ := do(t, s.tunnel(api, "localhost", s.bundle, false), get("https://"+api+"/echo"))
	if resp.StatusCode != 200 || s.api.Last(t).Header.Get("Authorization") != "Bearer "+canary {
		t.Fatalf("control: %s; want 200 with the secret injected", resp.Status)
	}

	for _, tt := range []struct{ name, target, sni string }{
		{"tunnel elsewhere, SNI names the credential's host", other, "localhost"},
		{"tunnel to the credential's host, SNI names another", api, "other.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nAPI, nOther, mark := len(s.api.Seen()), len(s.other.Seen()), s.m.Mark()
			// The attacker's client accepts any certificate: only moat can
			// make this handshake fail.
			_, err := s.tunnel(tt.target, tt.sni, nil, false).RoundTrip(get("https://" + tt.target + "/echo"))
			if err == nil {
				t.Errorf("CONNECT %s with server name %q: the request was served; want the handshake refused", tt.target, tt.sni)
			}
			if len(s.api.Seen()) != nAPI || len(s.other.Seen()) != nOther {
				t.Errorf("a request reached an upstream through a mismatched tunnel")
			}
			_, port, _ := net.SplitHostPort(tt.target)
			r := s.m.WaitRecord(mark, "sni-mismatch", func(r record) bool {
				return r.Rule == "sni-mismatch" && fmt.Sprint(r.Port) == port && r.SNI == tt.sni
			})
			if r.Decision != "deny" || r.Credential != "" {
				t.Errorf("audit record: decision %q, credential %q; want deny and none", r.Decision, r.Credential)
			}
		})
	}
}

// TestOpaqueTunnelGetsNoCredential: a host that the credential lists but
// that tls.intercept does not is reached through an opaque tunnel, where
// moat can add nothing. The agent must not get the secret injected there
// by any other means, and its placeholder passes through untouched.
//
// Control: the same credential is injected on a terminated host (the
// scene's api; see TestPlaceholderToOtherHostRefused). Signature: the agent
// verified the upstream's own certificate (not moat's: the tunnel was not
// terminated), and the upstream saw no Authorization, or the placeholder.
func TestOpaqueTunnelGetsNoCredential(t *testing.T) {
	s := newAttackScene(t)
	opaque := s.opaque.At("localhost")
	rt := s.tunnel(opaque, "localhost", upCAPool, false)
	resp, body := do(t, rt, get("https://"+opaque+"/echo"))
	if resp.StatusCode != 200 {
		t.Fatalf("GET through the opaque tunnel: %s\n%s", resp.Status, body)
	}
	if got := s.opaque.Last(t).Header.Get("Authorization"); got != "" {
		t.Errorf("the opaque tunnel's upstream got Authorization %q; want none", got)
	}
	resp, _ = do(t, rt, get("https://"+opaque+"/echo", "Authorization", "Bearer "+s.ph))
	if got := s.opaque.Last(t).Header.Get("Authorization"); resp.StatusCode != 200 || got != "Bearer "+s.ph {
		t.Errorf("the placeholder through the opaque tunnel: %s, upstream got %q; want 200 and the placeholder, untouched", resp.Status, got)
	}
	// moat's certificate is refused by an agent that trusts only the
	// upstream's CA, so the handshake above proves the tunnel is opaque;
	// the audit says so too.
	r := s.m.WaitRecord(0, "the opaque tunnel", func(r record) bool {
		return r.Kind == "connect" && r.Port == s.opaque.Port && r.Event == "close"
	})
	if r.Detail == "tls terminated" || r.Credential != "" {
		t.Errorf("audit record of the opaque tunnel: detail %q, credential %q; want neither", r.Detail, r.Credential)
	}
}

// TestCABundleCommand: the agent gets moat's CA certificate in a bundle and
// never its key, with the command written as its usage line documents it,
// `moat ca bundle FILE [--dir DIR]`.
//
// Control: the key exists beside the certificate, mode 0600. Signature: the
// bundle holds the CA certificate `moat ca show` prints, after the system's
// roots, and no private key.
func TestCABundleCommand(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "ca")
	if out, err := moatCmd(t, state, "ca", "init", "--dir", dir); err != nil {
		t.Fatalf("moat ca init: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v, mode %v; want a 0600 file", err, fi.Mode().Perm())
	}
	show, err := moatCmd(t, state, "ca", "show", "--dir", dir)
	if err != nil {
		t.Fatalf("moat ca show: %v\n%s", err, show)
	}
	certPEM := show[strings.Index(show, "-----BEGIN CERTIFICATE-----"):]

	for _, args := range [][]string{
		{"ca", "bundle", "FILE", "--dir", dir}, // as the usage line has it
		{"ca", "bundle", "--dir", dir, "FILE"},
	} {
		t.Run(map[bool]string{true: "FILE first", false: "--dir first"}[args[2] == "FILE"], func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "bundle.pem")
			for i, a := range args {
				if a == "FILE" {
					args[i] = f
				}
			}
			out, err := moatCmd(t, state, args...)
			if err != nil {
				t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(b), certPEM) {
				t.Errorf("the bundle does not end with the CA certificate moat ca show prints")
			}
			if strings.Count(string(b), "BEGIN CERTIFICATE") < 2 {
				t.Errorf("the bundle holds %d certificates; want the system's roots too", strings.Count(string(b), "BEGIN CERTIFICATE"))
			}
			if strings.Contains(string(b), "PRIVATE KEY") {
				t.Errorf("the bundle given to the agent holds a private key")
			}
		})
	}
}

// decodeAll undoes the content codings listed (in all the header's lines,
// applied in order, so undone last first), as a client that reads the
// whole list does. Codings it does not know are left as they are.
func decodeAll(t *testing.T, codings []string, b []byte) []byte {
	t.Helper()
	var list []string
	for _, v := range codings {
		for _, c := range strings.Split(v, ",") {
			list = append(list, strings.ToLower(strings.TrimSpace(c)))
		}
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i] != "gzip" && list[i] != "x-gzip" {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Content-Encoding %q: %v", codings, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatalf("Content-Encoding %q: %v", codings, err)
		}
	}
	return b
}

// TestReflectedSecretReMasked: the credential's own host reflects the
// Authorization header it received (a debugging endpoint, an error message
// that quotes the request). The agent must get the placeholder back, never
// the secret, however the response is framed.
//
// Control: the upstream received the secret each time. Signature: the
// reflection reads "Bearer <placeholder>", which only moat's re-masking
// writes (the agent sent no Authorization at all); a reflection moat cannot
// search is refused with 502 unmaskable-response.
func TestReflectedSecretReMasked(t *testing.T) {
	s := newAttackScene(t)
	api := s.api.At("localhost")
	for _, tt := range []struct {
		name, path string
		refused    bool // moat cannot search the response: it must refuse it
	}{
		{"body", "/echo", false},
		{"secret split across two writes", "/echo-split", false},
		{"gzip body the client did not ask for", "/echo-gzip", false},
		{"gzip body the client asked for", "/echo-gzip?accept", false},
		{"gzip named in a second Content-Encoding line", "/echo-gzip-listed", false},
		{"an encoding moat cannot decode", "/echo-br", true},
	} {
		for _, via := range []string{"terminated tunnel", "reverse endpoint"} {
			t.Run(via+", "+tt.name, func(t *testing.T) {
				var req *http.Request
				rt := &http.Transport{DisableKeepAlives: true}
				if via == "reverse endpoint" {
					req = get(s.m.Endpoints["api"] + tt.path)
				} else {
					req = get("https://" + api + tt.path)
					rt = s.tunnel(api, "localhost", s.bundle, false)
				}
				if strings.HasSuffix(tt.path, "?accept") {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				rt.DisableCompression = true // the agent decodes what it gets itself
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("GET %s: %v", tt.path, err)
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				noCanary(t, "the raw response body", string(raw))
				body := decodeAll(t, resp.Header.Values("Content-Encoding"), raw)
				if tt.refused {
					if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("X-Moat-Error"), "unmaskable-response;") {
						t.Errorf("a reflection moat cannot search: %s, X-Moat-Error %q; want 502 unmaskable-response", resp.Status, resp.Header.Get("X-Moat-Error"))
					}
					if got := s.api.Last(t).Header.Get("Authorization"); got != "Bearer "+canary {
						t.Fatalf("upstream got Authorization %q; want the injected secret", got)
					}
					return
				}
				if got := s.api.Last(t).Header.Get("Authorization"); got != "Bearer "+canary {
					t.Fatalf("upstream got Authorization %q; want the injected secret", got)
				}
				noCanary(t, "the response body the agent decoded (Content-Encoding "+resp.Header.Get("Content-Encoding")+")", string(body))
				if want := "authorization=Bearer " + s.ph + "\n"; !strings.HasPrefix(string(body), want) {
					t.Errorf("the agent read %q; want it to begin %q", redact(string(body)), want)
				}
			})
		}
	}
}
