//! The metadata image and its text form (`topics.toml`, written by the store).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use super::change::validate_broker_configs;
use crate::config::{self, Values, TOPIC_KEYS};
use crate::model::{Codec, Epoch, NodeId};
use crate::security::acl::Acls;
use crate::security::scram::{Credential, Mechanism};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The most partitions one topic may have on this node.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// A broker of the cluster, as it registered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerMeta {
    /// Where clients reach it.
    pub host: String,
    pub port: u16,
    /// `broker.rack`, for placing replicas.
    pub rack: Option<String>,
    /// Where clients reach it through each of its listeners, by name (the Metadata a client
    /// asks on a listener names the brokers' endpoints of the same name). Empty in an image
    /// written before listeners had names: `host` and `port` serve every listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
    /// What it can hold, as it registered (None: registered before brokers said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// A broker's room for partitions (its descriptor budget): `partitions_per_shard` on each of its
/// `shards` shards (a partition's shard follows from its name and the shard count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub shards: u32,
    pub partitions_per_shard: u64,
}

/// A named listener's advertised address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl BrokerMeta {
    /// Where a client that came in through listener `listener` reaches this broker: the
    /// endpoint of the same name, or the broker's first (for "", the brokers' own traffic).
    pub fn endpoint(&self, listener: &str) -> (&str, u16) {
        match self.listeners.iter().find(|e| e.name == listener) {
            Some(e) => (&e.host, e.port),
            None => (&self.host, self.port),
        }
    }

    fn listeners_text(&self) -> String {
        let texts: Vec<String> = self
            .listeners
            .iter()
            .map(|e| match e.host.contains(':') {
                true => format!("{}://[{}]:{}", e.name, e.host, e.port),
                false => format!("{}://{}:{}", e.name, e.host, e.port),
            })
            .collect();
        texts.join(",")
    }
}

/// Where one partition's replicas are and which of them leads (Kafka's PartitionRecord).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub replicas: Vec<NodeId>,
    pub leader: NodeId,
    /// Bumped when the leader changes.
    pub leader_epoch: Epoch,
    /// Bumped by every change of the replicas, the leader or the ISR.
    pub partition_epoch: i32,
    /// The in-sync replicas, the leader among them.
    pub isr: Vec<NodeId>,
    /// While the replicas are being reassigned (KIP-455): those of `replicas` that are new and
    /// copying, and those that leave once the new ones are in sync. Both empty otherwise.
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

