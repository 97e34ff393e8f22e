//! ListOffsets v1-v7: the earliest (-2) or latest (-1) offset of a partition, the first offset
//! whose record timestamp is at or after a given time (offsets-for-times), or from v7 the record
//! with the largest timestamp (-3, KIP-734).

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::{topic_name, Answer, Api, Request};
use crate::model::TopicPartition;
use crate::protocol::ResponseError as E;
use crate::replication::OffsetSpec;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::{partition_code, Shard};

pub const API: Api = Api {
    key: ApiKey::ListOffsets,
    min_version: 1,
    max_version: 7,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ListOffsetsRequest = request.decode("ListOffsetsRequest")?;
    let version = request.version;
    let mut response = ListOffsetsResponse::default();
    let authz = Authz::of(&shard, &request);
    for topic in body.topics {
        let name = topic.name.0.to_string();
        // DESCRIBE on the topic.
        let allowed = authz.topic(Operation::Describe, &name);
        let meta = shard.topic(&name).filter(|_| allowed);
        let answers = topic.partitions.iter().map(|p| {
            let shard = shard.clone();
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let exists = meta
                .as_ref()
                .is_some_and(|m| (0..m.partitions).contains(&p.partition_index));
            let spec = match p.timestamp {
                // read_committed (isolation level 1, from v2): the last stable offset.
                LATEST_TIMESTAMP if body.isolation_level == 1 => Some(OffsetSpec::LastStable),
                LATEST_TIMESTAMP => Some(OffsetSpec::Latest),
                EARLIEST_TIMESTAMP => Some(OffsetSpec::Earliest),
                MAX_TIMESTAMP if version >= 7 => Some(OffsetSpec::MaxTimestamp),
                ts if ts >= 0 => Some(OffsetSpec::Timestamp(ts)),
                _ => None, // -3 before v7, and the tiered-storage specs (-4, -5): not served
            };
            async move {
                let mut out = ListOffsetsPartitionResponse::default();
                out.partition_index = tp.partition;
                out.leader_epoch = -1;
                out.offset = -1;
                out.timestamp = -1;
                match (exists, spec) {
                    _ if !allowed => out.error_code = E::TopicAuthorizationFailed.code(),
                    (false, _) => out.error_code = E::UnknownTopicOrPartition.code(),
                    (true, None) => out.error_code = E::InvalidRequest.code(),
                    (true, Some(spec)) => match shard.list_offset(&tp, spec).await {
                        Ok(found) => {
                            out.offset = found.offset.0;
                            out.timestamp = found.timestamp;
                        }
                        Err(e) => out.error_code = partition_code(&e),
                    },
                }
                out
            }
        });
        let mut entry = ListOffsetsTopicResponse::default();
        entry.name = topic_name(&name);
        entry.partitions = join_all(answers).await;
        response.topics.push(entry);
    }
    request.answer(&response)
}
