//! Changes to the image and the state machine that applies them. `apply` is a pure function of
//! the image and the change: no clock, no randomness (a new topic's id is drawn when the change
//! is made, by [`Change::create_topic`], and travels in it).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::image::TOPIC_PARTITIONS_MAX;
use super::image::{Image, TopicMeta, DYNAMIC_BROKER_KEYS, TOPIC_NAME_BYTES_MAX};
use crate::config::{Values, BROKER_KEYS, DECLARED_BROKER_KEYS, TOPIC_KEYS};

/// A change the controller makes to the image.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateTopic {
        name: String,
        id: Uuid,
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

impl Change {
    /// Creates topic `name` under a fresh id.
    pub fn create_topic(
        name: impl Into<String>,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Change {
        Change::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        }
    }

    /// Creates one of Kafka's internal topics (`__consumer_offsets`, `__transaction_state`):
    /// compacted, in segments of 100 MiB, as Kafka makes them.
    pub fn create_internal_topic(name: &str, partitions: i32) -> Change {
        let configs = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), (100 << 20).to_string()),
        ];
        Change::create_topic(name, partitions, configs.into())
    }

    /// The topic this change is about, if it is about one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Change::CreateTopic { name, .. }
            | Change::DeleteTopic { name }
            | Change::CreatePartitions { name, .. }
            | Change::SetTopicConfigs { name, .. } => Some(name),
            Change::SetBrokerConfigs { .. } => None,
        }
    }
}

/// Why a change was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("topic name `{0}` is not 1 to {TOPIC_NAME_BYTES_MAX} of [a-zA-Z0-9._-] (nor . or ..)")]
    InvalidTopicName(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("a topic already has the id {0}")]
    TopicIdInUse(Uuid),
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// A partition count out of bounds, or not larger than the topic's.
    #[error("{0}")]
    InvalidPartitions(String),
    /// An unknown config key, a bad value, or a broker key that takes a restart.
    #[error("{0}")]
    InvalidConfig(String),
    /// Refused before it was applied: more than this node can hold.
    #[error("{0}")]
    PolicyViolation(String),
    /// Applied, but the new image could not be made durable: nothing changed.
    #[error("cannot write the metadata: {0}")]
    NotStored(String),
    /// No controller took the change.
    #[error("{0}")]
    NoController(String),
}

pub fn validate_topic_name(name: &str) -> Result<(), ChangeError> {
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
        Err(ChangeError::InvalidTopicName(name.to_string()))
    }
}

/// Checks topic config overrides against the table; the error names the key.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ChangeError> {
    let mut values = Values::new(&TOPIC_KEYS);
    for (key, value) in configs {
        values
            .set(key, value)
            .map_err(|e| ChangeError::InvalidConfig(e.to_string()))?;
    }
    Ok(())
}

/// Checks runtime broker config changes: known, changeable at runtime, and valid.
pub fn validate_broker_configs(configs: &BTreeMap<String, String>) -> Result<(), ChangeError> {
    let mut values = Values::new(&BROKER_KEYS);
    for (key, value) in configs {
        values
            .set(key, value)
            .map_err(|e| ChangeError::InvalidConfig(e.to_string()))?;
        // A key Sluice does not use may change at any time: it is only stored and described.
        let used = DECLARED_BROKER_KEYS.iter().any(|k| k.name == key.as_str());
        if used && !DYNAMIC_BROKER_KEYS.contains(&key.as_str()) {
            return Err(ChangeError::InvalidConfig(format!(
                "`{key}` cannot change while the broker runs: set it in the config file or with --set and restart"
            )));
        }
    }
    Ok(())
}

