//! The owner side of partition work: every change to a partition happens on the shard that owns
//! it (one writer per partition). Appends, read ranges, long-poll watches, offsets by time, and
//! the Kafka error code for each storage outcome.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;

use super::Shard;
use crate::cluster::TopicMeta;
use crate::io;
use crate::model::{records, Codec, Epoch, Isolation, Offset, TimestampMs, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::shard::Unreachable;
use crate::storage::{AppendOptions, Log, ReadRange, SequenceError, StorageError};

/// The leader epoch of every partition on a single node: it never changes leader. Stamped into
/// each appended batch (as Kafka does), answered in Metadata and OffsetForLeaderEpoch.
pub const LEADER_EPOCH: Epoch = Epoch(0);

pub struct Partition {
    pub log: Rc<Log>,
    pub topic_id: uuid::Uuid,
    /// The topic's `compression.type` when it is not `producer`: batches are re-encoded to it.
    codec: Cell<Option<Codec>>,
    /// The offset below which records are acknowledged and may be read: on one node, the end of
    /// the last append that completed (a batch being written is not yet visible); with replicas,
    /// the minimum over the in-sync replicas. Never past the log end, never backwards.
    high_watermark: Cell<Offset>,
    /// Long-polling fetches waiting for this partition's high watermark to move.
    waiters: RefCell<Vec<super::fanout::Wake>>,
    maintenance: RefCell<Option<io::Task<()>>>,
}

impl Partition {
    pub fn new(log: Rc<Log>, topic_id: uuid::Uuid, codec: Option<Codec>) -> Partition {
        Partition {
            high_watermark: Cell::new(log.log_end()),
            log,
            topic_id,
            codec: Cell::new(codec),
            waiters: RefCell::new(Vec::new()),
            maintenance: RefCell::new(None),
        }
    }

    pub fn set_maintenance(&self, task: io::Task<()>) {
        *self.maintenance.borrow_mut() = Some(task);
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark.get()
    }

    /// The last stable offset as a read sees it: not past the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset().min(self.high_watermark())
    }

    /// An append ending at `end` (exclusive) completed: the high watermark moves up to it, and
    /// the fetches waiting on this partition wake.
    fn advance_high_watermark(&self, end: Offset) {
        let before = self.high_watermark.get();
        let log_end = self.log.log_end();
        assert!(
            end <= log_end,
            "high watermark {end:?} past the log end {log_end:?}"
        );
        if end > before {
            self.high_watermark.set(end);
        }
        self.wake_waiters();
    }

    /// Wakes every long-polling fetch waiting on this partition.
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in &waiters {
            super::fanout::fire(waiter);
        }
    }

    /// Adds a fetch's wake-up, dropping those already fired or given up.
    pub fn add_waiter(&self, wake: super::fanout::Wake) {
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|w| !super::fanout::is_done(w));
        waiters.push(wake);
    }
}

/// The answer to an append, per partition.
#[derive(Clone, Debug, Default)]
pub struct AppendReply {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: Offset,
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// Produce v8+: the records (index in their batch) that made the batch fail, with why.
    pub record_errors: Vec<(i32, String)>,
}

impl AppendReply {
    /// A refusal of the whole append, before its log was touched.
    pub fn failed(error_code: i16) -> AppendReply {
        AppendReply {
            error_code,
            base_offset: Offset::UNKNOWN,
            log_append_time_ms: -1,
            log_start_offset: Offset::UNKNOWN,
            ..Default::default()
        }
    }
}

impl From<Unreachable> for AppendReply {
    fn from(_: Unreachable) -> AppendReply {
        AppendReply::failed(E::NotLeaderOrFollower.code())
    }
}

/// The fixed part of a read's answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadHeader {
    pub error_code: i16,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
}

impl ReadHeader {
    pub fn with_error(self, error_code: i16) -> ReadHeader {
        ReadHeader { error_code, ..self }
    }
}

pub struct ReadReply<R> {
    pub header: ReadHeader,
    pub ranges: Option<R>,
    /// For read_committed: the aborted transactions (producer id, first offset) the ranges
    /// overlap.
    pub aborted: Option<Vec<(i64, i64)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    LastStable,
    Timestamp(i64),
    MaxTimestamp,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ListOffsetReply {
    pub error_code: i16,
    pub offset: Offset,
    pub timestamp: i64,
}

impl ListOffsetReply {
    pub fn found(offset: Offset, timestamp: i64) -> ListOffsetReply {
        ListOffsetReply {
            error_code: 0,
            offset,
            timestamp,
        }
    }

