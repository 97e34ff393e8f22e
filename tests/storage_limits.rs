//! Bounds that protect the process: a log of many segments keeps a bounded number of files open.
//! (Its own test binary, so no other test's files are counted.)

use sluice::io::{self, Faults};
use sluice::model::{records, Codec, Offset, TimestampMs};
use sluice::storage::{AppendOptions, CleanupPolicy, Log, LogConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn many_segments_keep_few_files_open() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let before = open_fds();
        let config = LogConfig {
            segment_bytes: 1,
            cleanup_policy: CleanupPolicy::COMPACT_DELETE,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone(), Faults::default())
            .await
            .unwrap();
        for _ in 0..300 {
            log.append(
                vec![records::simple_batch(2, 10, Codec::None)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        assert_eq!(log.segment_count(), 300);
        let limit = 3 * (sluice::storage::LOADED_CLOSED_SEGMENTS_MAX + 1) + 16;
        assert!(
            open_fds() - before < limit,
            "{} files open",
            open_fds() - before
        );
        // Reading everything, looking up timestamps and compacting load segments one by one.
        let total: u64 = log
            .read(Offset(0), log.log_end(), u64::MAX / 2, true)
            .await
            .unwrap()
            .iter()
            .map(|r| r.bytes)
            .sum();
        assert!(total > 0);
        assert!(log
            .offset_for_timestamp(TimestampMs(i64::MAX - 1))
            .await
            .unwrap()
            .is_none());
        log.clean(TimestampMs::now()).await.unwrap();
        assert!(
            open_fds() - before < limit,
            "{} files open",
            open_fds() - before
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
            open_fds() - before < limit,
            "{} files open",
            open_fds() - before
        );
    });
}
