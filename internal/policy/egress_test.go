package policy

import (
	"net/netip"
	"sync"
	"testing"
)

const privateRefusal = "; moat refuses loopback, private, link-local and metadata addresses unless network.allow_private lists "

// egressTests run against testdata/egress/managed.yaml over project.yaml.
var egressTests = []struct {
	host         string
	port         uint16
	verdict      Verdict
	rule, reason string
}{
	// Exact names, any case, trailing dot; ports 80 and 443 by default.
	{"api.anthropic.com", 443, Allow, "project.yaml:4 network.allow[0]", `allowed by "api.anthropic.com" in network.allow`},
	{"API.Anthropic.COM.", 443, Allow, "project.yaml:4 network.allow[0]", `allowed by "api.anthropic.com" in network.allow`},
	{"api.anthropic.com", 80, Allow, "project.yaml:4 network.allow[0]", `allowed by "api.anthropic.com" in network.allow`},
	{"api.anthropic.com", 8443, Deny, "default-deny", `api.anthropic.com:8443 is not in network.allow; add "api.anthropic.com:8443" to network.allow to allow it`},
	{"anthropic.com", 443, Deny, "default-deny", `anthropic.com:443 is not in network.allow; add "anthropic.com" to network.allow to allow it`},
	{"evil.example", 443, Deny, "managed.yaml:4 network.deny[0]", `evil.example:443 is denied by "evil.example" in network.deny`},
	{"nowhere.example", 80, Deny, "default-deny", `nowhere.example:80 is not in network.allow; add "nowhere.example" to network.allow to allow it`},
	// Wildcards: subdomains at any depth, not the apex.
	{"github.com", 443, Deny, "default-deny", `github.com:443 is not in network.allow; add "github.com" to network.allow to allow it`},
	{"api.github.com", 443, Allow, "project.yaml:5 network.allow[1]", `allowed by "*.github.com" in network.allow`},
	{"a.b.c.github.com", 443, Allow, "project.yaml:5 network.allow[1]", `allowed by "*.github.com" in network.allow`},
	{"evilgithub.com", 443, Deny, "default-deny", `evilgithub.com:443 is not in network.allow; add "evilgithub.com" to network.allow to allow it`},
	{"github.com.evil.example", 443, Deny, "default-deny", `github.com.evil.example:443 is not in network.allow; add "github.com.evil.example" to network.allow to allow it`},
	{"x.blocked.github.com", 443, Deny, "project.yaml:20 network.deny[0]", `x.blocked.github.com:443 is denied by "*.blocked.github.com" in network.deny`},
	{"blocked.github.com", 443, Allow, "project.yaml:5 network.allow[1]", `allowed by "*.github.com" in network.allow`},
	{"api.github.com", 22, Deny, "default-deny", `api.github.com:22 is not in network.allow; add "api.github.com:22" to network.allow to allow it`},
	// Explicit ports.
	{"example.com", 8443, Allow, "project.yaml:6 network.allow[2]", `allowed by "example.com:8443" in network.allow`},
	{"example.com", 443, Deny, "default-deny", `example.com:443 is not in network.allow; add "example.com" to network.allow to allow it`},
	{"localhost", 3000, Allow, "project.yaml:14 network.allow[10]", `allowed by "localhost:3000" in network.allow`},
	{"localhost", 80, Deny, "default-deny", `localhost:80 is not in network.allow; add "localhost" to network.allow to allow it`},
	{"db.corp.example", 5432, Allow, "project.yaml:15 network.allow[11]", `allowed by "db.corp.example:5432" in network.allow`},
	{"www.corp.example", 443, Allow, "project.yaml:17 network.allow[13]", `allowed by "*.corp.example" in network.allow`},
	// Deny beats allow across layers; a deny without a port denies every port.
	{"ssh.corp.example", 22, Deny, "managed.yaml:5 network.deny[1]", `ssh.corp.example:22 is denied by "*.corp.example:22" in network.deny`},
	{"evil.example", 8443, Deny, "managed.yaml:4 network.deny[0]", `evil.example:8443 is denied by "evil.example" in network.deny`},
	{"files.zip", 443, Deny, "managed.yaml:7 network.deny[3]", `files.zip:443 is denied by "*.zip" in network.deny`},
	// Internationalised names.
	{"BÜCHER.example.", 443, Allow, "project.yaml:7 network.allow[3]", `allowed by "xn--bcher-kva.example" in network.allow`},
	{"bücher.example", 443, Allow, "project.yaml:7 network.allow[3]", `allowed by "xn--bcher-kva.example" in network.allow`},
	{"xn--bcher-kva.example", 80, Allow, "project.yaml:7 network.allow[3]", `allowed by "xn--bcher-kva.example" in network.allow`},
	{"XN--BCHER-KVA.EXAMPLE", 80, Allow, "project.yaml:7 network.allow[3]", `allowed by "xn--bcher-kva.example" in network.allow`},
	{"ｅｘａｍｐｌｅ.com", 8443, Allow, "project.yaml:6 network.allow[2]", `allowed by "example.com:8443" in network.allow`}, // the same name, fullwidth
	// IP literals: only when an address or prefix entry lists them.
	{"198.18.0.7", 443, Allow, "project.yaml:8 network.allow[4]", `allowed by "198.18.0.7" in network.allow`},
	{"198.18.0.7", 22, Deny, "ip-literal", `198.18.0.7:22 is an IP address, which network.allow does not list; connect by name, or add "198.18.0.7:22" to network.allow`},
	{"::ffff:198.18.0.7", 443, Allow, "project.yaml:8 network.allow[4]", `allowed by "198.18.0.7" in network.allow`},
	{"8.8.8.8", 443, Deny, "ip-literal", `8.8.8.8:443 is an IP address, which network.allow does not list; connect by name, or add "8.8.8.8" to network.allow`},
	{"10.1.2.3", 5432, Allow, "project.yaml:9 network.allow[5]", `allowed by "10.1.0.0/16:5432" in network.allow`},
	{"10.1.2.3", 443, Deny, "ip-literal", `10.1.2.3:443 is an IP address, which network.allow does not list; connect by name, or add "10.1.2.3" to network.allow`},
	{"10.2.0.1", 5432, Deny, "ip-literal", `10.2.0.1:5432 is an IP address, which network.allow does not list; connect by name, or add "10.2.0.1:5432" to network.allow`},
	{"2606:4700::1111", 443, Allow, "project.yaml:10 network.allow[6]", `allowed by "2606:4700::1111" in network.allow`},
	{"[2606:4700::1111]", 443, Allow, "project.yaml:10 network.allow[6]", `allowed by "2606:4700::1111" in network.allow`},
	{"2606:4700:0:0:0:0:0:1111", 80, Allow, "project.yaml:10 network.allow[6]", `allowed by "2606:4700::1111" in network.allow`},
	{"2a00:1450:4001::1", 443, Allow, "project.yaml:11 network.allow[7]", `allowed by "2a00:1450::/32" in network.allow`},
	{"::1", 8080, Deny, "ip-literal", `[::1]:8080 is an IP address, which network.allow does not list; connect by name, or add "[::1]:8080" to network.allow`},
	{"127.0.0.1", 8080, Allow, "project.yaml:18 network.allow[14]", `allowed by "127.0.0.1:8080" in network.allow`},
	{"203.0.113.5", 443, Deny, "managed.yaml:6 network.deny[2]", `203.0.113.5:443 is denied by "203.0.113.0/24" in network.deny`},
	{"::ffff:203.0.113.5", 443, Deny, "managed.yaml:6 network.deny[2]", `[::ffff:203.0.113.5]:443 is denied by "203.0.113.0/24" in network.deny`},
	// Numeric forms some resolvers read as addresses are malformed.
	{"127.1", 8080, Deny, "malformed-host", `"127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{"0x7f.0.0.1", 8080, Deny, "malformed-host", `"0x7f.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{"2852039166", 80, Deny, "malformed-host", `"2852039166": non-canonical IPv4 address; write the dotted quad "169.254.169.254"`},
	{"0177.0.0.1", 8080, Deny, "malformed-host", `"0177.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{"198.022.0.7", 443, Deny, "malformed-host", `"198.022.0.7": non-canonical IPv4 address; write the dotted quad "198.18.0.7"`},
	{"198.018.0.7", 443, Deny, "malformed-host", `"198.018.0.7": ends in a number but is not an IPv4 address; write a dotted quad or a host name`},
	// Metadata names need an exact entry.
	{"metadata.google.internal", 80, Allow, "project.yaml:12 network.allow[8]", `allowed by "metadata.google.internal" in network.allow`},
	{"instance-data.ec2.internal", 80, Deny, "metadata-name", `instance-data.ec2.internal:80 is a cloud metadata service; moat refuses it unless network.allow lists "instance-data.ec2.internal" exactly`},
	{"metadata", 80, Deny, "metadata-name", `metadata:80 is a cloud metadata service; moat refuses it unless network.allow lists "metadata" exactly`},
	{"node.ec2.internal", 443, Allow, "project.yaml:13 network.allow[9]", `allowed by "*.ec2.internal" in network.allow`},
	// Malformed hosts.
	{"", 443, Deny, "malformed-host", `"": empty host`},
	{"api.anthropic.com\r\n", 443, Deny, "malformed-host", `"api.anthropic.com\r\n": contains a control character`},
	{"evil.example\x00.api.anthropic.com", 443, Deny, "malformed-host", `"evil.example\x00.api.anthropic.com": contains a control character`},
	{"*.github.com", 443, Deny, "malformed-host", `"*.github.com": invalid character '*' (U+002A) (host names have letters, digits and '-')`},
	{"api.anthropic.com:443", 443, Deny, "malformed-host", `"api.anthropic.com:443": invalid character ':' (give the host without a port)`},
	{"fe80::1%eth0", 443, Deny, "malformed-host", `"fe80::1%eth0": IPv6 zones are not allowed`},
	{"api.anthropic.com", 0, Deny, "malformed-host", `port 0 is not a valid port`},
}

func loadEgressPolicy(t testing.TB) *Policy {
	t.Helper()
	t.Chdir("testdata/egress")
	p, err := Load(LoadOptions{Managed: "managed.yaml", Project: "project.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEgress(t *testing.T) {
	p := loadEgressPolicy(t)
	for _, tt := range egressTests {
		d := p.Egress(tt.host, tt.port)
		want := Decision{Verdict: tt.verdict, Rule: tt.rule, Reason: tt.reason}
		if d != want {
			t.Errorf("Egress(%q, %d) =\n%+v\nwant\n%+v", tt.host, tt.port, d, want)
		}
	}
}

// egressAddrTests run against the same policy.
var egressAddrTests = []struct {
	host, addr   string
	port         uint16
	verdict      Verdict
	rule, reason string
}{
	{"api.anthropic.com", "160.79.104.10", 443, Allow, "public-address", ""},
	{"api.anthropic.com", "2607:6bc0::10", 443, Allow, "public-address", ""},
	{"api.anthropic.com", "127.0.0.1", 443, Deny, "private-address", "api.anthropic.com resolves to 127.0.0.1 (loopback)" + privateRefusal + "the name or the address"},
	{"localhost", "127.0.0.1", 3000, Allow, "project.yaml:22 network.allow_private[0]", `allowed by "localhost" in network.allow_private`},
	{"LOCALHOST.", "::1", 3000, Allow, "project.yaml:22 network.allow_private[0]", `allowed by "localhost" in network.allow_private`},
	{"api.anthropic.com", "::1", 443, Allow, "project.yaml:25 network.allow_private[3]", `allowed by "::1" in network.allow_private`},
	{"api.anthropic.com", "10.9.8.7", 443, Allow, "project.yaml:23 network.allow_private[1]", `allowed by "10.0.0.0/8" in network.allow_private`},
	{"api.anthropic.com", "::ffff:10.9.8.7", 443, Allow, "project.yaml:23 network.allow_private[1]", `allowed by "10.0.0.0/8" in network.allow_private`},
	{"10.1.2.3", "10.1.2.3", 5432, Allow, "project.yaml:23 network.allow_private[1]", `allowed by "10.0.0.0/8" in network.allow_private`},
	{"db.corp.example", "192.168.1.5", 5432, Allow, "project.yaml:24 network.allow_private[2]", `allowed by "db.corp.example:5432" in network.allow_private`},
	{"db.corp.example", "192.168.1.5", 80, Deny, "private-address", "db.corp.example resolves to 192.168.1.5 (private)" + privateRefusal + "the name or the address"},
	{"198.18.0.7", "198.18.0.7", 443, Deny, "private-address", "198.18.0.7 is a benchmarking address" + privateRefusal + "the address"},
	// Addresses that embed IPv4 are judged by it.
	{"api.anthropic.com", "::ffff:127.0.0.1", 443, Deny, "private-address", "api.anthropic.com resolves to ::ffff:127.0.0.1 (loopback, IPv4-mapped)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "64:ff9b::a9fe:a9fe", 443, Deny, "private-address", "api.anthropic.com resolves to 64:ff9b::a9fe:a9fe (metadata, NAT64)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "2002:7f00:1::", 443, Deny, "private-address", "api.anthropic.com resolves to 2002:7f00:1:: (loopback, 6to4)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "2001:0:4136:e378:8000:63bf:80ff:fffe", 443, Deny, "private-address", "api.anthropic.com resolves to 2001:0:4136:e378:8000:63bf:80ff:fffe (loopback, Teredo)" + privateRefusal + "the name or the address"},
	{"::ffff:127.0.0.1", "::ffff:127.0.0.1", 443, Deny, "private-address", "::ffff:127.0.0.1 is a loopback (IPv4-mapped) address" + privateRefusal + "the address"},
	// Other classes.
	{"api.anthropic.com", "100.64.0.1", 443, Deny, "private-address", "api.anthropic.com resolves to 100.64.0.1 (cgnat)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "169.254.169.254", 443, Deny, "private-address", "api.anthropic.com resolves to 169.254.169.254 (metadata)" + privateRefusal + "the name or the address"},
	{"169.254.169.254", "169.254.169.254", 80, Allow, "project.yaml:26 network.allow_private[4]", `allowed by "169.254.169.254:80" in network.allow_private`},
	{"api.anthropic.com", "fd00:ec2::254", 443, Deny, "private-address", "api.anthropic.com resolves to fd00:ec2::254 (metadata)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "100.100.100.200", 443, Deny, "private-address", "api.anthropic.com resolves to 100.100.100.200 (metadata)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "fe80::1", 443, Deny, "private-address", "api.anthropic.com resolves to fe80::1 (link-local)" + privateRefusal + "the name or the address"},
	{"api.anthropic.com", "0.0.0.0", 443, Deny, "private-address", "api.anthropic.com resolves to 0.0.0.0 (unspecified)" + privateRefusal + "the name or the address"},
	// network.deny's addresses and prefixes apply to resolved addresses.
	{"www.corp.example", "203.0.113.9", 443, Deny, "managed.yaml:6 network.deny[2]", `www.corp.example resolves to 203.0.113.9, which "203.0.113.0/24" in network.deny refuses`},
	{"203.0.113.9", "203.0.113.9", 443, Deny, "managed.yaml:6 network.deny[2]", `203.0.113.9 is denied by "203.0.113.0/24" in network.deny`},
	// Malformed.
	{"api.anthropic.com", "fe80::1%eth0", 443, Deny, "malformed-host", `"fe80::1%eth0": IPv6 zones are not allowed`},
	{"api.anthropic.com\n", "160.79.104.10", 443, Deny, "malformed-host", `"api.anthropic.com\n": contains a control character`},
	{"api.anthropic.com", "160.79.104.10", 0, Deny, "malformed-host", `port 0 is not a valid port`},
}

func TestEgressAddr(t *testing.T) {
	p := loadEgressPolicy(t)
	for _, tt := range egressAddrTests {
		d := p.EgressAddr(tt.host, netip.MustParseAddr(tt.addr), tt.port)
		want := Decision{Verdict: tt.verdict, Rule: tt.rule, Reason: tt.reason}
		if d != want {
			t.Errorf("EgressAddr(%q, %s, %d) =\n%+v\nwant\n%+v", tt.host, tt.addr, tt.port, d, want)
		}
	}
	if d := p.EgressAddr("api.anthropic.com", netip.Addr{}, 443); d != (Decision{Verdict: Deny, Rule: RuleMalformedHost, Reason: "no address"}) {
		t.Errorf("EgressAddr(zero Addr) = %+v; want malformed-host", d)
	}
}

func TestReportMode(t *testing.T) {
	p, err := Parse("report.yaml", []byte("version: 1\nnetwork:\n  mode: report\n  allow: [api.anthropic.com]\n"), LayerProject)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		got  Decision
		want Decision
	}{
		{"allowed", p.Egress("api.anthropic.com", 443),
			Decision{Verdict: Allow, Rule: "report.yaml:4 network.allow[0]", Reason: `allowed by "api.anthropic.com" in network.allow`}},
		{"default-deny", p.Egress("evil.example", 443),
			Decision{Verdict: Allow, WouldDeny: true, Rule: "default-deny", Reason: `evil.example:443 is not in network.allow; add "evil.example" to network.allow to allow it`}},
		{"ip-literal", p.Egress("8.8.8.8", 443),
			Decision{Verdict: Allow, WouldDeny: true, Rule: "ip-literal", Reason: `8.8.8.8:443 is an IP address, which network.allow does not list; connect by name, or add "8.8.8.8" to network.allow`}},
		{"private-address", p.EgressAddr("api.anthropic.com", netip.MustParseAddr("127.0.0.1"), 443),
			Decision{Verdict: Allow, WouldDeny: true, Rule: "private-address", Reason: "api.anthropic.com resolves to 127.0.0.1 (loopback)" + privateRefusal + "the name or the address"}},
		{"malformed host", p.Egress("127.1", 443),
			Decision{Verdict: Deny, Rule: "malformed-host", Reason: `"127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`}},
		{"malformed address", p.EgressAddr("api.anthropic.com", netip.MustParseAddr("fe80::1%eth0"), 443),
			Decision{Verdict: Deny, Rule: "malformed-host", Reason: `"fe80::1%eth0": IPv6 zones are not allowed`}},
	} {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, tt.got, tt.want)
		}
	}
}

