package verify

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// crossCheck looks at the bait from outside and turns a probe that
// reported held into escaped when its bait was reached anyway.
func (h *harness) crossCheck(results []Result) {
	idx := map[string]*Result{}
	for i := range results {
		idx[results[i].Name] = &results[i]
	}
	escape := func(probe, evidence string) {
		r := idx[probe]
		if r == nil {
			return
		}
		if r.Status != Escaped {
			r.Status, r.Evidence = Escaped, "outside: "+evidence+" (inside: "+r.Evidence+")"
			return
		}
		if !strings.Contains(r.Evidence, evidence) {
			r.Evidence += "; outside: " + evidence
		}
	}
	c := &h.cfg
	for _, x := range append(h.b.hits.all(), h.extra...) {
		probe := x.probe
		if _, ok := idx[probe]; !ok {
			switch x.bait {
			case "tcp":
				probe = "direct-ip"
			case "unix":
				probe = "unix-socket"
			case "abstract":
				probe = "abstract-socket"
			case "private":
				probe = "connect-private"
			}
		}
		escape(probe, x.detail)
	}
	// Files that should not exist on the host.
	var outside []string
	for _, d := range []string{c.OutsideDir, c.Scratch, "/var/tmp", "/tmp", os.Getenv("HOME")} {
		if d == "" {
			continue
		}
		ms, _ := filepath.Glob(filepath.Join(d, c.Marker+"*"))
		outside = append(outside, ms...)
	}
	for _, m := range outside {
		probe := "write-outside"
		if strings.HasSuffix(m, "-fill") {
			probe = "fill-tmp"
		}
		escape(probe, m+" appeared on the host")
		os.Remove(m) // the probe's own litter, named with this run's marker
	}
	for p, sum := range h.hashes {
		b, err := os.ReadFile(p)
		if err != nil {
			escape("write-protected", filepath.Base(p)+" is gone from the workspace")
		} else if sha256.Sum256(b) != sum {
			escape("write-protected", filepath.Base(p)+" changed on the host")
		}
	}
	for d := range h.dirs {
		if es, _ := os.ReadDir(d); len(es) > 0 {
			escape("write-protected", "a file appeared in "+filepath.Base(d))
		}
	}
	for _, suffix := range []string{"-suid", "-suid-create", "-suid-mknod"} {
		p := filepath.Join(h.ws, ".moat-verify", c.Marker+suffix)
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && (st.Mode&syscall.S_ISUID != 0 && st.Uid == 0 || st.Mode&syscall.S_ISGID != 0 && st.Gid == 0) {
			escape("setuid-file", sprintf("%s is mode %o owned by %d:%d on the host", filepath.Base(p), st.Mode&0o7777, st.Uid, st.Gid))
		}
	}
	if h.bait != nil && h.bait.ProcessState == nil {
		var ws syscall.WaitStatus
		if pid, _ := syscall.Wait4(h.bait.Process.Pid, &ws, syscall.WNOHANG, nil); pid > 0 {
			h.bait.Process = nil
			escape("signal", "the host's bait process died: "+ws.Signal().String())
		}
	}
	for _, p := range []string{c.AuditPath, h.policyF} {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(c.Marker+"-forged")) {
			escape("write-audit-policy", filepath.Base(p)+" holds the probe's forged line")
		}
		if bytes.Contains(b, []byte(CanaryPrefix)) {
			escape("secret-files", filepath.Base(p)+" holds a canary")
		}
	}
}
