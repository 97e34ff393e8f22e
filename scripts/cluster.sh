#!/usr/bin/env bash
# A local cluster of real `sluice serve` processes on loopback ports, each node with its own data
# dir and log, all of them voters of the metadata quorum.
#
#   scripts/cluster.sh start [N]      start N nodes (default 3); node i: clients on 127.0.0.1:<base+i*10>,
#                                     controllers on the next port, the admin
#                                     listener (/metrics) on the one after
#   scripts/cluster.sh status         each node: pid or down, and what its Metadata says (needs kcat)
#   scripts/cluster.sh stop           SIGTERM every node and wait
#   scripts/cluster.sh kill I         kill -9 node I
#   scripts/cluster.sh pause I        SIGSTOP node I
#   scripts/cluster.sh resume I       SIGCONT node I
#   scripts/cluster.sh restart I      start node I again (after kill or stop) on its data dir and ports
#   scripts/cluster.sh bootstrap      the client address list (for -b / bootstrap.servers)
#
# Environment: SLUICE_CLUSTER_DIR (default ./sluice-cluster: data/, logs, pids, the node count),
# SLUICE_BIN (default target/release/sluice), SLUICE_BASE_PORT (default 19080).
set -euo pipefail
dir=${SLUICE_CLUSTER_DIR:-./sluice-cluster}
bin=${SLUICE_BIN:-target/release/sluice}
base=${SLUICE_BASE_PORT:-19080}

client_port() { echo $((base + $1 * 10 + 2)); }
controller_port() { echo $((base + $1 * 10 + 3)); }
admin_port() { echo $((base + $1 * 10 + 4)); }
nodes() { cat "$dir/nodes" 2>/dev/null || echo 0; }
pid_of() { cat "$dir/node$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

voters() {
  local n i list=""
  n=$(nodes)
  for i in $(seq 1 "$n"); do list="$list${list:+,}$i@127.0.0.1:$(controller_port "$i")"; done
  echo "$list"
}

bootstrap() {
  local n i list=""
  n=$(nodes)
  for i in $(seq 1 "$n"); do list="$list${list:+,}127.0.0.1:$(client_port "$i")"; done
  echo "$list"
}

start_node() {
  local i=$1
  if alive "$i"; then echo "node $i is running (pid $(pid_of "$i"))"; return; fi
  mkdir -p "$dir/data$i"
  touch "$dir/node$i.log"
  local before
  before=$(grep -c "serving on" "$dir/node$i.log" || true)
  "$bin" serve --set "node.id=$i" --set "controller.quorum.voters=$(voters)" \
    --set "listeners=PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")" \
    --set "admin.listener=127.0.0.1:$(admin_port "$i")" \
    --set "log.dirs=$dir/data$i" >>"$dir/node$i.log" 2>&1 &
  echo $! >"$dir/node$i.pid"
  for _ in $(seq 1 600); do
    if [ "$(grep -c "serving on 127.0.0.1:$(client_port "$i")" "$dir/node$i.log" || true)" -gt "$before" ]; then
      echo "node $i: clients 127.0.0.1:$(client_port "$i"), controllers 127.0.0.1:$(controller_port "$i"), pid $!"
      return
    fi
    kill -0 $! 2>/dev/null || { echo "node $i exited; see $dir/node$i.log" >&2; tail -3 "$dir/node$i.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "node $i did not start within 30 s; see $dir/node$i.log" >&2
  exit 1
}

signal_node() {
  local signal=$1 i=$2
  alive "$i" || { echo "node $i is not running" >&2; exit 1; }
  kill "-$signal" "$(pid_of "$i")"
}

need_node() {
  [ -n "${1:-}" ] || { echo "which node?" >&2; exit 2; }
  [ "$1" -ge 1 ] && [ "$1" -le "$(nodes)" ] || { echo "no node $1 (the cluster has $(nodes))" >&2; exit 2; }
}

command=${1:-}
case "$command" in
  start)
    n=${2:-3}
    [ -x "$bin" ] || { echo "no $bin: build it (cargo build --release) or set SLUICE_BIN" >&2; exit 2; }
    mkdir -p "$dir"
    if [ "$(nodes)" != 0 ] && [ "$(nodes)" != "$n" ]; then
      echo "$dir holds a cluster of $(nodes) nodes; remove it or set SLUICE_CLUSTER_DIR" >&2
      exit 2
    fi
    echo "$n" >"$dir/nodes"
    for i in $(seq 1 "$n"); do start_node "$i"; done
    echo "bootstrap: $(bootstrap)"
    ;;
  stop)
    for i in $(seq 1 "$(nodes)"); do
      if alive "$i"; then kill -CONT "$(pid_of "$i")" 2>/dev/null || true; kill -TERM "$(pid_of "$i")"; fi
    done
    for i in $(seq 1 "$(nodes)"); do
      while alive "$i"; do sleep 0.05; done
      rm -f "$dir/node$i.pid"
    done
    echo "stopped"
    ;;
  kill) need_node "${2:-}"; signal_node KILL "$2"; rm -f "$dir/node$2.pid"; echo "node $2 killed" ;;
  pause) need_node "${2:-}"; signal_node STOP "$2"; echo "node $2 paused" ;;
  resume) need_node "${2:-}"; signal_node CONT "$2"; echo "node $2 resumed" ;;
  restart) need_node "${2:-}"; start_node "$2" ;;
  bootstrap) bootstrap ;;
  status)
    for i in $(seq 1 "$(nodes)"); do
      if alive "$i"; then
        state="running, pid $(pid_of "$i")"
        if command -v kcat >/dev/null; then
          brokers=$(timeout 5 kcat -b "127.0.0.1:$(client_port "$i")" -L 2>/dev/null | grep -c "^  broker " || true)
          controller=$(timeout 5 kcat -b "127.0.0.1:$(client_port "$i")" -L 2>/dev/null | grep "(controller)" | awk '{print $2}' || true)
          state="$state; sees $brokers brokers, controller ${controller:-none}"
        fi
      else
        state="down"
      fi
      echo "node $i (127.0.0.1:$(client_port "$i")): $state"
    done
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
