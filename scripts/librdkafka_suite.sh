#!/usr/bin/env bash
# Runs librdkafka's own integration tests (tests/test-runner) against Sluice, one test number at
# a time, each against a fresh `sluice serve` (a temp data dir, `num.partitions=4` as the suite's
# default scenario expects, auto-creation on), and writes one line per test:
# number, name, PASSED / FAILED / SKIPPED / TIMEOUT, seconds. docs/COMPATIBILITY.md is the table
# made from it, with the reason for every test that does not pass.
#
#   scripts/librdkafka_suite.sh LIBRDKAFKA_DIR [TEST_NUMBER...]
#
# LIBRDKAFKA_DIR: a librdkafka checkout (v2.15.0 or newer; nothing of it is kept here), built
# here if its tests/test-runner is missing: `./configure && make libs && make -C tests build`,
# which needs Debian's libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev rapidjson-dev.
# Environment: SLUICE (default target/release/sluice), TEST_TIMEOUT (seconds per test, default
# 900), TEST_KAFKA_VERSION (the broker version the suite assumes, default 3.9.0), SCENARIO
# (default; noautocreate runs the broker with auto.create.topics.enable=false for the tests
# written for that), QUICK=1 (the runner's quick mode), OUT (default
# target/librdkafka-suite.tsv). Tests that call Kafka's bin/kafka-topics.sh get
# scripts/librdkafka-kafka-path/bin/kafka-topics.sh (create, alter partitions, delete over the
# Kafka protocol); other Kafka tools (kafka-acls.sh) are absent.
set -uo pipefail
rdk=$(cd "${1:?usage: scripts/librdkafka_suite.sh LIBRDKAFKA_DIR [TEST...]}" && pwd)
shift
here=$(cd "$(dirname "$0")/.." && pwd)
sluice=${SLUICE:-$here/target/release/sluice}
out=${OUT:-$here/target/librdkafka-suite.tsv}
timeout_s=${TEST_TIMEOUT:-900}
export TEST_KAFKA_VERSION=${TEST_KAFKA_VERSION:-3.9.0}
[ -x "$sluice" ] || { echo "build Sluice first: cargo build --release" >&2; exit 2; }

if [ ! -x "$rdk/tests/test-runner" ]; then
  (cd "$rdk" && ./configure && make -j"$(nproc)" libs && make -C tests -j"$(nproc)" build) \
    || { echo "building librdkafka's tests failed" >&2; exit 2; }
fi
export LD_LIBRARY_PATH="$rdk/src:$rdk/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  mapfile -t tests < <(cd "$rdk/tests" && ls 0[0-9][0-9][0-9]-*.c* | cut -c1-4 | sort -u)
fi
flags=(-L)  # broker tests only: the local ones do not talk to a broker
[ "${QUICK:-}" = 1 ] && flags+=(-Q)
# SCENARIO=noautocreate runs the tests written for a broker without topic auto-creation.
scenario=${SCENARIO:-default}
flags+=(-s "$scenario")
broker_sets=(--set num.partitions=4)
[ "$scenario" = noautocreate ] && broker_sets+=(--set auto.create.topics.enable=false)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$(dirname "$out")"
: >"$out"
for test in "${tests[@]}"; do
  work=$(mktemp -d)
  port=$(free_port)
  "$sluice" serve --set "log.dirs=$work/data" --set "listeners=PLAINTEXT://127.0.0.1:$port" \
    "${broker_sets[@]}" >"$work/serve.out" 2>"$work/serve.log" &
  broker=$!
  for _ in $(seq 1 100); do grep -q "serving on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  echo "metadata.broker.list=127.0.0.1:$port" >"$work/test.conf"
  started=$(date +%s)
  # KAFKA_PATH: the tests that run Kafka's kafka-topics.sh get a stand-in that speaks the protocol.
  (cd "$rdk/tests" && RDKAFKA_TEST_CONF="$work/test.conf" TESTS="$test" \
    KAFKA_PATH="$here/scripts/librdkafka-kafka-path" BROKERS="127.0.0.1:$port" \
    timeout "$timeout_s" ./test-runner "${flags[@]}" >"$work/test.log" 2>&1)
  rc=$?
  seconds=$(($(date +%s) - started))
  kill -TERM "$broker" 2>/dev/null; wait "$broker" 2>/dev/null
  # The runner's summary, a line per test of that number (some files hold several):
  # "| 0001_multiobj   |     PASSED |   1.060s |".
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$work/test.log" | grep -E "^\| *${test}_" |
    awk -F'|' '{gsub(/ /,"",$2); gsub(/ /,"",$3); print $2 "\t" $3}')
  if [ "$rc" = 124 ]; then
    summary=$(printf '%s\tTIMEOUT' "$test")
  elif [ -z "$summary" ] && [ "$rc" != 0 ]; then
    summary=$(printf '%s\tERROR-%s' "$test" "$rc")   # crashed before its summary
  elif [ -z "$summary" ]; then
    summary=$(printf '%s\tNOT-RUN' "$test")        # not for this broker version
  fi
  while IFS=$'\t' read -r name status; do
    printf '%s\t%s\t%s\t%s\n' "$test" "$name" "$status" "$seconds" | tee -a "$out"
  done <<<"$summary"
  if [ "$rc" != 0 ]; then
    mkdir -p "$out.logs"
    cp "$work/test.log" "$out.logs/$test.log"
    cp "$work/serve.log" "$out.logs/$test.serve.log"
  fi
  rm -rf "$work"
done
echo "passed $(grep -c $'\tPASSED\t' "$out"), skipped $(grep -c $'\tSKIPPED\t' "$out"), of $(grep -vc $'\tNOT-RUN\t' "$out") results; in $out"
