//! Appends: validation, group commit, offset assignment, flushes, rolls.

use std::collections::HashMap;

use super::*;
use crate::storage::producers::{self, AbortedTxn, ProducerBatch, ProducerEntry, Sequence};

type Ticket = Rc<RefCell<Option<Result<AppendInfo, StorageError>>>>;

pub(super) struct Pending {
    batches: Vec<Bytes>,
    options: AppendOptions,
    records: u64,
    bytes: usize,
    ticket: Ticket,
}

/// Bytes staged for one write to the active segment.
struct Chunk {
    buf: Vec<u8>,
    /// Where `buf` goes in the active segment.
    position: u64,
    /// The offset the next staged batch gets.
    next_offset: Offset,
    batches: Vec<BatchInfo>,
    members: Vec<usize>,
    records: u64,
    /// Producers whose state the staged batches change; merged into the log's on commit.
    producers: HashMap<i64, ProducerEntry>,
    /// Transactions the staged markers end.
    ended: Vec<EndedTxn>,
    /// Leader epochs the staged batches start (each newer than the one before).
    epochs: Vec<(i32, Offset)>,
}

enum Checked {
    Append(HashMap<i64, ProducerEntry>, Vec<EndedTxn>),
    Duplicate(ProducerBatch),
}

/// A transaction a staged marker ends.
struct EndedTxn {
    producer_id: i64,
    first_offset: Offset,
    marker_offset: Offset,
    commit: bool,
}

/// Index entry bytes held in memory before they are written to the index files.
const INDEX_WRITE_BYTES: usize = 4096;

/// The first and last offsets an append will occupy if it starts at `next` (a leader assigns
/// offsets from `next`; a replica keeps the batches' own).
fn pending_offsets(pending: &Pending, next: Offset) -> (Offset, Offset) {
    let mut span = 0;
    let mut first = None;
    let mut last = next;
    for bytes in &pending.batches {
        let mut rest = &bytes[..];
        while let Ok((view, after)) = BatchView::parse_header(rest) {
            span += view.header().last_offset_delta.get() as i64 + 1;
            first.get_or_insert(view.base_offset());
            last = last.max(view.last_offset());
            rest = after;
        }
    }
    if pending.options.assign_offsets {
        (next, Offset(next.0 + span - 1))
    } else {
        (first.unwrap_or(next).max(next), last)
    }
}

