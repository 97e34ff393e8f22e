//! Idempotent producers in the log: sequences checked at append, retries answered with the
//! original offsets, and the state rebuilt after a clean close, a crash, and a truncation.

use bytes::Bytes;
use sluice::io::{self, Faults};
use sluice::model::records::{BatchBuilder, ProducerInfo, Record};
use sluice::model::{Offset, TimestampMs};
use sluice::storage::{AppendOptions, Log, LogConfig, SequenceError, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A batch of `count` records from producer `id` (epoch `epoch`) starting at sequence `seq`.
fn batch(id: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    build(id, epoch, seq, count, false)
}

fn build(id: i64, epoch: i16, seq: i32, count: usize, transactional: bool) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            offset: Offset(i as i64),
            timestamp: TimestampMs::now(),
            key: None,
            value: Some(Bytes::from(format!("p{id}-s{}", seq as usize + i))),
            headers: Vec::new(),
        })
        .collect();
    BatchBuilder {
        transactional,
        producer: ProducerInfo {
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
        },
        ..BatchBuilder::default()
    }
    .build(&records)
}

async fn append(log: &Log, bytes: Bytes) -> Result<(i64, i64, bool), StorageError> {
    let info = log.append(vec![bytes], AppendOptions::default()).await?;
    Ok((info.first_offset.0, info.last_offset.0, info.duplicate))
}

fn sequence_error(result: Result<(i64, i64, bool), StorageError>) -> SequenceError {
    match result {
        Err(StorageError::Sequence { source, .. }) => source,
        other => panic!("expected a sequence error, got {other:?}"),
    }
}

#[test]
fn sequences_are_checked_and_retries_get_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(
            append(&log, batch(7, 0, 0, 5)).await.unwrap(),
            (0, 4, false)
        );
        assert_eq!(
            append(&log, batch(8, 0, 0, 2)).await.unwrap(),
            (5, 6, false)
        );
        assert_eq!(
            append(&log, batch(7, 0, 5, 5)).await.unwrap(),
            (7, 11, false)
        );
        // A retry of either batch: the original offsets, nothing written.
        assert_eq!(append(&log, batch(7, 0, 0, 5)).await.unwrap(), (0, 4, true));
        assert_eq!(
            append(&log, batch(7, 0, 5, 5)).await.unwrap(),
            (7, 11, true)
        );
        assert_eq!(log.log_end(), Offset(12));
        // A gap, an old epoch, a new epoch not starting at 0.
        assert!(matches!(
            sequence_error(append(&log, batch(7, 0, 12, 1)).await),
            SequenceError::OutOfOrder {
                expected: 10,
                got: 12,
                ..
            }
        ));
        assert_eq!(
            append(&log, batch(7, 1, 0, 1)).await.unwrap(),
            (12, 12, false)
        );
        assert!(matches!(
            sequence_error(append(&log, batch(7, 0, 10, 1)).await),
            SequenceError::StaleEpoch {
                epoch: 0,
                current: 1,
                ..
            }
        ));
        assert!(matches!(
            sequence_error(append(&log, batch(8, 1, 3, 1)).await),
            SequenceError::OutOfOrder {
                expected: 0,
                got: 3,
                ..
            }
        ));
        // A producer the log has never seen may start anywhere (its state may have expired).
        assert_eq!(
            append(&log, batch(9, 0, 40, 1)).await.unwrap(),
            (13, 13, false)
        );
        assert_eq!(log.log_end(), Offset(14));
        // Pipelined appends of one producer staged in one group keep their order.
        let (a, b) = futures_lite::future::zip(
            append(&log, batch(8, 0, 2, 3)),
            append(&log, batch(8, 0, 5, 3)),
        )
        .await;
        assert_eq!((a.unwrap(), b.unwrap()), ((14, 16, false), (17, 19, false)));
        // `producer.id.expiration.ms`: idle producers are forgotten, then start anywhere.
        let later = TimestampMs(TimestampMs::now().0 + 2 * 86_400_000);
        assert_eq!(log.expire_producers(later, 86_400_000), 3);
        assert!(log.producer(7).is_none());
        assert_eq!(
            append(&log, batch(7, 0, 500, 1)).await.unwrap(),
            (20, 20, false)
        );
    });
}