/// Applies `change` to a copy of `image`: the next image (its revision one higher), or why not.
/// Pure: the caller stores and broadcasts.
pub fn apply(image: &Image, change: &Change) -> Result<Image, ChangeError> {
    let mut next = image.clone();
    next.revision += 1;
    match change {
        Change::CreateTopic {
            name,
            id,
            partitions,
            configs,
        } => {
            validate_topic_name(name)?;
            if next.topics.contains_key(name) {
                return Err(ChangeError::TopicExists(name.clone()));
            }
            if next.topic_by_id(*id).is_some() {
                return Err(ChangeError::TopicIdInUse(*id));
            }
            if !(1..=TOPIC_PARTITIONS_MAX).contains(partitions) {
                return Err(ChangeError::InvalidPartitions(format!(
                    "partitions must be 1 to {TOPIC_PARTITIONS_MAX}, not {partitions}"
                )));
            }
            validate_topic_configs(configs)?;
            let meta = TopicMeta {
                id: *id,
                partitions: *partitions,
                configs: configs.clone(),
            };
            next.topics.insert(name.clone(), meta);
        }
        Change::DeleteTopic { name } => {
            if next.topics.remove(name).is_none() {
                return Err(ChangeError::UnknownTopic(name.clone()));
            }
        }
        Change::CreatePartitions { name, count } => {
            let meta = next
                .topics
                .get_mut(name)
                .ok_or_else(|| ChangeError::UnknownTopic(name.clone()))?;
            if *count <= meta.partitions {
                return Err(ChangeError::InvalidPartitions(format!(
                    "topic `{name}` has {} partitions; the new count must be larger, not {count}",
                    meta.partitions
                )));
            }
            if *count > TOPIC_PARTITIONS_MAX {
                return Err(ChangeError::InvalidPartitions(format!(
                    "at most {TOPIC_PARTITIONS_MAX} partitions"
                )));
            }
            meta.partitions = *count;
        }
        Change::SetTopicConfigs { name, configs } => {
            validate_topic_configs(configs)?;
            let meta = next
                .topics
                .get_mut(name)
                .ok_or_else(|| ChangeError::UnknownTopic(name.clone()))?;
            meta.configs = configs.clone();
        }
        Change::SetBrokerConfigs { configs } => {
            validate_broker_configs(configs)?;
            next.broker_configs = configs.clone();
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let mut image = Image::default();
        let configs = [("retention.ms".to_string(), "1000".to_string())].into();
        let create = Change::create_topic("a.b-c_d", 3, configs);
        image = apply(&image, &create).unwrap();
        let runtime = Change::SetBrokerConfigs {
            configs: [("log.retention.ms".to_string(), "5000".to_string())].into(),
        };
        image = apply(&image, &runtime).unwrap();
        let static_only = Change::SetBrokerConfigs {
            configs: [("log.dirs".to_string(), "/elsewhere".to_string())].into(),
        };
        assert!(matches!(
            apply(&image, &static_only),
            Err(ChangeError::InvalidConfig(_))
        ));
        assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
        assert_eq!(
            apply(&image, &create).unwrap_err(),
            ChangeError::TopicExists("a.b-c_d".into())
        );
    }

    #[test]
    fn the_same_changes_make_the_same_image() {
        let changes = [
            Change::create_topic("a", 2, BTreeMap::new()),
            Change::create_topic("b", 1, BTreeMap::new()),
            Change::CreatePartitions {
                name: "a".into(),
                count: 5,
            },
            Change::DeleteTopic { name: "b".into() },
        ];
        let replay = || {
            changes
                .iter()
                .try_fold(Image::default(), |image, change| apply(&image, change))
                .unwrap()
        };
        let image = replay();
        assert_eq!(image, replay());
        assert_eq!(image.revision, 4);
        assert_eq!(image.topics["a"].partitions, 5);
        assert!(!image.topics.contains_key("b"));
        // An id travels in its change: the same id twice is refused.
        let Change::CreateTopic { id, .. } = &changes[0] else {
            unreachable!()
        };
        let again = Change::CreateTopic {
            name: "c".into(),
            id: *id,
            partitions: 1,
            configs: BTreeMap::new(),
        };
        assert_eq!(
            apply(&image, &again).unwrap_err(),
            ChangeError::TopicIdInUse(*id)
        );
    }

    #[test]
    fn refuses_bad_names_counts_and_configs() {
        let image = Image::default();
        let create = |name: &str, partitions: i32, key: &str, value: &str| {
            Change::create_topic(name, partitions, [(key.into(), value.into())].into())
        };
        for bad in ["", ".", "..", "a/b", "spaced name", &"x".repeat(250)] {
            assert!(
                matches!(
                    apply(&image, &create(bad, 1, "retention.ms", "1")),
                    Err(ChangeError::InvalidTopicName(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            apply(&image, &create("t", 0, "retention.ms", "1")),
            Err(ChangeError::InvalidPartitions(_))
        ));
        let bad_config = apply(&image, &create("t", 1, "retention.ms", "soon")).unwrap_err();
        assert!(
            bad_config.to_string().contains("retention.ms"),
            "{bad_config:?}"
        );
        assert!(apply(&image, &create("t", 1, "no.such.key", "1")).is_err());
    }
}
