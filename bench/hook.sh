#!/usr/bin/env bash
# The moat hook as Claude Code runs it: one process per tool call, JSON in,
# JSON out. Measures the round trip with hyperfine (the issue's bar: 5 ms).
# Usage: bench/hook.sh [RUNS]   (needs go and hyperfine)
# MOAT_BASE=/path/to/moat also measures that binary, for a before/after
# taken under the same load. The load average is printed before and after:
# on a busy machine the numbers say more about the neighbours than moat.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/moat" ./cmd/moat
cp cmd/moat/testdata/hook/moat.yaml "$tmp/moat.yaml"
for f in bash-allow bash-deny read-deny; do
	cp "cmd/moat/testdata/hook/$f.json" "$tmp/$f.json"
done
cmds=()
for bin in ${MOAT_BASE:+"$MOAT_BASE"} "$tmp/moat"; do
	tag=""
	[ "$bin" != "$tmp/moat" ] && tag="base-"
	hook="$bin hook claude --policy moat.yaml --claude-settings=false --audit $tmp/audit.jsonl"
	cmds+=(-n "${tag}allow" "$hook < bash-allow.json" -n "${tag}deny" "$hook < bash-deny.json"
		-n "${tag}read-deny" "$hook < read-deny.json")
done
cd "$tmp"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
# hyperfine subtracts the shell's own start-up from each run.
hyperfine --warmup 20 --runs "$runs" --shell=bash "${cmds[@]}" --export-markdown "$tmp/hook.md"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$tmp/hook.md"
