package verify

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// readCanary reads p and says whether it held a canary.
func (c *Config) readCanary(a *attempts, how, p string) {
	b, err := os.ReadFile(p)
	if err != nil {
		a.fail(how, err)
		return
	}
	if what, ok := c.findCanary(b); ok {
		a.ok("%s: read the canary of %s", how, what)
		return
	}
	a.note("%s: %d bytes, no canary (masked)", how, len(b))
}

// scratchPath is a new path for the probe's own files: in the workspace
// when it is writable, else in /tmp.
func (c *Config) scratchPath(suffix string) string {
	dir := filepath.Join(c.Workspace, ".moat-verify")
	if unix.Access(dir, unix.W_OK) != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, c.Marker+"-"+suffix)
}

func probeReadPath(c *Config) Result {
	var a attempts
	for _, p := range c.SecretFiles {
		c.readCanary(&a, p, p)
	}
	return a.result()
}

func probeReadSymlink(c *Config) Result {
	var a attempts
	for i, p := range c.SecretFiles {
		l := c.scratchPath(sprintf("link%d", i))
		if err := os.Symlink(p, l); err != nil {
			a.fail("symlink", err)
			continue
		}
		c.readCanary(&a, "symlink to "+p, l)
		os.Remove(l)
	}
	return a.result()
}

func probeReadProcRoot(c *Config) Result {
	var a attempts
	for _, p := range c.SecretFiles {
		c.readCanary(&a, "/proc/self/root"+p, "/proc/self/root"+p)
		c.readCanary(&a, "/proc/1/root"+p, "/proc/1/root"+p)
	}
	return a.result()
}

func probeReadHardlink(c *Config) Result {
	var a attempts
	for i, p := range c.SecretFiles {
		l := c.scratchPath(sprintf("hard%d", i))
		if err := os.Link(p, l); err != nil {
			a.fail("link "+p, err)
			continue
		}
		c.readCanary(&a, "hard link to "+p, l)
		os.Remove(l)
	}
	return a.result()
}

func probeOpenByHandle(c *Config) Result {
	if c.HandleBytes == "" {
		return na("the host could not take a handle of the masked file")
	}
	b, err := hex.DecodeString(c.HandleBytes)
	if err != nil {
		return na("bad handle from the harness: %v", err)
	}
	var a attempts
	// Any directory on the same file system serves as the mount reference.
	for _, dir := range []string{"/", filepath.Dir(c.SecretFiles[len(c.SecretFiles)-1]), c.Workspace} {
		mfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			a.fail("open "+dir, err)
			continue
		}
		fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(c.HandleType, b), unix.O_RDONLY)
		unix.Close(mfd)
		if err != nil {
			a.fail("open_by_handle_at via "+dir, err)
			continue
		}
		f := os.NewFile(uintptr(fd), "handle")
		data := make([]byte, 4096)
		n, _ := f.Read(data)
		f.Close()
		if what, ok := c.findCanary(data[:n]); ok {
			a.ok("open_by_handle_at via %s read the canary of %s", dir, what)
		} else {
			a.ok("open_by_handle_at via %s opened a file (%d bytes)", dir, n)
		}
	}
	return a.result()
}

func probeWriteOutside(c *Config) Result {
	var a attempts
	targets := []string{filepath.Join(c.OutsideDir, c.Marker+"-write"), filepath.Join(c.Scratch, c.Marker+"-write")}
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() {
		targets = append(targets, filepath.Join("/var/tmp", c.Marker+"-write"))
	}
	if h := os.Getenv("HOME"); h != "" && !strings.HasPrefix(h, c.Workspace) {
		targets = append(targets, filepath.Join(h, c.Marker+"-write"))
	}
	for _, p := range targets {
		if err := os.WriteFile(p, []byte("moat-verify"), 0o644); err != nil {
			a.fail("write "+p, err)
			continue
		}
		// A container tier gives HOME a private tmpfs: writing there is
		// no escape, and the harness checks the host's HOME itself.
		var st unix.Statfs_t
		if unix.Statfs(filepath.Dir(p), &st) == nil && st.Type == unix.TMPFS_MAGIC && filepath.Dir(p) == os.Getenv("HOME") {
			a.note("wrote %s, a private tmpfs (the host's is checked outside)", p)
			continue
		}
		a.ok("wrote %s", p)
	}
	return a.result()
}