    pub fn failed(error_code: i16) -> ListOffsetReply {
        ListOffsetReply {
            error_code,
            offset: Offset::UNKNOWN,
            timestamp: -1,
        }
    }
}

impl From<Unreachable> for ListOffsetReply {
    fn from(_: Unreachable) -> ListOffsetReply {
        ListOffsetReply::failed(E::NotLeaderOrFollower.code())
    }
}

/// The Kafka error code a client understands for a storage outcome.
pub fn error_code(error: &StorageError) -> i16 {
    match error {
        StorageError::CorruptBatch { .. } => E::CorruptMessage.code(),
        StorageError::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        StorageError::DiskFull(_) | StorageError::Io(_) => E::KafkaStorageError.code(),
        StorageError::Closed => E::NotLeaderOrFollower.code(),
        StorageError::Sequence { source, .. } => match source {
            SequenceError::OutOfOrder { .. } => E::OutOfOrderSequenceNumber.code(),
            SequenceError::StaleEpoch { .. } => E::InvalidProducerEpoch.code(),
        },
        _ => E::KafkaStorageError.code(),
    }
}

/// A compacted topic keeps the newest record per key, so a record without a key has no place in
/// it: Kafka refuses the whole batch with INVALID_RECORD and names each keyless record, so that
/// the client fails those and retries the others. Opens every data batch (compacted topics only).
fn require_keys(log: &Log, tp: &TopicPartition, records: &Bytes) -> Result<(), AppendReply> {
    let failed = |code: E, message: String, record_errors| AppendReply {
        error_code: code.code(),
        error_message: Some(message),
        base_offset: Offset::UNKNOWN,
        log_append_time_ms: -1,
        log_start_offset: log.log_start(),
        record_errors,
    };
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
                .map_err(|e| failed(E::CorruptMessage, e.to_string(), Vec::new()))?;
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
    let errors = keyless
        .into_iter()
        .map(|index| (index, each.clone()))
        .collect();
    Err(failed(E::InvalidRecord, message, errors))
}

/// Re-encodes batches to the topic's codec (the only place the produce path opens a batch, and
/// only when an operator set `compression.type`). A batch that fails its checks is CORRUPT_MESSAGE.
fn recompress(log: &Log, records: &Bytes, codec: Codec) -> Result<Bytes, AppendReply> {
    let limit = log.config().max_message_bytes.max(1 << 20) * 64;
    match records::recompress(records, codec, limit) {
        Ok(Some(recoded)) => Ok(recoded),
        Ok(None) => Ok(records.clone()),
        Err(e) => Err(AppendReply {
            error_code: E::CorruptMessage.code(),
            error_message: Some(e.to_string()),
            base_offset: Offset::UNKNOWN,
            log_append_time_ms: -1,
            log_start_offset: log.log_start(),
            record_errors: Vec::new(),
        }),
    }
}

impl Shard {
    /// The partition if this shard owns it and it exists, opening its log on first use.
    pub async fn partition(&self, tp: &TopicPartition) -> Result<Rc<Partition>, i16> {
        if let Some(partition) = self.partitions.borrow().get(tp) {
            return Ok(partition.clone());
        }
        let meta = self
            .topic(&tp.topic)
            .filter(|meta| tp.partition >= 0 && tp.partition < meta.partitions)
            .ok_or(E::UnknownTopicOrPartition.code())?;
        if self.owner(tp) != self.id {
            return Err(E::NotLeaderOrFollower.code());
        }
        self.open_partition(tp, &meta).await.map_err(|e| {
            crate::throttled!(|count| {
                tracing::error!(%tp, error = %e, count, "cannot open the partition's log (answered KAFKA_STORAGE_ERROR)")
            });
            E::KafkaStorageError.code()
        })
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.image.borrow().topics.get(name).cloned()
    }

