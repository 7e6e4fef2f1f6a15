package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/policy"
)

// Secret is a credential's value. Every way Go formats or logs a value
// prints "[redacted]"; only the proxy's injection reads the value itself.
type Secret struct{ v string }

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// NewSecret wraps a value; it is for tests and for callers that read a
// secret from somewhere moat does not.
func NewSecret(v string) Secret { return Secret{v} }

// Credential is a secret and where it may go. The agent never holds the
// secret: the proxy adds it to requests bound for Hosts, and the agent
// holds at most Placeholder, a random stand-in that is worthless anywhere
// else.
type Credential struct {
	Name   string
	Hosts  []policy.HostRule
	Header string // "x-api-key: {secret}", "Authorization: Bearer {secret}"
	Basic  string // "user:{secret}": HTTP basic authentication
	Query  string // a query parameter name, for APIs that demand one
	Secret Secret
	// Placeholder is what the agent's environment holds instead of the
	// secret; empty when the credential has none.
	Placeholder string
	Origin      string // the policy entry, for audit records
}

// matches reports whether the credential may go to host:port.
func (c *Credential) matches(host string, port uint16) bool {
	for _, r := range c.Hosts {
		if r.Matches(host, port) {
			return true
		}
	}
	return false
}

func (c *Credential) hostList() string {
	var s []string
	for _, r := range c.Hosts {
		s = append(s, r.String())
	}
	return strings.Join(s, ", ")
}

// secretTimeout bounds a credential command.
const secretTimeout = 10 * time.Second

// ResolveCredentials reads each credential's secret from its source (an
// environment variable of moat's own process, a file, or a command's
// output) and, when it names a placeholder variable, makes a random
// placeholder for this session. Errors name the credential and the source,
// never the value.
func ResolveCredentials(ctx context.Context, cs []policy.Credential, getenv func(string) string) ([]*Credential, error) {
	var out []*Credential
	for _, pc := range cs {
		v, err := readSecret(ctx, pc, getenv)
		if err != nil {
			return nil, fmt.Errorf("credential %q (%s): %w", pc.Name, pc.Origin, err)
		}
		hosts := make([]policy.HostRule, 0, len(pc.Hosts))
		for _, h := range pc.Hosts {
			r, err := policy.ParseHostRule(h.Value)
			if err != nil {
				return nil, fmt.Errorf("credential %q (%s): hosts: %w", pc.Name, h.Origin, err)
			}
			r.Origin = h.Origin
			hosts = append(hosts, r)
		}
		c := &Credential{Name: pc.Name, Hosts: hosts, Header: pc.Header, Basic: pc.Basic, Query: pc.Query,
			Secret: Secret{v}, Origin: pc.Origin.String()}
		if pc.Placeholder != "" {
			c.Placeholder = NewPlaceholder(len(v))
		}
		out = append(out, c)
	}
	return out, nil
}

func readSecret(ctx context.Context, pc policy.Credential, getenv func(string) string) (string, error) {
	var v string
	switch {
	case pc.Env != "":
		v = getenv(pc.Env)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty or unset", pc.Env)
		}
	case pc.File != "":
		b, err := os.ReadFile(pc.File)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		v = strings.TrimRight(string(b), "\r\n")
	case len(pc.Command) > 0:
		ctx, cancel := context.WithTimeout(ctx, secretTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, pc.Command[0], pc.Command[1:]...)
		cmd.Stderr = nil // its stderr may echo the secret: never capture it into an error
		b, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return "", fmt.Errorf("secret command %s exited with status %d", pc.Command[0], ee.ExitCode())
			}
			return "", fmt.Errorf("secret command %s: %w", pc.Command[0], err)
		}
		v = strings.TrimRight(string(b), "\r\n")
	default:
		return "", errors.New("no source: set env, file or command")
	}
	if v == "" {
		return "", errors.New("the secret is empty")
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", errors.New("the secret contains a line break or NUL; it cannot go in a header")
	}
	return v, nil
}

