package workspace

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/zricethezav/gitleaks/v8/detect/codec"
)

var mayDecodeTests = []struct {
	in   string
	want bool
}{
	{"", false},
	{"package main\n\nfunc resultLengthOfTheHandler() int { return 0 }\n", false},
	{`fmt.Printf("%s %v %q\n", a, b, c)`, false},
	{"config: " + base64.StdEncoding.EncodeToString([]byte("token: ghp_0123456789")), true},
	{"x=" + base64.RawURLEncoding.EncodeToString([]byte("password=hunter2hunter2")), true},
	{"h=" + hex.EncodeToString([]byte("a secret in hex form")), true},
	{"u=" + url.QueryEscape("key=a b&c=d"), true},
	{`s = "\u0041\u0042"`, true},
	{"U+0041 U+0042", true},
	{"sha256:" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", false},
}

func TestMayDecode(t *testing.T) {
	t.Parallel()
	for _, tt := range mayDecodeTests {
		if got := mayDecode([]byte(tt.in)); got != tt.want {
			t.Errorf("mayDecode(%q) = %v; want %v", tt.in, got, tt.want)
		}
		// The control: gitleaks' decoder agrees where mayDecode says no.
		if _, segs := codec.NewDecoder().Decode(tt.in, nil); len(segs) > 0 && !mayDecode([]byte(tt.in)) {
			t.Errorf("gitleaks decodes %d segments in %q, but mayDecode says none", len(segs), tt.in)
		}
	}
}

// mayDecode must answer true whenever gitleaks' decoder finds a segment;
// otherwise skipping the decoding would lose findings.
func FuzzMayDecode(f *testing.F) {
	for _, tt := range mayDecodeTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if mayDecode(b) {
			return
		}
		if _, segs := codec.NewDecoder().Decode(string(b), nil); len(segs) > 0 {
			t.Fatalf("gitleaks decodes %d segments in %q, but mayDecode says nothing decodes", len(segs), b)
		}
	})
}
