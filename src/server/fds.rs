//! The descriptor budget: how the process's `RLIMIT_NOFILE` (its soft limit raised to the hard one
//! at start) is shared out, so that no user action can take the last descriptor the broker needs.
//!
//! Taken first: the process's own (stdio, the data-dir lock, the signal thread, each shard's rings,
//! eventfd and listener socket and its one compaction pass's output file, short-lived metadata
//! files). Then client connections: when
//! `max.connections` is set, that many (as long as every shard keeps room for its fixed files
//! and one partition); when it is not, [`CONNECTION_SHARE_PERCENT`] of what is left (the accept
//! loop waits at that bound, as at `max.connections`). The rest is split evenly over the shards;
//! each keeps [`io::TRANSIENT_FILES_MAX`] for files it opens briefly (index writes, checkpoints,
//! snapshots), a set of closed segments loaded on demand (`storage::set_loaded_segments_capacity`,
//! least recently used closed first), and one descriptor per owned partition (its active
//! segment's log file). A CreateTopics, CreatePartitions or reassignment that would give a
//! shard more partitions than that is refused before anything is created; in a cluster, each
//! broker registers its room (`Capacity`) and every broker's is checked.

use std::collections::BTreeMap;

use super::Shard;
use crate::cluster::{Capacity, ChangeError, Image};
use crate::io;
use crate::model::{NodeId, TopicPartition};

/// Descriptors the process keeps for itself, plus this many per shard.
const PROCESS_RESERVED: u64 = 32;
const PER_SHARD_RESERVED: u64 = 8;
/// The most of the descriptors left after the process's own that connections may take.
pub const CONNECTION_SHARE_PERCENT: u64 = 40;
/// Closed segments a shard keeps loaded: a sixteenth of its share, within these bounds.
const LOADED_SEGMENTS_MIN: usize = 16;
const LOADED_SEGMENTS_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The process's descriptor limit.
    pub limit: u64,
    /// Connections admitted at once (`max.connections`, or less when the limit says so).
    pub connections: usize,
    /// What each shard may hold for its partitions' files.
    pub per_shard: usize,
    /// Closed segments each shard keeps loaded.
    pub loaded_segments: usize,
    /// Partitions each shard may own.
    pub partitions_per_shard: usize,
}

impl FdBudget {
    /// Shares `limit` descriptors out over `shards` shards; `max_connections` when the operator
    /// set it.
    pub fn new(
        limit: u64,
        shards: usize,
        max_connections: Option<usize>,
    ) -> Result<FdBudget, String> {
        let reserved = PROCESS_RESERVED + PER_SHARD_RESERVED * shards as u64;
        let available = limit.saturating_sub(reserved);
        let least_per_shard = (io::TRANSIENT_FILES_MAX + LOADED_SEGMENTS_MIN + 1) as u64;
        let connections = match max_connections {
            Some(max) => {
                (max as u64).min(available.saturating_sub(least_per_shard * shards.max(1) as u64))
            }
            None => available * CONNECTION_SHARE_PERCENT / 100,
        };
        let per_shard = ((available - connections) / shards.max(1) as u64) as usize;
        let loaded_segments = (per_shard / 16).clamp(LOADED_SEGMENTS_MIN, LOADED_SEGMENTS_MAX);
        let fixed = io::TRANSIENT_FILES_MAX + loaded_segments;
        if per_shard <= fixed {
            return Err(format!(
                "the descriptor limit ({limit}, RLIMIT_NOFILE) is too low for {shards} shards: \
                 each needs more than {fixed} besides connections and its partitions; raise it \
                 (ulimit -n, LimitNOFILE= in a systemd unit) or run fewer shards (--cores)"
            ));
        }
        Ok(FdBudget {
            limit,
            connections: connections as usize,
            per_shard,
            loaded_segments,
            partitions_per_shard: per_shard - fixed,
        })
    }

    /// The start-up line's account of it.
    pub fn describe(&self) -> String {
        format!(
            "descriptors {}: {} for connections, {} per shard ({} partitions, {} closed segments \
             loaded, {} short-lived)",
            self.limit,
            self.connections,
            self.per_shard,
            self.partitions_per_shard,
            self.loaded_segments,
            io::TRANSIENT_FILES_MAX
        )
    }

    /// What this node registers that it can hold, on `shards` shards.
    pub fn capacity(&self, shards: usize) -> Capacity {
        Capacity {
            shards: shards as u32,
            partitions_per_shard: self.partitions_per_shard as u64,
        }
    }

