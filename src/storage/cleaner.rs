//! Compaction (`cleanup.policy=compact`): keeps the newest record of each key in the closed
//! segments, with offsets and timestamps unchanged.
//!
//! A pass: (1) pick the cleanable segments — closed, older than `min.compaction.lag.ms`, and only
//! if the uncleaned share of them reaches `min.cleanable.dirty.ratio` or a dirty one is wholly
//! older than `max.compaction.lag.ms`; (2) map each key of the
//! dirty segments (those past what earlier passes cleaned) to its newest offset, segment by
//! segment while the map fits `log.cleaner.dedupe.buffer.size`; (3) rewrite every segment up to
//! the last one mapped into `<base>.<ext>.cleaned` files, dropping records whose key has a newer
//! mapped record and tombstones older than `delete.retention.ms`, re-encoding a batch (with its
//! own codec, span, producer fields) only where records were dropped, and keeping control and
//! transactional batches whole; (4) swap crash-safely: the marker file `cleaner.swap` listing the
//! bases is the commit point; then each `.cleaned` file is renamed over its original and the
//! marker removed. On open, [`finish_interrupted_swap`] completes a swap whose marker exists and
//! deletes `.cleaned` files of one that never committed — so a crash leaves the old set or the
//! new set, never a mix.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use super::log::Log;
use super::segment::{self, BatchInfo, Segment, EXTENSIONS};
use super::StorageError;
use crate::io;
use crate::model::records;
use crate::model::{BatchView, Offset, TimestampMs};

pub const SWAP_MARKER: &str = "cleaner.swap";
const CLEANED_SUFFIX: &str = ".cleaned";
/// Bytes of survivors buffered before a write to the cleaned file.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Estimated bytes of a key map entry besides the key (hash table slot, `Bytes`, offset).
const MAP_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Batches located per scan window while cleaning.
const SCAN_WINDOW_BATCHES: usize = 256;

/// Where a cleaning pass stops: `Done` for a real pass; the others simulate a crash at that step
/// (tests of the swap's crash safety).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanerStep {
    /// The `.cleaned` files are written and synced; no marker yet.
    WroteCleaned,
    /// The marker is durable; nothing renamed yet.
    WroteMarker,
    /// This many files were renamed into place.
    Renamed(usize),
    Done,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub segments_cleaned: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Completes or discards a swap that a crash interrupted (see the module doc).
pub fn finish_interrupted_swap(dir: &Path) -> Result<(), StorageError> {
    let marker = dir.join(SWAP_MARKER);
    let committed = match std::fs::read_to_string(&marker) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io::with_path(e, &marker).into()),
    };
    if let Some(text) = &committed {
        let bases: Option<Vec<Offset>> = text.lines().map(|l| l.parse().ok().map(Offset)).collect();
        let Some(bases) = bases else {
            return Err(StorageError::CorruptFile {
                path: marker,
                detail: "not a list of base offsets".into(),
            });
        };
        for base in bases {
            for extension in EXTENSIONS {
                let cleaned = segment::path_with_suffix(dir, base, extension, CLEANED_SUFFIX);
                if cleaned.exists() {
                    let target = segment::path(dir, base, extension);
                    std::fs::rename(&cleaned, &target).map_err(|e| io::with_path(e, &target))?;
                }
            }
        }
        tracing::warn!(dir = %dir.display(), "completed a compaction swap interrupted by a crash");
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io::with_path(e, dir))? {
        let path = entry.map_err(|e| io::with_path(e, dir))?.path();
        if path.to_str().is_some_and(|p| p.ends_with(CLEANED_SUFFIX)) {
            tracing::warn!(path = %path.display(), "discarding an uncommitted compaction output");
            std::fs::remove_file(&path).map_err(|e| io::with_path(e, &path))?;
        }
    }
    if committed.is_some() {
        std::fs::remove_file(&marker).map_err(|e| io::with_path(e, &marker))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io::with_path(e, dir))?;
    }
    Ok(())
}

thread_local! {
    static CLEANER: io::Budget = io::Budget::new(1);
}

/// This shard's turn to run a compaction pass.
async fn cleaner_turn() -> io::Grant {
    let cleaner = CLEANER.with(io::Budget::clone);
    cleaner.acquire(1).await
}

