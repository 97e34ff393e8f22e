//! OffsetForLeaderEpoch v0-v4 (KIP-101, KIP-320): the end offset of a leader epoch, so that a
//! consumer or follower can tell whether its position survived a leader change, from the
//! partition's leader-epoch checkpoint.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Answer, Api, Request};
use crate::model::{Offset, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::replication::PartitionError;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::{partition_code, Shard};

pub const API: Api = Api {
    key: ApiKey::OffsetForLeaderEpoch,
    min_version: 0,
    max_version: 4,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

/// What Kafka answers for an epoch it does not know.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// "No fencing": the client does not know the current epoch.
const NO_CURRENT_EPOCH: i32 = -1;

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: OffsetForLeaderEpochRequest = request.decode("OffsetForLeaderEpochRequest")?;
    let mut response = OffsetForLeaderEpochResponse::default();
    // A follower asks as a broker (CLUSTER_ACTION); a consumer needs DESCRIBE on the topic.
    let authz = Authz::of(&shard, &request);
    let follower = body.replica_id.0 >= 0;
    let follower_refused = follower && !authz.cluster(Operation::ClusterAction);
    for topic in body.topics {
        let name = topic.topic.0.to_string();
        let refused = if follower_refused {
            Some(E::ClusterAuthorizationFailed)
        } else if !follower && !authz.topic(Operation::Describe, &name) {
            Some(E::TopicAuthorizationFailed)
        } else {
            None
        };
        let meta = shard.topic(&name);
        let answers = topic.partitions.iter().map(|p| {
            let shard = shard.clone();
            let tp = TopicPartition::new(name.clone(), p.partition);
            let exists = meta
                .as_ref()
                .is_some_and(|m| (0..m.partitions).contains(&p.partition));
            let (current, wanted) = (p.current_leader_epoch, p.leader_epoch);
            async move {
                let mut out = EpochEndOffset::default();
                out.partition = tp.partition;
                out.leader_epoch = UNDEFINED_EPOCH;
                out.end_offset = UNDEFINED_EPOCH_OFFSET;
                if let Some(error) = refused {
                    out.error_code = error.code();
                    return out;
                }
                if !exists {
                    out.error_code = E::UnknownTopicOrPartition.code();
                    return out;
                }
                let owner = shard.owner(&tp);
                let found: Result<_, PartitionError> = shard
                    .on_shard(owner, move |shard| async move {
                        shard.epoch_end_local(&tp, current, wanted).await
                    })
                    .await
                    .and_then(|found| found);
                match found {
                    Ok(Some((epoch, end))) => {
                        out.leader_epoch = epoch;
                        out.end_offset = end.0;
                    }
                    Ok(None) => {}
                    Err(e) => out.error_code = partition_code(&e),
                }
                out
            }
        });
        let mut entry = OffsetForLeaderTopicResult::default();
        entry.topic = topic.topic.clone();
        entry.partitions = join_all(answers).await;
        response.topics.push(entry);
    }
    request.answer(&response)
}

impl Shard {
    /// Where leader epoch `wanted` ends in the log of `tp` (this shard owns it and leads it):
    /// the largest epoch at or below it the log holds, and the offset after it. `current` fences
    /// a caller that knows another leader epoch than this one.
    async fn epoch_end_local(
        &self,
        tp: &TopicPartition,
        current: i32,
        wanted: i32,
    ) -> Result<Option<(i32, Offset)>, PartitionError> {
        let partition = self.partition(tp).await?;
        let epoch = partition.leader_epoch().0;
        if current != NO_CURRENT_EPOCH && current > epoch {
            return Err(PartitionError::UnknownLeaderEpoch {
                asked: current,
                current: epoch,
            });
        }
        if current != NO_CURRENT_EPOCH && current < epoch {
            return Err(PartitionError::FencedLeaderEpoch {
                asked: current,
                current: epoch,
            });
        }
        // An epoch past the current one never was (Kafka answers it undefined); the current one
        // runs to the log end even before this leader wrote in it.
        if wanted < 0 || wanted > epoch {
            return Ok(None);
        }
        if wanted == epoch {
            return Ok(Some((epoch, partition.log.log_end())));
        }
        Ok(partition.log.epoch_end(wanted))
    }
}
