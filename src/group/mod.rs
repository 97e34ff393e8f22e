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

pub mod records;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use crate::model::records::{BatchBuilder, ProducerInfo, Record};
use crate::model::{Offset, TimestampMs};
use crate::protocol::ResponseError as E;
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

/// Writes one batch to a partition of `__consumer_offsets`; the Kafka error code on failure.
pub type Persist = Rc<dyn Fn(i32, Bytes) -> Pin<Box<dyn Future<Output = Result<(), i16>>>>>;

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
    pub error_code: i16,
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
    pub error_code: i16,
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
    pub error_code: i16,
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

    fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.clone();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: TimestampMs::now().0,
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
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(E::FencedInstanceId.code()),
                None if !self.members.contains_key(member_id) => {
                    return Err(E::UnknownMemberId.code())
                }
                _ => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(E::UnknownMemberId.code())
        }
    }
}

/// The groups of one shard.
pub struct Coordinator {
    config: GroupConfig,
    persist: Persist,
    groups: RefCell<HashMap<String, Group>>,
    loaded: Cell<bool>,
    /// When the ticker last looked for expired offsets.
    expiry_checked: Cell<Option<Instant>>,
    /// The groups holding pending transactional offsets of each producer.
    txn_groups: RefCell<HashMap<i64, BTreeSet<String>>>,
}

