package oci

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatsec/moat/internal/sandbox"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// dockerFixture is a Spec as Compile makes it for a project with a
// masked .env, a protected .git/hooks, limits and egress.
func dockerFixture() *sandbox.Spec {
	return &sandbox.Spec{
		Argv:      []string{"claude", "--print", "hello world"},
		Dir:       "/repo/proj",
		Env:       []string{"PATH=/usr/bin:/bin", "HOME=/home/agent", "HTTPS_PROXY=http://run-1:secret-token@127.0.0.1:3128"},
		Hostname:  "moat",
		Write:     []string{"/repo/proj"},
		Protect:   []string{"/repo/proj/.git/hooks"},
		Pin:       []string{"/repo/proj/.git"},
		MaskFiles: []string{"/repo/proj/.env"},
		MaskDirs:  []string{"/repo/proj/secrets"},
		Tmpfs:     []sandbox.Tmpfs{{Path: "/tmp", Size: 64 << 20}},
		Egress:    true,
		Resources: sandbox.Resources{Memory: 512 << 20, CPUs: 1.5, Pids: 256},
	}
}

func fixtureArgs(t *testing.T) ([]string, map[string][]byte) {
	t.Helper()
	rs, err := Generate(dockerFixture(), GenerateOptions{Exe: "/usr/local/bin/moat", RunDir: "/run/moat/r1/run"})
	if err != nil {
		t.Fatal(err)
	}
	args, files, err := DockerArgs(rs, DockerOptions{Image: "moat-test/busybox:1", Name: "moat-golden", FilesDir: "/run/moat/r1/files"})
	if err != nil {
		t.Fatal(err)
	}
	return args, files
}

// TestDockerArgsGolden pins the docker run command for the fixture, one
// argument (or flag and value) a line.
func TestDockerArgsGolden(t *testing.T) {
	args, _ := fixtureArgs(t)
	var b strings.Builder
	for i := 0; i < len(args); i++ {
		b.WriteString(args[i])
		if strings.HasPrefix(args[i], "--") && !strings.Contains(args[i], "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") &&
			!slices.Contains([]string{"--rm", "--interactive", "--read-only", "--tty"}, args[i]) {
			i++
			b.WriteString(" " + args[i])
		}
		b.WriteByte('\n')
	}
	golden := filepath.Join("testdata", "docker-args.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run DockerArgsGolden -update writes it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("docker run arguments changed; got:\n%s\nwant:\n%s", got, want)
	}
}

// TestDockerArgsGuideFlags checks the arguments against the hardening
// flags the guides list for docker run, each with its value.
func TestDockerArgsGuideFlags(t *testing.T) {
	args, files := fixtureArgs(t)
	line := strings.Join(args, " ")
	for _, want := range []string{
		"--cap-drop ALL",
		"--security-opt no-new-privileges",
		"--security-opt seccomp=/run/moat/r1/files/seccomp.json",
		"--read-only",
		"--tmpfs /tmp:nosuid,nodev,noexec,mode=1777,size=67108864",
		"--network none",
		"--ipc private",
		"--memory 536870912 --memory-swap 536870912",
		"--cpus 1.5",
		"--pids-limit 256",
		"--user 1000:1000",
		"--mount type=bind,src=/repo/proj,dst=/repo/proj",
		"--mount type=bind,src=/usr/local/bin/moat,dst=/.moat/moat,readonly",
		"--mount type=bind,src=/run/moat/r1/run,dst=/.moat/run",
		"--mount type=bind,src=/repo/proj/.git/hooks,dst=/repo/proj/.git/hooks,readonly",
		"--mount type=bind,src=/dev/null,dst=/repo/proj/.env,readonly",
		"--tmpfs /repo/proj/secrets:ro,nosuid,nodev,noexec,mode=0555,size=4k",
		"--ulimit core=0:0",
		"--init=false",
		"--pull never",
		"--log-driver none",
		"--env-file /run/moat/r1/files/env",
		"--entrypoint /.moat/moat moat-test/busybox:1 " + sandbox.ContainerInitArg,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("docker run lacks %q:\n%s", want, line)
		}
	}
	// The session token travels in the env file, never in argv.
	if strings.Contains(line, "secret-token") {
		t.Errorf("the proxy token is in argv: %s", line)
	}
	if !strings.Contains(string(files[DockerEnvFile]), "secret-token") {
		t.Errorf("the env file lacks the agent's environment:\n%s", files[DockerEnvFile])
	}
	if strings.Count(string(files[DockerEnvFile]), "\n") != 1 {
		t.Errorf("the env file should hold the init's one variable:\n%.200s", files[DockerEnvFile])
	}
	// Docker's own loader reads the profile file as it is given.
	var prof seccomp.Seccomp
	if err := json.Unmarshal(files[DockerSeccompFile], &prof); err != nil {
		t.Fatalf("seccomp profile: %v", err)
	}
	if prof.DefaultAction != specs.ActErrno || len(prof.Syscalls) == 0 {
		t.Errorf("seccomp profile: default %q, %d rules", prof.DefaultAction, len(prof.Syscalls))
	}
}

