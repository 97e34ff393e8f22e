//! CreatePartitions v0-v3, DeleteRecords v0-v2, DescribeCluster v0-v1 and UnregisterBroker v0.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::Change;
use crate::model::{NodeId, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::{partition_code, Shard};

pub const CREATE_PARTITIONS: Api = Api {
    key: ApiKey::CreatePartitions,
    min_version: 0,
    max_version: 3,
    handle: |shard, request| Box::pin(create_partitions(shard, request)),
};

pub const UNREGISTER_BROKER: Api = Api {
    key: ApiKey::UnregisterBroker,
    min_version: 0,
    max_version: 0,
    handle: |shard, request| Box::pin(unregister_broker(shard, request)),
};

pub const DELETE_RECORDS: Api = Api {
    key: ApiKey::DeleteRecords,
    min_version: 0,
    max_version: 2,
    handle: |shard, request| Box::pin(delete_records(shard, request)),
};

/// Kafka's error code 119 (not in the protocol crate's list).
const UNSUPPORTED_ENDPOINT_TYPE: i16 = 119;

pub const DESCRIBE_CLUSTER: Api = Api {
    key: ApiKey::DescribeCluster,
    min_version: 0,
    max_version: 1,
    handle: |shard, request| Box::pin(describe_cluster(shard, request)),
};

async fn create_partitions(shard: Rc<Shard>, request: Request) -> Answer {
    let body: CreatePartitionsRequest = request.decode("CreatePartitionsRequest")?;
    let mut response = CreatePartitionsResponse::default();
    let authz = Authz::of(&shard, &request);
    for topic in body.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        // ALTER on the topic.
        if !authz.topic(Operation::Alter, &topic.name.0) {
            result.error_code = E::TopicAuthorizationFailed.code();
            response.results.push(result);
            continue;
        }
        let change = Change::CreatePartitions {
            name: topic.name.0.to_string(),
            count: topic.count,
            assignments: topic.assignments.as_ref().map(|lists| {
                let nodes = |a: &CreatePartitionsAssignment| {
                    a.broker_ids.iter().map(|b| NodeId(b.0)).collect()
                };
                lists.iter().map(nodes).collect()
            }),
        };
        let changed = shard.change(change, body.validate_only).await;
        let outcome = changed.map(|_| ()).map_err(Refusal::from);
        if let Err(e) = outcome {
            result.error_code = e.code;
            result.error_message = Some(str_bytes(e.message));
        }
        response.results.push(result);
    }
    request.answer(&response)
}

async fn delete_records(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DeleteRecordsRequest = request.decode("DeleteRecordsRequest")?;
    let mut response = DeleteRecordsResponse::default();
    let authz = Authz::of(&shard, &request);
    for topic in body.topics {
        let name = topic.name.0.to_string();
        // DELETE on the topic.
        let allowed = authz.topic(Operation::Delete, &name);
        let meta = shard.topic(&name);
        let results = topic.partitions.iter().map(|p| {
            let shard = shard.clone();
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let exists = meta
                .as_ref()
                .is_some_and(|m| (0..m.partitions).contains(&p.partition_index));
            let offset = p.offset;
            async move {
                let mut out = DeleteRecordsPartitionResult::default();
                out.partition_index = tp.partition;
                out.low_watermark = -1;
                if !allowed {
                    out.error_code = E::TopicAuthorizationFailed.code();
                    return out;
                }
                if !exists {
                    out.error_code = E::UnknownTopicOrPartition.code();
                    return out;
                }
                match shard
                    .delete_records(&tp, crate::model::Offset(offset))
                    .await
                {
                    Ok(low) => out.low_watermark = low.0,
                    Err(e) => out.error_code = partition_code(&e),
                }
                out
            }
        });
        let mut entry = DeleteRecordsTopicResult::default();
        entry.name = topic.name.clone();
        entry.partitions = join_all(results).await;
        response.topics.push(entry);
    }
    request.answer(&response)
}

async fn describe_cluster(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeClusterRequest = request.decode("DescribeClusterRequest")?;
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = body.endpoint_type;
    // DESCRIBE on the cluster.
    let authz = Authz::of(&shard, &request);
    if !authz.cluster(Operation::Describe) {
        response.error_code = E::ClusterAuthorizationFailed.code();
        return request.answer(&response);
    }
    // v1 (KIP-919): endpoint type 2 asks a controller for the controllers; a broker answers
    // UNSUPPORTED_ENDPOINT_TYPE, as Kafka's do (Sluice's controllers take no client requests).
    if body.endpoint_type == 2 {
        response.error_code = UNSUPPORTED_ENDPOINT_TYPE;
        response.error_message = Some(str_bytes(
            "this node is a broker: ask a controller (bootstrap.controllers) for the controllers",
        ));
        return request.answer(&response);
    }
    response.cluster_id = str_bytes(shard.cluster_id.clone());
    response.controller_id = BrokerId(shard.controller_for_clients());
    response.brokers = shard
        .image()
        .live_brokers()
        .map(|(id, registered)| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(id.0);
            let (host, port) = registered.endpoint(&request.conn.listener.name);
            broker.host = str_bytes(host);
            broker.port = port as i32;
            broker.rack = registered.rack.clone().map(str_bytes);
            broker
        })
        .collect();
    response.cluster_authorized_operations =
        super::authorized::cluster(&authz, body.include_cluster_authorized_operations);
    request.answer(&response)
}

/// Takes a broker out of the cluster for good (Kafka's `kafka-cluster.sh unregister`): ALTER on
/// the cluster. A live broker is refused: it would stay out of the cluster while it runs; shut
/// it down first. Its replicas stay assigned, offline, until reassigned.
async fn unregister_broker(shard: Rc<Shard>, request: Request) -> Answer {
    let body: UnregisterBrokerRequest = request.decode("UnregisterBrokerRequest")?;
    let mut response = UnregisterBrokerResponse::default();
    let id = NodeId(body.broker_id.0);
    let image = shard.image();
    let refused = if !Authz::of(&shard, &request).cluster(Operation::Alter) {
        Some(Refusal::new(
            E::ClusterAuthorizationFailed,
            "ALTER on the cluster",
        ))
    } else if !image.brokers.contains_key(&id) {
        Some(Refusal::new(
            E::BrokerIdNotRegistered,
            format!("broker {} is not registered", id.0),
        ))
    } else if image.is_live(&id) {
        Some(Refusal::new(
            E::InvalidRequest,
            format!(
                "broker {} is live: shut it down first (it registers again when it starts)",
                id.0
            ),
        ))
    } else {
        shard
            .change(Change::UnregisterBroker { id }, false)
            .await
            .err()
            .map(Refusal::from)
    };
    if let Some(refusal) = refused {
        response.error_code = refusal.code;
        response.error_message = Some(str_bytes(refusal.message));
    }
    request.answer(&response)
}
