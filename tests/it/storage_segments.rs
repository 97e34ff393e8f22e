//! The partition log's segments over time: log-append time and timestamp look-ups, truncation,
//! retention and DeleteRecords, rolls on age and on a full index, reads of deleted segments,
//! replica appends, flushes, missing files and crash leftovers. Each test runs the real io_uring
//! executor on a temp directory.

use crate::kit::batches::{append_batches, batch, read_all, small_config};
use bytes::Bytes;
use std::rc::Rc;
use std::time::Duration;

use sluice::io::{self, Faults, ManualClock};
use sluice::model::records;
use sluice::model::{BatchView, Codec, Offset, TimestampMs, TimestampType};
use sluice::storage::{AppendOptions, CleanupPolicy, Durability, Log, LogConfig, StorageError};

#[test]
fn log_append_time_stamps_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        let before = TimestampMs::now();
        let info = log
            .append(
                vec![batch("a", 2, 5, Codec::Zstd)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        let stamped = info.log_append_time.unwrap();
        assert!(stamped >= before);
        let ranges = log
            .read(Offset(0), log.log_end(), 1 << 20, true)
            .await
            .unwrap();
        let bytes = ranges[0].read_bytes().await.unwrap();
        let (view, _) = BatchView::validate(&bytes).unwrap();
        assert_eq!(view.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(view.max_timestamp(), stamped);
    });
}

#[test]
fn timestamps_find_the_first_record_at_or_after_them() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        for i in 0..30 {
            log.append(
                vec![batch("t", 4, 1_000 + i * 100, Codec::Lz4)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        // Batch i holds timestamps 1000+100i .. 1000+100i+3 at offsets 4i..4i+3.
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(0)).await.unwrap(),
            Some((Offset(0), TimestampMs(1000)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(1_702)).await.unwrap(),
            Some((Offset(30), TimestampMs(1_702)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(1_704)).await.unwrap(),
            Some((Offset(32), TimestampMs(1_800)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(9_999)).await.unwrap(),
            None
        );
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(2_550)).await.unwrap(),
            Some((Offset(64), TimestampMs(2_600)))
        );
    });
}

#[test]
fn truncation_cuts_whole_batches_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        append_batches(&log, "b", 30, 3).await;
        let segments_before = log.segment_count();
        // 31 is inside the batch 30..=32: that whole batch goes.
        assert_eq!(log.truncate_to(Offset(31)).await.unwrap(), Offset(30));
        assert!(log.segment_count() < segments_before);
        assert_eq!(read_all(&log, Offset(0)).await.len(), 30);
        let info = log
            .append(
                vec![batch("new", 2, 0, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(info.first_offset, Offset(30));
        drop(log);
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_end(), Offset(32));
        let all = read_all(&log, Offset(0)).await;
        assert_eq!(all[30], (30, "new-0".to_string()));
        // Truncating below the start empties the log and starts it there.
        assert_eq!(log.truncate_to(Offset(0)).await.unwrap(), Offset(0));
        assert_eq!(
            (log.log_start(), log.log_end(), log.segment_count()),
            (Offset(0), Offset(0), 1)
        );
    });
}

