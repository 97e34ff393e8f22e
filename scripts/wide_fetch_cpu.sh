#!/usr/bin/env bash
# The broker's CPU per fetch of a wide topic that has nothing new: an idle group consumer (kcat,
# librdkafka) of a 10,000-partition topic long-polls (fetch.wait.max.ms 500, every partition in
# every request: librdkafka sends no incremental fetch sessions); the broker's CPU time over 10 s,
# from /proc, divided by the fetches the consumer logged. Three consumers per broker binary, the
# binaries alternated (ratios, not absolute times: the machine is shared).
#
#   scripts/wide_fetch_cpu.sh [--partitions N] [--rounds R] BINARY...
#
# One line per consumer: binary, CPU ticks, fetches, ms of broker CPU per fetch. Needs kcat.
set -euo pipefail
partitions=10000 rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --partitions) partitions="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--partitions N] [--rounds R] BINARY..." >&2; exit 2; }
command -v kcat >/dev/null || { echo "needs kcat" >&2; exit 2; }
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; pkill -P $$ kcat 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))

serve() { # binary: starts it on $work/data, sets $pid
  : >"$work/out"
  "$1" serve --set "log.dirs=$work/data" --set "listeners=PLAINTEXT://127.0.0.1:$port" \
    --set "num.partitions=$partitions" >"$work/out" 2>>"$work/serve.log" &
  pid=$!
  while ! grep -q "serving on" "$work/out"; do
    kill -0 "$pid" 2>/dev/null || { echo "serve exited: $(tail -3 "$work/serve.log")" >&2; exit 1; }
    sleep 0.2
  done
}
stop() { kill "$pid"; wait "$pid" || true; pid=""; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
fetches() { grep -cE "Fetch [0-9]+/[0-9]+/$partitions toppar" "$work/consumer.log" || true; }

# The topic, created once (auto-created with num.partitions by the first produce).
serve "$1"
echo hello | kcat -b "127.0.0.1:$port" -P -t wide
stop

for _ in $(seq "$rounds"); do
  for binary in "$@"; do
    serve "$binary"
    for _ in 1 2 3; do
      timeout 30 kcat -b "127.0.0.1:$port" -G "g$RANDOM" -X debug=fetch -o end wide \
        >/dev/null 2>"$work/consumer.log" &
      consumer=$!
      sleep 12 # joined (3 s initial rebalance delay) and fetching
      t0=$(ticks) f0=$(fetches)
      sleep 10
      t1=$(ticks) f1=$(fetches)
      kill "$consumer" 2>/dev/null; wait "$consumer" 2>/dev/null || true
      python3 -c "print('$(basename "$binary")', $t1 - $t0, $f1 - $f0, round(($t1 - $t0) * 10 / max($f1 - $f0, 1), 1))"
    done
    stop
  done
done
