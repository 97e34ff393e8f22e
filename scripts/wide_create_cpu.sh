#!/usr/bin/env bash
# The broker's cost of creating a wide topic: `serve` in a fresh data dir, `sluice topic create
# big -p N` (CreateTopics, answered once every shard opened its partitions), then the broker's
# CPU seconds from /proc, the seconds until the create returned, the partitions the topic lists,
# the seconds a restart takes to say "serving", and the size of the metadata file. Each binary
# once per round, the order reversed every other round (ratios, not absolute times: the machine
# is shared). Between runs the data is removed and synced, and the script waits 3 s.
#
#   scripts/wide_create_cpu.sh [--partitions N] [--rounds R] BINARY...
#
# One line per run. Each BINARY is a sluice build (its own CLI creates the topic).
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

run() {
  local bin=$1 dir pid t0 t1 t2 t3 cpu count
  dir=$(mktemp -d)
  start() {
    "$bin" serve --set "log.dirs=$dir/data" --set "listeners=PLAINTEXT://127.0.0.1:$port" \
      >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do grep -q "serving on" "$dir/log" && return; sleep 0.05; done
    echo "$bin did not start: $(tail -3 "$dir/log")" >&2; exit 1
  }
  stop() { kill -INT "$pid"; wait "$pid" 2>/dev/null || true; }
  start
  t0=$(date +%s.%N)
  "$bin" topic -b "127.0.0.1:$port" --timeout 300 create big -p "$partitions" >/dev/null
  t1=$(date +%s.%N)
  count=$("$bin" topic -b "127.0.0.1:$port" list 2>/dev/null | awk '$1 == "big" { print $2 }')
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
  # A mass of inodes just freed makes ext4's next allocations slow (`recently_deleted` in its
  # inode search): let the deletion settle before the next run.
  sync
  sleep 3
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=("$@"); else order=(); for b in "$@"; do order=("$b" "${order[@]}"); done; fi
  for bin in "${order[@]}"; do run "$bin"; done
done
