//! Recovery and compaction under crashes: cut logs at every byte, flipped bytes, lost indexes,
//! a compaction interrupted at every step of its swap.

use crate::kit::batches;
use std::path::Path;

use bytes::Bytes;
use sluice::io::{self, Faults};
use sluice::model::records::{self, BatchBuilder, Record};
use sluice::model::{BatchView, Codec, Offset, TimestampMs};
use sluice::storage::{AppendOptions, CleanerStep, CleanupPolicy, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

use batches::keyed;

/// Every record from the log start: (offset, key, value).
async fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
    batches::records_from(log, log.log_start())
        .await
        .into_iter()
        .map(|r| {
            (
                r.offset.0,
                batches::text(r.key).unwrap(),
                batches::text(r.value),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn last_log_file(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// A crashed log (never closed) with several segments; returns the batches' (end position in the
/// last segment, records so far) for the last segment.
fn crashed_log(dir: &Path) -> Vec<(i64, String, Option<String>)> {
    io::block_on(async {
        let log = Log::open(dir, config(), Faults::default()).await.unwrap();
        for i in 0..24 {
            let value = format!("v{i}");
            let codec = [Codec::None, Codec::Lz4, Codec::Gzip][i % 3];
            log.append(
                vec![keyed(
                    &[("a", Some(&value)), ("b", Some(&value))],
                    i as i64,
                    codec,
                )],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let all = contents(&log).await;
        assert!(log.segment_count() >= 3);
        all
    })
}

#[test]
fn recovery_after_a_cut_at_every_byte_of_the_tail_yields_a_prefix() {
    let original = tempfile::tempdir().unwrap();
    let all = crashed_log(original.path());
    let last = last_log_file(original.path());
    let size = std::fs::metadata(&last).unwrap().len();
    let mut seen_lengths = std::collections::BTreeSet::new();
    for cut in 0..=size {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(last.file_name().unwrap()))
            .unwrap();
        file.set_len(cut).unwrap();
        let recovered = io::block_on(async {
            let log = Log::open(dir.path(), config(), Faults::default())
                .await
                .unwrap();
            let recovered = contents(&log).await;
            assert_eq!(log.log_end().0, recovered.last().map_or(0, |r| r.0 + 1));
            // The log takes appends again right after the cut.
            let info = log
                .append(
                    vec![keyed(&[("z", Some("after"))], 0, Codec::None)],
                    AppendOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(info.first_offset, Offset(log.log_end().0 - 1));
            recovered
        });
        assert_eq!(
            recovered[..],
            all[..recovered.len()],
            "cut at {cut} is not a prefix"
        );
        assert_eq!(recovered.len() % 2, 0, "cut at {cut} split a batch");
        seen_lengths.insert(recovered.len());
    }
    assert!(
        seen_lengths.len() >= 3,
        "the cuts covered several batches: {seen_lengths:?}"
    );
    assert_eq!(*seen_lengths.last().unwrap(), all.len());
}

#[test]
fn a_flipped_byte_in_the_tail_cuts_the_log_at_the_batch_before_it() {
    let original = tempfile::tempdir().unwrap();
    let all = crashed_log(original.path());
    let last = last_log_file(original.path());
    let bytes = std::fs::read(&last).unwrap();
    // Where each batch starts: the base offset (bytes 0..8) and leader epoch (12..16) are outside
    // the CRC, as in Kafka. A flip there is caught only when it breaks the offset order.
    let mut starts = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        starts.push(bytes.len() - rest.len());
        rest = BatchView::validate(rest).unwrap().1;
    }
    for at in 0..bytes.len() {
        let within = at - starts.iter().copied().filter(|s| *s <= at).max().unwrap();
        let outside_crc = within < 8 || (12..16).contains(&within);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        std::fs::write(dir.path().join(last.file_name().unwrap()), &corrupt).unwrap();
        let recovered = io::block_on(async {
            let log = Log::open(dir.path(), config(), Faults::default())
                .await
                .unwrap();
            contents(&log).await
        });
        if outside_crc {
            let offsets: Vec<i64> = recovered.iter().map(|r| r.0).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "flip at {at} broke the offset order"
            );
            if within < 4 {
                assert!(
                    recovered.len() < all.len(),
                    "a high base-offset byte flipped at {at} went unnoticed"
                );
                assert_eq!(
                    recovered[..],
                    all[..recovered.len()],
                    "flip at {at} is not a prefix"
                );
            }
        } else {
            assert_eq!(
                recovered[..],
                all[..recovered.len()],
                "flip at {at} is not a prefix"
            );
            assert!(recovered.len() < all.len(), "flip at {at} went unnoticed");
        }
    }
}

#[test]
fn lost_or_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let all = crashed_log(dir.path());
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        log.close().await.unwrap();
    });
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("index") => std::fs::remove_file(&path).unwrap(),
            Some("timeindex") => std::fs::write(&path, [0xff; 30]).unwrap(),
            _ => {}
        }
    }
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(contents(&log).await, all);
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(20))
                .await
                .unwrap()
                .map(|(o, _)| o),
            Some(Offset(40))
        );
    });
}

