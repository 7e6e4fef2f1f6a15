package policy

import (
	"strings"
	"testing"
)

var normalizeTests = []struct{ in, want, err string }{
	{in: "example.com", want: "example.com"},
	{in: "Example.COM.", want: "example.com"},
	{in: "BÜCHER.example.", want: "xn--bcher-kva.example"},
	{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
	{in: "XN--BCHER-KVA.EXAMPLE", want: "xn--bcher-kva.example"},
	{in: "ΕΛΛΗΝΙΚΆ.example", want: "xn--hxargifdar.example"},
	{in: "пример.рф", want: "xn--e1afmkfd.xn--p1ai"},
	{in: "localhost", want: "localhost"},
	{in: "r3---sn-abc.example", want: "r3---sn-abc.example"},
	{in: "1.2.3.4", want: "1.2.3.4"},
	{in: "1.2.3.4.", want: "1.2.3.4"},
	{in: "::1", want: "::1"},
	{in: "[::1]", want: "::1"},
	{in: "[2001:DB8:0:0::1]", want: "2001:db8::1"},
	{in: "::FFFF:127.0.0.1", want: "::ffff:127.0.0.1"},
	{in: "", err: `"": empty host`},
	{in: ".", err: `".": empty host`},
	{in: "a..b", err: `"a..b": empty label`},
	{in: ".example.com", err: `".example.com": empty label`},
	{in: "example.com..", err: `"example.com..": empty label`},
	{in: "a b.com", err: `"a b.com": contains a space`},
	{in: "a\x00b.com", err: `"a\x00b.com": contains a control character`},
	{in: "a\r\nb.com", err: `"a\r\nb.com": contains a control character`},
	{in: "a\x7fb.com", err: `"a\x7fb.com": contains a control character`},
	{in: "\xff.com", err: `"\xff.com": not valid UTF-8`},
	{in: "a_b.com", err: `"a_b.com": invalid character '_' (U+005F) (host names have letters, digits and '-')`},
	{in: "*.example.com", err: `"*.example.com": invalid character '*' (U+002A) (host names have letters, digits and '-')`},
	{in: "-a.com", err: `"-a.com": label "-a" starts with '-'`},
	{in: "a-.com", err: `"a-.com": label "a-" ends with '-'`},
	{in: "xn--a.com", err: `"xn--a.com": label "xn--a" is not valid punycode`},
	{in: "xn--abc-.com", err: `"xn--abc-.com": label "xn--abc-" ends with '-'`},
	{in: "xn--abc-9.com", err: `"xn--abc-9.com": label "xn--abc-9" is not valid punycode`},
	{in: "xn--.com", err: `"xn--.com": label "xn--" ends with '-'`},
	{in: strings.Repeat("a", 64) + ".com", err: `"` + strings.Repeat("a", 64) + `.com": label "aaaaaaaaaaaaaaaa..." is longer than 63 characters`},
	{in: strings.Repeat("a.", 127) + "co", err: `"` + strings.Repeat("a.", 127) + `co": name is longer than 253 characters`},
	// UTS #46 lookup mapping, as Go's HTTP client applies it: fullwidth
	// letters are the same name as their ASCII forms.
	{in: "ｅｘａｍｐｌｅ.com", want: "example.com"},
	{in: "İ.com", want: "xn--i-9bb.com"},
	// Mapping that yields a number makes an address, judged as one.
	{in: "１２７.０.０.１", want: "127.0.0.1"},
	{in: "８", err: `"８": non-canonical IPv4 address; write the dotted quad "0.0.0.8"`},
	{in: "ü-.com", err: `"ü-.com": not a valid internationalised name (idna: invalid label "ü-"); write it in its ASCII (punycode) form`},
	{in: "example.com:443", err: `"example.com:443": invalid character ':' (give the host without a port)`},
	{in: "127.1", err: `"127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "0x7f.0.0.1", err: `"0x7f.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "0x7f.1", err: `"0x7f.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "2852039166", err: `"2852039166": non-canonical IPv4 address; write the dotted quad "169.254.169.254"`},
	{in: "0177.0.0.1", err: `"0177.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "1.2.3.04", err: `"1.2.3.04": non-canonical IPv4 address; write the dotted quad "1.2.3.4"`},
	{in: "0xA9FEA9FE", err: `"0xA9FEA9FE": non-canonical IPv4 address; write the dotted quad "169.254.169.254"`},
	{in: "999.1.1.1", err: `"999.1.1.1": ends in a number but is not an IPv4 address; write a dotted quad or a host name`},
	{in: "1.2.3.4.5", err: `"1.2.3.4.5": ends in a number but is not an IPv4 address; write a dotted quad or a host name`},
	{in: "foo.123", err: `"foo.123": ends in a number but is not an IPv4 address; write a dotted quad or a host name`},
	{in: "08.1.1.1", err: `"08.1.1.1": ends in a number but is not an IPv4 address; write a dotted quad or a host name`},
	{in: "fe80::1%eth0", err: `"fe80::1%eth0": IPv6 zones are not allowed`},
	{in: "[fe80::1%eth0]", err: `"[fe80::1%eth0]": IPv6 zones are not allowed`},
	{in: "[1.2.3.4]", err: `"[1.2.3.4]": an IPv4 address in brackets; write "1.2.3.4"`},
	{in: "[::1", err: `"[::1": missing "]" after an IPv6 address`},
	{in: "::g", err: `"::g": not a valid IPv6 address`},
}

func TestNormalizeHost(t *testing.T) {
	for _, tt := range normalizeTests {
		got, err := NormalizeHost(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("NormalizeHost(%q) = %q, %v\nwant error: %s", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeHostNoAlloc(t *testing.T) {
	for _, h := range []string{"api.anthropic.com", "203.0.113.7", "example.com."} {
		if n := testing.AllocsPerRun(100, func() { NormalizeHost(h) }); n != 0 {
			t.Errorf("NormalizeHost(%q) allocates %v times; want 0 for a canonical host", h, n)
		}
	}
}

// hostRuleTests: in, then the rule's canonical form and fields, or the error.
var hostRuleTests = []struct {
	in, want string
	wild     bool
	prefix   string
	port     uint16
	err      string
}{
	{in: "api.anthropic.com", want: "api.anthropic.com"},
	{in: "API.Anthropic.COM.", want: "api.anthropic.com"},
	{in: "*.github.com", want: "*.github.com", wild: true},
	{in: "*.BÜCHER.example", want: "*.xn--bcher-kva.example", wild: true},
	{in: "example.com:8443", want: "example.com:8443", port: 8443},
	{in: "*.example.com:443", want: "*.example.com:443", wild: true, port: 443},
	{in: "localhost", want: "localhost"},
	{in: "203.0.113.7", want: "203.0.113.7", prefix: "203.0.113.7/32"},
	{in: "203.0.113.7:443", want: "203.0.113.7:443", prefix: "203.0.113.7/32", port: 443},
	{in: "10.0.0.0/8", want: "10.0.0.0/8", prefix: "10.0.0.0/8"},
	{in: "10.1.0.0/16:5432", want: "10.1.0.0/16:5432", prefix: "10.1.0.0/16", port: 5432},
	{in: "::1", want: "::1", prefix: "::1/128"},
	{in: "[::1]", want: "::1", prefix: "::1/128"},
	{in: "[::1]:8080", want: "[::1]:8080", prefix: "::1/128", port: 8080},
	{in: "fd00::/8", want: "fd00::/8", prefix: "fd00::/8"},
	{in: "[fd00::/8]:443", want: "[fd00::/8]:443", prefix: "fd00::/8", port: 443},
	{in: "2001:DB8::/32", want: "2001:db8::/32", prefix: "2001:db8::/32"},
	{in: "", err: `"": empty host`},
	{in: "*", err: `"*": a lone "*" would match every host; list the hosts instead`},
	{in: "*.", err: `"*.": empty domain after wildcard; write "*.example.com"`},
	{in: "*:443", err: `"*:443": a lone "*" would match every host; list the hosts instead`},
	{in: "*.com", err: `"*.com": a wildcard over the top-level domain "com" would match every site under it; write "*.example.com"`},
	{in: "*.COM.", err: `"*.COM.": a wildcard over the top-level domain "com" would match every site under it; write "*.example.com"`},
	{in: "a*.b.com", err: `"a*.b.com": "*" may only be the whole first label; write "*.b.com"`},
	{in: "*a.b.com", err: `"*a.b.com": "*" may only be the whole first label; write "*.b.com"`},
	{in: "foo.*.com", err: `"foo.*.com": "*" may only be the whole first label`},
	{in: "*.*.example.com", err: `"*.*.example.com": "*" may only be the whole first label`},
	{in: "*.1.2.3.4", err: `"*.1.2.3.4": a wildcard cannot cover an IP address`},
	{in: "*.a..b", err: `"*.a..b": empty label`},
	{in: "https://example.com/path", err: `"https://example.com/path": a host, not a URL; write "example.com"`},
	{in: "https://user@example.com:8443/", err: `"https://user@example.com:8443/": a host, not a URL; write "example.com:8443"`},
	{in: "user:pw@example.com", err: `"user:pw@example.com": user information is not allowed; write "example.com"`},
	{in: "example.com/path", err: `"example.com/path": a host cannot have a path; write "example.com"`},
	{in: "example.com?x=1", err: `"example.com?x=1": a host cannot have a query or fragment; write "example.com"`},
	{in: "exa mple.com", err: `"exa mple.com": contains a space`},
	{in: "example.com\t", err: `"example.com\t": contains a control character`},
	{in: "example.com:0", err: `"example.com:0": port must be 1-65535`},
	{in: "example.com:65536", err: `"example.com:65536": port must be 1-65535`},
	{in: "example.com:0443", err: `"example.com:0443": port must be 1-65535`},
	{in: "example.com:https", err: `"example.com:https": port "https" is not a number`},
	{in: "example.com:", err: `"example.com:": empty port`},
	{in: ":443", err: `":443": empty host`},
	{in: "127.1", err: `"127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "0x7f.0.0.1:80", err: `"0x7f.0.0.1:80": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "2852039166", err: `"2852039166": non-canonical IPv4 address; write the dotted quad "169.254.169.254"`},
	{in: "0177.0.0.1", err: `"0177.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"`},
	{in: "0177.0.0.0/8", err: `"0177.0.0.0/8": non-canonical IPv4 address; write the dotted quad "127.0.0.0"`},
	{in: "10.1.2.3/8", err: `"10.1.2.3/8": address bits are set beyond the prefix length; write "10.0.0.0/8"`},
	{in: "10.0.0.0/33", err: `"10.0.0.0/33": not a valid CIDR prefix`},
	{in: "fe80::1%eth0", err: `"fe80::1%eth0": IPv6 zones are not allowed`},
	{in: "[fe80::1%25eth0]:80", err: `"[fe80::1%25eth0]:80": IPv6 zones are not allowed`},
	{in: "[1.2.3.4]:80", err: `"[1.2.3.4]:80": an IPv4 address in brackets; write "1.2.3.4"`},
	{in: "[::1]8080", err: `"[::1]8080": unexpected "8080" after "]"; write "[ADDRESS]:PORT"`},
	{in: "[::1]:", err: `"[::1]:": empty port`},
	{in: "a_b.example.com", err: `"a_b.example.com": invalid character '_' (U+005F) (host names have letters, digits and '-')`},
	{in: strings.Repeat("x", 64) + ".com", err: `"` + strings.Repeat("x", 64) + `.com": label "xxxxxxxxxxxxxxxx..." is longer than 63 characters`},
}

func TestParseHostRule(t *testing.T) {
	for _, tt := range hostRuleTests {
		r, err := ParseHostRule(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseHostRule(%q) = %q, %v\nwant error: %s", tt.in, r, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHostRule(%q): %v", tt.in, err)
			continue
		}
		if r.String() != tt.want || r.Wildcard != tt.wild || r.IsPrefix != (tt.prefix != "") || r.Prefix != tt.prefix || r.Port != tt.port {
			t.Errorf("ParseHostRule(%q) = %q (wildcard %v, prefix %q, port %d); want %q (%v, %q, %d)",
				tt.in, r, r.Wildcard, r.Prefix, r.Port, tt.want, tt.wild, tt.prefix, tt.port)
		}
		if tt.prefix == "" && strings.TrimPrefix(r.Name, "") != strings.Split(tt.want, ":")[0] {
			t.Errorf("ParseHostRule(%q).Name = %q", tt.in, r.Name)
		}
		// The canonical form parses to itself.
		again, err := ParseHostRule(r.String())
		if err != nil || again.String() != r.String() {
			t.Errorf("ParseHostRule(%q) = %q, %v; want itself", r.String(), again, err)
		}
	}
}

func TestInetAton(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0x.0.0.1", "0.0.0.1"},
		{"1.0xffffff", "1.255.255.255"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", ""},
		{"1.16777216", ""},
		{"1.2.65536", ""},
		{"256.1.1.1", ""},
		{"09.1.1.1", ""},
		{"1.2.3.4.5", ""},
		{"1..2", ""},
		{"0xg", ""},
	} {
		a, ok := inetAton(tt.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("inetAton(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestPunycode(t *testing.T) {
	// RFC 3492 section 7.1 samples, and labels whose encodings are well known.
	for _, tt := range []struct{ uni, ascii string }{
		{"bücher", "xn--bcher-kva"},
		{"münchen", "xn--mnchen-3ya"},
		{"他们为什么不说中文", "xn--ihqwcrb4cv8a8dqg056pqjye"},
		{"почемужеонинеговорятпорусски", "xn--b1abfaaepdrnnbgefbadotcwatmq2g4l"},
		{"3年b組金八先生", "xn--3b-ww4c5e180e575a65lsy2b"},
	} {
		got, err := NormalizeHost(tt.uni + ".example")
		if err != nil || got != tt.ascii+".example" {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", tt.uni+".example", got, err, tt.ascii+".example")
		}
		if !validPunycode(tt.ascii) {
			t.Errorf("validPunycode(%q) = false; want true", tt.ascii)
		}
	}
	for _, bad := range []string{"a", "-", "9999999999a", "aé"} {
		if validPunycode("xn--" + bad) {
			t.Errorf("validPunycode(%q) = true; want false", "xn--"+bad)
		}
	}
}
