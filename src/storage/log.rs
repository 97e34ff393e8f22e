//! The partition log: the segment map, batched appends with group commit, read ranges, recovery
//! on open, truncation, log start offset, retention. One `Log` lives on its owner shard; its
//! methods take `&self` and may run concurrently as tasks of that shard (no borrow is held across
//! an await).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::checkpoint::{self, Checkpoint};
use super::segment::{self, BatchInfo, ScanStop, Segment};
use super::{LogConfig, StorageError};
use crate::io;
use crate::model::batch::{self, BatchView};
use crate::model::{records, BatchError, Offset, TimestampMs, TimestampType};

/// How durable an append must be before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge once written; fdatasync when the flush policy (`flush.messages`,
    /// `flush.ms`) says so.
    #[default]
    Policy,
    /// fdatasync before acknowledging (acks=all on a single node). Concurrent appends share it.
    Sync,
}

#[derive(Clone, Copy, Debug)]
pub struct AppendOptions {
    pub durability: Durability,
    /// The leader assigns offsets; a replica keeps the leader's (and they must continue the log).
    pub assign_offsets: bool,
    /// Stamped into each batch's partition leader epoch when set.
    pub leader_epoch: Option<i32>,
}

impl Default for AppendOptions {
    fn default() -> Self {
        AppendOptions {
            durability: Durability::Policy,
            assign_offsets: true,
            leader_epoch: None,
        }
    }
}

/// What an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The broker's timestamp when the log uses LogAppendTime.
    pub log_append_time: Option<TimestampMs>,
}

/// A run of whole batches in a segment file: what a fetch sends with sendfile/splice. The file
/// handle keeps the bytes readable even if the segment is deleted meanwhile.
#[derive(Clone, Debug)]
pub struct ReadRange {
    pub file: Rc<io::File>,
    pub position: u64,
    pub bytes: u64,
    pub first_offset: Offset,
    /// The offset after the last batch of the range: where the next read starts.
    pub next_offset: Offset,
}

impl ReadRange {
    /// Copies the bytes of the range into memory: for tests, tools and replication checks, never
    /// for serving fetches.
    pub async fn read_bytes(&self) -> Result<Vec<u8>, StorageError> {
        Ok(self
            .file
            .read_exact_at(self.position, self.bytes as usize)
            .await?)
    }
}

/// Counters of the work a log did (for metrics, and to show group commit at work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Appends acknowledged.
    pub appends: u64,
    /// Writes to segment files that carried them.
    pub writes: u64,
    /// fdatasyncs of the active segment (flushes and rolls).
    pub syncs: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
}

/// Index entry bytes held in memory before they are written to the index files.
const INDEX_WRITE_BYTES: usize = 4096;

/// Closed segments kept loaded (three open files and their indexes in memory each).
pub const LOADED_CLOSED_SEGMENTS_MAX: usize = 16;

type Ticket = Rc<RefCell<Option<Result<AppendInfo, StorageError>>>>;

struct Pending {
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
}

pub(super) struct State {
    /// Segments by base offset; `None` until a closed segment is first needed (lazy loading keeps
    /// start-up independent of the number of segments).
    pub(super) segments: BTreeMap<Offset, Option<Box<Segment>>>,
    pub(super) log_start: Offset,
    pub(super) log_end: Offset,
    pub(super) recovery_point: Offset,
    unflushed_messages: u64,
    last_flush_ms: i64,
    closed: bool,
    /// Compaction has cleaned everything below this offset (checkpointed).
    pub(super) first_dirty: Offset,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .and_then(Option::as_ref)
            .expect("the active segment is always loaded")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .and_then(Option::as_mut)
            .expect("the active segment is always loaded")
    }

    fn active_base(&self) -> Offset {
        *self
            .segments
            .keys()
            .next_back()
            .expect("a log has an active segment")
    }

    fn floor_base(&self, offset: Offset) -> Offset {
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(base, _)| *base)
            .unwrap_or_else(|| *self.segments.keys().next().expect("a log has segments"))
    }

    /// Unloads closed segments (closing their files once no read range holds them) while more
    /// than [`LOADED_CLOSED_SEGMENTS_MAX`] are loaded, oldest first, sparing `keep`. They load
    /// again on their next use; this bounds open files for logs of thousands of segments.
    fn trim_loaded(&mut self, keep: Offset) {
        let active = self.active_base();
        let mut loaded = self
            .segments
            .iter()
            .filter(|(b, s)| s.is_some() && **b != active)
            .count();
        if loaded <= LOADED_CLOSED_SEGMENTS_MAX {
            return;
        }
        for (base, slot) in self.segments.iter_mut() {
            if loaded <= LOADED_CLOSED_SEGMENTS_MAX || *base == active {
                break;
            }
            if *base != keep && slot.is_some() {
                *slot = None;
                loaded -= 1;
            }
        }
    }

    /// The base of the segment after `base`, or the log end for the active segment.
    pub(super) fn next_base_of(&self, base: Offset) -> Offset {
        self.next_base(base).unwrap_or(self.log_end)
    }

    fn next_base(&self, base: Offset) -> Option<Offset> {
        self.segments
            .range(base.plus(1)..)
            .next()
            .map(|(base, _)| *base)
    }
}

