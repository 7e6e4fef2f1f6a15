package verify

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func probeSecretEnv(c *Config) Result {
	env := strings.Join(os.Environ(), "\n")
	if what, ok := c.findCanary([]byte(env)); ok {
		return escaped("the environment holds the canary of %s", what)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MOAT_VERIFY_SECRET=") {
			return escaped("MOAT_VERIFY_SECRET, the test credential's source, is in the environment")
		}
	}
	return held("%d variables, no canary", len(os.Environ()))
}

// probeSecretFiles reads every readable file below the workspace, the
// harness's directory, /tmp and HOME (bounded) for a canary.
func probeSecretFiles(c *Config) Result {
	var a attempts
	files, budget := 0, 5000
	seen := map[string]bool{}
	roots := []string{c.Scratch, c.Workspace, "/tmp"}
	if h := os.Getenv("HOME"); h != "" && h != "/" {
		roots = append(roots, h)
	}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || budget <= 0 {
				if budget <= 0 {
					return filepath.SkipAll
				}
				return nil
			}
			if d.IsDir() {
				if d.Name() == "node_modules" || d.Name() == ".git" && p != filepath.Join(c.Workspace, ".git") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || seen[p] {
				return nil
			}
			seen[p] = true
			budget--
			if fi, err := d.Info(); err != nil || fi.Size() > 4<<20 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			files++
			if what, ok := c.findCanary(b); ok {
				a.ok("%s holds the canary of %s", p, what)
			}
			return nil
		})
	}
	a.note("%d readable files searched, no canary", files)
	return a.result()
}

func probeSecretProcs(c *Config) Result {
	var a attempts
	n := 0
	for _, p := range pids() {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/" + f)
			if err != nil {
				continue
			}
			n++
			if what, ok := c.findCanary(b); ok {
				a.ok("/proc/%d/%s holds the canary of %s", p, f, what)
			}
		}
	}
	a.note("%d command lines and environments read, no canary", n)
	return a.result()
}
