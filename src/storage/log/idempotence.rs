//! Idempotent producers' state: rebuilt on open from the newest snapshot at or below the log end
//! and the batch headers after it; snapshots written when a segment rolls and on a clean close.

use super::*;
use crate::storage::producers::Producers;

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

    /// Rebuilds the producers' state up to the log end.
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
        let (from, mut producers) =
            found.unwrap_or_else(|| (self.log_start(), Producers::default()));
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
            let scan = segment::scan_headers(&file, start, size, false, |info, header| {
                if info.base >= from {
                    producers.apply(header);
                    scanned += 1;
                }
                true
            });
            if let Err(e) = scan.await {
                tracing::warn!(log = %self.dir.display(), %base, error = %e, "producer state: a segment could not be scanned");
            }
        }
        tracing::debug!(log = %self.dir.display(), %from, scanned, producers = producers.entries.len(), "producer state rebuilt");
        self.state.borrow_mut().producers = producers;
        Ok(())
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
            .entries
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The state of one producer.
    pub fn producer(&self, producer_id: i64) -> Option<crate::storage::ProducerEntry> {
        self.state
            .borrow()
            .producers
            .entries
            .get(&producer_id)
            .cloned()
    }
}