impl Log {
    /// One compaction pass (a no-op unless the policy includes `compact` and the dirty ratio is
    /// reached). Appends continue meanwhile; only the final swap holds the write lock.
    pub async fn clean(&self, now: TimestampMs) -> Result<CleanReport, StorageError> {
        let report = self.clean_until(now, CleanerStep::Done).await?;
        if report.segments_cleaned > 0 {
            self.count(|stats| {
                stats.cleanings += 1;
                stats.cleaned_records += report.records_removed;
                stats.cleaned_bytes += report.bytes_before.saturating_sub(report.bytes_after);
            });
        }
        Ok(report)
    }

    /// As [`Log::clean`], stopping at `stop` as if the process died there.
    pub async fn clean_until(
        &self,
        now: TimestampMs,
        stop: CleanerStep,
    ) -> Result<CleanReport, StorageError> {
        let config = self.config();
        if !config.cleanup_policy.compact {
            return Ok(CleanReport::default());
        }
        let Some(bases) = self.cleanable_segments(now, &config).await? else {
            return Ok(CleanReport::default());
        };
        // One pass at a time per shard (Kafka's one cleaner thread): a pass holds its output
        // file and up to the dedupe buffer in memory, whatever the number of compacted logs.
        let _turn = cleaner_turn().await;
        let limit_bytes = config.max_message_bytes.max(1 << 20) * 64;
        // Map the dirty segments (those past what earlier passes cleaned), as many as fit the
        // dedupe buffer; then clean everything up to the last mapped one. A record survives if
        // no newer record of its key was mapped.
        let first_dirty = self.first_dirty();
        let dirty_from = {
            let state = self.state.borrow();
            bases
                .iter()
                .position(|b| state.next_base_of(*b) > first_dirty)
                .unwrap_or(bases.len())
        };
        let mut newest: HashMap<Bytes, Offset> = HashMap::new();
        let mut map_bytes = 0usize;
        let mut mapped_end = dirty_from;
        for base in &bases[dirty_from..] {
            let mapped = self
                .for_each_batch(*base, limit_bytes, None, |view, decoded| {
                    if !view.is_control() {
                        for record in decoded {
                            if let Some(key) = &record.key {
                                if newest.insert(key.clone(), record.offset).is_none() {
                                    map_bytes += key.len() + MAP_ENTRY_OVERHEAD_BYTES;
                                }
                            }
                        }
                    }
                    Keep::Nothing
                })
                .await;
            match mapped {
                Err(StorageError::SegmentGone { .. }) => return Ok(CleanReport::default()),
                other => other?,
            };
            if map_bytes > config.cleaner_dedupe_buffer_bytes {
                break; // the next pass goes on from here
            }
            mapped_end += 1;
        }
        if mapped_end == dirty_from && dirty_from < bases.len() {
            tracing::warn!(log = %self.dir().display(), map_bytes, limit_bytes = config.cleaner_dedupe_buffer_bytes,
                "the keys of one segment do not fit log.cleaner.dedupe.buffer.size; not compacting");
            return Ok(CleanReport::default());
        }
        let bases = if dirty_from == bases.len() {
            bases
        } else {
            bases[..mapped_end].to_vec()
        };
        let tombstone_horizon = TimestampMs(now.0.saturating_sub(config.delete_retention_ms));
        let mut report = CleanReport::default();
        let dir = self.dir().to_path_buf();
        let mut sizes = Vec::with_capacity(bases.len());
        for base in &bases {
            let cleaned = Segment::create_with_suffix(
                &dir,
                *base,
                CLEANED_SUFFIX,
                config.index_interval_bytes,
                self.faults(),
            )
            .await?;
            let mut writer = CleanedWriter {
                segment: cleaned,
                buf: Vec::new(),
                pending: Vec::new(),
            };
            let written = async {
                let mut scanned = self
                    .for_each_batch(*base, limit_bytes, Some(&mut writer), |view, decoded| {
                        report.bytes_before += view.len() as u64;
                        if view.is_control() || view.is_transactional() {
                            return Keep::Whole;
                        }
                        let keep: Vec<_> = decoded
                            .iter()
                            .filter(|r| {
                                let newest_for_key = r
                                    .key
                                    .as_ref()
                                    .and_then(|k| newest.get(k))
                                    .is_none_or(|newest| *newest == r.offset);
                                let live =
                                    r.value.is_some() || view.max_timestamp() >= tombstone_horizon;
                                newest_for_key && live
                            })
                            .cloned()
                            .collect();
                        report.records_removed += (decoded.len() - keep.len()) as u64;
                        if keep.len() == decoded.len() {
                            Keep::Whole
                        } else if keep.is_empty() {
                            Keep::Nothing
                        } else {
                            Keep::Rebuilt(records::rebuild(
                                view,
                                &keep,
                                view.codec().expect("validated"),
                            ))
                        }
                    })
                    .await?;
                writer.finish().await?;
                sizes.push(std::mem::take(&mut scanned));
                Ok::<(), StorageError>(())
            }
            .await;
            if let Err(e) = written {
                remove_cleaned(&dir, &bases);
                if let StorageError::SegmentGone { .. } = e {
                    return Ok(CleanReport::default()); // retention won the race: nothing to clean
                }
                return Err(e);
            }
            report.bytes_after += writer.segment.size_bytes;
            report.segments_cleaned += 1;
        }
        if stop == CleanerStep::WroteCleaned {
            return Ok(report);
        }
        self.swap(&bases, &sizes, stop).await?;
        Ok(report)
    }