// TestDockerArgsRefuses checks that what Docker cannot express, and the
// policy needs, is refused with the reason.
func TestDockerArgsRefuses(t *testing.T) {
	base := func() *specs.Spec {
		rs, err := Generate(dockerFixture(), GenerateOptions{Exe: "/usr/local/bin/moat", RunDir: "/run/moat/r1/run"})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	o := DockerOptions{Image: "img", FilesDir: "/run/f"}
	for _, c := range []struct {
		name   string
		change func(*specs.Spec, *DockerOptions)
		want   string
	}{
		{"capability", func(s *specs.Spec, _ *DockerOptions) { s.Process.Capabilities.Bounding = []string{"CAP_NET_RAW"} }, "keeps capabilities (CAP_NET_RAW)"},
		{"noexec bind", func(s *specs.Spec, _ *DockerOptions) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/srv", Options: []string{"rbind", "noexec"}})
		}, "noexec"},
		{"host network", func(s *specs.Spec, _ *DockerOptions) {
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
		}, "host's network namespace"},
		{"joined namespace", func(s *specs.Spec, _ *DockerOptions) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace, Path: "/proc/1/ns/time"})
		}, "joins the time namespace"},
		{"no seccomp", func(s *specs.Spec, _ *DockerOptions) { s.Linux.Seccomp = nil }, "no seccomp profile"},
		{"device", func(s *specs.Spec, _ *DockerOptions) {
			maj, min := int64(10), int64(229)
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &maj, Minor: &min, Access: "rwm"})
		}, "device c 10:229"},
		{"masked proc path", func(s *specs.Spec, _ *DockerOptions) {
			s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/self/mem")
		}, "maskedPaths /proc/self/mem"},
		{"env newline", func(s *specs.Spec, _ *DockerOptions) { s.Process.Env = append(s.Process.Env, "A=1\nB=2") }, "variable A: its value holds a line break"},
		{"env comment", func(s *specs.Spec, _ *DockerOptions) { s.Process.Env = append(s.Process.Env, "#A=1") }, `"#A"`},
		{"comma in path", func(s *specs.Spec, _ *DockerOptions) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/a,b", Type: "tmpfs", Source: "tmpfs"})
		}, "cannot carry , : ="},
		{"oom killer", func(s *specs.Spec, _ *DockerOptions) { t := true; s.Linux.Resources.Memory.DisableOOMKiller = &t }, "disableOOMKiller"},
		{"overlay mount", func(s *specs.Spec, _ *DockerOptions) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/w", Type: "overlay", Source: "overlay"})
		}, `type "overlay"`},
		{"runtime path", func(_ *specs.Spec, o *DockerOptions) { o.Runtime = "/usr/bin/runsc" }, "not a path"},
		{"umask", func(s *specs.Spec, _ *DockerOptions) { m := uint32(0o22); s.Process.User.Umask = &m }, "umask"},
		{"no image", func(_ *specs.Spec, o *DockerOptions) { o.Image = "" }, "no image"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, oo := base(), o
			c.change(s, &oo)
			_, _, err := DockerArgs(s, oo)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want an error with %q", err, c.want)
			}
		})
	}
}

