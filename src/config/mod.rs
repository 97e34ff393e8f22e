//! Broker and topic configuration under Kafka's names, with Kafka's defaults.
//!
//! Every key is declared once in a table ([`BROKER_KEYS`], [`TOPIC_KEYS`]) with its type, bounds,
//! default and meaning; parsing, validation, `--set` overrides, the TOML file and (later)
//! DescribeConfigs all read the same table. An unknown key or a bad value is refused with a
//! message that names it.

#[rustfmt::skip]
mod kafka_keys;
mod keys;
mod security_keys;

pub use keys::{parse_listener, Key, Kind, DECLARED_BROKER_KEYS, DECLARED_TOPIC_KEYS};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

/// A Kafka config's type, as Kafka declares it (`src/config/kafka_keys.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kafka {
    Int,
    Long,
    Short,
    Double,
    Boolean,
    /// String, list, class and password keys.
    Text,
}

impl Kafka {
    fn kind(self) -> Kind {
        match self {
            Kafka::Int => Kind::Int {
                min: i32::MIN as i64,
                max: i32::MAX as i64,
            },
            Kafka::Long => Kind::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            Kafka::Short => Kind::Int {
                min: i16::MIN as i64,
                max: i16::MAX as i64,
            },
            Kafka::Double => Kind::Double {
                min: f64::MIN,
                max: f64::MAX,
            },
            Kafka::Boolean => Kind::Bool,
            Kafka::Text => Kind::Any,
        }
    }
}

/// Kafka's PASSWORD-type broker keys (and Sluice's in-line private key): DescribeConfigs names
/// them as sensitive and never says their value.
pub fn is_sensitive(name: &str) -> bool {
    name.ends_with(".password")
        || name.ends_with("sasl.jaas.config")
        || matches!(
            name,
            "ssl.keystore.key"
                | "ssl.keystore.certificate.chain"
                | "ssl.truststore.certificates"
                | "password.encoder.secret"
                | "password.encoder.old.secret"
                | "delegation.token.secret.key"
                | "delegation.token.master.key"
        )
}

/// What DescribeConfigs says of a key Sluice accepts for Kafka's sake but does not use.
pub const NO_EFFECT_DOC: &str =
    "a Kafka config Sluice accepts, stores and describes; it has no effect";

/// Every broker key: the ones Sluice uses ([`DECLARED_BROKER_KEYS`]), then every other broker
/// config Kafka documents, with Kafka's type and default and no effect, so that a Kafka user's
/// server.properties is taken as it is.
pub static BROKER_KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    let mut keys = DECLARED_BROKER_KEYS.to_vec();
    keys.extend_from_slice(security_keys::KEYS);
    for &(name, kind, default) in kafka_keys::BROKER {
        if !keys.iter().any(|k| k.name == name) {
            keys.push(Key {
                name,
                kind: kind.kind(),
                default,
                broker_default: None,
                doc: NO_EFFECT_DOC,
                effect: false,
            });
        }
    }
    keys
});

/// Every topic key: the ones Sluice uses ([`DECLARED_TOPIC_KEYS`]), then every other topic
/// config Kafka documents (no effect), each defaulting to its broker synonym as in Kafka.
pub static TOPIC_KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    let mut keys = DECLARED_TOPIC_KEYS.to_vec();
    for &(name, kind, synonym, default) in kafka_keys::TOPIC {
        if !keys.iter().any(|k| k.name == name) {
            keys.push(Key {
                name,
                kind: kind.kind(),
                default,
                broker_default: (!synonym.is_empty()).then_some(synonym),
                doc: NO_EFFECT_DOC,
                effect: false,
            });
        }
    }
    keys
});

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

/// `value` checked against `spec`'s kind (`key` as it was given, for the error).
fn checked(spec: &Key, key: &str, value: &str) -> Result<(), ConfigError> {
    spec.kind
        .check(value)
        .map_err(|reason| ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        })
}

/// A validated set of values for the keys of one table; keys not set take their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Values {
    table: &'static [Key],
    set: BTreeMap<&'static str, String>,
    /// Kafka's per-listener keys, `listener.name.LISTENER.[MECHANISM.]KEY` (the listener's name
    /// in lower case), as set: read by [`Values::for_listener`].
    per_listener: BTreeMap<String, String>,
}

impl Values {
    pub fn new(table: &'static [Key]) -> Values {
        Values {
            table,
            set: BTreeMap::new(),
            per_listener: BTreeMap::new(),
        }
    }

