#!/usr/bin/env bash
# Start-up cost of `moat run` against bare `true`, bwrap, unshare and
# sandbox-runtime's srt, and file-I/O overhead inside moat, with hyperfine
# in one run. Writes bench/RESULTS-run.md.
#   bench/run-startup.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=20
[ "${1:-}" = "--quick" ] && runs=5
command -v hyperfine >/dev/null || { echo "run-startup: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/moat" ./cmd/moat
chmod 755 "$work"
mkdir -p "$work/ws"
cd "$work/ws"
export HOME="$work" MOAT_MANAGED_POLICY=
moat="$work/moat run -q --audit $work/audit.jsonl --"

cmds=(-n "true" "true" -n "moat run -- true" "$moat true")
notes=()
if command -v bwrap >/dev/null; then
	cmds+=(-n "bwrap (ro root, all namespaces, cap-drop ALL)" "bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --unshare-all --cap-drop ALL --die-with-parent --new-session true")
else
	notes+=("bwrap: not installed (apt-get install bubblewrap)")
fi
cmds+=(-n "unshare -Urnpfimu --mount-proc" "unshare -Urnpfimu --mount-proc true")
srt=""
if command -v srt >/dev/null; then
	srt=$(command -v srt)
elif command -v npm >/dev/null && npm install --prefix "$work/npm" --silent @anthropic-ai/sandbox-runtime >/dev/null 2>&1; then
	srt="$work/npm/node_modules/.bin/srt"
fi
if [ -n "$srt" ]; then
	echo '{"network":{"allowedDomains":[],"deniedDomains":[]},"filesystem":{"denyRead":[],"allowWrite":["."],"denyWrite":[]}}' >"$work/srt.json"
	cmds+=(-n "srt (sandbox-runtime)" "$srt -s $work/srt.json true")
else
	notes+=("srt: @anthropic-ai/sandbox-runtime could not be installed with npm")
fi

hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/startup.md" "${cmds[@]}" >&2

# File I/O: open, fstat and close one file 100,000 times.
cat >"$work/ws/io.py" <<'PY'
import os
p = os.path.join(os.getcwd(), "io-target")
open(p, "w").close()
for _ in range(100000):
    fd = os.open(p, os.O_RDONLY); os.fstat(fd); os.close(fd)
PY
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/io.md" \
	-n "file I/O loop, bare" "python3 io.py" \
	-n "file I/O loop, in moat run" "$moat python3 io.py" >&2

out="$OLDPWD/bench/RESULTS-run.md"
{
	echo "# moat run: start-up and file-I/O overhead"
	echo
	echo "Measured by \`bench/run-startup.sh\` on $(uname -r), $(nproc) cores, $(date -u +%Y-%m-%d); hyperfine -N, $runs runs, 3 warm-ups."
	echo "moat runs the default profile (cgroups when root: each run creates and removes them). Load average at the end: $(cut -d" " -f1-3 /proc/loadavg) (other benchmarks shared the machine when this was taken: compare ratios within one run only)."
	echo
	echo "## Start-up: \`CMD true\`"
	echo
	cat "$work/startup.md"
	echo
	echo "## File I/O: open/fstat/close 100,000 times (python3)"
	echo
	cat "$work/io.md"
	for n in "${notes[@]}"; do echo; echo "- $n"; done
} >"$out"
echo "run-startup: wrote $out" >&2
