//! Criterion benches of the storage hot paths. Run: `cargo bench --bench storage`; ratios for
//! bench/RESULTS.md: `python3 scripts/bench_ratios.py`.
//!
//! - `append/*`: Log::append of 1 KiB, 16 KiB and 1 MiB batches, without flushes (policy) and with
//!   an fdatasync before each acknowledgement (sync), against `baseline-write/*`: plain sequential
//!   io_uring writes (glommio) of the same bytes in the same sizes, with the same fdatasyncs.
//! - `group-commit/*`: 1, 16 and 64 concurrent appenders, each append fdatasync'd.
//! - `validate/*`: batch validation and CRC32C.
//! - `index-lookup`: offset index lookups in a full-size index.
//! - `read-range/1MiB-budget`: Log::read at random offsets of a 64 MiB log.
//! - `read-range/tail`: Log::read near the end of the log (consumers that keep up).
//! - `open-clean/*`: opening a cleanly closed log of 10 and 10,000 segments, up to serving the
//!   tail (a read at the log end and an append).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::io::{self, Faults};
use sluice::model::{records, BatchView, Codec, Offset};
use sluice::storage::{AppendOptions, Durability, Log, LogConfig, OffsetIndex};

/// Bytes appended per measured iteration, by flush mode: enough to leave the page cache's
/// fast path but bounded for a laptop disk.
fn bytes_per_iteration(sync: bool, batch_bytes: usize) -> usize {
    match (sync, batch_bytes) {
        (false, _) => 64 << 20,
        (true, b) if b >= 1 << 20 => 64 << 20,
        (true, b) if b >= 16 << 10 => 8 << 20,
        (true, _) => 1 << 20,
    }
}

