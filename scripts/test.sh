#!/usr/bin/env bash
# The whole test suite: installs what the tests need (as root, with
# apt-get), then vets, runs every Go test (unit, fuzz seed corpora,
# integration with real curl, git, python3 clients), a short run of each
# fuzzer, the benchmark harness in quick mode, and the README's demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh
# Thousands of idle tunnels in the tests need file descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

echo "== gofmt, go vet"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad" >&2; exit 1; fi
go vet ./...

# The docker tier's tests need a daemon (no bridge, no registry); as root
# this starts one if none answers.
if [ "$(id -u)" = 0 ] || [ "${CI:-}" = true ]; then scripts/start-dockerd.sh; fi

echo "== go test ./..."
go test -count=1 -timeout 20m ./...

echo "== moat verify on every tier (strict; go test ran the default profile)"
scripts/verify-tiers.sh --profiles strict

echo "== fuzzers (short runs; seed corpora already ran above)"
fuzztime=${FUZZTIME:-10s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "-- $pkg $f"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$pkg" >/tmp/moat-fuzz.log 2>&1 || { cat /tmp/moat-fuzz.log; exit 1; }
	done
done

echo "== benchmark harness (quick)"
if [ -x bench/run.sh ]; then
	bench/run.sh --quick --out "$(mktemp -d)/RESULTS.quick.md"
fi

echo "== README demos"
scripts/demo-run.sh
scripts/demo.sh
echo "== all tests passed"
