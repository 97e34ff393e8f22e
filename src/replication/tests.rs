//! One partition's rules on a real log in a temporary directory: the high watermark follows
//! completed appends and wakes the fetches waiting on it, reads stop at it, DeleteRecords cannot
//! pass it, and a compacted topic names each keyless record.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;

use super::{Acks, Partition, PartitionError, Refused, Transition};
use crate::cluster::Assignment;
use crate::io;
use crate::model::records::{simple_batch, BatchBuilder, Record};
use crate::model::{Codec, Epoch, Isolation, NodeId, Offset, TimestampMs, TopicPartition};
use crate::storage::{CleanupPolicy, Log, LogConfig};

/// Partition t-0 on node `me` with `replicas` (the first leading), its log in `dir/name`.
async fn open(
    dir: &std::path::Path,
    name: &str,
    config: LogConfig,
    clock: Rc<dyn io::Clock>,
    me: i32,
    replicas: &[i32],
) -> Partition {
    let log = Log::open_with_clock(&dir.join(name), config, io::Faults::default(), clock)
        .await
        .expect("the log opens");
    let tp = TopicPartition::new("t", 0);
    let alone = replicas == [me];
    let p = Partition::new(
        tp,
        Rc::new(log),
        uuid::Uuid::new_v4(),
        None,
        NodeId(me),
        alone,
    );
    let assignment = Assignment::new(replicas.iter().map(|&n| NodeId(n)).collect());
    let transition = p.assign(&assignment);
    assert_eq!(transition == Transition::Leads, me == replicas[0]);
    p
}

/// A partition alone on node 1, leading.
async fn partition(dir: &std::path::Path, config: LogConfig) -> Partition {
    open(dir, "t-0", config, Rc::new(io::SystemClock), 1, &[1]).await
}

/// A partition on node `me` of nodes 1, 2, 3 (node 1 leading), on a clock the test moves.
async fn replicated(dir: &std::path::Path, me: i32, clock: Rc<io::ManualClock>) -> Partition {
    let name = format!("t-0-{me}");
    open(dir, &name, LogConfig::default(), clock, me, &[1, 2, 3]).await
}

const LEADER: Acks = Acks::Leader;

#[test]
fn the_high_watermark_follows_appends_and_wakes_waiting_fetches() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let p = partition(dir.path(), LogConfig::default()).await;
        assert_eq!(p.high_watermark(), Offset(0));
        let (tx, mut woken) = oneshot::channel();
        p.add_waiter(Rc::new(RefCell::new(Some(tx))));
        let appended = p.append(simple_batch(3, 10, Codec::None), LEADER).await;
        assert_eq!(appended.unwrap().base_offset, Offset(0));
        assert_eq!(p.high_watermark(), Offset(3));
        assert_eq!(
            woken.try_recv(),
            Ok(Some(())),
            "the waiting fetch was woken"
        );

        let read = p
            .read(Offset(0), 1 << 20, true, Isolation::ReadUncommitted, false)
            .await;
        assert!(read.header.error.is_none());
        assert_eq!(read.header.high_watermark, Offset(3));
        let ranges = read.ranges.unwrap();
        assert_eq!(ranges.last().unwrap().next_offset, Offset(3));
        let at_end = p
            .read(Offset(3), 1 << 20, true, Isolation::ReadUncommitted, false)
            .await;
        assert!(at_end.ranges.unwrap().is_empty());
    });
}

