#!/usr/bin/env python3
"""Prints the ratios bench/RESULTS.md quotes, from criterion's last run (target/criterion).

Run after `cargo bench --bench storage`. Each figure is criterion's median time; a ratio compares
two benches of the same run.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"


def median_ns(*parts):
    path = ROOT.joinpath(*parts, "new", "estimates.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    print("append throughput, log / plain io_uring write of the same bytes (target >= 0.85):")
    for mode in ("policy", "sync"):
        for size in ("1KiB", "16KiB", "1MiB"):
            log = median_ns("append", "log", f"{mode}_{size}")
            base = median_ns("append", "baseline-write", f"{mode}_{size}")
            if log and base:
                print(f"  {mode:6} {size:>5}: {base / log:.3f}  (log {log / 1e6:.1f} ms, plain {base / 1e6:.1f} ms per iteration)")
    one = median_ns("group-commit", "sync-1KiB-tasks", "1")
    if one:
        print("group commit, throughput of N fdatasync'd appenders / 1 appender:")
        for tasks in ("16", "64"):
            many = median_ns("group-commit", "sync-1KiB-tasks", tasks)
            if many:
                print(f"  {tasks:>2} tasks: {one / many:.2f}x  (1 task: {one / 1e6:.1f} ms, {tasks}: {many / 1e6:.1f} ms for 1024 appends)")
    small = median_ns("open-clean", "10")
    large = median_ns("open-clean", "10000")
    if small and large:
        print("open after a clean shutdown, 10,000 segments / 10 segments (target <= 2):")
        print(f"  {large / small:.2f}  (10: {small / 1e6:.2f} ms, 10,000: {large / 1e6:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
