// Package audit writes and reads moat's audit stream: one JSON object per
// line for every decision moat makes (proxy connections and requests,
// permission checks, sandbox lifecycle). The field names are a contract:
// fields are added, never renamed or removed.
package audit

import "time"

// Kinds of record.
const (
	KindRequest    = "request"    // an HTTP request through the forward or reverse proxy
	KindConnect    = "connect"    // a CONNECT tunnel or SOCKS5 connection
	KindLifecycle  = "lifecycle"  // proxy or sandbox start, stop, reload
	KindPermission = "permission" // a permission-engine decision
)

// Record is one line of the audit stream. It never holds a secret:
// Authorization, Cookie, Proxy-Authorization and credential values are never
// copied into it, and callers must not put them in Reason.
type Record struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Session    string    `json:"session,omitempty"` // proxy user / sandbox id
	Client     string    `json:"client,omitempty"`  // remote address or "unix"
	Proto      string    `json:"proto,omitempty"`   // "http", "connect", "socks5", "reverse"
	Method     string    `json:"method,omitempty"`
	Host       string    `json:"host,omitempty"`
	Port       uint16    `json:"port,omitempty"`
	Path       string    `json:"path,omitempty"` // where visible (plain HTTP); no query string
	SNI        string    `json:"sni,omitempty"`
	Addr       string    `json:"addr,omitempty"` // the address dialled
	Decision   string    `json:"decision"`       // "allow" | "deny" | "ask"
	WouldDeny  bool      `json:"would_deny,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Status     int       `json:"status,omitempty"` // HTTP status returned to the client (SOCKS: reply code)
	BytesUp    int64     `json:"bytes_up"`         // client → upstream
	BytesDown  int64     `json:"bytes_down"`       // upstream → client
	Duration   float64   `json:"duration_ms"`
	Credential string    `json:"credential,omitempty"` // names of the credentials the proxy added, comma-separated
	Event      string    `json:"event,omitempty"`      // lifecycle: "start", "stop", "reload", "reload-failed"
	Detail     string    `json:"detail,omitempty"`
}
