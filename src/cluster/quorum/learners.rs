//! The brokers that do not vote: raft's learners, added as they connect to the leader and
//! removed once unregistered and gone.

use raft::prelude::ConfChange;

use super::{node_of, raft_id, Quorum, QuorumError};
use crate::model::NodeId;

impl Quorum {
    /// As the leader, keeps raft's learners to the brokers that do not vote and are still
    /// wanted: the first of `connected` (connected to this voter) that is not yet in raft's
    /// configuration becomes a learner, committed like any change, and is then sent the log and
    /// heartbeats; else the first learner that is neither connected nor a registered broker (it
    /// was unregistered, and is gone) is removed. One change at a time (raft takes one
    /// configuration change at a time); the next call makes the next.
    pub async fn reconcile_learners(&self, connected: &[NodeId]) -> Result<(), QuorumError> {
        let image = self.image();
        let proposed = {
            let _guard = self.driving.lock().await;
            let mut node = self.node.borrow_mut();
            if node.raft.state != raft::StateRole::Leader || node.raft.has_pending_conf() {
                return Ok(());
            }
            let new = connected
                .iter()
                .find(|&&n| node.raft.prs().get(raft_id(n)).is_none());
            let gone = || {
                let learners = node.raft.prs().conf().to_conf_state().learners;
                learners
                    .into_iter()
                    .map(node_of)
                    .find(|n| !connected.contains(n) && !image.brokers.contains_key(n))
            };
            let mut change = ConfChange::default();
            if let Some(&new) = new {
                change.set_change_type(raft::prelude::ConfChangeType::AddLearnerNode);
                change.node_id = raft_id(new);
                tracing::info!(
                    node = new.0,
                    "a broker that does not vote joins the metadata quorum as a learner"
                );
            } else if let Some(gone) = gone() {
                change.set_change_type(raft::prelude::ConfChangeType::RemoveNode);
                change.node_id = raft_id(gone);
                tracing::info!(
                    node = gone.0,
                    "an unregistered broker that does not vote leaves the metadata quorum"
                );
            } else {
                return Ok(());
            }
            node.propose_conf_change(Vec::new(), change)
        };
        if let Err(e) = proposed {
            tracing::debug!(error = %e, "a learner change was not proposed");
            return Ok(());
        }
        self.drive().await
    }

    /// The voters and the learners of raft's configuration as this node has it.
    pub fn membership(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let node = self.node.borrow();
        let conf = node.raft.prs().conf().to_conf_state();
        let ids = |ids: &[u64]| {
            let mut ids: Vec<NodeId> = ids.iter().map(|&id| node_of(id)).collect();
            ids.sort();
            ids
        };
        (ids(&conf.voters), ids(&conf.learners))
    }
}
