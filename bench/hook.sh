#!/usr/bin/env bash
# The moat hook as Claude Code runs it: one process per tool call, JSON in,
# JSON out. Measures the round trip with hyperfine (the issue's bar: 5 ms).
# Usage: bench/hook.sh [RUNS]   (needs go and hyperfine)
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
cd "$tmp"
hook="./moat hook claude --policy moat.yaml --claude-settings=false --audit $tmp/audit.jsonl"
# hyperfine subtracts the shell's own start-up from each run.
hyperfine --warmup 20 --runs "$runs" --shell=bash \
	-n allow "$hook < bash-allow.json" \
	-n deny "$hook < bash-deny.json" \
	-n read-deny "$hook < read-deny.json" \
	--export-markdown "$tmp/hook.md"
cat "$tmp/hook.md"
