package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/errors/*")
	more, _ := filepath.Glob("testdata/*/*.yaml")
	files = append(files, more...)
	files = append(files, "testdata/full.yaml", "testdata/full.json")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, name := range ProfileNames() {
		data, err := profileFiles.ReadFile("profiles/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data, LayerManaged)
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("Parse error is %T %v; want a non-empty Errors", err, err)
			}
			for _, e := range es {
				if e.File != "fuzz.yaml" || strings.ContainsAny(e.Msg, "\n\r\x00") || strings.ContainsAny(e.Key, "\n\r\x00") {
					t.Fatalf("Parse error %q: want it in fuzz.yaml, on one line, control characters quoted", e.Error())
				}
			}
			return
		}
		out := p.FormatYAML()
		again, err := Parse("show.yaml", out, LayerManaged)
		if err != nil {
			t.Fatalf("Parse(FormatYAML()): %v\n%s", err, out)
		}
		if got, want := stripOrigins(again.FormatYAML()), stripOrigins(out); got != want {
			t.Fatalf("FormatYAML, parsed and formatted again:\n%s\nwant:\n%s", got, want)
		}
		if _, err := p.FormatJSON(); err != nil {
			t.Fatalf("FormatJSON: %v", err)
		}
	})
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7F {
			return true
		}
	}
	return false
}

func FuzzHostRule(f *testing.F) {
	for _, tt := range hostRuleTests {
		f.Add(tt.in)
	}
	for _, tt := range normalizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if h, err := NormalizeHost(s); err == nil {
			if hasCtl(h) || strings.ContainsAny(h, " */:@[]%") && !strings.Contains(h, ":") {
				t.Fatalf("NormalizeHost(%q) = %q", s, h)
			}
			if h != strings.ToLower(h) {
				t.Fatalf("NormalizeHost(%q) = %q: not lower case", s, h)
			}
			if hasCtl(s) {
				t.Fatalf("NormalizeHost(%q) accepted a control character", s)
			}
			if again, err := NormalizeHost(h); err != nil || again != h {
				t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q, %v", s, h, h, again, err)
			}
		}
		r, err := ParseHostRule(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), `"`) {
				t.Fatalf("ParseHostRule(%q) error %q does not quote the entry", s, err)
			}
			return
		}
		if hasCtl(s) {
			t.Fatalf("ParseHostRule(%q) accepted a control character", s)
		}
		again, err := ParseHostRule(r.String())
		if err != nil || again.String() != r.String() || again.Wildcard != r.Wildcard || again.IsPrefix != r.IsPrefix ||
			again.Prefix != r.Prefix || again.Port != r.Port || again.Name != r.Name {
			t.Fatalf("ParseHostRule(%q) = %+v, but its String %q parses to %+v, %v", s, r, r.String(), again, err)
		}
		if r.IsPrefix {
			if _, err := netip.ParsePrefix(r.Prefix); err != nil {
				t.Fatalf("ParseHostRule(%q).Prefix = %q: %v", s, r.Prefix, err)
			}
		} else if r.Wildcard != strings.HasPrefix(r.Name, "*.") || strings.Count(r.Name, "*") > 1 {
			t.Fatalf("ParseHostRule(%q) = %+v", s, r)
		}
	})
}

func FuzzEgress(f *testing.F) {
	for _, tt := range egressTests {
		f.Add(tt.host, tt.port, []byte(nil))
	}
	for _, tt := range egressAddrTests {
		a := netip.MustParseAddr(tt.addr)
		f.Add(tt.host, tt.port, a.AsSlice())
	}
	enforce, err := Load(LoadOptions{Managed: "testdata/egress/managed.yaml", Project: "testdata/egress/project.yaml"})
	if err != nil {
		f.Fatal(err)
	}
	report := *enforce
	report.Network.Mode = Report
	f.Fuzz(func(t *testing.T, host string, port uint16, addr []byte) {
		for _, p := range []*Policy{enforce, &report} {
			d := p.Egress(host, port)
			if d.Verdict == Deny && d.WouldDeny || d.Verdict == Ask {
				t.Fatalf("Egress(%q, %d) = %+v", host, port, d)
			}
			if !d.Allowed() {
				continue
			}
			if hasCtl(host) {
				t.Fatalf("Egress(%q, %d) = %+v: allowed a host with a control character", host, port, d)
			}
			h, err := NormalizeHost(host)
			if err != nil {
				t.Fatalf("Egress(%q, %d) = %+v, but NormalizeHost: %v", host, port, d, err)
			}
			if again := p.Egress(h, port); again != d {
				t.Fatalf("Egress(%q, %d) = %+v, but Egress(%q) = %+v", host, port, d, h, again)
			}
			if d.WouldDeny {
				continue
			}
			// What allowed it must be an allow entry that covers it.
			a, isIP := netip.ParseAddr(h)
			found := false
			for i := range p.Network.Allow {
				r := &p.Network.Allow[i]
				if r.Origin.String() == d.Rule && allowPort(r.Port, port) &&
					(isIP == nil && r.IsPrefix && r.matchAddr(a) || isIP != nil && r.matchName(h)) {
					found = true
				}
			}
			if !found {
				t.Fatalf("Egress(%q, %d) = %+v: no network.allow entry covers it", host, port, d)
			}
		}
		a, ok := netip.AddrFromSlice(addr)
		if !ok {
			return
		}
		d := enforce.EgressAddr(host, a, port)
		if !d.Allowed() || d.Rule == RulePublicAddress && ClassifyAddr(a) == "" {
			return
		}
		h, _ := NormalizeHost(host)
		found := false
		for i := range enforce.Network.AllowPrivate {
			r := &enforce.Network.AllowPrivate[i]
			if r.Origin.String() == d.Rule && anyPort(r.Port, port) && (r.matchAddr(a) || r.matchName(h)) {
				found = true
			}
		}
		if !found {
			t.Fatalf("EgressAddr(%q, %s, %d) = %+v: a %q address no network.allow_private entry covers", host, a, port, d, ClassifyAddr(a))
		}
	})
}