impl Assignment {
    /// `replicas/leader/leader epoch/partition epoch/ISR`, node lists comma-separated
    /// (`1,2,3/1/0/0/1,2`), then `/adding/removing` while a reassignment runs: the file holds one
    /// such word per partition, so that the image of a node with 10,000 partitions writes and
    /// reads in milliseconds.
    pub fn to_text(&self) -> String {
        let nodes = |nodes: &[NodeId]| {
            let ids: Vec<String> = nodes.iter().map(|n| n.0.to_string()).collect();
            ids.join(",")
        };
        let mut text = format!(
            "{}/{}/{}/{}/{}",
            nodes(&self.replicas),
            self.leader.0,
            self.leader_epoch.0,
            self.partition_epoch,
            nodes(&self.isr)
        );
        if self.is_reassigning() {
            text.push_str(&format!(
                "/{}/{}",
                nodes(&self.adding),
                nodes(&self.removing)
            ));
        }
        text
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a running reassignment ends with (all of them otherwise), in order.
    pub fn target(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .filter(|n| !self.removing.contains(n))
            .copied()
            .collect()
    }

    /// A new partition on `replicas`, the first of them leading, all in sync.
    pub fn new(replicas: Vec<NodeId>) -> Assignment {
        assert!(!replicas.is_empty(), "a partition has a replica");
        Assignment {
            leader: replicas[0],
            leader_epoch: Epoch(0),
            partition_epoch: 0,
            isr: replicas.clone(),
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
    /// Config overrides under Kafka's topic config names, already validated.
    pub configs: BTreeMap<String, String>,
    /// One per partition, in order (empty only in an image written before there were any, until
    /// its broker registers: see `Change::RegisterBroker`). Shared: a topic's metadata is
    /// cloned on every look-up, and a wide topic has thousands.
    pub assignments: Arc<[Assignment]>,
}

impl TopicMeta {
    /// The topic's config overrides as values (the defaults for the rest).
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
    pub brokers: BTreeMap<NodeId, BrokerMeta>,
    /// Registered brokers the controller has not heard from within `broker.session.timeout.ms`:
    /// not listed to clients, given no new replicas, their partitions without a leader.
    pub fenced: BTreeSet<NodeId>,
    /// Fenced brokers that shut down cleanly (controlled shutdown): they stay fenced, heard or
    /// not, until they register again.
    pub shut_down: BTreeSet<NodeId>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The first producer id past every block handed out: the next block starts here.
    pub producer_ids_end: i64,
    /// Broker configs changed at runtime (IncrementalAlterConfigs / AlterConfigs on the broker):
    /// they override the config file and `--set`.
    pub broker_configs: BTreeMap<String, String>,
    /// Each voter's metadata directory (a random id made with its raft state, as Kafka's
    /// KIP-853 directory ids): a voter that comes back with another has lost its votes and its
    /// log, and is not counted in elections until it has caught up (`Change::RegisterVoter`).
    pub voter_dirs: BTreeMap<NodeId, Uuid>,
    /// Users' SCRAM credentials (AlterUserScramCredentials): salted and hashed, never a
    /// password.
    pub scram: BTreeMap<String, BTreeMap<Mechanism, Credential>>,
    /// The ACLs (CreateAcls, DeleteAcls), indexed by resource.
    pub acls: Arc<Acls>,
}

/// The broker keys that may change while the broker runs; the others (listeners, log.dirs,
/// node.id, socket and cleaner sizes) take a restart.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "message.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "replica.lag.time.max.ms",
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
    /// The brokers clients are told of: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = (&NodeId, &BrokerMeta)> {
        self.brokers
            .iter()
            .filter(|(id, _)| !self.fenced.contains(id))
    }

    /// Whether `node` is a registered broker that is not fenced.
    pub fn is_live(&self, node: &NodeId) -> bool {
        self.brokers.contains_key(node) && !self.fenced.contains(node)
    }

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

impl TopicMeta {
    /// The log config of this topic on a broker with `broker` configs.
    pub fn log_config(&self, broker: &Values) -> crate::storage::LogConfig {
        config::log_config(broker, &self.config_values())
    }

    /// The codec a topic stores batches with, or `None` for `producer` (as sent): the topic's
    /// `compression.type`, else the broker's.
    pub fn codec(&self, broker: &Values) -> Option<Codec> {
        let name = self
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

    /// The node that leads `partition`; `None` in an image written before assignments (until a
    /// broker registers and takes every partition) or for a partition the topic does not have.
    pub fn leader(&self, partition: i32) -> Option<NodeId> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignments.get(p))
            .map(|a| a.leader)
    }

    /// Whether `node` holds a replica of `partition` (an image written before assignments: every
    /// node does).
    pub fn replica_on(&self, partition: i32, node: NodeId) -> bool {
        match usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignments.get(p))
        {
            Some(a) => a.replicas.contains(&node),
            None => self.assignments.is_empty(),
        }
    }

    /// Whether `node` leads `partition` (an image written before assignments: every node does).
    pub fn led_by(&self, partition: i32, node: NodeId) -> bool {
        self.leader(partition).is_none_or(|leader| leader == node)
    }
}

impl Image {
    /// The topic with `id`, and its name.
    pub fn topic_by_id(&self, id: Uuid) -> Option<(&str, &TopicMeta)> {
        self.topics
            .iter()
            .find(|(_, meta)| meta.id == id)
            .map(|(name, meta)| (name.as_str(), meta))
    }

