package credentials

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sdkVersion is the @anthropic-ai/sdk the reverse-endpoint tests run.
const sdkVersion = "1.14.0"

var (
	sdkOnce sync.Once
	sdkDir  string // node_modules/@anthropic-ai/sdk
	sdkErr  error
)

// anthropicSDK installs the SDK once per run into the user's cache
// directory, and returns the package directory.
func anthropicSDK(t *testing.T) string {
	t.Helper()
	need(t, "node", "npm")
	sdkOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			sdkErr = err
			return
		}
		prefix := filepath.Join(cache, "moat-test", "node")
		sdkDir = filepath.Join(prefix, "node_modules", "@anthropic-ai", "sdk")
		var pkg struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(sdkDir, "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil && pkg.Version == sdkVersion {
			return
		}
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			sdkErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, "@anthropic-ai/sdk@"+sdkVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			sdkErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if sdkErr != nil {
		unavailable(t, "npm install @anthropic-ai/sdk@%s: %v", sdkVersion, sdkErr)
	}
	return sdkDir
}

// messagesAPI is a stand-in for api.anthropic.com: it requires the real key
// in x-api-key and answers POST /v1/messages by the request's model:
//
//	moat-stream      a Messages stream held at a gate after its first events
//	moat-abort       the first events, then waits for the request to be cancelled
//	moat-overloaded  529 overloaded_error
type messagesAPI struct {
	gate       chan struct{} // closed by the test: send the rest of the stream
	gateWaited atomic.Bool   // the gate timed out: the rest was sent anyway
	cancelled  chan struct{} // closed when a moat-abort request was cancelled
	overloaded atomic.Int64  // moat-overloaded requests seen
}

func newMessagesAPI() *messagesAPI {
	return &messagesAPI{gate: make(chan struct{}), cancelled: make(chan struct{})}
}

func (a *messagesAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		apiError(w, 404, "not_found_error", "no such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}
	if r.Header.Get("X-Api-Key") != canary {
		apiError(w, 401, "authentication_error", "invalid x-api-key")
		return
	}
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream {
		apiError(w, 400, "invalid_request_error", "want a streaming request")
		return
	}
	if req.Model == "moat-overloaded" {
		a.overloaded.Add(1)
		w.Header().Set("Request-Id", "req_moat_overloaded")
		w.Header().Set("X-Should-Retry", "false")
		apiError(w, 529, "overloaded_error", "Overloaded")
		return
	}
	// A server that reflects the key it was sent: the agent must get the
	// placeholder back, not the key.
	w.Header().Set("X-Echo-Api-Key", r.Header.Get("X-Api-Key"))
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	send := func(event, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		w.(http.Flusher).Flush()
	}
	send("message_start", `{"type":"message_start","message":{"id":"msg_moat","type":"message","role":"assistant","content":[],"model":"`+req.Model+`","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}`)
	send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	send("ping", `{"type":"ping"}`)
	send("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`)
	switch req.Model {
	case "moat-abort":
		select {
		case <-r.Context().Done():
			close(a.cancelled)
		case <-time.After(20 * time.Second):
		}
		return
	case "moat-stream":
		select {
		case <-a.gate:
		case <-time.After(15 * time.Second):
			a.gateWaited.Store(true)
		}
	}
	send("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" from moat"}}`)
	send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	send("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}`)
	send("message_stop", `{"type":"message_stop"}`)
}

func apiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, typ, msg)
}

// sdkScene is moat with a reverse endpoint in front of a messagesAPI.
type sdkScene struct {
	m   *moatProc
	api *messagesAPI
	up  *upstream
	sdk string
	env []string
}

func newSDKScene(t *testing.T) *sdkScene {
	sdk := anthropicSDK(t)
	s := &sdkScene{api: newMessagesAPI(), sdk: sdk}
	s.up = newUpstream(t, false, s.api)
	s.m = startMoat(t, moatOpts{
		policy: fmt.Sprintf(`version: 1
network:
  allow_private: ["localhost"]
credentials:
  - name: anthropic
    hosts: [%q]
    header: "x-api-key: {secret}"
    env: MOAT_TEST_KEY
    placeholder: ANTHROPIC_API_KEY
`, s.up.At("localhost")),
		endpoints:  []string{"anthropic=https://" + s.up.At("localhost")},
		upstreamCA: true,
	})
	ep := s.m.Endpoints["anthropic"]
	if ep == "" {
		t.Fatalf("moat printed no endpoint line for anthropic:\n%s", s.m.Stderr())
	}
	s.env = s.m.AgentEnv("ANTHROPIC_BASE_URL=" + ep)
	return s
}

// node runs the SDK client in mode; it returns its output lines as they
// come, and a function that waits for the exit and returns everything.
func (s *sdkScene) node(t *testing.T, mode string) (<-chan string, func() (string, error)) {
	t.Helper()
	script, err := filepath.Abs("testdata/sdk-client.js")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	cmd := exec.CommandContext(ctx, "node", script, s.sdk, mode)
	cmd.Env, cmd.Dir = s.env, t.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	lines := make(chan string, 64)
	var all strings.Builder
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			lines <- sc.Text()
		}
	}()
	t.Cleanup(cancel)
	return lines, func() (string, error) {
		go func() {
			for range lines { // drain what the test did not read
			}
		}()
		<-read
		err := cmd.Wait()
		cancel()
		noCanary(t, "node's standard output", all.String())
		noCanary(t, "node's standard error", stderr.String())
		if err != nil {
			err = fmt.Errorf("%v\nstdout:\n%sstderr:\n%s", err, redact(all.String()), redact(stderr.String()))
		}
		return redact(all.String()), err
	}
}