#[test]
fn a_clean_shutdown_checkpoints_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let all = crashed_log(dir.path());
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(
            log.recovery_point(),
            log.log_end(),
            "recovery makes the recovered log durable"
        );
        log.close().await.unwrap();
        assert!(log
            .append(
                vec![keyed(&[("a", None)], 0, Codec::None)],
                AppendOptions::default()
            )
            .await
            .is_err());
    });
    let text = std::fs::read_to_string(dir.path().join("partition.checkpoint")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "0",
            "4",
            &format!("recovery-point {}", all.len()),
            "log-start-offset 0",
            "cleaner-offset 0"
        ]
    );
    let listed: Vec<String> = lines[5]
        .split(' ')
        .skip(1)
        .map(|b| format!("{:020}.log", b.parse::<i64>().unwrap()))
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "a clean shutdown lists every segment");
    // The next open trusts that list and does not read the directory: a stray orphan index
    // survives it. After a crash the directory is listed and the orphan is removed.
    let orphan = dir.path().join("00000000000099999999.index");
    std::fs::write(&orphan, b"").unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(contents(&log).await, all);
    });
    assert!(orphan.exists());
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(contents(&log).await, all);
    });
    assert!(!orphan.exists());
}

/// The compacted view of `writes`: newest value per key, at its original offset.
fn compacted(
    all: &[(i64, String, Option<String>)],
    below: i64,
    drop_tombstones: bool,
) -> Vec<(i64, String, Option<String>)> {
    let mut newest = std::collections::HashMap::new();
    for (offset, key, _) in all.iter().filter(|r| r.0 < below) {
        newest.insert(key.clone(), *offset);
    }
    all.iter()
        .filter(|(offset, key, value)| {
            *offset >= below || (newest[key] == *offset && (value.is_some() || !drop_tombstones))
        })
        .cloned()
        .collect()
}

async fn write_keyed_log(
    dir: &Path,
    config: LogConfig,
    seed: u64,
) -> (Log, Vec<(i64, String, Option<String>)>) {
    let log = Log::open(dir, config, Faults::default()).await.unwrap();
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for i in 0..60 {
        let n = 1 + next() % 4;
        let keys: Vec<String> = (0..n).map(|_| format!("key{}", next() % 7)).collect();
        let values: Vec<Option<String>> = (0..n)
            .map(|j| (next() % 5 != 0).then(|| format!("v{i}.{j}")))
            .collect();
        let entries: Vec<(&str, Option<&str>)> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let codec = [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ][next() % 5];
        log.append(
            vec![keyed(&entries, 1_000 + i, codec)],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    }
    let all = contents(&log).await;
    (log, all)
}

fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 500,
        ..config()
    }
}

#[test]
fn compaction_keeps_the_newest_value_per_key_with_offsets_and_drops_old_tombstones() {
    for seed in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let (log, all) = write_keyed_log(dir.path(), compact_config(), seed).await;
            let active = *log.segment_bases().last().unwrap();
            // Tombstones written at t<=1060 survive a pass at t=1100 (delete.retention.ms=500)...
            let report = log.clean(TimestampMs(1_100)).await.unwrap();
            assert!(report.segments_cleaned > 0);
            assert_eq!(
                contents(&log).await,
                compacted(&all, active.0, false),
                "seed {seed}"
            );
            // ...and are gone after a pass at t=10000.
            log.clean(TimestampMs(10_000)).await.unwrap();
            let expected = compacted(&all, active.0, true);
            assert_eq!(contents(&log).await, expected, "seed {seed}");
            assert_eq!(
                log.log_end().0,
                all.last().unwrap().0 + 1,
                "compaction never changes the log end"
            );
            drop(log);
            let log = Log::open(dir.path(), compact_config(), Faults::default())
                .await
                .unwrap();
            assert_eq!(
                contents(&log).await,
                expected,
                "seed {seed} after a restart"
            );
        });
    }
}

#[test]
fn compaction_honours_the_lag_and_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let lagging = LogConfig {
            min_compaction_lag_ms: 1_000_000,
            ..compact_config()
        };
        let (log, all) = write_keyed_log(dir.path(), lagging, 3).await;
        assert_eq!(
            log.clean(TimestampMs(2_000))
                .await
                .unwrap()
                .segments_cleaned,
            0
        );
        assert_eq!(contents(&log).await, all);
        log.set_config(compact_config());
        assert!(
            log.clean(TimestampMs(2_000))
                .await
                .unwrap()
                .segments_cleaned
                > 0
        );
        // Everything closed is clean now: a ratio of 0.5 finds nothing dirty to do.
        log.set_config(LogConfig {
            min_cleanable_dirty_ratio: 0.5,
            ..compact_config()
        });
        assert_eq!(
            log.clean(TimestampMs(2_000))
                .await
                .unwrap()
                .segments_cleaned,
            0
        );
    });
}

