#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets) for a bounded time on the committed seeds and
# regressions plus a scratch corpus (fuzz/corpus, not committed), and prints each target's
# executions and executions per second. A crash fails the run; its input is left in
# fuzz/artifacts/<target>/: add it to fuzz/regressions/<target>/ with the fix (the test suite
# replays every file there, tests/it/fuzz_regressions.rs).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 20 s each, every target)
#
# Needs cargo-fuzz (installed here if missing) and a C++ compiler (libFuzzer is C++). The
# stable toolchain is enough: no sanitizer is asked for (-s none), so no -Z flag is passed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request record_batch decompress sasl)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -s none --release >/dev/null

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  log=$(mktemp)
  if cargo fuzz run -s none --release "$target" "corpus/$target" "seeds/$target" \
      "regressions/$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    outcome=ok
  else
    outcome=CRASH
    status=1
    grep -E "panicked|SUMMARY|Test unit written" "$log" || tail -20 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "fuzz $target: $outcome, ${runs:-?} executions in ${seconds} s (${rate:-?}/s)"
  rm -f "$log"
done
exit $status