// TestSDKStreamsThroughEndpoint: the official SDK, holding only a
// placeholder, streams a message through moat's reverse endpoint; moat adds
// the key, and the stream arrives event by event.
//
// Attack: a server that reflects the key it was sent (x-echo-api-key).
// Control: the upstream received the real key, and the SDK the whole text.
// Signature: the SDK printed the first event while the upstream still held
// the rest back (only an unbuffered proxy allows that), and the reflected
// header came back as the placeholder (only re-masking writes it there).
func TestSDKStreamsThroughEndpoint(t *testing.T) {
	s := newSDKScene(t)
	placeholder := s.m.Placeholder("ANTHROPIC_API_KEY")
	lines, wait := s.node(t, "stream")

	var first string
	select {
	case first = <-lines:
		for strings.HasPrefix(first, "header ") {
			first = <-lines
		}
	case <-time.After(12 * time.Second):
	}
	if first != "event message_start" {
		close(s.api.gate)
		out, err := wait()
		t.Fatalf("the SDK printed %q while the upstream held the stream after its first events; want \"event message_start\" (moat buffered the stream?)\nerr: %v\noutput:\n%s", first, err, out)
	}
	if s.api.gateWaited.Load() {
		t.Fatalf("the upstream's gate timed out before the SDK saw the first event")
	}
	close(s.api.gate)
	out, err := wait()
	if err != nil {
		t.Fatalf("node: %v", err)
	}

	// The control: the upstream got the key, and the SDK everything.
	if got := s.up.Last(t).Header.Get("X-Api-Key"); got != canary {
		t.Errorf("upstream got x-api-key %q; want the secret moat holds", got)
	}
	want := strings.Join([]string{
		"header x-echo-api-key=" + placeholder,
		"event message_start",
		"event content_block_start",
		`event content_block_delta "Hello"`,
		`event content_block_delta " from moat"`,
		"event content_block_stop",
		"event message_delta",
		"event message_stop",
		`text "Hello from moat"`,
		"done",
	}, "\n") + "\n"
	if out != want {
		t.Errorf("SDK output:\n%s\nwant:\n%s", out, want)
	}
	r := s.m.WaitRecord(0, "the streamed request", func(r record) bool { return r.Proto == "reverse" && r.Path == "/v1/messages" })
	if r.Credential != "anthropic" || r.Status != 200 || r.Decision != "allow" {
		t.Errorf("audit record: credential %q, status %d, decision %q; want anthropic, 200, allow", r.Credential, r.Status, r.Decision)
	}
}

// TestSDKAbortCancelsUpstream: the SDK aborts a stream after its first
// event (AbortController); moat must cancel the upstream request, not keep
// it running (and billing) after the agent gave up.
//
// Control: the upstream got the request with the key and sent the first
// events; TestSDKStreamsThroughEndpoint runs the same stream to its end.
// Signature: the upstream handler's request context is cancelled, which
// happens only when moat ends the upstream request.
func TestSDKAbortCancelsUpstream(t *testing.T) {
	s := newSDKScene(t)
	_, wait := s.node(t, "abort")
	out, err := wait()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if !strings.HasPrefix(out, "event message_start\n") || !strings.Contains(out, "ended aborted=true") {
		t.Fatalf("SDK output:\n%swant the first event, then the stream ended by the abort", out)
	}
	if got := s.up.Last(t).Header.Get("X-Api-Key"); got != canary {
		t.Errorf("upstream got x-api-key %q; want the secret moat holds", got)
	}
	select {
	case <-s.api.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatalf("the upstream request was still running 5 s after the SDK aborted; moat did not cancel it")
	}
}

// TestSDKOverloadedError: an upstream 529 reaches the SDK unchanged, as
// its own OverloadedError with status 529, not as a proxy error.
//
// Control: the upstream saw exactly one request, with the key (the error is
// the upstream's, not moat's refusal). Signature: the SDK's error carries
// the upstream's request-id and no X-Moat-Error header.
func TestSDKOverloadedError(t *testing.T) {
	s := newSDKScene(t)
	_, wait := s.node(t, "overloaded")
	out, err := wait()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	want := "error OverloadedError status=529 type=overloaded_error overloaded=true api=true request-id=req_moat_overloaded x-moat-error=null\ndone\n"
	if out != want {
		t.Errorf("SDK output:\n%swant:\n%s", out, want)
	}
	if n := s.api.overloaded.Load(); n != 1 {
		t.Errorf("upstream saw %d overloaded requests; want 1", n)
	}
	if got := s.up.Last(t).Header.Get("X-Api-Key"); got != canary {
		t.Errorf("upstream got x-api-key %q; want the secret moat holds", got)
	}
	r := s.m.WaitRecord(0, "the 529", func(r record) bool { return r.Proto == "reverse" && r.Status == 529 })
	if r.Credential != "anthropic" {
		t.Errorf("audit record for the 529 names credential %q; want anthropic", r.Credential)
	}
}