#[test]
fn retention_and_delete_records_move_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            retention_ms: 10_000,
            ..small_config()
        };
        let log = Log::open(dir.path(), config.clone(), Faults::default())
            .await
            .unwrap();
        for i in 0..40 {
            log.append(
                vec![batch("r", 4, i * 1_000, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let segments = log.segment_count();
        // Everything older than 10 s before t=40 s goes, whole segments only; the active stays.
        let report = log.enforce_retention(TimestampMs(40_000)).await.unwrap();
        assert!(
            report.deleted_segments > 0 && report.deleted_segments < segments,
            "{report:?}"
        );
        let start = log.log_start();
        assert_eq!(log.segment_bases()[0], start);
        assert!(matches!(
            log.read(Offset(0), log.log_end(), 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let first = read_all(&log, start).await[0].0;
        assert_eq!(Offset(first), start);
        // Nothing newer than the horizon was deleted: the first kept segment holds a record
        // from within the last 10 s of t=40 s... or is the active one.
        // retention.bytes keeps at most that many bytes of closed segments.
        log.set_config(LogConfig {
            retention_ms: -1,
            retention_bytes: 3000,
            ..config.clone()
        });
        log.enforce_retention(TimestampMs(40_000)).await.unwrap();
        let sizes: u64 = log
            .segment_bases()
            .iter()
            .map(|b| {
                std::fs::metadata(dir.path().join(format!("{:020}.log", b.0)))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(sizes < 3000 + 2048, "{sizes}");
        // DeleteRecords: the start moves inside a segment; reads below it are out of range.
        let target = Offset(log.log_end().0 - 2);
        assert_eq!(log.advance_log_start(target).await.unwrap(), target);
        assert!(log
            .read(Offset(target.0 - 1), log.log_end(), 100, true)
            .await
            .is_err());
        drop(log);
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_start(), target, "the log start is checkpointed");
        // The active segment is never deleted, however old.
        log.enforce_retention(TimestampMs(1 << 50)).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert!(!read_all(&log, target).await.is_empty());
    });
}

#[test]
fn compaction_policy_without_delete_keeps_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            retention_ms: 1,
            cleanup_policy: CleanupPolicy::COMPACT,
            ..small_config()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        for _ in 0..20 {
            log.append(
                vec![batch("c", 4, 0, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        let segments = log.segment_count();
        assert_eq!(
            log.enforce_retention(TimestampMs(1 << 40))
                .await
                .unwrap()
                .deleted_segments,
            0
        );
        assert_eq!(log.segment_count(), segments);
    });
}

#[test]
fn segments_roll_on_age_and_on_a_full_index() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            segment_ms: 60_000,
            ..LogConfig::default()
        };
        let clock = Rc::new(ManualClock::new());
        let log = Log::open_with_clock(dir.path(), config, Faults::default(), clock.clone())
            .await
            .unwrap();
        let append = || {
            log.append(
                vec![batch("age", 1, 0, Codec::None)],
                AppendOptions::default(),
            )
        };
        append().await.unwrap();
        clock.advance(Duration::from_secs(59));
        append().await.unwrap();
        assert_eq!(log.segment_count(), 1, "younger than segment.ms: no roll");
        for _ in 0..2 {
            clock.advance(Duration::from_secs(61));
            append().await.unwrap();
        }
        assert_eq!(
            log.segment_count(),
            3,
            "segment.ms rolls a segment whose first append is older"
        );
    });
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        // Two index entries fit; an entry every 100 bytes.
        let config = LogConfig {
            segment_index_bytes: 16,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        for i in 0..20 {
            log.append(
                vec![batch(&format!("{i:0>60}"), 1, 0, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        assert!(
            log.segment_count() >= 3,
            "a full index rolls the segment: {}",
            log.segment_count()
        );
        assert_eq!(read_all(&log, Offset(0)).await.len(), 20);
    });
}

#[test]
fn read_ranges_stay_readable_after_their_segment_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            retention_ms: 0,
            ..small_config()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        append_batches(&log, "d", 20, 4).await;
        let ranges = log
            .read(Offset(0), log.log_end(), 1 << 20, true)
            .await
            .unwrap();
        let report = log.enforce_retention(TimestampMs(1 << 40)).await.unwrap();
        assert!(report.deleted_segments > 0);
        assert!(
            !dir.path().join("00000000000000000000.log").exists(),
            "the first segment is unlinked"
        );
        // The ranges taken before the deletion still read their bytes.
        let first = ranges[0].read_bytes().await.unwrap();
        let (view, _) = BatchView::validate(&first).unwrap();
        assert_eq!(view.base_offset(), Offset(0));
        assert_eq!(
            records::decode(&view, 1 << 20).unwrap()[0].value.as_deref(),
            Some(&b"d0-0"[..])
        );
    });
}

#[test]
fn replica_appends_keep_offsets_and_roll_before_relative_offsets_overflow() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), LogConfig::default(), Faults::default())
            .await
            .unwrap();
        let replica = AppendOptions {
            assign_offsets: false,
            leader_epoch: Some(7),
            ..AppendOptions::default()
        };
        let mut first = batch("r", 2, 0, Codec::None).to_vec();
        sluice::model::batch::set_base_offset(&mut first, Offset(0));
        log.append(vec![Bytes::from(first)], replica).await.unwrap();
        // Offsets below the log end are refused; a gap is allowed (compacted leader data).
        let mut stale = batch("s", 1, 0, Codec::None).to_vec();
        sluice::model::batch::set_base_offset(&mut stale, Offset(1));
        assert!(matches!(
            log.append(vec![Bytes::from(stale)], replica).await,
            Err(StorageError::OffsetMismatch { .. })
        ));
        let far = (i32::MAX as i64) + 10;
        let mut jump = batch("j", 3, 0, Codec::None).to_vec();
        sluice::model::batch::set_base_offset(&mut jump, Offset(far));
        let info = log.append(vec![Bytes::from(jump)], replica).await.unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset),
            (Offset(far), Offset(far + 2))
        );
        assert_eq!(log.log_end(), Offset(far + 3));
        assert_eq!(
            log.segment_bases(),
            vec![Offset(0), Offset(far)],
            "a relative offset past i32::MAX rolls"
        );
        let values: Vec<i64> = read_all(&log, Offset(0))
            .await
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(values, [0, 1, far, far + 1, far + 2]);
        let ranges = log
            .read(Offset(far), log.log_end(), 1 << 20, true)
            .await
            .unwrap();
        let bytes = ranges[0].read_bytes().await.unwrap();
        assert_eq!(
            BatchView::validate(&bytes)
                .unwrap()
                .0
                .header()
                .partition_leader_epoch
                .get(),
            7
        );
    });
}