    /// Why a node whose shards own `per_shard` partitions cannot hold them, if it cannot.
    pub fn refuse(&self, per_shard: &[usize]) -> Option<String> {
        let (shard, most) = per_shard
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|(_, n)| *n)?;
        (most > self.partitions_per_shard).then(|| {
            format!(
                "this node holds at most {} partitions per shard ({} shards; descriptor limit {}, \
                 {} of it for connections): this would put {most} on shard {shard}. Raise the \
                 descriptor limit (LimitNOFILE=) or lower max.connections",
                self.partitions_per_shard,
                per_shard.len(),
                self.limit,
                self.connections
            )
        })
    }
}

impl Shard {
    /// Refuses an image that gives a shard more partitions than its descriptors can serve (and
    /// more than it has now: a node restarted with a lower limit keeps what it has).
    pub(super) fn check_partition_room(
        &self,
        current: &Image,
        next: &Image,
    ) -> Result<(), ChangeError> {
        let now = partitions_per_shard(current, NodeId(self.node_id), self.shards);
        let after = partitions_per_shard(next, NodeId(self.node_id), self.shards);
        let grown: Vec<usize> = after
            .iter()
            .zip(&now)
            .map(|(after, now)| if after > now { *after } else { 0 })
            .collect();
        if let Some(message) = self.fds.refuse(&grown) {
            return Err(ChangeError::PolicyViolation(message));
        }
        match refuse_elsewhere(current, next, NodeId(self.node_id)) {
            Some(message) => Err(ChangeError::PolicyViolation(message)),
            None => Ok(()),
        }
    }

    /// What this node registers that it can hold.
    pub(super) fn capacity(&self) -> Capacity {
        self.fds.capacity(self.shards)
    }
}

/// Why `next` gives another broker than `me` more partitions on one of its shards than it
/// registered room for (and more than it has in `current`), if it does: CreateTopics,
/// CreatePartitions and reassignments checked against every broker's descriptor budget.
fn refuse_elsewhere(current: &Image, next: &Image, me: NodeId) -> Option<String> {
    let capacities: BTreeMap<NodeId, Capacity> = next
        .brokers
        .iter()
        .filter(|(id, _)| **id != me)
        .filter_map(|(id, b)| Some((*id, b.capacity?)))
        .collect();
    if capacities.is_empty() {
        return None;
    }
    let shards = capacities
        .iter()
        .map(|(id, c)| (*id, c.shards as usize))
        .collect();
    let now = replicas_per_shard(current, &shards, None);
    let after = replicas_per_shard(next, &shards, None);
    for (id, counts) in &after {
        let most = capacities[id].partitions_per_shard;
        let before = now.get(id);
        let grown = counts
            .iter()
            .enumerate()
            .find(|(shard, n)| **n as u64 > most && before.is_none_or(|b| b[*shard] < **n));
        if let Some((shard, n)) = grown {
            return Some(format!(
                "broker {} holds at most {most} partitions per shard ({} shards, as it \
                 registered): this would put {n} on its shard {shard}. Place the replicas on \
                 other brokers, or raise that broker's descriptor limit (LimitNOFILE=)",
                id.0,
                counts.len()
            ));
        }
    }
    None
}

/// How many partitions of `image` each broker of `shards` (by its number of shards) holds a
/// replica of on each of its shards, in one pass over the partitions. A partition not assigned
/// yet counts for `unassigned_to` (a single node takes it when it registers).
fn replicas_per_shard(
    image: &Image,
    shards: &BTreeMap<NodeId, usize>,
    unassigned_to: Option<NodeId>,
) -> BTreeMap<NodeId, Vec<usize>> {
    let mut counts: BTreeMap<NodeId, Vec<usize>> = shards
        .iter()
        .map(|(id, n)| (*id, vec![0; (*n).max(1)]))
        .collect();
    for (name, meta) in &image.topics {
        for partition in 0..meta.partitions {
            let replicas = meta
                .assignments
                .get(partition as usize)
                .map_or(unassigned_to.as_slice(), |a| a.replicas.as_slice());
            let mut tp = None;
            for replica in replicas {
                let Some(on) = counts.get_mut(replica) else {
                    continue;
                };
                let tp = tp.get_or_insert_with(|| TopicPartition::new(name.clone(), partition));
                let count = on.len();
                on[crate::shard::owner(tp, count).index()] += 1;
            }
        }
    }
    counts
}