func TestDockerArgsRuntimeAndTTY(t *testing.T) {
	rs, err := Generate(dockerFixture(), GenerateOptions{Exe: "/m", RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	args, _, err := DockerArgs(rs, DockerOptions{Image: "img", FilesDir: "/f", Runtime: "runsc", TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"--runtime runsc", "--tty", "--name moat-"} {
		if !strings.Contains(line, want) {
			t.Errorf("lacks %q: %s", want, line)
		}
	}
}

// TestTmpfsOptions: Docker adds noexec,nosuid,nodev before a tmpfs's own
// options; a spec's tmpfs without them must say so.
func TestTmpfsOptions(t *testing.T) {
	got := strings.Join(tmpfsOptions([]string{"size=1m", "nosuid"}), ",")
	if want := "size=1m,nosuid,exec,dev"; got != want {
		t.Errorf("got %s; want %s", got, want)
	}
}

// FuzzDockerEnvFile: whatever the environment, the env file either is
// refused or reads back, line by line as docker's parser reads it, to
// exactly the variables given.
func FuzzDockerEnvFile(f *testing.F) {
	for _, s := range []string{"A=1", "PATH=/bin:/usr/bin", "X= lead", "E=", "K=v=w", " K=v", "#K=v", "K\n=v", "K=\xff", "K=a\rb"} {
		f.Add(s, "B=2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		env := []string{a, b}
		out, err := dockerEnvFile(env)
		if err != nil {
			return
		}
		// docker's parseKeyValueFile: left-trimmed lines, # comments,
		// NAME=VALUE split at the first =, the name left-trimmed and
		// without white space.
		var got []string
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
			line = strings.TrimLeft(line, " \t\v\f\r\u0085\u00a0")
			if line == "" || strings.HasPrefix(line, "#") {
				t.Fatalf("line %q would be skipped", line)
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.ContainsAny(k, " \t") {
				t.Fatalf("line %q is not NAME=VALUE", line)
			}
			got = append(got, k+"="+v)
		}
		if !slices.Equal(got, env) {
			t.Fatalf("got %q; want %q", got, env)
		}
	})
}

// TestDockerDaemonCheck: what the daemon must give, read from docker info.
func TestDockerDaemonCheck(t *testing.T) {
	rs, err := Generate(dockerFixture(), GenerateOptions{Exe: "/m", RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	type rt = struct {
		Path string   `json:"path"`
		Args []string `json:"runtimeArgs"`
	}
	plain := &dockerInfo{DockerRootDir: "/var/lib/docker", Runtimes: map[string]rt{"runc": {Path: "runc"}, "runsc": {Path: "/usr/bin/runsc", Args: []string{"--network=none"}}}}
	remapped := &dockerInfo{DockerRootDir: "/var/lib/docker/231072.231072", SecurityOptions: []string{"name=seccomp,profile=default", "name=userns"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name string
		info *dockerInfo
		o    DockerOptions
		want string // "" = accepted
	}{
		{"plain", plain, DockerOptions{}, ""},
		{"userns required", plain, DockerOptions{Require: []string{"userns"}}, "--userns-remap=default"},
		{"userns remapped", remapped, DockerOptions{Require: []string{"userns"}}, ""},
		{"unknown runtime", plain, DockerOptions{Runtime: "kata"}, `no runtime "kata" (it has runc, runsc)`},
		{"runsc without host-uds", plain, DockerOptions{Runtime: "runsc"}, "lacks --host-uds=open"},
	} {
		err := c.info.check(rs, c.o, log)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: got %v; want %q", c.name, err, c.want)
		}
	}
	if got := remapped.hostID(AgentID); got != 231072+AgentID {
		t.Errorf("remapped agent: host uid %d; want %d", got, 231072+AgentID)
	}
	if got := plain.hostID(AgentID); got != AgentID {
		t.Errorf("plain agent: host uid %d; want %d", got, AgentID)
	}
}
