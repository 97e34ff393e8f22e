//! The declared config keys: Kafka's names, types, bounds and defaults.

/// What values a key takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// An integer within bounds (Kafka's int and long).
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Double {
        min: f64,
        max: f64,
    },
    /// One of these words.
    Enum(&'static [&'static str]),
    /// `delete`, `compact` or `compact,delete`.
    CleanupPolicy,
    /// Non-empty text.
    Text,
    /// Comma-separated `NAME://host:port` listeners; empty allowed when `optional`.
    Listeners {
        optional: bool,
    },
    /// Any text, empty included (Kafka's string, list, class and password keys Sluice does not use).
    Any,
}

/// One declared key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// For a topic key: the broker key that gives its default (`retention.ms` <- `log.retention.ms`).
    pub broker_default: Option<&'static str>,
    pub doc: &'static str,
    /// False for a key Kafka documents and Sluice accepts, stores and describes, but does not use.
    pub effect: bool,
}

pub(super) fn parse_i64(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

impl Kind {
    /// Why `value` is not acceptable, if it is not.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let value = value.trim();
        match *self {
            Kind::Int { min, max } => match parse_i64(value) {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                Some(_) => Err(format!("must be between {min} and {max}")),
                None => Err("not an integer".into()),
            },
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err("must be true or false".into()),
            },
            Kind::Double { min, max } => match value.parse::<f64>() {
                Ok(n) if n >= min && n <= max => Ok(()),
                Ok(_) => Err(format!("must be between {min} and {max}")),
                Err(_) => Err("not a number".into()),
            },
            Kind::Enum(words) => {
                if words.contains(&value) {
                    Ok(())
                } else {
                    Err(format!("must be one of {}", words.join(", ")))
                }
            }
            Kind::CleanupPolicy => crate::storage::CleanupPolicy::parse(value)
                .map(|_| ())
                .ok_or_else(|| "must be delete, compact or compact,delete".into()),
            Kind::Text => {
                if value.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(())
                }
            }
            Kind::Any => Ok(()),
            Kind::Listeners { optional } => {
                if value.is_empty() {
                    return if optional {
                        Ok(())
                    } else {
                        Err("must not be empty".into())
                    };
                }
                for listener in value.split(',').map(str::trim) {
                    parse_listener(listener)
                        .ok_or_else(|| format!("`{listener}` is not NAME://host:port"))?;
                }
                Ok(())
            }
        }
    }
}

/// Splits `PLAINTEXT://host:port` into its name, host and port.
pub fn parse_listener(text: &str) -> Option<(&str, &str, u16)> {
    let (name, address) = text.split_once("://")?;
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some((name, host, port))
}

pub(super) const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

pub(super) const I32: i64 = i32::MAX as i64;
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const COMPRESSION_TYPES: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];

pub(super) const fn broker(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        broker_default: None,
        doc,
        effect: true,
    }
}

const fn topic(
    name: &'static str,
    kind: Kind,
    broker_default: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default: "",
        broker_default: Some(broker_default),
        doc,
        effect: true,
    }
}

