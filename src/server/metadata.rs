//! The metadata image: topics, their ids, partition counts and config overrides, with a revision.
//! Shard 0 is the controller: it changes the image one operation at a time, writes it to
//! `<log.dirs>/__cluster_metadata/topics.toml` (atomically), then broadcasts it to every shard and
//! answers only once all of them hold it. Every shard reads its own copy, never a shared lock.
//! (A single node; a Raft-replicated metadata log replaces the file when clusters arrive.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::config::{self, Values, TOPIC_KEYS};

pub const METADATA_DIR: &str = "__cluster_metadata";
const TOPICS_FILE: &str = "topics.toml";

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The most partitions one topic may have on this node.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
    /// Config overrides under Kafka's topic config names, already validated.
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    pub fn config_values(&self) -> Values {
        let mut values = Values::new(&TOPIC_KEYS);
        for (key, value) in &self.configs {
            values
                .set(key, value)
                .expect("topic configs are validated before they enter the image");
        }
        values
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub revision: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Broker configs changed at runtime (IncrementalAlterConfigs / AlterConfigs on the broker):
    /// they override the config file and `--set`.
    pub broker_configs: BTreeMap<String, String>,
}

/// The broker keys that may change while the broker runs; the others (listeners, log.dirs,
/// node.id, socket and cleaner sizes) take a restart.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "message.max.bytes",
    "min.insync.replicas",
    "compression.type",
    "producer.id.expiration.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.cleanup.policy",
    "log.message.timestamp.type",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
];

impl Image {
    /// The broker's effective configs: the static ones with this image's runtime changes on top.
    pub fn broker_values(&self, static_values: &Values) -> Values {
        let mut values = static_values.clone();
        for (key, value) in &self.broker_configs {
            values
                .set(key, value)
                .expect("broker configs are validated before they enter the image");
        }
        values
    }
}

impl Image {
    pub fn topic_by_id(&self, id: Uuid) -> Option<(&str, &TopicMeta)> {
        self.topics
            .iter()
            .find(|(_, meta)| meta.id == id)
            .map(|(name, meta)| (name.as_str(), meta))
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(METADATA_DIR).join(TOPICS_FILE)
    }

    /// Reads the image written by [`Image::to_toml`]; an absent file is an empty image.
    pub fn load(data_dir: &Path) -> Result<Image, String> {
        let path = Image::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Image::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let bad = |what: &str| format!("{}: {what}", path.display());
        let table: toml::Table = text.parse().map_err(|e| bad(&format!("{e}")))?;
        let revision = table
            .get("revision")
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| bad("no revision"))? as u64;
        let mut topics = BTreeMap::new();
        if let Some(entries) = table.get("topics").and_then(toml::Value::as_table) {
            for (name, entry) in entries {
                let id = entry
                    .get("id")
                    .and_then(toml::Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| bad(&format!("topic {name}: no id")))?;
                let partitions = entry
                    .get("partitions")
                    .and_then(toml::Value::as_integer)
                    .filter(|&n| n >= 1 && n <= TOPIC_PARTITIONS_MAX as i64)
                    .ok_or_else(|| bad(&format!("topic {name}: bad partition count")))?
                    as i32;
                let mut configs = BTreeMap::new();
                if let Some(table) = entry.get("configs").and_then(toml::Value::as_table) {
                    for (key, value) in table {
                        let value = value
                            .as_str()
                            .ok_or_else(|| bad(&format!("topic {name}: config {key}")))?;
                        Values::new(&TOPIC_KEYS)
                            .set(key, value)
                            .map_err(|e| bad(&format!("topic {name}: {e}")))?;
                        configs.insert(key.clone(), value.to_string());
                    }
                }
                topics.insert(
                    name.clone(),
                    TopicMeta {
                        id,
                        partitions,
                        configs,
                    },
                );
            }
        }
        let mut broker_configs = BTreeMap::new();
        if let Some(table) = table.get("broker_configs").and_then(toml::Value::as_table) {
            for (key, value) in table {
                let value = value
                    .as_str()
                    .ok_or_else(|| bad(&format!("broker config {key}")))?;
                validate_broker_configs(&[(key.clone(), value.to_string())].into())
                    .map_err(|e| bad(&e.message))?;
                broker_configs.insert(key.clone(), value.to_string());
            }
        }
        Ok(Image {
            revision,
            topics,
            broker_configs,
        })
    }

    pub fn to_toml(&self) -> String {
        let mut topics = toml::Table::new();
        for (name, meta) in &self.topics {
            let mut entry = toml::Table::new();
            entry.insert("id".into(), meta.id.to_string().into());
            entry.insert("partitions".into(), (meta.partitions as i64).into());
            let configs: toml::Table = meta
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::from(v.as_str())))
                .collect();
            entry.insert("configs".into(), configs.into());
            topics.insert(name.clone(), entry.into());
        }
        let mut root = toml::Table::new();
        root.insert("revision".into(), (self.revision as i64).into());
        root.insert("topics".into(), topics.into());
        let broker: toml::Table = self
            .broker_configs
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::from(v.as_str())))
            .collect();
        root.insert("broker_configs".into(), broker.into());
        format!(
            "# Sluice topic metadata, written by the controller. Do not edit while it runs.\n{root}"
        )
    }
}