fn error_join(code: i16, member_id: &str) -> JoinOutcome {
    JoinOutcome {
        error_code: code,
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn error_sync(code: i16) -> SyncOutcome {
    SyncOutcome {
        error_code: code,
        ..Default::default()
    }
}

impl Coordinator {
    pub fn new(config: GroupConfig, persist: Persist) -> Coordinator {
        Coordinator {
            config,
            persist,
            groups: RefCell::new(HashMap::new()),
            loaded: Cell::new(false),
            expiry_checked: Cell::new(None),
            txn_groups: RefCell::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn ready(&self, group: &str) -> Result<(), i16> {
        if group.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        if !self.loaded.get() {
            return Err(E::CoordinatorLoadInProgress.code());
        }
        Ok(())
    }

    /// Rebuilds the groups from the records of this shard's `__consumer_offsets` partitions, in
    /// log order per partition (later records win; a null value deletes; transactional offsets
    /// wait for their producer's marker).
    pub fn load(&self, entries: impl IntoIterator<Item = (i32, LogEntry)>) {
        let mut groups = self.groups.borrow_mut();
        let now = Instant::now();
        for (partition, entry) in entries {
            let (key, value, producer_id) = match entry {
                LogEntry::Record {
                    key,
                    value,
                    producer_id,
                } => (key, value, producer_id),
                LogEntry::Marker {
                    producer_id,
                    commit,
                } => {
                    self.settle_txn(&mut groups, partition, producer_id, commit);
                    continue;
                }
            };
            let key = match Key::decode(key) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a __consumer_offsets record");
                    continue;
                }
            };
            let group = groups
                .entry(key.group().to_string())
                .or_insert_with(|| Group::new(key.group()));
            match (key, value) {
                (
                    Key::Offset {
                        topic, partition, ..
                    },
                    None,
                ) => {
                    group.offsets.remove(&(topic, partition));
                }
                (
                    Key::Offset {
                        topic, partition, ..
                    },
                    Some(value),
                ) => match CommittedOffset::decode(value) {
                    Ok(offset) => match producer_id {
                        Some(producer_id) => {
                            group
                                .pending_txn
                                .entry(producer_id)
                                .or_default()
                                .offsets
                                .insert((topic, partition), offset);
                            self.txn_groups
                                .borrow_mut()
                                .entry(producer_id)
                                .or_default()
                                .insert(group.id.clone());
                        }
                        None => {
                            group.offsets.insert((topic, partition), offset);
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "skipping an offset record"),
                },
                (Key::Group { .. }, None) => {
                    group.members.clear();
                    group.static_members.clear();
                    group.generation = 0;
                    group.state = State::Dead;
                }
                (Key::Group { .. }, Some(value)) => match StoredGroup::decode(value) {
                    Ok(stored) => restore(group, stored, now),
                    Err(e) => tracing::warn!(error = %e, "skipping a group record"),
                },
            }
        }
        groups.retain(|_, g| {
            g.state != State::Dead || !g.offsets.is_empty() || !g.pending_txn.is_empty()
        });
        for group in groups.values_mut() {
            if group.state == State::Dead {
                group.state = State::Empty;
            }
        }
        self.loaded.set(true);
    }

    async fn write(&self, group: &str, records: Vec<(Bytes, Option<Bytes>)>) -> Result<(), i16> {
        self.write_as(group, records, BatchBuilder::default()).await
    }

    async fn write_as(
        &self,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        builder: BatchBuilder,
    ) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        let now = TimestampMs::now();
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
                Some(group.stored().encode()),
            )
        };
        if let Err(code) = self.write(group_id, vec![record]).await {
            tracing::error!(group = group_id, code, "cannot write the group's metadata");
        }
    }

    pub async fn join(&self, params: JoinParams) -> JoinOutcome {
        if let Err(code) = self.ready(&params.group) {
            return error_join(code, &params.member_id);
        }
        let timeout = params.session_timeout_ms;
        if timeout < self.config.session_timeout_ms_min
            || timeout > self.config.session_timeout_ms_max
        {
            return error_join(E::InvalidSessionTimeout.code(), &params.member_id);
        }
        let now = Instant::now();
        let receiver = {
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .entry(params.group.clone())
                .or_insert_with(|| Group::new(&params.group));
            match self.join_locked(group, params, now) {
                Ok(receiver) => receiver,
                Err(outcome) => return outcome,
            }
        };
        let group_id = receiver.1;
        self.try_complete_join(&group_id, Instant::now()).await;
        receiver
            .0
            .await
            .unwrap_or_else(|_| error_join(E::UnknownMemberId.code(), ""))
    }

    #[allow(clippy::result_large_err)]
    fn join_locked(
        &self,
        group: &mut Group,
        params: JoinParams,
        now: Instant,
    ) -> Result<(oneshot::Receiver<JoinOutcome>, String), JoinOutcome> {
        let member_id = params.member_id.clone();
        if group.state != State::Empty {
            let same_type = group.protocol_type.as_deref() == Some(params.protocol_type.as_str());
            let shares = group.members.is_empty()
                || params.protocols.iter().any(|(name, _)| {
                    group
                        .members
                        .values()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                });
            if !same_type || !shares {
                return Err(error_join(E::InconsistentGroupProtocol.code(), &member_id));
            }
        }
        let mut member_id = member_id;
        let mut static_rejoin = false;
        let leader_before = group.leader.clone();
        if member_id.is_empty() {
            let fresh = format!("{}-{}", params.client_id, uuid::Uuid::new_v4());
            match &params.instance_id {
                Some(instance) => {
                    // A static member (re)joining: its old member id is fenced from now on.
                    if let Some(old) = group.static_members.get(instance).cloned() {
                        if let Some(mut member) = group.members.remove(&old) {
                            member.id = fresh.clone();
                            if let Some(waiter) = member.join_waiter.take() {
                                let _ = waiter.send(error_join(E::FencedInstanceId.code(), &old));
                            }
                            if group.leader.as_deref() == Some(old.as_str()) {
                                group.leader = Some(fresh.clone());
                            }
                            group.members.insert(fresh.clone(), member);
                            static_rejoin = true;
                        }
                    }
                    group.static_members.insert(instance.clone(), fresh.clone());
                    member_id = fresh;
                }
                None if params.require_known_member => {
                    if group.members.len() + group.pending.len() >= self.config.group_size_max {
                        return Err(error_join(E::GroupMaxSizeReached.code(), ""));
                    }
                    let expires = now + Duration::from_millis(params.session_timeout_ms as u64);
                    group.pending.insert(fresh.clone(), expires);
                    return Err(error_join(E::MemberIdRequired.code(), &fresh));
                }
                None => member_id = fresh,
            }
        } else if let Some(instance) = &params.instance_id {
            if group.static_members.get(instance) != Some(&member_id) {
                return Err(error_join(E::FencedInstanceId.code(), &member_id));
            }
        } else if !group.members.contains_key(&member_id) && !group.pending.contains_key(&member_id)
        {
            return Err(error_join(E::UnknownMemberId.code(), &member_id));
        }
        group.pending.remove(&member_id);
        let is_new = !group.members.contains_key(&member_id);
        if is_new && group.members.len() >= self.config.group_size_max {
            return Err(error_join(E::GroupMaxSizeReached.code(), &member_id));
        }
        let (tx, rx) = oneshot::channel();
        let changed = match group.members.get(&member_id) {
            Some(m) => m.protocols != params.protocols,
            None => true,
        };
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: params.instance_id.clone(),
                client_id: params.client_id.clone(),
                client_host: params.client_host.clone(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.session_timeout = Duration::from_millis(params.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(params.rebalance_timeout_ms.max(0) as u64);
        member.protocols = params.protocols.clone();
        member.last_heartbeat = now;
        member.join_waiter = Some(tx);
        if let Some(instance) = &params.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            // KIP-814: a static member back under a new id, with the same protocols, in a stable
            // group: the generation and assignment stand; a leader learns the members but keeps
            // the assignment (skip_assignment).
            State::Stable if static_rejoin && !changed => {
                // Before v9 the client cannot be told to skip the assignment: it is told the
                // leader's old id instead, so that it does not think itself the leader (Kafka).
                let (leader, members, skip_assignment) = if !params.skip_assignment_supported {
                    (leader_before, Vec::new(), false)
                } else if is_leader {
                    (group.leader.clone(), group.member_metadata(), true)
                } else {
                    (group.leader.clone(), Vec::new(), false)
                };
                answer_join_now(group, &member_id, leader, members, skip_assignment);
            }
            // The old id may already be in the assignment being synced: rebalance (as Kafka).
            State::CompletingRebalance if static_rejoin => prepare_rebalance(group, now),
            State::Stable | State::CompletingRebalance if !changed && !is_leader && !is_new => {
                // Nothing new from a follower: answer with the current generation, no rebalance.
                let leader = group.leader.clone();
                answer_join_now(group, &member_id, leader, Vec::new(), false);
            }
            State::PreparingRebalance => {}
            _ => {
                if group.state == State::Empty {
                    group.protocol_type = Some(params.protocol_type.clone());
                    let delay = self.config.initial_rebalance_delay_ms.max(0) as u64;
                    group.join_not_before = Some(now + Duration::from_millis(delay));
                }
                prepare_rebalance(group, now);
            }
        }
        Ok((rx, group.id.clone()))
    }

    /// Completes the join phase if everyone is in (and any initial delay has passed), or the
    /// rebalance timeout has run out (members that did not rejoin leave).
    async fn try_complete_join(&self, group_id: &str, now: Instant) {
        let completed = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return;
            };
            if group.state != State::PreparingRebalance {
                return;
            }
            let delay_over = group.join_not_before.is_none_or(|t| now >= t);
            let timed_out = group.rebalance_deadline.is_some_and(|t| now >= t);
            let everyone_in = delay_over && group.all_joined();
            if !everyone_in && !timed_out {
                return;
            }
            if timed_out {
                let gone: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.join_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in gone {
                    remove_member(group, &id);
                }
                group.pending.clear();
            }
            complete_join(group);
            true
        };
        if completed {
            let empty = self
                .groups
                .borrow()
                .get(group_id)
                .is_some_and(|g| g.state == State::Empty);
            if empty {
                self.write_group(group_id).await;
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        if let Err(code) = self.ready(group_id) {
            return error_sync(code);
        }
        let receiver = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return error_sync(E::UnknownMemberId.code());
            };
            if let Err(code) = group.check_member(member_id, instance_id) {
                return error_sync(code);
            }
            if generation != group.generation {
                return error_sync(E::IllegalGeneration.code());
            }
            match group.state {
                State::PreparingRebalance => return error_sync(E::RebalanceInProgress.code()),
                State::Stable => {
                    let member = &group.members[member_id];
                    return SyncOutcome {
                        error_code: 0,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        assignment: member.assignment.clone(),
                    };
                }
                State::Empty | State::Dead => return error_sync(E::UnknownMemberId.code()),
                State::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_waiter = Some(tx);
                member.last_heartbeat = Instant::now();
            }
            if group.leader.as_deref() != Some(member_id) {
                (rx, false)
            } else {
                for member in group.members.values_mut() {
                    member.assignment = assignments
                        .iter()
                        .find(|(id, _)| *id == member.id)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_default();
                }
                (rx, true)
            }
        };
        let (receiver, is_leader) = receiver;
        if !is_leader {
            return wait_sync(receiver).await;
        }
        // The leader's assignment: write the group, then answer everyone waiting.
        self.write_group(group_id).await;
        {
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(group_id) {
                if group.state == State::CompletingRebalance && group.generation == generation {
                    group.state = State::Stable;
                    let (protocol_type, protocol) =
                        (group.protocol_type.clone(), group.protocol.clone());
                    for member in group.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncOutcome {
                                error_code: 0,
                                protocol_type: protocol_type.clone(),
                                protocol: protocol.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                }
            }
        }
        wait_sync(receiver).await
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if let Err(code) = self.ready(group_id) {
            return code;
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return E::UnknownMemberId.code();
        };
        if let Err(code) = group.check_member(member_id, instance_id) {
            return code;
        }
        if generation != group.generation {
            return E::IllegalGeneration.code();
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_heartbeat = Instant::now();
        }
        match group.state {
            State::PreparingRebalance => E::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Removes members (by id, or by instance id for static members): per-member error codes.
    pub async fn leave(
        &self,
        group_id: &str,
        leaving: Vec<(String, Option<String>)>,
    ) -> Result<Vec<i16>, i16> {
        self.ready(group_id)?;
        let results = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.get_mut(group_id).ok_or(E::UnknownMemberId.code())?;
            let mut results = Vec::new();
            let mut removed = false;
            for (member_id, instance_id) in leaving {
                let id = match &instance_id {
                    Some(instance) => match group.static_members.get(instance) {
                        Some(current) if member_id.is_empty() || *current == member_id => {
                            current.clone()
                        }
                        Some(_) => {
                            results.push(E::FencedInstanceId.code());
                            continue;
                        }
                        None => {
                            results.push(E::UnknownMemberId.code());
                            continue;
                        }
                    },
                    None => member_id,
                };
                if group.pending.remove(&id).is_some() {
                    results.push(0);
                } else if group.members.contains_key(&id) {
                    remove_member(group, &id);
                    removed = true;
                    results.push(0);
                } else {
                    results.push(E::UnknownMemberId.code());
                }
            }
            if removed {
                on_membership_change(group, Instant::now());
            }
            results
        };
        self.try_complete_join(group_id, Instant::now()).await;
        Ok(results)
    }

    /// Commits offsets. A commit with generation -1 and no member id is a simple (unmanaged)
    /// consumer's, allowed while the group has no members.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), i16> {
        self.ready(group_id)?;
        {
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            if generation < 0 && member_id.is_empty() {
                if !group.members.is_empty() {
                    return Err(E::UnknownMemberId.code());
                }
            } else {
                group.check_member(member_id, instance_id)?;
                if generation != group.generation {
                    return Err(E::IllegalGeneration.code());
                }
                // As Kafka: a current member may commit while the group prepares a rebalance
                // (the commits consumers make as they give partitions up); only while the new
                // generation's assignment is being synced is it refused.
                if group.state == State::CompletingRebalance {
                    return Err(E::RebalanceInProgress.code());
                }
                if let Some(member) = group.members.get_mut(member_id) {
                    member.last_heartbeat = Instant::now();
                }
            }
        }
        self.write(group_id, offset_records(group_id, &offsets))
            .await?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        for (topic, partition, offset) in offsets {
            group.offsets.insert((topic, partition), offset);
        }
        Ok(())
    }

    /// TxnOffsetCommit: offsets committed inside a producer's transaction, written to the log
    /// as part of it and applied when its COMMIT marker lands here ([`Coordinator::settle`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
        epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), i16> {
        self.ready(group_id)?;
        {
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            if !member_id.is_empty() || instance_id.is_some() {
                group.check_member(member_id, instance_id)?;
            }
            if generation >= 0 && generation != group.generation {
                return Err(E::IllegalGeneration.code());
            }
            if group
                .pending_txn
                .get(&producer_id)
                .is_some_and(|p| epoch < p.epoch)
            {
                return Err(E::InvalidProducerEpoch.code());
            }
        }
        let records = offset_records(group_id, &offsets);
        let builder = BatchBuilder {
            transactional: true,
            producer: ProducerInfo {
                producer_id,
                producer_epoch: epoch,
                // Written by the coordinator: no sequence to check (as Kafka's coordinator).
                base_sequence: -1,
            },
            ..BatchBuilder::default()
        };
        self.write_as(group_id, records, builder).await?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        let pending = group.pending_txn.entry(producer_id).or_default();
        if pending.epoch != epoch {
            pending.epoch = epoch;
            pending.offsets.clear();
        }
        for (topic, partition, offset) in offsets {
            pending.offsets.insert((topic, partition), offset);
        }
        self.txn_groups
            .borrow_mut()
            .entry(producer_id)
            .or_default()
            .insert(group_id.to_string());
        Ok(())
    }

    /// A COMMIT or ABORT marker of `producer_id` reached offsets partition `partition`: its
    /// pending transactional offsets there become committed, or are dropped.
    pub fn settle(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut groups = self.groups.borrow_mut();
        self.settle_txn(&mut groups, partition, producer_id, commit);
    }

    fn settle_txn(
        &self,
        groups: &mut HashMap<String, Group>,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        let mut txn_groups = self.txn_groups.borrow_mut();
        let Some(ids) = txn_groups.get_mut(&producer_id) else {
            return;
        };
        ids.retain(|id| {
            if offsets_partition(id, self.config.offsets_partitions) != partition {
                return true;
            }
            if let Some(group) = groups.get_mut(id) {
                if let Some(pending) = group.pending_txn.remove(&producer_id) {
                    if commit {
                        group.offsets.extend(pending.offsets);
                    }
                }
            }
            false
        });
        if ids.is_empty() {
            txn_groups.remove(&producer_id);
        }
    }

    /// Whether any offset of the group waits for a transaction's outcome (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn is_unstable(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups.borrow().get(group_id).is_some_and(|g| {
            let key = (topic.to_string(), partition);
            g.pending_txn.values().any(|p| p.offsets.contains_key(&key))
        })
    }

    /// Committed offsets of `topics` (all of them when `None`); `None` for a partition with none.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<TopicPartitions>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, i16> {
        self.ready(group_id)?;
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        let committed = |topic: &str, partition: i32| {
            group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)).cloned())
        };
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .map(move |p| (topic.clone(), p))
                        .collect::<Vec<_>>()
                })
                .map(|(topic, p)| {
                    let offset = committed(&topic, p);
                    (topic, p, offset)
                })
                .collect(),
            None => {
                let mut all: Vec<(String, i32, Option<CommittedOffset>)> = group
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                all
            }
        })
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let mut description = GroupDescription {
            error_code: 0,
            state: State::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Err(code) = self.ready(group_id) {
            description.error_code = code;
            return description;
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            return description;
        };
        description.state = group.state.name();
        description.protocol_type = group.protocol_type.clone().unwrap_or_default();
        description.protocol = group.protocol.clone().unwrap_or_default();
        description.members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(group.protocol.as_deref().unwrap_or("")),
                assignment: m.assignment.clone(),
            })
            .collect();
        description
    }

    /// (group id, protocol type, state) of every group here.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut all: Vec<_> = self
            .groups
            .borrow()
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete(&self, group_id: &str) -> i16 {
        if let Err(code) = self.ready(group_id) {
            return code;
        }
        let records = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id) else {
                return E::GroupIdNotFound.code();
            };
            if !group.members.is_empty() || group.state != State::Empty {
                return E::NonEmptyGroup.code();
            }
            let mut records: Vec<(Bytes, Option<Bytes>)> = group
                .offsets
                .keys()
                .map(|(topic, partition)| (Key::offset(group_id, topic, *partition), None))
                .collect();
            records.push((
                Key::Group {
                    group: group_id.to_string(),
                }
                .encode(),
                None,
            ));
            records
        };
        if let Err(code) = self.write(group_id, records).await {
            return code;
        }
        self.groups.borrow_mut().remove(group_id);
        0
    }

    /// OffsetDelete: drops committed offsets of topics the group does not consume now.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<i16>, i16> {
        self.ready(group_id)?;
        let (codes, records) = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id).ok_or(E::GroupIdNotFound.code())?;
            let subscribed = |topic: &str| {
                group.state != State::Empty
                    && group.members.values().any(|m| {
                        let metadata = m.metadata_for(group.protocol.as_deref().unwrap_or(""));
                        subscription_topics(&metadata).iter().any(|t| t == topic)
                    })
            };
            let mut codes = Vec::new();
            let mut records = Vec::new();
            for (topic, partition) in &partitions {
                if subscribed(topic) {
                    codes.push(E::GroupSubscribedToTopic.code());
                    continue;
                }
                codes.push(0);
                if group.offsets.contains_key(&(topic.clone(), *partition)) {
                    records.push((Key::offset(group_id, topic, *partition), None));
                }
            }
            (codes, records)
        };
        self.write(group_id, records).await?;
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            for ((topic, partition), code) in partitions.into_iter().zip(&codes) {
                if *code == 0 {
                    group.offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(codes)
    }

    /// Expires sessions and pending member ids, completes rebalances that are due, and drops the
    /// offsets of groups empty for longer than `offsets.retention.minutes`. Run periodically.
    pub async fn tick(&self, now: Instant) {
        let due: Vec<String> = {
            let mut groups = self.groups.borrow_mut();
            let mut due = Vec::new();
            let now_ms = TimestampMs::now().0;
            for group in groups.values_mut() {
                match (group.state, group.empty_since_ms) {
                    (State::Empty, None) => group.empty_since_ms = Some(now_ms),
                    (State::Empty, Some(_)) => {}
                    _ => group.empty_since_ms = None,
                }
                group.pending.retain(|_, expires| *expires > now);
                let expired: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| {
                        m.join_waiter.is_none() && now > m.last_heartbeat + m.session_timeout
                    })
                    .map(|m| m.id.clone())
                    .collect();
                if !expired.is_empty() {
                    for id in &expired {
                        tracing::info!(group = %group.id, member = %id, "session expired");
                        remove_member(group, id);
                    }
                    on_membership_change(group, now);
                }
                if group.state == State::PreparingRebalance {
                    due.push(group.id.clone());
                }
            }
            due
        };
        for group in due {
            self.try_complete_join(&group, now).await;
        }
        let interval = Duration::from_millis(self.config.offsets_retention_check_ms.max(0) as u64);
        if self
            .expiry_checked
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= interval)
        {
            self.expiry_checked.set(Some(now));
            self.expire_offsets().await;
        }
    }

    async fn expire_offsets(&self) {
        let now_ms = TimestampMs::now().0;
        let retention = self.config.offsets_retention_ms;
        let expired: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .values()
            .filter(|g| g.state == State::Empty)
            .map(|g| {
                let old: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(_, o)| {
                        // A consumer group's offsets live until it has been empty for the
                        // retention; a standalone committer's count from each commit.
                        let since = match (&g.protocol_type, g.empty_since_ms) {
                            (Some(_), Some(empty)) => empty.max(o.commit_timestamp),
                            _ => o.commit_timestamp,
                        };
                        since + retention < now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                (g.id.clone(), old)
            })
            .filter(|(_, old)| !old.is_empty())
            .collect();
        for (group, partitions) in expired {
            tracing::info!(%group, partitions = partitions.len(), "committed offsets expired");
            let _ = self.delete_offsets(&group, partitions).await;
        }
    }
}