#[test]
fn max_compaction_lag_compacts_old_segments_whatever_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        // Everything compacted once, then a little more written (stamped 2,000 to 2,019): a
        // small dirty share, under a ratio of 0.99.
        let (log, _) = write_keyed_log(dir.path(), compact_config(), 5).await;
        log.clean(TimestampMs(10_000)).await.unwrap();
        for i in 0..20 {
            let entries = [("key1", Some("late")), ("key2", Some("late"))];
            log.append(
                vec![keyed(&entries, 2_000 + i, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let before = contents(&log).await;
        let strict = LogConfig {
            min_cleanable_dirty_ratio: 0.99,
            ..compact_config()
        };
        log.set_config(strict.clone());
        assert_eq!(
            log.clean(TimestampMs(20_000))
                .await
                .unwrap()
                .segments_cleaned,
            0
        );
        // A lag of 5 s: due once every record of a dirty segment is that old.
        log.set_config(LogConfig {
            max_compaction_lag_ms: 5_000,
            ..strict
        });
        assert_eq!(
            log.clean(TimestampMs(6_000))
                .await
                .unwrap()
                .segments_cleaned,
            0
        );
        let report = log.clean(TimestampMs(20_000)).await.unwrap();
        assert!(report.segments_cleaned > 0, "{report:?}");
        let active = *log.segment_bases().last().unwrap();
        assert_eq!(contents(&log).await, compacted(&before, active.0, true));
    });
}

#[test]
fn a_compaction_interrupted_at_any_step_recovers_the_old_or_the_new_set() {
    let reference = tempfile::tempdir().unwrap();
    let (before, after, renames) = io::block_on(async {
        let (log, before) = write_keyed_log(reference.path(), compact_config(), 7).await;
        let report = log.clean(TimestampMs(10_000)).await.unwrap();
        (before, contents(&log).await, report.segments_cleaned * 3)
    });
    assert_ne!(before, after);
    let mut steps = vec![CleanerStep::WroteCleaned, CleanerStep::WroteMarker];
    steps.extend((0..renames).map(CleanerStep::Renamed));
    for step in steps {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let (log, written) = write_keyed_log(dir.path(), compact_config(), 7).await;
            assert_eq!(written, before);
            log.clean_until(TimestampMs(10_000), step).await.unwrap();
            drop(log); // the crash
            let log = Log::open(dir.path(), compact_config(), Faults::default())
                .await
                .unwrap();
            let recovered = contents(&log).await;
            let expected = if step == CleanerStep::WroteCleaned {
                &before
            } else {
                &after
            };
            assert_eq!(&recovered, expected, "crash at {step:?}");
        });
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n == "cleaner.swap")
            .collect();
        assert!(leftovers.is_empty(), "{step:?} left {leftovers:?}");
    }
}

#[test]
fn background_maintenance_compacts_and_checkpoints_on_its_own_queue() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let (log, all) = write_keyed_log(dir.path(), compact_config(), 11).await;
        let log = std::rc::Rc::new(log);
        let active = *log.segment_bases().last().unwrap();
        let queue = io::TaskQueue::new("background", sluice::storage::BACKGROUND_SHARES);
        // Retention far off: the compaction passes come from the cleaner's own cadence.
        let periods = sluice::storage::Periods {
            retention_check: std::time::Duration::from_secs(3600),
            cleaner_backoff: std::time::Duration::from_millis(20),
        };
        let task = sluice::storage::spawn_maintenance(log.clone(), queue, periods);
        // Appends keep working while the cleaner runs.
        for _ in 0..20 {
            io::sleep(std::time::Duration::from_millis(10)).await;
            log.append(
                vec![keyed(
                    &[("late", Some("x"))],
                    5_000_000_000_000,
                    Codec::None,
                )],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let now_contents = contents(&log).await;
        let cleaned: Vec<_> = now_contents
            .iter()
            .filter(|r| r.0 < active.0)
            .cloned()
            .collect();
        let expected: Vec<_> = compacted(&all, active.0, true)
            .into_iter()
            .filter(|r| r.0 < active.0)
            .collect();
        assert_eq!(cleaned, expected);
        log.close().await.unwrap();
        task.join().await;
    });
}

