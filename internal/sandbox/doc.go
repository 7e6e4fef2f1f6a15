// Package sandbox is moat's native isolation tier: it runs a command in new
// user, mount, PID, network, IPC and UTS namespaces, behind Landlock, a
// seccomp filter, no_new_privs, no capabilities and resource limits, with
// the network reachable only through an egress listener that the caller
// serves (moat serves its proxy on it).
//
// The work happens in two Go processes, in a fixed order:
//
//  1. the parent (Start): compiles nothing itself (Compile turns a policy
//     into a Spec beforehand), probes the layers the spec requires, makes
//     the cgroups and any idmapped mounts while it creates the namespaces
//     by re-executing the moat binary with InitArg (with cgroup v1 the
//     child is born in its cgroups), maps the agent to an unprivileged host
//     identity, hands the child the spec and the idmapped mounts over a
//     socket, relays a pseudo-terminal if there is one, and answers the
//     child's requests for egress connections;
//  2. PID 1 of the sandbox (init, stages "mounts", "network"): builds the
//     mount tree and pivots into it, brings up loopback and the forwarder
//     on 127.0.0.1, runs the last stage, then forwards signals, reaps
//     children and exits with the command's status;
//  3. the last stage: rlimits, no_new_privs, capabilities, Landlock,
//     seccomp, on a thread of PID 1 that then forks the command and exits
//     (every one of those restrictions is per thread and inherited by a
//     fork). Rlimits are per process: when they replace cgroups, the last
//     stage is a process of its own instead (the moat binary re-executed
//     with ExecArg), which execs the command.
//
// Each stage that fails reports "stage: reason" to the parent, which
// returns it as a *StageError; nothing runs the command after a failure
// (fail closed). The package depends on policy and audit only.
package sandbox
