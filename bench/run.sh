#!/usr/bin/env bash
# bench/run.sh: benchmark moat's egress proxy against Squid and tinyproxy.
#
# usage: bench/run.sh [--quick] [--out FILE] [--rev REV] [-- LOADGEN-FLAGS...]
#
#   --quick     a smoke run of seconds (short windows, one round, few tunnels)
#               that checks the harness works; its numbers are not results
#   --out FILE  the Markdown report (default: bench/RESULTS.md, or
#               bench/out/RESULTS.quick.md with --quick); the raw numbers go
#               to FILE with .json for .md
#   --rev REV   build moat from commit REV instead of the working tree
#   -- ...      further flags for bench/loadgen (go run ./bench/loadgen -h)
#
# It builds bench/loadgen and moat (moat is left out, and the report says so,
# when ./cmd/moat does not build or has no proxy command), installs Squid and
# tinyproxy with apt-get when they are missing and it runs as root, and runs
# all three proxies in one run. All traffic stays on 127.0.0.1; every loop is
# bounded. See bench/README.md.
set -euo pipefail

cmdline="bench/run.sh${*:+ $*}"
cd "$(dirname "$0")/.."

quick=
out=
rev=
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--out) out=${2:?run.sh: --out needs a file}; shift ;;
	--out=*) out=${1#--out=} ;;
	--rev) rev=${2:?run.sh: --rev needs a commit}; shift ;;
	--rev=*) rev=${1#--rev=} ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "run.sh: unknown argument $1; see bench/run.sh --help" >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$out" ]; then
	if [ -n "$quick" ]; then out=bench/out/RESULTS.quick.md; else out=bench/RESULTS.md; fi
fi
work=bench/out
mkdir -p "$work/bin" "$(dirname "$out")"

# The peers. Installing Debian's packages may start their services; a
# policy-rc.d that refuses keeps them stopped (ours run on ports of their own).
missing=()
[ -x /usr/sbin/squid ] || missing+=(squid)
[ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "run.sh: installing ${missing[*]}" >&2
		made_policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod +x /usr/sbin/policy-rc.d
			made_policy=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q "${missing[@]}" >"$work/apt.log" 2>&1 ||
			{ apt-get update -q >>"$work/apt.log" 2>&1 && apt-get install -y -q "${missing[@]}" >>"$work/apt.log" 2>&1; } ||
			echo "run.sh: could not install ${missing[*]} (see $work/apt.log); the report shows them as not measured" >&2
		[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
	else
		echo "run.sh: ${missing[*]} missing; the report shows them as not measured" >&2
	fi
fi

go build -o "$work/bin/loadgen" ./bench/loadgen

# moat, from the working tree or from --rev.
src=.
if [ -n "$rev" ]; then
	src=$(mktemp -d)
	trap 'rm -rf "$src"' EXIT
	git archive "$rev" | tar -x -C "$src"
	moat_rev=$(git rev-parse --short "$rev")
else
	moat_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git status --porcelain -- cmd internal go.mod go.sum 2>/dev/null)" ]; then
		moat_rev="$moat_rev + uncommitted changes"
	fi
fi
moat_flags=()
if (cd "$src" && go build -o "$OLDPWD/$work/bin/moat" ./cmd/moat) 2>"$work/moat-build.log"; then
	# Not "moat help | grep -q": grep's early exit would SIGPIPE moat and,
	# under pipefail, fail the test.
	commands=$("$work/bin/moat" help 2>&1 || true)
	if grep -qE '^[[:space:]]+proxy[[:space:]]' <<<"$commands"; then
		moat_flags=(--moat "$work/bin/moat" --moat-rev "$moat_rev")
	else
		moat_flags=(--moat-skip-reason "moat at $moat_rev has no proxy command yet")
	fi
else
	echo "run.sh: go build ./cmd/moat failed; see $work/moat-build.log" >&2
	moat_flags=(--moat-skip-reason "go build ./cmd/moat failed at $moat_rev")
fi
[ -z "$rev" ] || rm -rf "$src" # exec below skips the EXIT trap

flags=(--out "$out" --json "${out%.md}.json" --command "$cmdline")
[ -z "$quick" ] || flags+=(--quick)
# On a shared machine, a higher priority for the benchmark (the load
# generator, the upstream and all three proxies alike) keeps other work from
# measuring itself into the cells. Needs root.
nice=()
[ "$(id -u)" != 0 ] || nice=(nice -n -10)
echo "run.sh: running; the report goes to $out" >&2
exec "${nice[@]}" "$work/bin/loadgen" "${flags[@]}" "${moat_flags[@]}" "${extra[@]}"
