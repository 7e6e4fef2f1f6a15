package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"mvdan.cc/sh/v3/syntax"

	"github.com/moatsec/moat/internal/oci"
	"github.com/moatsec/moat/internal/sandbox"
)

func init() {
	commands["docker"] = command{"print the hardened docker run command for the policy (args), or run it (run)", cmdDocker}
}

// shellSafe matches the words a POSIX shell reads as they are (after the
// command's name, where NAME=VALUE is an argument like any other).
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func cmdDocker(ctx context.Context, e *env, args []string) int {
	usage := func() {
		fmt.Fprintln(e.stderr, "usage: moat docker args [flags] --image NAME -- CMD [ARGS…]   print the docker run command")
		fmt.Fprintln(e.stderr, "       moat docker run [flags] --image NAME -- CMD [ARGS…]    moat run --isolation docker")
	}
	if len(args) == 0 {
		usage()
		return exitUsage
	}
	switch args[0] {
	case "args":
		return cmdDockerArgs(ctx, e, args[1:])
	case "run":
		return cmdRun(ctx, e, append([]string{"--isolation", "docker"}, args[1:]...))
	case "-h", "--help", "help":
		usage()
		return exitOK
	}
	fmt.Fprintf(e.stderr, "moat docker: unknown subcommand %q\n", args[0])
	usage()
	return exitUsage
}

// cmdDockerArgs compiles the policy as moat run does, generates the
// container's spec as --isolation docker does, and prints the docker run
// command that runs it, with the files it names written to a directory.
func cmdDockerArgs(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat docker args", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat docker args [flags] --image NAME -- CMD [ARGS…]")
		fs.PrintDefaults()
	}
	var pf policyFlags
	pf.register(fs)
	var allow, write listFlag
	fs.Var(&allow, "allow-domain", "allow egress to `DOMAIN`; repeatable")
	fs.Var(&write, "write", "make `PATH` writable too; repeatable")
	readOnly := fs.Bool("read-only", false, "make nothing writable but what --write names")
	noNetwork := fs.Bool("no-network", false, "no network at all: no forwarder")
	image := fs.String("image", "", "the container's image `NAME` (local: it is never pulled); moat's binary is mounted into it")
	runtime := fs.String("runtime", "", "a runtime registered with the Docker daemon (`NAME`: runsc for gVisor)")
	dir := fs.String("dir", "", "write the files the command names (seccomp profile, environment, run directory) to `DIR` (default: a new private directory)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(e.stderr, "moat docker args: no command; write moat docker args [flags] --image NAME -- CMD [ARGS…]")
		return exitUsage
	}
	if *image == "" {
		fmt.Fprintln(e.stderr, "moat docker args: --image NAME is required (a local image: moat never pulls)")
		return exitUsage
	}
	pol, err := pf.load(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "moat: %v\n", err)
		return exitConfig
	}
	pol, err = sandbox.Overrides{AllowDomains: allow, Write: write, ReadOnly: *readOnly, NoNetwork: *noNetwork}.Apply(pol)
	if err == nil {
		iso := isolationFlags{isolation: "docker", image: *image, runtime: *runtime}
		pol, err = iso.resolve(pol)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: %v\n", err)
		return exitUsage
	}
	rn := &runNet{}
	if !*noNetwork {
		if rn, err = resolveRunNet(ctx, e, pol, nil, ""); err != nil {
			fmt.Fprintf(e.stderr, "moat docker args: %v\n", err)
			return exitConfig
		}
	}
	session, token := newSession()
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: working directory: %v\n", err)
		return exitInternal
	}
	spec, notes, err := sandbox.Compile(pol, sandbox.CompileOptions{
		Argv: argv, Dir: cwd, Home: e.getenv("HOME"), Environ: os.Environ(),
		Egress: !*noNetwork, ProxyUser: session, ProxyToken: token,
		Mask: rn.Mask, Endpoints: append(rn.Ports(), sandbox.EndpointPort{Name: auditService, Port: auditPort}),
		Placeholders: rn.Placeholders,
	})
	if err == nil && spec.Egress {
		spec.Env = append(spec.Env, auditEnv+"="+auditURL())
	}
	if err == nil {
		err = checkSecretEnv(spec.Env, pol, rn)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: %v\n", err)
		return exitConfig
	}

	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: moat's binary: %v\n", err)
		return exitInternal
	}
	out := *dir
	if out == "" {
		out, err = os.MkdirTemp("", "moat-docker-args-")
	} else if out, err = filepath.Abs(out); err == nil {
		err = os.MkdirAll(out, 0o700)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: --dir: %v\n", err)
		return exitInternal
	}
	// The container's identity reaches the run directory; the files
	// themselves are read by the docker CLI, as the caller.
	runDir := filepath.Join(out, "run")
	err = os.Chmod(out, 0o711)
	if err == nil {
		err = os.MkdirAll(runDir, 0o755)
	}
	rs, gerr := oci.GenerateDocker(spec, exe, runDir, *runtime == "runsc")
	if err == nil {
		err = gerr
	}
	var dargs []string
	var files map[string][]byte
	if err == nil {
		dargs, files, err = oci.DockerArgs(rs, oci.DockerOptions{Image: *image, Runtime: *runtime, FilesDir: out})
	}
	for name, b := range files {
		if err == nil {
			err = os.WriteFile(filepath.Join(out, name), b, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "moat docker args: %v\n", err)
		return exitConfig
	}
	line := []string{"docker"}
	for _, a := range dargs {
		q, err := a, error(nil)
		if !shellSafe.MatchString(a) {
			q, err = syntax.Quote(a, syntax.LangPOSIX)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "moat docker args: argument %q cannot be quoted for a shell: %v\n", a, err)
			return exitConfig
		}
		line = append(line, q)
	}
	fmt.Fprintln(e.stdout, strings.Join(line, " "))

	for _, n := range notes {
		fmt.Fprintf(e.stderr, "moat: note: %s\n", n)
	}
	fmt.Fprintf(e.stderr, "moat: note: the command's files are in %s (the environment file holds the session's token: remove the directory when done)\n", out)
	if spec.Egress {
		fmt.Fprintf(e.stderr, "moat: note: the agent's network goes through %s, which nothing serves here: its connections are refused; moat docker run (moat run --isolation docker) serves it with moat's proxy\n",
			filepath.Join(runDir, sandbox.ContainerSocket))
	}
	if *runtime != "runsc" {
		fmt.Fprintf(e.stderr, "moat: note: the agent is uid %d; without the daemon's --userns-remap that is uid %d on the host, which must be able to write %s (moat docker run gives writable paths idmapped views instead)\n",
			oci.AgentID, oci.AgentID, strings.Join(spec.Write, ", "))
	}
	return exitOK
}
