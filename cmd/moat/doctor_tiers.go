package main

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/oci"
	"github.com/moatsec/moat/internal/sandbox"
)

// tierRows reports the runtimes of the container, gvisor and docker
// tiers: found or not, their versions, what keeps one from working here
// (crun on a hybrid cgroup host), and whether Docker's daemon answers.
func tierRows(ctx context.Context, h *sandbox.Host, row func(layer, state, detail string)) {
	for _, n := range []string{"runc", "crun", "runsc"} {
		p, found := h.Runtimes[n]
		if !found {
			row("runtime "+n, "missing", "not in PATH; apt-get install "+n+" for --isolation "+tierOf(n))
			continue
		}
		rt := oci.Runtime{Name: n, Path: p}
		detail := p + ", " + rt.Version()
		switch {
		case n == "crun" && oci.HybridCgroups():
			row("runtime "+n, "unusable", detail+"; "+oci.CrunHybridNote)
			continue
		case n == "runsc":
			detail += "; runs with --network=none --host-uds=open (the proxy's socket is a host Unix socket)"
		}
		row("runtime "+n, "ok", detail+"; --isolation "+tierOf(n))
	}
	p, found := h.Runtimes["docker"]
	if !found {
		row("runtime docker", "missing", "not in PATH; apt-get install docker.io for --isolation docker")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "version", "--format", "{{.Server.Version}} {{json .Server.Components}}").CombinedOutput()
	if err != nil {
		row("runtime docker", "no daemon", p+": the daemon does not answer ("+firstLineOf(out, err)+"); start dockerd for --isolation docker")
		return
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	detail := p + ", daemon " + v
	if rts, err := exec.CommandContext(ctx, p, "info", "--format", "{{range $k, $v := .Runtimes}}{{$k}} {{end}}").Output(); err == nil {
		detail += "; runtimes: " + strings.TrimSpace(string(rts))
	}
	row("runtime docker", "ok", detail+"; --isolation docker")
}

func tierOf(runtime string) string {
	if runtime == "runsc" {
		return "gvisor"
	}
	return "container"
}

func firstLineOf(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
