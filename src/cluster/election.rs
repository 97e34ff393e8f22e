//! Leaders and in-sync replicas as the image changes them (Kafka's KRaft controller rules):
//! - a broker fenced (not heard from within its session timeout) leaves the ISR of every
//!   partition that keeps a live leader; a partition it led gets a new leader from its ISR, the
//!   first live one in replica order, under a new leader epoch. With no live replica in sync the
//!   partition goes offline (the fenced leader and ISR stay as they were, so that the last
//!   replica in sync leads again when it returns) unless `unclean.leader.election.enable` lets
//!   an out-of-sync replica lead, losing what only the others had;
//! - a broker unfenced leads the offline partitions whose ISR names it;
//! - a leader changes its ISR (AlterPartition) only from the leader and partition epochs it
//!   holds, to a set of live replicas that includes itself.
//!
//! Every change of leader or ISR bumps the partition epoch; a change of leader bumps the leader
//! epoch too. Pure, like the rest of `apply`.

use std::sync::Arc;

use super::change::ChangeError;
use super::image::{Assignment, Image, TopicMeta};
use crate::model::{Epoch, NodeId};

/// Changes each partition's assignment with `f` (true when it changed it), bumping the
/// partition epoch of those it changed.
fn each_assignment(next: &mut Image, mut f: impl FnMut(&TopicMeta, &mut Assignment) -> bool) {
    for meta in next.topics.values_mut() {
        let mut assignments: Vec<Assignment> = meta.assignments.to_vec();
        let mut changed = false;
        for assignment in &mut assignments {
            if f(meta, assignment) {
                assignment.partition_epoch += 1;
                changed = true;
            }
        }
        if changed {
            meta.assignments = Arc::from(assignments);
        }
    }
}

/// Whether the topic lets an out-of-sync replica lead (`unclean.leader.election.enable`: the
/// topic's override, else the controller's broker config).
fn unclean_allowed(meta: &TopicMeta, controller_default: bool) -> bool {
    meta.configs
        .get("unclean.leader.election.enable")
        .map_or(controller_default, |v| v.eq_ignore_ascii_case("true"))
}

fn new_leader(assignment: &mut Assignment, leader: NodeId) {
    assignment.leader = leader;
    assignment.leader_epoch = Epoch(assignment.leader_epoch.0 + 1);
}

/// `id` was fenced (already in `next.fenced`).
pub(super) fn fence(next: &mut Image, id: NodeId, unclean: bool) {
    let fenced = next.fenced.clone();
    let live = |node: &NodeId| !fenced.contains(node);
    each_assignment(next, |meta, a| {
        if a.leader != id {
            if a.isr.contains(&id) && live(&a.leader) {
                a.isr.retain(|n| *n != id);
                return true;
            }
            return false;
        }
        let in_sync = a
            .replicas
            .iter()
            .find(|n| a.isr.contains(n) && live(n))
            .copied();
        if let Some(leader) = in_sync {
            new_leader(a, leader);
            a.isr.retain(|n| *n != id);
            return true;
        }
        if unclean_allowed(meta, unclean) {
            if let Some(leader) = a.replicas.iter().find(|n| live(n)).copied() {
                tracing::warn!(
                    leader = leader.0, isr = ?a.isr,
                    "unclean leader election: a replica out of sync leads; records only the others had are lost"
                );
                new_leader(a, leader);
                a.isr = vec![leader];
                return true;
            }
        }
        false
    });
}

/// `id` is live again (already out of `next.fenced`).
pub(super) fn unfence(next: &mut Image, id: NodeId) {
    let fenced = next.fenced.clone();
    each_assignment(next, |_, a| {
        if a.leader == id || !fenced.contains(&a.leader) || !a.isr.contains(&id) {
            return false;
        }
        new_leader(a, id);
        a.isr.retain(|n| !fenced.contains(n));
        true
    });
}

/// A leader's ISR change (Kafka's AlterPartition).
pub struct AlterIsr<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub leader: NodeId,
    pub leader_epoch: Epoch,
    pub partition_epoch: i32,
    pub isr: &'a [NodeId],
}

pub(super) fn alter_isr(next: &mut Image, alter: AlterIsr) -> Result<(), ChangeError> {
    let stale = ChangeError::StaleEpoch;
    let meta = next
        .topics
        .get_mut(alter.topic)
        .ok_or_else(|| ChangeError::UnknownTopic(alter.topic.to_string()))?;
    let mut assignments = meta.assignments.to_vec();
    let a = usize::try_from(alter.partition)
        .ok()
        .and_then(|p| assignments.get_mut(p))
        .ok_or_else(|| ChangeError::UnknownTopic(alter.topic.to_string()))?;
    if a.leader != alter.leader || a.leader_epoch != alter.leader_epoch {
        return Err(stale);
    }
    if a.partition_epoch != alter.partition_epoch {
        return Err(stale);
    }
    let mut isr = alter.isr.to_vec();
    isr.sort();
    isr.dedup();
    if !isr.contains(&alter.leader) {
        return Err(ChangeError::IneligibleReplica(alter.leader.0));
    }
    for node in &isr {
        if !a.replicas.contains(node) || next.fenced.contains(node) {
            return Err(ChangeError::IneligibleReplica(node.0));
        }
    }
    // In replica order, as Kafka lists it.
    a.isr = a
        .replicas
        .iter()
        .filter(|n| isr.contains(n))
        .copied()
        .collect();
    a.partition_epoch += 1;
    meta.assignments = Arc::from(assignments);
    Ok(())
}

/// Whether partition `a`'s preferred replica (the first) could lead and does not: live, in sync,
/// not the leader.
fn prefers_another(a: &Assignment, fenced: &std::collections::BTreeSet<NodeId>) -> bool {
    a.replicas
        .first()
        .is_some_and(|p| *p != a.leader && a.isr.contains(p) && !fenced.contains(p))
}

/// How many partitions a preferred-leader election would move (Kafka's leader imbalance).
pub fn preferred_elections(image: &Image) -> usize {
    image
        .topics
        .values()
        .flat_map(|meta| meta.assignments.iter())
        .filter(|a| prefers_another(a, &image.fenced))
        .count()
}

/// Every partition whose preferred replica is live and in sync is led by it (Kafka's
/// preferred-leader election, `auto.leader.rebalance.enable`).
pub(super) fn elect_preferred(next: &mut Image) {
    let fenced = next.fenced.clone();
    each_assignment(next, |_, a| {
        if !prefers_another(a, &fenced) {
            return false;
        }
        new_leader(a, a.replicas[0]);
        true
    });
}
