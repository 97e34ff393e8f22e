//! One partition on the shard that owns it: its log, its high watermark, the long-polling fetches
//! waiting on it, and the operations on it (append, read, offset look-ups, DeleteRecords), each
//! answering a typed `PartitionError`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;

use super::replica::Replicas;
use crate::cluster::Assignment;
use crate::io;
use crate::model::{records, Codec, Epoch, Isolation, NodeId, Offset, TimestampMs, TopicPartition};
use crate::shard::Unreachable;
use crate::storage::{AppendOptions, Log, LogConfig, ProducerEntry, ReadRange, StorageError};

/// The leader epoch of a new partition (and of every partition on a single node, which never
/// changes leader). Stamped into each appended batch, as Kafka does.
pub const LEADER_EPOCH: Epoch = Epoch(0);

/// When a produce is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=1: once the leader's append is done.
    Leader,
    /// acks=all: once every replica in the ISR has the records (the high watermark passed
    /// them), with at least `min.insync.replicas` in the ISR; `timeout` is the request's.
    All { timeout: Duration },
}

impl Acks {
    /// acks=all as the coordinators and transaction markers write (Kafka's internal writes wait
    /// for the ISR), bounded as a request is.
    pub const INTERNAL: Acks = Acks::All {
        timeout: Duration::from_secs(30),
    };
}

/// Why an operation on a partition failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// This shard (or node) does not lead the partition, or its owner could not be reached.
    #[error("not the partition's leader")]
    NotLeader,
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A batch whose records cannot be opened (when the partition must open them).
    #[error("{0}")]
    Corrupt(String),
    /// Records the topic refuses, each named by its index in the batch with why.
    #[error("{message}")]
    InvalidRecord {
        message: String,
        record_errors: Vec<(i32, String)>,
    },
    /// acks=all with fewer than `min.insync.replicas` in the ISR: nothing was appended.
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas={min}")]
    NotEnoughReplicas { isr: usize, min: usize },
    /// acks=all: appended, but the ISR fell below `min.insync.replicas` before it was copied.
    #[error("appended, but the ISR shrank below min.insync.replicas")]
    NotEnoughReplicasAfterAppend,
    /// acks=all: the ISR did not copy the records within the request's timeout.
    #[error("the in-sync replicas did not copy the records in time")]
    TimedOut,
    /// A request from an older leader epoch than the partition's.
    #[error("leader epoch {asked} is older than the partition's {current}")]
    FencedLeaderEpoch { asked: i32, current: i32 },
    /// A request from a newer leader epoch than this broker knows.
    #[error("leader epoch {asked} is newer than the partition's {current}")]
    UnknownLeaderEpoch { asked: i32, current: i32 },
    /// The leader's batches do not continue this replica's log: it must truncate first.
    #[error("the leader's batches do not continue this log")]
    Diverged,
    /// DeleteRecords to an offset outside [0, high watermark].
    #[error("offset {offset} is past the high watermark {high_watermark}")]
    DeleteBeyondHighWatermark {
        offset: Offset,
        high_watermark: Offset,
    },
}

impl From<Unreachable> for PartitionError {
    fn from(_: Unreachable) -> PartitionError {
        PartitionError::NotLeader
    }
}

/// A refused append: why, and the log start offset when the partition is open (Kafka answers
/// it with the error).
#[derive(Clone, Debug)]
pub struct Refused {
    pub error: PartitionError,
    pub log_start_offset: Offset,
}

impl From<PartitionError> for Refused {
    fn from(error: PartitionError) -> Refused {
        Refused {
            error,
            log_start_offset: Offset::UNKNOWN,
        }
    }
}

impl From<Unreachable> for Refused {
    fn from(unreachable: Unreachable) -> Refused {
        PartitionError::from(unreachable).into()
    }
}

/// A completed append.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub base_offset: Offset,
    /// LogAppendTime topics: the time the broker stamped.
    pub log_append_time: Option<TimestampMs>,
    pub log_start_offset: Offset,
}

