//! Broker and topic configuration under Kafka's names, with Kafka's defaults.
//!
//! Every key is declared once in a table ([`BROKER_KEYS`], [`TOPIC_KEYS`]) with its type, bounds,
//! default and meaning; parsing, validation, `--set` overrides, the TOML file and (later)
//! DescribeConfigs all read the same table. An unknown key or a bad value is refused with a
//! message that names it.

mod keys;

pub use keys::{parse_listener, Key, Kind, BROKER_KEYS, TOPIC_KEYS};

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::TimestampType;
use crate::storage::{CleanupPolicy, LogConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("unknown config key `{key}`")]
    UnknownKey { key: String },
    #[error("bad value `{value}` for `{key}`: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// A validated set of values for the keys of one table; keys not set take their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Values {
    table: &'static [Key],
    set: BTreeMap<&'static str, String>,
}

impl Values {
    pub fn new(table: &'static [Key]) -> Values {
        Values {
            table,
            set: BTreeMap::new(),
        }
    }

    /// Sets `key` to `value` after checking both against the table.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let spec =
            self.table
                .iter()
                .find(|k| k.name == key)
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: key.to_string(),
                })?;
        spec.kind
            .check(value)
            .map_err(|reason| ConfigError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                reason,
            })?;
        self.set.insert(spec.name, value.trim().to_string());
        Ok(())
    }

    /// Applies `key=value` (the `--set` form).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (key, value) = pair.split_once('=').ok_or_else(|| ConfigError::BadValue {
            key: pair.to_string(),
            value: String::new(),
            reason: "expected key=value".into(),
        })?;
        self.set(key.trim(), value)
    }

    /// The value of `key` (set or default) as text.
    pub fn get(&self, key: &str) -> &str {
        match self.set.get(key) {
            Some(value) => value,
            None => self.spec(key).default,
        }
    }

    /// The value of `key` if it is declared in this table, else empty.
    pub fn get_or_default(&self, key: &str) -> String {
        if self.table.iter().any(|k| k.name == key) {
            self.get(key).to_string()
        } else {
            String::new()
        }
    }

    /// Whether `key` was set explicitly (not its default).
    pub fn is_set(&self, key: &str) -> bool {
        self.set.contains_key(key)
    }

    /// The explicitly set keys and values.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.set.iter().map(|(k, v)| (*k, v.as_str()))
    }

    fn spec(&self, key: &str) -> &'static Key {
        self.table
            .iter()
            .find(|k| k.name == key)
            .unwrap_or_else(|| panic!("`{key}` is not a declared config key"))
    }

    pub fn i64(&self, key: &str) -> i64 {
        keys::parse_i64(self.get(key)).expect("checked when set")
    }

    pub fn i32(&self, key: &str) -> i32 {
        self.i64(key) as i32
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.get(key).trim().parse().expect("checked when set")
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key).trim().eq_ignore_ascii_case("true")
    }
}

