//! Consumer groups on the shards: each shard runs a `group::Coordinator` for the groups whose
//! `__consumer_offsets` partition it owns; a group request is routed to that shard like partition
//! work. On start a shard reads its offsets partitions and rebuilds its groups; a ticker expires
//! sessions and completes rebalances.

use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::Shard;
use crate::config::Values;
use crate::group::LogEntry;
use crate::group::{self, CommittedOffset, Coordinator, GroupConfig, GroupError, OFFSETS_TOPIC};
use crate::io;
use crate::model::{BatchView, ShardId, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::replication::{Partition, Transition};

/// How often a shard's coordinator looks for expired sessions and due rebalances.
const GROUP_TICK_MS: u64 = 100;

/// A partition's answer to an offset fetch: its committed offset, or an error code for it.
pub type FetchedRow = (String, i32, Option<CommittedOffset>, i16);
pub type FetchedOffsets = Result<Vec<FetchedRow>, i16>;

pub fn group_config(broker: &Values) -> GroupConfig {
    GroupConfig {
        offsets_partitions: broker.i32("offsets.topic.num.partitions"),
        session_timeout_ms_min: broker.i32("group.min.session.timeout.ms"),
        session_timeout_ms_max: broker.i32("group.max.session.timeout.ms"),
        initial_rebalance_delay_ms: broker.i32("group.initial.rebalance.delay.ms"),
        group_size_max: broker.i32("group.max.size").max(1) as usize,
        offsets_retention_ms: broker.i64("offsets.retention.minutes") * 60_000,
        offsets_retention_check_ms: broker.i64("offsets.retention.check.interval.ms"),
    }
}

/// The Kafka error code for a refused group operation.
pub fn error_code(error: GroupError) -> i16 {
    match error {
        GroupError::InvalidGroupId => E::InvalidGroupId,
        GroupError::Loading => E::CoordinatorLoadInProgress,
        GroupError::UnknownMember => E::UnknownMemberId,
        GroupError::IllegalGeneration => E::IllegalGeneration,
        GroupError::RebalanceInProgress => E::RebalanceInProgress,
        GroupError::FencedInstance => E::FencedInstanceId,
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout,
        GroupError::InconsistentProtocol => E::InconsistentGroupProtocol,
        GroupError::GroupFull => E::GroupMaxSizeReached,
        GroupError::MemberIdRequired => E::MemberIdRequired,
        GroupError::GroupNotFound => E::GroupIdNotFound,
        GroupError::NonEmptyGroup => E::NonEmptyGroup,
        GroupError::SubscribedToTopic => E::GroupSubscribedToTopic,
        GroupError::InvalidProducerEpoch => E::InvalidProducerEpoch,
        GroupError::Unavailable => E::CoordinatorNotAvailable,
        GroupError::NotCoordinator => E::NotCoordinator,
        GroupError::TooLarge => E::InvalidCommitOffsetSize,
    }
    .code()
}

/// The code for a refused join or sync: Kafka answers a group-metadata record too large to
/// write with UNKNOWN_SERVER_ERROR (INVALID_COMMIT_OFFSET_SIZE is for offset commits).
pub fn membership_code(error: GroupError) -> i16 {
    match error {
        GroupError::TooLarge => E::UnknownServerError.code(),
        error => error_code(error),
    }
}

/// 0 for a success, the error's code otherwise.
pub fn result_code(result: Result<(), GroupError>) -> i16 {
    result.err().map_or(0, error_code)
}

/// The coordinator of a shard, writing through that shard's own offsets partitions.
pub fn coordinator(shard: Weak<Shard>, config: GroupConfig) -> Coordinator {
    let persist: group::Persist = Rc::new(move |partition, batch| {
        let shard = shard.clone();
        Box::pin(async move {
            let Some(shard) = shard.upgrade() else {
                return Err(GroupError::Unavailable);
            };
            let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
            let code = super::append_code(
                &shard
                    .append_local(&tp, batch, crate::replication::Acks::INTERNAL)
                    .await,
            );
            // As Kafka's coordinator maps the append's outcome.
            match E::try_from_code(code) {
                None if code == 0 => Ok(()),
                Some(E::NotLeaderOrFollower | E::KafkaStorageError) => {
                    Err(GroupError::NotCoordinator)
                }
                Some(E::MessageTooLarge | E::RecordListTooLarge) => Err(GroupError::TooLarge),
                _ => Err(GroupError::Unavailable),
            }
        })
    });
    Coordinator::new(config, persist, Rc::new(io::SystemClock))
}

impl Shard {
    /// Partitions of `__consumer_offsets`.
    pub fn group_partitions(&self) -> i32 {
        self.groups.config().offsets_partitions
    }

    /// The `__consumer_offsets` partition of `group`.
    pub fn group_partition(&self, group: &str) -> TopicPartition {
        let partition = group::offsets_partition(group, self.group_partitions());
        TopicPartition::new(OFFSETS_TOPIC, partition)
    }

    /// The shard whose coordinator holds `group`.
    pub fn group_shard(&self, group: &str) -> ShardId {
        let partition = group::offsets_partition(group, self.group_partitions());
        self.owner(&TopicPartition::new(OFFSETS_TOPIC, partition))
    }

    /// Runs `op` on the shard whose coordinator holds `group`.
    pub async fn on_group<T, F, Fut>(&self, group: &str, op: F) -> Result<T, GroupError>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        // Another node leads the group's partition: it is the coordinator (Kafka's answer to a
        // client that asked the wrong node is NOT_COORDINATOR, so that it looks again).
        let partition = group::offsets_partition(group, self.group_partitions());
        if self.leads_elsewhere(OFFSETS_TOPIC, partition) {
            return Err(GroupError::NotCoordinator);
        }
        self.on_shard(self.group_shard(group), op).await
    }

    /// Reads this shard's `__consumer_offsets` partitions and rebuilds their groups.
    pub async fn load_groups(&self) {
        let started = Instant::now();
        let mut entries = Vec::new();
        let partitions = self.group_partitions();
        self.read_internal(OFFSETS_TOPIC, partitions, |p, e| entries.push((p, e)))
            .await;
        let count = entries.len();
        self.groups.load(entries);
        tracing::debug!(shard = %self.id, records = count, elapsed = ?started.elapsed(), "groups loaded");
    }

    /// Every entry of the partitions of internal topic `topic` this shard owns, oldest first
    /// per partition, with the partition.
    pub async fn read_internal(
        &self,
        topic: &str,
        partitions: i32,
        mut out: impl FnMut(i32, LogEntry),
    ) {
        for partition in 0..partitions {
            self.read_internal_partition(topic, partition, &mut out)
                .await;
        }
    }

    /// Every entry of `partition` of internal topic `topic` if this shard owns and leads it.
    pub async fn read_internal_partition(
        &self,
        topic: &str,
        partition: i32,
        mut out: impl FnMut(i32, LogEntry),
    ) {
        let tp = TopicPartition::new(topic, partition);
        if self.owner(&tp) != self.id {
            return;
        }
        // Led here as the image says, even before the node caught up with the cluster (its
        // coordinators load at start; a partition that turns out led elsewhere is dropped when
        // the image says so).
        let p = match self.partitions.get(&tp) {
            Some(p) if p.is_leader() => p,
            Some(_) => return,
            None => match self.partition(&tp).await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        if let Err(e) = read_log(&p.log, |e| out(partition, e)).await {
            tracing::error!(%tp, error = %e, "cannot read an internal topic's records");
        }
    }

    /// The coordinators follow the leadership of their internal partitions: a partition led
    /// here from a new leader epoch has its groups (or transactions) loaded from its log; one
    /// led elsewhere has them forgotten. (At start the shard's first load covers the partitions
    /// it leads.)
    pub(super) fn coordinators_follow(&self, moved: &[(Rc<Partition>, Transition)]) {
        for (partition, transition) in moved {
            let topic = &*partition.tp.topic;
            let index = partition.tp.partition;
            let offsets = topic == OFFSETS_TOPIC;
            if !offsets && topic != crate::txn::TXN_TOPIC {
                continue;
            }
            let leads = *transition == Transition::Leads;
            if !leads {
                match offsets {
                    true => self.groups.unload(index),
                    false => self.txns.unload(index),
                }
                continue;
            }
            let loaded = match offsets {
                true => self.groups.is_loaded(),
                false => self.txns.is_loaded(),
            };
            // A partition just created (epoch 0) has nothing to load, and the coordinator may
            // already be serving it (the topic is created on a coordinator's first use).
            if !loaded || partition.leader_epoch().0 == 0 {
                continue;
            }
            match offsets {
                true => self.groups.begin_loading(index),
                false => self.txns.begin_loading(index),
            }
            let shard = self.this.clone();
            self.background
                .spawn(async move {
                    let Some(shard) = shard.upgrade() else { return };
                    let started = Instant::now();
                    let mut entries = Vec::new();
                    let topic = if offsets { OFFSETS_TOPIC } else { crate::txn::TXN_TOPIC };
                    shard
                        .read_internal_partition(topic, index, |p, e| entries.push((p, e)))
                        .await;
                    let count = entries.len();
                    if offsets {
                        shard.groups.load(entries);
                        shard.groups.end_loading(index);
                    } else {
                        shard.txns.load(entries.into_iter().filter_map(|(_, e)| match e {
                            LogEntry::Record { key, value, .. } => Some((key, value)),
                            LogEntry::Marker { .. } => None,
                        }));
                        shard.txns.end_loading(index);
                    }
                    tracing::info!(topic, partition = index, records = count, elapsed = ?started.elapsed(), "coordinator loaded a partition it leads now");
                })
                .detach();
        }
    }

    pub fn spawn_group_ticker(self: &Rc<Self>) {
        let shard = Rc::downgrade(self);
        self.background
            .spawn(async move {
                loop {
                    io::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
                    let Some(shard) = shard.upgrade() else {
                        break;
                    };
                    if shard.is_stopping() {
                        break;
                    }
                    shard.groups.tick(Instant::now()).await;
                }
            })
            .detach();
    }
}

/// Every entry of an internal topic's log (records and transaction markers), oldest first.
async fn read_log(
    log: &crate::storage::Log,
    mut out: impl FnMut(LogEntry),
) -> Result<(), Box<dyn std::error::Error>> {
    let mut offset = log.log_start();
    let end = log.log_end();
    while offset < end {
        let ranges = log.read(offset, end, 1 << 20, true).await?;
        if ranges.is_empty() {
            break;
        }
        for range in ranges {
            let bytes = range.read_bytes().await?;
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (view, after) = BatchView::validate(rest)?;
                group::batch_entries(&view, &mut out)?;
                offset = view.next_offset();
                rest = after;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{error_code, membership_code};
    use crate::group::GroupError;
    use crate::protocol::ResponseError as E;

    #[test]
    fn a_record_too_large_is_a_commit_size_error_only_for_commits() {
        let too_large = GroupError::TooLarge;
        assert_eq!(error_code(too_large), E::InvalidCommitOffsetSize.code());
        assert_eq!(membership_code(too_large), E::UnknownServerError.code());
        let other = GroupError::NotCoordinator;
        assert_eq!(membership_code(other), error_code(other));
    }
}
