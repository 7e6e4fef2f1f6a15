package policy

import "net/netip"

// This file is the policy model every tier reads. The network section is
// enforced by the proxy; the other sections are defined now so that files
// written today stay valid as later tiers enforce them.

// Origin says where an entry came from.
type Origin struct {
	Layer string // "managed", "project", "user", "profile:NAME", "flag"
	File  string // path as given, or "profile:NAME" for built-ins
	Line  int    // 1-based; 0 when unknown
	Key   string // "network.allow[2]"
}

// String formats an origin the way rules are cited: "moat.yaml:14 network.allow[2]".
func (o Origin) String() string {
	if o.Line > 0 {
		return o.File + ":" + itoa(o.Line) + " " + o.Key
	}
	return o.File + " " + o.Key
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Entry is one string list item with its origin.
type Entry struct {
	Value  string
	Origin Origin
}

// String is a string scalar. Scalar values remember their origin too, so
// `moat policy show` can say which layer set them; a zero Origin means
// unset.
type String struct {
	Value  string
	Origin Origin
}

// Int is an integer scalar; Set tells an unset value from zero.
type Int struct {
	Value  int64
	Set    bool
	Origin Origin
}

// Bool is a boolean scalar; Set tells an unset value from false.
type Bool struct {
	Value  bool
	Set    bool
	Origin Origin
}

// Mode is network.mode.
type Mode string

const (
	Enforce Mode = "enforce" // refuse what the policy does not allow
	Report  Mode = "report"  // allow, but log what enforce would refuse
)

// Policy is the effective, merged policy. It is immutable once built by
// Load or Merge and safe for concurrent use.
type Policy struct {
	Version     int
	Profile     string // the built-in profile the layers were stacked on
	Filesystem  Filesystem
	Network     Network
	Credentials []Credential
	TLS         TLS
	Process     Process
	Resources   Resources
	Permissions Permissions
	Audit       Audit
	Isolation   Isolation

	// Locks lists the key paths a managed layer locked ("network.allow").
	Locks []Entry
	// Layers lists the files that made this policy, highest precedence first.
	Layers []Origin
	// ProfileOrigin says who chose Profile: a layer's "profile" key, the
	// --profile flag (Layer "flag"), or nobody (zero: the default profile).
	ProfileOrigin Origin
}

// Filesystem is what the sandbox may read and write (enforced by the
// sandbox tiers, not yet by the proxy).
type Filesystem struct {
	Read      []Entry // readable paths (default: the host's root, read-only)
	DenyRead  []Entry // masked paths (globs allowed)
	Write     []Entry // writable paths (default: the working directory)
	DenyWrite []Entry // never writable, whatever Write says
	Tmpfs     []Entry // "PATH" or "PATH:SIZE" ("/tmp:512m")
	Scan      String  // "off" | "warn" | "block": credential scan before mounting
	Workspace String  // "rw" | "overlay" | "copy" | "readonly" | "tmpfs[:SIZE]": how moat run mounts the workspace
	Volumes   []Entry // "HOST:INSIDE" or "HOST": dedicated persistent output directories, read-write
}

// HostRule is a parsed network.allow / deny / allow_private entry.
type HostRule struct {
	// Exactly one of Name, Prefix is meaningful:
	// Name: normalised host ("example.com", "*.example.com" keeps the "*." form);
	// Prefix: an IP literal or CIDR ("10.0.0.0/8", "127.0.0.1/32", "::1/128").
	Name     string
	Wildcard bool // Name is "*.suffix": subdomains only, not the apex
	IsPrefix bool
	Prefix   string // netip.Prefix.String() form
	// Port 0 means the default ports: 80 and 443 (for allow), any port (for deny).
	Port   uint16
	Origin Origin

	// Made once by the parser, so that deciding allocates nothing; zero in
	// a rule built by hand.
	prefix  netip.Prefix // Prefix, parsed
	rule    string       // Origin.String()
	allowed string       // the Reason of a decision this rule allows
}

// Network is the egress policy the proxy enforces (see Policy.Egress and
// Policy.EgressAddr).
type Network struct {
	Mode         Mode
	ModeOrigin   Origin
	Allow        []HostRule
	Deny         []HostRule
	AllowPrivate []HostRule // names, IP literals or CIDRs whose private addresses may be dialled
	// RequestAllow and RequestDeny are "HOST METHOD PATH" rules on the
	// requests the proxy can see (plain HTTP, reverse endpoints, terminated
	// TLS); see Policy.Request.
	RequestAllow []Entry
	RequestDeny  []Entry
	// Limits are "HOST N/min" and "HOST SIZE out" entries, counted per
	// session and per host; see Policy.Limits.
	Limits []Entry
	// Endpoints are reverse endpoints, "NAME=https://host[/base]@127.0.0.1:PORT"
	// entries, one a name (the highest layer's); see Policy.Endpoints.
	Endpoints []Entry

	compiled *compiledRequests // built on first use; the policy is immutable
}

// Credential is a secret the proxy adds to requests bound for its hosts.
// It is defined here and enforced by the credentials issue.
type Credential struct {
	Name        string
	Hosts       []Entry // required: where the secret may go
	Header      string  // "x-api-key: {secret}", "Authorization: Bearer {secret}"
	Basic       string  // "user:{secret}" for HTTP basic
	Query       string  // query parameter name, where an API demands it
	Env         string  // read from this env var of moat's own process
	File        string  // or from this file
	Command     []string
	Placeholder string // env var set inside the sandbox to a per-session placeholder
	Origin      Origin
}

// TLS says which connections moat terminates with its own CA.
type TLS struct {
	Intercept []Entry // hosts whose TLS moat terminates
	CA        String  // CA directory
	Exclude   []Entry
}

// Process is the identity and environment of the sandboxed process.
type Process struct {
	User String  // "agent" (default: an unprivileged mapped uid) or "UID:GID"
	Env  []Entry // "NAME=VALUE" set, or "NAME" passed through from moat's environment
}

// Resources are the sandbox's limits.
type Resources struct {
	Memory String // "2g"
	CPUs   String // "1.5"
	Pids   Int
}

// Permissions are Claude-Code-style tool rules, for the permission engine.
type Permissions struct {
	Allow       []Entry
	Ask         []Entry
	Deny        []Entry
	DefaultMode String // "ask" (default) | "deny" | "allow"
	// Severity maps the static analyser's severities to the verdicts
	// their findings force, as "critical=deny,high=ask" (most severe
	// first; "allow": findings only inform). A severity it does not name
	// keeps the default: critical deny, high ask, the others inform.
	Severity String
}

// Audit says where the audit log goes and how it rotates.
type Audit struct {
	File     String // JSON-lines path; "-" is standard output (as moat proxy writes it)
	MaxSize  String // rotate past this size ("100m")
	MaxFiles Int    // rotated files kept
}

// Isolation picks the isolation tier and the layers it must have.
type Isolation struct {
	Tier     String  // "native" | "container" | "gvisor" | "docker" | "microvm"
	Require  []Entry // layers that must be present or moat refuses to start
	Runtime  String  // runtime binary for container tiers
	Image    String
	Hostname String
}
