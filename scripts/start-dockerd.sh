#!/usr/bin/env bash
# Starts a Docker daemon for the tests if none answers: no bridge, no
# iptables rules, the cgroupfs driver, and gVisor's runsc registered as
# the runtime "runsc" with host Unix sockets opened (moat's forwarder
# inside the container dials the proxy's socket in /.moat/run). Nothing is
# ever pulled: the tests import their image from a local root filesystem.
#
# Idempotent: a daemon that already answers is left alone (its runtimes
# are reported, not changed). Needs root.
#
#   scripts/start-dockerd.sh          start (or find) the daemon
#   MOAT_DOCKERD_DIR=DIR              where its config, log and data go
#                                     (default /run/moat-dockerd, data in
#                                     /var/lib/moat-dockerd)
set -euo pipefail

# Debian's client matches Debian's daemon (API 1.41); a newer client on
# PATH negotiates down, but the matching one is the safer choice.
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker

if "$docker" info >/dev/null 2>&1; then
	echo "start-dockerd: a daemon already answers; runtimes: $("$docker" info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' 2>/dev/null)" >&2
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "start-dockerd: no Docker daemon answers and only root can start one (run: sudo $0)" >&2
	exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
	echo "start-dockerd: dockerd is not installed (apt-get install docker.io)" >&2
	exit 1
fi

dir=${MOAT_DOCKERD_DIR:-/run/moat-dockerd}
data=/var/lib/moat-dockerd
[ -n "${MOAT_DOCKERD_DIR:-}" ] && data=$dir/data
mkdir -p "$dir" "$data"
chmod 0700 "$dir"

runsc=$(command -v runsc || true)
{
	echo '{'
	if [ -n "$runsc" ]; then
		# --network=none: gVisor's own network stack with loopback only
		# (its default, sandbox, refuses to start from the namespace
		# docker gives it). --host-uds=open: the bind-mounted proxy socket
		# may be dialled (runsc refuses host sockets by default). Not
		# --oci-seccomp: runsc 2022 ignores errnoRet (clone3's ENOSYS
		# would become EPERM and threads fail); moat's own filter binds
		# the agent inside gVisor.
		printf '  "runtimes": {"runsc": {"path": "%s", "runtimeArgs": ["--network=none", "--host-uds=open"]}},\n' "$runsc"
	fi
	echo '  "exec-opts": ["native.cgroupdriver=cgroupfs"],'
	echo '  "bridge": "none",'
	echo '  "iptables": false,'
	echo '  "ip6tables": false,'
	echo '  "ip-forward": false,'
	echo '  "ip-masq": false'
	echo '}'
} >"$dir/daemon.json"

log=$dir/dockerd.log
# setsid: the daemon outlives this script and the test run's process group.
setsid dockerd --config-file "$dir/daemon.json" --data-root "$data" \
	--pidfile "$dir/dockerd.pid" >"$log" 2>&1 </dev/null &

for _ in $(seq 1 120); do
	if "$docker" info >/dev/null 2>&1; then
		echo "start-dockerd: dockerd $(dockerd --version | sed 's/^Docker version //') answers (log $log)" >&2
		exit 0
	fi
	if ! kill -0 $! 2>/dev/null; then
		break
	fi
	sleep 0.5
done
echo "start-dockerd: dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 30 "$log" >&2
exit 1
