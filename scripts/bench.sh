#!/usr/bin/env bash
# Builds Sluice and sluice-bench, starts Sluice (unless --broker names another broker), runs a
# named set of OMB workloads against it, writes results (JSON + SVG per run) under
# bench/results/<date>/, and updates the table in bench/RESULTS.md.
#
#   scripts/bench.sh [OPTIONS] [SET | WORKLOAD.yaml ...]
#
# SET: quick (1-topic-16-partitions-1kb, seconds), reference (1 topic with 16 and with 100
# partitions at 1 KiB, at the maximum sustainable rate), rates (the 4-producer/4-consumer
# 100-partition rate steps), sizes (the 100-byte variants), topics (the topic-count sweep), all.
#
# OPTIONS:
#   --profile NAME       client profile tuning/client/NAME.properties over the driver's settings
#   --driver FILE        OMB Kafka driver file (default bench/workloads/driver-sluice.yaml)
#   --broker HOST:PORT   benchmark a broker that is already running instead of starting Sluice
#   --broker-set K=V     a Sluice config setting for the broker started here (repeatable)
#   --scale F            multiply rates, backlog and durations (default: 0.01 quick, else 0.05)
#   --rate N             producerRate for every workload (0: find the maximum sustainable rate)
#   --runs N             run each workload N times (default 1; 3 for a median)
#   --period S           sampling period in seconds (default 10, quick 1)
#   --tag TEXT           appended to each result's name (to keep runs of one day apart)
#   --no-table           leave bench/RESULTS.md alone
set -euo pipefail
cd "$(dirname "$0")/.."

profile="" driver="bench/workloads/driver-sluice.yaml" broker="" scale="" rate="" runs=1
period="" table=1 tag=""
broker_sets=() names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --driver) driver="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    --broker-set) broker_sets+=(--set "$2"); shift 2 ;;
    --scale) scale="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --period) period="$2"; shift 2 ;;
    --tag) tag="-$2"; shift 2 ;;
    --no-table) table=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -eq 0 ] && names=(quick)

w=bench/workloads
files=()
for name in "${names[@]}"; do
  case "$name" in
    quick) files+=("$w/1-topic-16-partitions-1kb.yaml"); scale="${scale:-0.01}"; period="${period:-1}" ;;
    reference) files+=("$w/1-topic-16-partitions-1kb.yaml" "$w/1-topic-100-partitions-1kb.yaml"); rate="${rate:-0}" ;;
    rates) files+=("$w"/1-topic-100-partitions-1kb-4p-4c-*.yaml) ;;
    sizes) files+=("$w"/1-topic-*-100b.yaml) ;;
    topics) files+=("$w/1-topic-1-partition-1kb.yaml" "$w/10-topics-1-partition-1kb.yaml" "$w/100-topics-1-partition-1kb.yaml") ;;
    all) files+=("$w"/[0-9]*.yaml) ;;
    *.yaml) files+=("$name") ;;
    *) echo "bench.sh: unknown set $name" >&2; exit 2 ;;
  esac
done
scale="${scale:-0.05}"
period="${period:-10}"

cargo build --release --quiet --bin sluice -p sluice-broker
cargo build --release --quiet -p sluice-bench
bench=target/release/sluice-bench
out="bench/results/$(date +%F)"
mkdir -p "$out"

pid_args=()
data=""
if [ -z "$broker" ]; then
  data="$(mktemp -d)"
  target/release/sluice serve --set "log.dirs=$data" --set listeners=PLAINTEXT://127.0.0.1:0 \
    "${broker_sets[@]}" > "$data.serve.log" 2>&1 &
  sluice_pid=$!
  trap 'kill -TERM $sluice_pid 2>/dev/null; wait $sluice_pid 2>/dev/null; rm -rf "$data" "$data.serve.log"' EXIT
  for _ in $(seq 100); do
    broker="$(sed -n 's/^sluice: serving on \([^ ]*\).*/\1/p' "$data.serve.log")"
    [ -n "$broker" ] && break
    sleep 0.1
  done
  [ -n "$broker" ] || { cat "$data.serve.log" >&2; exit 1; }
  pid_args=(--broker-pid "$sluice_pid")
  echo "Sluice (pid $sluice_pid) on $broker"
fi

args=(--bootstrap "$broker" --driver "$driver" --scale "$scale" --period "$period" --out "$out")
[ -n "$profile" ] && args+=(--profile "tuning/client/$profile.properties")
[ -n "$rate" ] && args+=(--rate "$rate")
written=()
for file in "${files[@]}"; do
  base="$(basename "$file" .yaml)"
  for run in $(seq "$runs"); do
    label="$base${profile:+-$profile}$tag"
    [ "$runs" -gt 1 ] && label="$label-run$run"
    "$bench" run "${args[@]}" "${pid_args[@]}" --label "$label" "$file"
    written+=("$out/$label.json")
  done
done

if [ "$table" = 1 ]; then
  "$bench" table --into bench/RESULTS.md "${written[@]}"
fi
