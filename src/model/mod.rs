//! The vocabulary that storage and protocol share: offsets, epochs, ids, and the RecordBatch v2
//! format (header view, records, compression). Nothing here knows about files or requests.

pub mod batch;
pub mod compression;
pub mod records;

pub use batch::{BatchError, BatchHeader, BatchView, TimestampType};
pub use compression::Codec;

use std::fmt;
use std::sync::Arc;

/// A position in a partition's log. Kafka's offsets are signed 64-bit; negative values appear only
/// as sentinels on the wire, never inside a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);
    /// Kafka's "no offset" on the wire (-1): an error's answer, or nothing found.
    pub const UNKNOWN: Offset = Offset(-1);

    pub fn get(self) -> i64 {
        self.0
    }

    /// The offset `delta` after this one.
    pub fn plus(self, delta: i64) -> Offset {
        debug_assert!(delta >= 0);
        Offset(self.0 + delta)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition leader epoch (KIP-101). -1 means "unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub i32);

impl Epoch {
    pub const UNKNOWN: Epoch = Epoch(-1);
}

/// A broker in the cluster.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub i32);

/// A CPU core's shard on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

impl ShardId {
    /// Its place in a per-shard table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, as Kafka's timestamps are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampMs(pub i64);

impl TimestampMs {
    /// Kafka's "no timestamp".
    pub const NONE: TimestampMs = TimestampMs(-1);

    pub fn now() -> TimestampMs {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        TimestampMs(since.as_millis() as i64)
    }
}

/// What a read may return: everything below the high watermark, or only what is below the last
/// stable offset (no record of an open transaction), with the aborted transactions listed
/// (Kafka's isolation levels 0 and 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// A topic name and a partition number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Shared: a fetch or produce over thousands of partitions of one topic clones it per
    /// partition, and sends those clones between shards.
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory name in Kafka's layout: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
