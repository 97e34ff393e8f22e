#!/usr/bin/env bash
# How long a three-node cluster is without a controller: the active controller is killed with
# `kill -9` (or stopped with SIGTERM: `--term`), and the time is measured until a metadata change
# succeeds again (a produce through a surviving node to a new topic, which auto-creates it
# through the quorum). Then the node is restarted and the next round begins.
#
#   scripts/failover_time.sh [--term] [--rounds R] BINARY
#
# One line per round, seconds from the signal to the first acknowledged produce. Needs kcat.
set -euo pipefail
signal=KILL rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --term) signal=TERM; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--term] [--rounds R] BINARY" >&2; exit 2; }
command -v kcat >/dev/null || { echo "needs kcat" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
export SLUICE_BIN=$1 SLUICE_CLUSTER_DIR SLUICE_BASE_PORT=${SLUICE_BASE_PORT:-22000}
SLUICE_CLUSTER_DIR=$(mktemp -d)
trap '"$here/cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$SLUICE_CLUSTER_DIR"' EXIT
"$here/cluster.sh" start 3 >/dev/null

controller() {
  local i
  for i in 1 2 3; do
    timeout 5 kcat -b "127.0.0.1:$((SLUICE_BASE_PORT + i * 10 + 2))" -L 2>/dev/null \
      | awk '/\(controller\)/ {print $2; exit}' && return
  done
}

for round in $(seq 1 "$rounds"); do
  # A settled cluster: every node registered, a controller known.
  for _ in $(seq 1 200); do
    c=$(controller || true)
    [ -n "$c" ] && break
    sleep 0.1
  done
  [ -n "$c" ] || { echo "no controller" >&2; exit 1; }
  survivor=$((c % 3 + 1))
  port=$((SLUICE_BASE_PORT + survivor * 10 + 2))
  echo warm | kcat -b "127.0.0.1:$port" -P -t "warm-$round" -X message.timeout.ms=10000
  pid=$(cat "$SLUICE_CLUSTER_DIR/node$c.pid")
  t0=$(date +%s.%N)
  kill "-$signal" "$pid"
  until echo x | kcat -b "127.0.0.1:$port" -P -t "after-$round" -X message.timeout.ms=10000 \
    -X topic.metadata.refresh.interval.ms=100 2>/dev/null; do
    :
  done
  t1=$(date +%s.%N)
  echo "round $round: controller $c $signal; a change through node $survivor after $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$SLUICE_CLUSTER_DIR/node$c.pid"
  "$here/cluster.sh" restart "$c" >/dev/null
done