// placeholderPrefix marks placeholders, so a person reading a request or an
// environment can tell one from a real key.
const placeholderPrefix = "moat-placeholder-"

// NewPlaceholder returns a random placeholder of length n when n leaves
// room for the prefix and 16 random characters, so that re-masking a
// secret in a response keeps its Content-Length; otherwise a longer one.
func NewPlaceholder(n int) string {
	m := n - len(placeholderPrefix)
	if m < 32 {
		m = 32
	}
	b := make([]byte, (m+1)/2)
	rand.Read(b)
	return placeholderPrefix + hex.EncodeToString(b)[:m]
}

// ruleExfiltration refuses a placeholder bound for a host its credential
// may not go to; the audit record says "attempted exfiltration".
const ruleExfiltration = "credential-exfiltration"

// credentialFinding is what scanning a request found.
type credentialFinding struct {
	cred  *Credential
	where string // "header x-api-key", "query", "path"
}

// placeholdersIn lists the placeholders a request carries, in headers, the
// query string or the path.
func placeholdersIn(req *http.Request, creds []*Credential) []credentialFinding {
	var found []credentialFinding
	for _, c := range creds {
		if c.Placeholder == "" {
			continue
		}
		for k, vs := range req.Header {
			for _, v := range vs {
				if strings.Contains(v, c.Placeholder) {
					found = append(found, credentialFinding{c, "header " + k})
				}
			}
		}
		if strings.Contains(req.URL.RawQuery, c.Placeholder) {
			found = append(found, credentialFinding{c, "query"})
		}
		if strings.Contains(req.URL.EscapedPath(), c.Placeholder) {
			found = append(found, credentialFinding{c, "path"})
		}
	}
	return found
}

// applyCredentials decides what credentials a request to host:port gets.
// A placeholder bound for another host refuses the request: it is an
// attempt to send a credential where it may not go. tlsUpstream says the
// request travels to the upstream over TLS; a secret is never sent in
// clear text. It returns the credentials applied, or a refusal.
func applyCredentials(req *http.Request, creds []*Credential, host string, port uint16, tlsUpstream bool) ([]*Credential, *refusal) {
	for _, f := range placeholdersIn(req, creds) {
		if !f.cred.matches(host, port) {
			return nil, &refusal{status: 403, host: host, port: port, Decision: policy.Decision{
				Rule: ruleExfiltration,
				Reason: fmt.Sprintf("the request carries the placeholder of credential %q in its %s; that credential may only go to %s",
					f.cred.Name, f.where, f.cred.hostList()),
			}}
		}
		if !tlsUpstream {
			return nil, &refusal{status: 403, host: host, port: port, Decision: policy.Decision{
				Rule:   "credential-plaintext",
				Reason: fmt.Sprintf("credential %q is only sent over TLS; use https://", f.cred.Name),
			}}
		}
	}
	var applied []*Credential
	for _, c := range creds {
		if !c.matches(host, port) || !tlsUpstream {
			continue
		}
		c.apply(req)
		applied = append(applied, c)
	}
	return applied, nil
}

