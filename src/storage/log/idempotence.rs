//! Idempotent producers' state: rebuilt on open from the newest snapshot at or below the log end
//! and the batch headers after it; snapshots written when a segment rolls and on a clean close.

use super::*;
use crate::storage::producers::{self, AbortedTxn, Producers};

/// Snapshots kept: the newest two (the older one covers a crash while the newer is written).
const SNAPSHOTS_KEPT: usize = 2;

impl Log {
    /// Snapshot offsets in the directory, oldest first.
    fn snapshot_offsets(&self) -> Vec<Offset> {
        let mut offsets: Vec<Offset> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                segment::parse_file_name(name.to_str()?, "snapshot")
            })
            .collect();
        offsets.sort();
        offsets
    }

    /// Rebuilds the producers' state and the aborted transactions up to the log end.
    pub(super) async fn rebuild_producers(&self) -> Result<(), StorageError> {
        let log_end = self.log_end();
        let mut found: Option<(Offset, Producers)> = None;
        for offset in self.snapshot_offsets().into_iter().rev() {
            let path = segment::path(&self.dir, offset, "snapshot");
            if offset > log_end {
                // Written before a truncation: it describes batches that are gone.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if found.is_some() {
                continue;
            }
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| Producers::decode(&bytes));
            match decoded {
                Ok((at, producers)) if at == offset => found = Some((at, producers)),
                Ok((at, _)) => {
                    tracing::warn!(path = %path.display(), %at, "snapshot names another offset; skipped")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable producer snapshot; skipped")
                }
            }
        }
        let log_start = self.log_start();
        let (from, mut producers) = found.unwrap_or_else(|| (log_start, Producers::default()));
        // Aborted transactions before `from` come from the index files; after it, from the scan.
        let mut aborted: BTreeMap<Offset, AbortedTxn> = self
            .txn_index_files()
            .into_iter()
            .flat_map(|(_, path)| AbortedTxn::decode_all(&std::fs::read(path).unwrap_or_default()))
            .filter(|t| t.last_offset < from && t.last_offset >= log_start)
            .map(|t| (t.last_offset, t))
            .collect();
        let bases: Vec<Offset> = {
            let state = self.state.borrow();
            let first = state.floor_base(from);
            state.segments.range(first..).map(|(b, _)| *b).collect()
        };
        let mut scanned = 0u64;
        for base in bases {
            let loaded = self
                .with_loaded(base, |s| {
                    let start = if base <= from {
                        s.index.lookup(from)
                    } else {
                        0
                    };
                    (s.log.clone(), start, s.size_bytes)
                })
                .await;
            let (file, start, size) = match loaded {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                // The log opens as it did before; reads of that segment report the error.
                Err(e) => {
                    tracing::warn!(log = %self.dir.display(), %base, error = %e, "producer state: a segment could not be scanned");
                    continue;
                }
            };
            // Data batches are applied from their headers as the scan passes them; the scan
            // stops at each control batch, which is read whole for its marker, then goes on.
            let mut position = start;
            loop {
                let mut control: Option<BatchInfo> = None;
                let scan = segment::scan_headers(&file, position, size, false, |info, header| {
                    if info.base < from || header.producer_id.get() < 0 {
                        return true;
                    }
                    if header.attributes.get() & 0x20 != 0 {
                        control = Some(*info);
                        return false;
                    }
                    producers.apply(header, None);
                    scanned += 1;
                    true
                });
                if let Err(e) = scan.await {
                    tracing::warn!(log = %self.dir.display(), %base, error = %e, "producer state: a segment could not be scanned");
                    break;
                }
                let Some(info) = control else {
                    break;
                };
                position = info.end();
                scanned += 1;
                let bytes = file.read_at(info.position, info.bytes as usize).await?;
                let Ok((view, _)) = BatchView::validate(&bytes) else {
                    continue;
                };
                let marker = producers::marker_of(&view);
                let Some((producer_id, first_offset, commit)) =
                    producers.apply(view.header(), marker)
                else {
                    continue;
                };
                if !commit {
                    let last_stable_offset = producers
                        .first_open_txn()
                        .unwrap_or(info.next_offset())
                        .min(info.next_offset());
                    aborted.insert(
                        info.base,
                        AbortedTxn {
                            producer_id,
                            first_offset,
                            last_offset: info.base,
                            last_stable_offset,
                        },
                    );
                }
            }
        }
        tracing::debug!(log = %self.dir.display(), %from, scanned, producers = producers.len(), aborted = aborted.len(), "producer state rebuilt");
        {
            let mut state = self.state.borrow_mut();
            state.producers = producers;
            state.aborted = aborted;
        }
        // Index files past `from` now say exactly what memory does (a truncation may have cut
        // transactions they listed).
        let floor = self.state.borrow().floor_base(from);
        for (base, _) in self.txn_index_files() {
            if base >= floor {
                self.write_txn_index(base).await?;
            }
        }
        let active = self.active_base();
        if active >= floor {
            self.write_txn_index(active).await?;
        }
        Ok(())
    }

    /// `.txnindex` files by segment base.
    fn txn_index_files(&self) -> Vec<(Offset, PathBuf)> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let base = segment::parse_file_name(name.to_str()?, "txnindex")?;
                Some((base, entry.path()))
            })
            .collect()
    }

    /// Rewrites the `.txnindex` of the segment at `base` from memory (removed when empty).
    pub(super) async fn write_txn_index(&self, base: Offset) -> Result<(), StorageError> {
        let bytes = {
            let state = self.state.borrow();
            let end = state.next_base(base).unwrap_or(Offset(i64::MAX));
            let mut bytes = Vec::new();
            for txn in state.aborted.range(base..end).map(|(_, t)| t) {
                txn.encode(&mut bytes);
            }
            bytes
        };
        let path = segment::path(&self.dir, base, "txnindex");
        if bytes.is_empty() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::with_path(e, &path).into()),
            }
            return Ok(());
        }
        io::write_atomically(&path, bytes, &self.faults).await?;
        Ok(())
    }

    /// Appends aborted transactions to the active segment's `.txnindex`. Not synced here: the
    /// roll rewrites and syncs it, and recovery re-derives the active segment's from its markers.
    /// A plain append (rare: one per aborted transaction), like the other metadata syscalls.
    pub(super) fn append_txn_index(&self, aborted: &[AbortedTxn]) {
        use std::io::Write;
        let path = segment::path(&self.dir, self.active_base(), "txnindex");
        let mut bytes = Vec::with_capacity(aborted.len() * producers::ABORTED_TXN_BYTES);
        for txn in aborted {
            txn.encode(&mut bytes);
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot append to the aborted-transaction index; recovery rebuilds it");
        }
    }

    /// The last stable offset: below it every transaction is decided (read_committed reads up
    /// to here).
    pub fn last_stable_offset(&self) -> Offset {
        let state = self.state.borrow();
        state
            .producers
            .first_open_txn()
            .map_or(state.log_end, |first| first.min(state.log_end))
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must report: (producer
    /// id, first offset) of each whose marker is at or after `from` and which began before `to`.
    pub fn aborted_transactions(&self, from: Offset, to: Offset) -> Vec<(i64, Offset)> {
        let state = self.state.borrow();
        state
            .aborted
            .range(from..)
            .map(|(_, t)| t)
            .filter(|t| t.first_offset < to)
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    /// Writes the producers' state as of `offset` (which must be the log end now) and removes all
    /// but the newest snapshots.
    pub(super) async fn write_producer_snapshot(&self, offset: Offset) -> Result<(), StorageError> {
        // Written even when empty: a log with a snapshot at its end opens without a scan.
        let bytes = self.state.borrow().producers.encode(offset);
        let path = segment::path(&self.dir, offset, "snapshot");
        io::write_atomically(&path, bytes, &self.faults).await?;
        let offsets = self.snapshot_offsets();
        for old in &offsets[..offsets.len().saturating_sub(SNAPSHOTS_KEPT)] {
            let _ = std::fs::remove_file(segment::path(&self.dir, *old, "snapshot"));
        }
        Ok(())
    }

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`).
    pub fn expire_producers(&self, now: TimestampMs, expiration_ms: i64) -> usize {
        self.state
            .borrow_mut()
            .producers
            .expire(now.0, expiration_ms)
    }

    /// Every producer this partition remembers, by id.
    pub fn producers(&self) -> Vec<(i64, crate::storage::ProducerEntry)> {
        let state = self.state.borrow();
        let mut all: Vec<_> = state
            .producers
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The state of one producer.
    pub fn producer(&self, producer_id: i64) -> Option<crate::storage::ProducerEntry> {
        self.state.borrow().producers.get(producer_id).cloned()
    }
}
