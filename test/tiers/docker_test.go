package tiers_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The docker rows need a daemon (scripts/start-dockerd.sh starts one: no
// bridge, no registry) and an image, which is built here: nothing is
// pulled.

var docker struct {
	once  sync.Once
	cli   string
	err   error
	image string
	imgMu sync.Mutex
}

// dockerCLI is the client matching Debian's daemon when it is installed.
func dockerCLI() string {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return "docker"
}

// dockerAvailable reports whether a Docker daemon answers; in CI one must.
func dockerAvailable(t *testing.T) bool {
	t.Helper()
	docker.once.Do(func() {
		docker.cli = dockerCLI()
		if _, err := exec.LookPath(docker.cli); err != nil {
			docker.err = fmt.Errorf("the docker CLI is missing (apt-get install docker.io): %w", err)
			return
		}
		out, err := exec.Command(docker.cli, "info", "--format", "{{.ServerVersion}}").CombinedOutput()
		if err != nil {
			docker.err = fmt.Errorf("no Docker daemon answers (scripts/start-dockerd.sh starts one): %v: %s", err, bytes.TrimSpace(out))
		}
	})
	if docker.err != nil {
		if inCI {
			t.Fatalf("docker tiers: %v", docker.err)
		}
		t.Logf("docker tiers left out: %v", docker.err)
		return false
	}
	return true
}

// dockerImage returns the local test image, importing it the first time:
// a root filesystem of busybox-static plus what the table's cases run
// (python3 with its standard library, curl) and the libraries they load,
// copied from this host, with an agent user 1000. moat is not in it:
// every tier bind-mounts it at /.moat/moat (and its loader and libraries
// at /.moat/lib). The
// tag is a hash of the inputs, so the image is rebuilt only when they
// change.
func dockerImage(t *testing.T) string {
	t.Helper()
	docker.imgMu.Lock()
	defer docker.imgMu.Unlock()
	if docker.image != "" {
		return docker.image
	}
	files, err := imageFiles()
	if err != nil {
		t.Fatalf("test image: %v", err)
	}
	h := sha256.New()
	fmt.Fprintln(h, "moat-test-image v1")
	for _, f := range files {
		fmt.Fprintf(h, "%s %s %s\n", f.dst, f.link, f.src)
		if fi, err := os.Stat(f.src); err == nil && f.src != "" {
			fmt.Fprintf(h, "%d %d %o\n", fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
		}
	}
	tag := "moat-test/busybox:" + hex.EncodeToString(h.Sum(nil))[:16]
	if exec.Command(dockerCLI(), "image", "inspect", tag).Run() == nil {
		docker.image = tag
		return tag
	}
	imp := exec.Command(dockerCLI(), "import", "-", tag)
	in, err := imp.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	imp.Stdout, imp.Stderr = &out, &out
	if err := imp.Start(); err != nil {
		t.Fatalf("docker import: %v", err)
	}
	werr := writeRootfs(in, files)
	in.Close()
	if err := imp.Wait(); err != nil || werr != nil {
		t.Fatalf("docker import %s: %v %v: %s", tag, werr, err, out.String())
	}
	t.Logf("imported %s (%d files)", tag, len(files))
	docker.image = tag
	return tag
}

// imageFile is one entry of the test image: a directory (src and link
// empty), a symlink (link), or a copy of a host file (src).
type imageFile struct {
	dst, src, link string
	mode           int64
}

func imageFiles() ([]imageFile, error) {
	var files []imageFile
	seen := map[string]bool{}
	add := func(f imageFile) {
		if !seen[f.dst] {
			seen[f.dst] = true
			files = append(files, f)
		}
	}
	dir := func(d string, mode int64) { add(imageFile{dst: d, mode: mode}) }
	for _, d := range []string{"usr", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "dev", "proc", "sys", "run", "var", "root"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	dir("var/tmp", 0o1777)
	dir("home", 0o755)
	// The host's layout of /bin, /lib… (merged into /usr on Debian 12).
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if l, err := os.Readlink("/" + d); err == nil {
			add(imageFile{dst: d, link: l})
		} else {
			dir(d, 0o755)
		}
	}
	// hostFile copies p where the host has it, through its symlinks.
	hostFile := func(p string) error {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		rdir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return err
		}
		for d := filepath.Dir(rdir); d != "/"; d = filepath.Dir(d) {
			defer dir(strings.TrimPrefix(d, "/"), 0o755)
		}
		dir(strings.TrimPrefix(rdir, "/"), 0o755)
		add(imageFile{dst: strings.TrimPrefix(filepath.Join(rdir, filepath.Base(p)), "/"), src: real})
		return nil
	}
	busybox := "/bin/busybox"
	if err := hostFile(busybox); err != nil {
		return nil, fmt.Errorf("busybox-static is missing (apt-get install busybox-static): %w", err)
	}
	bins := []string{"/usr/bin/python3", "/usr/bin/curl"}
	var libsOf []string
	for _, b := range bins {
		if err := hostFile(b); err != nil {
			return nil, err
		}
		libsOf = append(libsOf, b)
	}
	// Python's standard library, without its tests, GUI and the static
	// libraries for embedding it.
	pyReal, _ := filepath.EvalSymlinks("/usr/bin/python3")
	stdlib := filepath.Join("/usr/lib", filepath.Base(pyReal))
	skip := map[string]bool{"test": true, "tests": true, "__pycache__": true, "idlelib": true, "tkinter": true, "turtledemo": true, "ensurepip": true, "lib2to3": true, "pydoc_data": true, "distutils": true}
	err := filepath.WalkDir(stdlib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip[d.Name()] || strings.HasPrefix(d.Name(), "config-") {
				return filepath.SkipDir
			}
			dir(strings.TrimPrefix(p, "/"), 0o755)
			return nil
		}
		if d.Type().IsRegular() {
			add(imageFile{dst: strings.TrimPrefix(p, "/"), src: p})
			if strings.HasSuffix(p, ".so") {
				libsOf = append(libsOf, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("python's standard library: %w", err)
	}
	libs, err := lddClosure(libsOf)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		if err := hostFile(l); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		hostFile("/etc/ssl/certs/ca-certificates.crt")
	}
	// busybox's applets, where no real program is.
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !seen["usr/bin/"+a] {
			add(imageFile{dst: "usr/bin/" + a, link: "busybox"})
		}
	}
	add(imageFile{dst: "usr/bin/python3", link: filepath.Base(pyReal)})
	dir("home/agent", 0o755)
	sort.SliceStable(files, func(a, b int) bool { return files[a].dst < files[b].dst })
	return files, nil
}

var lddLib = regexp.MustCompile(`(?m)(?:=> )?(/\S+) \(0x`)

// lddClosure lists the shared libraries the binaries load.
func lddClosure(bins []string) ([]string, error) {
	var libs []string
	for _, b := range bins {
		out, err := exec.Command("ldd", b).Output()
		if err != nil {
			continue // a static binary, or not an ELF file
		}
		for _, m := range lddLib.FindAllStringSubmatch(string(out), -1) {
			if !slices.Contains(libs, m[1]) {
				libs = append(libs, m[1])
			}
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd found no libraries for %v", bins)
	}
	return libs, nil
}

// writeRootfs writes the image as a tar stream: root-owned files, and
// /etc/passwd and /etc/group with the agent (1000).
func writeRootfs(w io.Writer, files []imageFile) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.dst, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		case f.src == "":
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, f.dst+"/", f.mode
		default:
			b, err := os.ReadFile(f.src)
			if err != nil {
				return err
			}
			fi, _ := os.Stat(f.src)
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, int64(len(b)), int64(fi.Mode().Perm())
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	for name, body := range map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n",
		"etc/hostname": "moat\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// dockerInspect is the part of docker inspect the hardening shows in.
type dockerInspect struct {
	Name   string
	Config struct {
		User       string
		Entrypoint []string
		Env        []string
	}
	HostConfig struct {
		ReadonlyRootfs bool
		CapDrop        []string
		CapAdd         []string
		SecurityOpt    []string
		NetworkMode    string
		IpcMode        string
		PidsLimit      *int64
		Memory         int64
		MemorySwap     int64
		NanoCpus       int64
		Tmpfs          map[string]string
		Init           *bool
		Runtime        string
		AutoRemove     bool
		LogConfig      struct{ Type string }
		Privileged     bool
	}
}

// TestDockerHardening runs a command under moat run --isolation docker and
// checks, with docker inspect while it runs, that the container has every
// hardening flag; then that SIGTERM to moat reaches the command and the
// container is removed.
func TestDockerHardening(t *testing.T) {
	if os.Geteuid() != 0 && !inCI {
		t.Skip("the docker tier's idmapped writable paths need root")
	}
	if !dockerAvailable(t) {
		t.Skip("no Docker daemon")
	}
	img := dockerImage(t)
	for _, rt := range []string{"", "runsc"} {
		name := "docker"
		if rt != "" {
			name += "-" + rt
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBox(t, fmt.Sprintf(basePolicy, "9")+"resources:\n  memory: 96m\n  cpus: 1.5\n  pids: 300\n")
			args := []string{"run", "-q", "--tty", "never", "--audit", b.audit, "--policy", filepath.Join(b.ws, "moat.yaml"),
				"--isolation", "docker", "--image", img}
			if rt != "" {
				args = append(args, "--runtime", rt)
			}
			args = append(args, "--", "sh", "-c", `trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done`)
			cmd := exec.Command(moatBin, args...)
			cmd.Dir, cmd.Env = b.ws, b.env
			var errb bytes.Buffer
			cmd.Stderr = &errb
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || lines.Text() != "ready" {
				cmd.Wait()
				t.Fatalf("the command did not start: %q\n%s", lines.Text(), errb.String())
			}
			// The container is the one with this box's workspace mounted.
			out, err := exec.Command(dockerCLI(), "ps", "-q", "--no-trunc", "--filter", "volume="+b.ws).Output()
			ids := strings.Fields(string(out))
			if err != nil || len(ids) != 1 {
				t.Fatalf("docker ps for %s: %v %q", b.ws, err, out)
			}
			out, err = exec.Command(dockerCLI(), "inspect", ids[0]).Output()
			if err != nil {
				t.Fatalf("docker inspect: %v", err)
			}
			var ins []dockerInspect
			if err := json.Unmarshal(out, &ins); err != nil || len(ins) != 1 {
				t.Fatalf("docker inspect: %v", err)
			}
			c := ins[0]
			hc := c.HostConfig
			check := func(what string, ok bool, got any) {
				t.Helper()
				if !ok {
					t.Errorf("%s: got %v", what, got)
				}
			}
			check("read-only root", hc.ReadonlyRootfs, hc.ReadonlyRootfs)
			check("cap-drop ALL", slices.Equal(hc.CapDrop, []string{"ALL"}) && len(hc.CapAdd) == 0, hc.CapDrop)
			check("no-new-privileges", slices.Contains(hc.SecurityOpt, "no-new-privileges"), hc.SecurityOpt)
			check("seccomp profile", slices.ContainsFunc(hc.SecurityOpt, func(s string) bool {
				return strings.HasPrefix(s, "seccomp=") && strings.Contains(s, "SCMP_ACT_ERRNO")
			}), len(hc.SecurityOpt))
			check("network none", hc.NetworkMode == "none", hc.NetworkMode)
			check("ipc private", hc.IpcMode == "private", hc.IpcMode)
			// Under gVisor the cgroup also holds gVisor's own threads: it
			// gets headroom, and the agent's 300 is its RLIMIT_NPROC.
			check("pids limit", hc.PidsLimit != nil && (*hc.PidsLimit == 300 || rt == "runsc" && *hc.PidsLimit > 300), hc.PidsLimit)
			check("memory", hc.Memory == 96<<20 && hc.MemorySwap == 96<<20, []int64{hc.Memory, hc.MemorySwap})
			check("cpus", hc.NanoCpus == 1_500_000_000, hc.NanoCpus)
			check("tmp tmpfs", strings.Contains(hc.Tmpfs["/tmp"], "noexec") && strings.Contains(hc.Tmpfs["/tmp"], "size="), hc.Tmpfs)
			check("no docker init", hc.Init != nil && !*hc.Init, hc.Init)
			check("removed at exit", hc.AutoRemove, hc.AutoRemove)
			check("no log copy", hc.LogConfig.Type == "none", hc.LogConfig.Type)
			check("not privileged", !hc.Privileged, hc.Privileged)
			check("runtime", hc.Runtime == rt || rt == "" && hc.Runtime == "runc", hc.Runtime)
			// moat's init, started through the host's loader bound beside it.
			check("entrypoint is moat", len(c.Config.Entrypoint) == 1 && strings.HasPrefix(c.Config.Entrypoint[0], "/.moat/"), c.Config.Entrypoint)
			wantUser := "1000:1000"
			check("user "+wantUser, c.Config.User == wantUser, c.Config.User)
			// The environment (with the session's token) came from a file;
			// docker inspect shows it, argv did not.
			for _, kv := range c.Config.Env {
				if strings.Contains(kv, canary) {
					t.Errorf("the container's environment has the host's secret: %.80s", kv)
				}
			}

			cmd.Process.Signal(syscall.SIGTERM)
			rest, _ := io.ReadAll(stdout)
			err = cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(rest), "got-term") {
				t.Errorf("SIGTERM: %v, stdout %q\n%s", err, rest, errb.String())
			}
			out, _ = exec.Command(dockerCLI(), "ps", "-a", "-q", "--filter", "id="+ids[0]).Output()
			if len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("the container %s is still there after moat exited", ids[0][:12])
				exec.Command(dockerCLI(), "rm", "-f", ids[0]).Run()
			}
		})
	}
}

