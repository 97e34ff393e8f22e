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

/// Finds partition `partition` of `topic` in `next` for `f`, which changes it or refuses; a
/// change bumps the partition epoch.
fn with_assignment(
    next: &mut Image,
    topic: &str,
    partition: i32,
    f: impl FnOnce(&mut Assignment, &std::collections::BTreeSet<NodeId>) -> Result<(), ChangeError>,
) -> Result<(), ChangeError> {
    let fenced = next.fenced.clone();
    let unknown = || ChangeError::UnknownPartition(topic.to_string(), partition);
    let meta = next.topics.get_mut(topic).ok_or_else(unknown)?;
    let mut assignments = meta.assignments.to_vec();
    let a = usize::try_from(partition)
        .ok()
        .and_then(|p| assignments.get_mut(p))
        .ok_or_else(unknown)?;
    f(a, &fenced)?;
    a.partition_epoch += 1;
    meta.assignments = Arc::from(assignments);
    Ok(())
}

/// Ends partition `a`'s replicas at `target` (the ISR and the leader follow; a leader that is
/// not in it hands over to the first live replica of `target` in sync), the reassignment done.
fn settle(a: &mut Assignment, target: Vec<NodeId>, fenced: &std::collections::BTreeSet<NodeId>) {
    a.isr.retain(|n| target.contains(n));
    if !target.contains(&a.leader) {
        let next = target
            .iter()
            .find(|n| a.isr.contains(n) && !fenced.contains(n))
            .copied();
        if let Some(leader) = next {
            new_leader(a, leader);
        }
    }
    a.isr = target
        .iter()
        .filter(|n| a.isr.contains(n))
        .copied()
        .collect();
    a.replicas = target;
    a.adding.clear();
    a.removing.clear();
}

/// Completes `a`'s reassignment once every replica it ends with is in sync (Kafka's rule); true
/// when it did.
fn complete_if_in_sync(a: &mut Assignment, fenced: &std::collections::BTreeSet<NodeId>) -> bool {
    if !a.is_reassigning() {
        return false;
    }
    let target = a.target();
    let leader_stays = target.contains(&a.leader) && !fenced.contains(&a.leader);
    let successor = target
        .iter()
        .any(|n| a.isr.contains(n) && !fenced.contains(n));
    if !target.iter().all(|n| a.isr.contains(n)) || !(leader_stays || successor) {
        return false;
    }
    settle(a, target, fenced);
    true
}

/// Moves partition `partition` of `topic` onto `target` (Kafka's AlterPartitionReassignments,
/// KIP-455): the replicas become the union of the target and the current ones, the new ones copy
/// from the leader and, once all of the target is in sync, the others leave. `None` cancels a
/// running reassignment (the replicas return to what they were).
pub(super) fn reassign(
    next: &mut Image,
    topic: &str,
    partition: i32,
    target: Option<&[NodeId]>,
) -> Result<(), ChangeError> {
    let registered: Vec<NodeId> = next.brokers.keys().copied().collect();
    with_assignment(next, topic, partition, |a, fenced| {
        // What the replicas were before any running reassignment.
        let original: Vec<NodeId> = a
            .replicas
            .iter()
            .filter(|n| !a.adding.contains(n))
            .copied()
            .collect();
        let Some(target) = target else {
            if !a.is_reassigning() {
                return Err(ChangeError::NoReassignment(topic.to_string(), partition));
            }
            let leads = |n: &NodeId| a.isr.contains(n) && !fenced.contains(n);
            if !original.contains(&a.leader) && !original.iter().any(leads) {
                return Err(ChangeError::InvalidReplicas(format!(
                    "no replica of {original:?} is in sync to lead again"
                )));
            }
            settle(a, original, fenced);
            return Ok(());
        };
        let mut seen = std::collections::BTreeSet::new();
        if target.is_empty() || !target.iter().all(|n| seen.insert(*n)) {
            return Err(ChangeError::InvalidReplicas(format!(
                "{target:?}: a partition needs one or more replicas, each once"
            )));
        }
        if let Some(unknown) = target.iter().find(|n| !registered.contains(n)) {
            return Err(ChangeError::InvalidReplicas(format!(
                "broker {} is not registered",
                unknown.0
            )));
        }
        let mut replicas = target.to_vec();
        replicas.extend(original.iter().filter(|n| !target.contains(n)));
        a.adding = target
            .iter()
            .filter(|n| !original.contains(n))
            .copied()
            .collect();
        a.removing = original
            .iter()
            .filter(|n| !target.contains(n))
            .copied()
            .collect();
        // A replica added by the reassignment this one replaces is no longer copying for it.
        a.isr.retain(|n| replicas.contains(n));
        a.replicas = replicas;
        complete_if_in_sync(a, fenced);
        Ok(())
    })
}