// apply adds the secret to req: by the credential's template, and in
// place of its placeholder wherever the agent put it.
func (c *Credential) apply(req *http.Request) {
	secret := c.Secret.v
	if c.Placeholder != "" {
		for k, vs := range req.Header {
			for i, v := range vs {
				if strings.Contains(v, c.Placeholder) {
					req.Header[k][i] = strings.ReplaceAll(v, c.Placeholder, secret)
				}
			}
		}
		if strings.Contains(req.URL.RawQuery, c.Placeholder) {
			req.URL.RawQuery = strings.ReplaceAll(req.URL.RawQuery, c.Placeholder, url.QueryEscape(secret))
		}
	}
	if name, tmpl, ok := strings.Cut(c.Header, ":"); ok {
		req.Header.Set(strings.TrimSpace(name), strings.ReplaceAll(strings.TrimSpace(tmpl), "{secret}", secret))
	}
	if c.Basic != "" {
		cred := strings.ReplaceAll(c.Basic, "{secret}", secret)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
	if c.Query != "" {
		q := req.URL.Query()
		q.Set(c.Query, secret)
		req.URL.RawQuery = q.Encode()
	}
}

// masker replaces secrets with their placeholders (or a fixed mark) in
// what flows back to the agent: a server that echoes a key must not hand
// it to the agent.
type masker struct {
	old, new [][]byte
	longest  int
}

const redactedMark = "[moat:redacted]"

func newMasker(creds []*Credential) *masker {
	m := &masker{}
	for _, c := range creds {
		repl := c.Placeholder
		if repl == "" {
			repl = redactedMark
		}
		m.old = append(m.old, []byte(c.Secret.v))
		m.new = append(m.new, []byte(repl))
		m.longest = max(m.longest, len(c.Secret.v))
	}
	if len(m.old) == 0 {
		return nil
	}
	return m
}

// sameLength reports whether masking keeps a body's length.
func (m *masker) sameLength() bool {
	for i := range m.old {
		if len(m.old[i]) != len(m.new[i]) {
			return false
		}
	}
	return true
}

func (m *masker) bytes(b []byte) []byte {
	for i := range m.old {
		if bytes.Contains(b, m.old[i]) {
			b = bytes.ReplaceAll(b, m.old[i], m.new[i])
		}
	}
	return b
}

func (m *masker) header(h http.Header) {
	for k, vs := range h {
		for i, v := range vs {
			h[k][i] = string(m.bytes([]byte(v)))
		}
	}
}

// streamMasker masks a stream written in arbitrary pieces. A secret may
// straddle two pieces, so a piece's end is held back while it could be the
// start of a secret; anything else goes out at once, so a server-sent
// event is not delayed by masking.
type streamMasker struct {
	m    *masker
	tail []byte
}

// write masks p, returning what may be sent now.
func (s *streamMasker) write(p []byte) []byte {
	buf := s.m.bytes(append(s.tail, p...))
	keep := s.m.pending(buf)
	s.tail = bytes.Clone(buf[len(buf)-keep:])
	return buf[:len(buf)-keep]
}

// flush returns what was held back.
func (s *streamMasker) flush() []byte {
	out := s.tail
	s.tail = nil
	return out
}

// pending returns the length of the longest end of b that begins a secret.
func (m *masker) pending(b []byte) int {
	for k := min(m.longest-1, len(b)); k > 0; k-- {
		end := b[len(b)-k:]
		for _, o := range m.old {
			if len(o) > k && bytes.HasPrefix(o, end) {
				return k
			}
		}
	}
	return 0
}

// decodeForMasking makes a response that carries a credential's echo
// searchable. The proxy asks for identity encoding, but a server may
// compress anyway: gzip and deflate bodies are decoded (the agent receives
// them plain), and any other encoding is refused, since a secret inside it
// could not be found.
func decodeForMasking(resp *http.Response) error {
	// Every coding, from every Content-Encoding line, in the order applied.
	var codings []string
	for _, v := range resp.Header.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	if len(codings) == 0 {
		resp.Header.Del("Content-Encoding")
		return nil
	}
	body := resp.Body
	for i := len(codings) - 1; i >= 0; i-- { // the last applied is undone first
		var r io.Reader
		var err error
		switch codings[i] {
		case "gzip", "x-gzip":
			r, err = gzip.NewReader(body)
		case "deflate":
			r, err = zlib.NewReader(body)
		default:
			return fmt.Errorf("the response to a request carrying a credential is %s-encoded, which moat cannot search for a reflected secret", codings[i])
		}
		if err != nil {
			return fmt.Errorf("response to a request carrying a credential: %s: %w", codings[i], err)
		}
		body = readCloser{r, resp.Body}
	}
	resp.Body = body
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	return nil
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }
