//! The partition log: segments of RecordBatch v2 bytes in Kafka's on-disk layout, sparse offset
//! and time indexes, batched appends through io_uring with group commit, zero-copy read ranges,
//! recovery from a checkpoint, truncation, retention and compaction. It knows batch bytes, never
//! Kafka requests or error codes; the on-disk format is in FORMAT.md beside this file.

mod checkpoint;
mod cleaner;
mod config;
mod epochs;
mod index;
mod loaded;
mod log;
mod maintenance;
mod producers;
mod segment;

pub use cleaner::{CleanReport, CleanerStep};
pub use config::{CleanupPolicy, LogConfig};
pub use index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
pub use loaded::{
    capacity as loaded_segments_capacity, set_capacity as set_loaded_segments_capacity,
    tracked as loaded_segments_tracked,
};
pub use log::{AppendInfo, AppendOptions, Durability, Log, LogStats, ReadRange, RetentionReport};
pub use maintenance::{
    maintain, spawn_maintenance, MaintenanceReport, Periods, BACKGROUND_SHARES, HOT_PATH_SHARES,
};
pub use producers::{marker_of, ProducerBatch, ProducerEntry, Producers, SequenceError};
pub use segment::{parse_file_name, BatchInfo};

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{BatchError, Offset};

/// What can go wrong in the log. Every variant leaves the log consistent: nothing partially
/// written is visible to readers or after a restart.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("batch {index} of the append is corrupt: {source}")]
    CorruptBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("batch {index} of the append is {bytes} bytes, over max.message.bytes {limit_bytes}")]
    BatchTooLarge {
        index: usize,
        bytes: usize,
        limit_bytes: usize,
    },
    #[error("replicated batches must continue the log at {expected}, got {got}")]
    OffsetMismatch { expected: Offset, got: Offset },
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error("the disk is full: {0}")]
    DiskFull(#[source] Arc<std::io::Error>),
    #[error("i/o error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("{path} is missing")]
    MissingFile { path: PathBuf },
    #[error("{path} is corrupt: {detail}")]
    CorruptFile { path: PathBuf, detail: String },
    #[error("the log is closed")]
    Closed,
    #[error("segment {base} was deleted while in use")]
    SegmentGone { base: Offset },
    /// Every descriptor the shard may spend on closed segments is held by reads in flight: the
    /// read can be tried again once they are sent.
    #[error("all of the shard's {capacity} closed-segment files are in use by reads in flight")]
    Busy { capacity: usize },
    /// An idempotent producer's batch out of sequence or from a fenced epoch; nothing written.
    #[error("batch {index} of the append: {source}")]
    Sequence {
        index: usize,
        #[source]
        source: SequenceError,
    },
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        if crate::io::is_no_space(&e) {
            StorageError::DiskFull(Arc::new(e))
        } else {
            StorageError::Io(Arc::new(e))
        }
    }
}
