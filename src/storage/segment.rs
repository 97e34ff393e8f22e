//! One segment: a `.log` file of whole batches and its two sparse indexes, plus the forward scan
//! over batch headers that reads, recovery and rebuilds share.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use zerocopy::FromBytes;

use super::index::{OffsetIndex, TimeIndex};
use super::StorageError;
use crate::io;
use crate::model::batch::{BatchHeader, BatchView, HEADER_BYTES, MAGIC_V2};
use crate::model::{Offset, TimestampMs};

/// The files of a segment, by extension.
pub const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// Batches a segment remembers from its tail (see [`Segment::recent`]).
const RECENT_BATCHES_MAX: usize = 1024;

/// Bytes read at a time when only headers are needed: the first read, and the cap.
const HEADER_SCAN_CHUNK_BYTES_FIRST: usize = 4 * 1024;
const HEADER_SCAN_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read at a time when whole batches are checked (recovery, rebuilds).
const VERIFY_SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn file_name(base: Offset, extension: &str) -> String {
    format!("{:020}.{extension}", base.0)
}

pub fn path(dir: &Path, base: Offset, extension: &str) -> PathBuf {
    dir.join(file_name(base, extension))
}

/// A segment file's path with a suffix (`.cleaned` while compaction writes it).
pub fn path_with_suffix(dir: &Path, base: Offset, extension: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_name(base, extension)))
}

/// Parses `00000000000000001234.log` (or another extension) into its base offset.
pub fn parse_file_name(name: &str, extension: &str) -> Option<Offset> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok().map(Offset))
        .flatten()
}

/// Where one batch lies and what its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub position: u64,
    pub bytes: u32,
    pub base: Offset,
    pub last: Offset,
    pub max_timestamp: TimestampMs,
    pub records: i32,
}

impl BatchInfo {
    pub fn end(&self) -> u64 {
        self.position + self.bytes as u64
    }

    pub fn next_offset(&self) -> Offset {
        self.last.plus(1)
    }
}

/// How a scan ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// Reached the end position, or the visitor stopped at a batch.
    Done,
    /// The bytes at `position` are not a whole valid batch.
    Invalid { position: u64, reason: String },
}

/// Walks the batches of `file` from `from` (a batch start) to `end`. With `verify`, each batch is
/// read whole and its CRC checked; otherwise only headers are read. `visit` returns false to stop
/// before a batch. Returns the position after the last accepted batch and how the scan ended.
pub async fn scan(
    file: &io::File,
    from: u64,
    end: u64,
    verify: bool,
    mut visit: impl FnMut(&BatchInfo) -> bool,
) -> io::Result<(u64, ScanStop)> {
    scan_headers(file, from, end, verify, |info, _| visit(info)).await
}

