package policy

import "testing"

// permissions.severity is kept as "SEVERITY=VERDICT,…", most severe
// first, whether written as a mapping or as that string.
func TestSeverity(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"severity: {high: ask, critical: deny}", "critical=deny,high=ask"},
		{"severity:\n    medium: ask\n    info: allow", "medium=ask,info=allow"},
		{`severity: "high=deny, critical=deny"`, "critical=deny,high=deny"},
		{"severity: critical=allow", "critical=allow"},
	} {
		src := "version: 1\npermissions:\n  " + tt.yaml + "\n"
		p, err := Parse("moat.yaml", []byte(src), LayerProject)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.yaml, err)
			continue
		}
		if s := p.Permissions.Severity; s.Value != tt.want || s.Origin.String() != "moat.yaml:3 permissions.severity" {
			t.Errorf("Parse(%q): severity %q at %s; want %q at moat.yaml:3 permissions.severity", tt.yaml, s.Value, s.Origin, tt.want)
		}
	}
}

// A managed layer may lock permissions.severity; then no lower layer may
// set it, and the managed mapping stands.
func TestSeverityLock(t *testing.T) {
	t.Chdir("testdata/layers")
	_, err := Load(LoadOptions{Managed: "managed-severity.yaml", Project: "project-severity.yaml", ProjectRequired: true})
	want := `project-severity.yaml:3: permissions.severity: locked by managed-severity.yaml:2 (managed); this layer cannot set it`
	if err == nil || err.Error() != want {
		t.Errorf("Load error:\n got: %v\nwant: %s", err, want)
	}
	p, err := Load(LoadOptions{Managed: "managed-severity.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Permissions.Severity; s.Value != "critical=deny,high=deny" || s.Origin.String() != "managed-severity.yaml:4 permissions.severity" {
		t.Errorf("severity %q at %s; want critical=deny,high=deny at managed-severity.yaml:4", s.Value, s.Origin)
	}
	p, err = Load(LoadOptions{Project: "project-severity.yaml", ProjectRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Permissions.Severity; s.Value != "high=allow,medium=ask" {
		t.Errorf("severity %q; want high=allow,medium=ask", s.Value)
	}
}