    /// Reads the text written by [`Image::to_toml`]; the error says what is wrong in it.
    pub fn from_toml(text: &str) -> Result<Image, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let revision = table
            .get("revision")
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| "no revision".to_string())? as u64;
        let mut topics = BTreeMap::new();
        if let Some(entries) = table.get("topics").and_then(toml::Value::as_table) {
            for (name, entry) in entries {
                let id = entry
                    .get("id")
                    .and_then(toml::Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| format!("topic {name}: no id"))?;
                let partitions = entry
                    .get("partitions")
                    .and_then(toml::Value::as_integer)
                    .filter(|&n| n >= 1 && n <= TOPIC_PARTITIONS_MAX as i64)
                    .ok_or_else(|| format!("topic {name}: bad partition count"))?
                    as i32;
                let mut configs = BTreeMap::new();
                if let Some(table) = entry.get("configs").and_then(toml::Value::as_table) {
                    for (key, value) in table {
                        let value = value
                            .as_str()
                            .ok_or_else(|| format!("topic {name}: config {key}"))?;
                        Values::new(&TOPIC_KEYS)
                            .set(key, value)
                            .map_err(|e| format!("topic {name}: {e}"))?;
                        configs.insert(key.clone(), value.to_string());
                    }
                }
                let assignments = match entry.get("assignments").and_then(toml::Value::as_str) {
                    None => Arc::from([]),
                    Some(text) => {
                        let rows: Result<Vec<_>, String> =
                            text.split_whitespace().map(assignment).collect();
                        let rows = rows.map_err(|e| format!("topic {name}: {e}"))?;
                        if rows.len() != partitions as usize {
                            return Err(format!(
                                "topic {name}: {} assignments for {partitions} partitions",
                                rows.len()
                            ));
                        }
                        rows.into()
                    }
                };
                let meta = TopicMeta {
                    id,
                    partitions,
                    configs,
                    assignments,
                };
                topics.insert(name.clone(), meta);
            }
        }
        let mut broker_configs = BTreeMap::new();
        if let Some(table) = table.get("broker_configs").and_then(toml::Value::as_table) {
            for (key, value) in table {
                let value = value
                    .as_str()
                    .ok_or_else(|| format!("broker config {key}"))?;
                validate_broker_configs(&[(key.clone(), value.to_string())].into())
                    .map_err(|e| e.to_string())?;
                broker_configs.insert(key.clone(), value.to_string());
            }
        }
        let mut brokers = BTreeMap::new();
        if let Some(table) = table.get("brokers").and_then(toml::Value::as_table) {
            for (id, entry) in table {
                let id = id
                    .parse()
                    .map(NodeId)
                    .map_err(|_| format!("broker id {id}"))?;
                brokers.insert(
                    id,
                    broker(entry).map_err(|e| format!("broker {}: {e}", id.0))?,
                );
            }
        }
        let ids = |key: &str| match table.get(key).and_then(toml::Value::as_array) {
            None => Ok(BTreeSet::new()),
            Some(ids) => ids
                .iter()
                .map(|id| {
                    id.as_integer()
                        .and_then(|n| i32::try_from(n).ok())
                        .map(NodeId)
                })
                .collect::<Option<BTreeSet<NodeId>>>()
                .ok_or(format!("{key} is not a list of broker ids")),
        };
        let fenced = ids("fenced")?;
        let shut_down = ids("shut_down")?;
        let mut voter_dirs = BTreeMap::new();
        if let Some(table) = table.get("voter_dirs").and_then(toml::Value::as_table) {
            for (id, dir) in table {
                let id = id.parse().map(NodeId).map_err(|_| format!("voter {id}"))?;
                let dir = dir
                    .as_str()
                    .and_then(|d| Uuid::parse_str(d).ok())
                    .ok_or_else(|| format!("voter {}: a directory that is no id", id.0))?;
                voter_dirs.insert(id, dir);
            }
        }
        let mut scram = BTreeMap::new();
        if let Some(table) = table.get("scram").and_then(toml::Value::as_table) {
            for (user, entry) in table {
                let mut credentials = BTreeMap::new();
                for (name, text) in entry.as_table().into_iter().flatten() {
                    let mechanism = Mechanism::from_name(name)
                        .ok_or_else(|| format!("user {user}: mechanism {name}"))?;
                    let credential = text
                        .as_str()
                        .and_then(Credential::from_text)
                        .ok_or_else(|| format!("user {user}: a bad {name} credential"))?;
                    credentials.insert(mechanism, credential);
                }
                scram.insert(user.clone(), credentials);
            }
        }
        let acls = match table.get("acls").and_then(toml::Value::as_array) {
            Some(values) => Acls::from_toml(values)?,
            None => Acls::default(),
        };
        let producer_ids_end = match table.get("producer_ids_end") {
            None => 0,
            Some(end) => end
                .as_integer()
                .filter(|&end| end >= 0)
                .ok_or("producer_ids_end is not a producer id")?,
        };
        Ok(Image {
            revision,
            brokers,
            topics,
            broker_configs,
            producer_ids_end,
            fenced,
            shut_down,
            voter_dirs,
            scram,
            acls: Arc::new(acls),
        })
    }

    /// The image as text, for the file store.
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
            if !meta.assignments.is_empty() {
                let rows: Vec<String> = meta.assignments.iter().map(Assignment::to_text).collect();
                entry.insert("assignments".into(), rows.join(" ").into());
            }
            topics.insert(name.clone(), entry.into());
        }
        let mut root = toml::Table::new();
        root.insert("revision".into(), (self.revision as i64).into());
        root.insert("producer_ids_end".into(), self.producer_ids_end.into());
        for (key, set) in [("fenced", &self.fenced), ("shut_down", &self.shut_down)] {
            if !set.is_empty() {
                let ids: Vec<toml::Value> = set.iter().map(|id| (id.0 as i64).into()).collect();
                root.insert(key.into(), ids.into());
            }
        }
        let brokers: toml::Table = self
            .brokers
            .iter()
            .map(|(id, b)| {
                let mut entry = toml::Table::new();
                entry.insert("host".into(), b.host.clone().into());
                entry.insert("port".into(), (b.port as i64).into());
                if let Some(rack) = &b.rack {
                    entry.insert("rack".into(), rack.clone().into());
                }
                if !b.listeners.is_empty() {
                    entry.insert("listeners".into(), b.listeners_text().into());
                }
                if let Some(capacity) = b.capacity {
                    entry.insert("shards".into(), i64::from(capacity.shards).into());
                    let most = i64::try_from(capacity.partitions_per_shard).unwrap_or(i64::MAX);
                    entry.insert("partitions_per_shard".into(), most.into());
                }
                (id.0.to_string(), toml::Value::Table(entry))
            })
            .collect();
        root.insert("brokers".into(), brokers.into());
        if !self.voter_dirs.is_empty() {
            let dirs: toml::Table = self
                .voter_dirs
                .iter()
                .map(|(id, dir)| (id.0.to_string(), dir.to_string().into()))
                .collect();
            root.insert("voter_dirs".into(), dirs.into());
        }
        if !self.acls.is_empty() {
            root.insert("acls".into(), self.acls.to_toml().into());
        }
        if !self.scram.is_empty() {
            let users: toml::Table = self
                .scram
                .iter()
                .map(|(user, credentials)| {
                    let entry: toml::Table = credentials
                        .iter()
                        .map(|(m, c)| (m.name().to_string(), c.to_text().into()))
                        .collect();
                    (user.clone(), entry.into())
                })
                .collect();
            root.insert("scram".into(), users.into());
        }
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

