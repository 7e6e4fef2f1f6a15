package policy

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestLoadLayers(t *testing.T) {
	t.Chdir("testdata/layers")
	p, err := Load(LoadOptions{Managed: "managed.yaml", Project: "project.yaml", User: "user.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir("../..")
	golden(t, "layers.golden", p.FormatYAML())
	js, err := p.FormatJSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "layers.golden.json", js)

	// The facts the golden files show, asserted one by one.
	if p.Profile != "strict" || p.ProfileOrigin != (Origin{Layer: LayerProject, File: "project.yaml", Line: 2, Key: "profile"}) {
		t.Errorf("profile = %q from %+v; want strict from project.yaml:2", p.Profile, p.ProfileOrigin)
	}
	wantLayers := []Origin{
		{Layer: LayerManaged, File: "managed.yaml"}, {Layer: LayerProject, File: "project.yaml"},
		{Layer: LayerUser, File: "user.yaml"}, {Layer: "profile:strict", File: "profile:strict"},
	}
	if len(p.Layers) != len(wantLayers) {
		t.Fatalf("Layers = %v; want %v", p.Layers, wantLayers)
	}
	for i := range wantLayers {
		if p.Layers[i] != wantLayers[i] {
			t.Errorf("Layers[%d] = %v; want %v", i, p.Layers[i], wantLayers[i])
		}
	}
	for _, c := range []struct {
		what, got, want string
	}{
		{"network.mode", p.Network.ModeOrigin.String(), "managed.yaml:7 network.mode"},
		{"resources.memory", p.Resources.Memory.Value + " " + p.Resources.Memory.Origin.String(), "2g managed.yaml:13 resources.memory"},
		{"resources.pids", itoa(int(p.Resources.Pids.Value)) + " " + p.Resources.Pids.Origin.String(), "256 profile:strict resources.pids"},
		{"network.deny", p.Network.Deny[0].String() + " " + p.Network.Deny[0].Origin.String() + ", " +
			p.Network.Deny[1].String() + " " + p.Network.Deny[1].Origin.String(),
			"*.evil.example managed.yaml:11 network.deny[0], tracker.example project.yaml:5 network.deny[0]"},
		{"process.env", p.Process.Env[0].Value + " " + p.Process.Env[1].Value + " " + p.Process.Env[2].Value, "TERM FOO=project EDITOR"},
		{"deny_read[1]", p.Filesystem.DenyRead[1].Value + " " + p.Filesystem.DenyRead[1].Origin.String(), "~/.ssh project.yaml:11 filesystem.deny_read[1]"},
		{"permissions.default_mode", p.Permissions.DefaultMode.Value + " " + cite(p.Permissions.DefaultMode.Origin), "deny profile:strict"},
		{"isolation.hostname", p.Isolation.Hostname.Value + " " + cite(p.Isolation.Hostname.Origin), "sandbox user.yaml:11 (user)"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q; want %q", c.what, c.got, c.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	t.Chdir("testdata/layers")
	for _, tt := range []struct {
		name string
		opts LoadOptions
		want string
	}{
		{"locked scalar and list", LoadOptions{Managed: "managed.yaml", Project: "project-locked.yaml"},
			`project-locked.yaml:3: network.mode: locked by managed.yaml:4 (managed); this layer cannot set it
project-locked.yaml:5: network.allow: locked by managed.yaml:3 (managed); this layer cannot widen it`},
		{"locked section", LoadOptions{Managed: "managed-profile.yaml", User: "project-locked.yaml"},
			`project-locked.yaml:11: permissions.allow: locked by managed-profile.yaml:2 (managed); this layer cannot widen it
project-locked.yaml:13: permissions.default_mode: locked by managed-profile.yaml:2 (managed); this layer cannot set it`},
		{"profile widens a locked list", LoadOptions{Managed: "managed.yaml", Project: "project-dev.yaml"},
			`project-dev.yaml:2: profile: "dev": network.allow is locked by managed.yaml:3 (managed); the dev profile would widen it`},
		{"flag profile widens a locked list", LoadOptions{Managed: "managed.yaml", Profile: "dev"},
			`--profile: "dev": network.allow is locked by managed.yaml:3 (managed); the dev profile would widen it`},
		{"flag profile changes locked scalars", LoadOptions{Managed: "managed-resources.yaml", Profile: "strict"},
			`--profile: "strict": resources.memory is locked by managed-resources.yaml:2 (managed); the strict profile would change it
--profile: "strict": resources.pids is locked by managed-resources.yaml:2 (managed); the strict profile would change it`},
		{"locked profile, flag", LoadOptions{Managed: "managed-profile.yaml", Profile: "dev"},
			`--profile: locked by managed-profile.yaml:2 (managed); the flag cannot set it`},
		{"locked profile, file", LoadOptions{Managed: "managed-profile.yaml", Project: "project-dev.yaml"},
			`project-dev.yaml:2: profile: locked by managed-profile.yaml:2 (managed); this layer cannot set it`},
		{"credential defined twice", LoadOptions{User: "user-credential.yaml", Project: "project.yaml"},
			`project.yaml:13: credentials[0].name: "github": already defined at user-credential.yaml:3 (user); give this credential another name`},
		{"every file's errors", LoadOptions{User: "broken.yaml", Project: "../errors/bad-version.yaml"},
			`broken.yaml:2: netwrk: unknown key; did you mean "network"?
../errors/bad-version.yaml:1: version: "2": unsupported version; write "version: 1"`},
		{"unknown flag profile", LoadOptions{Profile: "prod"},
			`--profile: "prod": unknown profile; want default, strict, dev or claude`},
		{"misspelt flag profile", LoadOptions{Profile: "stict"},
			`--profile: "stict": unknown profile; did you mean "strict"?`},
		{"missing project", LoadOptions{Project: "nope.yaml", ProjectRequired: true}, `nope.yaml: cannot read: no such file`},
		{"missing managed", LoadOptions{Managed: "nope.yaml", ManagedRequired: true}, `nope.yaml: cannot read: no such file`},
		{"missing user", LoadOptions{User: "nope.yaml", UserRequired: true}, `nope.yaml: cannot read: no such file`},
		{"directory", LoadOptions{Project: ".", ProjectRequired: true}, `.: cannot read: is a directory`},
	} {
		p, err := Load(tt.opts)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: Load(%+v) = %v, error:\n%v\nwant:\n%s", tt.name, tt.opts, p != nil, err, tt.want)
		}
	}
}

func TestLoadOptional(t *testing.T) {
	t.Chdir("testdata/layers")
	// Missing files that nobody named are skipped; an empty file is a layer.
	p, err := Load(LoadOptions{Managed: "nope.yaml", User: "nope.yaml", Project: "empty.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Origin{{Layer: LayerProject, File: "empty.yaml"}, {Layer: "profile:default", File: "profile:default"}}
	if p.Profile != "default" || p.ProfileOrigin != (Origin{}) || len(p.Layers) != 2 || p.Layers[0] != want[0] || p.Layers[1] != want[1] {
		t.Errorf("Load = profile %q from %+v, layers %v; want default from nobody, %v", p.Profile, p.ProfileOrigin, p.Layers, want)
	}
	def, err := Builtin("default")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stripOrigins(p.FormatYAML()), stripOrigins(def.FormatYAML()); got != want {
		t.Errorf("an empty project on the default profile:\n%s\nwant the default profile:\n%s", got, want)
	}
}

func TestLoadFile(t *testing.T) {
	t.Chdir("testdata/layers")
	p, err := LoadFile("project-dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Profile != "dev" || cite(p.ProfileOrigin) != "project-dev.yaml:2 (project)" {
		t.Errorf("LoadFile: profile %q from %s; want dev from project-dev.yaml:2 (project)", p.Profile, cite(p.ProfileOrigin))
	}
	if d := p.Egress("api.anthropic.com", 443); d.Verdict != Allow || d.Rule != "profile:dev network.allow[18]" {
		t.Errorf("Egress(api.anthropic.com) = %+v; want allowed by profile:dev network.allow[18]", d)
	}
}

// Merge of parsed layers is what Load does with the files.
func TestMerge(t *testing.T) {
	t.Chdir("testdata/layers")
	var layers []*Policy
	for _, f := range []struct{ file, layer string }{{"user.yaml", LayerUser}, {"project.yaml", LayerProject}, {"managed.yaml", LayerManaged}} {
		data, err := os.ReadFile(f.file)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Parse(f.file, data, f.layer)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	base, err := Builtin("strict")
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(LoadOptions{Managed: "managed.yaml", Project: "project.yaml", User: "user.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(merged.FormatYAML()), string(loaded.FormatYAML()); got != want {
		t.Errorf("Merge:\n%s\nLoad:\n%s", got, want)
	}
}
