package oci

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Runtime is an OCI runtime moat can run a bundle with.
type Runtime struct {
	Name string // "runc", "crun" or "runsc": how moat talks to it
	Path string
}

// Kinds moat knows, in the order auto-detection tries them for the
// container tier.
var containerRuntimes = []string{"runc", "crun"}

// LookRuntime finds the runtime for a tier: name is "" (auto-detect:
// runc, then crun; runsc for gVisor), a name on PATH, or a path whose base
// name says which kind it is. gvisor requires runsc.
func LookRuntime(name string, gvisor bool) (Runtime, error) {
	if name == "" {
		if gvisor {
			name = "runsc"
		} else {
			for _, n := range containerRuntimes {
				if p, err := exec.LookPath(n); err == nil {
					if n == "crun" && HybridCgroups() {
						continue
					}
					return Runtime{Name: n, Path: p}, nil
				}
			}
			return Runtime{}, errors.New("no OCI runtime found (runc or crun); install one (apt-get install runc), or name it with --runtime PATH")
		}
	}
	kind := filepath.Base(name)
	switch {
	case strings.HasPrefix(kind, "runsc"):
		kind = "runsc"
	case strings.HasPrefix(kind, "crun"):
		kind = "crun"
	case strings.HasPrefix(kind, "runc"):
		kind = "runc"
	default:
		return Runtime{}, fmt.Errorf("runtime %q: moat knows runc, crun and runsc (name the binary after its kind)", name)
	}
	if gvisor && kind != "runsc" {
		return Runtime{}, fmt.Errorf("runtime %q: the gvisor tier runs runsc; use --isolation container for %s", name, kind)
	}
	if !gvisor && kind == "runsc" {
		return Runtime{}, fmt.Errorf("runtime %q: runsc is the gvisor tier: use --isolation gvisor", name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return Runtime{}, fmt.Errorf("runtime %s: not found (%v); install it (apt-get install %s) or give its path with --runtime", name, err, kind)
	}
	return Runtime{Name: kind, Path: p}, nil
}

// Version is the first line of the runtime's --version ("runc version
// 1.1.5+ds1"), or why it could not be read.
func (r Runtime) Version() string {
	out, err := exec.Command(r.Path, "--version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// HybridCgroups reports whether this host mounts cgroup v1 controllers
// and a cgroup v2 hierarchy side by side (/sys/fs/cgroup/unified): crun
// 1.8 refuses such hosts ("cgroups in hybrid mode not supported").
func HybridCgroups() bool {
	var root, uni unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &root) != nil || root.Type == unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	return unix.Statfs("/sys/fs/cgroup/unified", &uni) == nil && uni.Type == unix.CGROUP2_SUPER_MAGIC
}

// CrunHybridNote is what doctor and moat run say about crun here.
const CrunHybridNote = "crun 1.8 refuses hosts with both cgroup v1 and v2 hierarchies (cgroups in hybrid mode not supported), as this one has; moat uses runc instead (boot with systemd.unified_cgroup_hierarchy=1 for crun)"

// args is the runtime's command line to run the bundle in dir as id.
func (r Runtime) args(state, dir, id string) []string {
	a := []string{r.Name, "--root", state}
	if r.Name == "runsc" {
		// gVisor refuses to share the host's network namespace, and
		// opens no host Unix socket unless told to: the proxy's is one.
		a = append(a, "--network=none", "--host-uds=open")
	}
	return append(a, "run", "--bundle", dir, id)
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}
