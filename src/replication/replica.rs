//! A partition's place among its replicas (Kafka's ISR protocol, leader side and follower side).
//!
//! The image names the leader, its epoch, the partition epoch and the ISR; [`Partition::assign`]
//! takes each new assignment. As leader, the partition tracks each follower's log end (the fetch
//! offset of its last fetch) and when it was last caught up; the high watermark is the minimum
//! log end over the ISR (a follower whose log end is not known yet holds it where it is). A
//! follower that has not been caught up within `replica.lag.time.max.ms` should leave the ISR; one
//! out of it that reaches the high watermark should come back: the leader asks the controller
//! (AlterPartition) and the change takes effect when the image brings it. As follower, the
//! partition appends what the leader sends with the leader's offsets and epochs, and keeps the
//! leader's high watermark (bounded by its own log end).

use std::collections::HashMap;

use bytes::Bytes;

use super::{Partition, PartitionError};
use crate::cluster::Assignment;
use crate::model::{BatchView, Epoch, NodeId, Offset};
use crate::storage::AppendOptions;

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug)]
struct Follower {
    /// Its log end as its last fetch said; `None` until it fetches under this leader epoch.
    log_end: Option<Offset>,
    /// When it was last known to have everything the leader had (ms).
    caught_up_ms: i64,
    /// The time of its last fetch and the leader's log end then.
    last_fetch_ms: i64,
    leader_end_at_last_fetch: Offset,
}

impl Follower {
    /// A follower tracked from `now_ms`, counted as caught up from then (Kafka does).
    fn new(now_ms: i64) -> Follower {
        Follower {
            log_end: None,
            caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            leader_end_at_last_fetch: Offset::ZERO,
        }
    }
}

/// The partition's replicas as the image says, and the leader's view of its followers.
#[derive(Debug)]
pub(super) struct Replicas {
    pub(super) assignment: Assignment,
    followers: HashMap<NodeId, Follower>,
    /// An ISR change sent to the controller and not yet seen in the image.
    pub(super) isr_change_pending: bool,
    /// The log end when this node began to lead under the current epoch.
    epoch_start: Offset,
}

impl Replicas {
    pub(super) fn new(assignment: Assignment) -> Replicas {
        Replicas {
            assignment,
            followers: HashMap::new(),
            isr_change_pending: false,
            epoch_start: Offset::ZERO,
        }
    }
}

/// What a new assignment made of this node's replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing that changes what this node does (an ISR change, say).
    Same,
    /// This node leads from now on (a new leader epoch).
    Leads,
    /// This node follows `leader` under `epoch`; its log may hold a tail the leader does not have.
    Follows { leader: NodeId, epoch: Epoch },
    /// This node holds no replica any more (the topic deleted, or the replica moved away): the
    /// partition is closed and its data deleted.
    Gone,
}

/// A change of ISR for the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: Epoch,
    pub partition_epoch: i32,
    pub isr: Vec<NodeId>,
}

impl Partition {
    /// The replicas as the image last said.
    pub fn assignment(&self) -> Assignment {
        self.replicas.borrow().assignment.clone()
    }

    /// How many replicas are in sync (acks=all looks on every produce: no copy).
    pub fn isr_len(&self) -> usize {
        self.replicas.borrow().assignment.isr.len()
    }

    pub fn is_leader(&self) -> bool {
        self.replicas.borrow().assignment.leader == self.me
    }

    pub fn leader_epoch(&self) -> Epoch {
        self.replicas.borrow().assignment.leader_epoch
    }

    /// Takes the image's assignment of this partition.
    pub fn assign(&self, assignment: &Assignment) -> Transition {
        let now_ms = self.log.now().0;
        let transition = {
            let mut replicas = self.replicas.borrow_mut();
            let before = &replicas.assignment;
            let new_term = before.leader != assignment.leader
                || before.leader_epoch != assignment.leader_epoch;
            let isr_moved = before.partition_epoch != assignment.partition_epoch;
            if !new_term && !isr_moved {
                return Transition::Same;
            }
            replicas.assignment = assignment.clone();
            replicas.isr_change_pending = false;
            if !new_term {
                // The replicas themselves may have changed (a reassignment): new ones are
                // tracked from their first fetch, those gone are forgotten.
                let me = self.me;
                replicas
                    .followers
                    .retain(|n, _| assignment.replicas.contains(n));
                for node in assignment.replicas.iter().filter(|n| **n != me) {
                    replicas
                        .followers
                        .entry(*node)
                        .or_insert_with(|| Follower::new(now_ms));
                }
            }
            if new_term {
                replicas.epoch_start = self.log.log_end();
                // A new leader counts its followers as caught up from now (Kafka does).
                replicas.followers = assignment
                    .replicas
                    .iter()
                    .filter(|n| **n != self.me)
                    .map(|n| (*n, Follower::new(now_ms)))
                    .collect();
            }
            match (new_term, assignment.leader == self.me) {
                (false, _) => Transition::Same,
                (true, true) => Transition::Leads,
                (true, false) => Transition::Follows {
                    leader: assignment.leader,
                    epoch: assignment.leader_epoch,
                },
            }
        };
        if self.is_leader() {
            self.update_high_watermark();
        }
        // Produces waiting for acks=all look again (they answer NOT_LEADER once it moved).
        self.wake_waiters();
        transition
    }

