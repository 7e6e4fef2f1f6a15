#!/usr/bin/env bash
# Start latency of `true` and a file-I/O loop (open/stat/close 100,000
# times, bench/tiers/fileio.go, static) on each tier side by side: bare,
# moat native, container with runc, crun where it runs, gvisor (runsc),
# docker and docker with runsc, with hyperfine. Writes
# bench/RESULTS-tiers.md. Run as root (the container tiers need it) with
# dockerd running (scripts/start-dockerd.sh).
#   bench/tiers.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=10 io_runs=3
[ "${1:-}" = "--quick" ] && runs=3 io_runs=2
command -v hyperfine >/dev/null || { echo "tiers: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "tiers: run as root (the container tiers run runc and runsc as root)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/moat-bench-tiers-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
go build -o "$work/moat" ./cmd/moat
mkdir -p "$work/ws" "$work/home"
CGO_ENABLED=0 go build -o "$work/ws/fileio" ./bench/tiers/fileio.go
echo x >"$work/ws/fileio.dat"
chown -R 1000:1000 "$work/ws"
cat >"$work/moat.yaml" <<'YAML'
version: 1
filesystem:
  write: ["."]
YAML
export HOME="$work/home" MOAT_MANAGED_POLICY=
moat="$work/moat run -q --tty never --no-network --policy $work/moat.yaml --audit $work/audit.jsonl"

# Docker's image: a static busybox, the static file-I/O program's home,
# and the C library moat's init is linked with.
image=""
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	root="$work/rootfs"
	mkdir -p "$root/bin" "$root/etc" "$root/tmp"
	cp "$(command -v busybox)" "$root/bin/busybox"
	for c in sh true; do ln -sf busybox "$root/bin/$c"; done
	for lib in $(ldd "$work/moat" | grep -o '/[^ ]*'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	image=moat-bench-tiers:latest
	tar -C "$root" -c . | docker import - "$image" >/dev/null
	trap 'rm -rf "$work"; docker rmi -f "$image" >/dev/null 2>&1 || true' EXIT
fi

names=() cmds=()
add() { names+=("$1"); cmds+=("$2"); }
add bare ""
add native "$moat --"
command -v runc >/dev/null && add runc "$moat --isolation container --runtime runc --"
crun_note=""
if command -v crun >/dev/null; then
	if "$work/moat" doctor 2>/dev/null | grep -q '^runtime crun *unusable'; then
		crun_note="crun: not run: crun 1.8 refuses this host's hybrid cgroup v1/v2 hierarchies (moat falls back to runc)"
	else
		add crun "$moat --isolation container --runtime crun --"
	fi
fi
command -v runsc >/dev/null && add runsc "$moat --isolation gvisor --"
if [ -n "$image" ]; then
	add docker "$moat --isolation docker --image $image --"
	docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' | grep -qw runsc &&
		add docker+runsc "$moat --isolation docker --runtime runsc --image $image --"
fi

median() { python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$1"; }
declare -A start io
cd "$work/ws"
for i in "${!names[@]}"; do
	n=${names[$i]} c=${cmds[$i]}
	echo "tiers: $n" >&2
	hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/s.json" "$c true" >/dev/null || { $c true; exit 1; }
	start[$n]=$(median "$work/s.json")
	hyperfine -N --runs "$io_runs" --export-json "$work/i.json" "$c ./fileio 100000" >/dev/null || { $c ./fileio 100000; exit 1; }
	io[$n]=$(median "$work/i.json")
done
cd - >/dev/null

ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.1f×" % (a / b) if b else "-")' "$1" "$2"; }
{
	echo "# Tiers: start latency and file-I/O overhead"
	echo
	echo "bench/tiers.sh at moat $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1 /proc/loadavg) at the end."
	echo "hyperfine -N, median of $runs runs (\`true\`) and $io_runs runs (file I/O: open/stat/close 100,000 times, a static Go program in the workspace);"
	echo "ratios are to moat's native tier. Every moat row is \`moat run -q --tty never --no-network --policy P -- CMD\` with the tier's flags."
	echo
	echo "| tier | \`true\` ms | × native | file I/O ms | × native | command |"
	echo "|---|---|---|---|---|---|"
	for i in "${!names[@]}"; do
		n=${names[$i]}
		flags=$(echo "${cmds[$i]}" | sed -e "s|$work/moat|moat|" -e "s|--policy $work/moat.yaml --audit $work/audit.jsonl|--policy P|" -e 's| --$||')
		[ -z "$flags" ] && flags="(bare process)"
		echo "| $n | ${start[$n]} | $(ratio "${start[$n]}" "${start[native]}") | ${io[$n]} | $(ratio "${io[$n]}" "${io[native]}") | \`$flags\` |"
	done
	[ -n "$crun_note" ] && { echo; echo "$crun_note"; }
	echo
	echo "## Choosing a tier"
	echo
	echo "Strength is what an escape has to defeat; overhead is the measurement above; complexity is what the host needs."
	echo
	echo "| tier | strength | overhead (start, file I/O) | complexity |"
	echo "|---|---|---|---|"
	row() { echo "| $1 | $2 | ${start[$3]:-–} ms, ${io[$3]:-–} ms ($(ratio "${start[$3]:-0}" "${start[native]}"), $(ratio "${io[$3]:-0}" "${io[native]}")) | $4 |"; }
	row native "namespaces, Landlock, seccomp, cgroups, no capabilities; one host kernel shared with the agent" native "none: moat alone (unprivileged user namespaces)"
	[ -n "${start[runc]:-}" ] && row "container (runc)" "the native layers plus Docker's default seccomp profile, a user namespace on host ids 100000+, masked /proc; still the host kernel" runc "root, runc"
	[ -n "${start[runsc]:-}" ] && row "gvisor (runsc)" "the agent's system calls go to gVisor's kernel, not the host's: a kernel bug is not an escape" runsc "root, runsc; file-heavy work pays the most"
	[ -n "${start[docker]:-}" ] && row "docker" "the container tier's hardening as docker run flags; the user namespace is the daemon's (userns-remap)" docker "dockerd, a local image"
	[ -n "${start[docker+runsc]:-}" ] && row "docker + runsc" "gVisor under Docker" "docker+runsc" "dockerd with runsc registered (--network=none --host-uds=open)"
} >bench/RESULTS-tiers.md
echo "tiers: wrote bench/RESULTS-tiers.md" >&2
