//! DescribeProducers v0: the idempotent producers each partition remembers (KIP-664), for
//! operators, with the first offset of each one's open transaction (coordinator epoch: -1).

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use super::{Answer, Api, Request};
use crate::model::TopicPartition;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::{partition_code, Shard};

pub const API: Api = Api {
    key: ApiKey::DescribeProducers,
    min_version: 0,
    max_version: 0,
    handle: |shard, request| Box::pin(describe_producers(shard, request)),
};

async fn describe_producers(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeProducersRequest = request.decode("DescribeProducersRequest")?;
    let mut response = DescribeProducersResponse::default();
    let authz = Authz::of(&shard, &request);
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        // READ on the topic.
        let allowed = authz.topic(Operation::Read, &name);
        let answers = join_all(topic.partition_indexes.iter().map(|&index| {
            let shard = shard.clone();
            let tp = TopicPartition::new(name.as_str(), index);
            async move {
                match allowed {
                    true => (index, Some(shard.producers(&tp).await)),
                    false => (index, None),
                }
            }
        }))
        .await;
        let mut out = TopicResponse::default();
        out.name = topic.name.clone();
        out.partitions = answers
            .into_iter()
            .map(|(index, answer)| {
                let mut p = PartitionResponse::default();
                p.partition_index = index;
                match answer {
                    None => p.error_code = E::TopicAuthorizationFailed.code(),
                    Some(Ok(producers)) => {
                        p.active_producers = producers
                            .into_iter()
                            .map(|(id, entry)| {
                                let mut state = ProducerState::default();
                                state.producer_id = ProducerId(id);
                                state.producer_epoch = entry.epoch as i32;
                                state.last_sequence =
                                    entry.batches.back().map_or(-1, |b| b.last_seq);
                                state.last_timestamp = entry.last_timestamp;
                                state.coordinator_epoch = -1;
                                state.current_txn_start_offset =
                                    entry.txn_first_offset.map_or(-1, |o| o.0);
                                state
                            })
                            .collect()
                    }
                    Some(Err(e)) => p.error_code = partition_code(&e),
                }
                p
            })
            .collect();
        response.topics.push(out);
    }
    request.answer(&response)
}