#[test]
fn compaction_keeps_control_and_transactional_batches_whole() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), compact_config(), Faults::default())
            .await
            .unwrap();
        let record = |key: &str, value: &str| Record {
            offset: Offset(0),
            timestamp: TimestampMs(1),
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
        };
        let producer = records::ProducerInfo {
            producer_id: 42,
            producer_epoch: 1,
            base_sequence: 0,
        };
        let transactional = BatchBuilder {
            transactional: true,
            producer,
            ..BatchBuilder::default()
        }
        .build(&[record("k", "in-txn")]);
        // A COMMIT marker: key = version 0 + type 1, value = version 0 + coordinator epoch.
        let marker = Record {
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 5])),
            ..record("", "")
        };
        let control = BatchBuilder {
            transactional: true,
            control: true,
            producer,
            ..BatchBuilder::default()
        }
        .build(&[marker]);
        for bytes in [transactional, control] {
            log.append(vec![bytes], AppendOptions::default())
                .await
                .unwrap();
        }
        for i in 0..40 {
            log.append(
                vec![keyed(&[("k", Some(&format!("plain{i}")))], 1, Codec::Lz4)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        log.clean(TimestampMs(10_000)).await.unwrap();
        let ranges = log.read(Offset(0), Offset(2), 1 << 20, true).await.unwrap();
        let bytes = ranges[0].read_bytes().await.unwrap();
        let (first, rest) = BatchView::validate(&bytes).unwrap();
        assert!(first.is_transactional() && !first.is_control());
        assert_eq!(first.producer_id(), 42);
        let (second, _) = BatchView::validate(rest).unwrap();
        assert!(second.is_control());
        // The plain records of key "k" were compacted down to the newest in the closed segments.
        let plain: Vec<_> = contents(&log)
            .await
            .into_iter()
            .filter(|r| r.2.as_deref().is_some_and(|v| v.starts_with("plain")))
            .collect();
        assert!(plain.len() < 40, "{}", plain.len());
    });
}

#[test]
fn compaction_racing_retention_neither_fails_nor_corrupts() {
    for delay_ms in [0u64, 1, 3] {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let config = LogConfig {
                cleanup_policy: CleanupPolicy::COMPACT_DELETE,
                retention_ms: 0,
                ..compact_config()
            };
            let (log, _) = write_keyed_log(dir.path(), config.clone(), 5).await;
            let log = std::rc::Rc::new(log);
            let queue = io::TaskQueue::new("cleaner", 10);
            let cleaner = {
                let log = log.clone();
                queue.spawn(async move { log.clean(TimestampMs(1 << 40)).await })
            };
            io::sleep(std::time::Duration::from_millis(delay_ms)).await;
            log.enforce_retention(TimestampMs(1 << 40)).await.unwrap();
            cleaner.join().await.unwrap();
            assert_eq!(
                log.segment_count(),
                1,
                "retention left only the active segment"
            );
            let end = log.log_end();
            contents(&log).await;
            drop(log);
            let log = Log::open(dir.path(), config, Faults::default())
                .await
                .unwrap();
            assert_eq!(log.log_end(), end);
            contents(&log).await;
        });
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".cleaned")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}

#[test]
fn a_small_dedupe_buffer_compacts_in_several_passes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        // Keys are distinct per batch here, so the map grows with every segment mapped.
        let log = Log::open(dir.path(), compact_config(), Faults::default())
            .await
            .unwrap();
        for i in 0..120 {
            let key = format!("key{}", i % 40);
            let value = format!("v{i}");
            log.append(
                vec![keyed(
                    &[(key.as_str(), Some(value.as_str()))],
                    1_000,
                    Codec::None,
                )],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let all = contents(&log).await;
        let active = *log.segment_bases().last().unwrap();
        let expected = compacted(&all, active.0, true);
        // Room for no segment's keys: the pass does nothing rather than clean with half a map.
        log.set_config(LogConfig {
            cleaner_dedupe_buffer_bytes: 1,
            ..compact_config()
        });
        assert_eq!(
            log.clean(TimestampMs(10_000))
                .await
                .unwrap()
                .segments_cleaned,
            0
        );
        assert_eq!(contents(&log).await, all);
        // Room for about 20 keys, a segment and a half: one pass cannot map every dirty segment.
        log.set_config(LogConfig {
            cleaner_dedupe_buffer_bytes: 20 * 70,
            ..compact_config()
        });
        let mut passes = 0;
        while contents(&log).await != expected {
            let report = log.clean(TimestampMs(10_000)).await.unwrap();
            passes += 1;
            assert!(
                report.segments_cleaned > 0 && passes < 50,
                "no progress after {passes} passes"
            );
            // Whatever a pass did, the newest value of every key is still there.
            let now: Vec<_> = contents(&log).await;
            for record in &expected {
                assert!(now.contains(record), "{record:?} lost after pass {passes}");
            }
        }
        assert!(passes > 1, "the limit split the work into several passes");
    });
}