/// A metadata change refused, with the Kafka error to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataError {
    pub code: i16,
    pub message: String,
}

impl MetadataError {
    pub fn new(code: i16, message: impl Into<String>) -> MetadataError {
        MetadataError {
            code,
            message: message.into(),
        }
    }
}

pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    use crate::protocol::ResponseError;
    let valid = !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(MetadataError::new(
            ResponseError::InvalidTopicException.code(),
            format!(
                "topic name `{name}` is not 1 to {TOPIC_NAME_BYTES_MAX} of [a-zA-Z0-9._-] (nor . or ..)"
            ),
        ))
    }
}

/// Checks topic config overrides against the table; the error names the key.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    let mut values = Values::new(&TOPIC_KEYS);
    for (key, value) in configs {
        values.set(key, value).map_err(|e| {
            MetadataError::new(
                crate::protocol::ResponseError::InvalidConfig.code(),
                e.to_string(),
            )
        })?;
    }
    Ok(())
}

/// Checks runtime broker config changes: known, changeable at runtime, and valid.
pub fn validate_broker_configs(configs: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    let invalid = |message: String| {
        MetadataError::new(
            crate::protocol::ResponseError::InvalidConfig.code(),
            message,
        )
    };
    let mut values = Values::new(&crate::config::BROKER_KEYS);
    for (key, value) in configs {
        values.set(key, value).map_err(|e| invalid(e.to_string()))?;
        // A key Sluice does not use may change at any time: it is only stored and described.
        let used = crate::config::DECLARED_BROKER_KEYS
            .iter()
            .any(|k| k.name == key.as_str());
        if used && !DYNAMIC_BROKER_KEYS.contains(&key.as_str()) {
            return Err(invalid(format!(
                "`{key}` cannot change while the broker runs: set it in the config file or with --set and restart"
            )));
        }
    }
    Ok(())
}

/// A change the controller makes to the image.
#[derive(Clone, Debug)]
pub enum Change {
    CreateTopic {
        name: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
    },
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the runtime broker config overrides.
    SetBrokerConfigs {
        configs: BTreeMap<String, String>,
    },
}

/// Applies `change` to a copy of `image`: the next image, or why not. Pure: the caller persists
/// and broadcasts.
pub fn apply(image: &Image, change: &Change) -> Result<Image, MetadataError> {
    use crate::protocol::ResponseError as E;
    let mut next = image.clone();
    next.revision += 1;
    match change {
        Change::CreateTopic {
            name,
            partitions,
            configs,
        } => {
            validate_topic_name(name)?;
            if next.topics.contains_key(name) {
                return Err(MetadataError::new(
                    E::TopicAlreadyExists.code(),
                    format!("topic `{name}` already exists"),
                ));
            }
            if !(1..=TOPIC_PARTITIONS_MAX).contains(partitions) {
                return Err(MetadataError::new(
                    E::InvalidPartitions.code(),
                    format!("partitions must be 1 to {TOPIC_PARTITIONS_MAX}, not {partitions}"),
                ));
            }
            validate_topic_configs(configs)?;
            next.topics.insert(
                name.clone(),
                TopicMeta {
                    id: Uuid::new_v4(),
                    partitions: *partitions,
                    configs: configs.clone(),
                },
            );
        }
        Change::DeleteTopic { name } => {
            if next.topics.remove(name).is_none() {
                return Err(unknown_topic(name));
            }
        }
        Change::CreatePartitions { name, count } => {
            let meta = next
                .topics
                .get_mut(name)
                .ok_or_else(|| unknown_topic(name))?;
            if *count <= meta.partitions {
                return Err(MetadataError::new(
                    E::InvalidPartitions.code(),
                    format!(
                        "topic `{name}` has {} partitions; the new count must be larger, not {count}",
                        meta.partitions
                    ),
                ));
            }
            if *count > TOPIC_PARTITIONS_MAX {
                return Err(MetadataError::new(
                    E::InvalidPartitions.code(),
                    format!("at most {TOPIC_PARTITIONS_MAX} partitions"),
                ));
            }
            meta.partitions = *count;
        }
        Change::SetTopicConfigs { name, configs } => {
            validate_topic_configs(configs)?;
            let meta = next
                .topics
                .get_mut(name)
                .ok_or_else(|| unknown_topic(name))?;
            meta.configs = configs.clone();
        }
        Change::SetBrokerConfigs { configs } => {
            validate_broker_configs(configs)?;
            next.broker_configs = configs.clone();
        }
    }
    Ok(next)
}