    /// Sets `key` to `value` after checking both against the table.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if let Some(rest) = key.strip_prefix("listener.name.") {
            return self.set_per_listener(key, rest, value);
        }
        let spec =
            self.table
                .iter()
                .find(|k| k.name == key)
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: key.to_string(),
                })?;
        checked(spec, key, value)?;
        self.set.insert(spec.name, value.trim().to_string());
        Ok(())
    }

    /// `listener.name.LISTENER.KEY` or `listener.name.LISTENER.MECHANISM.sasl.KEY`: checked as
    /// KEY is (a key Kafka knows; only some are read per listener, [`Values::for_listener`]).
    fn set_per_listener(&mut self, key: &str, rest: &str, value: &str) -> Result<(), ConfigError> {
        let unknown = || ConfigError::UnknownKey {
            key: key.to_string(),
        };
        let (listener, name) = rest.split_once('.').ok_or_else(unknown)?;
        let listener = listener.to_ascii_lowercase();
        let known = |name: &str| self.table.iter().find(|k| k.name == name);
        // KEY, or MECHANISM.KEY for a SASL key (`scram-sha-512.sasl.jaas.config`).
        let (spec, normal) = match (known(name), name.split_once('.')) {
            (Some(spec), _) => (spec, format!("listener.name.{listener}.{name}")),
            (None, Some((mechanism, key))) if key.starts_with("sasl.") => (
                known(key).ok_or_else(unknown)?,
                format!(
                    "listener.name.{listener}.{}.{key}",
                    mechanism.to_ascii_lowercase()
                ),
            ),
            _ => return Err(unknown()),
        };
        checked(spec, key, value)?;
        self.per_listener.insert(normal, value.trim().to_string());
        Ok(())
    }

    /// KEY for `listener` (and SASL `mechanism`, for `sasl.jaas.config`): Kafka's
    /// `listener.name.LISTENER.[MECHANISM.]KEY` where set, else KEY.
    pub fn for_listener(&self, listener: &str, mechanism: Option<&str>, key: &str) -> &str {
        let listener = listener.to_ascii_lowercase();
        let named = match mechanism {
            Some(m) => format!("listener.name.{listener}.{}.{key}", m.to_ascii_lowercase()),
            None => format!("listener.name.{listener}.{key}"),
        };
        match self.per_listener.get(&named) {
            Some(value) => value,
            None => self.get(key),
        }
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

    /// The keys set here that Sluice accepts for Kafka's sake but does not use.
    pub fn without_effect(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.set.keys().copied().filter(|k| !self.spec(k).effect)
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
        max_compaction_lag_ms: int("max.compaction.lag.ms"),
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
    fn every_key_has_a_valid_default_and_topic_keys_map_to_broker_keys() {
        // An unused Kafka key whose default Kafka computes at run time has none here ("").
        let computed = |key: &Key, default: &str| !key.effect && default.is_empty();
        for key in BROKER_KEYS.iter().filter(|k| !computed(k, k.default)) {
            assert_eq!(key.kind.check(key.default), Ok(()), "{}", key.name);
        }
        let broker = Values::new(&BROKER_KEYS);
        for key in TOPIC_KEYS.iter() {
            let default = match key.broker_default {
                Some(b) => broker.get(b),
                None => key.default,
            };
            // Every topic key has a valid value: clients write back what they describe.
            assert_eq!(key.kind.check(default), Ok(()), "{}", key.name);
        }
        assert!(BROKER_KEYS.len() > 300, "{}", BROKER_KEYS.len());
    }

    /// The keys a README list names: every `backticked` word between `start` and `end`.
    fn readme_list(readme: &str, start: &str, end: &str) -> std::collections::BTreeSet<String> {
        let from = readme.find(start).expect("the list") + start.len();
        let to = from + readme[from..].find(end).expect("the list's end");
        readme[from..to]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_readme_lists_exactly_the_keys_without_effect() {
        let readme = include_str!("../../README.md");
        let unused = |keys: &[Key]| -> std::collections::BTreeSet<String> {
            keys.iter()
                .filter(|k| !k.effect)
                .map(|k| k.name.to_string())
                .collect()
        };
        let broker = readme_list(readme, "- Broker configs without effect", "</details>");
        assert_eq!(
            broker,
            unused(&BROKER_KEYS),
            "README: broker keys without effect"
        );
        let counted = format!("- Broker configs without effect ({}):", broker.len());
        assert!(readme.contains(&counted), "README: {counted}");
        let topic = readme_list(readme, "- Topic configs without effect:", "\n- ");
        assert_eq!(
            topic,
            unused(&TOPIC_KEYS),
            "README: topic keys without effect"
        );
    }

    #[test]
    fn a_kafka_server_properties_is_taken_as_it_is() {
        let mut broker = Values::new(&BROKER_KEYS);
        let pasted = [
            ("broker.id", "0"),
            ("num.network.threads", "3"),
            ("num.io.threads", "8"),
            ("socket.send.buffer.bytes", "102400"),
            ("log.retention.hours", "168"),
            ("zookeeper.connect", "localhost:2181"),
            ("offsets.topic.replication.factor", "1"),
            ("transaction.state.log.min.isr", "1"),
            ("group.initial.rebalance.delay.ms", "0"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("sasl.kerberos.min.time.before.relogin", "58000"),
            ("background.threads", "9"),
        ];
        for (key, value) in pasted {
            broker
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(broker.get(key), value);
        }
        // Kafka's types still hold, and a name Kafka does not know is still refused.
        assert!(broker.set("num.io.threads", "eight").is_err());
        assert!(broker.set("log.preallocate", "maybe").is_err());
        assert!(broker.set("num.io.thread", "8").is_err());
        // Unset, a key Sluice does not use reads as Kafka's default.
        assert_eq!(broker.get("num.replica.fetchers"), "1");
        let unused = BROKER_KEYS
            .iter()
            .find(|k| k.name == "num.io.threads")
            .unwrap();
        assert!(!unused.effect);
        let used = BROKER_KEYS
            .iter()
            .find(|k| k.name == "num.partitions")
            .unwrap();
        assert!(used.effect);
    }

    #[test]
    fn every_kafka_topic_config_is_accepted_and_defaults_to_its_broker_synonym() {
        let broker = Values::new(&BROKER_KEYS);
        let mut topic = Values::new(&TOPIC_KEYS);
        for (name, value) in [
            ("file.delete.delay.ms", "30000"),
            ("max.compaction.lag.ms", "3600000"),
            ("segment.jitter.ms", "100"),
            ("preallocate", "true"),
            ("message.timestamp.after.max.ms", "1000"),
            ("leader.replication.throttled.replicas", "*"),
            ("remote.storage.enable", "false"),
        ] {
            topic
                .set(name, value)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(log_config(&broker, &topic).max_compaction_lag_ms, 3_600_000);
        let effective = topic_effective(&broker, &Values::new(&TOPIC_KEYS));
        let find = |name: &str| {
            effective
                .iter()
                .find(|(k, ..)| *k == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(
            find("file.delete.delay.ms"),
            "60000",
            "log.segment.delete.delay.ms"
        );
        assert_eq!(find("max.compaction.lag.ms"), "9223372036854775807");
        assert_eq!(find("remote.storage.enable"), "false");
        assert_eq!(TOPIC_KEYS.len(), 36, "Kafka 3.9's topic configs");
    }

    #[test]
    fn per_listener_keys_are_read_for_their_listener() {
        let mut values = Values::new(&BROKER_KEYS);
        let jaas = "ScramLoginModule required username=\"b\" password=\"p\";";
        values
            .set(
                "listener.name.INTERNAL.SCRAM-SHA-512.sasl.jaas.config",
                jaas,
            )
            .unwrap();
        values
            .set(
                "listener.name.internal.ssl.endpoint.identification.algorithm",
                "",
            )
            .unwrap();
        values
            .set("listener.name.external.ssl.keystore.password", "x")
            .unwrap();
        assert_eq!(
            values.for_listener("INTERNAL", Some("SCRAM-SHA-512"), "sasl.jaas.config"),
            jaas
        );
        assert_eq!(
            values.for_listener("internal", Some("PLAIN"), "sasl.jaas.config"),
            ""
        );
        assert_eq!(
            values.for_listener("INTERNAL", None, "ssl.endpoint.identification.algorithm"),
            ""
        );
        assert_eq!(
            values.for_listener("EXTERNAL", None, "ssl.endpoint.identification.algorithm"),
            "https"
        );
        for bad in [
            "listener.name.internal.no.such.key",
            "listener.name.internal",
            "listener.name.internal.plain.log.dirs",
        ] {
            assert!(
                matches!(values.set(bad, "x"), Err(ConfigError::UnknownKey { .. })),
                "{bad}"
            );
        }
        assert!(values
            .set("listener.name.internal.connections.max.reauth.ms", "soon")
            .is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let mut broker = Values::new(&BROKER_KEYS);
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
        let mut broker = Values::new(&BROKER_KEYS);
        broker.set("log.retention.ms", "1000").unwrap();
        broker.set("log.segment.bytes", "2048").unwrap();
        let mut topic = Values::new(&TOPIC_KEYS);
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
        let mut broker = Values::new(&BROKER_KEYS);
        load_toml(&mut broker, &path).unwrap();
        assert_eq!(broker.i32("num.partitions"), 3);
        assert_eq!(broker.get("log.dirs"), "/data/sluice");
        assert_eq!(broker.i64("log.retention.ms"), 60000);
        assert!(!broker.bool("auto.create.topics.enable"));
        std::fs::write(&path, "[log]\nretention.mss = 1\n").unwrap();
        assert_eq!(
            load_toml(&mut Values::new(&BROKER_KEYS), &path),
            Err(ConfigError::UnknownKey {
                key: "log.retention.mss".into()
            })
        );
        std::fs::write(&path, "not toml [").unwrap();
        assert!(matches!(
            load_toml(&mut Values::new(&BROKER_KEYS), &path),
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
