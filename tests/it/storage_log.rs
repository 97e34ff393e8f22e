//! The partition log against its contract: appends, reads, corrupt input, a full disk, failed
//! syncs, group commit. Each test runs the real io_uring executor on a temp directory. The
//! segments' lifecycle (timestamps, truncation, retention, rolls, flushes) is in
//! `storage_segments`.

use crate::kit::batches::{append_batches, batch, read_all, small_config};
use bytes::Bytes;
use sluice::io::{self, Fault, Faults};
use sluice::model::{BatchView, Codec, Offset};
use sluice::storage::{AppendOptions, Durability, Log, LogConfig, StorageError};

#[test]
fn appends_get_consecutive_offsets_and_read_back_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..40 {
            let codec = [
                Codec::None,
                Codec::Gzip,
                Codec::Snappy,
                Codec::Lz4,
                Codec::Zstd,
            ][i % 5];
            let info = log
                .append(
                    vec![batch(&format!("b{i}"), 4, 1000, codec)],
                    AppendOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(info.first_offset, Offset(i as i64 * 4));
            assert_eq!(info.last_offset, Offset(i as i64 * 4 + 3));
            expected.extend((0..4).map(|r| (i as i64 * 4 + r, format!("b{i}-{r}"))));
        }
        assert!(
            log.segment_count() >= 3,
            "segment.bytes rolls the log: {}",
            log.segment_count()
        );
        assert_eq!(read_all(&log, Offset(0)).await, expected);
        // A read that starts inside a batch returns that whole batch.
        let from_middle = read_all(&log, Offset(42)).await;
        assert_eq!(from_middle[0].0, 40);
        assert_eq!(from_middle, expected[40..]);
        // The files follow Kafka's naming.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&"00000000000000000000.log".to_string()));
        assert!(names.contains(&"00000000000000000000.index".to_string()));
        assert!(names.contains(&"00000000000000000000.timeindex".to_string()));
    });
}

#[test]
fn reads_respect_the_upper_bound_and_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), LogConfig::default(), Faults::default())
            .await
            .unwrap();
        append_batches(&log, "b", 10, 2).await;
        let one_batch = BatchView::total_len(&batch("b0", 2, 0, Codec::None)).unwrap() as u64;
        // Upper bound: stop before the batch that reaches offset 6.
        let ranges = log.read(Offset(0), Offset(6), 1 << 20, true).await.unwrap();
        assert_eq!(ranges.last().unwrap().next_offset, Offset(6));
        assert_eq!(ranges.iter().map(|r| r.bytes).sum::<u64>(), 3 * one_batch);
        // Byte budget: whole batches only.
        let ranges = log
            .read(Offset(0), Offset(20), one_batch * 2 + one_batch / 2, true)
            .await
            .unwrap();
        assert_eq!(ranges.iter().map(|r| r.bytes).sum::<u64>(), 2 * one_batch);
        // KIP-74: a budget smaller than the first batch still returns it whole, if asked.
        let ranges = log.read(Offset(4), Offset(20), 10, true).await.unwrap();
        assert_eq!(ranges.len(), 1);
        assert_eq!(
            (ranges[0].bytes, ranges[0].first_offset),
            (one_batch, Offset(4))
        );
        assert!(log
            .read(Offset(4), Offset(20), 10, false)
            .await
            .unwrap()
            .is_empty());
        // At the log end: nothing; past it or before the start: out of range.
        assert!(log
            .read(Offset(20), Offset(20), 1 << 20, true)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            log.read(Offset(21), Offset(21), 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    });
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        let good = batch("ok", 2, 0, Codec::None);
        let mut bad = good.to_vec();
        bad[40] ^= 1;
        let result = log
            .append(
                vec![good.clone(), Bytes::from(bad)],
                AppendOptions::default(),
            )
            .await;
        assert!(
            matches!(result, Err(StorageError::CorruptBatch { index: 1, .. })),
            "{result:?}"
        );
        let huge = batch(&"x".repeat(600), 1, 0, Codec::None);
        assert!(matches!(
            log.append(vec![huge], AppendOptions::default()).await,
            Err(StorageError::BatchTooLarge { .. })
        ));
        assert_eq!(log.log_end(), Offset(0));
        assert_eq!(
            log.append(vec![good], AppendOptions::default())
                .await
                .unwrap()
                .first_offset,
            Offset(0)
        );
    });
}

