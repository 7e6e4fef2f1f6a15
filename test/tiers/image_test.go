package tiers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// busyboxRoot makes a root filesystem of a static busybox: no C library,
// so moat's init must come with its own (bound from the host).
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		if inCI {
			t.Fatal("busybox is missing; CI installs busybox-static")
		}
		t.Skip("busybox is not installed")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"sh", "id", "cat", "echo", "ls"} {
		os.Symlink("busybox", filepath.Join(root, "bin", c))
	}
	os.WriteFile(filepath.Join(root, "etc", "image-marker"), []byte("from the image\n"), 0o644)
	return root
}

// TestImage: --image DIR and --image TAR are the root; the workspace is
// still bound per policy; the host's /usr is not there.
func TestImage(t *testing.T) {
	var rows []tier
	for _, tr := range tiers(t) {
		if !tr.docker && tr.name != "native" {
			rows = append(rows, tr)
		}
	}
	root := busyboxRoot(t)
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	for _, tr := range rows {
		for what, img := range map[string]string{"dir": root, "tar": tarball} {
			t.Run(tr.name+"/"+what, func(t *testing.T) {
				b := newBox(t, "filesystem:\n  write: [\".\"]\n")
				tr := tr
				tr.flags = append(append([]string{}, tr.flags...), "--no-network", "--image", img)
				r := b.run(tr, 0, `cat /etc/image-marker; cat readme.txt; echo made > made.txt && echo ws-ok; test -e /usr/bin/python3 || echo no-host-usr`)
				wantCode(t, r, 0)
				want(t, r, "from the image", "readable", "ws-ok", "no-host-usr")
				if got, _ := os.ReadFile(filepath.Join(b.ws, "made.txt")); !strings.Contains(string(got), "made") {
					t.Errorf("the workspace write did not reach the host")
				}
			})
		}
	}
}
