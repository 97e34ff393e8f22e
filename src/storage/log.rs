//! The partition log: the segment map, opening and recovery, checkpoints, lazy segment loading.
//! Appends are in `log/append.rs`, reads in `log/read.rs`, truncation and retention in
//! `log/retention.rs`, compaction in `cleaner.rs`. One `Log` lives on its owner shard; its
//! methods take `&self` and may run concurrently as tasks of that shard (no borrow is held across
//! an await).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::checkpoint::{self, Checkpoint};
use super::producers::Producers;
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
    /// The batch was a retry of an idempotent producer's batch already in the log: nothing was
    /// written and the offsets are the original's.
    pub duplicate: bool,
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
    /// Time those fdatasyncs took, in all (microseconds).
    pub sync_micros: u64,
    /// Compaction passes that cleaned something, the records they removed and the bytes they
    /// gave back.
    pub cleanings: u64,
    pub cleaned_records: u64,
    pub cleaned_bytes: u64,
}

impl LogStats {
    /// Adds `more`'s counts to these (a shard's or a node's sum).
    pub fn add(&mut self, more: &LogStats) {
        self.appends += more.appends;
        self.writes += more.writes;
        self.syncs += more.syncs;
        self.sync_micros += more.sync_micros;
        self.cleanings += more.cleanings;
        self.cleaned_records += more.cleaned_records;
        self.cleaned_bytes += more.cleaned_bytes;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
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
    /// Idempotent producers' sequences, up to the log end.
    pub(super) producers: Producers,
    /// Aborted transactions by the offset of their ABORT marker.
    pub(super) aborted: BTreeMap<Offset, super::producers::AbortedTxn>,
    /// Where each leader epoch's batches start (the leader-epoch checkpoint).
    pub(super) epochs: super::epochs::Epochs,
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

    pub(super) fn active_base(&self) -> Offset {
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
    /// Unique in the process: names the log's segments in the shard's loaded set.
    id: u64,
    dir: PathBuf,
    config: RefCell<LogConfig>,
    faults: io::Faults,
    /// The wall clock for `segment.ms`, `flush.ms`, LogAppendTime, retention and compaction.
    clock: Rc<dyn io::Clock>,
    pub(super) state: Rc<RefCell<State>>,
    write_lock: io::Lock,
    queue: RefCell<Vec<Pending>>,
    stats: std::cell::Cell<LogStats>,
}

mod append;
use append::Pending;
mod idempotence;
mod read;
mod retention;

impl Log {
    /// Opens (or creates) the log in `dir`, recovering what a crash left: only the segments at or
    /// after the recovery point are scanned; a torn or corrupt tail is cut at the last valid batch.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        faults: io::Faults,
    ) -> Result<Log, StorageError> {
        Log::open_with_clock(dir, config, faults, Rc::new(io::SystemClock)).await
    }

    /// `open`, with time read from `clock` (a test moves it instead of sleeping).
    pub async fn open_with_clock(
        dir: &Path,
        config: LogConfig,
        faults: io::Faults,
        clock: Rc<dyn io::Clock>,
    ) -> Result<Log, StorageError> {
        // A new partition's directory: nothing to read, recover or rebuild (see below).
        let fresh = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| io::with_path(e, dir))?;
        let saved = if fresh { None } else { checkpoint::read(dir) };
        // After a clean shutdown the checkpoint lists the segments: no directory listing.
        let swap_pending = !fresh && dir.join(super::cleaner::SWAP_MARKER).exists();
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
            None if fresh => Vec::new(),
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
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let log = Log {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            dir: dir.to_path_buf(),
            config: RefCell::new(config),
            faults,
            state: Rc::new(RefCell::new(State {
                segments,
                log_start: log_start_saved.max(first_base),
                log_end: first_base,
                recovery_point: first_base,
                unflushed_messages: 0,
                last_flush_ms: clock.wall().0,
                closed: false,
                first_dirty: saved
                    .as_ref()
                    .map_or(first_base, |c| c.cleaner_offset)
                    .max(first_base),
                producers: Producers::default(),
                aborted: BTreeMap::new(),
                epochs: Default::default(),
            })),
            clock,
            write_lock: io::Lock::default(),
            queue: RefCell::new(Vec::new()),
            stats: std::cell::Cell::new(LogStats::default()),
        };
        if fresh {
            // One empty segment whose files' names are durable, and no other file: the state
            // above is the whole truth. Neither checkpoint is written yet: without them the next
            // open recovers from the first segment and takes epoch 0 from the log start (the
            // first append at a new epoch writes the epochs; the broker checkpoints periodically
            // and at shutdown). Opening 10,000 new partitions this way makes one fsync each
            // instead of eight.
            return Ok(log);
        }
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
        log.rebuild_producers().await?;
        let (epochs, changed) = super::epochs::Epochs::load(dir, log.log_start(), log.log_end());
        log.state.borrow_mut().epochs = epochs;
        if changed {
            log.write_epochs().await?;
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
            if is_last {
                self.state
                    .borrow_mut()
                    .segments
                    .insert(*base, Some(Box::new(segment)));
                break;
            }
            // A closed segment stays loaded if the shard has a place for its file.
            if let Some(place) = super::loaded::acquire_place() {
                segment.log.hold(place);
                self.state
                    .borrow_mut()
                    .segments
                    .insert(*base, Some(Box::new(segment)));
                self.touch(*base);
            }
        }
        if let Some(first_cut) = cut_from {
            for base in &bases[first_cut..] {
                tracing::warn!(segment = %segment::path(&self.dir, *base, "log").display(), "recovery removed a segment after a corrupt one");
                self.remove_segment(*base)?;
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
    /// The log's wall clock now.
    pub fn now(&self) -> TimestampMs {
        self.clock.wall()
    }

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

    pub(super) fn count(&self, update: impl FnOnce(&mut LogStats)) {
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
                None => return Ok(()),
                Some(Some(_)) => {
                    let active = state.active_base() == base;
                    drop(state);
                    if !active {
                        self.touch(base);
                    }
                    return Ok(());
                }
                Some(None) => state.next_base(base),
            }
        };
        let interval = self.config.borrow().index_interval_bytes;
        // A closed segment (the active one is always loaded): its file takes one of the shard's
        // places for closed segments.
        let place = super::loaded::acquire_place().ok_or(StorageError::Busy {
            capacity: super::loaded::capacity(),
        })?;
        let segment = Segment::open(&self.dir, base, next_base, interval, &self.faults).await?;
        segment.log.hold(place);
        let loaded = match self.state.borrow_mut().segments.get_mut(&base) {
            Some(slot @ None) => {
                *slot = Some(Box::new(segment));
                true
            }
            Some(Some(_)) => true,
            None => false,
        };
        if loaded && self.active_base() != base {
            self.touch(base);
        }
        Ok(())
    }

    /// Counts a use of closed segment `base` in the shard's loaded set (which may unload the least
    /// recently used segments, of any log, over its bound; never this one, nor an active one).
    pub(super) fn touch(&self, base: Offset) {
        super::loaded::touch(self.id, base, &Rc::downgrade(&self.state));
    }

    /// Removes segment `base` from the map and unlinks its files.
    pub(super) fn remove_segment(&self, base: Offset) -> Result<(), StorageError> {
        let removed = self.state.borrow_mut().segments.remove(&base);
        super::loaded::forget(self.id, base);
        remove_segment_files(&self.dir, base, removed.flatten())
    }

    /// Segment `base` is the active one again (a truncation removed those after it).
    pub(super) fn untrack(&self, base: Offset) {
        super::loaded::forget(self.id, base);
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

    /// Rewrites the leader-epoch checkpoint from the state.
    pub(super) async fn write_epochs(&self) -> Result<(), StorageError> {
        let bytes = self.state.borrow().epochs.encode();
        let path = super::epochs::path(&self.dir);
        io::write_atomically(&path, bytes, &self.faults).await?;
        Ok(())
    }

    /// The newest leader epoch the log holds batches of.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.borrow().epochs.latest()
    }

    /// Where leader epoch `epoch` ends here: the largest epoch at or below it the log holds and
    /// the offset after its last batch (OffsetForLeaderEpoch); `None` if it holds none.
    pub fn epoch_end(&self, epoch: i32) -> Option<(i32, Offset)> {
        let state = self.state.borrow();
        state.epochs.end_of(epoch, state.log_end)
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
            let files = (active.log.clone(), active.index_files.clone());
            (files, active.take_pending_indexes())
        };
        pending.write().await;
        active.0.fdatasync().await?;
        active.1.sync().await?;
        let log_end = {
            let mut state = self.state.borrow_mut();
            state.recovery_point = state.log_end;
            state.log_end
        };
        // The active segment's aborted transactions were appended unsynced: make them durable
        // with the snapshot that says nothing after it needs scanning.
        self.write_txn_index(self.active_base()).await?;
        self.write_producer_snapshot(log_end).await?;
        self.write_checkpoint_listing(true).await
    }

    /// The log is being deleted: waits for in-flight appends and refuses more, as [`Log::close`]
    /// does, but writes nothing back. Its files are about to be unlinked, so their dirty pages
    /// are dropped with them instead of written out (a deleted topic's gigabytes were synced
    /// first before this).
    pub async fn discard(&self) {
        let _guard = self.write_lock.lock().await;
        self.state.borrow_mut().closed = true;
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
    for extension in ["log", "index", "timeindex", "txnindex"] {
        let path = segment::path(dir, base, extension);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::with_path(e, &path).into()),
        }
    }
    Ok(())
}
