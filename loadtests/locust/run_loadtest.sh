#!/usr/bin/env bash
# `make loadtest`: serve the newest bundle (building a synthetic one first if there is none) on a
# free loopback port with the embedded feature store, run locust headless against it and exit with
# locust's exit code: non-zero when a p99 or the error ratio exceeds its limit.
#
# Overridable: USERS (20), SPAWN_RATE (10), DURATION (30s), MAX_P99_MS (25), MAX_ERROR_RATIO (0.01),
# BUNDLE (newest under bundles/), OUT (loadtest-results), BIN (.venv/bin), LOCUST_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
BUNDLES=${BUNDLES:-bundles}
OUT=${OUT:-loadtest-results}
USERS=${USERS:-20}
SPAWN_RATE=${SPAWN_RATE:-10}
DURATION=${DURATION:-30s}
MAX_P99_MS=${MAX_P99_MS:-25}
MAX_ERROR_RATIO=${MAX_ERROR_RATIO:-0.01}

newest_bundle() {
  local newest="" dir
  for dir in "$BUNDLES"/*/; do
    dir=${dir%/}
    [ -f "$dir/manifest.json" ] || continue
    if [ -z "$newest" ] || [ "$dir" -nt "$newest" ]; then newest=$dir; fi
  done
  echo "$newest"
}

bundle=${BUNDLE:-$(newest_bundle)}
if [ -z "$bundle" ]; then
  echo "loadtest: no bundle under $BUNDLES/, building a synthetic one"
  "$BIN/encore" build --out "$BUNDLES"
  bundle=$(newest_bundle)
fi

mkdir -p "$OUT"
work=$(mktemp -d)
port=$("$BIN/python" -c 'from loadtests.harness import free_port; print(free_port())')
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/encore" serve --bundle "$bundle" --host 127.0.0.1 --port "$port" --no-metrics \
  --exposure-log-dir "$work/exposures" --outcome-log-dir "$work/outcomes" >"$OUT/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  grep -q "encore serving" "$OUT/server.log" && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "loadtest: the server exited during start-up:" >&2
    cat "$OUT/server.log" >&2
    exit 1
  fi
  sleep 0.2
done
if ! grep -q "encore serving" "$OUT/server.log"; then
  echo "loadtest: the server did not report serving within 60 s (log: $OUT/server.log)" >&2
  exit 1
fi

echo "loadtest: $USERS users for $DURATION against bundle $bundle on 127.0.0.1:$port" \
  "(limits: p99 $MAX_P99_MS ms, error ratio $MAX_ERROR_RATIO)"
status=0
# shellcheck disable=SC2086  # LOCUST_ARGS is a list of extra flags
"$BIN/locust" -f loadtests/locust/locustfile.py --headless -u "$USERS" -r "$SPAWN_RATE" -t "$DURATION" \
  --host "127.0.0.1:$port" --bundle "$bundle" --max-p99-ms "$MAX_P99_MS" --max-error-ratio "$MAX_ERROR_RATIO" \
  --csv "$OUT/encore" --html "$OUT/encore.html" --only-summary ${LOCUST_ARGS:-} || status=$?
echo "loadtest: results in $OUT/ (encore_stats.csv, encore.html, server.log); exit code $status"
exit "$status"
