package policy

import (
	"os"
	"strings"
	"testing"
)

func TestWorkspaceKeys(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nfilesystem:\n  workspace: tmpfs:64m\n  volumes: [\"~/out:/var/tmp/out\", /srv/data]\n"), LayerUser)
	if err != nil {
		t.Fatal(err)
	}
	if p.Filesystem.Workspace.Value != "tmpfs:64m" || len(p.Filesystem.Volumes) != 2 || p.Filesystem.Volumes[1].Value != "/srv/data" {
		t.Fatalf("parsed %+v", p.Filesystem)
	}
	for doc, want := range map[string]string{
		"workspace: overlay2":    `p.yaml:3: filesystem.workspace: "overlay2"`,
		"workspace: tmpfs:lots":  `p.yaml:3: filesystem.workspace: "tmpfs:lots"`,
		"volumes: [\"/a:out\"]":  "the path inside must be absolute",
		"volumes: [\"/a/*:/b\"]": "not a pattern",
		"volumes: [\"~x/a:/b\"]": `only "~/"`,
		"workspace: [overlay]":   "expected a string",
		"workspaces: overlay":    "unknown key",
		"volumes: {a: b}":        "expected a list",
	} {
		_, err := Parse("p.yaml", []byte("version: 1\nfilesystem:\n  "+doc+"\n"), LayerUser)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", doc, err, want)
		}
	}
}

// A found project file may not choose the workspace mode, add volumes,
// or turn the scan off: each would weaken what the user chose.
func TestFoundProjectMayNotWeakenWorkspace(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile("moat.yaml", []byte("version: 1\nfilesystem:\n  workspace: rw\n  scan: \"off\"\n  volumes: [\"~/.ssh:/out\"]\n"), 0o600)
	_, err := Load(LoadOptions{Project: "moat.yaml", ProjectFound: true})
	for _, key := range []string{"filesystem.volumes[0]", "filesystem.workspace", "filesystem.scan"} {
		if err == nil || !strings.Contains(err.Error(), key+": a project file moat found") {
			t.Errorf("want %s refused, got %v", key, err)
		}
	}
	// Tightening is fine: scan block.
	os.WriteFile("moat.yaml", []byte("version: 1\nfilesystem:\n  scan: block\n"), 0o600)
	if p, err := Load(LoadOptions{Project: "moat.yaml", ProjectFound: true}); err != nil || p.Filesystem.Scan.Value != "block" {
		t.Fatalf("scan: block from a found project: %v", err)
	}
	// Named with --policy, the project vouches for it.
	os.WriteFile("moat.yaml", []byte("version: 1\nfilesystem:\n  workspace: overlay\n"), 0o600)
	if p, err := Load(LoadOptions{Project: "moat.yaml", ProjectRequired: true}); err != nil || p.Filesystem.Workspace.Value != "overlay" {
		t.Fatalf("named project: %v", err)
	}
}
