#!/usr/bin/env bash
# Browser tests of distill serve's web pages (ctest label "browser"): Debian's Chromium driven
# headless by playwright-core from npm (pointed at the system browser: no browser download)
# against a live server of a tiny model. Screenshots go to BUILD/browser-artifacts/.
# Exits 77 (ctest: skipped) with the reason when Chromium, node or the npm registry is missing.
#   tests/browser/run.sh DISTILL_BINARY BUILD_DIR
set -euo pipefail
distill=$(realpath "$1") build=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIPPED: $*"; exit 77; }
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || skip "Chromium is not installed (apt-get install chromium)"
command -v node > /dev/null && command -v npm > /dev/null || skip "node or npm is not installed"

# playwright-core (no dependencies of its own), fetched once into the build tree under a lock.
cache=$build/npm-cache/playwright-core
if [ ! -f "$cache/package/package.json" ]; then
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -f "$cache/package/package.json" ]; then
      (cd "$cache" && timeout 300 npm pack --silent playwright-core@1.65.1 > /dev/null 2>&1) || skip "npm pack playwright-core failed (registry unreachable?)"
      tar xzf "$cache"/playwright-core-1.65.1.tgz -C "$cache"
    fi
  ) 9> "$build/npm-cache/.playwright.lock"
fi

work=$(mktemp -d /tmp/distill-browser-XXXXXX)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT
artifacts=$build/browser-artifacts
mkdir -p "$artifacts"

# A tiny model that answers "hi" with markup a careless page would run.
"$distill" init --preset tiny --tokenizer bytes --seed 3 -o "$work/base" > /dev/null 2>&1
hostile='<script>alert(1)</script><img src=x onerror=alert(2)> **bold** and `code`'
for i in $(seq 64); do
  jq -cn --arg a "$hostile" '{messages: [{role: "user", content: "hi"}, {role: "assistant", content: $a}]}'
done > "$work/hostile.jsonl"
"$distill" train --student "$work/base" --data "$work/hostile.jsonl" -o "$work/model" --steps 150 --batch 8 --seq-len 96 \
  --lr 0.003 --warmup 5 --seed 1 > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }

"$distill" keys add "$work/keys.json" --name owner --admin > "$work/owner.key" 2> /dev/null
"$distill" keys add "$work/keys.json" --name user > "$work/user.key" 2> /dev/null
"$distill" keys add "$work/keys.json" --name scraper > "$work/scraper.key" 2> /dev/null
jq '. + {guard: {min_requests: 10, window: 40}}' "$work/keys.json" > "$work/keys2.json" && mv "$work/keys2.json" "$work/keys.json"
# Start the server on a random port and wait until /health answers: up to 120 s on a loaded
# machine (ctest runs the demo beside this test). If it exits first (a port taken between the
# pick and the bind), try another port; if it never answers, show its log instead of letting the
# browser report a bare "connection refused".
start_server() {
  port=$((30000 + RANDOM % 20000))
  "$distill" serve "$work/model" --port $port --keys "$work/keys.json" --guard-log "$work/guard.log" --runs "$work" > "$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1200); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && return 0
    kill -0 "$server" 2> /dev/null || { server=""; return 1; }
    sleep 0.1
  done
  return 2
}
up=1
for attempt in 1 2 3; do
  start_server && { up=0; break; }
  echo "serve did not come up on port $port (attempt $attempt); its log:"; cat "$work/serve.log"
  [ -n "$server" ] && { kill "$server" 2> /dev/null; wait "$server" 2> /dev/null || true; server=""; }
done
[ $up -eq 0 ] || { echo "FAIL: distill serve never answered /health"; exit 1; }

status=0
NODE_PATH="$cache" node "$here/web.test.mjs" "http://127.0.0.1:$port" "$chromium" "$cache/package/index.mjs" "$artifacts" \
  "$(cat "$work/user.key")" "$(cat "$work/owner.key")" "$(cat "$work/scraper.key")" "$hostile" || status=$?
[ $status -eq 0 ] || { echo "the server's log:"; tail -n 40 "$work/serve.log"; }
exit $status