    /// Opens (recovering) the log of an owned partition; one opening at a time per shard.
    pub async fn open_partition(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
    ) -> Result<Rc<Partition>, StorageError> {
        let _guard = self.open_lock.lock().await;
        if let Some(partition) = self.partitions.borrow().get(tp) {
            return Ok(partition.clone());
        }
        let config = meta.log_config(&self.broker());
        let dir = self.data_dir.join(tp.dir_name());
        let log = Rc::new(Log::open(&dir, config, io::Faults::default()).await?);
        let codec = meta.codec(&self.broker());
        let partition = Rc::new(Partition::new(log.clone(), meta.id, codec));
        let broker = self.broker();
        let millis = |key: &str| std::time::Duration::from_millis(broker.i64(key).max(10) as u64);
        let periods = crate::storage::Periods {
            retention_check: millis("log.retention.check.interval.ms"),
            cleaner_backoff: millis("log.cleaner.backoff.ms"),
        };
        partition.set_maintenance(crate::storage::spawn_maintenance(
            log,
            self.background,
            periods,
        ));
        self.partitions
            .borrow_mut()
            .insert(tp.clone(), partition.clone());
        Ok(partition)
    }

    pub async fn append_local(&self, tp: &TopicPartition, records: Bytes) -> AppendReply {
        let partition = match self.partition(tp).await {
            Ok(p) => p,
            Err(code) => return AppendReply::failed(code),
        };
        if partition.log.config().cleanup_policy.compact {
            if let Err(reply) = require_keys(&partition.log, tp, &records) {
                return reply;
            }
        }
        // `records::recompress` leaves control batches (markers) as they are.
        let records = match partition.codec.get() {
            None => records,
            Some(codec) => match recompress(&partition.log, &records, codec) {
                Ok(records) => records,
                Err(reply) => return reply,
            },
        };
        let options = AppendOptions {
            leader_epoch: Some(LEADER_EPOCH.0),
            ..AppendOptions::default()
        };
        let result = partition.log.append(vec![records.clone()], options).await;
        match result {
            Ok(info) => {
                if info.duplicate {
                    tracing::debug!(%tp, offset = info.first_offset.0, "an idempotent producer's retry: answered with the original offsets");
                }
                partition.advance_high_watermark(Offset(info.last_offset.0 + 1));
                if &*tp.topic == crate::group::OFFSETS_TOPIC {
                    self.settle_group_txn(tp.partition, &records);
                }
                AppendReply {
                    error_code: 0,
                    error_message: None,
                    base_offset: info.first_offset,
                    log_append_time_ms: info.log_append_time.map_or(-1, |t| t.0),
                    log_start_offset: partition.log.log_start(),
                    record_errors: Vec::new(),
                }
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
                AppendReply {
                    error_code: error_code(&e),
                    error_message: Some(e.to_string()),
                    base_offset: Offset::UNKNOWN,
                    log_append_time_ms: -1,
                    log_start_offset: partition.log.log_start(),
                    record_errors: Vec::new(),
                }
            }
        }
    }

    /// A transaction marker written to a `__consumer_offsets` partition settles the producer's
    /// pending transactional offsets of the groups there.
    fn settle_group_txn(&self, partition: i32, records: &Bytes) {
        let Ok((view, _)) = crate::model::BatchView::parse_header(records) else {
            return;
        };
        if !view.is_control() {
            return;
        }
        if let Some(commit) = crate::storage::marker_of(&view) {
            self.groups.settle(partition, view.producer_id(), commit);
        }
    }

