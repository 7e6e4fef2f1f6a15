#!/usr/bin/env bash
# moat run under the default policy: build moat, start a local web server
# the policy is told to allow, and run one shell in the sandbox that shows
# what it could and could not do — write its workspace but not outside it,
# read none of the masked secrets, reach the allowed server only through
# the proxy, and be refused another domain. moat's summary follows.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for t in go curl python3; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		pkgs=("${missing[@]/go/golang-go}")
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
	else
		echo "demo-run: missing ${missing[*]}; install them first" >&2
		exit 1
	fi
fi

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/moat" ./cmd/moat
chmod 755 "$work"

mkdir "$work/site" && echo "hello from the allowed host" >"$work/site/index.html"
python3 -m http.server --bind 127.0.0.1 0 --directory "$work/site" >"$work/site.log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do # the server prints its port once it listens
	port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/site.log" | head -1)
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || { echo "demo-run: the local server did not start" >&2; exit 1; }

# A workspace and a home with a secret, outside /tmp (the sandbox's /tmp is
# its own) and readable by anyone: only moat's mask hides the key.
home=$(mktemp -d /var/tmp/moat-demo-home-XXXXXX)
trap 'cleanup; rm -rf "$home"' EXIT
mkdir -p "$home/.ssh" "$work/project"
echo "-----BEGIN OPENSSH PRIVATE KEY----- demo" >"$home/.ssh/id_ed25519"
chmod -R a+rX "$home"
cat >"$work/project/moat.yaml" <<YAML
version: 1
network:
  allow: ["localhost:$port"]
  allow_private: ["127.0.0.1"]
YAML

cd "$work/project"
export HOME="$home" MOAT_MANAGED_POLICY=
echo "\$ moat run -- sh -c '…'   (default policy + localhost:$port)"
"$work/moat" run --audit "$work/audit.jsonl" -- sh -c '
try() { printf "%-46s" "$1"; shift; if out=$("$@" 2>&1); then echo "allowed  ${out:+($(echo "$out" | head -1))}"; else echo "refused  ($(echo "$out" | tail -1))"; fi; }
try "write in the workspace"          sh -c "echo ok > notes.txt"
try "write outside it (~/.profile)"   sh -c "echo evil >> ~/.profile"
try "write /etc/passwd"               sh -c "echo evil >> /etc/passwd"
try "read ~/.ssh/id_ed25519 (masked)" cat ~/.ssh/id_ed25519
try "edit moat.yaml (protected)"      sh -c "echo x >> moat.yaml"
try "GET the allowed host via proxy"  curl -sSf -m 10 --noproxy "" http://localhost:'"$port"'/
try "GET example.com (not allowed)"   curl -sSf -m 10 https://example.com/
try "GET it directly, ignoring proxy" curl -sSf -m 10 --noproxy "*" http://127.0.0.1:'"$port"'/
try "resolve a name (no DNS inside)"  getent hosts example.com
try "list processes (host ones are hidden)" sh -c "echo \$(ls /proc | grep -c ^[0-9]) processes visible"
'
