//! ElectLeaders v0-v2, AlterPartitionReassignments v0 and ListPartitionReassignments v0: moving
//! leaderships and replicas between nodes through the controller (`cluster::election`).

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};

use super::{add_to_topic, str_bytes, Answer, Api, Request};
use crate::cluster::{election_refused, Assignment, Change, ElectionRefused, Image};
use crate::model::NodeId;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::Shard;

api!(ELECT_LEADERS, ElectLeaders, 0, 2, elect_leaders);
api!(
    ALTER_REASSIGNMENTS,
    AlterPartitionReassignments,
    0,
    0,
    alter_reassignments
);
api!(
    LIST_REASSIGNMENTS,
    ListPartitionReassignments,
    0,
    0,
    list_reassignments
);

fn assignment<'a>(image: &'a Image, topic: &str, partition: i32) -> Option<&'a Assignment> {
    let meta = image.topics.get(topic)?;
    meta.assignments.get(usize::try_from(partition).ok()?)
}

/// The error an election of `unclean` kind gets for partition `topic`/`partition` in `image`,
/// if any.
fn election_error(image: &Image, topic: &str, partition: i32, unclean: bool) -> Option<E> {
    let Some(a) = assignment(image, topic, partition) else {
        return Some(E::UnknownTopicOrPartition);
    };
    election_refused(a, unclean, &image.fenced).map(|refused| match refused {
        ElectionRefused::NotNeeded => E::ElectionNotNeeded,
        ElectionRefused::PreferredUnavailable => E::PreferredLeaderNotAvailable,
        ElectionRefused::NoEligibleLeader => E::EligibleLeadersNotAvailable,
    })
}

async fn elect_leaders(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ElectLeadersRequest = request.decode("ElectLeadersRequest")?;
    let mut response = ElectLeadersResponse::default();
    // ALTER on the cluster.
    if !Authz::of(&shard, &request).cluster(Operation::Alter) {
        response.error_code = E::ClusterAuthorizationFailed.code();
        return request.answer(&response);
    }
    let unclean = match body.election_type {
        0 => false,
        1 => true,
        _ => {
            response.error_code = E::InvalidRequest.code();
            return request.answer(&response);
        }
    };
    let image = shard.image();
    // Null asks for every partition; then those that need no election are not listed (Kafka).
    let all = body.topic_partitions.is_none();
    let asked: Vec<(String, i32)> = match body.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect(),
        None => image
            .topics
            .iter()
            .flat_map(|(name, meta)| (0..meta.partitions).map(move |p| (name.clone(), p)))
            .collect(),
    };
    // Each asked partition with why it takes no election, if it takes none.
    let asked: Vec<(String, i32, Option<E>)> = asked
        .into_iter()
        .map(|(t, p)| {
            let refused = election_error(&image, &t, p, unclean);
            (t, p, refused)
        })
        .collect();
    let candidates: Vec<(String, i32)> = asked
        .iter()
        .filter(|(_, _, refused)| refused.is_none())
        .map(|(t, p, _)| (t.clone(), *p))
        .collect();
    let mut failed: Option<Refusal> = None;
    if !candidates.is_empty() {
        let change = Change::ElectLeaders {
            unclean,
            partitions: candidates,
        };
        if let Err(e) = shard.change(change, false).await {
            failed = Some(Refusal::from(e));
        }
    }
    let after = shard.image();
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, refused) in asked {
        let mut result = PartitionResult::default();
        result.partition_id = partition;
        match (refused, &failed) {
            (None, Some(refusal)) => {
                result.error_code = refusal.code;
                result.error_message = Some(str_bytes(refusal.message.clone()));
            }
            (None, None) => {
                result.error_code =
                    elected(&after, &topic, partition, unclean).map_or(0, |e| e.code());
            }
            (Some(E::ElectionNotNeeded), _) if all => continue,
            (Some(e), _) => result.error_code = e.code(),
        }
        add_to_topic(
            &mut results,
            &topic,
            result,
            |r: &mut ReplicaElectionResult| (&mut r.topic, &mut r.partition_result),
        );
    }
    response.replica_election_results = results;
    request.answer(&response)
}

/// After an election: none when the partition has the leader it asked for, else why not.
fn elected(image: &Image, topic: &str, partition: i32, unclean: bool) -> Option<E> {
    let a = assignment(image, topic, partition)?;
    let done = match unclean {
        false => a.replicas.first() == Some(&a.leader),
        true => !image.fenced.contains(&a.leader),
    };
    if done {
        return None;
    }
    election_error(image, topic, partition, unclean).or(Some(E::EligibleLeadersNotAvailable))
}

async fn alter_reassignments(shard: Rc<Shard>, request: Request) -> Answer {
    let body: AlterPartitionReassignmentsRequest =
        request.decode("AlterPartitionReassignmentsRequest")?;
    let mut response = AlterPartitionReassignmentsResponse::default();
    // ALTER on the cluster.
    if !Authz::of(&shard, &request).cluster(Operation::Alter) {
        response.error_code = E::ClusterAuthorizationFailed.code();
        return request.answer(&response);
    }
    for topic in body.topics {
        let mut entry = ReassignableTopicResponse::default();
        entry.name = topic.name.clone();
        for partition in topic.partitions {
            let change = Change::ReassignPartition {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                replicas: partition
                    .replicas
                    .map(|ids| ids.iter().map(|id| NodeId(id.0)).collect()),
            };
            let mut result = ReassignablePartitionResponse::default();
            result.partition_index = partition.partition_index;
            if let Err(e) = shard.change(change, false).await {
                let refusal = Refusal::from(e);
                result.error_code = refusal.code;
                result.error_message = Some(str_bytes(refusal.message));
            }
            entry.partitions.push(result);
        }
        response.responses.push(entry);
    }
    request.answer(&response)
}

async fn list_reassignments(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ListPartitionReassignmentsRequest =
        request.decode("ListPartitionReassignmentsRequest")?;
    let image = shard.image();
    let asked: Vec<(String, Vec<i32>)> = match body.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect(),
        None => image
            .topics
            .iter()
            .map(|(name, meta)| (name.clone(), (0..meta.partitions).collect()))
            .collect(),
    };
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| BrokerId(n.0)).collect();
    let mut response = ListPartitionReassignmentsResponse::default();
    // DESCRIBE on the cluster.
    if !Authz::of(&shard, &request).cluster(Operation::Describe) {
        response.error_code = E::ClusterAuthorizationFailed.code();
        return request.answer(&response);
    }
    for (topic, partitions) in asked {
        let mut entry = OngoingTopicReassignment::default();
        for partition in partitions {
            // Partitions that do not exist or are not moving are left out (Kafka).
            let Some(a) = assignment(&image, &topic, partition).filter(|a| a.is_reassigning())
            else {
                continue;
            };
            let mut ongoing = OngoingPartitionReassignment::default();
            ongoing.partition_index = partition;
            ongoing.replicas = ids(&a.replicas);
            ongoing.adding_replicas = ids(&a.adding);
            ongoing.removing_replicas = ids(&a.removing);
            entry.partitions.push(ongoing);
        }
        if !entry.partitions.is_empty() {
            entry.name = TopicName(str_bytes(topic));
            response.topics.push(entry);
        }
    }
    request.answer(&response)
}
