package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/moatsec/moat/internal/audit"
)

// Permission decisions made inside a sandbox (moat hook claude, run by
// Claude Code under moat run) belong in the run's audit stream, outside the
// agent's reach: a file inside would be the agent's to rewrite. So moat run
// serves a small audit service to the sandbox, on a loopback port its
// forwarder carries out like a reverse endpoint, and tells programs inside
// where it is with MOAT_AUDIT_URL. What arrives is recorded as the
// sandbox's own report: the session is the run's, whatever the record says,
// and only permission records are taken.

const (
	auditService = "moat-audit" // the forwarder's service name
	auditPort    = 3130         // inside the sandbox, on 127.0.0.1
	auditEnv     = "MOAT_AUDIT_URL"
	maxAuditPost = 64 << 10
)

func auditURL() string { return fmt.Sprintf("http://127.0.0.1:%d/v1/records", auditPort) }

// serveSandboxAudit records what the sandbox reports on l.
func serveSandboxAudit(l net.Listener, rec *audit.Writer, session string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/records" {
			http.Error(w, "moat: POST /v1/records", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAuditPost+1))
		if err != nil || len(body) > maxAuditPost {
			http.Error(w, "moat: record too large", http.StatusRequestEntityTooLarge)
			return
		}
		var got audit.Record
		if err := json.Unmarshal(body, &got); err != nil || got.Kind != audit.KindPermission {
			http.Error(w, "moat: want one permission record as JSON", http.StatusBadRequest)
			return
		}
		rec.Record(audit.Record{
			Kind: audit.KindPermission, Session: session, Client: "sandbox",
			Decision: got.Decision, Rule: got.Rule, Reason: got.Reason, Detail: got.Detail,
		})
		w.WriteHeader(http.StatusNoContent)
	})
	(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}).Serve(l)
}

// sandboxAuditWriter returns a writer that posts each record line to the
// run's audit service, when MOAT_AUDIT_URL names one.
func sandboxAuditWriter(getenv func(string) string) *audit.Writer {
	u := getenv(auditEnv)
	if u == "" {
		return nil
	}
	return audit.NewStreamWriter(&postWriter{url: u})
}

// postWriter sends each Write (one whole record line) as one POST.
type postWriter struct{ url string }

func (p *postWriter) Write(line []byte) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Post(p.url, "application/json", bytes.NewReader(bytes.TrimSpace(line)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "moat: audit: %v\n", err)
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("audit service: %s", resp.Status)
	}
	return len(line), nil
}
