package verify

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCatalogue(t *testing.T) {
	ps := Catalogue()
	if len(ps) < 40 {
		t.Fatalf("%d probes; the issue asks for at least 40", len(ps))
	}
	seen := map[string]bool{}
	groups := map[Group]int{}
	for _, p := range ps {
		if seen[p.Name] || p.run == nil || p.Title == "" {
			t.Errorf("probe %q: duplicate, no run or no title", p.Name)
		}
		seen[p.Name] = true
		groups[p.Group]++
	}
	for _, g := range Groups {
		if groups[g] == 0 {
			t.Errorf("group %s has no probe", g)
		}
	}
}

func TestFindCanary(t *testing.T) {
	canary := CanaryPrefix + "0123456789abcdef0123456789abcdef"
	c := &Config{Canaries: map[string]string{Hash(canary): "the test"}}
	if what, ok := c.findCanary([]byte("x=" + canary + "\n")); !ok || what != "the test" {
		t.Errorf("findCanary = %q, %v; want the test, true", what, ok)
	}
	other := CanaryPrefix + "ffffffffffffffffffffffffffffffff"
	if _, ok := c.findCanary([]byte(other + " " + canary[:len(canary)-1])); ok {
		t.Error("found a canary that is not planted, or a truncated one")
	}
}

func line(r Result) string {
	b, _ := json.Marshal(r)
	return string(b) + "\n"
}

// TestParseResults: the output comes from inside the sandbox; only the
// expected probes in order count, groups and titles come from the
// catalogue, and a made-up verdict is an escape.
func TestParseResults(t *testing.T) {
	names := []string{"read-masked", "dns", "fork-bomb"}
	out := "noise\n" + line(Result{Name: "read-masked", Status: Held, Evidence: "e1", Group: "forged"}) +
		line(Result{Name: "dns", Status: "fine", Evidence: "e2"}) +
		line(Result{Name: "fork-bomb", Status: NotApplicable, Evidence: "e3"})
	rs := ParseResults([]byte(out), names)
	if len(rs) != 3 {
		t.Fatalf("%d results; want 3: %+v", len(rs), rs)
	}
	if rs[0].Group != GroupFiles || rs[0].Title == "" {
		t.Errorf("group and title not from the catalogue: %+v", rs[0])
	}
	if rs[1].Status != Escaped || !strings.Contains(rs[1].Evidence, `invalid verdict "fine"`) {
		t.Errorf("a made-up verdict: %+v; want escaped", rs[1])
	}
	// Out of order: a result for a probe not yet due ends the parse.
	rs = ParseResults([]byte(line(Result{Name: "dns", Status: Held})+line(Result{Name: "read-masked", Status: Held})), names)
	if len(rs) != 0 {
		t.Errorf("out-of-order output accepted: %+v", rs)
	}
}

func FuzzParseResults(f *testing.F) {
	f.Add([]byte(line(Result{Name: "read-masked", Status: Held, Evidence: "x"})))
	f.Add([]byte("{\"name\":\"read-masked\",\"status\":\"held\"}\n{\"name\":\"read-symlink\"}\n"))
	f.Add([]byte("\x00{]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs := ParseResults(b, nil)
		cat := Catalogue()
		if len(rs) > len(cat) {
			t.Fatalf("%d results for %d probes", len(rs), len(cat))
		}
		for i, r := range rs {
			if r.Name != cat[i].Name || r.Group != cat[i].Group {
				t.Fatalf("result %d is %q (%s); want %q", i, r.Name, r.Group, cat[i].Name)
			}
			if r.Status != Held && r.Status != Escaped && r.Status != NotApplicable {
				t.Fatalf("status %q passed through", r.Status)
			}
		}
	})
}

func TestScorecard(t *testing.T) {
	r := &Report{Tier: "native", Policy: []string{"profile:default"}, Results: []Result{
		{Name: "read-masked", Group: GroupFiles, Status: Held, Evidence: "masked"},
		{Name: "dns", Group: GroupNetwork, Status: Escaped, Evidence: "resolved"},
		{Name: "cpu-hog", Group: GroupResources, Status: NotApplicable, Evidence: "no quota"},
	}}
	var b bytes.Buffer
	Scorecard(&b, r, false)
	want := "moat verify: native tier, policy profile:default\n\nfiles\n  held     read-masked        masked\n\nnetwork\n  escaped  dns                resolved\n\nresources\n  n/a      cpu-hog            no quota\n\n1/2 held, 1 not applicable, 1 escaped\n"
	if b.String() != want {
		t.Errorf("scorecard:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	Scorecard(&b, r, true)
	if !strings.Contains(b.String(), "\x1b[1;31mescaped") || !strings.Contains(b.String(), "\x1b[32mheld") {
		t.Errorf("no colour when asked:\n%q", b.String())
	}
	b.Reset()
	WriteJSON(&b, r)
	var got struct {
		Held, Escaped int
		NA            int `json:"not_applicable"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.Held != 1 || got.Escaped != 1 || got.NA != 1 {
		t.Errorf("JSON counts: %+v, %v\n%s", got, err, b.String())
	}
}