fn unknown_topic(name: &str) -> MetadataError {
    MetadataError::new(
        crate::protocol::ResponseError::UnknownTopicOrPartition.code(),
        format!("topic `{name}` does not exist"),
    )
}

/// The log config of `topic` on a broker with `broker` configs.
pub fn log_config(broker: &Values, topic: &TopicMeta) -> crate::storage::LogConfig {
    config::log_config(broker, &topic.config_values())
}

/// The codec a topic stores batches with, or `None` for `producer` (as sent): the topic's
/// `compression.type`, else the broker's.
pub fn topic_codec(broker: &Values, topic: &TopicMeta) -> Option<crate::model::Codec> {
    use crate::model::Codec;
    let name = topic
        .configs
        .get("compression.type")
        .map(String::as_str)
        .unwrap_or_else(|| broker.get("compression.type"));
    match name {
        "uncompressed" => Some(Codec::None),
        "gzip" => Some(Codec::Gzip),
        "snappy" => Some(Codec::Snappy),
        "lz4" => Some(Codec::Lz4),
        "zstd" => Some(Codec::Zstd),
        _ => None,
    }
}

/// Writes the image durably (temp file, fsync, rename, fsync of the directory).
pub async fn persist(
    data_dir: &Path,
    image: &Image,
    faults: &crate::io::Faults,
) -> std::io::Result<()> {
    let dir = data_dir.join(METADATA_DIR);
    std::fs::create_dir_all(&dir)?;
    crate::io::write_atomically(&Image::path(data_dir), image.to_toml().into_bytes(), faults).await
}

pub type SharedImage = Arc<Image>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let mut image = Image::default();
        let create = Change::CreateTopic {
            name: "a.b-c_d".into(),
            partitions: 3,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        };
        image = apply(&image, &create).unwrap();
        let runtime = Change::SetBrokerConfigs {
            configs: [("log.retention.ms".to_string(), "5000".to_string())].into(),
        };
        image = apply(&image, &runtime).unwrap();
        let static_only = Change::SetBrokerConfigs {
            configs: [("log.dirs".to_string(), "/elsewhere".to_string())].into(),
        };
        assert!(apply(&image, &static_only).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(METADATA_DIR)).unwrap();
        std::fs::write(Image::path(dir.path()), image.to_toml()).unwrap();
        assert_eq!(Image::load(dir.path()).unwrap(), image);
        assert_eq!(
            apply(&image, &create).unwrap_err().code,
            crate::protocol::ResponseError::TopicAlreadyExists.code()
        );
    }

    #[test]
    fn refuses_bad_names_counts_and_configs() {
        let image = Image::default();
        let create = |name: &str, partitions: i32, key: &str, value: &str| Change::CreateTopic {
            name: name.into(),
            partitions,
            configs: [(key.to_string(), value.to_string())].into(),
        };
        for bad in ["", ".", "..", "a/b", "spaced name", &"x".repeat(250)] {
            assert!(
                apply(&image, &create(bad, 1, "retention.ms", "1")).is_err(),
                "{bad}"
            );
        }
        assert!(apply(&image, &create("t", 0, "retention.ms", "1")).is_err());
        let bad_config = apply(&image, &create("t", 1, "retention.ms", "soon")).unwrap_err();
        assert!(
            bad_config.message.contains("retention.ms"),
            "{bad_config:?}"
        );
        assert!(apply(&image, &create("t", 1, "no.such.key", "1")).is_err());
    }
}