/// [`scan`], handing `visit` each batch's whole header too (producer fields, attributes).
pub async fn scan_headers(
    file: &io::File,
    from: u64,
    end: u64,
    verify: bool,
    mut visit: impl FnMut(&BatchInfo, &BatchHeader) -> bool,
) -> io::Result<(u64, ScanStop)> {
    // Header scans start small (a lookup usually needs a header or two past an index entry)
    // and double up to the cap when a scan runs long.
    let mut chunk_bytes = if verify {
        VERIFY_SCAN_CHUNK_BYTES
    } else {
        HEADER_SCAN_CHUNK_BYTES_FIRST
    };
    let mut position = from;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_position = from;
    let invalid = |position: u64, reason: String| ScanStop::Invalid { position, reason };
    while position < end {
        let left = end - position;
        if left < HEADER_BYTES as u64 {
            return Ok((
                position,
                invalid(
                    position,
                    format!("{left} trailing bytes, less than a batch header"),
                ),
            ));
        }
        if position + HEADER_BYTES as u64 > buf_position + buf.len() as u64 {
            buf = file
                .read_at(position, chunk_bytes.min(left as usize))
                .await?;
            buf_position = position;
            chunk_bytes = (chunk_bytes * 2).min(HEADER_SCAN_CHUNK_BYTES.max(chunk_bytes));
            if buf.len() < HEADER_BYTES {
                return Ok((
                    position,
                    invalid(position, "the file ends inside a batch header".into()),
                ));
            }
        }
        let at = (position - buf_position) as usize;
        let (header, _) =
            BatchHeader::ref_from_prefix(&buf[at..]).expect("a whole header is buffered");
        let total = match BatchView::total_len(&buf[at..]) {
            Ok(total) => total as u64,
            Err(e) => return Ok((position, invalid(position, e.to_string()))),
        };
        if header.magic != MAGIC_V2 {
            return Ok((
                position,
                invalid(position, format!("magic {} is not 2", header.magic)),
            ));
        }
        if total > left {
            return Ok((
                position,
                invalid(
                    position,
                    format!(
                        "batch of {total} bytes overruns the end by {} bytes",
                        total - left
                    ),
                ),
            ));
        }
        if verify {
            if position + total > buf_position + buf.len() as u64 {
                buf = file
                    .read_at(position, chunk_bytes.max(total as usize).min(left as usize))
                    .await?;
                buf_position = position;
                if (buf.len() as u64) < total {
                    return Ok((
                        position,
                        invalid(position, "the file ends inside a batch".into()),
                    ));
                }
            }
            let at = (position - buf_position) as usize;
            if let Err(e) = BatchView::validate(&buf[at..at + total as usize]) {
                return Ok((position, invalid(position, e.to_string())));
            }
        }
        let at = (position - buf_position) as usize;
        let (header, _) =
            BatchHeader::ref_from_prefix(&buf[at..]).expect("a whole header is buffered");
        let info = BatchInfo {
            position,
            bytes: total as u32,
            base: Offset(header.base_offset.get()),
            last: Offset(header.base_offset.get() + header.last_offset_delta.get() as i64),
            max_timestamp: TimestampMs(header.max_timestamp.get()),
            records: header.records_count.get(),
        };
        if !visit(&info, header) {
            return Ok((position, ScanStop::Done));
        }
        position += total;
    }
    Ok((position, ScanStop::Done))
}

/// The first batch at or after `from` whose last offset is at least `offset`: the batch that
/// holds `offset`, or the first one after it.
pub async fn find_batch(
    file: &io::File,
    from: u64,
    end: u64,
    offset: Offset,
) -> io::Result<Option<BatchInfo>> {
    let mut found = None;
    scan(file, from, end, false, |info| {
        if info.last >= offset {
            found = Some(*info);
            return false;
        }
        true
    })
    .await?;
    Ok(found)
}

/// The files of a segment and what is known of its contents.
#[derive(Debug)]
pub struct Segment {
    pub base: Offset,
    /// The log file, open while the segment is loaded (the only descriptor a segment holds).
    pub log: Rc<io::File>,
    /// The index files, opened only to write or sync them: the indexes live in memory.
    pub index_files: IndexFiles,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes of whole, visible batches.
    pub size_bytes: u64,
    /// The offset after the last batch (the next segment's base, for closed segments).
    pub next_offset: Offset,
    pub max_timestamp: TimestampMs,
    pub offset_of_max_timestamp: Offset,
    /// Bytes appended since the last offset index entry.
    pub bytes_since_index: u64,
    /// Wall-clock time of the first append since the segment was opened (for `segment.ms`).
    pub first_append_ms: Option<i64>,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u64,
    /// The last batches appended or scanned, a contiguous run ending at `size_bytes`: reads near
    /// the tail (most consumers) find their positions here without reading headers.
    pub recent: std::collections::VecDeque<BatchInfo>,
    /// Entries of each index already in its file; the rest are written in bulk (see
    /// [`Segment::take_pending_indexes`]).
    pub index_entries_in_file: usize,
    pub time_entries_in_file: usize,
}

/// Where a segment's two index files are. They hold no descriptor: each write or sync opens the
/// file and closes it after, so a partition costs one descriptor (its active log file) however
/// many segments it has.
#[derive(Clone, Debug)]
pub struct IndexFiles {
    pub index: PathBuf,
    pub time_index: PathBuf,
    faults: io::Faults,
}

impl IndexFiles {
    fn new(dir: &Path, base: Offset, suffix: &str, faults: &io::Faults) -> IndexFiles {
        IndexFiles {
            index: path_with_suffix(dir, base, "index", suffix),
            time_index: path_with_suffix(dir, base, "timeindex", suffix),
            faults: faults.clone(),
        }
    }

    async fn open(&self, path: &Path) -> io::Result<io::File> {
        io::File::open_transient(path, true, &self.faults).await
    }