/// Broker configs Sluice uses (`--config sluice.toml`, `--set key=value`).
pub const DECLARED_BROKER_KEYS: &[Key] = &[
    broker(
        "node.id",
        int(0, I32),
        "0",
        "this broker's id in the cluster",
    ),
    broker(
        "log.dirs",
        Kind::Text,
        "./sluice-data",
        "the directory holding the partitions' logs",
    ),
    broker(
        "listeners",
        Kind::Listeners { optional: false },
        "PLAINTEXT://127.0.0.1:9092",
        "where the Kafka listener binds",
    ),
    broker(
        "controller.quorum.voters",
        Kind::Any,
        "",
        "the metadata quorum's voters, `id@host:port,...` (their controller listeners); empty: this node alone",
    ),
    broker(
        "controller.listener.names",
        Kind::Any,
        "CONTROLLER",
        "the listener (by name in `listeners`) the other controllers connect to",
    ),
    broker(
        "broker.session.timeout.ms",
        int(1, I32),
        "9000",
        "in a cluster: a broker the active controller has not heard from for this long is fenced",
    ),
    broker(
        "admin.listener",
        Kind::Any,
        "127.0.0.1:9644",
        "host:port of the admin HTTP listener (/metrics, /v1/health, /v1/ready); empty: none. \
         Sluice's own (Redpanda's admin port)",
    ),
    broker(
        "admin.require.auth",
        Kind::Bool,
        "false",
        "whether admin listener requests (but /v1/health and /v1/ready) need HTTP Basic \
         credentials of a SCRAM user; with ACLs on, reads need DESCRIBE on the cluster, \
         changes ALTER, and a topic's messages READ on it. Sluice's own (Redpanda's \
         admin_api_require_auth)",
    ),
    broker(
        "metrics.enabled",
        Kind::Bool,
        "true",
        "count requests, traffic and stalls for /metrics; false leaves the counters at zero \
         (to measure what counting costs). Sluice's own",
    ),
    broker(
        "metrics.partition.series",
        Kind::Bool,
        "true",
        "/metrics has series per partition (log size, segments, offsets, a group's lag per \
         partition); false on hosts with very many partitions keeps the per-shard and per-group \
         sums only. Sluice's own",
    ),
    broker(
        "broker.rack",
        Kind::Any,
        "",
        "the rack (or zone) of this broker: a partition's replicas go on different racks",
    ),
    broker(
        "replica.lag.time.max.ms",
        int(1, i64::MAX),
        "30000",
        "a follower not caught up with its leader for this long leaves the ISR",
    ),
    broker(
        "replica.fetch.wait.max.ms",
        int(0, 30_000),
        "500",
        "how long a follower's fetch waits at the leader for new records",
    ),
    broker(
        "replica.fetch.min.bytes",
        int(1, I32),
        "1",
        "the bytes a follower's fetch waits for",
    ),
    broker(
        "replica.fetch.busy.wait.ms",
        int(0, 30_000),
        "10",
        "under load (the last answer brought 64 KiB or more) a follower's fetch waits this long \
         at the leader for 1 MiB: fewer, larger rounds; 0 turns it off (Sluice's own)",
    ),
    broker(
        "replica.fetch.max.bytes",
        int(1024, I32),
        "1048576",
        "the most bytes a follower fetches of one partition at once (at least one batch)",
    ),
    broker(
        "replica.fetch.response.max.bytes",
        int(1024, I32),
        "10485760",
        "the most bytes of one follower fetch (at least one batch)",
    ),
    broker(
        "replica.fetch.backoff.ms",
        int(0, I32),
        "1000",
        "how long a follower waits after a failed fetch",
    ),
    broker(
        "auto.leader.rebalance.enable",
        Kind::Bool,
        "true",
        "the active controller moves leaderships back to each partition's preferred replica",
    ),
    broker(
        "leader.imbalance.check.interval.seconds",
        int(1, I32),
        "300",
        "how often the active controller looks for partitions led by another than their preferred replica",
    ),
    broker(
        "unclean.leader.election.enable",
        Kind::Bool,
        "false",
        "the controller's default: with no replica in sync left, one out of sync may lead",
    ),
    broker(
        "process.roles",
        Kind::Any,
        "",
        "`broker,controller` (the default when empty), `broker` (no vote: a learner of the quorum) or `controller` (no partitions, no client listener)",
    ),
    broker(
        "advertised.listeners",
        Kind::Listeners { optional: true },
        "",
        "what clients are told to connect to (default: listeners)",
    ),
    broker(
        "num.partitions",
        int(1, I32),
        "1",
        "partitions of an auto-created topic",
    ),
    broker(
        "default.replication.factor",
        int(1, i16::MAX as i64),
        "1",
        "replicas of an auto-created topic",
    ),
    broker(
        "auto.create.topics.enable",
        Kind::Bool,
        "true",
        "create unknown topics on Metadata and Produce",
    ),
    broker(
        "message.max.bytes",
        int(0, I32),
        "1048588",
        "the largest record batch accepted (topic: max.message.bytes)",
    ),
    broker(
        "socket.request.max.bytes",
        int(1, I32),
        "104857600",
        "the largest request frame accepted",
    ),
    broker(
        "socket.request.read.timeout.ms",
        int(1, I32),
        "30000",
        "how long a request frame may take to arrive once its length is read (Sluice's own)",
    ),
    broker(
        "connections.max.idle.ms",
        int(1, i64::MAX),
        "600000",
        "close a connection that sends nothing and is owed nothing for this long",
    ),
    broker(
        "max.connections",
        int(0, I32),
        "2147483647",
        "client connections held at once; at the limit new ones wait in the listen queue",
    ),
    broker(
        "max.connections.per.ip",
        int(0, I32),
        "2147483647",
        "client connections from one address; one past it is closed at once",
    ),
    broker(
        "min.insync.replicas",
        int(1, I32),
        "1",
        "replicas that must have a write for acks=all",
    ),
    broker(
        "mode",
        Kind::Enum(&["development", "production"]),
        "development",
        "production: check the host against tuning/os/production at start and warn per setting",
    ),
    broker(
        "compression.type",
        Kind::Enum(COMPRESSION_TYPES),
        "producer",
        "the codec batches are stored with (producer: as sent)",
    ),
    broker(
        "log.retention.ms",
        int(-1, i64::MAX),
        "604800000",
        "delete closed segments older than this; -1 keeps them",
    ),
    broker(
        "log.retention.bytes",
        int(-1, i64::MAX),
        "-1",
        "delete the oldest segments while a partition is larger; -1 keeps them",
    ),
    broker(
        "log.retention.check.interval.ms",
        int(1, i64::MAX),
        "300000",
        "how often retention and compaction run",
    ),
    broker(
        "log.segment.bytes",
        int(14, I32),
        "1073741824",
        "roll a segment at this size",
    ),
    broker(
        "log.roll.ms",
        int(1, i64::MAX),
        "604800000",
        "roll a segment this long after its first append",
    ),
    broker(
        "log.index.size.max.bytes",
        int(4, I32),
        "10485760",
        "the largest offset index; a full one rolls the segment",
    ),
    broker(
        "log.index.interval.bytes",
        int(0, I32),
        "4096",
        "bytes between offset index entries",
    ),
    broker(
        "log.flush.interval.messages",
        int(1, i64::MAX),
        "9223372036854775807",
        "fdatasync after this many messages",
    ),
    broker(
        "log.flush.interval.ms",
        int(0, i64::MAX),
        "9223372036854775807",
        "fdatasync when unflushed data is this old",
    ),
    broker(
        "log.cleanup.policy",
        Kind::CleanupPolicy,
        "delete",
        "delete, compact or compact,delete",
    ),
    broker(
        "log.message.timestamp.type",
        Kind::Enum(TIMESTAMP_TYPES),
        "CreateTime",
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's",
    ),
    broker(
        "log.cleaner.min.compaction.lag.ms",
        int(0, i64::MAX),
        "0",
        "records younger than this are not compacted",
    ),
    broker(
        "log.cleaner.backoff.ms",
        int(10, i64::MAX),
        "15000",
        "how often a compacted partition is looked at for a compaction pass",
    ),
    broker(
        "log.cleaner.max.compaction.lag.ms",
        int(1, i64::MAX),
        "9223372036854775807",
        "a closed segment whose records are all older than this is compacted whatever the dirty ratio",
    ),
    broker(
        "log.cleaner.delete.retention.ms",
        int(0, i64::MAX),
        "86400000",
        "how long compaction keeps tombstones",
    ),
    broker(
        "log.write.group.max.bytes",
        int(4096, I32),
        "4194304",
        "the most bytes of concurrent appends one write to a segment carries; `sluice iotune` sizes it for the disk",
    ),
    broker(
        "producer.id.expiration.ms",
        int(1, I32),
        "86400000",
        "an idempotent producer idle this long is forgotten by each partition",
    ),
    broker(
        "log.cleaner.dedupe.buffer.size",
        int(1 << 20, i64::MAX),
        "134217728",
        "the most memory a compaction pass's key map may take",
    ),
    broker(
        "log.cleaner.min.cleanable.ratio",
        Kind::Double { min: 0.0, max: 1.0 },
        "0.5",
        "compact when this share of the closed log is uncleaned",
    ),
    broker(
        "offsets.topic.replication.factor",
        int(1, i16::MAX as i64),
        "3",
        "replicas of each __consumer_offsets partition (at most the brokers of the cluster)",
    ),
    broker(
        "transaction.state.log.replication.factor",
        int(1, i16::MAX as i64),
        "3",
        "replicas of each __transaction_state partition (at most the live brokers)",
    ),
    broker(
        "offsets.topic.num.partitions",
        int(1, 1000),
        "50",
        "partitions of __consumer_offsets (fixed once the topic exists)",
    ),
    broker(
        "transaction.state.log.num.partitions",
        int(1, 1000),
        "50",
        "partitions of __transaction_state (fixed once the topic exists)",
    ),
    broker(
        "transaction.max.timeout.ms",
        int(1, I32),
        "900000",
        "the longest transaction timeout a producer may ask for",
    ),
    broker(
        "transactional.id.expiration.ms",
        int(1, I32),
        "604800000",
        "a transactional id with no transaction for this long is forgotten",
    ),
    broker(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        int(1, I32),
        "10000",
        "how often transactions past their timeout are looked for and aborted",
    ),
    broker(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        int(1, I32),
        "3600000",
        "how often expired transactional ids are looked for",
    ),
    broker(
        "offsets.retention.minutes",
        int(1, I32),
        "10080",
        "how long an empty group's committed offsets are kept",
    ),
    broker(
        "offsets.retention.check.interval.ms",
        int(1, i64::MAX),
        "600000",
        "how often expired committed offsets are looked for",
    ),
    broker(
        "group.min.session.timeout.ms",
        int(0, I32),
        "6000",
        "the shortest session timeout a consumer may ask for",
    ),
    broker(
        "group.max.session.timeout.ms",
        int(0, I32),
        "1800000",
        "the longest session timeout a consumer may ask for",
    ),
    broker(
        "group.initial.rebalance.delay.ms",
        int(0, I32),
        "3000",
        "how long the first rebalance of an empty group waits for more members",
    ),
    broker(
        "group.max.size",
        int(1, I32),
        "2147483647",
        "the most members a group may have",
    ),
];