#[test]
fn delete_records_stops_at_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let p = partition(dir.path(), LogConfig::default()).await;
        p.append(simple_batch(3, 10, Codec::None), LEADER)
            .await
            .unwrap();
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
        match p.append(batch, LEADER).await {
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

#[test]
fn the_leader_high_watermark_is_the_minimum_over_the_isr_and_acks_all_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Rc::new(io::ManualClock::new());
    io::block_on(async {
        let leader = Rc::new(replicated(dir.path(), 1, clock.clone()).await);
        let follower = replicated(dir.path(), 2, clock.clone()).await;
        assert!(leader.is_leader() && !follower.is_leader());
        leader.set_min_insync(2);
        leader
            .append(simple_batch(3, 10, Codec::None), LEADER)
            .await
            .unwrap();
        assert_eq!(leader.high_watermark(), Offset(0), "no follower has it");
        // acks=all waits for the ISR; the followers' fetches let it through.
        let all = Acks::All {
            timeout: std::time::Duration::from_secs(5),
        };
        let waiting = {
            let leader = leader.clone();
            io::spawn(async move { leader.append(simple_batch(2, 10, Codec::None), all).await })
        };
        io::sleep(std::time::Duration::from_millis(20)).await;
        let read = leader
            .read(Offset(0), 1 << 20, true, Isolation::ReadUncommitted, true)
            .await;
        assert_eq!(
            read.ranges.unwrap().last().unwrap().next_offset,
            Offset(5),
            "a follower reads to the log end"
        );
        assert_eq!(leader.follower_fetched(NodeId(2), Offset(5)), None);
        assert_eq!(
            leader.high_watermark(),
            Offset(0),
            "node 3 is in the ISR and has nothing"
        );
        assert_eq!(leader.follower_fetched(NodeId(3), Offset(4)), None);
        assert_eq!(leader.high_watermark(), Offset(4));
        assert_eq!(leader.follower_fetched(NodeId(3), Offset(5)), None);
        assert_eq!(waiting.join().await.unwrap().base_offset, Offset(3));
        // Node 3 stops fetching: past replica.lag.time.max.ms it should leave the ISR.
        leader
            .append(simple_batch(1, 10, Codec::None), LEADER)
            .await
            .unwrap();
        clock.advance(std::time::Duration::from_millis(400));
        leader.follower_fetched(NodeId(2), Offset(6));
        assert_eq!(leader.isr_shrink(1_000), None);
        clock.advance(std::time::Duration::from_millis(700));
        leader.follower_fetched(NodeId(2), Offset(6));
        let shrink = leader.isr_shrink(1_000).expect("node 3 is behind");
        assert_eq!(shrink.isr, vec![NodeId(1), NodeId(2)]);
        // The image commits it; min.insync.replicas=3 now refuses acks=all before appending.
        let mut a = leader.assignment();
        a.isr = shrink.isr.clone();
        a.partition_epoch += 1;
        assert_eq!(leader.assign(&a), Transition::Same);
        assert_eq!(
            leader.high_watermark(),
            Offset(6),
            "the ISR without node 3 has it all"
        );
        leader.set_min_insync(3);
        let refused = leader.append(simple_batch(1, 10, Codec::None), all).await;
        assert!(matches!(
            refused,
            Err(Refused {
                error: PartitionError::NotEnoughReplicas { isr: 2, min: 3 },
                ..
            })
        ));
        // Node 3 catches up to the high watermark: it may come back.
        let grow = leader
            .follower_fetched(NodeId(3), Offset(6))
            .expect("caught up");
        assert_eq!(grow.isr, vec![NodeId(1), NodeId(2), NodeId(3)]);

        // The follower copies the leader's batches as they are and keeps its high watermark.
        let ranges = leader
            .read(Offset(0), 1 << 20, true, Isolation::ReadUncommitted, true)
            .await
            .ranges
            .unwrap();
        let mut copied = Vec::new();
        for range in ranges {
            copied.extend(range.read_bytes().await.unwrap());
        }
        let bytes = Bytes::from(copied);
        follower
            .append_replicated(bytes.clone(), Offset(6))
            .await
            .unwrap();
        assert_eq!(follower.log.log_end(), Offset(6));
        assert_eq!(follower.high_watermark(), Offset(6));
        assert_eq!(follower.log.latest_epoch(), Some(0));
        follower.append_replicated(bytes, Offset(6)).await.unwrap();
        assert_eq!(follower.log.log_end(), Offset(6), "what it has is skipped");
        let refused = follower
            .append(simple_batch(1, 10, Codec::None), LEADER)
            .await;
        assert!(matches!(
            refused,
            Err(Refused {
                error: PartitionError::NotLeader,
                ..
            })
        ));
        // A new leader: the follower cuts what the new leader lacks.
        let mut next = follower.assignment();
        next.leader = NodeId(3);
        next.leader_epoch = Epoch(1);
        assert_eq!(
            follower.assign(&next),
            Transition::Follows {
                leader: NodeId(3),
                epoch: Epoch(1)
            }
        );
        assert_eq!(follower.truncate(Offset(3)).await.unwrap(), Offset(3));
        assert_eq!(follower.high_watermark(), Offset(3));
    });
}
