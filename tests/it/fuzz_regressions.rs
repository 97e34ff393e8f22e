//! Every input committed under fuzz/ (the seeds, and each crash a fuzzer ever found, kept in
//! fuzz/regressions/<target>/) replayed through the fuzz targets' own checks
//! (`sluice::fuzzing`), with allocations counted as the request target counts them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// Counts the bytes each thread allocates (never decreasing).
struct Counting;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed through to the system allocator unchanged; only a per-thread
// counter (a const-initialised thread local, which never allocates) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size() as u64));
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> u64 {
    ALLOCATED.with(Cell::get)
}

const TARGETS: [&str; 4] = ["request", "record_batch", "decompress", "sasl"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn run(target: &str, input: &[u8]) {
    match target {
        "request" => sluice::fuzzing::request(input, &allocated),
        "record_batch" => sluice::fuzzing::record_batches(input),
        "decompress" => sluice::fuzzing::decompress(input),
        "sasl" => sluice::fuzzing::sasl(input),
        other => panic!("no target {other}"),
    }
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_passes_its_targets_checks() {
    let mut count = 0;
    for target in TARGETS {
        for kind in ["seeds", "regressions"] {
            for file in inputs(kind, target) {
                let input = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| run(target, &input));
                assert!(outcome.is_ok(), "{} fails its check", file.display());
                count += 1;
            }
        }
    }
    assert!(count > 300, "only {count} inputs under fuzz/");
}

#[test]
fn the_committed_seeds_are_the_generated_ones() {
    // Regenerate with: SLUICE_WRITE_SEEDS=1 cargo test --test fuzz_regressions
    let write = std::env::var_os("SLUICE_WRITE_SEEDS").is_some();
    for (target, name, bytes) in sluice::fuzzing::seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
        assert!(
            committed == bytes,
            "{} is stale (regenerate the seeds)",
            path.display()
        );
    }
}
