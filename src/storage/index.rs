//! The sparse offset and time indexes of a segment, in Kafka's formats (see FORMAT.md). Entries are
//! kept in memory for lookups and appended to their files; a file that fails its checks on load is
//! rebuilt from the log by the caller.

use zerocopy::byteorder::big_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::model::{Offset, TimestampMs};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// `.index` entry: the last offset of a batch (relative to the segment base) and the batch's
/// byte position in the `.log` file.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct OffsetEntry {
    pub relative_offset: U32,
    pub position: U32,
}

/// `.timeindex` entry: the largest timestamp so far in the segment and the (relative) offset of the
/// record that carries it.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct TimeEntry {
    pub timestamp: I64,
    pub relative_offset: U32,
}

const _: () = assert!(std::mem::size_of::<OffsetEntry>() == OFFSET_ENTRY_BYTES);
const _: () = assert!(std::mem::size_of::<TimeEntry>() == TIME_ENTRY_BYTES);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("index entry {entry} is out of order or past the end of the log")]
pub struct IndexCorrupt {
    pub entry: usize,
}

/// The offset index of one segment.
#[derive(Clone, Debug)]
pub struct OffsetIndex {
    base: Offset,
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new(base: Offset) -> OffsetIndex {
        OffsetIndex {
            base,
            entries: Vec::new(),
        }
    }

    /// Parses an index file. A partial trailing entry is dropped (a torn write); entries out of
    /// order or pointing past `log_bytes` are corruption.
    pub fn parse(base: Offset, bytes: &[u8], log_bytes: u64) -> Result<OffsetIndex, IndexCorrupt> {
        let whole = bytes.len() - bytes.len() % OFFSET_ENTRY_BYTES;
        let entries = <[OffsetEntry]>::ref_from_bytes(&bytes[..whole]).expect("whole entries");
        let mut index = OffsetIndex::new(base);
        for (i, entry) in entries.iter().enumerate() {
            let in_order = index.entries.last().is_none_or(|last| {
                entry.relative_offset.get() > last.relative_offset.get()
                    && entry.position.get() > last.position.get()
            });
            if !in_order || entry.position.get() as u64 >= log_bytes {
                return Err(IndexCorrupt { entry: i });
            }
            index.entries.push(*entry);
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry.
    pub fn push(&mut self, last_offset: Offset, position: u64) {
        let entry = OffsetEntry {
            relative_offset: U32::new(self.relative(last_offset)),
            position: U32::new(u32::try_from(position).expect("segment positions fit 32 bits")),
        };
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset.get() > last.relative_offset.get()
                    && entry.position.get() > last.position.get()
            );
        }
        self.entries.push(entry);
    }

    fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset.0 - self.base.0).expect("relative offsets fit 32 bits")
    }

    /// The position to start scanning from for `offset`: that of the last entry whose offset is
    /// below `offset` (its batch ends before the target), or 0.
    pub fn lookup(&self, offset: Offset) -> u64 {
        if offset <= self.base {
            return 0;
        }
        let relative = (offset.0 - self.base.0).min(u32::MAX as i64) as u32;
        let below = self
            .entries
            .partition_point(|e| e.relative_offset.get() < relative);
        if below == 0 {
            0
        } else {
            self.entries[below - 1].position.get() as u64
        }
    }

    /// The last entry at or before `position` whose batch ends below `upper`: a known batch start
    /// from which a forward scan reaches the end of a read.
    pub fn floor_position(&self, position: u64, upper: Offset) -> Option<(Offset, u64)> {
        let at_or_before = self
            .entries
            .partition_point(|e| (e.position.get() as u64) <= position);
        self.entries[..at_or_before]
            .iter()
            .rev()
            .map(|e| {
                (
                    self.base.plus(e.relative_offset.get() as i64),
                    e.position.get() as u64,
                )
            })
            .find(|(last_offset, _)| *last_offset < upper)
    }

    /// Drops entries at or after `position` (truncation).
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|e| (e.position.get() as u64) < position);
        self.entries.truncate(keep);
    }

    pub fn file_bytes(&self) -> u64 {
        (self.entries.len() * OFFSET_ENTRY_BYTES) as u64
    }

    /// The bytes of the entries from the `from`-th on.
    pub fn bytes_from(&self, from: usize) -> Vec<u8> {
        self.entries[from.min(self.entries.len())..]
            .as_bytes()
            .to_vec()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.entries.as_slice().as_bytes().to_vec()
    }
}

/// The time index of one segment.
#[derive(Clone, Debug)]
pub struct TimeIndex {
    base: Offset,
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new(base: Offset) -> TimeIndex {
        TimeIndex {
            base,
            entries: Vec::new(),
        }
    }

    /// Parses a time index file; timestamps and offsets must not go backwards.
    pub fn parse(base: Offset, bytes: &[u8]) -> Result<TimeIndex, IndexCorrupt> {
        let whole = bytes.len() - bytes.len() % TIME_ENTRY_BYTES;
        let entries = <[TimeEntry]>::ref_from_bytes(&bytes[..whole]).expect("whole entries");
        let mut index = TimeIndex::new(base);
        for (i, entry) in entries.iter().enumerate() {
            let in_order = index.entries.last().is_none_or(|last| {
                entry.timestamp.get() > last.timestamp.get()
                    && entry.relative_offset.get() >= last.relative_offset.get()
            });
            if !in_order {
                return Err(IndexCorrupt { entry: i });
            }
            index.entries.push(*entry);
        }
        Ok(index)
    }