    /// Reads every batch of segment `base` in order, decoded, handing each to `visit`; what it
    /// keeps goes to `writer`, flushed as it fills, so memory stays bounded whatever the
    /// segment's size. Returns the bytes scanned (the segment's size).
    async fn for_each_batch(
        &self,
        base: Offset,
        limit_bytes: usize,
        mut writer: Option<&mut CleanedWriter>,
        mut visit: impl FnMut(&BatchView<'_>, &[records::Record]) -> Keep,
    ) -> Result<u64, StorageError> {
        let found = self
            .with_loaded(base, |segment| (segment.log.clone(), segment.size_bytes))
            .await?;
        let Some((file, size)) = found else {
            return Err(StorageError::SegmentGone { base });
        };
        let mut position = 0;
        while position < size {
            let mut window = Vec::new();
            let (next, stop) = segment::scan(&file, position, size, false, |info| {
                window.push(*info);
                window.len() < SCAN_WINDOW_BATCHES
            })
            .await?;
            // `scan` stops before the batch the visitor refused; that batch opens the next window.
            let next = if window.len() == SCAN_WINDOW_BATCHES {
                window.pop().map_or(next, |b| b.position)
            } else {
                next
            };
            if let segment::ScanStop::Invalid { position, reason } = stop {
                return Err(StorageError::CorruptFile {
                    path: file.path().to_path_buf(),
                    detail: format!("batch at {position}: {reason}"),
                });
            }
            for info in &window {
                let (bytes, decoded) = read_batch(&file, info, limit_bytes).await?;
                let (view, _) = BatchView::parse_header(&bytes).expect("validated");
                let keep = visit(&view, &decoded);
                if let Some(writer) = writer.as_deref_mut() {
                    match keep {
                        Keep::Whole => writer.push(view.bytes()),
                        Keep::Rebuilt(bytes) => writer.push(&bytes),
                        Keep::Nothing => {}
                    }
                    if writer.buf.len() >= WRITE_CHUNK_BYTES {
                        writer.flush().await?;
                    }
                }
                io::yield_if_needed().await;
            }
            position = next;
        }
        Ok(size)
    }

    /// The closed segments a pass may clean, if the dirty ratio calls for a pass.
    async fn cleanable_segments(
        &self,
        now: TimestampMs,
        config: &super::LogConfig,
    ) -> Result<Option<Vec<Offset>>, StorageError> {
        let active = self.active_base();
        let mut bases = Vec::new();
        let (mut total_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut overdue = false;
        let first_dirty = self.first_dirty();
        let overdue_before = now.0.saturating_sub(config.max_compaction_lag_ms);
        for base in self.segment_bases().into_iter().filter(|b| *b < active) {
            let found = self
                .with_loaded(base, |segment| {
                    (
                        segment.max_timestamp,
                        segment.size_bytes,
                        segment.next_offset,
                    )
                })
                .await?;
            let Some((max_timestamp, size, next_offset)) = found else {
                break; // deleted by retention meanwhile
            };
            if max_timestamp.0 > now.0.saturating_sub(config.min_compaction_lag_ms) {
                break;
            }
            total_bytes += size;
            if next_offset > first_dirty {
                dirty_bytes += size;
                // max.compaction.lag.ms: a dirty segment whose records are all older is due.
                overdue |= max_timestamp.0 < overdue_before;
            }
            bases.push(base);
        }
        let dirty_enough =
            (dirty_bytes as f64) >= config.min_cleanable_dirty_ratio * total_bytes as f64;
        if bases.is_empty() || total_bytes == 0 || !(dirty_enough || overdue) {
            return Ok(None);
        }
        Ok(Some(bases))
    }

    async fn swap(
        &self,
        bases: &[Offset],
        sizes: &[u64],
        stop: CleanerStep,
    ) -> Result<(), StorageError> {
        let _guard = self.write_lock().lock().await;
        let dir = self.dir().to_path_buf();
        // Retention or truncation may have changed the segments meanwhile: then drop this pass.
        let unchanged = bases.iter().zip(sizes).all(|(base, size)| {
            std::fs::metadata(segment::path(&dir, *base, "log")).is_ok_and(|m| m.len() == *size)
        });
        if !unchanged {
            remove_cleaned(&dir, bases);
            return Ok(());
        }
        let marker: String = bases.iter().map(|b| format!("{b}\n")).collect();
        io::write_atomically(&dir.join(SWAP_MARKER), marker.into_bytes(), self.faults()).await?;
        if stop == CleanerStep::WroteMarker {
            return Ok(());
        }
        let mut renamed = 0;
        for base in bases {
            for extension in EXTENSIONS {
                if stop == CleanerStep::Renamed(renamed) {
                    return Ok(());
                }
                let target = segment::path(&dir, *base, extension);
                let cleaned = segment::path_with_suffix(&dir, *base, extension, CLEANED_SUFFIX);
                std::fs::rename(&cleaned, &target).map_err(|e| io::with_path(e, &target))?;
                renamed += 1;
            }
        }
        io::sync_dir(&dir).await?;
        let marker = dir.join(SWAP_MARKER);
        std::fs::remove_file(&marker).map_err(|e| io::with_path(e, &marker))?;
        io::sync_dir(&dir).await?;
        {
            let mut state = self.state.borrow_mut();
            for base in bases {
                if let Some(slot) = state.segments.get_mut(base) {
                    *slot = None; // reopened lazily from the cleaned files
                }
            }
            let last = *bases.last().expect("a pass cleans at least one segment");
            let first_dirty = state.next_base_of(last);
            state.first_dirty = state.first_dirty.max(first_dirty);
        }
        self.checkpoint_locked().await
    }
}

/// Reads one batch whole and decodes its records (none for a control batch).
async fn read_batch(
    file: &io::File,
    info: &BatchInfo,
    limit_bytes: usize,
) -> Result<(Vec<u8>, Vec<records::Record>), StorageError> {
    let corrupt = |detail: String| StorageError::CorruptFile {
        path: file.path().to_path_buf(),
        detail: format!("batch at {}: {detail}", info.position),
    };
    let bytes = file
        .read_exact_at(info.position, info.bytes as usize)
        .await?;
    let (view, _) = BatchView::validate(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let decoded = if view.is_control() {
        Vec::new()
    } else {
        records::decode(&view, limit_bytes).map_err(|e| corrupt(e.to_string()))?
    };
    Ok((bytes, decoded))
}

/// What a cleaning visitor keeps of a batch.
enum Keep {
    Whole,
    Rebuilt(Bytes),
    Nothing,
}

struct CleanedWriter {
    segment: Segment,
    buf: Vec<u8>,
    pending: Vec<BatchInfo>,
}

impl CleanedWriter {
    fn push(&mut self, batch: &[u8]) {
        let (view, _) = BatchView::parse_header(batch).expect("a whole batch");
        let position = self.segment.size_bytes + self.buf.len() as u64;
        self.pending.push(BatchInfo {
            position,
            bytes: batch.len() as u32,
            base: view.base_offset(),
            last: view.last_offset(),
            max_timestamp: view.max_timestamp(),
            records: view.records_count(),
        });
        self.buf.extend_from_slice(batch);
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.segment
            .log
            .write_at(buf, self.segment.size_bytes)
            .await?;
        for info in std::mem::take(&mut self.pending) {
            self.segment.note_batch(&info);
            self.segment.size_bytes = info.end();
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), StorageError> {
        self.flush().await?;
        self.segment.write_indexes().await?;
        self.segment.seal().await
    }
}

fn remove_cleaned(dir: &Path, bases: &[Offset]) {
    for base in bases {
        for extension in EXTENSIONS {
            let _ = std::fs::remove_file(segment::path_with_suffix(
                dir,
                *base,
                extension,
                CLEANED_SUFFIX,
            ));
        }
    }
}