#[test]
fn a_full_disk_fails_the_append_leaves_the_log_consistent_and_appends_resume() {
    for fault in [
        Fault::FailWrites { errno: 28 },
        Fault::ShortWrite { bytes: 30 },
        Fault::FailWrites { errno: 5 },
    ] {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let faults = Faults::default();
            let log = Log::open(dir.path(), LogConfig::default(), faults.clone())
                .await
                .unwrap();
            log.append(
                vec![batch("a", 3, 0, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
            faults.set(Some(fault));
            let failed = log
                .append(
                    vec![batch("lost", 3, 0, Codec::None)],
                    AppendOptions::default(),
                )
                .await;
            match fault {
                Fault::FailWrites { errno: 5 } => {
                    assert!(matches!(failed, Err(StorageError::Io(_))), "{failed:?}")
                }
                _ => assert!(
                    matches!(failed, Err(StorageError::DiskFull(_))),
                    "{failed:?}"
                ),
            }
            assert_eq!(log.log_end(), Offset(3));
            assert_eq!(read_all(&log, Offset(0)).await.len(), 3);
            faults.set(None);
            let info = log
                .append(
                    vec![batch("b", 2, 0, Codec::None)],
                    AppendOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(info.first_offset, Offset(3));
            drop(log); // a crash: no clean close
            let log = Log::open(dir.path(), LogConfig::default(), Faults::default())
                .await
                .unwrap();
            let values: Vec<String> = read_all(&log, Offset(0))
                .await
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            assert_eq!(values, ["a-0", "a-1", "a-2", "b-0", "b-1"], "{fault:?}");
        });
    }
}

#[test]
fn a_failed_fdatasync_is_not_acknowledged_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let faults = Faults::default();
        let log = Log::open(dir.path(), LogConfig::default(), faults.clone())
            .await
            .unwrap();
        faults.set(Some(Fault::FailSyncs));
        let sync = AppendOptions {
            durability: Durability::Sync,
            ..AppendOptions::default()
        };
        assert!(log
            .append(vec![batch("a", 1, 0, Codec::None)], sync)
            .await
            .is_err());
        assert_eq!(log.recovery_point(), Offset(0));
        faults.set(None);
        log.append(vec![batch("b", 1, 0, Codec::None)], sync)
            .await
            .unwrap();
        assert_eq!(log.recovery_point(), Offset(2));
    });
}

#[test]
fn concurrent_appends_share_writes_and_get_disjoint_offsets() {
    let stats = concurrent_appends(small_config());
    // Group commit: the 64 appends (32 of them asking for fdatasync) shared writes and syncs.
    assert_eq!(stats.appends, 64);
    assert!(stats.writes < 64, "{stats:?}");
    assert!(stats.syncs < 32, "{stats:?}");
}

/// `log.write.group.max.bytes` caps a group write: with a cap below one batch every append is a
/// write of its own, still in queue order with the same offsets; with room for two, no write
/// carries more than two.
#[test]
fn write_groups_stop_at_their_byte_cap() {
    let one_each = concurrent_appends(LogConfig {
        write_group_max_bytes: 1,
        ..small_config()
    });
    assert_eq!(
        (one_each.appends, one_each.writes),
        (64, 64),
        "{one_each:?}"
    );
    let batch_bytes = batch("t10", 3, 0, Codec::None).len();
    let pairs = concurrent_appends(LogConfig {
        write_group_max_bytes: 2 * batch_bytes,
        ..small_config()
    });
    assert_eq!(pairs.appends, 64);
    assert!(pairs.writes >= 32 && pairs.writes < 64, "{pairs:?}");
}

/// 64 concurrent appends, half of them asking for fdatasync; checks offsets and contents and
/// returns the log's counters.
fn concurrent_appends(config: LogConfig) -> sluice::storage::LogStats {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = std::rc::Rc::new(
            Log::open(dir.path(), config, Faults::default())
                .await
                .unwrap(),
        );
        let queue = io::TaskQueue::new("appenders", 100);
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = log.clone();
                queue.spawn(async move {
                    let durability = if i % 2 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Policy
                    };
                    let options = AppendOptions {
                        durability,
                        ..AppendOptions::default()
                    };
                    (
                        i,
                        log.append(vec![batch(&format!("t{i}"), 3, 0, Codec::None)], options)
                            .await
                            .unwrap(),
                    )
                })
            })
            .collect();
        let mut infos = Vec::new();
        for task in tasks {
            infos.push(task.join().await);
        }
        infos.sort_by_key(|(_, info)| info.first_offset);
        for (n, (_, info)) in infos.iter().enumerate() {
            assert_eq!(info.first_offset, Offset(n as i64 * 3));
        }
        let all = read_all(&log, Offset(0)).await;
        for (tag, info) in &infos {
            assert_eq!(all[info.first_offset.0 as usize].1, format!("t{tag}-0"));
        }
        let synced_end = infos
            .iter()
            .filter(|(t, _)| t % 2 == 0)
            .map(|(_, i)| i.last_offset.0 + 1)
            .max()
            .unwrap();
        assert!(log.recovery_point().0 >= synced_end);
        log.stats()
    })
}

#[test]
fn a_new_partition_starts_as_one_empty_segment_and_survives_a_crash() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("wide-7");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    io::block_on(async {
        let log = Log::open(&dir, small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_end(), Offset(0));
        assert_eq!(log.latest_epoch(), None);
        // A new log writes its segment's files and nothing else (no checkpoint yet).
        assert_eq!(
            names(&dir),
            [
                "00000000000000000000.index",
                "00000000000000000000.log",
                "00000000000000000000.timeindex"
            ]
        );
        let options = AppendOptions {
            durability: Durability::Sync,
            leader_epoch: Some(3),
            ..AppendOptions::default()
        };
        for i in 0..3 {
            log.append(vec![batch(&format!("b{i}"), 2, 100, Codec::None)], options)
                .await
                .unwrap();
        }
        // Dropped without a close: a crash.
    });
    io::block_on(async {
        let log = Log::open(&dir, small_config(), Faults::default())
            .await
            .unwrap();
        let got = read_all(&log, Offset(0)).await;
        let want: Vec<(i64, String)> = (0..3)
            .flat_map(|i| (0..2).map(move |r| (i * 2 + r, format!("b{i}-{r}"))))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            log.latest_epoch(),
            Some(3),
            "the first append recorded its epoch"
        );
        assert_eq!(log.epoch_end(3), Some((3, Offset(6))));
        log.close().await.unwrap();
    });
    assert!(names(&dir).contains(&"partition.checkpoint".to_string()));
}
