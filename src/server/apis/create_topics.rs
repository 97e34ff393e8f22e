//! CreateTopics v0-v7, with configs, validate-only and replicas named by the client.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::Change;
use crate::config::topic_effective;
use crate::model::NodeId;
use crate::protocol::ResponseError as E;
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::Shard;

pub const API: Api = Api {
    key: ApiKey::CreateTopics,
    min_version: 0,
    max_version: 7,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: CreateTopicsRequest = request.decode("CreateTopicsRequest")?;
    let mut response = CreateTopicsResponse::default();
    let authz = Authz::of(&shard, &request);
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        // CREATE on the cluster or on the topic.
        let created = match authz.create_topic(&name) {
            true => create(&shard, &topic, body.validate_only).await,
            false => Err(Refusal::new(
                E::TopicAuthorizationFailed,
                "not authorized to create the topic",
            )),
        };
        match created {
            Ok(meta) => {
                result.topic_id = meta.id;
                result.num_partitions = meta.partitions;
                result.replication_factor = meta
                    .assignments
                    .first()
                    .map_or(1, |a| a.replicas.len() as i16);
                let effective = topic_effective(&shard.broker(), &meta.config_values());
                result.configs = Some(
                    effective
                        .into_iter()
                        .map(|(key, value, source)| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = str_bytes(key);
                            c.value = Some(str_bytes(value));
                            c.config_source = source.kafka_code();
                            c
                        })
                        .collect(),
                );
            }
            Err(e) => {
                tracing::debug!(topic = %name, code = e.code, message = %e.message, "create refused");
                result.error_code = e.code;
                result.error_message = Some(str_bytes(e.message));
            }
        }
        response.topics.push(result);
    }
    request.answer(&response)
}

async fn create(
    shard: &Shard,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<crate::cluster::TopicMeta, Refusal> {
    let assignments = manual_assignments(topic)?;
    let partitions = if let Some(lists) = &assignments {
        lists.len() as i32
    } else if topic.num_partitions == -1 {
        shard.broker().i32("num.partitions")
    } else {
        topic.num_partitions
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            continue;
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    let replication_factor = match topic.replication_factor {
        // Named replicas: the change checks them.
        _ if assignments.is_some() => 1,
        -1 => shard.broker().i32("default.replication.factor"),
        factor => factor as i32,
    };
    let replication_factor = u16::try_from(replication_factor)
        .ok()
        .filter(|&factor| factor >= 1)
        .ok_or_else(|| {
            Refusal::new(
                E::InvalidReplicationFactor,
                format!("replication factor {replication_factor} is not 1 or more"),
            )
        })?;
    let change = Change::CreateTopic {
        name: topic.name.0.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor,
        configs,
        assignments,
    };
    shard
        .change(change, validate_only)
        .await?
        .ok_or_else(|| Refusal::new(E::UnknownServerError, "created topic vanished"))
}

/// The replicas the request names for each partition, in partition order: Kafka takes them in
/// any order but each partition once, numbered 0 to n-1, and then no count or factor beside them.
fn manual_assignments(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Option<Vec<Vec<NodeId>>>, Refusal> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(Refusal::new(
            E::InvalidRequest,
            "give either replica assignments or a partition count and replication factor",
        ));
    }
    let count = topic.assignments.len();
    let mut lists: Vec<Option<Vec<NodeId>>> = vec![None; count];
    for a in &topic.assignments {
        let slot = usize::try_from(a.partition_index)
            .ok()
            .and_then(|i| lists.get_mut(i))
            .ok_or_else(|| {
                Refusal::new(
                    E::InvalidReplicaAssignment,
                    "partitions should be a consecutive 0-based integer sequence",
                )
            })?;
        if slot.is_some() {
            return Err(Refusal::new(
                E::InvalidReplicaAssignment,
                format!("partition {} is assigned twice", a.partition_index),
            ));
        }
        *slot = Some(a.broker_ids.iter().map(|b| NodeId(b.0)).collect());
    }
    // `count` slots, each filled at most once by `count` entries: all are filled.
    Ok(Some(
        lists.into_iter().map(Option::unwrap_or_default).collect(),
    ))
}
