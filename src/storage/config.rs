//! A log's configuration, under Kafka's topic-config names (in the doc of each field), with
//! Kafka's defaults. The server builds one per partition from broker and topic configs.

use crate::model::TimestampType;

/// `cleanup.policy`: `delete`, `compact` or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };
    pub const COMPACT_DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: true,
    };

    /// Parses Kafka's comma-separated list (`compact,delete`).
    pub fn parse(text: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in text.split(',').map(str::trim) {
            match part {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        (policy.delete || policy.compact).then_some(policy)
    }
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when an append would take it past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first append is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: the largest offset index; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of batches between two offset index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages` (`log.flush.interval.messages`): fdatasync after this many messages.
    pub flush_interval_messages: u64,
    /// `flush.ms` (`log.flush.interval.ms`): fdatasync when the last one is this old.
    pub flush_interval_ms: i64,
    /// `retention.ms`: delete closed segments whose newest timestamp is older; -1: keep.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments while the log is larger; -1: keep.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `message.timestamp.type`: CreateTime keeps the producer's; LogAppendTime stamps the broker's.
    pub message_timestamp_type: TimestampType,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a closed segment whose records are all older than this is
    /// compacted whatever the dirty ratio, and an active segment of a compacted log rolls once its
    /// first append is this old (Kafka's `segment.ms` bound for compacted topics).
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone survives compaction.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact when this share of the closed log is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// `log.cleaner.dedupe.buffer.size` (a broker config): the most memory a compaction pass's
    /// key map may take; a pass cleans only the segments whose keys fit.
    pub cleaner_dedupe_buffer_bytes: usize,
    /// `producer.id.expiration.ms` (a broker config): idle idempotent producers are forgotten.
    pub producer_id_expiration_ms: i64,
    /// `log.write.group.max.bytes` (a broker config): concurrent appends are written together up
    /// to this many bytes a write (at least one append each), so that one large group does not
    /// hold back the appends queued first.
    pub write_group_max_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: i64::MAX,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::DELETE,
            message_timestamp_type: TimestampType::CreateTime,
            max_message_bytes: 1_048_588,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 3_600_000,
            min_cleanable_dirty_ratio: 0.5,
            cleaner_dedupe_buffer_bytes: 128 << 20,
            producer_id_expiration_ms: 86_400_000,
            write_group_max_bytes: 4 << 20,
        }
    }
}

impl LogConfig {
    /// How old the active segment may grow before it rolls: `segment.ms`, and for a compacted
    /// log no more than `max.compaction.lag.ms`, so that its records become cleanable in time.
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// Offset index entries that fit `segment.index.bytes`.
    pub fn index_entries_max(&self) -> usize {
        (self.segment_index_bytes / super::index::OFFSET_ENTRY_BYTES as u64).max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_log_rolls_by_max_compaction_lag_too() {
        let lagged = LogConfig {
            segment_ms: 60_000,
            max_compaction_lag_ms: 5_000,
            ..LogConfig::default()
        };
        assert_eq!(lagged.roll_ms(), 60_000, "delete policy: segment.ms only");
        let compacted = LogConfig {
            cleanup_policy: CleanupPolicy::COMPACT,
            ..lagged.clone()
        };
        assert_eq!(compacted.roll_ms(), 5_000);
        let slow = LogConfig {
            max_compaction_lag_ms: i64::MAX,
            ..compacted
        };
        assert_eq!(slow.roll_ms(), 60_000);
    }
}
