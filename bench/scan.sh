#!/usr/bin/env bash
# Scan throughput and recall of `moat scan` against the gitleaks CLI of the
# version moat uses as a library, side by side with hyperfine, on a generated
# tree (the labelled corpus of internal/workspace/testdata/scan, many copies,
# each from its own seed, plus secret-free source files) and on the Go module
# cache. Writes bench/RESULTS-scan.md.
#   bench/scan.sh [--quick]    (--quick: a small tree, no module cache, 2 runs)
#   COPIES=N FILLER=N RUNS=N REAL=DIR REAL_RUNS=N bench/scan.sh   to change the trees
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""
[ "${1:-}" = "--quick" ] && quick=yes
command -v hyperfine >/dev/null || { echo "scan.sh: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
command -v jq >/dev/null || { echo "scan.sh: jq is missing (apt-get install jq)" >&2; exit 1; }
if [ -n "$quick" ]; then
	copies=${COPIES:-5} filler=${FILLER:-300} runs=${RUNS:-2} real_runs=${REAL_RUNS:-1} real=${REAL:-}
else
	copies=${COPIES:-60} filler=${FILLER:-6000} runs=${RUNS:-3} real_runs=${REAL_RUNS:-2} real=${REAL:-$(go env GOMODCACHE)}
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version=$(go list -m -f '{{.Version}}' github.com/zricethezav/gitleaks/v8)
rev=$(git describe --always --dirty)
go build -o "$work/moat" ./cmd/moat
GOBIN="$work/bin" go install "github.com/zricethezav/gitleaks/v8@$version"
gitleaks="$work/bin/gitleaks"
MOAT_SCAN_CORPUS="$work/tree" COPIES=$copies FILLER=$filler \
	go test -count=1 -run '^TestWriteScanCorpus$' ./internal/workspace >/dev/null
mv "$work/tree/labels.tsv" "$work/labels.tsv"
load_before=$(cut -d" " -f1-3 /proc/loadavg)

# size DIR: "bytes files" of its regular files.
size() { find "$1" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }'; }

# bench NAME DIR RUNS: hyperfine both scanners over DIR; leaves their reports in
# $work/NAME-moat.json and $work/NAME-gitleaks.json. moat's size cap is
# lifted: gitleaks has none.
bench() {
	local name=$1 dir=$2 n=$3
	hyperfine -i --style basic --warmup 1 --runs "$n" --export-json "$work/$name-hf.json" \
		-n "moat scan" "$work/moat scan --json --max-size 1000000000 $dir >$work/$name-moat.json 2>/dev/null" \
		-n "gitleaks dir" "$gitleaks dir --no-banner --redact --log-level error --report-format json --report-path $work/$name-gitleaks.json $dir" \
		>"$work/$name-hf.txt" 2>&1 || { cat "$work/$name-hf.txt" >&2; exit 1; }
}

# rows NAME DIR LABEL: the table's rows for one tree.
rows() {
	local name=$1 dir=$2 label=$3 bytes files
	read -r bytes files < <(size "$dir")
	jq -r --argjson bytes "$bytes" --argjson files "$files" --arg tree "$label" '
		.results as $r | ($r[] | select(.command == "gitleaks dir") | .mean) as $g |
		($r[] | select(.command == "gitleaks dir") | .user + .system) as $gc |
		$r[] | "| \($tree) | \(.command) | \(.mean * 1000 | round) ± \((.stddev // 0) * 1000 | round) | \($bytes / 1e6 / .mean * 10 | round / 10) | \($files / .mean | round) | \($g / .mean * 100 | round / 100) | \((.user + .system) * 100 | round / 100) | \($gc / (.user + .system) * 100 | round / 100) |"' \
		"$work/$name-hf.json"
	echo "$label: $((bytes / 1000000)) MB in $files files" >>"$work/sizes"
}

# recall WHO FINDINGS_TSV: planted items found / planted, for content
# secrets and for all (content and credential files by name). A finding
# counts when its path, line and rule match a label's.
recall() {
	awk -F'\t' -v who="$1" '
		NR == FNR { found[$1 "\t" $2 "\t" $3] = 1; next }
		{ all++; if ($2 > 0) content++; if (($1 "\t" $2 "\t" $3) in found) { hit++; if ($2 > 0) chit++ } }
		END { printf "| %s | %d / %d = %.3f | %d / %d = %.3f |\n", who, chit, content, chit / content, hit, all, hit / all }' \
		"$2" "$work/labels.tsv"
}

bench generated "$work/tree" "$runs"
[ -n "$real" ] && bench real "$real" "$real_runs"
load_after=$(cut -d" " -f1-3 /proc/loadavg)

prefix="$work/tree/"
jq -r --arg p "$prefix" '.findings[] | [(.path | ltrimstr($p)), .line, .rule] | @tsv' "$work/generated-moat.json" >"$work/moat.tsv"
jq -r --arg p "$prefix" '.[] | [(.File | ltrimstr($p)), .StartLine, .RuleID] | @tsv' "$work/generated-gitleaks.json" >"$work/gitleaks.tsv"
nlabels=$(wc -l <"$work/labels.tsv")

{
	echo "# moat scan against gitleaks $version"
	echo
	echo "\`bench/scan.sh${quick:+ --quick}\` at moat $rev, $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs,"
	echo "load average $load_before before and $load_after after (other work shares the machine)."
	echo "hyperfine, $runs runs (real tree: $real_runs) after a warm-up (files in the page cache); moat's size cap lifted,"
	echo "gitleaks with its defaults (decoding depth 5, no archives)."
	echo
	echo "| tree | scanner | wall ms (mean ± σ) | MB/s | files/s | wall, gitleaks / this | CPU s (user+sys) | CPU, gitleaks / this |"
	echo "|---|---|---|---|---|---|---|---|"
	rows generated "$work/tree" generated
	[ -n "$real" ] && rows real "$real" "real: $(basename "$real")"
	echo
	sed 's/^/- /' "$work/sizes"
	[ -n "$real" ] && echo "- real: \`$real\` (\`go env GOMODCACHE\`: module sources, and the download cache's zips, which both skip as binary)"
	echo
	echo "## Recall on the planted corpus ($copies copies, $nlabels planted items)"
	echo
	echo "| scanner | content secrets | all, with credential files by name |"
	echo "|---|---|---|"
	recall "moat scan" "$work/moat.tsv"
	recall "gitleaks dir" "$work/gitleaks.tsv"
	echo
	echo "Findings in the generated tree: moat $(wc -l <"$work/moat.tsv"), gitleaks $(wc -l <"$work/gitleaks.tsv"); the filler holds no secret."
	echo "gitleaks has no rules on file names, so it finds none of the credential files by name; among content"
	echo "secrets it passes over those in \`.git/\`, after a \`gitleaks:allow\` comment and in a file named \`gitleaks.toml\`."
	if [ -n "$real" ]; then
		echo
		echo "Findings in the real tree: moat $(jq '.findings | length' "$work/real-moat.json"), gitleaks $(jq length "$work/real-gitleaks.json")."
	fi
	echo
	echo "## hyperfine"
	echo
	echo '```'
	cat "$work/generated-hf.txt"
	[ -n "$real" ] && cat "$work/real-hf.txt"
	echo '```'
} >"$work/results.md"
if [ -n "$quick" ]; then
	cat "$work/results.md"
else
	cp "$work/results.md" bench/RESULTS-scan.md
	echo "scan.sh: wrote bench/RESULTS-scan.md" >&2
fi