/// The `__consumer_offsets` records of committed offsets.
fn offset_records(
    group_id: &str,
    offsets: &[(String, i32, CommittedOffset)],
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|(topic, partition, offset)| {
            (
                Key::offset(group_id, topic, *partition),
                Some(offset.encode()),
            )
        })
        .collect()
}

async fn wait_sync(receiver: oneshot::Receiver<SyncOutcome>) -> SyncOutcome {
    receiver
        .await
        .unwrap_or_else(|_| error_sync(E::RebalanceInProgress.code()))
}

fn restore(group: &mut Group, stored: StoredGroup, now: Instant) {
    group.generation = stored.generation;
    group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
    group.protocol = stored.protocol.clone();
    group.leader = stored.leader;
    group.members.clear();
    group.static_members.clear();
    for m in stored.members {
        if let Some(instance) = &m.instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        let protocols = vec![(stored.protocol.clone().unwrap_or_default(), m.subscription)];
        group.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                protocols,
                assignment: m.assignment,
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            },
        );
    }
    group.state = if group.members.is_empty() {
        State::Empty
    } else {
        State::Stable
    };
    group.empty_since_ms = (group.state == State::Empty && stored.state_timestamp >= 0)
        .then_some(stored.state_timestamp);
}

fn remove_member(group: &mut Group, id: &str) {
    if let Some(member) = group.members.remove(id) {
        if let Some(instance) = &member.instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(id) {
                group.static_members.remove(instance);
            }
        }
        if let Some(waiter) = member.join_waiter {
            let _ = waiter.send(error_join(E::UnknownMemberId.code(), id));
        }
        if let Some(waiter) = member.sync_waiter {
            let _ = waiter.send(error_sync(E::UnknownMemberId.code()));
        }
    }
    if group.leader.as_deref() == Some(id) {
        group.leader = group.members.keys().next().cloned();
    }
}

