package policy

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func parseFile(t *testing.T, path, layer string) *Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(path, data, layer)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A JSON file (tab-indented, as JSON often is) reads as its YAML twin.
func TestParseJSON(t *testing.T) {
	y := parseFile(t, "testdata/full.yaml", LayerProject)
	j := parseFile(t, "testdata/full.json", LayerProject)
	if got, want := stripOrigins(j.FormatYAML()), stripOrigins(y.FormatYAML()); got != want {
		t.Errorf("full.json:\n%s\nfull.yaml:\n%s", got, want)
	}
	golden(t, "full.golden", y.FormatYAML())
}

// FormatYAML's output parses back to the same values.
func TestFormatRoundTrip(t *testing.T) {
	var ps []*Policy
	for _, name := range ProfileNames() {
		p, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	ps = append(ps, parseFile(t, "testdata/full.yaml", LayerProject), parseFile(t, "testdata/full.json", LayerUser))
	for _, opts := range []LoadOptions{
		{Managed: "testdata/layers/managed.yaml", Project: "testdata/layers/project.yaml", User: "testdata/layers/user.yaml"},
		{Managed: "testdata/egress/managed.yaml", Project: "testdata/egress/project.yaml", Profile: "dev"},
	} {
		p, err := Load(opts)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		out := p.FormatYAML()
		again, err := Parse("show.yaml", out, LayerManaged)
		if err != nil {
			t.Errorf("Parse(FormatYAML()): %v\n%s", err, out)
			continue
		}
		if got, want := stripOrigins(again.FormatYAML()), stripOrigins(out); got != want {
			t.Errorf("FormatYAML, parsed and formatted again:\n%s\nwant:\n%s", got, want)
		}
	}
}

func TestYAMLString(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"api.anthropic.com", "api.anthropic.com"},
		{"example.com:8443", "example.com:8443"},
		{".", "."},
		{"./build", "./build"},
		{"~/.ssh", "~/.ssh"},
		{"/tmp:1g", "/tmp:1g"},
		{"FOO=bar", "FOO=bar"},
		{"2g", "2g"},
		{"*.github.com", `"*.github.com"`},
		{"[::1]:8080", `"[::1]:8080"`},
		{"::1", `"::1"`},
		{"~", `"~"`},
		{"", `""`},
		{"null", `"null"`},
		{"True", `"True"`},
		{"off", `"off"`},
		{"1.5", `"1.5"`},
		{"1000", `"1000"`},
		{"0x10", `"0x10"`},
		{"1e3", `"1e3"`},
		{".5", `".5"`},
		{"1000:1000", `"1000:1000"`},
		{"a:", `"a:"`},
		{"-x", `"-x"`},
		{"x-api-key: {secret}", `"x-api-key: {secret}"`},
		{"a #b", `"a #b"`},
		{"tab\there", `"tab\there"`},
		{"bücher", `"bücher"`},
	} {
		got := yamlString(tt.in)
		if got != tt.want {
			t.Errorf("yamlString(%q) = %s; want %s", tt.in, got, tt.want)
		}
		var back string
		if err := yaml.Unmarshal([]byte("v: "+got), &struct{ V *string }{&back}); err != nil || back != tt.in {
			t.Errorf("yamlString(%q) = %s reads back as %q, %v", tt.in, got, back, err)
		}
	}
}

// The complete policies in docs/policy.md load, and its lock example fails
// as the page says.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if !strings.Contains(block, "version: 1") {
			continue
		}
		n++
		if _, err := Parse("policy.md", []byte(block), LayerManaged); err != nil {
			t.Errorf("docs/policy.md example:\n%s\n%v", block, err)
		}
	}
	if n < 2 {
		t.Errorf("docs/policy.md has %d complete examples; want at least 2", n)
	}

	i := strings.Index(string(doc), "```yaml\n# /etc/moat/policy.yaml\n")
	if i < 0 {
		t.Fatal("docs/policy.md has no managed example")
	}
	managed := string(doc[i+len("```yaml\n"):])
	managed = managed[:strings.Index(managed, "```")]
	m, err := Parse("/etc/moat/policy.yaml", []byte(managed), LayerManaged)
	if err != nil {
		t.Fatal(err)
	}
	project, err := Parse("moat.yaml", []byte("version: 1\nnetwork:\n  deny: [x.example]\n  allow_private: []\n  allow:\n    - example.org\n"), LayerProject)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := Builtin("default")
	_, err = Merge(base, project, m)
	const want = "moat.yaml:6: network.allow: locked by /etc/moat/policy.yaml:4 (managed); this layer cannot widen it"
	if err == nil || err.Error() != want || !strings.Contains(string(doc), "moat: policy "+want+"\n") {
		t.Errorf("the managed example: Merge error %v; want %s, as docs/policy.md shows", err, want)
	}
}