/// Reads a TOML file into `values`. Nested tables flatten to dotted names, so both
/// `"log.retention.ms" = 1000` and `[log] retention.ms = 1000` set `log.retention.ms`.
pub fn load_toml(values: &mut Values, path: &Path) -> Result<(), ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut flat = Vec::new();
    flatten("", &toml::Value::Table(table), &mut flat);
    for (key, value) in flat {
        values.set(&key, &value)?;
    }
    Ok(())
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        toml::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The log configuration of a topic: its overrides over the broker's `log.*` defaults.
pub fn log_config(broker: &Values, topic: &Values) -> LogConfig {
    let pick = |topic_key: &str| -> String {
        if topic.is_set(topic_key) {
            return topic.get(topic_key).to_string();
        }
        let spec = TOPIC_KEYS
            .iter()
            .find(|k| k.name == topic_key)
            .expect("declared");
        match spec.broker_default {
            Some(broker_key) => broker.get(broker_key).to_string(),
            None => spec.default.to_string(),
        }
    };
    let int = |key: &str| keys::parse_i64(&pick(key)).expect("checked when set");
    LogConfig {
        segment_bytes: int("segment.bytes") as u64,
        segment_ms: int("segment.ms"),
        segment_index_bytes: int("segment.index.bytes") as u64,
        index_interval_bytes: int("index.interval.bytes") as u64,
        flush_interval_messages: int("flush.messages") as u64,
        flush_interval_ms: int("flush.ms"),
        retention_ms: int("retention.ms"),
        retention_bytes: int("retention.bytes"),
        cleanup_policy: CleanupPolicy::parse(&pick("cleanup.policy")).expect("checked when set"),
        message_timestamp_type: if pick("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        max_message_bytes: int("max.message.bytes") as usize,
        min_compaction_lag_ms: int("min.compaction.lag.ms"),
        delete_retention_ms: int("delete.retention.ms"),
        min_cleanable_dirty_ratio: pick("min.cleanable.dirty.ratio")
            .parse()
            .expect("checked when set"),
        cleaner_dedupe_buffer_bytes: broker.i64("log.cleaner.dedupe.buffer.size") as usize,
        producer_id_expiration_ms: broker.i64("producer.id.expiration.ms"),
        write_group_max_bytes: broker.i64("log.write.group.max.bytes") as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let mut broker = Values::new(BROKER_KEYS);
        assert_eq!(
            broker.set("log.retention.mss", "5"),
            Err(ConfigError::UnknownKey {
                key: "log.retention.mss".into()
            })
        );
        let error = broker.set("num.partitions", "zero").unwrap_err();
        assert!(
            error.to_string().contains("num.partitions") && error.to_string().contains("zero"),
            "{error}"
        );
        assert!(broker.set("num.partitions", "0").is_err(), "at least 1");
        assert!(broker.set("auto.create.topics.enable", "yes").is_err());
        assert!(broker.set_pair("num.partitions").is_err());
        broker.set_pair("num.partitions=6").unwrap();
        assert_eq!(broker.i32("num.partitions"), 6);
        assert_eq!(broker.i64("log.segment.bytes"), 1 << 30, "Kafka's default");
        assert!(broker.bool("auto.create.topics.enable"));
    }

    #[test]
    fn topic_overrides_fall_back_to_broker_defaults() {
        let mut broker = Values::new(BROKER_KEYS);
        broker.set("log.retention.ms", "1000").unwrap();
        broker.set("log.segment.bytes", "2048").unwrap();
        let mut topic = Values::new(TOPIC_KEYS);
        topic.set("segment.bytes", "4096").unwrap();
        topic.set("cleanup.policy", "compact,delete").unwrap();
        topic
            .set("message.timestamp.type", "LogAppendTime")
            .unwrap();
        let config = log_config(&broker, &topic);
        assert_eq!(config.retention_ms, 1000, "from log.retention.ms");
        assert_eq!(config.segment_bytes, 4096, "the topic's own");
        assert_eq!(config.cleanup_policy, CleanupPolicy::COMPACT_DELETE);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert!(topic.set("cleanup.policy", "shred").is_err());
        assert!(topic.set("min.cleanable.dirty.ratio", "1.5").is_err());
    }

    #[test]
    fn toml_files_flatten_tables_into_dotted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 3\n[log]\ndirs = \"/data/sluice\"\nretention.ms = 60000\n[auto.create.topics]\nenable = false\n",
        )
        .unwrap();
        let mut broker = Values::new(BROKER_KEYS);
        load_toml(&mut broker, &path).unwrap();
        assert_eq!(broker.i32("num.partitions"), 3);
        assert_eq!(broker.get("log.dirs"), "/data/sluice");
        assert_eq!(broker.i64("log.retention.ms"), 60000);
        assert!(!broker.bool("auto.create.topics.enable"));
        std::fs::write(&path, "[log]\nretention.mss = 1\n").unwrap();
        assert_eq!(
            load_toml(&mut Values::new(BROKER_KEYS), &path),
            Err(ConfigError::UnknownKey {
                key: "log.retention.mss".into()
            })
        );
        std::fs::write(&path, "not toml [").unwrap();
        assert!(matches!(
            load_toml(&mut Values::new(BROKER_KEYS), &path),
            Err(ConfigError::File { .. })
        ));
    }
}

/// Where a topic config's effective value comes from, in DescribeConfigs' terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG, 1).
    Topic,
    /// Changed on the running broker (DYNAMIC_BROKER_CONFIG, 2).
    Dynamic,
    /// From the broker's config file or `--set` (STATIC_BROKER_CONFIG, 4).
    Broker,
    /// Nobody set it (DEFAULT_CONFIG, 5).
    Default,
}

impl ConfigSource {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::Dynamic => 2,
            ConfigSource::Broker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// Every topic config with its effective value and where it comes from.
pub fn topic_effective(
    broker: &Values,
    topic: &Values,
) -> Vec<(&'static str, String, ConfigSource)> {
    TOPIC_KEYS
        .iter()
        .map(|key| {
            if topic.is_set(key.name) {
                return (
                    key.name,
                    topic.get(key.name).to_string(),
                    ConfigSource::Topic,
                );
            }
            match key.broker_default {
                Some(b) if broker.is_set(b) => {
                    (key.name, broker.get(b).to_string(), ConfigSource::Broker)
                }
                Some(b) => (key.name, broker.get(b).to_string(), ConfigSource::Default),
                None => (key.name, key.default.to_string(), ConfigSource::Default),
            }
        })
        .collect()
}
