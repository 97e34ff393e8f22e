//! ListOffsets v1-v6: the earliest (-2) or latest (-1) offset of a partition, or the first offset
//! whose record timestamp is at or after a given time (offsets-for-times).

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::{topic_name, Answer, Api, Request};
use crate::model::TopicPartition;
use crate::protocol::ResponseError as E;
use crate::server::{OffsetSpec, Shard};

pub const API: Api = Api {
    key: ApiKey::ListOffsets,
    min_version: 1,
    max_version: 6,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ListOffsetsRequest = request.decode("ListOffsetsRequest")?;
    let mut response = ListOffsetsResponse::default();
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let meta = shard.topic(&name);
        let answers = topic.partitions.iter().map(|p| {
            let shard = shard.clone();
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let exists = meta
                .as_ref()
                .is_some_and(|m| (0..m.partitions).contains(&p.partition_index));
            let spec = match p.timestamp {
                LATEST_TIMESTAMP => Some(OffsetSpec::Latest),
                EARLIEST_TIMESTAMP => Some(OffsetSpec::Earliest),
                ts if ts >= 0 => Some(OffsetSpec::Timestamp(ts)),
                _ => None, // max timestamp (-3) and tiered specs: not served in v1-v6
            };
            async move {
                let mut out = ListOffsetsPartitionResponse::default();
                out.partition_index = tp.partition;
                out.leader_epoch = -1;
                out.offset = -1;
                out.timestamp = -1;
                match (exists, spec) {
                    (false, _) => out.error_code = E::UnknownTopicOrPartition.code(),
                    (true, None) => out.error_code = E::InvalidRequest.code(),
                    (true, Some(spec)) => {
                        let reply = shard.list_offset(&tp, spec).await;
                        out.error_code = reply.error_code;
                        out.offset = reply.offset;
                        out.timestamp = reply.timestamp;
                    }
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
