//! One partition's rules on a real log in a temporary directory: the high watermark follows
//! completed appends and wakes the fetches waiting on it, reads stop at it, DeleteRecords cannot
//! pass it, and a compacted topic names each keyless record.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;

use super::{Partition, PartitionError, Refused};
use crate::io;
use crate::model::records::{simple_batch, BatchBuilder, Record};
use crate::model::{Codec, Isolation, Offset, TimestampMs, TopicPartition};
use crate::storage::{CleanupPolicy, Log, LogConfig};

async fn partition(dir: &std::path::Path, config: LogConfig) -> Partition {
    let log = Log::open(&dir.join("t-0"), config, io::Faults::default())
        .await
        .expect("the log opens");
    let tp = TopicPartition::new("t", 0);
    Partition::new(tp, Rc::new(log), uuid::Uuid::new_v4(), None)
}

#[test]
fn the_high_watermark_follows_appends_and_wakes_waiting_fetches() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let p = partition(dir.path(), LogConfig::default()).await;
        assert_eq!(p.high_watermark(), Offset(0));
        let (tx, mut woken) = oneshot::channel();
        p.add_waiter(Rc::new(RefCell::new(Some(tx))));
        let appended = p.append(simple_batch(3, 10, Codec::None)).await;
        assert_eq!(appended.unwrap().base_offset, Offset(0));
        assert_eq!(p.high_watermark(), Offset(3));
        assert_eq!(
            woken.try_recv(),
            Ok(Some(())),
            "the waiting fetch was woken"
        );

        let read = p
            .read(Offset(0), 1 << 20, true, Isolation::ReadUncommitted)
            .await;
        assert!(read.header.error.is_none());
        assert_eq!(read.header.high_watermark, Offset(3));
        let ranges = read.ranges.unwrap();
        assert_eq!(ranges.last().unwrap().next_offset, Offset(3));
        let at_end = p
            .read(Offset(3), 1 << 20, true, Isolation::ReadUncommitted)
            .await;
        assert!(at_end.ranges.unwrap().is_empty());
    });
}

#[test]
fn delete_records_stops_at_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let p = partition(dir.path(), LogConfig::default()).await;
        p.append(simple_batch(3, 10, Codec::None)).await.unwrap();
        match p.delete_records(Offset(5)).await {
            Err(PartitionError::DeleteBeyondHighWatermark {
                offset,
                high_watermark,
            }) => assert_eq!((offset, high_watermark), (Offset(5), Offset(3))),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // -1 means the high watermark.
        assert_eq!(p.delete_records(Offset::UNKNOWN).await.unwrap(), Offset(3));
        assert_eq!(p.log.log_start(), Offset(3));
    });
}

#[test]
fn a_compacted_partition_refuses_keyless_records_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    };
    io::block_on(async {
        let p = partition(dir.path(), config).await;
        let record = |offset: i64, key: Option<&'static str>| Record {
            offset: Offset(offset),
            timestamp: TimestampMs(1_700_000_000_000),
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        };
        let batch = BatchBuilder::default().build(&[
            record(0, Some("a")),
            record(1, None),
            record(2, Some("c")),
        ]);
        match p.append(batch).await {
            Err(Refused {
                error: PartitionError::InvalidRecord { record_errors, .. },
                log_start_offset,
            }) => {
                let indexes: Vec<i32> = record_errors.iter().map(|(i, _)| *i).collect();
                assert_eq!(indexes, [1]);
                assert_eq!(log_start_offset, Offset(0));
            }
            other => panic!("expected INVALID_RECORD, got {other:?}"),
        }
        assert_eq!(p.high_watermark(), Offset(0), "nothing was written");
        assert_eq!(p.log.log_end(), Offset(0));
    });
}