func probeProtected(c *Config) Result {
	var a attempts
	for _, p := range c.Protected {
		fi, err := os.Lstat(p)
		if err != nil {
			a.fail("stat "+p, err)
			continue
		}
		rel, _ := filepath.Rel(c.Workspace, p)
		if fi.IsDir() {
			q := filepath.Join(p, c.Marker)
			if err := os.WriteFile(q, []byte("x"), 0o755); err != nil {
				a.fail("create in "+rel, err)
			} else {
				a.ok("created %s", filepath.Join(rel, c.Marker))
			}
		} else {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				a.fail("append "+rel, err)
			} else {
				_, err = f.WriteString("\n# " + c.Marker + "\n")
				f.Close()
				if err != nil {
					a.fail("append "+rel, err)
				} else {
					a.ok("appended to %s", rel)
				}
			}
		}
		if err := os.Rename(p, p+"."+c.Marker); err != nil {
			a.fail("rename "+rel, err)
		} else {
			a.ok("renamed %s away", rel)
			os.Rename(p+"."+c.Marker, p)
		}
	}
	return a.result()
}

// probeSetuid makes a setuid file; the harness judges its owner on the
// host (a setuid file owned by anyone but the sandbox's own host identity
// is a privilege someone outside could run).
func probeSetuid(c *Config) Result {
	var a attempts
	p := filepath.Join(c.Workspace, ".moat-verify", c.Marker+"-suid")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nid\n"), 0o755); err != nil {
		a.fail("create "+p, err)
		return a.result()
	}
	if err := unix.Chmod(p, 0o4755); err != nil {
		a.fail("chmod 4755", err)
	}
	if err := unix.Chmod(p, 0o2755); err != nil {
		a.fail("chmod 2755", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err == nil {
		if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			a.note("the file kept mode %o (owner uid %d inside); its owner on the host is judged outside", st.Mode&0o7777, st.Uid)
		} else {
			a.note("the setuid and setgid bits did not stick (mode %o)", st.Mode&0o7777)
		}
	}
	q := filepath.Join(c.Workspace, ".moat-verify", c.Marker+"-suid-create")
	if fd, err := unix.Open(q, unix.O_CREAT|unix.O_WRONLY, 0o4755); err != nil {
		a.fail("open(O_CREAT, 04755)", err)
	} else {
		unix.Close(fd)
	}
	if err := unix.Mknod(filepath.Join(c.Workspace, ".moat-verify", c.Marker+"-suid-mknod"), unix.S_IFREG|0o4755, 0); err != nil {
		a.fail("mknod(S_IFREG|04755)", err)
	}
	// File capabilities are the other way a file grants privilege.
	capV2 := []byte{0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}
	if err := unix.Setxattr(p, "security.capability", capV2, 0); err != nil {
		a.fail("setxattr security.capability", err)
	} else {
		a.ok("set file capabilities on %s", p)
	}
	return a.result()
}

func probeAuditPolicy(c *Config) Result {
	var a attempts
	for _, p := range []string{c.AuditPath, c.PolicyPath} {
		if p == "" {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			a.fail("append "+filepath.Base(p), err)
		} else {
			_, err = f.WriteString(`{"forged":"` + c.Marker + `-forged"}` + "\n")
			f.Close()
			if err != nil {
				a.fail("append "+filepath.Base(p), err)
			} else {
				a.ok("appended to %s", p)
			}
		}
		if err := os.Truncate(p, 0); err != nil {
			a.fail("truncate "+filepath.Base(p), err)
		} else {
			a.ok("truncated %s", p)
		}
	}
	return a.result()
}
