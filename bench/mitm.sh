#!/usr/bin/env bash
# bench/mitm.sh: moat's TLS termination against mitmproxy (mitmdump), both
# injecting the same Authorization header, and the added latency of moat's
# reverse endpoint against a direct connection. Writes bench/RESULTS-mitm.md.
#
# usage: bench/mitm.sh [--quick] [--wait S] [--out FILE] [-- FLAGS...]
#
#   --quick     a smoke run of seconds (one round, 1 s windows) that checks
#               the harness works; its numbers are not results
#   --wait S    wait up to S seconds (default 300; 0 with --quick) for the
#               machine to be quiet (1-minute load average under 1) before
#               measuring; the report says when it was not
#   --out FILE  the Markdown report (default: bench/RESULTS-mitm.md, or
#               bench/out/mitm/RESULTS-mitm.quick.md with --quick); the raw
#               rows go to bench/out/mitm/ as JSON
#   -- ...      further flags for bench/mitm (go run ./bench/mitm -h)
#
# It builds moat and bench/mitm into bench/out/mitm/, installs mitmproxy with
# apt-get when mitmdump is missing and it runs as root (else the mitmproxy
# row says n/a), and runs 16 kept-alive HTTPS clients through each proxy to
# a local TLS upstream. Every address is 127.0.0.1; every window is bounded
# and so is the run (--timeout, 15 minutes); the children die with it.
# Run it on a quiet machine: clients, proxies and upstream share its cores.
set -euo pipefail

cmdline="bench/mitm.sh${*:+ $*}"
cd "$(dirname "$0")/.."

quick=
out=
wait=
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--out) out=${2:?mitm.sh: --out needs a file}; shift ;;
	--out=*) out=${1#--out=} ;;
	--wait) wait=${2:?mitm.sh: --wait needs seconds}; shift ;;
	--wait=*) wait=${1#--wait=} ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "mitm.sh: unknown argument $1; see bench/mitm.sh --help" >&2; exit 2 ;;
	esac
	shift
done
work=bench/out/mitm
mkdir -p "$work"
if [ -z "$out" ]; then
	if [ -n "$quick" ]; then out=$work/RESULTS-mitm.quick.md; else out=bench/RESULTS-mitm.md; fi
fi

if ! command -v mitmdump >/dev/null && [ "$(id -u)" = 0 ]; then
	echo "mitm.sh: installing mitmproxy" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q mitmproxy >"$work/apt.log" 2>&1 ||
		{ apt-get update -q >>"$work/apt.log" 2>&1 && apt-get install -y -q mitmproxy >>"$work/apt.log" 2>&1; } ||
		echo "mitm.sh: apt-get install mitmproxy failed (see $work/apt.log); the mitmproxy row will say n/a" >&2
fi

go build -o "$work/moat" ./cmd/moat
go build -o "$work/mitm" ./bench/mitm
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- cmd internal go.mod go.sum 2>/dev/null; then
	rev="$rev+dirty"
fi

if [ -z "$wait" ]; then
	if [ -n "$quick" ]; then wait=0; else wait=300; fi
fi
deadline=$((SECONDS + wait))
while [ "$SECONDS" -lt "$deadline" ]; do
	load=$(cut -d' ' -f1 /proc/loadavg)
	if awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then break; fi
	echo "mitm.sh: waiting for a quiet machine (load average $load)" >&2
	sleep 15
done

flags=()
if [ -n "$quick" ]; then
	flags=(-rounds 1 -warmup 300ms -window 1s)
fi
base=$(basename "$out" .md)
exec "$work/mitm" -moat "$work/moat" -mitmdump mitmdump -addon bench/mitm/inject.py \
	-out "$out" -json "$work/$base.json" -cmdline "$cmdline" -moat-rev "$rev" \
	"${flags[@]}" "${extra[@]}"
