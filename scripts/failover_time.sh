#!/usr/bin/env bash
# How long a three-node cluster is without a controller: the active controller is killed with
# `kill -9` (or stopped with SIGTERM: `--term`, a clean shutdown that hands the leadership over),
# and the time is measured until a surviving node's Metadata names another controller, then until
# a metadata change through it succeeds (the creation of a topic, by a metadata request that
# auto-creates it). Then the node is restarted and the next round begins.
#
#   scripts/failover_time.sh [--term] [--rounds R] BINARY
#
# One line per round. Needs kcat.
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

named_controller() {
  timeout 5 kcat -b "127.0.0.1:$1" -L -m 1 2>/dev/null | awk '/\(controller\)/ {print $2; exit}'
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
  until n=$(named_controller "$port") && [ -n "$n" ] && [ "$n" != "$c" ]; do
    :
  done
  t1=$(date +%s.%N)
  until timeout 5 kcat -b "127.0.0.1:$port" -L -t "after-$round" -m 2 2>/dev/null | grep -q "partition 0, leader"; do
    :
  done
  t2=$(date +%s.%N)
  echo "round $round: controller $c $signal; node $survivor names another controller after" \
    "$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s, a topic created through it after" \
    "$(awk "BEGIN { printf \"%.2f\", $t2 - $t0 }") s"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$SLUICE_CLUSTER_DIR/node$c.pid"
  "$here/cluster.sh" restart "$c" >/dev/null
done