/// The fixed part of a read's answer.
#[derive(Clone, Debug)]
pub struct ReadHeader {
    pub error: Option<PartitionError>,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
}

impl ReadHeader {
    /// The header of a read that failed before it reached a log.
    pub fn failed(error: PartitionError) -> ReadHeader {
        ReadHeader {
            error: Some(error),
            high_watermark: Offset::UNKNOWN,
            last_stable_offset: Offset::UNKNOWN,
            log_start_offset: Offset::UNKNOWN,
        }
    }
}

pub struct ReadReply<R> {
    pub header: ReadHeader,
    pub ranges: Option<R>,
    /// For read_committed: the aborted transactions (producer id, first offset) the ranges
    /// overlap.
    pub aborted: Option<Vec<(i64, i64)>>,
}

impl<R> ReadReply<R> {
    pub fn failed(error: PartitionError) -> ReadReply<R> {
        ReadReply {
            header: ReadHeader::failed(error),
            ranges: None,
            aborted: None,
        }
    }

    pub fn map_ranges<S>(self, f: impl FnOnce(R) -> S) -> ReadReply<S> {
        ReadReply {
            header: self.header,
            ranges: self.ranges.map(f),
            aborted: self.aborted,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    LastStable,
    Timestamp(i64),
    MaxTimestamp,
}

/// An offset look-up's answer: the offset and its record's timestamp (-1 where none applies;
/// both unknown when no record has a timestamp that late, as Kafka answers).
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub offset: Offset,
    pub timestamp: i64,
}

impl Found {
    const NONE: Found = Found {
        offset: Offset::UNKNOWN,
        timestamp: -1,
    };

    fn at(offset: Offset) -> Found {
        Found {
            offset,
            timestamp: -1,
        }
    }
}

/// A long-polling fetch's wake-up, shared by every partition of one shard it waits on: the first
/// of them to pass its offset takes and fires it.
pub type Wake = Rc<RefCell<Option<oneshot::Sender<()>>>>;

pub fn fire(wake: &Wake) {
    if let Some(sender) = wake.borrow_mut().take() {
        let _ = sender.send(());
    }
}

/// Whether nobody waits on `wake` any more (fired, or the fetch gave up).
fn is_done(wake: &Wake) -> bool {
    wake.borrow()
        .as_ref()
        .is_none_or(oneshot::Sender::is_canceled)
}

pub struct Partition {
    pub tp: TopicPartition,
    pub log: Rc<Log>,
    pub topic_id: uuid::Uuid,
    /// The topic's `compression.type` when it is not `producer`: batches are re-encoded to it.
    codec: Cell<Option<Codec>>,
    /// The offset below which records are acknowledged and may be read: on one node, the end of
    /// the last append that completed (a batch being written is not yet visible); with replicas,
    /// the minimum over the in-sync replicas. Never past the log end, never backwards.
    pub(super) high_watermark: Cell<Offset>,
    /// Long-polling fetches waiting for this partition's high watermark to move.
    waiters: RefCell<Vec<Wake>>,
    maintenance: RefCell<Option<io::Task<()>>>,
    /// This node.
    pub(super) me: NodeId,
    /// The replicas, leader and ISR as the image says (see `replica`).
    pub(super) replicas: RefCell<Replicas>,
    /// `min.insync.replicas` for acks=all.
    min_insync: Cell<usize>,
}

impl Partition {
    /// A partition on node `me`, with no assignment until [`Partition::assign`] gives it one.
    /// Its high watermark starts at the log end when it is its only replica; otherwise at the log
    /// start, until the replicas in sync say how far it is (a leader restarted must not show
    /// records its followers never copied).
    pub fn new(
        tp: TopicPartition,
        log: Rc<Log>,
        topic_id: uuid::Uuid,
        codec: Option<Codec>,
        me: NodeId,
        alone: bool,
    ) -> Partition {
        let nobody = Assignment {
            replicas: Vec::new(),
            leader: NodeId(-1),
            leader_epoch: Epoch(-1),
            partition_epoch: -1,
            isr: Vec::new(),
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let high_watermark = if alone {
            log.log_end()
        } else {
            log.log_start()
        };
        Partition {
            tp,
            high_watermark: Cell::new(high_watermark),
            log,
            topic_id,
            codec: Cell::new(codec),
            waiters: RefCell::new(Vec::new()),
            maintenance: RefCell::new(None),
            me,
            replicas: RefCell::new(Replicas::new(nobody)),
            min_insync: Cell::new(1),
        }
    }

    /// `min.insync.replicas` as this partition applies it.
    pub fn min_insync(&self) -> usize {
        self.min_insync.get()
    }

    pub fn set_min_insync(&self, min: usize) {
        self.min_insync.set(min.max(1));
    }

    pub fn set_maintenance(&self, task: io::Task<()>) {
        *self.maintenance.borrow_mut() = Some(task);
    }

    /// Cancels the log's background work (the partition is being deleted: nothing it would
    /// write, such as a checkpoint, may land in the directory being removed).
    pub fn stop_maintenance(&self) {
        self.maintenance.borrow_mut().take();
    }

    /// The topic's configs changed.
    pub fn reconfigure(&self, config: LogConfig, codec: Option<Codec>) {
        self.log.set_config(config);
        self.codec.set(codec);
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark.get()
    }

    /// The last stable offset as a read sees it: not past the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset().min(self.high_watermark())
    }

