package oci

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/moatsec/moat/internal/sandbox"
)

// prepareImage returns a detached mount of the image's root filesystem,
// idmapped so that the image's ids 0…65535 are the container's (host
// HostIDBase…): the runtime, as the container's root, can make its mount
// points in it. A tar archive is unpacked into dir first.
//
// Under gVisor (idmap false) the clone is not idmapped: gVisor's gofer,
// root on the host, serves it, and cannot serve idmapped mounts.
func prepareImage(image, dir, exe string, idmap bool) (*os.File, error) {
	fi, err := os.Stat(image)
	if err != nil {
		return nil, fmt.Errorf("--image: %w", err)
	}
	root := image
	if !fi.IsDir() {
		root = filepath.Join(dir, "image")
		if err := os.Mkdir(root, 0o755); err != nil {
			return nil, err
		}
		out, err := exec.Command("tar", "-xf", image, "-C", root, "--numeric-owner", "--no-same-permissions").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("--image %s: unpack: %v: %s", image, err, firstLine(out))
		}
	}
	if _, err := os.Stat(filepath.Join(root, "bin")); err != nil {
		if _, err := os.Stat(filepath.Join(root, "usr")); err != nil {
			return nil, errors.New("--image " + image + ": no bin or usr directory: not a root filesystem")
		}
	}
	if !idmap {
		fd, err := unix.OpenTree(unix.AT_FDCWD, root, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return nil, fmt.Errorf("--image %s: open_tree: %w", image, err)
		}
		return os.NewFile(uintptr(fd), "image"), nil
	}
	return sandbox.IDMappedRangeClone(root, HostIDBase, IDRange, exe)
}
