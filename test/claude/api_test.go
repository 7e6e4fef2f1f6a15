package claude_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// messagesAPI stands in for the Anthropic Messages API, over HTTPS with a
// test CA. It refuses any request whose x-api-key is not the canary (the
// real key, which only moat's proxy holds), records every request, and
// answers POST /v1/messages by a script read from the conversation:
//
//   - the last user turn holds a tool_result: a text that quotes it
//     ("tool said: …"), so the test sees what the tool got;
//   - the prompt holds "RUN: CMD" (and no tool ran yet): a Bash tool_use
//     running CMD;
//   - otherwise: the text answer, with a marker the test looks for.
//
// Streaming requests get server-sent events in the Messages API's shape
// (message_start, content_block_*, message_delta, message_stop); others a
// whole message. /v1/messages/count_tokens answers a count.
type messagesAPI struct {
	srv    *httptest.Server
	Port   int
	key    string
	answer string

	mu   sync.Mutex
	reqs []apiRequest
}

type apiRequest struct {
	Method, Path string
	APIKey       string
	Header       http.Header
	Body         string
}

func newMessagesAPI(t *testing.T, ca *testCA, key, answer string) *messagesAPI {
	a := &messagesAPI{key: key, answer: answer}
	a.srv = httptest.NewUnstartedServer(a)
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	a.srv.EnableHTTP2 = true
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	_, p, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	a.Port, _ = strconv.Atoi(p)
	return a
}

// Requests returns what arrived so far.
func (a *messagesAPI) Requests() []apiRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]apiRequest(nil), a.reqs...)
}

// Messages returns the POST /v1/messages requests.
func (a *messagesAPI) Messages() []apiRequest {
	var out []apiRequest
	for _, r := range a.Requests() {
		if r.Method == http.MethodPost && r.Path == "/v1/messages" {
			out = append(out, r)
		}
	}
	return out
}

type msgRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
}

func (a *messagesAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	a.mu.Lock()
	a.reqs = append(a.reqs, apiRequest{Method: r.Method, Path: r.URL.Path, APIKey: r.Header.Get("X-Api-Key"), Header: r.Header.Clone(), Body: string(body)})
	a.mu.Unlock()
	if r.Header.Get("X-Api-Key") != a.key {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"input_tokens":42}`)
		return
	case r.Method != http.MethodPost || r.URL.Path != "/v1/messages":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"type":"error","error":{"type":"not_found_error","message":"not found"}}`)
		return
	}
	var req msgRequest
	if err := json.Unmarshal(body, &req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	text, tool := a.script(req)
	if req.Stream {
		a.stream(w, req.Model, text, tool)
	} else {
		a.whole(w, req.Model, text, tool)
	}
}

// script decides the reply: a text, or a Bash command to run.
func (a *messagesAPI) script(req msgRequest) (text, command string) {
	if len(req.Messages) == 0 {
		return a.answer, ""
	}
	// The last user turn (Claude Code may add a system turn after it).
	last := req.Messages[len(req.Messages)-1]
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = req.Messages[i]
			break
		}
	}
	var blocks []block
	if json.Unmarshal(last.Content, &blocks) != nil {
		var s string
		json.Unmarshal(last.Content, &s)
		blocks = []block{{Type: "text", Text: s}}
	}
	for _, b := range blocks {
		if b.Type == "tool_result" {
			var out string
			if json.Unmarshal(b.Content, &out) != nil {
				var parts []block
				json.Unmarshal(b.Content, &parts)
				for _, p := range parts {
					out += p.Text
				}
			}
			return "tool said: " + strings.Join(strings.Fields(out), " "), ""
		}
	}
	for _, b := range blocks {
		if _, cmd, ok := strings.Cut(b.Text, "RUN: "); ok {
			cmd, _, _ = strings.Cut(cmd, "\n")
			return "", strings.TrimSpace(cmd)
		}
	}
	return a.answer, ""
}

func (a *messagesAPI) message(model string) map[string]any {
	return map[string]any{"id": "msg_moat_test", "type": "message", "role": "assistant", "model": model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 12, "output_tokens": 1}}
}

func (a *messagesAPI) whole(w http.ResponseWriter, model, text, command string) {
	m := a.message(model)
	if command != "" {
		m["content"] = []any{map[string]any{"type": "tool_use", "id": "toolu_moat_1", "name": "Bash", "input": map[string]any{"command": command}}}
		m["stop_reason"] = "tool_use"
	} else {
		m["content"] = []any{map[string]any{"type": "text", "text": text}}
		m["stop_reason"] = "end_turn"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
}

func (a *messagesAPI) stream(w http.ResponseWriter, model, text, command string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	event := func(name string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
		if fl != nil {
			fl.Flush()
		}
	}
	event("message_start", map[string]any{"type": "message_start", "message": a.message(model)})
	stop := "end_turn"
	if command != "" {
		stop = "tool_use"
		input, _ := json.Marshal(map[string]string{"command": command, "description": "run the command"})
		event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "tool_use", "id": "toolu_moat_1", "name": "Bash", "input": map[string]any{}}})
		half := len(input) / 2
		for _, part := range []string{string(input[:half]), string(input[half:])} {
			event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": part}})
		}
	} else {
		event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}})
		event("ping", map[string]any{"type": "ping"})
		// Two deltas, so the client must join a streamed answer.
		half := len(text) / 2
		for _, part := range []string{text[:half], text[half:]} {
			event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "text_delta", "text": part}})
		}
	}
	event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	event("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": 9}})
	event("message_stop", map[string]any{"type": "message_stop"})
}

// testCA is a CA made for one test run and a leaf for localhost and
// 127.0.0.1; File is the CA's PEM, for moat run --upstream-ca.
type testCA struct {
	leaf tls.Certificate
	File string
}

func newTestCA(dir string) (*testCA, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat claude test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	return &testCA{leaf: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, File: file}, nil
}