// The zero Policy denies; a Policy built by hand, without ParseHostRule,
// decides like a loaded one.
func TestEgressHandBuilt(t *testing.T) {
	var zero Policy
	if d := zero.Egress("example.com", 443); d.Verdict != Deny || d.Rule != RuleDefaultDeny {
		t.Errorf("zero Policy: Egress = %+v; want default-deny", d)
	}
	if d := zero.EgressAddr("example.com", netip.MustParseAddr("10.0.0.1"), 443); d.Verdict != Deny || d.Rule != RulePrivateAddress {
		t.Errorf("zero Policy: EgressAddr = %+v; want private-address", d)
	}
	p := &Policy{Network: Network{
		Allow:        []HostRule{{Name: "example.com", Origin: Origin{File: "hand", Key: "a"}}, {Name: "*.example.org", Wildcard: true, Origin: Origin{File: "hand", Key: "w"}}},
		AllowPrivate: []HostRule{{IsPrefix: true, Prefix: "10.0.0.0/8", Origin: Origin{File: "hand", Key: "p"}}},
	}}
	for _, tt := range []struct {
		got  Decision
		rule string
	}{
		{p.Egress("example.com", 443), "hand a"},
		{p.Egress("www.example.org", 443), "hand w"},
		{p.EgressAddr("example.com", netip.MustParseAddr("10.0.0.1"), 443), "hand p"},
	} {
		if tt.got.Verdict != Allow || tt.got.Rule != tt.rule {
			t.Errorf("hand-built policy: %+v; want allowed by %q", tt.got, tt.rule)
		}
	}
}