/// After members left or expired: rebalance the rest, or become Empty.
fn on_membership_change(group: &mut Group, now: Instant) {
    match group.state {
        State::Stable | State::CompletingRebalance => prepare_rebalance(group, now),
        State::PreparingRebalance | State::Empty | State::Dead => {}
    }
    if group.members.is_empty() && group.state != State::PreparingRebalance {
        group.state = State::Empty;
        group.leader = None;
    }
}

/// Answers `member_id`'s pending join with the current generation, without a rebalance.
fn answer_join_now(
    group: &mut Group,
    member_id: &str,
    leader: Option<String>,
    members: Vec<(String, Option<String>, Bytes)>,
    skip_assignment: bool,
) {
    let Some(waiter) = group
        .members
        .get_mut(member_id)
        .and_then(|m| m.join_waiter.take())
    else {
        return;
    };
    let _ = waiter.send(JoinOutcome {
        error_code: 0,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: leader.unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment,
    });
}

fn prepare_rebalance(group: &mut Group, now: Instant) {
    // Members waiting on a sync of the old generation learn that it is over.
    for member in group.members.values_mut() {
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(error_sync(E::RebalanceInProgress.code()));
        }
    }
    let timeout = group
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::ZERO);
    group.state = State::PreparingRebalance;
    group.rebalance_deadline = Some(now + timeout);
}