impl Log {
    /// Checks the batches (magic, CRC, counts, `max.message.bytes`); returns their record count.
    fn validate(&self, batches: &[Bytes]) -> Result<u64, StorageError> {
        let limit_bytes = self.config.borrow().max_message_bytes;
        let mut records = 0u64;
        let mut index = 0;
        if batches.is_empty() {
            return Err(StorageError::CorruptBatch {
                index,
                source: BatchError::Truncated {
                    need: batch::HEADER_BYTES,
                    have: 0,
                },
            });
        }
        for bytes in batches {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (view, after) = BatchView::validate(rest)
                    .map_err(|source| StorageError::CorruptBatch { index, source })?;
                if view.len() > limit_bytes {
                    return Err(StorageError::BatchTooLarge {
                        index,
                        bytes: view.len(),
                        limit_bytes,
                    });
                }
                records += view.records_count() as u64;
                rest = after;
                index += 1;
            }
        }
        Ok(records)
    }

    /// Appends whole batches (each `Bytes` holds one or more), assigning offsets unless
    /// `options.assign_offsets` is false. Concurrent appends on this shard are written together:
    /// one write and, if any needs it, one fdatasync for the group. On error nothing of this
    /// append is visible, now or after a restart.
    pub async fn append(
        &self,
        batches: Vec<Bytes>,
        options: AppendOptions,
    ) -> Result<AppendInfo, StorageError> {
        let records = self.validate(&batches)?;
        if self.state.borrow().closed {
            return Err(StorageError::Closed);
        }
        let ticket: Ticket = Rc::new(RefCell::new(None));
        let bytes = batches.iter().map(Bytes::len).sum();
        self.queue.borrow_mut().push(Pending {
            batches,
            options,
            records,
            bytes,
            ticket: ticket.clone(),
        });
        let _guard = self.write_lock.lock().await;
        // Whoever holds the lock writes the queue in order, a group at a time, until its own
        // append is answered; appends queued behind it wait for the next holder.
        loop {
            if let Some(result) = ticket.borrow_mut().take() {
                return result;
            }
            let group = self.next_group();
            debug_assert!(!group.is_empty(), "an unanswered append is queued");
            self.write_group(group).await;
        }
    }

    /// The appends at the head of the queue that fit `log.write.group.max.bytes` together (the
    /// first always does).
    fn next_group(&self) -> Vec<Pending> {
        let limit = self.config.borrow().write_group_max_bytes;
        let mut queue = self.queue.borrow_mut();
        let mut bytes = 0;
        let take = queue
            .iter()
            .take_while(|pending| {
                let first = bytes == 0;
                bytes += pending.bytes;
                first || bytes <= limit
            })
            .count();
        queue.drain(..take).collect()
    }

    async fn write_group(&self, group: Vec<Pending>) {
        if self.state.borrow().closed {
            for pending in group {
                *pending.ticket.borrow_mut() = Some(Err(StorageError::Closed));
            }
            return;
        }
        let now = self.now();
        let mut results: Vec<Option<Result<AppendInfo, StorageError>>> =
            group.iter().map(|_| None).collect();
        let mut chunk = self.new_chunk();
        // One allocation for the group's bytes, not a doubling per batch.
        chunk.buf.reserve(group.iter().map(|p| p.bytes).sum());
        let mut failure: Option<StorageError> = None;
        for (i, pending) in group.iter().enumerate() {
            if let Some(e) = &failure {
                results[i] = Some(Err(e.clone()));
                continue;
            }
            if self.needs_roll(&chunk, pending, now) {
                let rolled = match self.commit(&mut chunk, &mut results).await {
                    Ok(()) => {
                        self.roll(pending_offsets(pending, chunk.next_offset).0)
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = rolled {
                    results[i] = Some(Err(e.clone()));
                    failure = Some(e);
                    continue;
                }
                chunk = self.new_chunk();
            }
            results[i] = Some(self.stage(&mut chunk, pending, i, now));
        }
        // A failure is logged in `commit` and answered to each append it hit.
        let _ = self.commit(&mut chunk, &mut results).await;
        let wants_sync = group
            .iter()
            .zip(&results)
            .any(|(p, r)| p.options.durability == Durability::Sync && matches!(r, Some(Ok(_))));
        if wants_sync || self.flush_due(now) {
            if let Err(e) = self.flush().await {
                crate::throttled!(|count| {
                    tracing::warn!(log = %self.dir.display(), error = %e, count, "fdatasync failed")
                });
                for (pending, result) in group.iter().zip(results.iter_mut()) {
                    if pending.options.durability == Durability::Sync {
                        *result = Some(Err(e.clone()));
                    }
                }
            }
        }
        let acknowledged = results.iter().filter(|r| matches!(r, Some(Ok(_)))).count() as u64;
        self.count(|stats| stats.appends += acknowledged);
        for (pending, result) in group.into_iter().zip(results) {
            *pending.ticket.borrow_mut() = Some(result.expect("every append has an answer"));
        }
    }

    fn new_chunk(&self) -> Chunk {
        let state = self.state.borrow();
        Chunk {
            buf: Vec::new(),
            position: state.active().size_bytes,
            next_offset: state.log_end,
            batches: Vec::new(),
            members: Vec::new(),
            records: 0,
            producers: HashMap::new(),
            ended: Vec::new(),
            epochs: Vec::new(),
        }
    }

    fn needs_roll(&self, chunk: &Chunk, pending: &Pending, now: TimestampMs) -> bool {
        let config = self.config.borrow();
        let state = self.state.borrow();
        let active = state.active();
        let size = chunk.position + chunk.buf.len() as u64;
        // Relative offsets are 32-bit in the indexes; Kafka keeps them below i32::MAX.
        let (_, last) = pending_offsets(pending, chunk.next_offset);
        let offsets_overflow = last.0 - active.base.0 > i32::MAX as i64;
        if size == 0 {
            return offsets_overflow;
        }
        let too_big = size + pending.bytes as u64 > config.segment_bytes;
        let index_full = active.index.len() + chunk.batches.len() >= config.index_entries_max();
        let too_old = active
            .first_append_ms
            .is_some_and(|first| now.0 - first > config.roll_ms());
        too_big || index_full || offsets_overflow || too_old
    }

    /// Copies the append's batches into the chunk, stamping offsets, epoch and LogAppendTime.
    fn stage(
        &self,
        chunk: &mut Chunk,
        pending: &Pending,
        member: usize,
        now: TimestampMs,
    ) -> Result<AppendInfo, StorageError> {
        let log_append_time = (self.config.borrow().message_timestamp_type
            == TimestampType::LogAppendTime)
            .then_some(now);
        let (touched, ended) = match self.check_sequences(chunk, pending) {
            Ok(Checked::Append(touched, ended)) => (touched, ended),
            Ok(Checked::Duplicate(batch)) => {
                return Ok(AppendInfo {
                    first_offset: batch.first_offset,
                    last_offset: batch.last_offset,
                    log_append_time: None,
                    duplicate: true,
                })
            }
            Err(e) => return Err(e),
        };
        let mut first_offset = None;
        chunk.buf.reserve(pending.bytes);
        let restore = (
            chunk.buf.len(),
            chunk.batches.len(),
            chunk.next_offset,
            chunk.epochs.len(),
        );
        for bytes in &pending.batches {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let total = BatchView::total_len(rest).expect("validated");
                let start = chunk.buf.len();
                chunk.buf.extend_from_slice(&rest[..total]);
                rest = &rest[total..];
                let stamped = &mut chunk.buf[start..];
                if pending.options.assign_offsets {
                    batch::set_base_offset(stamped, chunk.next_offset);
                }
                if let Some(epoch) = pending.options.leader_epoch {
                    batch::set_partition_leader_epoch(stamped, epoch);
                }
                if let Some(time) = log_append_time {
                    batch::set_log_append_time(stamped, time);
                }
                let (view, _) = BatchView::parse_header(stamped).expect("validated");
                if view.base_offset() < chunk.next_offset {
                    let got = view.base_offset();
                    chunk.buf.truncate(restore.0);
                    chunk.batches.truncate(restore.1);
                    chunk.next_offset = restore.2;
                    chunk.epochs.truncate(restore.3);
                    return Err(StorageError::OffsetMismatch {
                        expected: chunk.next_offset,
                        got,
                    });
                }
                chunk.batches.push(BatchInfo {
                    position: chunk.position + start as u64,
                    bytes: total as u32,
                    base: view.base_offset(),
                    last: view.last_offset(),
                    max_timestamp: view.max_timestamp(),
                    records: view.records_count(),
                });
                let epoch = view.header().partition_leader_epoch.get();
                let latest = chunk
                    .epochs
                    .last()
                    .map(|(e, _)| *e)
                    .or_else(|| self.state.borrow().epochs.latest());
                if epoch >= 0 && latest.is_none_or(|latest| epoch > latest) {
                    chunk.epochs.push((epoch, view.base_offset()));
                }
                first_offset.get_or_insert(view.base_offset());
                chunk.next_offset = view.next_offset();
            }
        }
        chunk.members.push(member);
        chunk.records += pending.records;
        chunk.producers.extend(touched);
        chunk.ended.extend(ended);
        Ok(AppendInfo {
            first_offset: first_offset.expect("an append has at least one batch"),
            last_offset: Offset(chunk.next_offset.0 - 1),
            log_append_time,
            duplicate: false,
        })
    }

    /// Checks the idempotent producers' batches of `pending` against the log's state and what
    /// the chunk already staged, at the offsets they would get; returns the producers' new
    /// entries (applied to the chunk only once the batches are staged). A replica's batches keep
    /// their offsets and are applied unchecked.
    fn check_sequences(&self, chunk: &Chunk, pending: &Pending) -> Result<Checked, StorageError> {
        let state = self.state.borrow();
        let mut touched: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut ended: Vec<EndedTxn> = Vec::new();
        let mut next = chunk.next_offset;
        let mut index = 0;
        let single = pending.batches.len() == 1
            && BatchView::total_len(&pending.batches[0]).ok() == Some(pending.batches[0].len());
        for bytes in &pending.batches {
            let mut rest = &bytes[..];
            while let Ok((view, after)) = BatchView::parse_header(rest) {
                rest = after;
                let header = view.header();
                let base = if pending.options.assign_offsets {
                    next
                } else {
                    view.base_offset()
                };
                next = Offset(base.0 + header.last_offset_delta.get() as i64 + 1);
                let producer_id = header.producer_id.get();
                let epoch = header.producer_epoch.get();
                // A marker (COMMIT or ABORT), or a data batch with its sequences; anything
                // else (no producer id, no sequence) leaves the producers alone.
                let (marker, sequences) = if producer_id < 0 {
                    (None, None)
                } else if view.is_control() {
                    (producers::marker_of(&view), None)
                } else {
                    (None, producers::producer_of(header))
                };
                if marker.is_none() && sequences.is_none() {
                    index += 1;
                    continue;
                }
                let entry = touched.entry(producer_id).or_insert_with(|| {
                    chunk
                        .producers
                        .get(&producer_id)
                        .or_else(|| state.producers.get(producer_id))
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(epoch))
                });
                if let Some(commit) = marker {
                    // A transaction marker: it closes the producer's open transaction.
                    if pending.options.assign_offsets && epoch < entry.epoch {
                        return Err(StorageError::Sequence {
                            index,
                            source: producers::SequenceError::StaleEpoch {
                                producer_id,
                                epoch,
                                current: entry.epoch,
                            },
                        });
                    }
                    if let Some(first) = entry.end_txn(epoch) {
                        ended.push(EndedTxn {
                            producer_id,
                            first_offset: first,
                            marker_offset: base,
                            commit,
                        });
                    }
                    index += 1;
                    continue;
                }
                let (_, epoch, first_seq, last_seq) =
                    sequences.expect("a data batch with sequences");
                if pending.options.assign_offsets {
                    match entry.check(producer_id, epoch, first_seq, last_seq) {
                        Ok(Sequence::Next) => {}
                        Ok(Sequence::Duplicate(batch)) if single => {
                            return Ok(Checked::Duplicate(batch))
                        }
                        // A retry is one batch; a duplicate among others is out of order.
                        Ok(Sequence::Duplicate(_)) => {
                            return Err(StorageError::Sequence {
                                index,
                                source: producers::SequenceError::OutOfOrder {
                                    producer_id,
                                    expected: entry.next_seq(),
                                    got: first_seq,
                                },
                            })
                        }
                        Err(source) => return Err(StorageError::Sequence { index, source }),
                    }
                }
                entry.record(
                    epoch,
                    ProducerBatch {
                        first_seq,
                        last_seq,
                        first_offset: base,
                        last_offset: Offset(next.0 - 1),
                    },
                    header.max_timestamp.get(),
                    view.is_transactional(),
                );
                index += 1;
            }
        }
        Ok(Checked::Append(touched, ended))
    }

    /// Writes the chunk to the active segment and makes it visible. On failure the file is cut
    /// back, nothing becomes visible, and every append in the chunk gets the error.
    async fn commit(
        &self,
        chunk: &mut Chunk,
        results: &mut [Option<Result<AppendInfo, StorageError>>],
    ) -> Result<(), StorageError> {
        if chunk.buf.is_empty() {
            return Ok(());
        }
        let log = {
            let state = self.state.borrow();
            let active = state.active();
            assert_eq!(active.size_bytes, chunk.position, "one writer at a time");
            active.log.clone()
        };
        let buf = std::mem::take(&mut chunk.buf);
        self.count(|stats| stats.writes += 1);
        if let Err(e) = log.write_at(buf, chunk.position).await {
            if let Err(cut) = log.truncate(chunk.position).await {
                tracing::warn!(file = %log.path().display(), error = %cut, "cannot cut a failed write back; it stays invisible and is overwritten by the next append");
            }
            let e = StorageError::from(e);
            crate::throttled!(|count| {
                tracing::warn!(log = %self.dir.display(), error = %e, appends = chunk.members.len(), count, "append failed; the log is unchanged")
            });
            for member in chunk.members.drain(..) {
                results[member] = Some(Err(e.clone()));
            }
            chunk.producers.clear();
            chunk.ended.clear();
            chunk.epochs.clear();
            return Err(e);
        }
        let mut new_aborted = Vec::new();
        let mut new_epoch = false;
        let pending = {
            let mut state = self.state.borrow_mut();
            for (epoch, start) in chunk.epochs.drain(..) {
                new_epoch |= state.epochs.note(epoch, start);
            }
            let active = state.active_mut();
            for info in &chunk.batches {
                active.note_batch(info);
            }
            active.size_bytes = chunk
                .batches
                .last()
                .map_or(active.size_bytes, BatchInfo::end);
            active.next_offset = chunk.next_offset;
            active.first_append_ms.get_or_insert(self.now().0);
            let pending = (active.pending_index_bytes() >= INDEX_WRITE_BYTES)
                .then(|| active.take_pending_indexes());
            state.log_end = chunk.next_offset;
            state.unflushed_messages += chunk.records;
            for (producer_id, entry) in chunk.producers.drain() {
                state.producers.insert(producer_id, entry);
            }
            for txn in chunk.ended.drain(..).filter(|t| !t.commit) {
                let last_stable_offset = state
                    .producers
                    .first_open_txn()
                    .unwrap_or(state.log_end)
                    .min(state.log_end);
                let aborted = AbortedTxn {
                    producer_id: txn.producer_id,
                    first_offset: txn.first_offset,
                    last_offset: txn.marker_offset,
                    last_stable_offset,
                };
                state.aborted.insert(aborted.last_offset, aborted);
                new_aborted.push(aborted);
            }
            pending
        };
        if let Some(pending) = pending {
            pending.write().await;
        }
        if !new_aborted.is_empty() {
            self.append_txn_index(&new_aborted);
        }
        if new_epoch {
            // Once per leader change. Written after the batches: a crash between the two leaves
            // the new epoch unrecorded, and a follower asking about it is told where the older
            // one ends (its batches past that are cut and fetched again).
            if let Err(e) = self.write_epochs().await {
                tracing::warn!(log = %self.dir.display(), error = %e, "cannot write the leader-epoch checkpoint; rewritten with the next new epoch or truncation");
            }
        }
        chunk.position = self.state.borrow().active().size_bytes;
        chunk.batches.clear();
        chunk.members.clear();
        chunk.records = 0;
        Ok(())
    }

    fn flush_due(&self, now: TimestampMs) -> bool {
        let config = self.config.borrow();
        let state = self.state.borrow();
        state.recovery_point < state.log_end
            && (state.unflushed_messages >= config.flush_interval_messages
                || now.0.saturating_sub(state.last_flush_ms) >= config.flush_interval_ms)
    }

    /// fdatasyncs the active segment and advances the recovery point.
    pub async fn flush(&self) -> Result<(), StorageError> {
        // Index entries are not needed on disk for durability (recovery rebuilds them past the
        // recovery point): they go out in bulk, not with every flush.
        let (log, end) = {
            let state = self.state.borrow();
            (state.active().log.clone(), state.log_end)
        };
        let started = std::time::Instant::now();
        log.fdatasync().await?;
        let took = started.elapsed().as_micros() as u64;
        self.count(|stats| {
            stats.syncs += 1;
            stats.sync_micros += took;
        });
        let mut state = self.state.borrow_mut();
        state.recovery_point = state.recovery_point.max(end);
        state.unflushed_messages = 0;
        state.last_flush_ms = self.now().0;
        Ok(())
    }

    /// Flushes if `flush.ms` has passed with unflushed data: the broker calls this on a timer.
    pub async fn flush_if_due(&self) -> Result<(), StorageError> {
        if self.flush_due(self.now()) {
            let _guard = self.write_lock.lock().await;
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `base` (the log end, or a replica's next
    /// batch past a gap). Caller holds the write lock.
    async fn roll(&self, base: Offset) -> Result<(), StorageError> {
        let (base, pending, files) = {
            let mut state = self.state.borrow_mut();
            assert!(
                base >= state.log_end,
                "a new segment starts at or after the log end"
            );
            let active = state.active_mut();
            active.seal_in_memory();
            let files = (active.log.clone(), active.index_files.clone());
            (base, active.take_pending_indexes(), files)
        };
        pending.write().await;
        let started = std::time::Instant::now();
        files.0.fdatasync().await?;
        let took = started.elapsed().as_micros() as u64;
        self.count(|stats| {
            stats.syncs += 1;
            stats.sync_micros += took;
        });
        files.1.sync().await?;
        // The sealed segment's aborted transactions, durable before the next segment begins.
        let sealed = self.active_base();
        self.write_txn_index(sealed).await?;
        let interval = self.config.borrow().index_interval_bytes;
        let segment = Segment::create(&self.dir, base, interval, &self.faults).await?;
        // The producers' state as of the new segment's base: recovery scans from here.
        self.write_producer_snapshot(base).await?;
        io::sync_dir(&self.dir).await?;
        let place = super::super::loaded::acquire_place();
        let kept = {
            let mut state = self.state.borrow_mut();
            state.segments.insert(base, Some(Box::new(segment)));
            state.recovery_point = state.recovery_point.max(base);
            // The sealed segment stays loaded if the shard has a place for its file.
            let slot = state.segments.get_mut(&sealed).expect("the sealed segment");
            match (place, slot.as_deref()) {
                (Some(place), Some(segment)) => {
                    segment.log.hold(place);
                    true
                }
                _ => {
                    *slot = None;
                    false
                }
            }
        };
        if kept {
            self.touch(sealed);
        }
        Ok(())
    }

    /// Rolls the active segment now (if it holds anything).
    pub async fn force_roll(&self) -> Result<(), StorageError> {
        let _guard = self.write_lock.lock().await;
        if self.state.borrow().active().size_bytes > 0 {
            let end = self.log_end();
            self.roll(end).await?;
        }
        Ok(())
    }
}