func TestEgressConcurrent(t *testing.T) {
	p := loadEgressPolicy(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, tt := range egressTests {
				if d := p.Egress(tt.host, tt.port); d.Verdict != tt.verdict || d.Rule != tt.rule {
					t.Errorf("Egress(%q, %d) = %+v, concurrently", tt.host, tt.port, d)
				}
			}
		})
	}
	wg.Wait()
}

func TestHostRuleMatches(t *testing.T) {
	for _, tt := range []struct {
		rule, host string
		port       uint16
		want       bool
	}{
		{"api.example.com", "API.example.com.", 443, true},
		{"api.example.com", "api.example.com", 8443, false},
		{"*.example.com", "a.b.example.com", 80, true},
		{"*.example.com", "example.com", 443, false},
		{"example.com:8443", "example.com", 8443, true},
		{"10.0.0.0/8:5432", "10.1.2.3", 5432, true},
		{"10.0.0.0/8:5432", "::ffff:10.1.2.3", 5432, true},
		{"10.0.0.0/8", "10.1.2.3", 5432, false},
		{"*.example.com", "a.example.com\n", 443, false},
		{"example.com", "127.1", 443, false},
	} {
		r, err := ParseHostRule(tt.rule)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Matches(tt.host, tt.port); got != tt.want {
			t.Errorf("ParseHostRule(%q).Matches(%q, %d) = %v; want %v", tt.rule, tt.host, tt.port, got, tt.want)
		}
	}
}

// Allowing a canonical name or a public address allocates nothing.
func TestEgressNoAlloc(t *testing.T) {
	p := loadEgressPolicy(t)
	a := netip.MustParseAddr("160.79.104.10")
	for name, f := range map[string]func(){
		"Egress exact":       func() { p.Egress("api.anthropic.com", 443) },
		"Egress wildcard":    func() { p.Egress("api.github.com", 443) },
		"EgressAddr public":  func() { p.EgressAddr("api.anthropic.com", a, 443) },
		"EgressAddr private": func() { p.EgressAddr("localhost", netip.MustParseAddr("127.0.0.1"), 3000) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times; want 0", name, n)
		}
	}
}