// TestDockerArgsByHand: the command moat docker args prints, run by hand
// with sh -c, behaves as moat run --isolation docker does (network aside:
// nothing serves the printed command's proxy socket).
func TestDockerArgsByHand(t *testing.T) {
	if os.Geteuid() != 0 && !inCI {
		t.Skip("docker needs root here")
	}
	if !dockerAvailable(t) {
		t.Skip("no Docker daemon")
	}
	t.Parallel()
	img := dockerImage(t)
	b := newBox(t, fmt.Sprintf(basePolicy, "9")+"resources:\n  memory: 64m\n")
	script := `id -u; id -g; echo "secret[$(cat secret.env 2>/dev/null)]"
echo made >> made.txt && echo ws-ok
echo x > /etc/moat-x 2>/dev/null || echo etc-refused
echo x > moat.yaml 2>/dev/null || echo policy-refused
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
ulimit -c; hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null
python3 -c 'bytearray(256 << 20); print("allocated")' 2>/dev/null || echo "big-alloc-failed"
exit 7`
	ref := b.run(tier{name: "docker", flags: []string{"--isolation", "docker", "--image", img}}, 0, script)

	argsDir := t.TempDir()
	cmd := exec.Command(moatBin, "docker", "args", "--policy", filepath.Join(b.ws, "moat.yaml"), "--image", img, "--dir", argsDir, "--", "sh", "-c", script)
	cmd.Dir, cmd.Env = b.ws, b.env
	var errb bytes.Buffer
	cmd.Stderr = &errb
	line, err := cmd.Output()
	if err != nil {
		t.Fatalf("moat docker args: %v\n%s", err, errb.String())
	}
	if !strings.HasPrefix(string(line), "docker run ") || strings.Count(string(line), "\n") != 1 {
		t.Fatalf("moat docker args printed %q", line)
	}
	for _, f := range []string{"env", "seccomp.json"} {
		fi, err := os.Stat(filepath.Join(argsDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode())
		}
	}
	env, _ := os.ReadFile(filepath.Join(argsDir, "env"))
	m := regexp.MustCompile(`run-[0-9a-f]+:([0-9a-f]{32})@`).FindSubmatch(env)
	if m == nil {
		t.Fatalf("the env file has no session token:\n%.300s", env)
	}
	if bytes.Contains(line, m[1]) {
		t.Errorf("the printed command holds the session token: %s", line)
	}
	os.Remove(filepath.Join(b.ws, "made.txt"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hand := exec.CommandContext(ctx, "sh", "-c", strings.Replace(string(line), "docker ", dockerCLI()+" ", 1))
	hand.Dir = b.ws
	var hout, herr bytes.Buffer
	hand.Stdout, hand.Stderr = &hout, &herr
	err = hand.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	got := result{code, hout.String(), herr.String()}
	if ref.code != 7 || got.code != 7 || ref.stdout != got.stdout {
		t.Errorf("by hand:\n%v\nmoat run --isolation docker:\n%v", got, ref)
	}
	for _, w := range []string{"1000\n1000\n", "secret[]", "ws-ok", "etc-refused", "policy-refused", "NoNewPrivs:\t1", "big-alloc-failed"} {
		if !strings.Contains(got.stdout, w) {
			t.Errorf("by hand: stdout lacks %q:\n%v", w, got)
		}
	}
}

// TestDockerNeverPulls: an image that is not here is an error (docker
// run's 125, the daemon's message), not a download.
func TestDockerNeverPulls(t *testing.T) {
	if os.Geteuid() != 0 && !inCI {
		t.Skip("docker needs root here")
	}
	if !dockerAvailable(t) {
		t.Skip("no Docker daemon")
	}
	t.Parallel()
	b := newBox(t, fmt.Sprintf(basePolicy, "9"))
	r := b.run(tier{name: "docker", flags: []string{"--isolation", "docker", "--image", "moat-test/absent:never"}}, 0, "echo ran")
	if r.code != 125 || !strings.Contains(r.stderr, "No such image") || strings.Contains(r.stdout, "ran") {
		t.Errorf("got:\n%v\nwant exit 125 and docker's No such image", r)
	}
	if exec.Command(dockerCLI(), "image", "inspect", "moat-test/absent:never").Run() == nil {
		t.Error("the absent image was pulled")
	}
}