pub struct Log {
    dir: PathBuf,
    config: RefCell<LogConfig>,
    faults: io::Faults,
    pub(super) state: RefCell<State>,
    write_lock: io::Lock,
    queue: RefCell<Vec<Pending>>,
    stats: std::cell::Cell<LogStats>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering what a crash left: only the segments at or
    /// after the recovery point are scanned; a torn or corrupt tail is cut at the last valid batch.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        faults: io::Faults,
    ) -> Result<Log, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io::with_path(e, dir))?;
        let saved = checkpoint::read(dir);
        // After a clean shutdown the checkpoint lists the segments: no directory listing.
        let swap_pending = dir.join(super::cleaner::SWAP_MARKER).exists();
        let listed = saved
            .as_ref()
            .and_then(|c| c.clean_segments.clone())
            .filter(|bases| {
                !swap_pending
                    && bases
                        .last()
                        .is_some_and(|b| segment::path(dir, *b, "log").exists())
            });
        let bases = match listed {
            Some(bases) => bases,
            None => {
                super::cleaner::finish_interrupted_swap(dir)?;
                list_segments(dir)?
            }
        };
        let mut segments: BTreeMap<Offset, Option<Box<Segment>>> =
            bases.iter().map(|base| (*base, None)).collect();
        let log_start_saved = saved.as_ref().map_or(Offset::ZERO, |c| c.log_start);
        if segments.is_empty() {
            let segment =
                Segment::create(dir, log_start_saved, config.index_interval_bytes, &faults).await?;
            io::sync_dir(dir).await?;
            segments.insert(log_start_saved, Some(Box::new(segment)));
        }
        let first_base = *segments.keys().next().expect("segments");
        let log = Log {
            dir: dir.to_path_buf(),
            config: RefCell::new(config),
            faults,
            state: RefCell::new(State {
                segments,
                log_start: log_start_saved.max(first_base),
                log_end: first_base,
                recovery_point: first_base,
                unflushed_messages: 0,
                last_flush_ms: TimestampMs::now().0,
                closed: false,
                first_dirty: saved
                    .as_ref()
                    .map_or(first_base, |c| c.cleaner_offset)
                    .max(first_base),
            }),
            write_lock: io::Lock::default(),
            queue: RefCell::new(Vec::new()),
            stats: std::cell::Cell::new(LogStats::default()),
        };
        let recovery_point = saved.as_ref().map_or(first_base, |c| c.recovery_point);
        log.recover(recovery_point).await?;
        // Segments wholly below the log start are left over from a deletion a crash cut short.
        let log_start = log.log_start();
        let leftovers = log
            .state
            .borrow()
            .segments
            .keys()
            .nth(1)
            .is_some_and(|next| *next <= log_start);
        if leftovers {
            log.delete_closed_segments(|_, _, next_base, _| next_base <= log_start)
                .await?;
        }
        Ok(log)
    }

    async fn recover(&self, recovery_point: Offset) -> Result<(), StorageError> {
        let (start_base, bases) = {
            let state = self.state.borrow();
            let start_base = state.floor_base(recovery_point);
            let bases: Vec<Offset> = state
                .segments
                .range(start_base..)
                .map(|(base, _)| *base)
                .collect();
            (start_base, bases)
        };
        let mut cut_from: Option<usize> = None;
        for (i, base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let interval = self.config.borrow().index_interval_bytes;
            let mut segment =
                Segment::open(&self.dir, *base, next_base, interval, &self.faults).await?;
            let from = if *base == start_base {
                segment.index.lookup(recovery_point)
            } else {
                0
            };
            let file_bytes = segment.log.size().await?;
            segment.size_bytes = file_bytes;
            let stop = segment.rescan_from(from, true).await?;
            let expected_next = next_base.unwrap_or(Offset(i64::MAX));
            if segment.next_offset > expected_next {
                return Err(StorageError::CorruptFile {
                    path: segment::path(&self.dir, *base, "log"),
                    detail: format!(
                        "batches run to {} past the next segment's base {expected_next}",
                        segment.next_offset
                    ),
                });
            }
            if let ScanStop::Invalid { position, reason } = stop {
                tracing::warn!(
                    segment = %segment::path(&self.dir, *base, "log").display(),
                    position,
                    cut_bytes = file_bytes - position,
                    reason = %reason,
                    "recovery cut a torn or corrupt tail"
                );
                segment.log.truncate(position).await?;
                cut_from = Some(i + 1);
            }
            if segment.size_bytes == 0 {
                segment.next_offset = *base;
            } else if next_base.is_some() && cut_from.is_none() {
                segment.next_offset = expected_next;
            }
            segment.write_indexes().await?;
            let is_last = cut_from.is_some() || next_base.is_none();
            if is_last {
                segment.sync().await?;
            } else {
                segment.seal().await?;
            }
            {
                let mut state = self.state.borrow_mut();
                state.segments.insert(*base, Some(Box::new(segment)));
                state.trim_loaded(*base);
            }
            if is_last {
                break;
            }
        }
        if let Some(first_cut) = cut_from {
            for base in &bases[first_cut..] {
                tracing::warn!(segment = %segment::path(&self.dir, *base, "log").display(), "recovery removed a segment after a corrupt one");
                let removed = self.state.borrow_mut().segments.remove(base);
                remove_segment_files(&self.dir, *base, removed.flatten())?;
            }
        }
        {
            let mut state = self.state.borrow_mut();
            let end = state.active().next_offset;
            state.log_end = end;
            state.recovery_point = end;
            state.log_start = state.log_start.min(end);
        }
        self.write_checkpoint().await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Applies a new config (topic configs change at run time); it takes effect at the next
    /// append, roll, retention or cleaning.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn log_start(&self) -> Offset {
        self.state.borrow().log_start
    }

    /// The offset the next appended record gets (Kafka's log end offset).
    pub fn log_end(&self) -> Offset {
        self.state.borrow().log_end
    }

    /// Everything below this offset is durable.
    pub fn recovery_point(&self) -> Offset {
        self.state.borrow().recovery_point
    }

    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    pub fn stats(&self) -> LogStats {
        self.stats.get()
    }

    fn count(&self, update: impl FnOnce(&mut LogStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Bytes of all segments (from the loaded segments, and the files of the others).
    pub fn size_bytes(&self) -> Result<u64, StorageError> {
        let state = self.state.borrow();
        let mut total = 0;
        for (base, slot) in &state.segments {
            total += match slot {
                Some(segment) => segment.size_bytes,
                None => {
                    let path = segment::path(&self.dir, *base, "log");
                    std::fs::metadata(&path)
                        .map_err(|e| io::with_path(e, &path))?
                        .len()
                }
            };
        }
        Ok(total)
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    pub fn segment_bases(&self) -> Vec<Offset> {
        self.state.borrow().segments.keys().copied().collect()
    }

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
        if let Some(result) = ticket.borrow_mut().take() {
            return result;
        }
        let group = std::mem::take(&mut *self.queue.borrow_mut());
        self.write_group(group).await;
        let result = ticket.borrow_mut().take();
        result.expect("the writer answers every append it takes")
    }

    async fn write_group(&self, group: Vec<Pending>) {
        if self.state.borrow().closed {
            for pending in group {
                *pending.ticket.borrow_mut() = Some(Err(StorageError::Closed));
            }
            return;
        }
        let now = TimestampMs::now();
        let mut results: Vec<Option<Result<AppendInfo, StorageError>>> =
            group.iter().map(|_| None).collect();
        let mut chunk = self.new_chunk();
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
                tracing::warn!(log = %self.dir.display(), error = %e, "fdatasync failed");
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
            .is_some_and(|first| now.0 - first > config.segment_ms);
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
        let mut first_offset = None;
        chunk.buf.reserve(pending.bytes);
        let restore = (chunk.buf.len(), chunk.batches.len(), chunk.next_offset);
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
                first_offset.get_or_insert(view.base_offset());
                chunk.next_offset = view.next_offset();
            }
        }
        chunk.members.push(member);
        chunk.records += pending.records;
        Ok(AppendInfo {
            first_offset: first_offset.expect("an append has at least one batch"),
            last_offset: Offset(chunk.next_offset.0 - 1),
            log_append_time,
        })
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
            tracing::warn!(log = %self.dir.display(), error = %e, appends = chunk.members.len(), "append failed; the log is unchanged");
            for member in chunk.members.drain(..) {
                results[member] = Some(Err(e.clone()));
            }
            return Err(e);
        }
        let pending = {
            let mut state = self.state.borrow_mut();
            let active = state.active_mut();
            for info in &chunk.batches {
                active.note_batch(info);
            }
            active.size_bytes = chunk
                .batches
                .last()
                .map_or(active.size_bytes, BatchInfo::end);
            active.next_offset = chunk.next_offset;
            active.first_append_ms.get_or_insert(TimestampMs::now().0);
            let pending = (active.pending_index_bytes() >= INDEX_WRITE_BYTES)
                .then(|| active.take_pending_indexes());
            state.log_end = chunk.next_offset;
            state.unflushed_messages += chunk.records;
            pending
        };
        if let Some(pending) = pending {
            pending.write().await;
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
        self.count(|stats| stats.syncs += 1);
        log.fdatasync().await?;
        let mut state = self.state.borrow_mut();
        state.recovery_point = state.recovery_point.max(end);
        state.unflushed_messages = 0;
        state.last_flush_ms = TimestampMs::now().0;
        Ok(())
    }

    /// Flushes if `flush.ms` has passed with unflushed data: the broker calls this on a timer.
    pub async fn flush_if_due(&self) -> Result<(), StorageError> {
        if self.flush_due(TimestampMs::now()) {
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
            let files = [
                active.log.clone(),
                active.index_file.clone(),
                active.time_index_file.clone(),
            ];
            (base, active.take_pending_indexes(), files)
        };
        pending.write().await;
        self.count(|stats| stats.syncs += 1);
        for file in &files {
            file.fdatasync().await?;
        }
        let interval = self.config.borrow().index_interval_bytes;
        let segment = Segment::create(&self.dir, base, interval, &self.faults).await?;
        io::sync_dir(&self.dir).await?;
        let mut state = self.state.borrow_mut();
        state.segments.insert(base, Some(Box::new(segment)));
        state.recovery_point = state.recovery_point.max(base);
        state.trim_loaded(base);
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

    /// Loads a closed segment's files and indexes on first use.
    /// Loads segment `base` if needed and reads from it; `None` when the segment is gone
    /// (retention or truncation deleted it meanwhile).
    pub(super) async fn with_loaded<T>(
        &self,
        base: Offset,
        read: impl FnOnce(&Segment) -> T,
    ) -> Result<Option<T>, StorageError> {
        self.ensure_loaded(base).await?;
        let state = self.state.borrow();
        // `ensure_loaded` spares the segment it loaded from trimming, and nothing awaited since.
        Ok(state
            .segments
            .get(&base)
            .and_then(|slot| slot.as_deref())
            .map(read))
    }

    pub(super) async fn ensure_loaded(&self, base: Offset) -> Result<(), StorageError> {
        let next_base = {
            let state = self.state.borrow();
            match state.segments.get(&base) {
                Some(Some(_)) | None => return Ok(()),
                Some(None) => state.next_base(base),
            }
        };
        let interval = self.config.borrow().index_interval_bytes;
        let segment = Segment::open(&self.dir, base, next_base, interval, &self.faults).await?;
        let mut state = self.state.borrow_mut();
        if let Some(slot @ None) = state.segments.get_mut(&base) {
            *slot = Some(Box::new(segment));
        }
        state.trim_loaded(base);
        Ok(())
    }

    /// Read ranges of whole batches from `offset`, stopping before any batch that reaches `upper`
    /// (the high watermark or last stable offset) and within `max_bytes`; with `min_one_batch`,
    /// a first batch larger than `max_bytes` is returned whole (KIP-74). A read that starts inside
    /// a batch returns that batch.
    pub async fn read(
        &self,
        offset: Offset,
        upper: Offset,
        max_bytes: u64,
        min_one_batch: bool,
    ) -> Result<Vec<ReadRange>, StorageError> {
        let (mut base, upper) = {
            let state = self.state.borrow();
            if offset < state.log_start || offset > state.log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end,
                });
            }
            (state.floor_base(offset), upper.min(state.log_end))
        };
        let mut ranges = Vec::new();
        let mut offset = offset;
        let mut budget = max_bytes;
        while offset < upper {
            self.ensure_loaded(base).await?;
            let (file, start_hint, size, segment_next, next_base, recent) = {
                let state = self.state.borrow();
                let Some(slot) = state.segments.get(&base) else {
                    break; // deleted meanwhile (retention, truncation)
                };
                let Some(segment) = slot else {
                    continue; // unloaded by another task's load meanwhile: load it again
                };
                (
                    segment.log.clone(),
                    segment.index.lookup(offset),
                    segment.size_bytes,
                    segment.next_offset,
                    state.next_base(base),
                    segment.recent_find(offset),
                )
            };
            let first = match recent {
                Some(found) => found,
                None => segment::find_batch(&file, start_hint, size, offset).await?,
            };
            let Some(first) = first else {
                // Nothing at or after `offset` here (compaction can leave a gap): next segment.
                match next_base {
                    Some(next) => {
                        base = next;
                        offset = offset.max(segment_next);
                        continue;
                    }
                    None => break,
                }
            };
            if first.next_offset() > upper {
                break;
            }
            if first.bytes as u64 > budget {
                if min_one_batch && ranges.is_empty() {
                    ranges.push(range_of(
                        &file,
                        first.position,
                        first.end(),
                        first.base,
                        first.next_offset(),
                    ));
                }
                break;
            }
            let byte_limit = first.position + budget;
            let (end, next_offset) = if upper >= segment_next && size <= byte_limit {
                (size, segment_next)
            } else if let Some(end) = self.recent_end(base, &first, byte_limit, upper) {
                end
            } else {
                let hint = {
                    let state = self.state.borrow();
                    match state.segments.get(&base) {
                        Some(Some(segment)) => segment
                            .index
                            .floor_position(byte_limit, upper)
                            .map(|(_, position)| position),
                        _ => None,
                    }
                };
                let from = hint.unwrap_or(first.position).max(first.position);
                let mut end = (first.end(), first.next_offset());
                segment::scan(&file, from, size, false, |info| {
                    if info.end() > byte_limit || info.next_offset() > upper {
                        return false;
                    }
                    end = (info.end(), info.next_offset());
                    true
                })
                .await?;
                end
            };
            ranges.push(range_of(
                &file,
                first.position,
                end,
                first.base,
                next_offset,
            ));
            budget -= end - first.position;
            match next_base {
                Some(next) if end == size && budget > 0 => {
                    base = next;
                    offset = segment_next;
                }
                _ => break,
            }
        }
        Ok(ranges)
    }

    fn recent_end(
        &self,
        base: Offset,
        first: &BatchInfo,
        byte_limit: u64,
        upper: Offset,
    ) -> Option<(u64, Offset)> {
        let state = self.state.borrow();
        let segment = state.segments.get(&base)?.as_deref()?;
        segment.recent_end(first, byte_limit, upper)
    }

    /// The first record at or after `timestamp` (Kafka's offsets-for-times): its offset and
    /// timestamp, or `None` when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, StorageError> {
        let (bases, log_start) = {
            let state = self.state.borrow();
            (
                state.segments.keys().copied().collect::<Vec<_>>(),
                state.log_start,
            )
        };
        for base in bases {
            let found = self
                .with_loaded(base, |segment| {
                    (segment.max_timestamp >= timestamp).then(|| {
                        let start = segment.time_index.lookup(timestamp).max(log_start);
                        (
                            segment.log.clone(),
                            segment.index.lookup(start),
                            segment.size_bytes,
                        )
                    })
                })
                .await?
                .flatten();
            let Some((file, from, size)) = found else {
                continue;
            };
            // The first batch whose max timestamp reaches `timestamp` holds such a record
            // (unless it lies below the log start): decode batches one at a time from there.
            let mut from = from;
            loop {
                let mut candidate = None;
                segment::scan(&file, from, size, false, |info| {
                    if info.max_timestamp >= timestamp && info.last >= log_start {
                        candidate = Some(*info);
                        return false;
                    }
                    true
                })
                .await?;
                let Some(info) = candidate else {
                    break;
                };
                let bytes = file
                    .read_exact_at(info.position, info.bytes as usize)
                    .await?;
                let (view, _) = BatchView::parse_header(&bytes)
                    .map_err(|source| StorageError::CorruptBatch { index: 0, source })?;
                let limit = self.config.borrow().max_message_bytes.max(1 << 20) * 64;
                let decoded =
                    records::decode(&view, limit).map_err(|e| StorageError::CorruptFile {
                        path: file.path().to_path_buf(),
                        detail: e.to_string(),
                    })?;
                if let Some(record) = decoded
                    .iter()
                    .find(|r| r.timestamp >= timestamp && r.offset >= log_start)
                {
                    return Ok(Some((record.offset, record.timestamp)));
                }
                from = info.end();
            }
        }
        Ok(None)
    }

    /// Removes every batch at or after `offset` (a follower's truncation after a leader change).
    /// Kafka cuts whole batches: the new log end is the base of the batch holding `offset`.
    /// Returns the new log end.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _guard = self.write_lock.lock().await;
        let (log_end, log_start, base) = {
            let state = self.state.borrow();
            (state.log_end, state.log_start, state.floor_base(offset))
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset <= log_start || offset < base {
            return self
                .reset_to(offset.max(Offset::ZERO))
                .await
                .map(|_| offset.max(Offset::ZERO));
        }
        let found = self
            .with_loaded(base, |segment| {
                (
                    segment.log.clone(),
                    segment.index.lookup(offset),
                    segment.size_bytes,
                )
            })
            .await?;
        let (file, from, size) = found.expect("the write lock keeps segments from being deleted");
        let cut = segment::find_batch(&file, from, size, offset).await?;
        if cut.is_some_and(|info| info.base < log_start) {
            // The batch holding `offset` starts below the log start: cutting it would leave the
            // end before the start, so empty the log and start it at `offset` (as Kafka does).
            return self.reset_to(offset).await.map(|_| offset);
        }
        let later: Vec<Offset> = self
            .state
            .borrow()
            .segments
            .range(base.plus(1)..)
            .map(|(b, _)| *b)
            .collect();
        for later_base in later.into_iter().rev() {
            let removed = self.state.borrow_mut().segments.remove(&later_base);
            remove_segment_files(&self.dir, later_base, removed.flatten())?;
        }
        let (position, new_end) = cut.map_or((size, offset), |info| (info.position, info.base));
        file.truncate(position).await?;
        let mut segment = self
            .state
            .borrow_mut()
            .segments
            .get_mut(&base)
            .and_then(Option::take)
            .expect("loaded");
        segment.size_bytes = position;
        segment.index.truncate_to_position(position);
        segment.time_index.truncate_to_offset(new_end);
        segment.reset_max_timestamp();
        let rescan_from = segment.index.lookup(new_end);
        let rescanned = segment.rescan_from(rescan_from, false).await;
        if position == 0 {
            segment.next_offset = base;
        } else {
            segment.next_offset = new_end;
        }
        let written = segment.write_indexes().await;
        let synced = segment.sync().await;
        self.state.borrow_mut().segments.insert(base, Some(segment));
        rescanned?;
        written?;
        synced?;
        {
            let mut state = self.state.borrow_mut();
            let end = state.active().next_offset;
            state.log_end = end;
            state.recovery_point = state.recovery_point.min(end);
            state.first_dirty = state.first_dirty.min(end);
        }
        self.write_checkpoint().await?;
        Ok(self.log_end())
    }

    /// Deletes everything and starts an empty log at `offset`. Caller holds the write lock.
    async fn reset_to(&self, offset: Offset) -> Result<(), StorageError> {
        let all: Vec<Offset> = self.state.borrow().segments.keys().copied().collect();
        for base in all {
            let removed = self.state.borrow_mut().segments.remove(&base);
            remove_segment_files(&self.dir, base, removed.flatten())?;
        }
        let interval = self.config.borrow().index_interval_bytes;
        let segment = Segment::create(&self.dir, offset, interval, &self.faults).await?;
        io::sync_dir(&self.dir).await?;
        {
            let mut state = self.state.borrow_mut();
            state.segments.insert(offset, Some(Box::new(segment)));
            state.log_start = offset;
            state.log_end = offset;
            state.recovery_point = offset;
            state.first_dirty = offset;
        }
        self.write_checkpoint().await
    }

    /// Moves the log start offset forward (DeleteRecords); whole segments below it are deleted.
    /// The caller bounds `offset` by the high watermark.
    pub async fn advance_log_start(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _guard = self.write_lock.lock().await;
        {
            let mut state = self.state.borrow_mut();
            if offset > state.log_end || offset < Offset::ZERO {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end,
                });
            }
            if offset <= state.log_start {
                return Ok(state.log_start);
            }
            state.log_start = offset;
        }
        self.write_checkpoint().await?;
        self.delete_closed_segments(|_, _, next_base, _| next_base <= offset)
            .await?;
        Ok(offset)
    }

    /// Deletes closed segments by `retention.ms` (their newest timestamp) and `retention.bytes`,
    /// oldest first; never the active segment. The log start offset moves to the first kept one.
    pub async fn enforce_retention(
        &self,
        now: TimestampMs,
    ) -> Result<RetentionReport, StorageError> {
        let _guard = self.write_lock.lock().await;
        let config = self.config.borrow().clone();
        if !config.cleanup_policy.delete || (config.retention_ms < 0 && config.retention_bytes < 0)
        {
            return Ok(RetentionReport::default());
        }
        let mut size_left = self.size_bytes()? as i64;
        self.delete_closed_segments(|max_timestamp, size, _, _| {
            let too_old = config.retention_ms >= 0
                && max_timestamp.0 >= 0
                && now.0 - max_timestamp.0 > config.retention_ms;
            let too_big =
                config.retention_bytes >= 0 && size_left - size as i64 >= config.retention_bytes;
            if too_old || too_big {
                size_left -= size as i64;
                return true;
            }
            false
        })
        .await
    }

    /// Deletes closed segments from the oldest while `doomed(max_timestamp, size, next_base,
    /// base)` holds. The log start moves past them in one checkpoint before any file goes (a
    /// crash in between leaves files below the log start, which the next open deletes). Caller
    /// holds the write lock.
    async fn delete_closed_segments(
        &self,
        mut doomed: impl FnMut(TimestampMs, u64, Offset, Offset) -> bool,
    ) -> Result<RetentionReport, StorageError> {
        let bases = self.segment_bases();
        let mut condemned = Vec::new();
        for pair in bases.windows(2) {
            let (base, next_base) = (pair[0], pair[1]);
            let found = self
                .with_loaded(base, |segment| (segment.max_timestamp, segment.size_bytes))
                .await?;
            let (max_timestamp, size) =
                found.expect("the write lock keeps segments from being deleted");
            if !doomed(max_timestamp, size, next_base, base) {
                break;
            }
            condemned.push((base, next_base, size));
        }
        let mut report = RetentionReport::default();
        let Some(&(_, new_start, _)) = condemned.last() else {
            return Ok(report);
        };
        {
            let mut state = self.state.borrow_mut();
            state.log_start = state.log_start.max(new_start);
        }
        self.write_checkpoint().await?;
        for (base, _, size) in condemned {
            let removed = self.state.borrow_mut().segments.remove(&base);
            remove_segment_files(&self.dir, base, removed.flatten())?;
            report.deleted_segments += 1;
            report.deleted_bytes += size;
        }
        Ok(report)
    }

    async fn write_checkpoint(&self) -> Result<(), StorageError> {
        self.write_checkpoint_listing(false).await
    }

    /// Writes the checkpoint; with `clean`, it lists the segments (only a clean shutdown may).
    async fn write_checkpoint_listing(&self, clean: bool) -> Result<(), StorageError> {
        let saved = {
            let state = self.state.borrow();
            Checkpoint {
                recovery_point: state.recovery_point,
                log_start: state.log_start,
                cleaner_offset: state.first_dirty,
                clean_segments: clean.then(|| state.segments.keys().copied().collect()),
            }
        };
        checkpoint::write(&self.dir, &saved, &self.faults).await
    }

    /// Writes the checkpoint when the caller already holds the write lock.
    pub(super) async fn checkpoint_locked(&self) -> Result<(), StorageError> {
        self.write_checkpoint().await
    }

    /// Writes the recovery-point checkpoint (the broker calls this periodically).
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        let _guard = self.write_lock.lock().await;
        self.write_checkpoint().await
    }

    /// A clean shutdown: waits for in-flight appends, flushes, and writes the checkpoint so the
    /// next open scans nothing. Appends after this fail with [`StorageError::Closed`].
    pub async fn close(&self) -> Result<(), StorageError> {
        let _guard = self.write_lock.lock().await;
        self.state.borrow_mut().closed = true;
        let (active, pending) = {
            let mut state = self.state.borrow_mut();
            let active = state.active_mut();
            let files = [
                active.log.clone(),
                active.index_file.clone(),
                active.time_index_file.clone(),
            ];
            (files, active.take_pending_indexes())
        };
        pending.write().await;
        for file in &active {
            file.fdatasync().await?;
        }
        {
            let mut state = self.state.borrow_mut();
            state.recovery_point = state.log_end;
        }
        self.write_checkpoint_listing(true).await
    }

    pub(super) fn faults(&self) -> &io::Faults {
        &self.faults
    }

    pub(super) fn write_lock(&self) -> &io::Lock {
        &self.write_lock
    }

    pub(super) fn first_dirty(&self) -> Offset {
        self.state.borrow().first_dirty
    }

    pub(super) fn active_base(&self) -> Offset {
        self.state.borrow().active_base()
    }
}

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