    /// Makes both files durable.
    pub async fn sync(&self) -> Result<(), StorageError> {
        for path in [&self.index, &self.time_index] {
            let file = self.open(path).await?;
            file.fdatasync().await?;
            file.close().await?;
        }
        Ok(())
    }

    /// Writes `bytes` as the whole of the file at `path`.
    async fn write_whole(&self, path: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
        let file = self.open(path).await?;
        let len = bytes.len() as u64;
        if !bytes.is_empty() {
            file.write_at(bytes, 0).await?;
        }
        file.truncate(len).await?;
        file.close().await?;
        Ok(())
    }
}

/// Index entries on their way to the files.
pub struct PendingIndexes {
    files: IndexFiles,
    writes: Vec<(bool, Vec<u8>, u64)>,
}

impl PendingIndexes {
    /// Writes the entries. A failure is logged, not returned: indexes are derived data, and a
    /// hole or torn entry makes the next open rebuild the index from the log.
    pub async fn write(self) {
        for (time, bytes, at) in self.writes {
            let path = if time {
                &self.files.time_index
            } else {
                &self.files.index
            };
            let written = match self.files.open(path).await {
                Ok(file) => match file.write_at(bytes, at).await {
                    Ok(()) => file.close().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                crate::throttled!(|count| {
                    tracing::warn!(file = %path.display(), error = %e, count, "index write failed; the index is rebuilt on the next start")
                });
            }
        }
    }
}

impl Segment {
    /// Creates an empty segment, replacing any stale files of the same base.
    pub async fn create(
        dir: &Path,
        base: Offset,
        index_interval_bytes: u64,
        faults: &io::Faults,
    ) -> Result<Segment, StorageError> {
        Self::create_with_suffix(dir, base, "", index_interval_bytes, faults).await
    }

    /// As [`Segment::create`], with a suffix after each file name.
    pub async fn create_with_suffix(
        dir: &Path,
        base: Offset,
        suffix: &str,
        index_interval_bytes: u64,
        faults: &io::Faults,
    ) -> Result<Segment, StorageError> {
        let log = io::File::open(&path_with_suffix(dir, base, "log", suffix), true, faults).await?;
        log.truncate(0).await?;
        let index_files = IndexFiles::new(dir, base, suffix, faults);
        for path in [&index_files.index, &index_files.time_index] {
            index_files.write_whole(path, Vec::new()).await?;
        }
        Ok(Segment::empty(
            base,
            Rc::new(log),
            index_files,
            index_interval_bytes,
        ))
    }

    /// A segment over these files that knows nothing of its contents yet.
    fn empty(
        base: Offset,
        log: Rc<io::File>,
        index_files: IndexFiles,
        index_interval_bytes: u64,
    ) -> Segment {
        Segment {
            base,
            log,
            index_files,
            index: OffsetIndex::new(base),
            time_index: TimeIndex::new(base),
            size_bytes: 0,
            next_offset: base,
            max_timestamp: TimestampMs::NONE,
            offset_of_max_timestamp: base,
            bytes_since_index: 0,
            first_append_ms: None,
            index_interval_bytes,
            recent: std::collections::VecDeque::new(),
            index_entries_in_file: 0,
            time_entries_in_file: 0,
        }
    }

    /// Opens an existing segment and its indexes. Indexes that are missing or fail their checks
    /// are rebuilt from the log (and logged); `next_offset` is `next_base` when known (a closed
    /// segment), or found by scanning from the last index entry (the active segment).
    pub async fn open(
        dir: &Path,
        base: Offset,
        next_base: Option<Offset>,
        index_interval_bytes: u64,
        faults: &io::Faults,
    ) -> Result<Segment, StorageError> {
        let log_path = path(dir, base, "log");
        if !log_path.exists() {
            return Err(StorageError::MissingFile { path: log_path });
        }
        let log = Rc::new(io::File::open(&log_path, false, faults).await?);
        let index_files = IndexFiles::new(dir, base, "", faults);
        let size_bytes = log.size().await?;
        let index_bytes = read_whole(&index_files, &index_files.index).await?;
        let time_bytes = read_whole(&index_files, &index_files.time_index).await?;
        let parsed = OffsetIndex::parse(base, &index_bytes, size_bytes).and_then(|index| {
            TimeIndex::parse(base, &time_bytes).map(|time_index| (index, time_index))
        });
        let mut segment = Segment::empty(base, log, index_files, index_interval_bytes);
        segment.size_bytes = size_bytes;
        segment.next_offset = next_base.unwrap_or(base);
        match parsed {
            Ok((index, time_index))
                if !(index.is_empty() && time_index.last().is_none() && size_bytes > 0) =>
            {
                segment.index_entries_in_file = index.len();
                segment.time_entries_in_file = time_index.len();
                segment.index = index;
                segment.time_index = time_index;
                if let Some((timestamp, offset)) = segment.time_index.last() {
                    segment.max_timestamp = timestamp;
                    segment.offset_of_max_timestamp = offset;
                }
                if next_base.is_none() {
                    // The active segment: find its end from the last index entry.
                    let from = segment.index.lookup(Offset(i64::MAX));
                    segment.rescan_from(from, false).await?;
                }
            }
            parsed => {
                if let Err(e) = parsed {
                    tracing::warn!(segment = %log_path.display(), error = %e, "rebuilding a corrupt index");
                }
                segment.rescan_from(0, false).await?;
                segment.write_indexes().await?;
            }
        }
        Ok(segment)
    }

