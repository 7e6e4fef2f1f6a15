package policy

import (
	"net/netip"
	"testing"
)

var classifyTests = []struct{ addr, want string }{
	// Public.
	{"8.8.8.8", ""},
	{"1.1.1.1", ""},
	{"168.63.129.15", ""},
	{"100.63.255.255", ""},
	{"100.128.0.0", ""},
	{"172.15.255.255", ""},
	{"172.32.0.0", ""},
	{"2606:4700:4700::1111", ""},
	{"2a00:1450:4001:80b::200e", ""},
	{"::ffff:8.8.8.8", ""},
	{"64:ff9b::808:808", ""},
	{"2002:808:808::1", ""},
	{"2001:0:808:808:8000:63bf:f7f7:f7f7", ""}, // Teredo: server 8.8.8.8, client 8.8.8.8
	// IPv4 classes.
	{"0.0.0.0", "unspecified"},
	{"0.1.2.3", "unspecified"},
	{"10.0.0.1", "private"},
	{"172.16.0.1", "private"},
	{"172.31.255.255", "private"},
	{"192.168.1.1", "private"},
	{"127.0.0.1", "loopback"},
	{"127.255.255.254", "loopback"},
	{"169.254.169.254", "metadata"},
	{"169.254.170.2", "metadata"},
	{"169.254.170.23", "metadata"},
	{"100.100.100.200", "metadata"},
	{"168.63.129.16", "metadata"},
	{"169.254.1.1", "link-local"},
	{"100.64.0.1", "cgnat"},
	{"100.127.255.255", "cgnat"},
	{"192.0.0.8", "reserved"},
	{"192.88.99.1", "reserved"},
	{"192.0.2.1", "documentation"},
	{"198.51.100.7", "documentation"},
	{"203.0.113.7", "documentation"},
	{"198.18.0.1", "benchmarking"},
	{"198.19.255.255", "benchmarking"},
	{"224.0.0.1", "multicast"},
	{"239.255.255.250", "multicast"},
	{"240.0.0.1", "reserved"},
	{"255.255.255.255", "broadcast"},
	// IPv6 classes.
	{"::", "unspecified"},
	{"::1", "loopback"},
	{"fe80::1", "link-local"},
	{"febf::1", "link-local"},
	{"fec0::1", "site-local"},
	{"fc00::1", "unique-local"},
	{"fd12:3456::1", "unique-local"},
	{"fd00:ec2::254", "metadata"},
	{"fd00:ec2::23", "metadata"},
	{"fd20:ce::254", "metadata"},
	{"ff02::1", "multicast"},
	{"100::1", "discard"},
	{"2001:db8::1", "documentation"},
	{"3fff::1", "documentation"},
	{"2001:2::1", "benchmarking"},
	{"2001:10::1", "reserved"},
	{"2001:20::1", "reserved"},
	{"5f00::1", "reserved"},
	{"4000::1", "reserved"},
	{"::2:0:0:0:1", "reserved"},
	// IPv4 embedded in IPv6.
	{"::ffff:127.0.0.1", "loopback (IPv4-mapped)"},
	{"::ffff:169.254.169.254", "metadata (IPv4-mapped)"},
	{"::ffff:10.0.0.1", "private (IPv4-mapped)"},
	{"::ffff:0:10.0.0.1", "private (IPv4-translated)"},
	{"::127.0.0.1", "loopback (IPv4-compatible)"},
	{"::10.0.0.1", "private (IPv4-compatible)"},
	{"::8.8.8.8", ""},
	{"64:ff9b::a9fe:a9fe", "metadata (NAT64)"},
	{"64:ff9b::7f00:1", "loopback (NAT64)"},
	{"64:ff9b:1::a00:1", "private (NAT64)"},
	{"64:ff9b:1:7f00:0:1:808:808", "loopback (NAT64)"}, // 127.0.0.1 in the /48 position, 8.8.8.8 in the /96 one
	{"2002:7f00:1::", "loopback (6to4)"},
	{"2002:a9fe:a9fe::1", "metadata (6to4)"},
	{"2002:c0a8:101::1", "private (6to4)"},
	{"2001:0:7f00:1::1", "loopback (Teredo)"},                          // server 127.0.0.1
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation (Teredo)"}, // RFC 4380: client 192.0.2.45
	{"2001:0:808:808:8000:63bf:80ff:fffe", "loopback (Teredo)"},        // client ^80ff:fffe = 127.0.0.1
	{"2001:0:808:808:8000:63bf:5601:5601", "metadata (Teredo)"},        // client 169.254.169.254
	// Zones are ignored.
	{"fe80::1%eth0", "link-local"},
}

func TestClassifyAddr(t *testing.T) {
	for _, tt := range classifyTests {
		a, err := netip.ParseAddr(tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := ClassifyAddr(a); got != tt.want {
			t.Errorf("ClassifyAddr(%s) = %q; want %q", tt.addr, got, tt.want)
		}
	}
	if got := ClassifyAddr(netip.Addr{}); got != "invalid" {
		t.Errorf("ClassifyAddr(zero) = %q; want \"invalid\"", got)
	}
}