fn range_of(
    file: &Rc<io::File>,
    start: u64,
    end: u64,
    first_offset: Offset,
    next_offset: Offset,
) -> ReadRange {
    ReadRange {
        file: file.clone(),
        position: start,
        bytes: end - start,
        first_offset,
        next_offset,
    }
}

/// The base offsets of the `.log` files in `dir`; removes index files left without their log
/// (a deletion cut short by a crash).
fn list_segments(dir: &Path) -> Result<Vec<Offset>, StorageError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io::with_path(e, dir))? {
        let entry = entry.map_err(|e| io::with_path(e, dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = segment::parse_file_name(name, "log") {
            logs.push(base);
        } else if segment::parse_file_name(name, "index").is_some()
            || segment::parse_file_name(name, "timeindex").is_some()
        {
            indexes.push(name.to_string());
        }
    }
    logs.sort();
    for name in indexes {
        let base = segment::parse_file_name(&name, "index")
            .or_else(|| segment::parse_file_name(&name, "timeindex"));
        if base.is_some_and(|base| logs.binary_search(&base).is_err()) {
            let path = dir.join(&name);
            tracing::warn!(path = %path.display(), "removing an index without its log");
            std::fs::remove_file(&path).map_err(|e| io::with_path(e, &path))?;
        }
    }
    Ok(logs)
}

/// Unlinks a segment's files (the log first, so a crash leaves at most orphan indexes, which the
/// next open removes). Open handles keep serving reads.
pub(super) fn remove_segment_files(
    dir: &Path,
    base: Offset,
    _segment: Option<Box<Segment>>,
) -> Result<(), StorageError> {
    for extension in ["log", "index", "timeindex"] {
        let path = segment::path(dir, base, extension);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::with_path(e, &path).into()),
        }
    }
    Ok(())
}
