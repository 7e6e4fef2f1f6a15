package policy

import (
	"net/netip"
	"os"
	"testing"
)

func benchPolicy(b *testing.B) *Policy {
	p, err := Load(LoadOptions{Managed: "testdata/egress/managed.yaml", Project: "testdata/egress/project.yaml", Profile: "dev"})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkEgress(b *testing.B) {
	p := benchPolicy(b)
	for _, bb := range []struct {
		name, host string
		port       uint16
		verdict    Verdict
	}{
		{"exact", "api.anthropic.com", 443, Allow},
		{"wildcard", "api.github.com", 443, Allow},
		{"profile", "registry.npmjs.org", 443, Allow},
		{"default-deny", "evil.invalid", 443, Deny},
		{"upper-case", "API.Anthropic.COM.", 443, Allow},
		{"idna", "bücher.example", 443, Allow},
		{"ip-literal", "8.8.8.8", 443, Deny},
		{"ipv6-literal", "2606:4700::1111", 443, Allow},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.Egress(bb.host, bb.port); d.Verdict != bb.verdict {
					b.Fatalf("Egress(%s) = %+v; want %v", bb.host, d, bb.verdict)
				}
			}
		})
	}
}

func BenchmarkEgressAddr(b *testing.B) {
	p := benchPolicy(b)
	for _, bb := range []struct {
		name, host, addr string
		verdict          Verdict
	}{
		{"public", "api.anthropic.com", "160.79.104.10", Allow},
		{"public-v6", "api.anthropic.com", "2607:6bc0::10", Allow},
		{"loopback", "api.anthropic.com", "127.0.0.1", Deny},
		{"allow-private", "localhost", "127.0.0.1", Allow},
	} {
		a := netip.MustParseAddr(bb.addr)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.EgressAddr(bb.host, a, 3000); d.Verdict != bb.verdict {
					b.Fatalf("EgressAddr(%s, %s) = %+v; want %v", bb.host, a, d, bb.verdict)
				}
			}
		})
	}
}

func BenchmarkClassifyAddr(b *testing.B) {
	addrs := []netip.Addr{netip.MustParseAddr("160.79.104.10"), netip.MustParseAddr("2607:6bc0::10"),
		netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("2001:0:4136:e378:8000:63bf:80ff:fffe")}
	b.ReportAllocs()
	for b.Loop() {
		for _, a := range addrs {
			ClassifyAddr(a)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("full.yaml", data, LayerProject); err != nil {
			b.Fatal(err)
		}
	}
}
