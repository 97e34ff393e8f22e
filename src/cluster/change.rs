//! Changes to the image and the state machine that applies them. `apply` is a pure function of
//! the image and the change: no clock, no randomness (a new topic's id is drawn when the change
//! is made, by [`Change::create_topic`], and travels in it).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::election;
use super::image::{Assignment, BrokerMeta, Image, TopicMeta, DYNAMIC_BROKER_KEYS};
use super::image::{TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use super::placement::{self, place};
use crate::config::{Values, BROKER_KEYS, DECLARED_BROKER_KEYS, TOPIC_KEYS};
use crate::model::NodeId;

/// A change the controller makes to the image (a Raft entry of the metadata quorum, as JSON).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// A broker joins (or comes back with new endpoints). In an image written before partitions
    /// had assignments, a broker registering alone takes every partition.
    RegisterBroker {
        id: NodeId,
        broker: BrokerMeta,
    },
    /// The controller has not heard from the broker within its session timeout
    /// (`broker.session.timeout.ms`), or hears from it again. Registering unfences too.
    FenceBroker {
        id: NodeId,
        /// The controller's `unclean.leader.election.enable` (static or runtime), for topics
        /// that do not set their own.
        #[serde(default)]
        unclean: bool,
    },
    UnfenceBroker {
        id: NodeId,
    },
    /// Voter `id` holds the log up to this change in its metadata directory `directory`: its
    /// votes count (again, if it came back with another directory: its data was lost).
    RegisterVoter {
        id: NodeId,
        directory: Uuid,
    },
    /// The broker is shutting down cleanly (Kafka's controlled shutdown): fenced, its
    /// leaderships handed to the ISR, until it registers again.
    ShutdownBroker {
        id: NodeId,
    },
    /// Replicas go on `replication_factor` registered brokers each (see [`place`]), or where
    /// `assignments` puts them (one replica list per partition, as CreateTopics names them).
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows the topic to `count` partitions, the new ones placed as the topic's first or on
    /// `assignments` (one replica list per new partition).
    CreatePartitions {
        name: String,
        count: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the runtime broker config overrides.
    SetBrokerConfigs {
        configs: BTreeMap<String, String>,
    },
    /// Hands out the next `count` producer ids (Kafka's AllocateProducerIds).
    AllocateProducerIds {
        count: i64,
    },
    /// Each partition whose preferred replica (its first) is live and in sync is led by it.
    ElectPreferredLeaders,
    /// A partition's leader changes its ISR (Kafka's AlterPartition), from the leader and
    /// partition epochs it holds.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Moves a partition's replicas onto `replicas` (Kafka's AlterPartitionReassignments), or
    /// cancels the reassignment that runs (`None`).
    ReassignPartition {
        topic: String,
        partition: i32,
        replicas: Option<Vec<NodeId>>,
    },
    /// Kafka's ElectLeaders for these partitions: preferred (the first replica, where live and
    /// in sync) or unclean (any live replica where none leads).
    ElectLeaders {
        unclean: bool,
        partitions: Vec<(String, i32)>,
    },
}

impl Change {
    /// Fences broker `id`, with unclean election off unless a topic turns it on.
    pub fn fence(id: NodeId) -> Change {
        Change::FenceBroker { id, unclean: false }
    }

    /// Creates topic `name` under a fresh id, with one replica of each partition.
    pub fn create_topic(
        name: impl Into<String>,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Change {
        Change::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: 1,
            configs,
            assignments: None,
        }
    }

    /// Creates one of Kafka's internal topics (`__consumer_offsets`, `__transaction_state`):
    /// compacted, in segments of 100 MiB, as Kafka makes them, with `replication_factor`
    /// replicas of each partition.
    pub fn create_internal_topic(name: &str, partitions: i32, replication_factor: u16) -> Change {
        let configs = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), (100 << 20).to_string()),
        ];
        Change::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: replication_factor.max(1),
            configs: configs.into(),
            assignments: None,
        }
    }

    /// The topic this change is about, if it is about one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Change::CreateTopic { name, .. }
            | Change::DeleteTopic { name }
            | Change::CreatePartitions { name, .. }
            | Change::SetTopicConfigs { name, .. } => Some(name),
            Change::AlterPartition { topic, .. } | Change::ReassignPartition { topic, .. } => {
                Some(topic)
            }
            Change::RegisterBroker { .. }
            | Change::RegisterVoter { .. }
            | Change::FenceBroker { .. }
            | Change::UnfenceBroker { .. }
            | Change::ShutdownBroker { .. }
            | Change::ElectPreferredLeaders
            | Change::ElectLeaders { .. }
            | Change::SetBrokerConfigs { .. }
            | Change::AllocateProducerIds { .. } => None,
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
    /// An ISR change from a leader or partition epoch that is not the current one.
    #[error("the partition's leader or partition epoch moved on")]
    StaleEpoch,
    /// An ISR change naming a broker that is not a live replica (or leaving out the leader).
    #[error("broker {0} cannot be in the ISR")]
    IneligibleReplica(i32),
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("topic `{0}` has no partition {1}")]
    UnknownPartition(String, i32),
    /// A reassignment's replicas: none, or one twice.
    #[error("{0}")]
    InvalidReplicas(String),
    #[error("partition {1} of `{0}` is not being reassigned")]
    NoReassignment(String, i32),
    #[error("replication factor {factor} is larger than the {brokers} live brokers")]
    InvalidReplicationFactor { factor: u16, brokers: usize },
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
        Change::FenceBroker { id, .. }
        | Change::UnfenceBroker { id }
        | Change::ShutdownBroker { id }
            if !next.brokers.contains_key(id) =>
        {
            return Err(ChangeError::UnknownBroker(id.0));
        }
        Change::FenceBroker { id, unclean } => {
            next.fenced.insert(*id);
            election::fence(&mut next, *id, *unclean);
        }
        Change::UnfenceBroker { id } => {
            next.fenced.remove(id);
            next.shut_down.remove(id);
            election::unfence(&mut next, *id);
        }
        Change::ElectPreferredLeaders => election::elect_preferred(&mut next),
        Change::ShutdownBroker { id } => {
            next.fenced.insert(*id);
            next.shut_down.insert(*id);
            election::fence(&mut next, *id, false);
        }
        Change::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } => {
            let alter = election::AlterIsr {
                topic,
                partition: *partition,
                leader: *leader,
                leader_epoch: crate::model::Epoch(*leader_epoch),
                partition_epoch: *partition_epoch,
                isr,
            };
            election::alter_isr(&mut next, alter)?;
            election::complete_reassignments(&mut next, topic);
        }
        Change::ReassignPartition {
            topic,
            partition,
            replicas,
        } => election::reassign(&mut next, topic, *partition, replicas.as_deref())?,
        Change::ElectLeaders {
            unclean,
            partitions,
        } => election::elect_leaders(&mut next, *unclean, partitions),
        Change::RegisterBroker { id, broker } => {
            next.shut_down.remove(id);
            if next.fenced.remove(id) {
                election::unfence(&mut next, *id);
            }
            next.brokers.insert(*id, broker.clone());
            if next.brokers.len() == 1 {
                for meta in next.topics.values_mut() {
                    if meta.assignments.is_empty() {
                        meta.assignments = (0..meta.partitions)
                            .map(|_| Assignment::new(vec![*id]))
                            .collect();
                    }
                }
            }
        }
        Change::RegisterVoter { id, directory } => {
            next.voter_dirs.insert(*id, *directory);
        }
        Change::CreateTopic {
            name,
            id,
            partitions,
            replication_factor,
            configs,
            assignments,
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
            let placed = match assignments {
                Some(manual) if manual.len() != *partitions as usize => {
                    return Err(ChangeError::InvalidReplicas(format!(
                        "{} replica lists for {partitions} partitions",
                        manual.len()
                    )));
                }
                Some(manual) => placement::manual(&next, manual, None)?,
                None => place(&next, *id, 0..*partitions, *replication_factor)?,
            };
            let meta = TopicMeta {
                id: *id,
                partitions: *partitions,
                configs: configs.clone(),
                assignments: placed.into(),
            };
            next.topics.insert(name.clone(), meta);
        }
        Change::DeleteTopic { name } => {
            if next.topics.remove(name).is_none() {
                return Err(ChangeError::UnknownTopic(name.clone()));
            }
        }
        Change::CreatePartitions {
            name,
            count,
            assignments,
        } => {
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
            let factor = meta.assignments.first().map_or(1, |a| a.replicas.len());
            let added = match assignments {
                Some(manual) if manual.len() != (*count - meta.partitions) as usize => {
                    return Err(ChangeError::InvalidReplicas(format!(
                        "{} replica lists for {} new partitions",
                        manual.len(),
                        count - meta.partitions
                    )));
                }
                Some(manual) => placement::manual(image, manual, Some(factor))?,
                None => place(image, meta.id, meta.partitions..*count, factor as u16)?,
            };
            meta.assignments = meta.assignments.iter().cloned().chain(added).collect();
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
        Change::AllocateProducerIds { count } => {
            assert!(*count > 0, "a block of producer ids is not empty");
            next.producer_ids_end += count;
        }
    }
    Ok(next)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An image with brokers 1..=n registered.
    pub(in crate::cluster) fn with_brokers(n: i32) -> Image {
        (1..=n).fold(Image::default(), |image, id| {
            let broker = BrokerMeta {
                host: "127.0.0.1".into(),
                port: 9092 + id as u16,
                rack: None,
            };
            let id = NodeId(id);
            apply(&image, &Change::RegisterBroker { id, broker }).unwrap()
        })
    }

    /// Creates `name` with `factor` replicas of each of its `partitions`.
    pub(in crate::cluster) fn replicated(name: &str, partitions: i32, factor: u16) -> Change {
        match Change::create_topic(name, partitions, BTreeMap::new()) {
            Change::CreateTopic {
                name,
                id,
                partitions,
                configs,
                ..
            } => Change::CreateTopic {
                name,
                id,
                partitions,
                replication_factor: factor,
                configs,
                assignments: None,
            },
            _ => unreachable!(),
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let mut image = with_brokers(1);
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
                assignments: None,
            },
            Change::DeleteTopic { name: "b".into() },
        ];
        let replay = || {
            changes
                .iter()
                .try_fold(with_brokers(3), |image, change| apply(&image, change))
                .unwrap()
        };
        let image = replay();
        assert_eq!(image, replay());
        assert_eq!(image.revision, 3 + 4);
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
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: None,
        };
        assert_eq!(
            apply(&image, &again).unwrap_err(),
            ChangeError::TopicIdInUse(*id)
        );
    }

    #[test]
    fn a_fenced_broker_gets_no_new_replicas_until_it_returns() {
        let image = with_brokers(3);
        let fence = Change::fence(NodeId(2));
        let image = apply(&image, &fence).unwrap();
        assert_eq!(image.live_brokers().count(), 2);
        let image = apply(&image, &replicated("t", 4, 1)).unwrap();
        assert!(image.topics["t"]
            .assignments
            .iter()
            .all(|a| a.leader != NodeId(2)));
        assert_eq!(
            apply(&image, &replicated("u", 1, 3)).unwrap_err(),
            ChangeError::InvalidReplicationFactor {
                factor: 3,
                brokers: 2
            }
        );
        assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
        assert_eq!(
            apply(&image, &Change::fence(NodeId(9))).unwrap_err(),
            ChangeError::UnknownBroker(9)
        );
        let back = apply(&image, &Change::UnfenceBroker { id: NodeId(2) }).unwrap();
        assert_eq!(back.live_brokers().count(), 3);
        // Registering again unfences too.
        let broker = image.brokers[&NodeId(2)].clone();
        let registered = Change::RegisterBroker {
            id: NodeId(2),
            broker,
        };
        assert!(apply(&image, &registered).unwrap().fenced.is_empty());
    }

    #[test]
    fn replicas_spread_over_the_brokers_and_new_partitions_follow() {
        let image = apply(&with_brokers(3), &replicated("t", 6, 3)).unwrap();
        let meta = &image.topics["t"];
        assert_eq!(meta.assignments.len(), 6);
        let mut leads = BTreeMap::new();
        for a in meta.assignments.iter() {
            let mut replicas = a.replicas.clone();
            replicas.sort();
            replicas.dedup();
            assert_eq!(replicas.len(), 3, "{a:?}");
            assert_eq!((a.leader, &a.isr), (a.replicas[0], &a.replicas));
            *leads.entry(a.leader).or_insert(0) += 1;
        }
        assert_eq!(leads.values().collect::<Vec<_>>(), [&2, &2, &2]);
        let grown = Change::CreatePartitions {
            name: "t".into(),
            count: 8,
            assignments: None,
        };
        let image = apply(&image, &grown).unwrap();
        assert_eq!(image.topics["t"].assignments.len(), 8);
        assert_eq!(image.topics["t"].assignments[7].replicas.len(), 3);
        assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
        assert_eq!(
            apply(&image, &replicated("u", 1, 4)).unwrap_err(),
            ChangeError::InvalidReplicationFactor {
                factor: 4,
                brokers: 3
            }
        );
    }

    #[test]
    fn a_broker_registering_alone_takes_partitions_written_without_assignments() {
        let mut image = with_brokers(1);
        image = apply(&image, &Change::create_topic("old", 2, BTreeMap::new())).unwrap();
        image.brokers.clear();
        image.topics.get_mut("old").unwrap().assignments = Default::default();
        let image = Image::from_toml(&image.to_toml()).unwrap();
        assert!(image.topics["old"].assignments.is_empty());
        let broker = BrokerMeta {
            host: "localhost".into(),
            port: 9092,
            rack: None,
        };
        let id = NodeId(7);
        let image = apply(&image, &Change::RegisterBroker { id, broker }).unwrap();
        let assignments = &image.topics["old"].assignments;
        assert!(assignments
            .iter()
            .map(|a| &a.replicas)
            .eq([&vec![id], &vec![id]]));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let block = Change::AllocateProducerIds { count: 1000 };
        let image = apply(&Image::default(), &block).unwrap();
        let image = apply(&image, &block).unwrap();
        assert_eq!(image.producer_ids_end, 2000);
        assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
    }

    #[test]
    fn refuses_bad_names_counts_and_configs() {
        let image = with_brokers(1);
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

    #[test]
    fn a_fenced_leader_hands_over_to_the_isr_and_the_last_in_sync_leads_again() {
        let image = apply(&with_brokers(3), &replicated("t", 1, 3)).unwrap();
        let a = |image: &Image| image.topics["t"].assignments[0].clone();
        let first = a(&image);
        let leader = first.leader;
        let image = apply(&image, &Change::fence(leader)).unwrap();
        let second = a(&image);
        assert_ne!(second.leader, leader);
        assert_eq!(second.leader_epoch.0, first.leader_epoch.0 + 1);
        assert_eq!(second.partition_epoch, first.partition_epoch + 1);
        assert!(!second.isr.contains(&leader) && second.isr.len() == 2);
        // A follower fenced leaves the ISR; the leader stays.
        let follower = *second.isr.iter().find(|f| **f != second.leader).unwrap();
        let image = apply(&image, &Change::fence(follower)).unwrap();
        let third = a(&image);
        assert_eq!(
            (third.leader, &third.isr),
            (second.leader, &vec![second.leader])
        );
        assert_eq!(third.leader_epoch, second.leader_epoch);
        // The last in sync fenced: offline, nothing changes, and brokers out of sync that return
        // do not lead.
        let last = third.leader;
        let image = apply(&image, &Change::fence(last)).unwrap();
        assert_eq!(a(&image), third);
        let image = apply(&image, &Change::UnfenceBroker { id: leader }).unwrap();
        assert_eq!(a(&image), third);
        let image = apply(&image, &Change::UnfenceBroker { id: last }).unwrap();
        assert_eq!(a(&image).leader, last);
        // The leader grows the ISR from the epochs it holds, with live replicas only.
        let now = a(&image);
        let alter = |isr: Vec<NodeId>, partition_epoch| Change::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: now.leader,
            leader_epoch: now.leader_epoch.0,
            partition_epoch,
            isr,
        };
        let all = now.replicas.clone();
        assert_eq!(
            apply(&image, &alter(all.clone(), now.partition_epoch)).unwrap_err(),
            ChangeError::IneligibleReplica(follower.0)
        );
        let two = vec![now.leader, leader];
        assert_eq!(
            apply(&image, &alter(two.clone(), now.partition_epoch - 1)).unwrap_err(),
            ChangeError::StaleEpoch
        );
        assert_eq!(
            apply(&image, &alter(vec![leader], now.partition_epoch)).unwrap_err(),
            ChangeError::IneligibleReplica(now.leader.0)
        );
        let image = apply(&image, &alter(two, now.partition_epoch)).unwrap();
        assert_eq!(a(&image).isr.len(), 2);
        assert_eq!(a(&image).partition_epoch, now.partition_epoch + 1);
        // The preferred replica (the first) is in sync again: an election makes it the leader.
        let preferred = a(&image).replicas[0];
        let moves = super::super::election::preferred_elections(&image);
        let elected = apply(&image, &Change::ElectPreferredLeaders).unwrap();
        assert_eq!(
            (moves, a(&elected).leader),
            if a(&image).isr.contains(&preferred) && a(&image).leader != preferred {
                (1, preferred)
            } else {
                (0, a(&image).leader)
            }
        );
        assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let image = apply(&with_brokers(2), &replicated("t", 1, 2)).unwrap();
        let leader = image.topics["t"].assignments[0].leader;
        let other = image.topics["t"].assignments[0].replicas[1];
        // The follower drops out of sync, then the leader is fenced.
        let a = image.topics["t"].assignments[0].clone();
        let shrink = Change::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch: a.leader_epoch.0,
            partition_epoch: a.partition_epoch,
            isr: vec![leader],
        };
        let image = apply(&image, &shrink).unwrap();
        let fenced = apply(&image, &Change::fence(leader)).unwrap();
        assert_eq!(fenced.topics["t"].assignments[0].leader, leader, "offline");
        // The controller's default lets it, unless the topic says no.
        let controller_says = Change::FenceBroker {
            id: leader,
            unclean: true,
        };
        let fenced = apply(&image, &controller_says).unwrap();
        assert_eq!(fenced.topics["t"].assignments[0].leader, other);
        let topic_says_no = Change::SetTopicConfigs {
            name: "t".into(),
            configs: [("unclean.leader.election.enable".into(), "false".into())].into(),
        };
        let refusing = apply(&image, &topic_says_no).unwrap();
        let fenced = apply(&refusing, &controller_says).unwrap();
        assert_eq!(fenced.topics["t"].assignments[0].leader, leader);
        let unclean = Change::SetTopicConfigs {
            name: "t".into(),
            configs: [("unclean.leader.election.enable".into(), "true".into())].into(),
        };
        let image = apply(&image, &unclean).unwrap();
        let fenced = apply(&image, &Change::fence(leader)).unwrap();
        let a = &fenced.topics["t"].assignments[0];
        assert_eq!((a.leader, &a.isr), (other, &vec![other]));
    }
}
