#!/usr/bin/env bash
# The broker's cost of creating a wide topic: `serve` with num.partitions N in a fresh data dir,
# one kcat message to topic `big` (auto-created), then the broker's CPU seconds from /proc, the
# seconds until kcat returned, the partitions Metadata lists, the seconds a restart takes to say
# "serving", and the size of the metadata file. Each binary once per round, the order reversed
# every other round (ratios, not absolute times: the machine is shared).
#
#   scripts/wide_create_cpu.sh [--partitions N] [--rounds R] BINARY...
#
# One line per run. Needs kcat.
set -euo pipefail
partitions=10000 rounds=1 port=19192
while [ $# -gt 0 ]; do
  case "$1" in
    --partitions) partitions="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--partitions N] [--rounds R] BINARY..." >&2; exit 2; }
command -v kcat >/dev/null || { echo "needs kcat" >&2; exit 2; }

run() {
  local bin=$1 dir pid t0 t1 t2 t3 cpu count
  dir=$(mktemp -d)
  start() {
    "$bin" serve --set "log.dirs=$dir/data" --set "listeners=PLAINTEXT://127.0.0.1:$port" \
      --set "num.partitions=$partitions" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do grep -q "serving on" "$dir/log" && return; sleep 0.05; done
    echo "$bin did not start: $(tail -3 "$dir/log")" >&2; exit 1
  }
  stop() { kill -INT "$pid"; wait "$pid" 2>/dev/null || true; }
  start
  t0=$(date +%s.%N)
  echo hello | kcat -b "127.0.0.1:$port" -P -t big -m 120 2>/dev/null
  t1=$(date +%s.%N)
  count=$(kcat -b "127.0.0.1:$port" -L -t big 2>/dev/null | grep -c "partition " || true)
  cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat")
  stop
  t2=$(date +%s.%N)
  start
  t3=$(date +%s.%N)
  stop
  printf '%s cpu_s=%s create_s=%.1f partitions=%s restart_s=%.1f metadata_bytes=%s\n' \
    "$(basename "$bin")" "$cpu" "$(echo "$t1 - $t0" | bc)" "$count" "$(echo "$t3 - $t2" | bc)" \
    "$(stat -c %s "$dir/data/__cluster_metadata/topics.toml")"
  rm -rf "$dir"
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=("$@"); else order=(); for b in "$@"; do order=("$b" "${order[@]}"); done; fi
  for bin in "${order[@]}"; do run "$bin"; done
done