fn batch_of(bytes: usize) -> Bytes {
    // One record per KiB (values of ~1000 bytes), uncompressed: the broker never decompresses.
    let count = (bytes / 1024).max(1);
    let batch = records::simple_batch(count, 1024 - 20, Codec::None);
    assert!(BatchView::validate(&batch).is_ok());
    batch
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    for (sync, mode) in [(false, "policy"), (true, "sync")] {
        for (batch_bytes, size) in [(1 << 10, "1KiB"), (16 << 10, "16KiB"), (1 << 20, "1MiB")] {
            let batch = batch_of(batch_bytes);
            let per_iteration = bytes_per_iteration(sync, batch_bytes);
            let appends = per_iteration / batch.len();
            group.throughput(Throughput::Bytes((appends * batch.len()) as u64));
            let id = format!("{mode}/{size}");
            group.bench_function(BenchmarkId::new("log", &id), |b| {
                b.iter_custom(|iters| {
                    io::block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let dir = tempfile::tempdir().unwrap();
                            let log =
                                Log::open(dir.path(), LogConfig::default(), Faults::default())
                                    .await
                                    .unwrap();
                            let durability = if sync {
                                Durability::Sync
                            } else {
                                Durability::Policy
                            };
                            let options = AppendOptions {
                                durability,
                                ..AppendOptions::default()
                            };
                            let start = Instant::now();
                            for _ in 0..appends {
                                log.append(vec![batch.clone()], options).await.unwrap();
                            }
                            total += start.elapsed();
                        }
                        total
                    })
                })
            });
            group.bench_function(BenchmarkId::new("baseline-write", &id), |b| {
                b.iter_custom(|iters| {
                    io::block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let dir = tempfile::tempdir().unwrap();
                            let file =
                                io::File::open(&dir.path().join("plain"), true, &Faults::default())
                                    .await
                                    .unwrap();
                            let start = Instant::now();
                            let mut position = 0u64;
                            for _ in 0..appends {
                                // The same copy into an owned buffer that the log makes.
                                file.write_at(batch.to_vec(), position).await.unwrap();
                                position += batch.len() as u64;
                                if sync {
                                    file.fdatasync().await.unwrap();
                                }
                            }
                            total += start.elapsed();
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

/// Group commit: `tasks` concurrent appenders of 1 KiB batches, each acknowledged only after
/// fdatasync. With one task every append pays its own fdatasync; with many, appends that arrive
/// while a write or sync is in flight share the next one.
fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group-commit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    let batch = batch_of(1 << 10);
    let appends_total = 1024;
    group.throughput(Throughput::Bytes((appends_total * batch.len()) as u64));
    for tasks in [1usize, 16, 64] {
        group.bench_function(BenchmarkId::new("sync-1KiB-tasks", tasks), |b| {
            b.iter_custom(|iters| {
                io::block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let log = std::rc::Rc::new(
                            Log::open(dir.path(), LogConfig::default(), Faults::default())
                                .await
                                .unwrap(),
                        );
                        let queue = io::TaskQueue::new("producers", 100);
                        let options = AppendOptions {
                            durability: Durability::Sync,
                            ..AppendOptions::default()
                        };
                        let start = Instant::now();
                        let handles: Vec<_> = (0..tasks)
                            .map(|_| {
                                let log = log.clone();
                                let batch = batch.clone();
                                queue.spawn(async move {
                                    for _ in 0..appends_total / tasks {
                                        log.append(vec![batch.clone()], options).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for handle in handles {
                            handle.join().await;
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for (batch_bytes, size) in [(1 << 10, "1KiB"), (16 << 10, "16KiB"), (1 << 20, "1MiB")] {
        let batch = batch_of(batch_bytes);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(BenchmarkId::new("crc32c", size), |b| {
            b.iter(|| crc32c::crc32c(std::hint::black_box(&batch[21..])))
        });
        group.bench_function(BenchmarkId::new("batch", size), |b| {
            b.iter(|| {
                BatchView::validate(std::hint::black_box(&batch))
                    .unwrap()
                    .0
                    .records_count()
            })
        });
    }
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    // A full default index: 10 MiB / 8 bytes per entry.
    let mut index = OffsetIndex::new(Offset(1_000_000));
    let entries = (10 << 20) / 8;
    for i in 0..entries as i64 {
        index.push(Offset(1_000_000 + i * 4 + 3), (i as u64 + 1) * 512);
    }
    let mut state = 1u64;
    c.bench_function("index-lookup", |b| {
        b.iter(|| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let target = Offset(1_000_000 + ((state >> 20) % (entries as u64 * 4)) as i64);
            index.lookup(std::hint::black_box(target))
        })
    });
}

fn read_range(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch_of(16 << 10);
    let config = LogConfig {
        segment_bytes: 16 << 20,
        ..LogConfig::default()
    };
    let end = io::block_on(async {
        let log = Log::open(dir.path(), config.clone(), Faults::default())
            .await
            .unwrap();
        for _ in 0..(64 << 20) / batch.len() {
            log.append(vec![batch.clone()], AppendOptions::default())
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        log.log_end()
    });
    c.bench_function("read-range/1MiB-budget", |b| {
        b.iter_custom(|iters| {
            io::block_on(async {
                let log = Log::open(dir.path(), config.clone(), Faults::default())
                    .await
                    .unwrap();
                // Load every segment before timing.
                log.read(Offset(0), end, u64::MAX / 2, true).await.unwrap();
                let mut state = 7u64;
                let start = Instant::now();
                for _ in 0..iters {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let offset = Offset(((state >> 20) % end.0 as u64) as i64);
                    let ranges = log.read(offset, end, 1 << 20, true).await.unwrap();
                    std::hint::black_box(ranges);
                }
                start.elapsed()
            })
        })
    });
}

/// Reads at the tail, as consumers that keep up do: 1 KiB batches, reads from 10 batches
/// before the end of a log of 16 MiB and more that is open and being written.
fn read_tail(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch_of(1 << 10);
    c.bench_function("read-range/tail", |b| {
        b.iter_custom(|iters| {
            io::block_on(async {
                let log = Log::open(dir.path(), LogConfig::default(), Faults::default())
                    .await
                    .unwrap();
                // The log has been taking appends (as it would while consumers keep up).
                let appends = if log.log_end() == Offset(0) {
                    (16 << 20) / batch.len()
                } else {
                    100
                };
                for _ in 0..appends {
                    log.append(vec![batch.clone()], AppendOptions::default())
                        .await
                        .unwrap();
                }
                let end = log.log_end();
                let start = Instant::now();
                for _ in 0..iters {
                    let ranges = log
                        .read(Offset(end.0 - 10), end, 1 << 20, true)
                        .await
                        .unwrap();
                    std::hint::black_box(ranges);
                }
                let elapsed = start.elapsed();
                log.close().await.unwrap();
                elapsed
            })
        })
    });
}

/// A cleanly closed log of `segments` segments of one 1 KiB batch each.
fn clean_log(segments: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch_of(1 << 10);
    io::block_on(async {
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        for _ in 0..segments {
            log.append(vec![batch.clone()], AppendOptions::default())
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        assert_eq!(log.segment_count(), segments);
    });
    dir
}

fn open_clean(c: &mut Criterion) {
    let mut group = c.benchmark_group("open-clean");
    group.sample_size(20);
    let batch = batch_of(1 << 10);
    for segments in [10, 10_000] {
        let dir = clean_log(segments);
        group.bench_function(BenchmarkId::from_parameter(segments), |b| {
            b.iter_custom(|iters| {
                io::block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let log = Log::open(dir.path(), LogConfig::default(), Faults::default())
                            .await
                            .unwrap();
                        let end = log.log_end();
                        std::hint::black_box(
                            log.read(Offset(end.0 - 1), end, 1 << 20, true)
                                .await
                                .unwrap(),
                        );
                        log.append(vec![batch.clone()], AppendOptions::default())
                            .await
                            .unwrap();
                        total += start.elapsed();
                        // Undo the append so every iteration opens the same log.
                        log.truncate_to(end).await.unwrap();
                        log.close().await.unwrap();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    append,
    group_commit,
    validation,
    index_lookup,
    read_range,
    read_tail,
    open_clean
);
criterion_main!(benches);