/// [`replicas_per_shard`] for `node` alone, counting the partitions not assigned yet.
fn partitions_per_shard(image: &Image, node: NodeId, shards: usize) -> Vec<usize> {
    let only = BTreeMap::from([(node, shards)]);
    let mut counts = replicas_per_shard(image, &only, Some(node));
    counts.remove(&node).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_shared_connections_first_then_shards() {
        let budget = FdBudget::new(20_000, 2, None).unwrap();
        assert_eq!(budget.connections, 7_980);
        assert_eq!(budget.per_shard, 5_986);
        assert_eq!(budget.loaded_segments, 374);
        assert_eq!(
            budget.partitions_per_shard,
            5_986 - 374 - io::TRANSIENT_FILES_MAX
        );
        // max.connections set: fewer connections leave more for partitions, more leave less.
        let fewer = FdBudget::new(20_000, 2, Some(1_000)).unwrap();
        assert_eq!(fewer.connections, 1_000);
        assert!(fewer.partitions_per_shard > budget.partitions_per_shard);
        let more = FdBudget::new(20_000, 2, Some(10_000)).unwrap();
        assert_eq!(more.connections, 10_000);
        assert!(more.partitions_per_shard < budget.partitions_per_shard);
        // Never all of them: each shard keeps room for a partition.
        let all = FdBudget::new(20_000, 2, Some(i32::MAX as usize)).unwrap();
        assert!(all.partitions_per_shard >= 1);
        // Everything stays within the limit.
        for b in [budget, fewer, more, all] {
            let used = 32 + 8 * 2 + b.connections + 2 * b.per_shard;
            assert!(used as u64 <= b.limit);
        }
    }

    #[test]
    fn a_limit_too_low_is_an_error_and_a_full_shard_refuses() {
        assert!(FdBudget::new(64, 2, None).is_err());
        let budget = FdBudget::new(1_024, 2, None).unwrap();
        assert_eq!(budget.refuse(&[budget.partitions_per_shard, 3]), None);
        let refusal = budget
            .refuse(&[1, budget.partitions_per_shard + 1])
            .unwrap();
        assert!(refusal.contains("shard 1"), "{refusal}");
        assert!(refusal.contains(&budget.partitions_per_shard.to_string()));
    }

    /// Brokers 1 to 3 registered, each with the room `capacity` gives it.
    fn three_brokers(capacity: impl Fn(i32) -> Option<Capacity>) -> Image {
        use crate::cluster::{apply, BrokerMeta, Change};
        (1..=3).fold(Image::default(), |image, id| {
            let broker = BrokerMeta {
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                listeners: Vec::new(),
                capacity: capacity(id),
            };
            apply(
                &image,
                &Change::RegisterBroker {
                    id: NodeId(id),
                    broker,
                },
            )
            .unwrap()
        })
    }

    #[test]
    fn a_node_counts_only_the_partitions_it_holds_a_copy_of() {
        use crate::cluster::{apply, Change};
        let image = three_brokers(|_| None);
        // Six partitions, one replica each, round-robin over three nodes: two on each.
        let image = apply(&image, &Change::create_topic("t", 6, Default::default())).unwrap();
        for node in 1..=3 {
            let counts = partitions_per_shard(&image, NodeId(node), 2);
            assert_eq!(counts.iter().sum::<usize>(), 2, "node {node}: {counts:?}");
        }
    }

    #[test]
    fn other_brokers_are_held_to_the_room_they_registered() {
        use crate::cluster::{apply, Change};
        // Broker 2 has room for two partitions on its one shard; 3 did not say.
        let image = three_brokers(|id| {
            (id == 2).then_some(Capacity {
                shards: 1,
                partitions_per_shard: 2,
            })
        });
        let everywhere = |name: &str, partitions: i32| Change::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            replication_factor: 3,
            configs: Default::default(),
            assignments: None,
        };
        let me = NodeId(1);
        let three = apply(&image, &everywhere("t", 3)).unwrap();
        let refused = refuse_elsewhere(&image, &three, me).expect("refused");
        assert!(refused.contains("broker 2 holds at most 2"), "{refused}");
        assert!(refused.contains("put 3 on its shard 0"), "{refused}");
        let two = apply(&image, &everywhere("t", 2)).unwrap();
        assert_eq!(refuse_elsewhere(&image, &two, me), None);
        // A reassignment onto it is held to the same room; one off it is not.
        let on_1 = Change::CreateTopic {
            name: "u".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Some(vec![vec![me]]),
        };
        let other = apply(&two, &on_1).unwrap();
        let onto = |replicas: Vec<i32>| Change::ReassignPartition {
            topic: "u".into(),
            partition: 0,
            replicas: Some(replicas.into_iter().map(NodeId).collect()),
        };
        let moved = apply(&other, &onto(vec![2])).unwrap();
        assert!(refuse_elsewhere(&other, &moved, me).is_some());
        let moved = apply(&other, &onto(vec![3])).unwrap();
        assert_eq!(refuse_elsewhere(&other, &moved, me), None);
        // Over its room already (its limit was lowered): kept, not grown.
        assert_eq!(refuse_elsewhere(&three, &three, me), None);
        // This node's own room is its budget's, not its registration's.
        assert_eq!(refuse_elsewhere(&image, &three, NodeId(2)), None);
        assert_eq!(Image::from_toml(&three.to_toml()).unwrap(), three);
    }
}
