#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. As root it uses
# apt-get; otherwise it lists what to install and fails.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl       || need+=(curl)
have git        || need+=(git)
have python3    || need+=(python3)
have node       || need+=(nodejs)
have npm        || need+=(npm)
have squid      || [ -x /usr/sbin/squid ] || need+=(squid)
have tinyproxy  || [ -x /usr/sbin/tinyproxy ] || [ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)
have hyperfine  || need+=(hyperfine)
have wrk        || need+=(wrk)
have unshare    || need+=(util-linux)
have prlimit    || need+=(util-linux)
have ip         || need+=(iproute2)
have tmux       || need+=(tmux)
have dockerd    || need+=(docker.io)
# The container and gvisor tiers' OCI runtimes.
have runc       || [ -x /usr/sbin/runc ] || need+=(runc)
have crun       || need+=(crun)
have runsc      || need+=(runsc)
# The docker tier's test image is a root filesystem built around a static busybox.
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
have go         || need+=(golang-go)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "test-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
		exit 1
	fi
	echo "test-deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The module names its Go version; go 1.21 and later fetch it themselves.
v=$(go env GOVERSION | sed 's/^go//')
case "$v" in
	1.1[0-9]*|1.20*) echo "test-deps: go $v is too old; moat needs go 1.21 or later (it then fetches the version go.mod names)" >&2; exit 1 ;;
esac