    pub fn last(&self) -> Option<(TimestampMs, Offset)> {
        self.entries.last().map(|e| {
            (
                TimestampMs(e.timestamp.get()),
                self.base.plus(e.relative_offset.get() as i64),
            )
        })
    }

    /// Adds an entry if `timestamp` is newer than the last one.
    pub fn maybe_push(&mut self, timestamp: TimestampMs, offset: Offset) {
        if self.last().is_some_and(|(last, _)| timestamp <= last) {
            return;
        }
        let entry = TimeEntry {
            timestamp: I64::new(timestamp.0),
            relative_offset: U32::new(
                u32::try_from(offset.0 - self.base.0).expect("relative offsets fit 32 bits"),
            ),
        };
        self.entries.push(entry);
    }

    /// The offset to start searching from for the first record with a timestamp >= `timestamp`:
    /// that of the last entry whose timestamp is below it, or the segment base.
    pub fn lookup(&self, timestamp: TimestampMs) -> Offset {
        let below = self
            .entries
            .partition_point(|e| e.timestamp.get() < timestamp.0);
        if below == 0 {
            self.base
        } else {
            self.base
                .plus(self.entries[below - 1].relative_offset.get() as i64)
        }
    }

    /// Drops entries whose offset is at or after `offset` (truncation).
    pub fn truncate_to_offset(&mut self, offset: Offset) {
        let keep = self
            .entries
            .partition_point(|e| self.base.plus(e.relative_offset.get() as i64) < offset);
        self.entries.truncate(keep);
    }

    pub fn file_bytes(&self) -> u64 {
        (self.entries.len() * TIME_ENTRY_BYTES) as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of the entries from the `from`-th on.
    pub fn bytes_from(&self, from: usize) -> Vec<u8> {
        self.entries[from.min(self.entries.len())..]
            .as_bytes()
            .to_vec()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.entries.as_slice().as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_round_trips_and_finds_floor_entries() {
        let mut index = OffsetIndex::new(Offset(100));
        let mut file = Vec::new();
        for (last, position) in [(104, 4200), (120, 8400), (131, 12_600)] {
            index.push(Offset(last), position);
        }
        file.extend_from_slice(&index.bytes_from(0));
        let parsed = OffsetIndex::parse(Offset(100), &file, 20_000).unwrap();
        assert_eq!(parsed.to_bytes(), file);
        assert_eq!(parsed.lookup(Offset(100)), 0);
        assert_eq!(
            parsed.lookup(Offset(104)),
            0,
            "the batch ending at 104 holds 104"
        );
        assert_eq!(parsed.lookup(Offset(105)), 4200);
        assert_eq!(parsed.lookup(Offset(500)), 12_600);
        assert_eq!(
            parsed.floor_position(9000, Offset(200)),
            Some((Offset(120), 8400))
        );
        assert_eq!(
            parsed.floor_position(9000, Offset(110)),
            Some((Offset(104), 4200))
        );
        assert_eq!(parsed.floor_position(100, Offset(200)), None);
    }

    #[test]
    fn torn_and_corrupt_index_files_are_told_apart() {
        let mut index = OffsetIndex::new(Offset(0));
        let mut file = Vec::new();
        index.push(Offset(5), 100);
        index.push(Offset(9), 200);
        file.extend_from_slice(&index.bytes_from(0));
        let mut torn = file.clone();
        torn.extend_from_slice(&[1, 2, 3]);
        assert_eq!(OffsetIndex::parse(Offset(0), &torn, 1000).unwrap().len(), 2);
        let mut zeroed = file.clone();
        zeroed.extend_from_slice(&[0; 8]);
        assert_eq!(
            OffsetIndex::parse(Offset(0), &zeroed, 1000).unwrap_err(),
            IndexCorrupt { entry: 2 }
        );
        assert_eq!(
            OffsetIndex::parse(Offset(0), &file, 150).unwrap_err(),
            IndexCorrupt { entry: 1 }
        );
    }

    #[test]
    fn time_index_keeps_only_newer_timestamps() {
        let mut index = TimeIndex::new(Offset(10));
        index.maybe_push(TimestampMs(50), Offset(12));
        index.maybe_push(TimestampMs(50), Offset(15));
        assert_eq!(index.len(), 1, "an older or equal timestamp adds no entry");
        index.maybe_push(TimestampMs(70), Offset(20));
        assert_eq!(index.bytes_from(1).len(), TIME_ENTRY_BYTES);
        assert_eq!(index.lookup(TimestampMs(10)), Offset(10));
        assert_eq!(index.lookup(TimestampMs(60)), Offset(12));
        assert_eq!(index.last(), Some((TimestampMs(70), Offset(20))));
        let parsed = TimeIndex::parse(Offset(10), &index.to_bytes()).unwrap();
        assert_eq!(parsed.last(), index.last());
    }
}
