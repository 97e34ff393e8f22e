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
use crate::security::acl::{self, AclBinding};
use crate::security::scram::{self, Credential, Mechanism};

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
    /// The broker leaves the cluster (Kafka's UnregisterBroker, for a broker taken out of
    /// service): no longer listed nor placed on, its leaderships handed to the ISR. It stays
    /// fenced, so that the replicas it still holds are offline, until it registers again (at
    /// its next start). A broker that does not vote then also leaves the metadata quorum.
    UnregisterBroker {
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
    /// Sets (or, with `None`, deletes) a user's SCRAM credential for one mechanism (Kafka's
    /// AlterUserScramCredentials).
    SetScramCredential {
        user: String,
        mechanism: Mechanism,
        credential: Option<Credential>,
    },
    /// Adds ACLs (Kafka's CreateAcls); those already there stay as they are.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes these ACLs (the ones DeleteAcls' filters matched).
    DeleteAcls {
        acls: Vec<AclBinding>,
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
            | Change::UnregisterBroker { .. }
            | Change::ElectPreferredLeaders
            | Change::ElectLeaders { .. }
            | Change::SetBrokerConfigs { .. }
            | Change::SetScramCredential { .. }
            | Change::CreateAcls { .. }
            | Change::DeleteAcls { .. }
            | Change::AllocateProducerIds { .. } => None,
        }
    }
}

/// Why a change was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("user `{0}` has no {1} credential")]
    NoCredential(String, &'static str),
    #[error("{0}")]
    UnacceptableCredential(String),
    #[error("{0}")]
    InvalidAcl(String),
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
        | Change::UnregisterBroker { id }
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
        Change::UnregisterBroker { id } => {
            next.fenced.insert(*id);
            next.shut_down.remove(id);
            election::fence(&mut next, *id, false);
            next.brokers.remove(id);
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
        Change::SetScramCredential {
            user,
            mechanism,
            credential,
        } => match credential {
            Some(credential) => {
                if user.is_empty() {
                    return Err(ChangeError::UnacceptableCredential(
                        "the user name is empty".into(),
                    ));
                }
                let range = scram::ITERATIONS_MIN..=scram::ITERATIONS_MAX;
                if !range.contains(&credential.iterations) {
                    return Err(ChangeError::UnacceptableCredential(format!(
                        "iterations must be between {} and {}",
                        scram::ITERATIONS_MIN,
                        scram::ITERATIONS_MAX
                    )));
                }
                next.scram
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            None => {
                let credentials = next.scram.get_mut(user);
                let removed = credentials.and_then(|c| c.remove(mechanism));
                if removed.is_none() {
                    return Err(ChangeError::NoCredential(user.clone(), mechanism.name()));
                }
                next.scram.retain(|_, credentials| !credentials.is_empty());
            }
        },
        Change::CreateAcls { acls } => {
            for binding in acls {
                acl::validate(binding).map_err(ChangeError::InvalidAcl)?;
            }
            next.acls = std::sync::Arc::new(next.acls.changed(acls, &[]));
        }
        Change::DeleteAcls { acls } => {
            next.acls = std::sync::Arc::new(next.acls.changed(&[], acls));
        }
        Change::AllocateProducerIds { count } => {
            assert!(*count > 0, "a block of producer ids is not empty");
            next.producer_ids_end += count;
        }
    }
    Ok(next)
}

#[cfg(test)]
#[path = "change_tests.rs"]
pub(super) mod tests;