/// One partition's assignment from its text (see [`Assignment::to_text`]).
fn assignment(text: &str) -> Result<Assignment, String> {
    let bad = || {
        format!(
            "assignment `{text}` is not replicas/leader/leader epoch/partition epoch/ISR\
             [/adding/removing]"
        )
    };
    let nodes = |list: &str| -> Result<Vec<NodeId>, String> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        list.split(',')
            .map(|id| id.parse().map(NodeId).map_err(|_| bad()))
            .collect()
    };
    let fields: Vec<&str> = text.split('/').collect();
    let (replicas, leader, leader_epoch, partition_epoch, isr, adding, removing) = match fields[..]
    {
        [r, l, le, pe, isr] => (r, l, le, pe, isr, "", ""),
        [r, l, le, pe, isr, adding, removing] => (r, l, le, pe, isr, adding, removing),
        _ => return Err(bad()),
    };
    let number = |field: &str| field.parse::<i32>().map_err(|_| bad());
    let assignment = Assignment {
        replicas: nodes(replicas)?,
        leader: NodeId(number(leader)?),
        leader_epoch: Epoch(number(leader_epoch)?),
        partition_epoch: number(partition_epoch)?,
        isr: nodes(isr)?,
        adding: nodes(adding)?,
        removing: nodes(removing)?,
    };
    let known = |n: &NodeId| assignment.replicas.contains(n);
    let all_known = [&assignment.isr, &assignment.adding, &assignment.removing]
        .iter()
        .all(|list| list.iter().all(known));
    if assignment.replicas.is_empty() || !known(&assignment.leader) || !all_known {
        return Err(format!(
            "assignment `{text}`: leader, ISR or reassignment not among the replicas"
        ));
    }
    Ok(assignment)
}

