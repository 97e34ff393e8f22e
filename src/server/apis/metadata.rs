//! Metadata v0-v12: this broker, and the topics asked for (all of them when none are named), with
//! topic ids (v10+) so that clients can fetch by id. Unknown topics are created when both the
//! request and `auto.create.topics.enable` allow it.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{authorized, str_bytes, topic_name, Answer, Api, Request};
use crate::cluster::{validate_topic_name, TopicMeta};
use crate::model::NodeId;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::controller::error_code;
use crate::server::Shard;

pub const API: Api = Api {
    key: ApiKey::Metadata,
    min_version: 0,
    max_version: 12,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: MetadataRequest = request.decode("MetadataRequest")?;
    let all = match &body.topics {
        None => true,
        Some(topics) => request.version == 0 && topics.is_empty(),
    };
    let auto_create = request.version < 4 || body.allow_auto_topic_creation;
    let asked_operations = body.include_topic_authorized_operations;
    let authz = Authz::of(&shard, &request);
    let mut topics = Vec::new();
    let fenced = shard.image().fenced.clone();
    // A node restarted into a cluster answers from the image it stored until its registration
    // in this run is committed: its leaders may be stale, so it names none (clients ask again).
    let stale = !shard.caught_up.load(std::sync::atomic::Ordering::Acquire);
    if all {
        // Only the topics the principal may describe.
        for (name, meta) in shard.image().topics.iter() {
            if authz.topic(Operation::Describe, name) {
                topics.push(topic_entry(name, Some(meta), &fenced, stale));
            }
        }
    } else {
        for wanted in body.topics.iter().flatten() {
            let name = match (&wanted.name, wanted.topic_id) {
                (Some(name), _) => name.0.to_string(),
                (None, id) if id != Uuid::nil() => match shard.image().topic_by_id(id) {
                    Some((name, _)) => name.to_string(),
                    None => {
                        let mut entry = MetadataResponseTopic::default();
                        entry.error_code = E::UnknownTopicId.code();
                        entry.topic_id = id;
                        topics.push(entry);
                        continue;
                    }
                },
                (None, _) => String::new(),
            };
            if let Err(e) = validate_topic_name(&name) {
                let mut entry = topic_entry(&name, None, &fenced, stale);
                entry.error_code = error_code(&e);
                topics.push(entry);
                continue;
            }
            let known = shard.topic(&name);
            // Not allowed to describe it, or to create it where it would be created: the
            // topic is named with TOPIC_AUTHORIZATION_FAILED and nothing else.
            let creating = known.is_none() && auto_create && shard.auto_create_enabled();
            if !authz.topic(Operation::Describe, &name) || (creating && !authz.create_topic(&name))
            {
                let mut entry = topic_entry(&name, None, &fenced, stale);
                entry.error_code = E::TopicAuthorizationFailed.code();
                topics.push(entry);
                continue;
            }
            let meta = match known {
                Some(meta) => Some(meta),
                None if auto_create => shard.auto_create(&name).await,
                None => None,
            };
            topics.push(topic_entry(&name, meta.as_ref(), &fenced, stale));
        }
    }
    let mut response = MetadataResponse::default();
    response.brokers = shard
        .image()
        .live_brokers()
        .map(|(id, registered)| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(id.0);
            let (host, port) = registered.endpoint(&request.conn.listener.name);
            broker.host = str_bytes(host);
            broker.port = port as i32;
            broker.rack = registered.rack.clone().map(str_bytes);
            broker
        })
        .collect();
    response.cluster_id = Some(str_bytes(shard.cluster_id.clone()));
    response.controller_id = BrokerId(shard.controller_for_clients());
    response.topics = topics;
    response.cluster_authorized_operations =
        authorized::cluster(&authz, body.include_cluster_authorized_operations);
    for topic in &mut response.topics {
        if topic.error_code == 0 {
            let name = topic.name.as_ref().map_or("", |n| n.0.as_str());
            topic.topic_authorized_operations = authorized::topic(&authz, asked_operations, name);
        }
    }
    request.answer(&response)
}

fn topic_entry(
    name: &str,
    meta: Option<&TopicMeta>,
    fenced: &std::collections::BTreeSet<NodeId>,
    stale: bool,
) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default();
    entry.name = Some(topic_name(name));
    entry.topic_authorized_operations = authorized::NOT_ASKED;
    let Some(meta) = meta else {
        entry.error_code = E::UnknownTopicOrPartition.code();
        return entry;
    };
    entry.topic_id = meta.id;
    entry.is_internal = name == crate::group::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC;
    let nodes = |nodes: &[NodeId]| nodes.iter().map(|n| BrokerId(n.0)).collect();
    entry.partitions = (0..meta.partitions)
        .zip(meta.assignments.iter())
        .map(|(index, assignment)| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = index;
            p.leader_id = BrokerId(assignment.leader.0);
            p.leader_epoch = assignment.leader_epoch.0;
            p.replica_nodes = nodes(&assignment.replicas);
            p.isr_nodes = nodes(&assignment.isr);
            let offline: Vec<NodeId> = assignment
                .replicas
                .iter()
                .filter(|n| fenced.contains(n))
                .copied()
                .collect();
            p.offline_replicas = nodes(&offline);
            // The leader's broker is fenced (no replica in sync is live): no leader until one
            // returns.
            if fenced.contains(&assignment.leader) {
                p.error_code = E::LeaderNotAvailable.code();
                p.leader_id = BrokerId(-1);
                p.isr_nodes.clear();
            } else if stale {
                p.error_code = E::LeaderNotAvailable.code();
                p.leader_id = BrokerId(-1);
            }
            p
        })
        .collect();
    entry
}
