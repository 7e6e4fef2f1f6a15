#!/usr/bin/env bash
# Start-up cost of `moat run` against bare `true`, bwrap, unshare and
# sandbox-runtime's srt, and file-I/O overhead inside moat, with hyperfine
# in one run, and where moat's start-up time goes (MOAT_TRACE_START=1,
# the median of each step). Writes bench/RESULTS-run.md.
#   bench/run-startup.sh [--quick]
#   MOAT_COMPARE=/path/to/another/moat [MOAT_COMPARE_NAME=what] bench/run-startup.sh
#     adds its row and its steps (the name describes it in the results)
#   bench/run-startup.sh --workspace [--quick]
#     measures only the workspace modes (rw, overlay, copy on a small and a
#     large tree) and replaces that section of bench/RESULTS-run.md
# Before each part it waits (up to QUIET_WAIT seconds, default 300) for a
# quiet machine: others using under 10 % of the CPUs over a second. The
# start-up comparison is run again (3 times at most) while others used
# over 15 % of the CPUs during it, and the least disturbed run is kept.
# The results say how much of the CPUs others used.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=20
only_ws=""
for a in "$@"; do
	case $a in
	--quick) runs=5 ;;
	--workspace) only_ws=yes ;;
	esac
done
command -v hyperfine >/dev/null || { echo "run-startup: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }

# Busy CPU ticks of the whole machine (user, nice, system, steal).
busy() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; }
ncpu=$(nproc)
never_quiet=""
wait_quiet() {
	local b0 b1
	for _ in $(seq "${QUIET_WAIT:-300}"); do
		b0=$(busy)
		sleep 1
		b1=$(busy)
		[ $(((b1 - b0) * 100 / (ncpu * 100))) -lt 10 ] && return
	done
	never_quiet=yes
	echo "run-startup: the machine did not become quiet; measuring anyway" >&2
}
# ours sets OURS to this script's children's CPU seconds so far (bash's
# times, which must run in this shell, not in a $(…) subshell).
ours() {
	times >"$work/times"
	OURS=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }' "$work/times")
}
# seg_start, then seg_end sets OTHERS to others' share of the CPUs (%) in
# between: the machine's busy time less this script's.
seg_start() {
	ours
	s_busy=$(busy) s_t=$(date +%s%N) s_ours=$OURS
}
seg_end() {
	ours
	OTHERS=$(awk -v b="$(($(busy) - s_busy))" -v o="$OURS" -v o0="$s_ours" -v t="$(($(date +%s%N) - s_t))" -v n="$ncpu" \
		'BEGIN { x = (b / 100 - (o - o0)) / (t / 1e9 * n) * 100; if (x < 0) x = 0; printf "%.0f", x }')
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
load_before=$(cut -d" " -f1-3 /proc/loadavg)
go build -o "$work/moat" ./cmd/moat
chmod 755 "$work"
mkdir -p "$work/ws"
cd "$work/ws"
export HOME="$work" MOAT_MANAGED_POLICY=
moat="$work/moat run -q --audit $work/audit.jsonl --"

# The workspace modes' cost on start-up: rw (a bind), overlay (a manifest
# of the tree, then overlayfs mounted by PID 1), copy (the tree staged,
# secrets scanned, into the session), on this small working directory and
# on a large tree. Sessions are removed between runs (not timed).
ws_bench() {
	# TREE DIRS FILES: FILES files of 1 KiB in each of DIRS directories.
	local gen='
import os, sys
root, dirs, files, blob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), b"x" * 1023 + b"\n"
for d in range(dirs):
    p = os.path.join(root, "d%03d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(files):
        with open(os.path.join(p, "f%03d.txt" % f), "wb") as fh:
            fh.write(blob)'
	python3 -c "$gen" "$work/small" 10 10
	python3 -c "$gen" "$work/large" 100 100
	local m="$work/moat run -q --audit $work/audit.jsonl" tree
	wait_quiet
	seg_start
	for tree in small large; do
		(
			cd "$work/$tree"
			hyperfine -N --warmup 2 --runs "$runs" --prepare "rm -rf $work/.local/state/moat/sessions" --export-markdown "$work/ws-$tree.md" \
				-n "$tree tree, --workspace rw" "$m -- true" \
				-n "$tree tree, --workspace overlay" "$m --workspace overlay -- true" \
				-n "$tree tree, --workspace copy" "$m --workspace copy -- true" >&2
		)
	done
	seg_end
	{
		echo "## Workspace modes: \`moat run --workspace MODE -- true\`"
		echo
		echo "Measured $(date -u +%Y-%m-%d) on $(uname -r), $(nproc) cores; hyperfine -N, $runs runs, 2 warm-ups; others used $OTHERS % of the CPUs; load average before: $(cut -d" " -f1-3 /proc/loadavg)."
		echo "Small tree: 100 files of 1 KiB in 10 directories; large: 10,000 files of 1 KiB in 100 directories."
		echo "rw binds the workspace; overlay records a manifest (an lstat of every entry) and PID 1 mounts overlayfs over it; copy stages"
		echo "the tree into the session (workspace.Stage, secrets scanned). Each run's session is removed before the next (not timed)."
		echo
		cat "$work/ws-small.md"
		echo
		cat "$work/ws-large.md"
	} >"$work/ws-section.md"
}
if [ -n "$only_ws" ]; then
	ws_bench
	out="$OLDPWD/bench/RESULTS-run.md"
	# Replace the section (up to the next "## " heading), or append it.
	awk -v sec="$work/ws-section.md" '
		/^## Workspace modes/ { skip = 1; while ((getline l < sec) > 0) print l; print ""; done = 1; next }
		skip && /^## / { skip = 0 }
		!skip { print }
		END { if (!done) { print ""; while ((getline l < sec) > 0) print l } }' "$out" >"$work/results.md"
	cp "$work/results.md" "$out"
	echo "run-startup: wrote the workspace section of $out" >&2
	exit 0
fi

cmds=(-n "true" "true" -n "moat run -- true" "$moat true")
notes=()
if [ -n "${MOAT_COMPARE:-}" ]; then
	cp "$MOAT_COMPARE" "$work/moat-compare"
	cmds+=(-n "moat run -- true (MOAT_COMPARE)" "$work/moat-compare run -q --audit $work/audit.jsonl -- true")
	notes+=("MOAT_COMPARE: ${MOAT_COMPARE_NAME:-$MOAT_COMPARE}")
fi
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

# hyperfine hides a failing command's output: say what failed.
explain_failure() {
	for _ in $(seq 200); do
		if ! $moat true </dev/null >"$work/fail.out" 2>&1; then
			echo "run-startup: moat run -- true failed:" >&2
			cat "$work/fail.out" >&2
			exit 1
		fi
	done
	echo "run-startup: hyperfine failed, and 200 more runs of moat run -- true did not" >&2
	exit 1
}
startup_others=1000
for attempt in 1 2 3; do
	wait_quiet
	seg_start
	hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/startup-try.md" "${cmds[@]}" >&2 || explain_failure
	seg_end
	o=$OTHERS
	echo "run-startup: start-up comparison $attempt: others used $o % of the CPUs" >&2
	if [ "$o" -lt "$startup_others" ]; then
		startup_others=$o
		cp "$work/startup-try.md" "$work/startup.md"
	fi
	[ "$o" -le 15 ] && break
done

# Where the time goes: each step's offset from moat's first mark, median
# of the runs (MOAT_TRACE_START=1; docs/sandbox.md); with MOAT_COMPARE,
# its steps too (when it has the trace), runs interleaved.
wait_quiet
seg_start
: >"$work/trace.txt"
for _ in $(seq "$runs"); do
	MOAT_TRACE_START=1 $moat true 2>&1 >/dev/null | sed -n 's/^moat: trace:/A/p' >>"$work/trace.txt" || true
	if [ -n "${MOAT_COMPARE:-}" ]; then
		MOAT_TRACE_START=1 "$work/moat-compare" run -q --audit "$work/audit.jsonl" -- true 2>&1 >/dev/null |
			sed -n 's/^moat: trace:/B/p' >>"$work/trace.txt" || true
	fi
done
# Lines: A|B, ms, "ms", (+delta), process, step…
awk -v cmp="${MOAT_COMPARE:+yes}" '
function median(set, key,   m, a, b, x, s) { m = n[set, key]
	for (a = 1; a <= m; a++) s[a] = v[set, key, a] + 0
	for (a = 2; a <= m; a++) { x = s[a]; b = a - 1; while (b > 0 && s[b] > x) { s[b + 1] = s[b]; b-- } s[b + 1] = x }
	return (m % 2) ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2 }
{ set = $1; step = $6; for (i = 7; i <= NF; i++) step = step " " $i; key = $5 " | " step
	if (!(key in seen)) { seen[key] = 1; keys[++k] = key }; v[set, key, ++n[set, key]] = $2 }
END { for (j = 1; j <= k; j++) { key = keys[j]
		a = n["A", key] ? sprintf("%.2f", median("A", key)) : "–"
		b = n["B", key] ? sprintf("%.2f", median("B", key)) : "–"
		order = n["A", key] ? median("A", key) : 1e6 + median("B", key)
		printf "%012.3f| %s | %s |%s\n", order, key, a, cmp ? " " b " |" : "" } }' "$work/trace.txt" |
	sort -n | cut -d'|' -f2- | sed 's/^/|/' >"$work/trace-rows.md"
{
	if [ -n "${MOAT_COMPARE:-}" ]; then
		echo "| process | step | moat run, median ms from start | MOAT_COMPARE |"
		echo "|:---|:---|---:|---:|"
	else
		echo "| process | step | median ms from start |"
		echo "|:---|:---|---:|"
	fi
	cat "$work/trace-rows.md"
} >"$work/trace.md"
seg_end
trace_others=$OTHERS

# File I/O: open, fstat and close one file 100,000 times.
cat >"$work/ws/io.py" <<'PY'
import os
p = os.path.join(os.getcwd(), "io-target")
open(p, "w").close()
for _ in range(100000):
    fd = os.open(p, os.O_RDONLY); os.fstat(fd); os.close(fd)
PY
wait_quiet
seg_start
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/io.md" \
	-n "file I/O loop, bare" "python3 io.py" \
	-n "file I/O loop, in moat run" "$moat python3 io.py" >&2

seg_end
io_others=$OTHERS
ws_bench

out="$OLDPWD/bench/RESULTS-run.md"
{
	echo "# moat run: start-up and file-I/O overhead"
	echo
	echo "Measured by \`bench/run-startup.sh\` on $(uname -r), $(nproc) cores, $(date -u +%Y-%m-%d); hyperfine -N, $runs runs, 3 warm-ups."
	echo "moat runs the default profile (cgroups when root: each run creates and removes them). Others' share of the CPUs while each part ran: start-up $startup_others %, steps $trace_others %, file I/O $io_others %$([ -z "$never_quiet" ] || echo " (the machine was not always quiet before a part)"); load average before: $load_before, at the end: $(cut -d" " -f1-3 /proc/loadavg) (1, 5, 15 minutes). Compare ratios within one run only."
	echo
	echo "## Start-up: \`CMD true\`"
	echo
	cat "$work/startup.md"
	echo
	echo "## Where moat's start-up goes (\`MOAT_TRACE_START=1\`, median of $runs runs)"
	echo
	echo "moat: the parent; init: the sandbox's PID 1 (its first line, \`started\`, is when its Go runtime reached sandbox.Init); exec: a re-executed last stage. A step is the time at which it ended. –: no such step in that build."
	echo
	cat "$work/trace.md"
	echo
	echo "## File I/O: open/fstat/close 100,000 times (python3)"
	echo
	cat "$work/io.md"
	echo
	cat "$work/ws-section.md"
	for n in "${notes[@]}"; do echo; echo "- $n"; done
} >"$out"
echo "run-startup: wrote $out" >&2