#[test]
fn the_state_survives_a_clean_close_a_crash_and_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        // Enough batches to roll several 1 KiB segments (each roll writes a snapshot).
        for i in 0..40 {
            append(&log, batch(1, 0, i * 2, 2)).await.unwrap();
        }
        assert!(log.segment_count() > 3);
        log.close().await.unwrap();

        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(
            append(&log, batch(1, 0, 78, 2)).await.unwrap(),
            (78, 79, true)
        );
        assert!(matches!(
            sequence_error(append(&log, batch(1, 0, 90, 1)).await),
            SequenceError::OutOfOrder { expected: 80, .. }
        ));
        for i in 40..45 {
            append(&log, batch(1, 0, i * 2, 2)).await.unwrap();
        }
        // A crash: no close; the state comes back from the last roll's snapshot and a scan.
        drop(log);
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_end(), Offset(90));
        assert_eq!(
            append(&log, batch(1, 0, 88, 2)).await.unwrap(),
            (88, 89, true)
        );
        assert_eq!(
            append(&log, batch(1, 0, 90, 2)).await.unwrap(),
            (90, 91, false)
        );
        // Truncation (a replica's) takes the batches after the new end out of the state.
        log.truncate_to(Offset(50)).await.unwrap();
        let entry = log.producer(1).expect("producer 1");
        assert_eq!(entry.batches.back().unwrap().last_offset, Offset(49));
        assert_eq!(
            append(&log, batch(1, 0, 50, 2)).await.unwrap(),
            (50, 51, false)
        );
        log.close().await.unwrap();
    });
    let snapshots = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snapshot")
        })
        .count();
    assert!((1..=2).contains(&snapshots), "{snapshots} snapshots kept");
}

/// A batch of `count` records in producer `id`'s transaction.
fn txn_batch(id: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    build(id, epoch, seq, count, true)
}

/// A COMMIT or ABORT marker for producer `id`, as the transaction coordinator writes it.
fn marker(id: i64, epoch: i16, commit: bool) -> Bytes {
    sluice::model::records::marker_batch(id, epoch, commit, 0, TimestampMs::now())
}

#[test]
fn transactions_hold_the_last_stable_offset_and_aborts_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = || LogConfig {
        segment_bytes: 400,
        ..config()
    };
    io::block_on(async {
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        append(&log, txn_batch(1, 0, 0, 3)).await.unwrap(); // 0..=2, open
        append(&log, batch(2, 0, 0, 2)).await.unwrap(); // 3..=4, not transactional
        append(&log, txn_batch(1, 0, 3, 1)).await.unwrap(); // 5
        assert_eq!(log.last_stable_offset(), Offset(0));
        append(&log, marker(1, 0, true)).await.unwrap(); // 6: commit
        assert_eq!(log.last_stable_offset(), Offset(7));
        append(&log, txn_batch(3, 0, 0, 2)).await.unwrap(); // 7..=8
        assert_eq!(log.last_stable_offset(), Offset(7));
        append(&log, marker(3, 0, false)).await.unwrap(); // 9: abort
        append(&log, txn_batch(4, 0, 0, 1)).await.unwrap(); // 10, left open
        assert_eq!(log.last_stable_offset(), Offset(10));
        assert_eq!(
            log.aborted_transactions(Offset(0), Offset(11)),
            vec![(3, Offset(7))]
        );
        assert!(log.aborted_transactions(Offset(10), Offset(11)).is_empty());
        assert!(log.aborted_transactions(Offset(0), Offset(7)).is_empty());
        // A marker from a fenced (older) epoch is refused.
        append(&log, marker(3, 1, false)).await.unwrap();
        assert!(matches!(
            sequence_error(append(&log, marker(3, 0, true)).await),
            SequenceError::StaleEpoch { .. }
        ));
        for i in 0..6 {
            append(&log, batch(5, 0, i * 4, 4)).await.unwrap();
        }
        assert!(
            *log.segment_bases().last().unwrap() > Offset(9),
            "the abort sits in a sealed segment: {:?}",
            log.segment_bases()
        );
        log.close().await.unwrap();

        // Clean restart, then a crash: the same stable offset and the same aborted list.
        for clean in [true, false] {
            let log = Log::open(dir.path(), config(), Faults::default())
                .await
                .unwrap();
            assert_eq!(log.last_stable_offset(), Offset(10), "clean {clean}");
            assert!(log.log_end() > Offset(30));
            assert_eq!(
                log.aborted_transactions(Offset(0), Offset(20)),
                vec![(3, Offset(7))],
                "clean {clean}"
            );
            if clean {
                log.close().await.unwrap();
            }
        }
        // Truncating the abort marker away reopens that transaction.
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        log.truncate_to(Offset(9)).await.unwrap();
        assert_eq!(log.last_stable_offset(), Offset(7));
        assert!(log.aborted_transactions(Offset(0), Offset(20)).is_empty());
        log.close().await.unwrap();
        let log = Log::open(dir.path(), config(), Faults::default())
            .await
            .unwrap();
        assert!(log.aborted_transactions(Offset(0), Offset(20)).is_empty());
        assert_eq!(log.last_stable_offset(), Offset(7));
    });
}