    pub async fn read_local(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: u64,
        min_one_batch: bool,
        isolation: Isolation,
    ) -> ReadReply<Vec<ReadRange>> {
        let read_committed = isolation == Isolation::ReadCommitted;
        let partition = match self.partition(tp).await {
            Ok(p) => p,
            Err(code) => {
                return ReadReply {
                    header: ReadHeader {
                        error_code: code,
                        high_watermark: Offset::UNKNOWN,
                        last_stable_offset: Offset::UNKNOWN,
                        log_start_offset: Offset::UNKNOWN,
                    },
                    ranges: None,
                    aborted: None,
                }
            }
        };
        let log = &partition.log;
        let high_watermark = partition.high_watermark();
        let last_stable = partition.last_stable_offset();
        let header = ReadHeader {
            error_code: 0,
            high_watermark,
            last_stable_offset: last_stable,
            log_start_offset: log.log_start(),
        };
        // read_committed stops at the last stable offset: nothing of an open transaction.
        let upper = if read_committed {
            last_stable
        } else {
            high_watermark
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
                    crate::throttled!(|count| {
                        tracing::error!(%tp, offset = offset.0, error = %e, count, "read failed")
                    });
                }
                ReadReply {
                    header: header.with_error(error_code(&e)),
                    ranges: None,
                    aborted: None,
                }
            }
        }
    }

    /// The idempotent producers a partition remembers (DescribeProducers).
    pub async fn producers_local(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, crate::storage::ProducerEntry)>, i16> {
        Ok(self.partition(tp).await?.log.producers())
    }

    pub async fn list_offset_local(
        &self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> ListOffsetReply {
        let partition = match self.partition(tp).await {
            Ok(p) => p,
            Err(code) => return ListOffsetReply::failed(code),
        };
        let log = &partition.log;
        let looked_up = match spec {
            OffsetSpec::Earliest => return ListOffsetReply::found(log.log_start(), -1),
            OffsetSpec::Latest => return ListOffsetReply::found(partition.high_watermark(), -1),
            OffsetSpec::LastStable => {
                return ListOffsetReply::found(partition.last_stable_offset(), -1)
            }
            OffsetSpec::MaxTimestamp => log.offset_of_max_timestamp().await,
            OffsetSpec::Timestamp(ts) => log.offset_for_timestamp(TimestampMs(ts)).await,
        };
        match looked_up {
            Ok(Some((offset, timestamp))) => ListOffsetReply::found(offset, timestamp.0),
            // Kafka's answer when no record has a timestamp that late.
            Ok(None) => ListOffsetReply::failed(0),
            Err(e) => {
                tracing::error!(%tp, ?spec, error = %e, "a look-up by timestamp failed");
                ListOffsetReply::failed(error_code(&e))
            }
        }
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark); the new low
    /// watermark, or the error code.
    pub async fn delete_records_local(
        &self,
        tp: &TopicPartition,
        offset: Offset,
    ) -> Result<Offset, i16> {
        let partition = self.partition(tp).await?;
        let high_watermark = partition.high_watermark();
        let target = if offset == Offset::UNKNOWN {
            high_watermark
        } else {
            offset
        };
        if target < Offset::ZERO || target > high_watermark {
            return Err(E::OffsetOutOfRange.code());
        }
        let moved = partition.log.advance_log_start(target).await;
        moved.map_err(|e| error_code(&e))
    }

    /// Closes and forgets the partitions of topics that left the image (deleting their data),
    /// reconfigures those whose configs changed, and opens the new ones this shard owns.
    /// Opens the owned partitions the image names that are not open, and closes (deleting their
    /// data) those it no longer names. Returns how many could not be opened and the first error;
    /// those are retried when next used.
    pub async fn reconcile_partitions(&self) -> Result<(), (usize, String)> {
        let image = self.image.borrow().clone();
        let current: Vec<(TopicPartition, Rc<Partition>)> = self
            .partitions
            .borrow()
            .iter()
            .map(|(tp, p)| (tp.clone(), p.clone()))
            .collect();
        for (tp, partition) in current {
            match image.topics.get(&*tp.topic) {
                Some(meta) if meta.id == partition.topic_id && tp.partition < meta.partitions => {
                    partition.log.set_config(meta.log_config(&self.broker()));
                    partition.codec.set(meta.codec(&self.broker()));
                }
                _ => {
                    self.partitions.borrow_mut().remove(&tp);
                    partition.wake_waiters();
                    if let Err(e) = partition.log.close().await {
                        tracing::warn!(%tp, error = %e, "closing a deleted partition");
                    }
                    let dir = partition.log.dir().to_path_buf();
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::error!(%tp, dir = %dir.display(), error = %e, "cannot delete the partition's data");
                    } else {
                        tracing::info!(%tp, "deleted partition");
                    }
                }
            }
        }
        let mut failed: Option<(usize, String)> = None;
        for (name, meta) in &image.topics {
            for partition in 0..meta.partitions {
                let tp = TopicPartition::new(name.clone(), partition);
                if self.owner(&tp) != self.id || self.partitions.borrow().contains_key(&tp) {
                    continue;
                }
                if let Err(e) = self.open_partition(&tp, meta).await {
                    match &mut failed {
                        Some((count, _)) => *count += 1,
                        None => failed = Some((1, format!("{tp}: {e}"))),
                    }
                }
            }
        }
        match failed {
            None => Ok(()),
            Some(failed) => Err(failed),
        }
    }

    /// Flushes and checkpoints every owned log (shutdown).
    pub async fn close_partitions(&self) {
        let all: Vec<(TopicPartition, Rc<Partition>)> =
            self.partitions.borrow_mut().drain().collect();
        for (tp, partition) in all {
            partition.wake_waiters();
            if let Err(e) = partition.log.close().await {
                tracing::error!(%tp, error = %e, "closing the log");
            }
        }
    }
}