    /// The leader's high watermark: the minimum log end over the ISR, never lower than it was.
    pub(super) fn update_high_watermark(&self) {
        let candidate = {
            let replicas = self.replicas.borrow();
            let mut candidate = Some(self.log.log_end());
            for node in &replicas.assignment.isr {
                if *node == self.me {
                    continue;
                }
                let end = replicas.followers.get(node).and_then(|f| f.log_end);
                candidate = match (candidate, end) {
                    (Some(c), Some(end)) => Some(c.min(end)),
                    _ => None,
                };
            }
            candidate
        };
        if let Some(end) = candidate {
            self.advance_high_watermark(end);
        }
    }

    /// A follower fetched from `offset` (leader side): its log end, whether it is caught up,
    /// and the high watermark that follows. Returns the ISR change this calls for, if any (a
    /// follower out of the ISR that reached the high watermark comes back).
    pub fn follower_fetched(&self, node: NodeId, offset: Offset) -> Option<IsrChange> {
        let now_ms = self.log.now().0;
        let leader_end = self.log.log_end();
        {
            let mut replicas = self.replicas.borrow_mut();
            let follower = replicas.followers.get_mut(&node)?;
            let offset = offset.min(leader_end);
            if offset >= leader_end {
                follower.caught_up_ms = now_ms;
            } else if offset >= follower.leader_end_at_last_fetch {
                follower.caught_up_ms = follower.caught_up_ms.max(follower.last_fetch_ms);
            }
            follower.log_end = Some(offset);
            follower.last_fetch_ms = now_ms;
            follower.leader_end_at_last_fetch = leader_end;
        }
        self.update_high_watermark();
        let replicas = self.replicas.borrow();
        let a = &replicas.assignment;
        // Caught up to the high watermark and into this leader's epoch (as Kafka requires).
        let rejoins = !a.isr.contains(&node)
            && offset >= self.high_watermark()
            && offset >= replicas.epoch_start;
        if !rejoins || replicas.isr_change_pending {
            return None;
        }
        let mut isr = a.isr.clone();
        isr.push(node);
        Some(IsrChange {
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            isr,
        })
    }

    /// The followers in the ISR not caught up within `lag_ms` (leader side): the ISR without
    /// them, if any.
    pub fn isr_shrink(&self, lag_ms: i64) -> Option<IsrChange> {
        let replicas = self.replicas.borrow();
        let a = &replicas.assignment;
        // The leader alone in its ISR has nobody to drop (the clock is read only past here: the
        // ticker asks every partition of the shard, thousands, four times a second).
        if a.leader != self.me || replicas.isr_change_pending || a.isr.len() < 2 {
            return None;
        }
        let now_ms = self.log.now().0;
        let lagging = |node: &NodeId| {
            *node != self.me
                && replicas
                    .followers
                    .get(node)
                    .is_some_and(|f| now_ms - f.caught_up_ms > lag_ms)
        };
        if !a.isr.iter().any(lagging) {
            return None;
        }
        Some(IsrChange {
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            isr: a.isr.iter().filter(|n| !lagging(n)).copied().collect(),
        })
    }

    /// Marks an ISR change as sent (or, with `false`, as failed: it may be sent again).
    pub fn set_isr_change_pending(&self, pending: bool) {
        self.replicas.borrow_mut().isr_change_pending = pending;
    }

    /// Follower side: appends the leader's batches as they are (offsets and epochs), skipping
    /// any this log already has, and takes the leader's high watermark.
    pub async fn append_replicated(
        &self,
        records: Bytes,
        leader_high_watermark: Offset,
    ) -> Result<(), PartitionError> {
        let log_end = self.log.log_end();
        let mut start = 0;
        let mut end = 0;
        let mut rest = &records[..];
        while let Ok(total) = BatchView::total_len(rest) {
            if total > rest.len() {
                break; // a partial batch at the end of a response
            }
            let (view, _) = BatchView::parse_header(rest)
                .map_err(|e| PartitionError::Corrupt(format!("a batch from the leader: {e}")))?;
            if view.next_offset() <= log_end {
                start = end + total;
            } else if view.base_offset() < log_end {
                return Err(PartitionError::Diverged);
            }
            end += total;
            rest = &rest[total..];
        }
        if end > start {
            let options = AppendOptions {
                assign_offsets: false,
                ..AppendOptions::default()
            };
            self.log
                .append(vec![records.slice(start..end)], options)
                .await?;
        }
        self.follow_high_watermark(leader_high_watermark);
        Ok(())
    }

    /// Follower side: the leader's high watermark, bounded by this log's end.
    pub fn follow_high_watermark(&self, leader_high_watermark: Offset) {
        let end = self.log.log_end();
        self.advance_high_watermark(leader_high_watermark.min(end));
    }

    /// Follower side: cuts the log at `offset` (a tail the leader does not have), or past its
    /// end starts it again empty there; the high watermark comes down with it if it must.
    pub async fn truncate(&self, offset: Offset) -> Result<Offset, PartitionError> {
        let end = if offset > self.log.log_end() {
            // Behind the leader's log start: nothing here is worth keeping.
            let end = self.log.restart_at(offset).await?;
            self.high_watermark.set(end);
            end
        } else {
            self.log.truncate_to(offset).await?
        };
        if self.high_watermark.get() > end {
            self.high_watermark.set(end);
        }
        Ok(end)
    }
}