    /// The high watermark may move up to `end` (the minimum over the ISR, or the leader's as a
    /// follower heard it); if it moved, the fetches and produces waiting on this partition wake.
    /// (Only then: a follower's fetch moves it, and waking the other followers' fetches on every
    /// fetch would have them wake each other for ever.)
    pub(super) fn advance_high_watermark(&self, end: Offset) {
        let before = self.high_watermark.get();
        let log_end = self.log.log_end();
        assert!(
            end <= log_end,
            "high watermark {end:?} past the log end {log_end:?}"
        );
        if end > before {
            self.high_watermark.set(end);
            self.wake_waiters();
        }
    }

    /// Wakes every long-polling fetch waiting on this partition.
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in &waiters {
            fire(waiter);
        }
    }

    /// Adds a fetch's wake-up, dropping those already fired or given up.
    pub fn add_waiter(&self, wake: Wake) {
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|w| !is_done(w));
        waiters.push(wake);
    }

    /// Appends a produce's records (one or more batches), stamped with the leader epoch, and
    /// answers as `acks` asks: once written, or once the ISR has them.
    pub async fn append(&self, records: Bytes, acks: Acks) -> Result<Appended, Refused> {
        let refused = |error| Refused {
            error,
            log_start_offset: self.log.log_start(),
        };
        if !self.is_leader() {
            return Err(refused(PartitionError::NotLeader));
        }
        if acks != Acks::Leader {
            let (isr, min) = (self.isr_len(), self.min_insync.get());
            if isr < min {
                return Err(refused(PartitionError::NotEnoughReplicas { isr, min }));
            }
        }
        if self.log.config().cleanup_policy.compact {
            require_keys(&self.log, &self.tp, &records).map_err(refused)?;
        }
        // `records::recompress` leaves control batches (markers) as they are.
        let records = match self.codec.get() {
            None => records,
            Some(codec) => recompress(&self.log, &records, codec).map_err(refused)?,
        };
        let options = AppendOptions {
            leader_epoch: Some(self.leader_epoch().0),
            ..AppendOptions::default()
        };
        let tp = &self.tp;
        match self.log.append(vec![records], options).await {
            Ok(info) => {
                if info.duplicate {
                    tracing::debug!(%tp, offset = info.first_offset.0, "an idempotent producer's retry: answered with the original offsets");
                }
                self.update_high_watermark();
                // The log end moved: followers' fetches waiting on it go and copy.
                self.wake_waiters();
                if let Acks::All { timeout } = acks {
                    self.await_isr(info.last_offset.plus(1), timeout)
                        .await
                        .map_err(refused)?;
                }
                Ok(Appended {
                    base_offset: info.first_offset,
                    log_append_time: info.log_append_time,
                    log_start_offset: self.log.log_start(),
                })
            }
            Err(e) => {
                if !matches!(
                    e,
                    StorageError::CorruptBatch { .. }
                        | StorageError::BatchTooLarge { .. }
                        | StorageError::Sequence { .. }
                ) {
                    tracing::error!(%tp, error = %e, "append failed");
                }
                Err(refused(e.into()))
            }
        }
    }

    /// acks=all: waits until the high watermark reaches `end`.
    async fn await_isr(&self, end: Offset, timeout: Duration) -> Result<(), PartitionError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.high_watermark() >= end {
                return Ok(());
            }
            if !self.is_leader() {
                return Err(PartitionError::NotLeader);
            }
            if self.isr_len() < self.min_insync.get() {
                return Err(PartitionError::NotEnoughReplicasAfterAppend);
            }
            let (tx, rx) = oneshot::channel();
            self.add_waiter(Rc::new(RefCell::new(Some(tx))));
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || io::net::timeout(left, rx).await.is_none() {
                return Err(PartitionError::TimedOut);
            }
        }
    }

    /// What a read at the high watermark finds: the partition's watermarks and no records.
    pub fn nothing_new(&self, isolation: Isolation) -> ReadReply<Vec<ReadRange>> {
        ReadReply {
            header: self.header(),
            ranges: Some(Vec::new()),
            aborted: (isolation == Isolation::ReadCommitted).then(Vec::new),
        }
    }

    fn header(&self) -> ReadHeader {
        ReadHeader {
            error: None,
            high_watermark: self.high_watermark(),
            last_stable_offset: self.last_stable_offset(),
            log_start_offset: self.log.log_start(),
        }
    }

    /// Where a read stops: the log end for a follower's fetch, else the high watermark.
    pub fn readable_end(&self, replica: bool) -> Offset {
        if replica {
            self.log.log_end()
        } else {
            self.high_watermark()
        }
    }

    /// The ranges of the log from `offset` that a fetch may return: up to the high watermark, or
    /// the last stable offset for read_committed (nothing of an open transaction); a follower's
    /// (`replica`) up to the log end.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: u64,
        min_one_batch: bool,
        isolation: Isolation,
        replica: bool,
    ) -> ReadReply<Vec<ReadRange>> {
        let read_committed = isolation == Isolation::ReadCommitted && !replica;
        let log = &self.log;
        let header = self.header();
        let upper = if replica {
            log.log_end()
        } else if read_committed {
            header.last_stable_offset
        } else {
            header.high_watermark
        };
        match log.read(offset, upper, max_bytes, min_one_batch).await {
            Ok(ranges) => {
                let aborted = read_committed.then(|| {
                    let end = ranges.last().map_or(offset, |r| r.next_offset);
                    log.aborted_transactions(offset, end)
                        .into_iter()
                        .map(|(id, first)| (id, first.0))
                        .collect()
                });
                ReadReply {
                    header,
                    ranges: Some(ranges),
                    aborted,
                }
            }
            // Every closed-segment file the shard may hold is in a read in flight: no records
            // this time; the client asks again once those are sent.
            Err(StorageError::Busy { .. }) => ReadReply {
                header,
                ranges: Some(Vec::new()),
                aborted: read_committed.then(Vec::new),
            },
            Err(e) => {
                if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                    let tp = &self.tp;
                    crate::throttled!(|count| {
                        tracing::error!(%tp, offset = offset.0, error = %e, count, "read failed")
                    });
                }
                ReadReply {
                    header: ReadHeader {
                        error: Some(e.into()),
                        ..header
                    },
                    ranges: None,
                    aborted: None,
                }
            }
        }
    }

    /// The idempotent producers the partition remembers (DescribeProducers).
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        self.log.producers()
    }

    /// ListOffsets: the log start, the high watermark, the last stable offset, or the first
    /// offset at or after a timestamp.
    pub async fn list_offset(&self, spec: OffsetSpec) -> Result<Found, PartitionError> {
        let log = &self.log;
        let looked_up = match spec {
            OffsetSpec::Earliest => return Ok(Found::at(log.log_start())),
            OffsetSpec::Latest => return Ok(Found::at(self.high_watermark())),
            OffsetSpec::LastStable => return Ok(Found::at(self.last_stable_offset())),
            OffsetSpec::MaxTimestamp => log.offset_of_max_timestamp().await,
            OffsetSpec::Timestamp(ts) => log.offset_for_timestamp(TimestampMs(ts)).await,
        };
        match looked_up {
            Ok(Some((offset, timestamp))) => Ok(Found {
                offset,
                timestamp: timestamp.0,
            }),
            Ok(None) => Ok(Found::NONE),
            Err(e) => {
                let tp = &self.tp;
                tracing::error!(%tp, ?spec, error = %e, "a look-up by timestamp failed");
                Err(e.into())
            }
        }
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark); the new low
    /// watermark.
    pub async fn delete_records(&self, offset: Offset) -> Result<Offset, PartitionError> {
        let high_watermark = self.high_watermark();
        let target = if offset == Offset::UNKNOWN {
            high_watermark
        } else {
            offset
        };
        if target < Offset::ZERO || target > high_watermark {
            return Err(PartitionError::DeleteBeyondHighWatermark {
                offset: target,
                high_watermark,
            });
        }
        Ok(self.log.advance_log_start(target).await?)
    }
}

