#!/usr/bin/env bash
# The README's first command: build moat, start its proxy under the built-in
# default policy (plus one allowed host: a local web server this script
# starts), send one request it allows and one it refuses, and show the
# audit line each produced.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for t in go curl python3; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		pkgs=("${missing[@]/go/golang-go}")
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
	else
		echo "demo: missing ${missing[*]}; install them first" >&2
		exit 1
	fi
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/moat" ./cmd/moat

# A stand-in for a host the agent may use: a web server on this machine.
mkdir "$work/site" && echo "hello from the allowed host" > "$work/site/index.html"
python3 -m http.server --bind 127.0.0.1 0 --directory "$work/site" >"$work/site.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/site.log" | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "${port:-}" ] || { echo "demo: the local web server did not start" >&2; cat "$work/site.log" >&2; exit 1; }

# The built-in default profile allows no egress; this file names one host.
cat >"$work/moat.yaml" <<YAML
version: 1
profile: default
network:
  allow: ["localhost:$port"]
  allow_private: ["localhost"]   # it is a local server, so its loopback address is allowed too
YAML

"$work/moat" proxy --policy "$work/moat.yaml" --listen 127.0.0.1:0 --audit "$work/audit.jsonl" 2>"$work/proxy.log" &
pids+=($!)
for _ in $(seq 100); do
	addr=$(sed -n 's/^moat proxy: listening on tcp \([^ ]*\) .*/\1/p' "$work/proxy.log" | head -1)
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "${addr:-}" ] || { echo "demo: the proxy did not start" >&2; cat "$work/proxy.log" >&2; exit 1; }
echo "== moat proxy is listening on $addr, policy:"
sed 's/^/   /' "$work/moat.yaml"

echo
echo "== allowed: curl -x http://$addr http://localhost:$port/"
curl -sS -x "http://$addr" "http://localhost:$port/"
echo
echo "== refused: curl -v -x http://$addr https://example.com/"
curl -sS -v -x "http://$addr" https://example.com/ 2>&1 | grep -E '^< (HTTP|X-Moat-Error)|^curl:' | sed 's/^/   /' || true

sleep 0.2
echo
echo "== audit lines ($work/audit.jsonl):"
grep -v '"kind":"lifecycle"' "$work/audit.jsonl"
echo
echo "== the same, as 'moat audit' prints them:"
"$work/moat" audit "$work/audit.jsonl" --kind request
"$work/moat" audit "$work/audit.jsonl" --decision deny
