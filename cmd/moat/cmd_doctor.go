package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/moatsec/moat/internal/sandbox"
)

func init() {
	commands["doctor"] = command{"report which isolation layers this host offers", cmdDoctor}
}

// cmdDoctor reports every layer the native tier uses, and the runtimes the
// stronger tiers need. It exits 1 when moat run cannot work here.
func cmdDoctor(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat doctor", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	h := sandbox.Probe()
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	ok := true
	row := func(layer, state, detail string) { fmt.Fprintf(w, "%s\t%s\t%s\n", layer, state, detail) }
	row("LAYER", "STATE", "DETAIL")
	row("kernel", "-", h.Kernel)

	nsDetail := fmt.Sprintf("user.max_user_namespaces=%d", h.MaxUserNamespaces)
	if h.UnprivilegedUserns != "" {
		nsDetail += ", kernel.unprivileged_userns_clone=" + h.UnprivilegedUserns
	}
	if h.AppArmorRestrictsNS != "" {
		nsDetail += ", kernel.apparmor_restrict_unprivileged_userns=" + h.AppArmorRestrictsNS
	} else {
		nsDetail += ", no AppArmor restriction on user namespaces"
	}
	if err := sandbox.TryUserNamespace(""); err != nil {
		ok = false
		row("namespaces", "missing", err.Error())
	} else {
		row("namespaces", "ok", "user, mount, pid, net, ipc, uts, cgroup; "+nsDetail)
	}
	if h.LandlockABI > 0 {
		row("landlock", "ok", fmt.Sprintf("ABI %d", h.LandlockABI))
	} else {
		row("landlock", "missing", h.LandlockErr)
	}
	if h.Seccomp {
		row("seccomp", "ok", "filters with TSYNC")
	} else {
		row("seccomp", "missing", h.SeccompErr)
	}
	row("no_new_privs", "ok", "always (Linux 3.5+)")
	switch {
	case h.CgroupVersion == "":
		row("cgroups", "missing", h.CgroupErr+"; moat run falls back to rlimits")
	case h.CgroupWritable:
		row("cgroups", "ok", h.CgroupVersion+" ("+strings.Join(h.CgroupControllers, ", ")+"), moat may create cgroups")
	default:
		row("cgroups", "read-only", h.CgroupVersion+": "+h.CgroupErr+"; moat run falls back to rlimits")
	}
	if h.Overlayfs {
		row("overlayfs", "ok", "for overlay workspaces")
	} else {
		row("overlayfs", "missing", "not in /proc/filesystems")
	}
	if h.IDMappedMountsKernel {
		row("idmapped mounts", "ok", "kernel 5.12+: the workspace is written without chown when moat runs as root")
	} else {
		row("idmapped mounts", "missing", "kernel older than 5.12: run moat as the workspace's owner")
	}
	tierRows(ctx, h, row) // the container, gvisor and docker tiers' runtimes
	names := []string{"podman", "bwrap"}
	sort.Strings(names)
	for _, n := range names {
		if p, found := h.Runtimes[n]; found {
			row("runtime "+n, "ok", p)
		} else {
			row("runtime "+n, "missing", "not in PATH")
		}
	}
	w.Flush()
	if !ok {
		fmt.Fprintln(e.stderr, "moat doctor: moat run cannot work on this host: see namespaces above")
		return exitFailure
	}
	return exitOK
}
