#!/usr/bin/env bash
# Staging cost: `moat stage` against `cp -a` and, when rsync is installed,
# `rsync -a --exclude-from`, with hyperfine, on a generated tree (20,000
# files, about 300 MB, some left out by patterns) and on a real one (the Go
# module cache). Writes bench/RESULTS-stage.md.
#   bench/stage.sh [--quick]     --quick: 2,000 files, 3 runs each, and only
#                                the module cache's golang.org/ as the real tree
#   STAGE_REAL=DIR bench/stage.sh   another real tree
# The page cache is warm for every command (hyperfine's warm-up run), so
# this measures what staging costs the CPU, not the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 real_runs=3 files=20000 big=60 real=${STAGE_REAL:-$(go env GOMODCACHE)}
if [ "${1:-}" = --quick ]; then
	runs=3 real_runs=2 files=2000 big=6
	[ -n "${STAGE_REAL:-}" ] || [ ! -d "$real/golang.org" ] || real=$real/golang.org
fi
command -v hyperfine >/dev/null || { echo "stage.sh: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
have_rsync=""
command -v rsync >/dev/null && have_rsync=yes

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/moat" ./cmd/moat
moat=$work/moat

# The generated tree: source-like text files of 1-16 KiB in nested
# directories, $big binary files of 4 MiB, a node_modules and logs that the
# patterns leave out, a few links. Seeded, so every run sees the same tree.
python3 - "$work/gen" "$files" "$big" <<'PY'
import os, random, sys
root, n, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(6)
words = [b"func", b"return", b"value", b"config", b"error", b"state", b"index", b"buffer"]
for i in range(n):
    top = "node_modules" if i % 10 == 0 else "src"
    d = os.path.join(root, top, "p%02d" % (i % 40), "q%02d" % (i % 13))
    os.makedirs(d, exist_ok=True)
    ext = ".log" if i % 50 == 1 else ".go"
    size = rnd.randint(1024, 16384)
    line = b" ".join(rnd.choice(words) for _ in range(10)) + b"\n"
    with open(os.path.join(d, "f%05d%s" % (i, ext)), "wb") as f:
        f.write((line * (size // len(line) + 1))[:size])
os.makedirs(os.path.join(root, "assets"), exist_ok=True)
for i in range(big):
    with open(os.path.join(root, "assets", "blob%03d.bin" % i), "wb") as f:
        f.write(rnd.randbytes(4 << 20))
os.symlink("src/p00", os.path.join(root, "first"))
os.symlink("../../../assets/blob000.bin", os.path.join(root, "src", "p01", "q01", "blob"))
with open(os.path.join(root, ".moatignore"), "w") as f:
    f.write("node_modules\n**/*.log\n")
with open(os.path.join(os.path.dirname(root), "rsync-exclude"), "w") as f:
    f.write("/node_modules\n*.log\n")  # the same paths in rsync's syntax
PY
gen_size=$(du -sh "$work/gen" | cut -f1)
gen_files=$(find "$work/gen" -type f | wc -l)
real_size=$(du -sh "$real" | cut -f1)
real_files=$(find "$real" -type f | wc -l)

# bench NAME SRC RUNS [extra hyperfine commands...]: writes $work/NAME.json
bench() {
	local name=$1 src=$2 n=$3
	shift 3
	local args=(-n "moat stage --no-scan" "$moat stage --no-scan $src $work/out"
		-n "cp -a" "cp -a $src $work/out")
	if [ -n "$have_rsync" ]; then
		local ex=""
		[ "$name" = generated ] && ex="--exclude-from=$work/rsync-exclude"
		args+=(-n "rsync -a${ex:+ --exclude-from}" "rsync -a $ex $src/ $work/out/")
	fi
	hyperfine -N --warmup 1 --runs "$n" --prepare "sh -c 'chmod -R u+w $work/out 2>/dev/null; rm -rf $work/out'" \
		--export-json "$work/$name.json" "${args[@]}" "$@" >&2
	chmod -R u+w "$work/out" 2>/dev/null || true
	rm -rf "$work/out"
}
bench generated "$work/gen" "$runs" -n "moat stage (with the secret scan)" "$moat stage $work/gen $work/out"
bench real "$real" "$real_runs"

# table NAME: one row per command, with its ratios to cp -a: wall time, and
# CPU time (user + system), which other sessions' load disturbs less.
table() {
	jq -r '
		(.results[] | select(.command == "cp -a")) as $cp |
		.results[] | "| \(.command) | \(.mean * 1000 | floor) ± \(.stddev * 1000 | floor) ms | \(.mean / $cp.mean * 100 | round / 100)× | \((.user + .system) * 100 | round / 100) s | \((.user + .system) / ($cp.user + $cp.system) * 100 | round / 100)× |"' \
		"$work/$1.json"
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "# Staging: moat stage against cp -a and rsync"
	echo
	echo "Command: \`bench/stage.sh${1:+ $1}\` at moat $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(nproc) CPUs,"
	echo "load average $load at the end (other sessions were using the machine)."
	echo "hyperfine -N, $runs runs (the real tree: $real_runs) after a warm-up run, page cache warm; DEST removed before each run."
	echo "\`moat stage --no-scan\` does what \`cp -a\` does plus the checks (patterns, credential names,"
	echo "symlink escape); \`moat stage\` also scans the copy for secrets (gitleaks' rules)."
	[ -n "$have_rsync" ] || echo "rsync is not installed here: no rsync row."
	echo
	echo "## Generated tree: $gen_files files, $gen_size (patterns leave out node_modules/ and *.log: a tenth)"
	echo
	echo "| command | wall, mean ± σ | wall ratio to cp -a | CPU (user + sys) | CPU ratio to cp -a |"
	echo "|---|---|---|---|---|"
	table generated
	echo
	echo "## Real tree: $real_files files, $real_size (the Go module cache${1:+, golang.org/ only})"
	echo
	echo "| command | wall, mean ± σ | wall ratio to cp -a | CPU (user + sys) | CPU ratio to cp -a |"
	echo "|---|---|---|---|---|"
	table real
} >bench/RESULTS-stage.md
cat bench/RESULTS-stage.md
