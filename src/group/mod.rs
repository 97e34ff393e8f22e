//! The consumer-group coordinator (Kafka's classic group protocol), one per shard: a group lives
//! on the shard that owns its `__consumer_offsets` partition and is touched only there. Joins,
//! syncs, heartbeats and leaves drive the group through Empty -> PreparingRebalance ->
//! CompletingRebalance -> Stable; a ticker expires sessions and completes rebalances whose
//! members have all rejoined or whose rebalance timeout ran out. Committed offsets and group
//! metadata are written to `__consumer_offsets` (formats in [`records`]) before they are
//! acknowledged, and rebuilt from it on start.
//!
//! Assignment stays with the clients: the group leader gets every member's protocol metadata,
//! untouched, and hands back the assignments, so every client-side assignor (range, roundrobin,
//! cooperative-sticky) works as it does against Kafka.
//!
//! Here: the group and member state and the coordinator's writes to `__consumer_offsets`;
//! `membership`: joins, syncs, heartbeats, leaves, rebalances, the ticker; `offsets`: loading,
//! commits (plain and transactional), offset fetch, deletion and expiry; `records`: the
//! `__consumer_offsets` formats.

mod error;
mod membership;
mod offsets;
pub mod records;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use crate::io::Clock;
use crate::model::records::{BatchBuilder, ProducerInfo, Record};
use crate::model::{Offset, TimestampMs};
pub use error::GroupError;
use membership::*;
pub use records::{CommittedOffset, Key, StoredGroup, StoredMember};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The most one batch of `__consumer_offsets` may inflate to when it is loaded: the
/// coordinator writes it, and a group of 10,000 members with 1 KiB of metadata each is 10 MiB.
const RECORDS_INFLATED_BYTES_MAX: usize = 64 << 20;

/// Kafka's `partitionFor`: Java's String.hashCode of the group id, made non-negative, modulo the
/// partition count, so a group lands on the partition Kafka would pick.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub offsets_partitions: i32,
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub initial_rebalance_delay_ms: i32,
    pub group_size_max: usize,
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: the ticker runs every 100 ms, the offset expiry
    /// (a pass over every empty group's offsets) only this often.
    pub offsets_retention_check_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// Writes one batch to a partition of `__consumer_offsets`.
pub type Persist = Rc<dyn Fn(i32, Bytes) -> Pin<Box<dyn Future<Output = Result<(), GroupError>>>>>;

#[derive(Clone, Debug)]
pub struct JoinParams {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and its id (KIP-394).
    pub require_known_member: bool,
    /// JoinGroup v9+: the client understands `skip_assignment` (KIP-814).
    pub skip_assignment_supported: bool,
}

#[derive(Clone, Debug, Default)]
pub struct JoinOutcome {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a static leader that rejoined without a rebalance keeps the current assignment;
    /// it gets the members but must not compute a new one.
    pub skip_assignment: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub error: Option<GroupError>,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// Partition offsets by (topic, partition).
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    id: String,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, with when they expire.
    pending: HashMap<String, Instant>,
    /// When the current rebalance gives up on members that have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// The initial rebalance delay of a group that was empty: no completion before this.
    join_not_before: Option<Instant>,
    offsets: HashMap<(String, i32), CommittedOffset>,
    /// Since when (wall clock, ms) the group has been Empty: the retention of a consumer group's
    /// offsets counts from here (KIP-211), not from each commit.
    empty_since_ms: Option<i64>,
    /// Offsets committed inside transactions (TxnOffsetCommit), by producer id: applied when
    /// the producer's COMMIT marker reaches this group's offsets partition, dropped on ABORT.
    pending_txn: HashMap<i64, PendingTxn>,
}

#[derive(Debug, Default)]
struct PendingTxn {
    epoch: i16,
    offsets: HashMap<(String, i32), CommittedOffset>,
}

/// What the coordinator rebuilds from, per record of a `__consumer_offsets` partition.
#[derive(Debug)]
pub enum LogEntry {
    /// A record; `producer_id` when it is part of a transaction (a TxnOffsetCommit).
    Record {
        key: Bytes,
        value: Option<Bytes>,
        producer_id: Option<i64>,
    },
    /// A COMMIT (true) or ABORT marker.
    Marker { producer_id: i64, commit: bool },
}

/// The entries of one batch of `__consumer_offsets` (or another internal topic), as
/// [`Coordinator::load`] takes them.
pub fn batch_entries(
    view: &crate::model::BatchView<'_>,
    out: &mut impl FnMut(LogEntry),
) -> Result<(), crate::model::records::RecordsError> {
    if view.is_control() {
        if let Some(commit) = crate::storage::marker_of(view) {
            out(LogEntry::Marker {
                producer_id: view.producer_id(),
                commit,
            });
        }
        return Ok(());
    }
    let producer_id = view.is_transactional().then(|| view.producer_id());
    for record in crate::model::records::decode(view, RECORDS_INFLATED_BYTES_MAX)? {
        if let Some(key) = record.key {
            out(LogEntry::Record {
                key,
                value: record.value,
                producer_id,
            });
        }
    }
    Ok(())
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            join_not_before: None,
            offsets: HashMap::new(),
            empty_since_ms: None,
            pending_txn: HashMap::new(),
        }
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty()
    }

    /// Every member's id, instance id and metadata for the group's protocol: what the leader
    /// gets in its JoinGroup answer.
    fn member_metadata(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        votes
            .iter()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| (*name).clone())
    }

    fn stored(&self, now: TimestampMs) -> StoredGroup {
        let protocol = self.protocol.clone();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: now.0,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata_for(protocol.as_deref().unwrap_or("")),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Checks a member's identity for sync, heartbeat and commit.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(GroupError::FencedInstance),
                None if !self.members.contains_key(member_id) => {
                    return Err(GroupError::UnknownMember)
                }
                _ => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMember)
        }
    }
}