    /// Re-derives index entries, end offset and max timestamp from the batches at or after
    /// `from` (a batch start). Stops at the first invalid batch and returns what it found there:
    /// the caller decides whether to cut it.
    pub async fn rescan_from(&mut self, from: u64, verify: bool) -> Result<ScanStop, StorageError> {
        self.index.truncate_to_position(from);
        self.index_entries_in_file = self.index_entries_in_file.min(self.index.len());
        self.recent.clear();
        self.bytes_since_index = 0;
        let mut first = true;
        let log = self.log.clone();
        let mut batches: Vec<BatchInfo> = Vec::new();
        let mut out_of_order = None;
        let base = self.base;
        // Offsets are outside the CRC: check that they rise and fit the segment's 32-bit range.
        let (end, mut stop) = scan(&log, from, self.size_bytes, verify, |info| {
            let floor = batches.last().map_or(
                if from == 0 { base } else { Offset(0) },
                BatchInfo::next_offset,
            );
            if info.base < floor || info.base > info.last || info.last.0 - base.0 > i32::MAX as i64
            {
                out_of_order = Some(*info);
                return false;
            }
            batches.push(*info);
            true
        })
        .await?;
        if let Some(info) = out_of_order {
            stop = ScanStop::Invalid {
                position: info.position,
                reason: format!(
                    "batch offsets {}..={} do not follow the log",
                    info.base, info.last
                ),
            };
        }
        for info in &batches {
            if first {
                self.time_index.truncate_to_offset(info.base);
                self.time_entries_in_file = self.time_entries_in_file.min(self.time_index.len());
                self.reset_max_timestamp();
                first = false;
            }
            self.note_batch(info);
        }
        self.size_bytes = end;
        if let Some(last) = batches.last() {
            self.next_offset = last.next_offset();
        } else if from == 0 {
            self.next_offset = self.base;
        }
        Ok(stop)
    }

    pub fn reset_max_timestamp(&mut self) {
        match self.time_index.last() {
            Some((timestamp, offset)) => {
                self.max_timestamp = timestamp;
                self.offset_of_max_timestamp = offset;
            }
            None => {
                self.max_timestamp = TimestampMs::NONE;
                self.offset_of_max_timestamp = self.base;
            }
        }
    }

