//! OffsetForLeaderEpoch v0-v4 (KIP-101, KIP-320): the end offset of a leader epoch, so that a
//! consumer or follower can tell whether its position survived a leader change. On one node the
//! only epoch is [`LEADER_EPOCH`] and it runs to the log end.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Answer, Api, Request};
use crate::model::TopicPartition;
use crate::protocol::ResponseError as E;
use crate::replication::{OffsetSpec, LEADER_EPOCH};
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
    for topic in body.topics {
        let name = topic.topic.0.to_string();
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
                if !exists {
                    out.error_code = E::UnknownTopicOrPartition.code();
                } else if current != NO_CURRENT_EPOCH && current > LEADER_EPOCH.0 {
                    out.error_code = E::UnknownLeaderEpoch.code();
                } else if current != NO_CURRENT_EPOCH && current < LEADER_EPOCH.0 {
                    out.error_code = E::FencedLeaderEpoch.code();
                } else if wanted >= 0 && wanted <= LEADER_EPOCH.0 {
                    // Every epoch up to ours ends where the log ends: there was only one leader.
                    match shard.list_offset(&tp, OffsetSpec::Latest).await {
                        Ok(end) => {
                            out.leader_epoch = LEADER_EPOCH.0;
                            out.end_offset = end.offset.0;
                        }
                        Err(e) => out.error_code = partition_code(&e),
                    }
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