/// A broker's registration from its TOML table.
fn broker(value: &toml::Value) -> Result<BrokerMeta, String> {
    let host = value
        .get("host")
        .and_then(toml::Value::as_str)
        .ok_or("no host")?;
    let port = value
        .get("port")
        .and_then(toml::Value::as_integer)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("no port")?;
    let rack = value.get("rack").and_then(toml::Value::as_str);
    let mut listeners = Vec::new();
    let text = value.get("listeners").and_then(toml::Value::as_str);
    for entry in text.unwrap_or("").split(',').filter(|e| !e.is_empty()) {
        let (name, host, port) =
            config::parse_listener(entry).ok_or_else(|| format!("listener `{entry}`"))?;
        listeners.push(Endpoint {
            name: name.to_string(),
            host: host.to_string(),
            port,
        });
    }
    let int = |key: &str| value.get(key).and_then(toml::Value::as_integer);
    let capacity = match (int("shards"), int("partitions_per_shard")) {
        (None, None) => None,
        (Some(shards), Some(most)) => Some(Capacity {
            shards: u32::try_from(shards).map_err(|_| format!("shards {shards}"))?,
            partitions_per_shard: u64::try_from(most)
                .map_err(|_| format!("partitions_per_shard {most}"))?,
        }),
        _ => return Err("shards and partitions_per_shard go together".into()),
    };
    Ok(BrokerMeta {
        host: host.to_string(),
        port,
        rack: rack.map(str::to_string),
        listeners,
        capacity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_read_back_and_bad_ones_are_refused() {
        let a = Assignment {
            replicas: vec![NodeId(3), NodeId(1), NodeId(2)],
            leader: NodeId(1),
            leader_epoch: Epoch(4),
            partition_epoch: 9,
            isr: vec![NodeId(1), NodeId(3)],
            adding: Vec::new(),
            removing: Vec::new(),
        };
        assert_eq!(a.to_text(), "3,1,2/1/4/9/1,3");
        assert_eq!(assignment(&a.to_text()).unwrap(), a);
        let moving = Assignment {
            adding: vec![NodeId(2)],
            removing: vec![NodeId(3)],
            ..a.clone()
        };
        assert_eq!(moving.to_text(), "3,1,2/1/4/9/1,3/2/3");
        assert_eq!(assignment(&moving.to_text()).unwrap(), moving);
        assert_eq!(moving.target(), [NodeId(1), NodeId(2)]);
        for bad in [
            "",
            "1/1/0/0",
            "1/2/0/0/1",
            "1/1/0/0/2",
            "x/1/0/0/1",
            "1/1/0/0/1/1",
            "1/1/0/0/1/4/",
            "/1/0/0/1",
        ] {
            assert!(assignment(bad).is_err(), "{bad}");
        }
    }
}