    /// Accounts a batch appended at `info.position`: an index entry when `index.interval.bytes`
    /// have passed since the last, and the max timestamp.
    pub fn note_batch(&mut self, info: &BatchInfo) {
        if self
            .recent
            .back()
            .is_some_and(|last| last.end() != info.position)
        {
            self.recent.clear(); // keep the run contiguous
        }
        if self.recent.len() == RECENT_BATCHES_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(*info);
        if info.max_timestamp > self.max_timestamp {
            self.max_timestamp = info.max_timestamp;
            self.offset_of_max_timestamp = info.last;
        }
        if self.bytes_since_index > self.index_interval_bytes && info.position > 0 {
            self.index.push(info.last, info.position);
            self.time_index
                .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += info.bytes as u64;
    }

    /// From the recent batches alone: the first batch whose last offset reaches `offset`
    /// (`Some(None)`: none in this segment), or `None` when `offset` is older than they cover.
    pub fn recent_find(&self, offset: Offset) -> Option<Option<BatchInfo>> {
        let front = self.recent.front()?;
        if offset < front.base || self.recent.back().map(BatchInfo::end) != Some(self.size_bytes) {
            return None;
        }
        let at = self.recent.partition_point(|b| b.last < offset);
        Some(self.recent.get(at).copied())
    }

    /// From the recent batches alone: where a read that starts with `first` ends, taking whole
    /// batches while they end within `byte_limit` and below `upper`; `None` if `first` is not
    /// among them.
    pub fn recent_end(
        &self,
        first: &BatchInfo,
        byte_limit: u64,
        upper: Offset,
    ) -> Option<(u64, Offset)> {
        let at = self.recent.partition_point(|b| b.position < first.position);
        if self.recent.get(at) != Some(first) {
            return None;
        }
        let mut end = (first.end(), first.next_offset());
        for batch in self.recent.iter().skip(at + 1) {
            if batch.end() > byte_limit || batch.next_offset() > upper {
                break;
            }
            end = (batch.end(), batch.next_offset());
        }
        Some(end)
    }

    /// Bytes of index entries not yet written to the index files.
    pub fn pending_index_bytes(&self) -> usize {
        (self.index.len().saturating_sub(self.index_entries_in_file))
            * super::index::OFFSET_ENTRY_BYTES
            + (self
                .time_index
                .len()
                .saturating_sub(self.time_entries_in_file))
                * super::index::TIME_ENTRY_BYTES
    }

    /// Takes the entries added since the last write, to append to the index files. Appends do
    /// not write index entries one by one: they go out in bulk, at rolls and closes, or once a
    /// few KiB are pending. Recovery never trusts index entries past the recovery
    /// point, so entries still in memory at a crash cost only a longer scan.
    pub fn take_pending_indexes(&mut self) -> PendingIndexes {
        let mut writes = Vec::with_capacity(2);
        if self.index.len() > self.index_entries_in_file {
            let at = (self.index_entries_in_file * super::index::OFFSET_ENTRY_BYTES) as u64;
            writes.push((false, self.index.bytes_from(self.index_entries_in_file), at));
            self.index_entries_in_file = self.index.len();
        }
        if self.time_index.len() > self.time_entries_in_file {
            let at = (self.time_entries_in_file * super::index::TIME_ENTRY_BYTES) as u64;
            writes.push((
                true,
                self.time_index.bytes_from(self.time_entries_in_file),
                at,
            ));
            self.time_entries_in_file = self.time_index.len();
        }
        PendingIndexes {
            files: self.index_files.clone(),
            writes,
        }
    }

    /// Writes both indexes whole and cuts their files to size.
    pub async fn write_indexes(&mut self) -> Result<(), StorageError> {
        self.index_entries_in_file = self.index.len();
        self.time_entries_in_file = self.time_index.len();
        let files = &self.index_files;
        files
            .write_whole(&files.index, self.index.to_bytes())
            .await?;
        files
            .write_whole(&files.time_index, self.time_index.to_bytes())
            .await
    }

    /// Makes the segment's data and indexes durable.
    pub async fn sync(&self) -> Result<(), StorageError> {
        self.log.fdatasync().await?;
        self.index_files.sync().await
    }

    /// Closing the active segment: records the max timestamp in the time index (so retention
    /// finds it without a scan after a restart). The caller writes the pending index entries
    /// and syncs.
    pub fn seal_in_memory(&mut self) {
        if self.size_bytes > 0 {
            self.time_index
                .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
        }
    }

    /// Seals the segment and makes everything durable.
    pub async fn seal(&mut self) -> Result<(), StorageError> {
        self.seal_in_memory();
        self.take_pending_indexes().write().await;
        self.sync().await
    }
}

/// An index file's bytes (empty when it does not exist: it is rebuilt from the log).
async fn read_whole(files: &IndexFiles, path: &Path) -> Result<Vec<u8>, StorageError> {
    let file = match files.open(path).await {
        Ok(file) => file,
        Err(e) => return Err(e.into()),
    };
    let bytes = file.read_at(0, file.size().await? as usize).await?;
    file.close().await?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(file_name(Offset(1234), "log"), "00000000000000001234.log");
        assert_eq!(
            parse_file_name("00000000000000001234.log", "log"),
            Some(Offset(1234))
        );
        assert_eq!(parse_file_name("00000000000000001234.index", "log"), None);
        assert_eq!(parse_file_name("1234.log", "log"), None);
    }
}
