package permission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// Explain's report on the built-in profiles and crafted policies, as text
// and JSON, against testdata/explain/NAME.txt and NAME.json (-update
// rewrites them).
func TestExplainGolden(t *testing.T) {
	t.Chdir("testdata")
	type input struct {
		name string
		load func() (*policy.Policy, error)
	}
	var inputs []input
	for _, n := range policy.ProfileNames() {
		inputs = append(inputs, input{"profile-" + n, func() (*policy.Policy, error) { return policy.Builtin(n) }})
	}
	files, _ := filepath.Glob("explain/*.yaml")
	if len(files) < 4 {
		t.Fatalf("found %d crafted policies; want at least 4", len(files))
	}
	for _, f := range files {
		inputs = append(inputs, input{strings.TrimSuffix(filepath.Base(f), ".yaml"), func() (*policy.Policy, error) { return policy.LoadFile(f) }})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			p, err := in.load()
			if err != nil {
				t.Fatal(err)
			}
			x := Explain(p)
			js, err := json.MarshalIndent(x, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			for ext, got := range map[string]string{".txt": x.FormatText(), ".json": string(js) + "\n"} {
				file := filepath.Join("explain", in.name+ext)
				if *update {
					if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test -update to write it)", err)
				}
				if got != string(want) {
					t.Errorf("%s: got:\n%s\nwant:\n%s", file, got, want)
				}
			}
		})
	}
}

// The verdicts the golden files hold, stated so that a careless -update
// cannot turn them.
func TestExplainVerdicts(t *testing.T) {
	t.Chdir("testdata")
	for _, tt := range []struct {
		profile, file string
		lethal        bool
		legs          [3]bool // private data, untrusted input, a way out
		breakFirst    string
	}{
		{profile: "default", legs: [3]bool{true, false, false}},
		{profile: "strict", legs: [3]bool{true, false, false}},
		{profile: "claude", legs: [3]bool{true, false, false}},
		// dev masks the registries' publishing tokens, which leaves no way out.
		{profile: "dev", legs: [3]bool{true, true, false}},
		{file: "explain/open.yaml", lethal: true, legs: [3]bool{true, true, true}, breakFirst: LegPrivateData},
		{file: "explain/github-token.yaml", lethal: true, legs: [3]bool{true, true, true}, breakFirst: LegUntrustedInput},
		{file: "explain/github-readonly.yaml", legs: [3]bool{true, true, false}},
		{file: "explain/workspace-only.yaml", legs: [3]bool{false, true, true}},
	} {
		var p *policy.Policy
		var err error
		if tt.file != "" {
			p, err = policy.LoadFile(tt.file)
		} else {
			p, err = policy.Builtin(tt.profile)
		}
		if err != nil {
			t.Fatal(err)
		}
		x := Explain(p)
		got := [3]bool{x.PrivateData.Present, x.UntrustedInput.Present, x.WayOut.Present}
		if x.Lethal != tt.lethal || got != tt.legs || tt.lethal && x.Break[0] != tt.breakFirst {
			t.Errorf("Explain(%s%s) = lethal %v, legs %v, break %v; want %v, %v, %q", tt.profile, tt.file, x.Lethal, got, x.Break, tt.lethal, tt.legs, tt.breakFirst)
		}
	}
}