/// The groups of one shard.
/// A group as the metrics see it: its state's name, its members, its committed offsets as
/// (topic, partition, offset).
#[derive(Clone, Debug)]
pub struct GroupOffsets {
    pub name: String,
    pub state: &'static str,
    pub members: usize,
    pub offsets: Vec<(String, i32, i64)>,
}

pub struct Coordinator {
    config: GroupConfig,
    persist: Persist,
    clock: Rc<dyn Clock>,
    groups: RefCell<HashMap<String, Group>>,
    loaded: Cell<bool>,
    /// When the ticker last looked for expired offsets.
    expiry_checked: Cell<Option<Instant>>,
    /// Rebalances completed here (a new generation), for metrics.
    rebalances: Cell<u64>,
    /// The groups holding pending transactional offsets of each producer.
    txn_groups: RefCell<HashMap<i64, BTreeSet<String>>>,
    /// `__consumer_offsets` partitions whose groups are being loaded (this node leads them
    /// since a moment): their groups answer COORDINATOR_LOAD_IN_PROGRESS until loaded.
    loading: RefCell<BTreeSet<i32>>,
}

fn error_join(error: GroupError, member_id: &str) -> JoinOutcome {
    JoinOutcome {
        error: Some(error),
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn error_sync(error: GroupError) -> SyncOutcome {
    SyncOutcome {
        error: Some(error),
        ..Default::default()
    }
}

impl Coordinator {
    /// A coordinator writing through `persist`, on `clock`'s time.
    pub fn new(config: GroupConfig, persist: Persist, clock: Rc<dyn Clock>) -> Coordinator {
        Coordinator {
            config,
            persist,
            clock,
            groups: RefCell::new(HashMap::new()),
            loaded: Cell::new(false),
            expiry_checked: Cell::new(None),
            rebalances: Cell::new(0),
            txn_groups: RefCell::new(HashMap::new()),
            loading: RefCell::new(BTreeSet::new()),
        }
    }

    /// Every group this coordinator holds, with its committed offsets (for the metrics).
    pub fn committed(&self) -> Vec<GroupOffsets> {
        self.groups
            .borrow()
            .iter()
            .map(|(name, group)| GroupOffsets {
                name: name.clone(),
                state: group.state.name(),
                members: group.members.len(),
                offsets: group
                    .offsets
                    .iter()
                    .map(|((topic, partition), c)| (topic.clone(), *partition, c.offset))
                    .collect(),
            })
            .collect()
    }

    /// Rebalances completed by the groups this coordinator held (a new generation each).
    pub fn rebalances(&self) -> u64 {
        self.rebalances.get()
    }

    /// Whether the groups were loaded at start.
    pub fn is_loaded(&self) -> bool {
        self.loaded.get()
    }

    /// This shard leads `partition` of `__consumer_offsets` from now: its groups wait while
    /// they are loaded (then [`Coordinator::load`] and [`Coordinator::end_loading`]).
    pub fn begin_loading(&self, partition: i32) {
        self.unload(partition);
        self.loading.borrow_mut().insert(partition);
    }

    pub fn end_loading(&self, partition: i32) {
        self.loading.borrow_mut().remove(&partition);
    }

    /// Another node leads `partition` of `__consumer_offsets` from now: its groups are forgotten
    /// here (their clients find the new coordinator).
    pub fn unload(&self, partition: i32) {
        let partitions = self.config.offsets_partitions;
        let ours = |group: &str| offsets_partition(group, partitions) == partition;
        self.groups.borrow_mut().retain(|name, _| !ours(name));
        for groups in self.txn_groups.borrow_mut().values_mut() {
            groups.retain(|name| !ours(name));
        }
        self.loading.borrow_mut().remove(&partition);
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn ready(&self, group: &str) -> Result<(), GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let partition = offsets_partition(group, self.config.offsets_partitions);
        if !self.loaded.get() || self.loading.borrow().contains(&partition) {
            return Err(GroupError::Loading);
        }
        Ok(())
    }

    async fn write(
        &self,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), GroupError> {
        self.write_as(group, records, BatchBuilder::default()).await
    }

    async fn write_as(
        &self,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        builder: BatchBuilder,
    ) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = self.clock.wall();
        let batch: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                offset: Offset(i as i64),
                timestamp: now,
                key: Some(key),
                value,
                headers: Vec::new(),
            })
            .collect();
        let bytes = builder.build(&batch);
        let partition = offsets_partition(group, self.config.offsets_partitions);
        (self.persist)(partition, bytes).await
    }

    async fn write_group(&self, group_id: &str) {
        let record = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id) else {
                return;
            };
            (
                Key::Group {
                    group: group_id.to_string(),
                }
                .encode(),
                Some(group.stored(self.clock.wall()).encode()),
            )
        };
        if let Err(error) = self.write(group_id, vec![record]).await {
            tracing::error!(group = group_id, %error, "cannot write the group's metadata");
        }
    }
}
