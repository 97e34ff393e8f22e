#!/usr/bin/env bash
# Measures what a wide topic costs a single Sluice node (issue 18's figures): for each workload
# given, a fresh `sluice serve` runs it with sluice-bench while /proc is sampled every second
# (open descriptors, RSS); then the broker is stopped, started again on the same data, and timed
# to ready; its RSS idle with those partitions, less the RSS of a fresh broker with none, is the
# memory per idle partition. One TSV line per workload on stdout:
#   workload partitions msg_s e2e_p99_ms e2e_p99_period_median_ms broker_cpu_s fds_max rss_max_mb
#   ready_s rss_idle_mb rss_per_partition_kib
# (e2e p99 over the whole measured run, and the median of the per-period p99s: the run's figure
# includes the consumer's catching up after the warm-up, which is long for a wide topic.)
#
#   scripts/wide_partitions.sh [--scale F] [--rate N] WORKLOAD.yaml...
#
# Needs `cargo build --release -p sluice-broker -p sluice-bench`. The fd limit is the one this
# shell has (`serve` raises its soft limit to the hard one).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=0.01 rate=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --rate) rate="--rate $2"; shift 2 ;;
    *) break ;;
  esac
done
sluice=target/release/sluice
bench=target/release/sluice-bench
[ -x "$sluice" ] && [ -x "$bench" ] || { echo "cargo build --release -p sluice-broker -p sluice-bench" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
[ -n "${KEEP:-}" ] && echo "work dir: $work" >&2

start() { # data-dir out-file: starts serve, waits for its line; sets $pid, $addr, $ready_s
  local t0; t0=$(date +%s.%N)
  "$sluice" serve --set "log.dirs=$1" --set listeners=PLAINTEXT://127.0.0.1:0 >"$2" 2>>"$work/serve.log" &
  pid=$!
  while ! grep -q "serving on" "$2" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "serve exited: $(tail -5 "$work/serve.log")" >&2; exit 1; }
    sleep 0.05
  done
  ready_s=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
  addr=$(sed -n 's/^sluice: serving on \([^ ]*\).*/\1/p' "$2")
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
sample() { # pid out: fds and RSS (KiB) every second until the process goes
  while [ -d "/proc/$1" ]; do
    echo "$(ls "/proc/$1/fd" 2>/dev/null | wc -l) $(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null)" >>"$2"
    sleep 1
  done
}

# The baseline: a fresh broker's RSS once idle.
start "$work/empty" "$work/empty.out"; sleep 5; rss_empty=$(rss_mb "$pid"); stop

for workload in "$@"; do
  name=$(basename "$workload" .yaml)
  data="$work/$name"
  start "$data" "$work/$name.out"
  sample "$pid" "$work/$name.samples" &
  cpu_before=$(cpu_s "$pid")
  "$bench" run --bootstrap "$addr" --scale "$scale" $rate --keep-topics --out "$work/$name.results" \
    "$workload" >"$work/$name.bench.log" 2>&1 || { echo "bench failed: $(tail -5 "$work/$name.bench.log")" >&2; }
  cpu=$(python3 -c "print(f'{$(cpu_s "$pid") - $cpu_before:.1f}')")
  stop
  start "$data" "$work/$name.restart.out"
  sleep 10  # idle
  rss_idle=$(rss_mb "$pid")
  stop
  partitions=$(awk '/partitionsPerTopic/ {print $2}' "$workload")
  python3 - "$work/$name.results" "$work/$name.samples" "$name" "$partitions" "$ready_s" "$rss_idle" "$rss_empty" "$cpu" "$work/$name.bench.log" <<'EOF'
import glob, json, re, statistics, sys
results, samples, name, partitions, ready, idle, empty, cpu, log = sys.argv[1:]
r = json.load(open(sorted(glob.glob(results + "/*.json"))[0]))
fds, rss = zip(*[map(int, line.split()) for line in open(samples) if len(line.split()) == 2])
rate = r["aggregatedPublishRate"]
p99 = r.get("aggregatedEndToEndLatency99pct", 0)
per = (float(idle) - float(empty)) * 1024 / int(partitions)
periods = [float(m) for m in re.findall(r"e2e ms p50 \S+ p99 (\S+)", open(log, errors="replace").read())]
period_p99 = statistics.median(periods) if periods else 0
print(f"{name}\t{partitions}\t{rate:.0f}\t{p99:.1f}\t{period_p99:.1f}\t{cpu}\t{max(fds)}\t{max(rss)/1024:.1f}\t{ready}\t{idle}\t{per:.1f}")
EOF
done