fn complete_join(group: &mut Group) {
    group.generation += 1;
    group.rebalance_deadline = None;
    group.join_not_before = None;
    if group.members.is_empty() {
        group.state = State::Empty;
        group.protocol = None;
        group.leader = None;
        return;
    }
    group.protocol = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.state = State::CompletingRebalance;
    let leader = group.leader.clone().unwrap_or_default();
    let all = group.member_metadata();
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinOutcome {
                error_code: 0,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                leader: leader.clone(),
                member_id: member.id.clone(),
                members: if member.id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
                skip_assignment: false,
            });
        }
    }
}

/// The topics in a consumer protocol subscription (ConsumerProtocolSubscription: version i16,
/// then an array of strings); empty if it does not parse.
fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = metadata;
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Some(head.to_vec())
    };
    let Some(_) = take(&mut rest, 2) else {
        return out;
    };
    let Some(count) = take(&mut rest, 4) else {
        return out;
    };
    let count = i32::from_be_bytes([count[0], count[1], count[2], count[3]]).max(0);
    for _ in 0..count {
        let Some(len) = take(&mut rest, 2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]).max(0) as usize;
        let Some(name) = take(&mut rest, len) else {
            break;
        };
        out.push(String::from_utf8_lossy(&name).into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        // Java: Math.abs("my-group".hashCode()) % 50, hashCode = -1906497762.
        assert_eq!(offsets_partition("my-group", 50), 12);
        assert!((0..50).contains(&offsets_partition("", 50)));
    }

    type Written = Rc<RefCell<Vec<(i32, Bytes)>>>;

    fn coordinator(retention_ms: i64) -> (Coordinator, Written) {
        let written: Written = Rc::default();
        let sink = written.clone();
        let persist: Persist = Rc::new(move |partition, bytes| {
            sink.borrow_mut().push((partition, bytes));
            Box::pin(async { Ok(()) })
        });
        let config = GroupConfig {
            offsets_partitions: 50,
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 60_000,
            initial_rebalance_delay_ms: 0,
            group_size_max: 10,
            offsets_retention_ms: retention_ms,
            offsets_retention_check_ms: 0,
        };
        (Coordinator::new(config, persist), written)
    }

    fn replay(written: &[(i32, Bytes)]) -> Vec<(i32, LogEntry)> {
        let mut entries = Vec::new();
        for (partition, bytes) in written {
            let view = crate::model::BatchView::validate(bytes).unwrap().0;
            batch_entries(&view, &mut |e| entries.push((*partition, e))).unwrap();
        }
        entries
    }

    fn offset(offset: i64, commit_timestamp: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp,
        }
    }

    fn committed(c: &Coordinator, group: &str) -> Option<i64> {
        let topics = vec![("t".to_string(), vec![0])];
        let fetched = c.fetch_offsets(group, Some(topics)).unwrap();
        fetched[0].2.as_ref().map(|o| o.offset)
    }

    #[test]
    fn nothing_is_served_before_the_groups_are_loaded() {
        let (c, written) = coordinator(60_000);
        let code = E::CoordinatorLoadInProgress.code();
        assert_eq!(c.fetch_offsets("g", None).unwrap_err(), code);
        assert_eq!(c.heartbeat("g", 1, "m", None), code);
        let commit = c.commit("g", -1, "", None, vec![("t".into(), 0, offset(5, 0))]);
        assert_eq!(futures_lite::future::block_on(commit), Err(code));
        assert!(written.borrow().is_empty());
        c.load(Vec::new());
        assert_eq!(committed(&c, "g"), None);
    }

    #[test]
    fn offsets_expire_by_retention_and_are_rebuilt_from_the_log() {
        futures_lite::future::block_on(async {
            let day = 86_400_000;
            let now = TimestampMs::now().0;
            let (c, written) = coordinator(day);
            c.load(Vec::new());
            // A standalone committer: retention counts from each commit.
            let stale = vec![("t".to_string(), 0, offset(7, now - 2 * day))];
            let fresh = vec![("t".to_string(), 0, offset(9, now))];
            c.commit("old", -1, "", None, stale).await.unwrap();
            c.commit("new", -1, "", None, fresh).await.unwrap();
            c.tick(Instant::now()).await;
            assert_eq!(committed(&c, "old"), None);
            assert_eq!(committed(&c, "new"), Some(9));
            // A fresh coordinator replaying what was written agrees: the tombstone wins.
            let (replayed, _) = coordinator(day);
            let written = written.borrow();
            replayed.load(replay(&written));
            assert_eq!(committed(&replayed, "old"), None);
            assert_eq!(committed(&replayed, "new"), Some(9));
        });
    }

    #[test]
    fn a_consumer_groups_offsets_count_from_when_it_became_empty() {
        futures_lite::future::block_on(async {
            let day = 86_400_000;
            let (c, _) = coordinator(day);
            c.load(Vec::new());
            let joined = c
                .join(JoinParams {
                    group: "g".into(),
                    member_id: String::new(),
                    instance_id: None,
                    client_id: "test".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 10_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::new())],
                    require_known_member: false,
                    skip_assignment_supported: true,
                })
                .await;
            assert_eq!(joined.error_code, 0);
            let old = TimestampMs::now().0 - 2 * day;
            let offsets = vec![("t".to_string(), 0, offset(3, old))];
            let member = joined.member_id.as_str();
            let synced = c
                .sync("g", joined.generation, member, None, Vec::new())
                .await;
            assert_eq!(synced.error_code, 0);
            c.commit("g", joined.generation, member, None, offsets)
                .await
                .unwrap();
            c.tick(Instant::now()).await;
            assert_eq!(committed(&c, "g"), Some(3), "the group is not empty");
            c.leave("g", vec![(joined.member_id.clone(), None)])
                .await
                .unwrap();
            c.tick(Instant::now()).await;
            c.tick(Instant::now()).await;
            assert_eq!(c.describe("g").state, "Empty");
            assert_eq!(committed(&c, "g"), Some(3), "empty for less than a day");
        });
    }

    fn join_params(member_id: &str, instance_id: Option<&str>) -> JoinParams {
        JoinParams {
            group: "g".into(),
            member_id: member_id.into(),
            instance_id: instance_id.map(String::from),
            client_id: "test".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member: false,
            skip_assignment_supported: true,
        }
    }

    #[test]
    fn members_commit_while_a_rebalance_is_prepared_not_while_it_completes() {
        futures_lite::future::block_on(async {
            let (c, _) = coordinator(86_400_000);
            c.load(Vec::new());
            let a = c.join(join_params("", None)).await;
            assert_eq!(a.error_code, 0);
            let offsets = |o| vec![("t".to_string(), 0, offset(o, TimestampMs::now().0))];
            let commit = |o| c.commit("g", a.generation, &a.member_id, None, offsets(o));
            // Joined, not yet synced: the assignment is being completed (Kafka refuses here).
            assert_eq!(c.describe("g").state, "CompletingRebalance");
            assert_eq!(commit(1).await, Err(E::RebalanceInProgress.code()));
            let synced = c
                .sync("g", a.generation, &a.member_id, None, Vec::new())
                .await;
            assert_eq!(synced.error_code, 0);
            assert_eq!(commit(2).await, Ok(()));
            // A second consumer joins: the group prepares a rebalance, and the first member
            // commits what it processed before it gives its partitions up.
            let b = c.join(join_params("", None));
            futures::pin_mut!(b);
            assert!(futures::poll!(b.as_mut()).is_pending());
            assert_eq!(c.describe("g").state, "PreparingRebalance");
            assert_eq!(commit(3).await, Ok(()));
            assert_eq!(committed(&c, "g"), Some(3));
        });
    }

    #[test]
    fn a_static_leader_rejoins_a_stable_group_without_a_rebalance() {
        futures_lite::future::block_on(async {
            let (c, _) = coordinator(86_400_000);
            c.load(Vec::new());
            let first = c.join(join_params("", Some("i1"))).await;
            assert_eq!(
                (first.error_code, first.leader.as_str()),
                (0, first.member_id.as_str())
            );
            let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"p0"))];
            let synced = c
                .sync("g", first.generation, &first.member_id, None, assignment)
                .await;
            assert_eq!(synced.error_code, 0);
            assert_eq!(c.describe("g").state, "Stable");

            // The same instance restarts (no member id), same protocols: answered at once.
            let again = c.join(join_params("", Some("i1"))).await;
            assert_eq!(again.error_code, 0);
            assert_eq!(again.generation, first.generation, "no new generation");
            assert_ne!(again.member_id, first.member_id);
            assert_eq!(again.leader, again.member_id);
            assert!(again.skip_assignment);
            assert_eq!(again.members.len(), 1);
            assert_eq!(c.describe("g").state, "Stable");
            // Its assignment stands; the old id is fenced.
            let synced = c
                .sync(
                    "g",
                    again.generation,
                    &again.member_id,
                    Some("i1"),
                    Vec::new(),
                )
                .await;
            assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
            let fenced = c.heartbeat("g", first.generation, &first.member_id, Some("i1"));
            assert_eq!(fenced, E::FencedInstanceId.code());

            // A client before JoinGroup v9 is told the previous leader, so it assigns nothing.
            let old_client = c
                .join(JoinParams {
                    skip_assignment_supported: false,
                    ..join_params("", Some("i1"))
                })
                .await;
            assert_eq!(old_client.generation, first.generation);
            assert_eq!(old_client.leader, again.member_id);
            assert!(old_client.members.is_empty() && !old_client.skip_assignment);
        });
    }

    #[test]
    fn reads_a_subscription() {
        let mut m = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "bc"] {
            m.extend_from_slice(&(t.len() as i16).to_be_bytes());
            m.extend_from_slice(t.as_bytes());
        }
        assert_eq!(subscription_topics(&m), vec!["a", "bc"]);
        assert!(subscription_topics(&[1]).is_empty());
    }

    #[test]
    fn transactional_offsets_wait_for_their_marker() {
        futures_lite::future::block_on(async {
            let (c, written) = coordinator(86_400_000);
            c.load(Vec::new());
            let partition = offsets_partition("g", 50);
            let commit = |pid: i64, epoch: i16, at: i64| {
                c.txn_commit(
                    "g",
                    pid,
                    epoch,
                    -1,
                    "",
                    None,
                    vec![("t".into(), 0, offset(at, 0))],
                )
            };
            commit(7, 0, 10).await.unwrap();
            assert_eq!(committed(&c, "g"), None, "pending until the marker");
            assert!(c.is_unstable("g", "t", 0));
            c.settle(partition + 1, 7, true);
            assert_eq!(committed(&c, "g"), None, "a marker on another partition");
            c.settle(partition, 7, true);
            assert_eq!(committed(&c, "g"), Some(10));
            assert!(!c.is_unstable("g", "t", 0));
            commit(7, 1, 20).await.unwrap();
            assert_eq!(commit(7, 0, 30).await, Err(E::InvalidProducerEpoch.code()));
            c.settle(partition, 7, false);
            assert_eq!(committed(&c, "g"), Some(10), "aborted offsets are dropped");
            // A pending commit, then a replay of the log: pending again until its marker.
            commit(8, 0, 40).await.unwrap();
            let mut log = written.borrow().clone();
            let (replayed, _) = coordinator(86_400_000);
            replayed.load(replay(&log));
            assert_eq!(committed(&replayed, "g"), None);
            let marker = crate::model::records::marker_batch(8, 0, true, 0, TimestampMs(0));
            log.push((partition, marker));
            let (replayed, _) = coordinator(86_400_000);
            replayed.load(replay(&log));
            assert_eq!(committed(&replayed, "g"), Some(40));
        });
    }
}