/// A compacted topic keeps the newest record per key, so a record without a key has no place in
/// it: Kafka refuses the whole batch with INVALID_RECORD and names each keyless record, so that
/// the client fails those and retries the others. Opens every data batch (compacted topics only).
fn require_keys(log: &Log, tp: &TopicPartition, records: &Bytes) -> Result<(), PartitionError> {
    let limit = log.config().max_message_bytes.max(1 << 20) * 64;
    let mut rest = &records[..];
    let mut keyless = Vec::new();
    while !rest.is_empty() {
        let (view, after) = match crate::model::BatchView::validate(rest) {
            Ok(framed) => framed,
            // The append's own validation answers a corrupt batch.
            Err(_) => return Ok(()),
        };
        if !view.is_control() {
            let decoded = records::decode(&view, limit)
                .map_err(|e| PartitionError::Corrupt(e.to_string()))?;
            // Produce carries one batch per partition: an index is the record's in it.
            keyless.extend(
                decoded
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.key.is_none())
                    .map(|(index, _)| index as i32),
            );
        }
        rest = after;
    }
    if keyless.is_empty() {
        return Ok(());
    }
    let each =
        format!("Compacted topic cannot accept message without key in topic partition {tp}.");
    let shown: Vec<String> = keyless
        .iter()
        .take(3)
        .map(|index| format!("RecordError(batchIndex={index}, message='{each}')"))
        .collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        keyless.len(),
        shown.join(", ")
    );
    let record_errors = keyless
        .into_iter()
        .map(|index| (index, each.clone()))
        .collect();
    Err(PartitionError::InvalidRecord {
        message,
        record_errors,
    })
}

/// Re-encodes batches to the topic's codec (the only place the produce path opens a batch, and
/// only when an operator set `compression.type`).
fn recompress(log: &Log, records: &Bytes, codec: Codec) -> Result<Bytes, PartitionError> {
    let limit = log.config().max_message_bytes.max(1 << 20) * 64;
    match records::recompress(records, codec, limit) {
        Ok(Some(recoded)) => Ok(recoded),
        Ok(None) => Ok(records.clone()),
        Err(e) => Err(PartitionError::Corrupt(e.to_string())),
    }
}
