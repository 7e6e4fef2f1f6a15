package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/moatsec/moat/internal/oci"
	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/sandbox"
)

// isolationFlags choose moat run's tier: the native sandbox, a hardened
// OCI container (runc, crun), gVisor (runsc) or Docker; every one from the
// same compiled policy.
type isolationFlags struct {
	isolation string
	runtime   string
	image     string
	tier      string // resolved: the flag, else the policy's isolation.tier, else native
	// projectVouched: the project file was named with --policy, not
	// found in the working directory (repository content).
	projectVouched bool
}

var tiers = []string{"native", "container", "gvisor", "docker"}

func (f *isolationFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.isolation, "isolation", "", "the tier: native, container (runc, crun), gvisor (runsc) or docker (default: the policy's isolation.tier, else native)")
	fs.StringVar(&f.runtime, "runtime", "", "the OCI runtime for container and gvisor (`NAME|PATH`: runc, crun, runsc; default: found on PATH), or Docker's registered runtime (runsc)")
	fs.StringVar(&f.image, "image", "", "root filesystem: a `DIR` or TAR for container and gvisor (default: the host's system directories, read-only); an image NAME for docker")
}

// resolve picks the tier and returns the policy the native compiler
// accepts (its isolation.tier cleared: the tier is this flag's business).
func (f *isolationFlags) resolve(pol *policy.Policy) (*policy.Policy, error) {
	f.tier = f.isolation
	if f.tier == "" {
		f.tier = pol.Isolation.Tier.Value
	}
	if f.tier == "" {
		f.tier = "native"
	}
	known := false
	for _, t := range tiers {
		known = known || t == f.tier
	}
	if !known {
		where := "--isolation"
		if f.isolation == "" {
			where = fmt.Sprintf("isolation.tier (%s)", pol.Isolation.Tier.Origin)
		}
		return nil, fmt.Errorf("%s %q: moat run runs native, container, gvisor or docker", where, f.tier)
	}
	if f.tier != "native" {
		// The runtime runs as root and the image is the agent's root: a
		// project file moat found (a repository's) may not choose them.
		for _, v := range []policy.String{pol.Isolation.Runtime, pol.Isolation.Image} {
			if v.Value != "" && v.Origin.Layer == policy.LayerProject && !f.projectVouched {
				return nil, fmt.Errorf("%s: a project file moat found in the working directory may not set %s (it is repository content); move it to your user policy, give the flag, or name the file with --policy to vouch for it", v.Origin, v.Origin.Key)
			}
		}
		if v := pol.Isolation.Runtime; f.runtime == "" && v.Value != "" {
			// moat runs the runtime as root: a policy (perhaps a
			// repository's) may pick one on PATH by name, never a file.
			if strings.Contains(v.Value, "/") {
				return nil, fmt.Errorf("isolation.runtime %q (%s): a policy names a runtime (runc, crun, runsc), not a path; give a path with --runtime", v.Value, v.Origin)
			}
			f.runtime = v.Value
		}
		if v := pol.Isolation.Image; f.image == "" {
			f.image = v.Value
		}
	}
	if f.tier == "native" && (f.runtime != "" || f.image != "") {
		return nil, errors.New("--runtime and --image are for --isolation container, gvisor or docker")
	}
	if f.tier == "docker" && f.image == "" {
		return nil, errors.New("--isolation docker needs --image NAME (a local image: moat never pulls)")
	}
	p := *pol
	p.Isolation.Tier.Value = ""
	return &p, nil
}

// tierRun is a started run of any tier.
type tierRun struct {
	oci.Running
	Notes     []string
	Resources string
}

// start starts the command in the chosen tier.
func (f *isolationFlags) start(ctx context.Context, spec *sandbox.Spec, o sandbox.Options, log *slog.Logger) (*tierRun, error) {
	switch f.tier {
	case "native":
		sb, err := sandbox.Start(spec, o)
		if err != nil {
			return nil, err
		}
		return &tierRun{Running: sb, Notes: sb.Notes, Resources: sb.Resources}, nil
	case "docker":
		return f.startDocker(ctx, spec, o, log)
	}
	var notes []string
	rt, err := oci.LookRuntime(f.runtime, f.tier == "gvisor")
	if err != nil {
		return nil, &sandbox.StageError{Stage: f.tier, Code: exitSandbox, Err: err}
	}
	if rt.Name == "crun" && oci.HybridCgroups() {
		fallback, ferr := oci.LookRuntime("runc", false)
		if ferr != nil {
			return nil, &sandbox.StageError{Stage: f.tier, Code: exitSandbox, Err: errors.New(oci.CrunHybridNote + "; and runc is not installed")}
		}
		notes = append(notes, oci.CrunHybridNote)
		rt = fallback
	}
	if o.TTY && rt.Name == "runsc" {
		// gVisor cannot pass the terminal's descriptor to the host.
		notes = append(notes, "the gvisor tier gives the command moat's standard streams, not a terminal of its own (gVisor cannot hand its pty to moat); use --isolation container for --tty")
		o.TTY = false
	}
	c, err := oci.Start(spec, oci.Options{Runtime: rt, Exe: o.Exe, Image: f.image,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, TTY: o.TTY, Egress: o.Egress, ForwardSignals: o.ForwardSignals, Log: log})
	if err != nil {
		return nil, err
	}
	return &tierRun{Running: c, Notes: notes, Resources: resourcesText(spec.Resources, rt.Name+" cgroups")}, nil
}

// startDocker runs the spec with Docker: the same Generate, translated to
// docker run's flags (oci.RunDocker, oci.DockerArgs).
func (f *isolationFlags) startDocker(ctx context.Context, spec *sandbox.Spec, o sandbox.Options, log *slog.Logger) (*tierRun, error) {
	r, err := oci.RunDocker(ctx, spec, oci.DockerOptions{Image: f.image, Runtime: f.runtime, Exe: o.Exe,
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, TTY: o.TTY, Log: log,
		Egress: o.Egress, ForwardSignals: o.ForwardSignals})
	if err != nil {
		var se *sandbox.StageError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, &sandbox.StageError{Stage: "docker", Code: exitSandbox, Err: err}
	}
	return &tierRun{Running: r, Resources: resourcesText(spec.Resources, "docker")}, nil
}

func resourcesText(r sandbox.Resources, by string) string {
	if r == (sandbox.Resources{}) {
		return "none"
	}
	s := by + " ("
	sep := ""
	if r.Memory > 0 {
		s += fmt.Sprintf("memory %d MiB", r.Memory>>20)
		sep = ", "
	}
	if r.CPUs > 0 {
		s += fmt.Sprintf("%scpus %g", sep, r.CPUs)
		sep = ", "
	}
	if r.Pids > 0 {
		s += fmt.Sprintf("%spids %d", sep, r.Pids)
	}
	return s + ")"
}
