#!/usr/bin/env bash
# Runs `moat verify` on every isolation tier this machine offers (native;
# container on runc; gvisor on runsc; docker; docker with runsc) under each
# profile named (default: default and strict), prints every scorecard, and
# fails on any escape that is not a known one (listed below, with its
# reason, and in docs/verify.md). Under CI=true a missing tier fails too.
# Writes nothing into the tree: moat is built into a temporary directory.
#
#   scripts/verify-tiers.sh [--profiles "default strict"] [--tiers "native container gvisor docker docker-runsc"]
set -euo pipefail
cd "$(dirname "$0")/.."

profiles="default strict"
tiers="native container gvisor docker docker-runsc"
while [ $# -gt 0 ]; do
	case "$1" in
	--profiles) profiles=$2; shift 2 ;;
	--tiers) tiers=$2; shift 2 ;;
	*) echo "usage: $0 [--profiles LIST] [--tiers LIST]" >&2; exit 2 ;;
	esac
done

# TIER:PROBE pairs that escape today, each explained in docs/verify.md.
known=""

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
go build -o "$tmp/moat" ./cmd/moat
moat=$tmp/moat

missing() {
	if [ "${CI:-}" = true ]; then
		echo "verify-tiers: $1 is missing; CI must install it" >&2
		exit 1
	fi
	echo "verify-tiers: $1 is missing: tier $2 left out"
}

image=""
probe_image() {
	[ -n "$image" ] && return 0
	local root=$tmp/image
	mkdir -p "$root"/{etc,tmp,proc,sys,dev,root}
	chmod 1777 "$root/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/tmp:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\nagent:x:1000:\n' >"$root/etc/group"
	for f in $(ldd "$moat" | grep -o '/[^ ]*'); do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
	done
	image=moat-verify/probe:test
	tar -C "$root" -cf - . | docker import - "$image" >/dev/null
}

failed=0
ran=0
for tier in $tiers; do
	flags=()
	case $tier in
	native) ;;
	container) command -v runc >/dev/null || { missing runc "$tier"; continue; }; flags=(--isolation container --runtime runc) ;;
	gvisor) command -v runsc >/dev/null || { missing runsc "$tier"; continue; }; flags=(--isolation gvisor --runtime runsc) ;;
	docker | docker-runsc)
		if ! docker info >/dev/null 2>&1; then missing "a Docker daemon" "$tier"; continue; fi
		probe_image
		flags=(--isolation docker --image "$image")
		if [ "$tier" = docker-runsc ]; then
			command -v runsc >/dev/null || { missing runsc "$tier"; continue; }
			flags+=(--runtime runsc)
		fi
		;;
	*) echo "verify-tiers: unknown tier $tier" >&2; exit 2 ;;
	esac
	for profile in $profiles; do
		echo "== moat verify: $tier, profile $profile"
		set +e
		(cd "$tmp" && HOME=$tmp MOAT_MANAGED_POLICY= XDG_CONFIG_HOME=$tmp/config "$moat" verify --profile "$profile" "${flags[@]}") >"$tmp/out" 2>&1
		code=$?
		set -e
		cat "$tmp/out"
		ran=$((ran + 1))
		case $code in
		0) ;;
		1)
			for probe in $(sed -n 's/^  escaped  \([a-z0-9-]*\).*/\1/p' "$tmp/out"); do
				if [[ " $known " == *" $tier:$probe "* ]]; then
					echo "verify-tiers: $tier: $probe escaped: a known escape (docs/verify.md)"
				else
					echo "verify-tiers: $tier, profile $profile: $probe ESCAPED" >&2
					failed=1
				fi
			done
			;;
		*)
			# strict requires Landlock, which gVisor's kernel does not have:
			# those tiers must refuse to start (fail closed), and do.
			if [ "$profile" = strict ] && [[ $tier == gvisor || $tier == docker-runsc ]] && grep -q "landlock: not available" "$tmp/out"; then
				echo "verify-tiers: $tier refuses the strict profile (it requires Landlock): fails closed, as designed"
			else
				echo "verify-tiers: $tier, profile $profile: moat verify could not run (exit $code)" >&2
				failed=1
			fi
			;;
		esac
	done
done
echo "verify-tiers: $ran scorecards"
exit $failed