#[test]
fn flush_messages_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            flush_interval_messages: 10,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        for _ in 0..3 {
            log.append(
                vec![batch("f", 3, 0, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        assert_eq!(log.recovery_point(), Offset(0), "9 messages: no flush yet");
        log.append(
            vec![batch("f", 3, 0, Codec::None)],
            AppendOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(log.recovery_point(), Offset(12));
        assert_eq!(log.stats().syncs, 1);
    });
}

#[test]
fn a_missing_segment_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        append_batches(&log, "m", 30, 3).await;
        log.close().await.unwrap();
    });
    let lost = dir.path().join("00000000000000000000.log");
    std::fs::remove_file(&lost).unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        let error = log
            .read(Offset(0), log.log_end(), 1 << 20, true)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("00000000000000000000.log"),
            "{error}"
        );
        // The rest of the log still serves.
        let later = log.segment_bases()[1];
        assert!(!log
            .read(later, log.log_end(), 1 << 20, true)
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn group_commit_holds_under_sustained_load() {
    // 16 producers, each appending 8 times in a row with fdatasync: while one group is written,
    // the others queue, and the next lock holder writes them together. A lock that lets the
    // releaser re-acquire first would serialize them into about 128 syncs.
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = std::rc::Rc::new(
            Log::open(dir.path(), LogConfig::default(), Faults::default())
                .await
                .unwrap(),
        );
        let queue = io::TaskQueue::new("producers", 100);
        let sync = AppendOptions {
            durability: Durability::Sync,
            ..AppendOptions::default()
        };
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                queue.spawn(async move {
                    let mut offsets = Vec::new();
                    for i in 0..8 {
                        let info = log
                            .append(vec![batch(&format!("p{t}.{i}"), 1, 0, Codec::None)], sync)
                            .await
                            .unwrap();
                        offsets.push(info.first_offset);
                    }
                    offsets
                })
            })
            .collect();
        for task in tasks {
            let offsets = task.join().await;
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "one producer's appends stay in order"
            );
        }
        let stats = log.stats();
        assert_eq!(stats.appends, 128);
        assert!(stats.syncs <= 32, "{stats:?}");
        assert_eq!(log.recovery_point(), Offset(128));
    });
}

