// Package verify is moat's escape-test battery: probes that each try one
// thing the policy forbids from inside a sandbox, a host-side harness that
// plants the bait they aim at and cross-checks it afterwards, and the
// scorecard. The probes are compiled into the moat binary and run inside
// the sandbox as `moat __probe`, so they need no tools in the image.
package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

// Status is a probe's verdict.
type Status string

const (
	Held          Status = "held"
	Escaped       Status = "escaped"
	NotApplicable Status = "not applicable"
)

// Group orders the scorecard.
type Group string

const (
	GroupFiles       Group = "files"
	GroupNetwork     Group = "network"
	GroupKernel      Group = "processes and kernel"
	GroupResources   Group = "resources"
	GroupCredentials Group = "credentials"
)

// Groups in scorecard order.
var Groups = []Group{GroupFiles, GroupNetwork, GroupKernel, GroupResources, GroupCredentials}

// Result is one probe's outcome. Evidence says what was tried and what
// happened (the errno, the byte count, the listener that accepted).
type Result struct {
	Name     string `json:"name"`
	Group    Group  `json:"group"`
	Title    string `json:"title"`
	Status   Status `json:"status"`
	Evidence string `json:"evidence"`
}

// Probe describes one escape attempt; run is its inside half (nil on
// the host side's copy is never the case: the table is shared).
type Probe struct {
	Name  string
	Group Group
	Title string
	run   func(*Config) Result
	// killedHeld: the kernel killing the probe's process (SIGKILL: the
	// OOM killer) is the limit holding.
	killedHeld bool
}

// Config is what the harness tells the probes inside: where the bait is,
// the hashes of the canaries (never the canaries), the limits the policy
// set. It travels as a JSON file in the workspace.
type Config struct {
	Tier string `json:"tier"`

	Workspace   string   `json:"workspace"`    // absolute, as inside
	SecretFiles []string `json:"secret_files"` // masked files holding a canary
	// Handle is the masked outside file's handle (name_to_handle_at, on
	// the host), for open_by_handle_at.
	HandleType  int32             `json:"handle_type"`
	HandleBytes string            `json:"handle_bytes"` // hex
	OutsideDir  string            `json:"outside_dir"`  // a world-writable directory outside the workspace
	Protected   []string          `json:"protected"`    // mandatory-protected files planted in the workspace
	Canaries    map[string]string `json:"canaries"`     // sha256 hex → what it guards
	AuditPath   string            `json:"audit_path"`   // the run's audit log, in the workspace
	PolicyPath  string            `json:"policy_path"`  // the run's policy file, in the workspace
	Scratch     string            `json:"scratch"`      // the harness's directory (the workspace's parent)
	Marker      string            `json:"marker"`       // random name for files the probes try to create

	TCPLoopback string   `json:"tcp_loopback"` // host bait 127.0.0.1:P
	TCPExternal string   `json:"tcp_external"` // host bait on a non-loopback address, if any
	TCPv6       []string `json:"tcp_v6"`       // host bait on IPv6 addresses
	UDP         []string `json:"udp"`          // host UDP bait
	HTTPDirect  string   `json:"http_direct"`  // host HTTP bait, never to be reached directly
	UnixSocket  string   `json:"unix_socket"`  // host Unix socket bait
	Abstract    string   `json:"abstract"`     // host abstract socket bait name (without the leading NUL)
	DockerSock  string   `json:"docker_sock"`  // the Docker socket, when the host has one
	HostPids    []int    `json:"host_pids"`    // host pids: the harness and its bait process
	BaitCmdline string   `json:"bait_cmdline"` // a marker in the bait process's argv

	// Through the proxy: names verify's scratch layer allows.
	ProxyHTTP      string   `json:"proxy_http"`      // the forwarder, 127.0.0.1:3128 when egress is on; "" otherwise
	AllowedHTTP    string   `json:"allowed_http"`    // localhost:A, allowed, an HTTP bait
	AllowedTLS     string   `json:"allowed_tls"`     // localhost:B, allowed, a TLS bait
	PrivateName    string   `json:"private_name"`    // localhost:C, allowed by name, its address private
	PrivateNA      string   `json:"private_na"`      // why connect-private does not apply, if it does not
	ConnectIP      string   `json:"connect_ip"`      // an IP literal to CONNECT to
	PlaceholderEnv string   `json:"placeholder_env"` // the test credential's placeholder variable
	CredentialHost string   `json:"credential_host"` // where that credential may go
	ExfilDomain    string   `json:"exfil_domain"`    // a parent name for DNS exfiltration lookups
	BlockDevices   []string `json:"block_devices"`   // host disks, /dev/NAME

	MemoryLimit int64   `json:"memory_limit"` // bytes; 0 when the policy sets none
	PidsLimit   int64   `json:"pids_limit"`
	CPUs        float64 `json:"cpus"`
	TmpfsSize   int64   `json:"tmpfs_size"` // /tmp's size, bytes; 0 when unknown
	// HostMemAvailable bounds the memory bomb: a sandbox's own view
	// (gVisor's) may be smaller than the limit under test.
	HostMemAvailable int64 `json:"host_mem_available"`
}

// Catalogue lists every probe, in scorecard order.
func Catalogue() []Probe {
	var out []Probe
	for _, g := range Groups {
		for _, p := range probes {
			if p.Group == g {
				out = append(out, p)
			}
		}
	}
	return out
}

// Lookup finds a probe by name.
func Lookup(name string) (Probe, bool) {
	for _, p := range probes {
		if p.Name == name {
			return p, true
		}
	}
	return Probe{}, false
}

// CanaryPrefix starts every canary the harness plants; the probes look for
// it and compare the hash of what follows.
const CanaryPrefix = "moat-verify-canary-"

var canaryRE = regexp.MustCompile(CanaryPrefix + `[0-9a-f]{32}`)

// Hash is how canaries travel: by their SHA-256.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// findCanary reports which canary b holds, if any.
func (c *Config) findCanary(b []byte) (string, bool) {
	for _, m := range canaryRE.FindAll(b, -1) {
		if what, ok := c.Canaries[Hash(string(m))]; ok {
			return what, true
		}
	}
	return "", false
}

func held(format string, a ...any) Result {
	return Result{Status: Held, Evidence: sprintf(format, a...)}
}
func escaped(format string, a ...any) Result {
	return Result{Status: Escaped, Evidence: sprintf(format, a...)}
}
func na(format string, a ...any) Result {
	return Result{Status: NotApplicable, Evidence: sprintf(format, a...)}
}
