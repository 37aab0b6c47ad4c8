#!/usr/bin/env bash
# `make bench`: build (or reuse) the real-data bundle, serve it on Redis and on the embedded store,
# and measure client-observed Rank latency for both surfaces. Figures are printed and written to
# bench-results/. Never part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data/hetrec2011-lastfm-2k}
OUT=${OUT:-bench-results}
REQUESTS=${REQUESTS:-2000}
mkdir -p "$OUT"
bundle=$(ls -d bundles/hetrec-bench 2>/dev/null || true)
if [ -z "$bundle" ]; then
  if [ ! -f "$DATA/user_artists.dat" ]; then echo "bench: real dataset not found at $DATA" >&2; exit 1; fi
  "$BIN/encore" build --dataset hetrec --data-path "$DATA" --out bundles --version hetrec-bench | tee "$OUT/build.log"
  bundle=bundles/hetrec-bench
fi
port=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rport=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
cleanup() { kill "${server_pid:-0}" "$redis_pid" 2>/dev/null || true; }
trap cleanup EXIT
for store in redis embedded; do
  extra=()
  [ "$store" = redis ] && extra=(--redis-url "redis://127.0.0.1:$rport/0" --load-features)
  "$BIN/encore" serve --bundle "$bundle" --port "$port" --no-metrics "${extra[@]}" >"$OUT/server-$store.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do grep -q "encore serving" "$OUT/server-$store.log" && break; sleep 0.2; done
  echo "== Rank latency, real-data bundle, $store feature store, closed loop, $REQUESTS requests per surface =="
  "$BIN/python" -m tests.benchmarks.rank_latency --bundle "$bundle" --target "127.0.0.1:$port" \
    --requests "$REQUESTS" --json "$OUT/rank_latency_$store.json"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