#[test]
fn segments_left_below_the_log_start_by_a_crash_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept = io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        append_batches(&log, "c", 80, 3).await;
        let bases = log.segment_bases();
        assert!(bases.len() >= 4);
        log.close().await.unwrap();
        bases
    });
    // A crash after the checkpoint moved the log start but before the files were unlinked.
    let start = kept[2];
    std::fs::write(
        dir.path().join("partition.checkpoint"),
        format!("0\n3\nrecovery-point 240\nlog-start-offset {start}\ncleaner-offset 0\n"),
    )
    .unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_start(), start);
        assert_eq!(log.segment_bases(), kept[2..]);
        assert!(!dir.path().join("00000000000000000000.log").exists());
        assert_eq!(log.log_end(), Offset(240));
    });
}

#[test]
fn flush_ms_flushes_once_the_last_flush_is_that_old() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            flush_interval_ms: 1_000,
            flush_interval_messages: u64::MAX,
            ..LogConfig::default()
        };
        let clock = Rc::new(ManualClock::new());
        let log = Log::open_with_clock(dir.path(), config, Faults::default(), clock.clone())
            .await
            .unwrap();
        log.append(
            vec![batch("f", 2, 0, Codec::None)],
            AppendOptions::default(),
        )
        .await
        .unwrap();
        log.flush_if_due().await.unwrap();
        assert_eq!(log.recovery_point(), Offset(0), "not due yet");
        clock.advance(Duration::from_millis(999));
        log.flush_if_due().await.unwrap();
        assert_eq!(log.recovery_point(), Offset(0), "not due yet");
        clock.advance(Duration::from_millis(1));
        log.flush_if_due().await.unwrap();
        assert_eq!(log.recovery_point(), Offset(2), "flush.ms passed: flushed");
    });
}

/// The leader-epoch checkpoint follows appends (a new entry per newer epoch), truncation (entries
/// past the new end go) and restarts (kept; entries past a log cut by a crash go).
#[test]
fn leader_epochs_follow_appends_truncation_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let with_epoch = |epoch| AppendOptions {
        leader_epoch: Some(epoch),
        ..AppendOptions::default()
    };
    io::block_on(async {
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.latest_epoch(), None);
        for (epoch, name) in [(0, "a"), (0, "b"), (3, "c"), (7, "d")] {
            log.append(vec![batch(name, 5, 0, Codec::None)], with_epoch(epoch))
                .await
                .unwrap();
        }
        assert_eq!(log.latest_epoch(), Some(7));
        assert_eq!(log.epoch_end(0), Some((0, Offset(10))));
        assert_eq!(log.epoch_end(5), Some((3, Offset(15))));
        assert_eq!(log.epoch_end(7), Some((7, Offset(20))));
        drop(log);
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.epoch_end(4), Some((3, Offset(15))));
        assert_eq!(log.truncate_to(Offset(12)).await.unwrap(), Offset(10));
        assert_eq!(log.latest_epoch(), Some(0));
        assert_eq!(log.epoch_end(7), Some((0, Offset(10))));
        // A replica's append keeps the leader's epochs.
        let mut copied = batch("e", 2, 0, Codec::None).to_vec();
        sluice::model::batch::set_base_offset(&mut copied, Offset(10));
        sluice::model::batch::set_partition_leader_epoch(&mut copied, 9);
        let replica = AppendOptions {
            assign_offsets: false,
            ..AppendOptions::default()
        };
        log.append(vec![Bytes::from(copied)], replica)
            .await
            .unwrap();
        assert_eq!(log.epoch_end(9), Some((9, Offset(12))));
        drop(log);
        let log = Log::open(dir.path(), small_config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.epoch_end(8), Some((0, Offset(10))));
        assert_eq!(log.latest_epoch(), Some(9));
        assert_eq!(log.truncate_to(Offset(0)).await.unwrap(), Offset(0));
        assert_eq!(log.latest_epoch(), None);
    });
}
