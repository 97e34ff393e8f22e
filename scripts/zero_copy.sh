#!/usr/bin/env bash
# Shows that fetched record bytes reach the socket by sendfile(2): runs the broker benchmark with
# the broker under strace, then sums the bytes each syscall carried to sockets.
# Usage: scripts/zero_copy.sh [MB]   (needs strace; default 64 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-64}"
trace="$(mktemp -d)/trace"
cargo build --release --quiet
SLUICE_BENCH_ROUNDS=1 SLUICE_BENCH_MB="$mb" SLUICE_BENCH_WRAP="strace -f -qq -e trace=sendfile,write,writev,sendto,sendmsg,read,pread64,recvfrom -o $trace" \
  cargo bench --quiet --bench broker | grep -E "round|median"
python3 - "$trace" <<'PY'
import re, sys, collections
calls = collections.Counter(); bytes_ = collections.Counter()
for line in open(sys.argv[1]):
    m = re.match(r"\d+\s+(\w+)\(.*\)\s+=\s+(-?\d+)", line)
    if m and int(m.group(2)) > 0:
        calls[m.group(1)] += 1; bytes_[m.group(1)] += int(m.group(2))
for name in sorted(calls):
    print(f"{name:10} calls {calls[name]:>9}  bytes {bytes_[name]:>13}")
PY
