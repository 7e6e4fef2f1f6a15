package policy

import "net/netip"

// ClassifyAddr returns "" for a public address, else the class of address
// moat refuses to dial without network.allow_private:
//
//	unspecified, loopback, private (RFC 1918), unique-local (fc00::/7),
//	link-local, site-local (fec0::/10), cgnat (100.64.0.0/10), multicast,
//	broadcast, metadata (cloud instance metadata services, also outside
//	link-local: 100.100.100.200, 168.63.129.16, fd00:ec2::254, ...),
//	documentation, benchmarking, discard (100::/64), reserved
//
// IPv6 addresses that embed an IPv4 address are judged by it:
// IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96),
// IPv4-compatible (::/96 but :: and ::1), NAT64 (64:ff9b::/96 and
// 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32, both the server
// and the de-obfuscated client address). A non-public embedded address gives
// its class and the form, "loopback (IPv4-mapped)"; a public one gives "".
// A zone is ignored; the zero Addr is "invalid".
func ClassifyAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	if a.Is4() {
		return classify4(a.As4())
	}
	b := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	last := [4]byte{b[12], b[13], b[14], b[15]}
	switch {
	case hi == 0 && lo>>32 == 0xFFFF:
		return embedded(classify4(last), "IPv4-mapped")
	case hi == 0 && lo>>32 == 0xFFFF_0000:
		return embedded(classify4(last), "IPv4-translated")
	case hi == 0 && lo>>32 == 0:
		switch lo {
		case 0:
			return "unspecified"
		case 1:
			return "loopback"
		}
		return embedded(classify4(last), "IPv4-compatible")
	case hi == 0x0064_FF9B_0000_0000 && lo>>32 == 0:
		return embedded(classify4(last), "NAT64")
	case hi>>16 == 0x0064_FF9B_0001:
		// Local-use NAT64 prefixes may be of any length (RFC 8215): judge
		// the address in the /96 position and in the /48 one (RFC 6052).
		if c := classify4(last); c != "" {
			return embedded(c, "NAT64")
		}
		return embedded(classify4([4]byte{b[6], b[7], b[9], b[10]}), "NAT64")
	case hi>>48 == 0x2002:
		return embedded(classify4([4]byte{b[2], b[3], b[4], b[5]}), "6to4")
	case hi>>32 == 0x2001_0000:
		if c := classify4([4]byte{b[4], b[5], b[6], b[7]}); c != "" {
			return embedded(c, "Teredo")
		}
		return embedded(classify4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo")
	}
	switch {
	case hi>>54 == 0xFE80>>6: // fe80::/10
		return "link-local"
	case hi>>54 == 0xFEC0>>6: // fec0::/10
		return "site-local"
	case a == metadataEC2v6 || a == metadataEKSv6 || a == metadataGCEv6:
		return "metadata"
	case hi>>57 == 0xFC00>>9: // fc00::/7
		return "unique-local"
	case hi>>56 == 0xFF:
		return "multicast"
	case hi == 0x0100_0000_0000_0000: // 100::/64
		return "discard"
	case hi>>32 == 0x2001_0DB8, hi>>44 == 0x3FFF0: // 2001:db8::/32, 3fff::/20
		return "documentation"
	case hi>>16 == 0x2001_0002_0000: // 2001:2::/48
		return "benchmarking"
	case hi>>36 == 0x2001_001, hi>>36 == 0x2001_002: // ORCHID 2001:10::/28, 2001:20::/28
		return "reserved"
	case hi>>48 == 0x5F00: // SRv6 SIDs, 5f00::/16
		return "reserved"
	case hi>>61 != 1: // outside 2000::/3, the global unicast space
		return "reserved"
	}
	return ""
}

var (
	metadataEC2v6 = netip.MustParseAddr("fd00:ec2::254") // AWS instance metadata
	metadataEKSv6 = netip.MustParseAddr("fd00:ec2::23")  // AWS EKS pod identity agent
	metadataGCEv6 = netip.MustParseAddr("fd20:ce::254")  // Google Compute Engine metadata
)

func embedded(class, form string) string {
	if class == "" {
		return ""
	}
	return class + " (" + form + ")"
}

func classify4(b [4]byte) string {
	switch {
	case b[0] == 0:
		return "unspecified"
	case b[0] == 10:
		return "private"
	case b[0] == 127:
		return "loopback"
	case b == [4]byte{169, 254, 169, 254}, // AWS, GCP, Azure, OCI... instance metadata
		b == [4]byte{169, 254, 170, 2},   // AWS ECS task metadata
		b == [4]byte{169, 254, 170, 23},  // AWS EKS pod identity agent
		b == [4]byte{100, 100, 100, 200}, // Alibaba Cloud metadata
		b == [4]byte{168, 63, 129, 16}:   // Azure wire server, in public space
		return "metadata"
	case b[0] == 169 && b[1] == 254:
		return "link-local"
	case b[0] == 100 && b[1]&0xC0 == 64:
		return "cgnat"
	case b[0] == 172 && b[1]&0xF0 == 16, b[0] == 192 && b[1] == 168:
		return "private"
	case b[0] == 192 && b[1] == 0 && b[2] == 0, // IETF protocol assignments
		b[0] == 192 && b[1] == 88 && b[2] == 99: // 6to4 relay anycast
		return "reserved"
	case b[0] == 192 && b[1] == 0 && b[2] == 2,
		b[0] == 198 && b[1] == 51 && b[2] == 100,
		b[0] == 203 && b[1] == 0 && b[2] == 113:
		return "documentation"
	case b[0] == 198 && b[1]&0xFE == 18:
		return "benchmarking"
	case b == [4]byte{255, 255, 255, 255}:
		return "broadcast"
	case b[0] >= 224 && b[0] < 240:
		return "multicast"
	case b[0] >= 240:
		return "reserved"
	}
	return ""
}