/// Completes the reassignment of every partition whose target is in sync (after an ISR change).
pub(super) fn complete_reassignments(next: &mut Image, topic: &str) {
    let fenced = next.fenced.clone();
    if let Some(meta) = next.topics.get_mut(topic) {
        if meta.assignments.iter().any(Assignment::is_reassigning) {
            let mut assignments = meta.assignments.to_vec();
            for a in &mut assignments {
                if complete_if_in_sync(a, &fenced) {
                    a.partition_epoch += 1;
                }
            }
            meta.assignments = Arc::from(assignments);
        }
    }
}

/// Why partition `a` takes no election of `kind`, if it takes none (Kafka's ElectLeaders rules).
pub fn election_refused(
    a: &Assignment,
    unclean: bool,
    fenced: &std::collections::BTreeSet<NodeId>,
) -> Option<ElectionRefused> {
    if !unclean {
        let leads = a.replicas.first() == Some(&a.leader) && !fenced.contains(&a.leader);
        return match (prefers_another(a, fenced), leads) {
            (true, _) => None,
            (false, true) => Some(ElectionRefused::NotNeeded),
            (false, false) => Some(ElectionRefused::PreferredUnavailable),
        };
    }
    if !fenced.contains(&a.leader) {
        return Some(ElectionRefused::NotNeeded);
    }
    match a.replicas.iter().any(|n| !fenced.contains(n)) {
        true => None,
        false => Some(ElectionRefused::NoEligibleLeader),
    }
}

/// Why a partition was not given a new leader by ElectLeaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionRefused {
    /// The leader is already the one the election would choose (or, unclean, is live).
    NotNeeded,
    /// The preferred replica is fenced or out of sync.
    PreferredUnavailable,
    /// No replica is live.
    NoEligibleLeader,
}

/// Elects leaders for `partitions` (Kafka's ElectLeaders): preferred, the first replica where it
/// is live and in sync; unclean, for a partition without a live leader, the first live replica
/// in sync, else any live replica (losing what only the others had). Partitions that take no
/// election are left as they are.
pub(super) fn elect_leaders(next: &mut Image, unclean: bool, partitions: &[(String, i32)]) {
    for (topic, partition) in partitions {
        let _ = with_assignment(next, topic, *partition, |a, fenced| {
            if election_refused(a, unclean, fenced).is_some() {
                return Err(ChangeError::StaleEpoch);
            }
            if !unclean {
                new_leader(a, a.replicas[0]);
                return Ok(());
            }
            let live = |n: &&NodeId| !fenced.contains(n);
            if let Some(leader) = a.replicas.iter().filter(live).find(|n| a.isr.contains(n)) {
                new_leader(a, *leader);
                a.isr.retain(|n| !fenced.contains(n));
                return Ok(());
            }
            let leader = *a.replicas.iter().find(live).expect("checked");
            tracing::warn!(
                topic, partition, leader = leader.0, isr = ?a.isr,
                "unclean leader election (ElectLeaders): a replica out of sync leads; records only \
                 the others had are lost"
            );
            new_leader(a, leader);
            a.isr = vec![leader];
            Ok(())
        });
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