/// Topic configs Sluice uses (CreateTopics, AlterConfigs); each defaults to a broker key.
pub const DECLARED_TOPIC_KEYS: &[Key] = &[
    topic(
        "segment.bytes",
        int(14, I32),
        "log.segment.bytes",
        "roll a segment at this size",
    ),
    topic(
        "segment.ms",
        int(1, i64::MAX),
        "log.roll.ms",
        "roll a segment this long after its first append",
    ),
    topic(
        "segment.index.bytes",
        int(4, I32),
        "log.index.size.max.bytes",
        "the largest offset index",
    ),
    topic(
        "index.interval.bytes",
        int(0, I32),
        "log.index.interval.bytes",
        "bytes between offset index entries",
    ),
    topic(
        "flush.messages",
        int(1, i64::MAX),
        "log.flush.interval.messages",
        "fdatasync after this many messages",
    ),
    topic(
        "flush.ms",
        int(0, i64::MAX),
        "log.flush.interval.ms",
        "fdatasync when unflushed data is this old",
    ),
    topic(
        "retention.ms",
        int(-1, i64::MAX),
        "log.retention.ms",
        "delete closed segments older than this; -1 keeps them",
    ),
    topic(
        "retention.bytes",
        int(-1, i64::MAX),
        "log.retention.bytes",
        "delete the oldest segments while larger; -1 keeps them",
    ),
    topic(
        "cleanup.policy",
        Kind::CleanupPolicy,
        "log.cleanup.policy",
        "delete, compact or compact,delete",
    ),
    topic(
        "message.timestamp.type",
        Kind::Enum(TIMESTAMP_TYPES),
        "log.message.timestamp.type",
        "CreateTime or LogAppendTime",
    ),
    topic(
        "max.message.bytes",
        int(0, I32),
        "message.max.bytes",
        "the largest record batch accepted",
    ),
    topic(
        "max.compaction.lag.ms",
        int(1, i64::MAX),
        "log.cleaner.max.compaction.lag.ms",
        "a closed segment whose records are all older than this is compacted whatever the dirty ratio",
    ),
    topic(
        "min.compaction.lag.ms",
        int(0, i64::MAX),
        "log.cleaner.min.compaction.lag.ms",
        "records younger than this are not compacted",
    ),
    topic(
        "delete.retention.ms",
        int(0, i64::MAX),
        "log.cleaner.delete.retention.ms",
        "how long compaction keeps tombstones",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        Kind::Double { min: 0.0, max: 1.0 },
        "log.cleaner.min.cleanable.ratio",
        "compact when this share is uncleaned",
    ),
    topic(
        "min.insync.replicas",
        int(1, I32),
        "min.insync.replicas",
        "replicas that must have a write for acks=all",
    ),
    topic(
        "unclean.leader.election.enable",
        Kind::Bool,
        "unclean.leader.election.enable",
        "with no replica in sync left, let one out of sync lead (losing what only the others had)",
    ),
    topic(
        "compression.type",
        Kind::Enum(COMPRESSION_TYPES),
        "compression.type",
        "the codec batches are stored with (producer: as sent)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_passes_its_own_check_and_topic_keys_map_to_broker_keys() {
        for key in DECLARED_BROKER_KEYS {
            assert_eq!(key.kind.check(key.default), Ok(()), "{}", key.name);
        }
        for key in DECLARED_TOPIC_KEYS {
            let broker = DECLARED_BROKER_KEYS
                .iter()
                .find(|b| Some(b.name) == key.broker_default)
                .unwrap_or_else(|| panic!("{}", key.name));
            assert_eq!(key.kind.check(broker.default), Ok(()), "{}", key.name);
        }
    }

    #[test]
    fn listeners_parse() {
        assert_eq!(
            parse_listener("PLAINTEXT://127.0.0.1:9092"),
            Some(("PLAINTEXT", "127.0.0.1", 9092))
        );
        assert_eq!(
            parse_listener("PLAINTEXT://[::1]:19092"),
            Some(("PLAINTEXT", "::1", 19092))
        );
        assert_eq!(parse_listener("127.0.0.1:9092"), None);
        assert_eq!(parse_listener("PLAINTEXT://host:99999"), None);
    }
}
