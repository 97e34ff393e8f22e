//! Bounds that protect the process: a log of many segments keeps a bounded number of files open.
//! (Its own test binary, so no other test's files are counted.)

use sluice::io::{self, Faults};
use sluice::model::{records, Codec, Offset, TimestampMs};
use sluice::storage::{AppendOptions, CleanupPolicy, Log, LogConfig};

/// The tests count the process's descriptors: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Appends `count` batches of two records (one segment each when `segment.bytes` is 1).
async fn append_batches(log: &Log, count: usize) {
    for _ in 0..count {
        log.append(
            vec![records::simple_batch(2, 10, Codec::None)],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    }
}

/// The descriptors this process holds on files under `dir` (the tests of the other modules run in
/// the same process, with files and sockets of their own).
fn open_fds(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn many_segments_keep_few_files_open() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        // The bound is per shard (thread), over all its logs; one descriptor per loaded segment.
        sluice::storage::set_loaded_segments_capacity(16);
        let before = open_fds(dir.path());
        let config = LogConfig {
            segment_bytes: 1,
            cleanup_policy: CleanupPolicy::COMPACT_DELETE,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone(), Faults::default())
            .await
            .unwrap();
        append_batches(&log, 300).await;
        assert_eq!(log.segment_count(), 300);
        // The count sees this log's files: its active segment is open.
        assert!(open_fds(dir.path()) > before);
        let limit = sluice::storage::loaded_segments_capacity() + 1 + 8;
        assert!(
            open_fds(dir.path()) - before < limit,
            "{} files open",
            open_fds(dir.path()) - before
        );
        // Reading everything (as consumers do, one read after another), looking up timestamps
        // and compacting load segments one by one. One read holds at most the shard's places.
        let mut total = 0;
        let mut offset = Offset(0);
        while offset < log.log_end() {
            let ranges = log
                .read(offset, log.log_end(), u64::MAX / 2, true)
                .await
                .unwrap();
            assert!(!ranges.is_empty() && ranges.len() <= 16, "{}", ranges.len());
            total += ranges.iter().map(|r| r.bytes).sum::<u64>();
            offset = ranges.last().unwrap().next_offset;
        }
        assert!(total > 0);
        assert!(log
            .offset_for_timestamp(TimestampMs(i64::MAX - 1))
            .await
            .unwrap()
            .is_none());
        log.clean(TimestampMs::now()).await.unwrap();
        assert!(
            open_fds(dir.path()) - before < limit,
            "{} files open",
            open_fds(dir.path()) - before
        );
        log.close().await.unwrap();
        drop(log);
        // Recovery without a checkpoint scans every segment, one at a time.
        std::fs::remove_file(dir.path().join("partition.checkpoint")).unwrap();
        let log = Log::open(dir.path(), config, Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_end(), Offset(600));
        assert!(
            open_fds(dir.path()) - before < limit,
            "{} files open",
            open_fds(dir.path()) - before
        );
    });
}

#[test]
fn many_logs_on_one_shard_share_its_bound_on_loaded_segments() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        sluice::storage::set_loaded_segments_capacity(16);
        let before = open_fds(dir.path());
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        const LOGS: usize = 100;
        let mut logs = Vec::new();
        for i in 0..LOGS {
            let log = Log::open(
                &dir.path().join(i.to_string()),
                config.clone(),
                Faults::default(),
            )
            .await
            .unwrap();
            append_batches(&log, 5).await;
            assert_eq!(log.segment_count(), 5);
            logs.push(log);
        }
        // One descriptor per log (its active segment) and the shard's 16 closed segments.
        let limit = LOGS + 16 + 8;
        assert!(
            open_fds(dir.path()) - before < limit,
            "{} files open",
            open_fds(dir.path()) - before
        );
        for round in 0..2 {
            for log in &logs {
                let mut offset = Offset(0);
                let mut batches = 0;
                while offset < log.log_end() {
                    let ranges = log.read(offset, log.log_end(), 1, true).await.unwrap();
                    batches += ranges.len();
                    offset = ranges.last().unwrap().next_offset;
                }
                assert_eq!(batches, 5, "round {round}");
                assert!(
                    open_fds(dir.path()) - before < limit,
                    "{} files open",
                    open_fds(dir.path()) - before
                );
            }
        }
        assert!(sluice::storage::loaded_segments_tracked() <= 16);
        for log in &logs {
            log.close().await.unwrap();
        }
    });
}
