//! Produce v3-v10 (record batch v2 only; v10 names a partition's new leader, KIP-951): each partition's batches go to the owning shard as the
//! `Bytes` slice of the request frame they arrived in; the answers come back per partition.
//! acks=0 gets no answer; acks=1 answers once the leader's append is done under the flush policy;
//! acks=all once every replica in the ISR has it (on one node: the same as acks=1).

use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceRequest, ProduceResponse};

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::validate_topic_name;
use crate::model::TopicPartition;
use crate::protocol::ProtocolError;
use crate::protocol::ResponseError as E;
use crate::replication::{Acks, Appended, PartitionError, Refused};
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::{partition_code, Shard};

pub const API: Api = Api {
    key: ApiKey::Produce,
    min_version: 3,
    max_version: 10,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

/// The records a produced set of batches holds, by their headers (for the metrics).
fn messages_in(mut records: &[u8]) -> u64 {
    let mut count = 0;
    while let Ok((batch, rest)) = crate::model::BatchView::parse_header(records) {
        count += batch.records_count().max(0) as u64;
        records = rest;
    }
    count
}

/// What Kafka refuses before looking inside a partition's records, by their first header (the
/// owner checks every batch whole): more than one batch (Produce v3+ carries exactly one, and an
/// idempotent producer's retry is recognised batch by batch), a control batch (transaction
/// markers come only from the coordinator), or a record count that is not one per offset of
/// the batch's span (none at all included). All get INVALID_RECORD.
fn refused(records: &[u8]) -> bool {
    match crate::model::BatchView::parse_header(records) {
        Ok((view, after)) => {
            view.is_control()
                || view.check_produced().is_err()
                || crate::model::BatchView::parse_header(after).is_ok()
        }
        // Malformed: the owner's validation answers CORRUPT_MESSAGE.
        Err(_) => false,
    }
}

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ProduceRequest = request.decode("ProduceRequest")?;
    let acks = body.acks;
    let acks_valid = matches!(acks, -1..=1);
    let acks_mode = if acks == -1 {
        Acks::All {
            timeout: std::time::Duration::from_millis(body.timeout_ms.clamp(0, 300_000) as u64),
        }
    } else {
        Acks::Leader
    };
    let authz = Authz::of(&shard, &request);
    // A transactional producer writes for its transactional id.
    let txn_refused = body
        .transactional_id
        .as_ref()
        .is_some_and(|id| !authz.transactional_id(Operation::Write, id));
    let mut topics = Vec::new();
    for topic in body.topic_data {
        let name = topic.name.0.to_string();
        // Clients may not write the coordinators' internal topics (Kafka: "Cannot append to
        // internal topic"); only the coordinators do, without this API.
        let internal = name == crate::group::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC;
        let name_valid = validate_topic_name(&name).is_ok() && !internal;
        let may_write = authz.topic(Operation::Write, &name);
        let meta = match shard.topic(&name) {
            _ if !acks_valid || !name_valid || !may_write || txn_refused => None,
            Some(meta) => Some(meta),
            None if authz.create_topic(&name) => shard.auto_create(&name).await,
            None => None,
        };
        let name_error = if txn_refused {
            E::TransactionalIdAuthorizationFailed.code()
        } else if !may_write {
            E::TopicAuthorizationFailed.code()
        } else if !acks_valid {
            E::InvalidRequiredAcks.code()
        } else if !name_valid {
            E::InvalidTopicException.code()
        } else {
            E::UnknownTopicOrPartition.code()
        };
        // One copy of the name, shared by the topic's partitions.
        let shared: Arc<str> = Arc::from(name.as_str());
        let appends = topic.partition_data.into_iter().map(|partition| {
            let shard = shard.clone();
            let index = partition.index;
            let tp = TopicPartition::new(shared.clone(), index);
            let exists = meta
                .as_ref()
                .is_some_and(|m| (0..m.partitions).contains(&partition.index));
            async move {
                let reply = match (exists, partition.records) {
                    (false, _) => Err(name_error),
                    (true, None) => Err(E::CorruptMessage.code()),
                    (true, Some(records)) if refused(&records) => Err(E::InvalidRecord.code()),
                    (true, Some(records)) => {
                        let (bytes, messages) = (records.len() as u64, messages_in(&records));
                        let topic = tp.topic.clone();
                        let appended = shard.append(tp, records, acks_mode).await;
                        if appended.is_ok() {
                            shard.metrics.produced(&topic, bytes, messages);
                        }
                        Ok(appended)
                    }
                };
                (index, reply)
            }
        });
        let replies = join_all(appends).await;
        topics.push((name, replies));
    }
    if acks == 0 {
        return acks_0_answer(&topics);
    }
    let mut response = ProduceResponse::default();
    response.responses = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = TopicProduceResponse::default();
            topic.name = super::topic_name(&name);
            topic.partition_responses = partitions
                .into_iter()
                .map(|(index, reply)| partition_response(index, reply, request.version))
                .collect();
            topic
        })
        .collect();
    if request.version >= 10 {
        name_new_leaders(&shard, &mut response, &request.conn.listener.name);
    }
    request.answer(&response)
}

/// What one partition's append came to.
type Reply = Result<Result<Appended, Refused>, i16>;

/// The error code a partition's reply carries (0: none).
fn reply_code(reply: &Reply) -> i16 {
    match reply {
        Err(code) => *code,
        Ok(Ok(_)) => 0,
        Ok(Err(refused)) => partition_code(&refused.error),
    }
}

/// acks=0 has no answer. As Kafka does, a produce that failed on any partition closes the
/// connection instead: a client hears of the error no other way, and asks for metadata again
/// (a leader that moved, a topic deleted) rather than writing on into nothing. No response is
/// built for it.
fn acks_0_answer(topics: &[(String, Vec<(i32, Reply)>)]) -> Answer {
    let mut failed = topics.iter().flat_map(|(name, replies)| {
        replies.iter().filter_map(move |(index, reply)| {
            let code = reply_code(reply);
            (code != 0).then(|| {
                let error = E::try_from_code(code).map_or(code.to_string(), |e| format!("{e:?}"));
                format!("{name}-{index}: {error}")
            })
        })
    });
    let Some(first) = failed.next() else {
        return Ok(None);
    };
    let more = failed.count();
    Err(ProtocolError::Acks0Failed {
        detail: match more {
            0 => first,
            n => format!("{first} and {n} more"),
        },
    })
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER names its leader now (and the response
/// where to reach it), so that the client moves there without asking for metadata first.
fn name_new_leaders(shard: &Shard, response: &mut ProduceResponse, listener: &str) {
    let image = shard.image();
    let mut endpoints = std::collections::BTreeMap::new();
    for topic in &mut response.responses {
        for p in &mut topic.partition_responses {
            if p.error_code != E::NotLeaderOrFollower.code() {
                continue;
            }
            let Some((leader, epoch, broker)) = super::leader_now(&image, &topic.name.0, p.index)
            else {
                continue;
            };
            p.current_leader.leader_id = BrokerId(leader);
            p.current_leader.leader_epoch = epoch;
            endpoints.entry(leader).or_insert_with(|| {
                let mut node = NodeEndpoint::default();
                node.node_id = BrokerId(leader);
                let (host, port) = broker.endpoint(listener);
                node.host = str_bytes(host);
                node.port = port as i32;
                node.rack = broker.rack.clone().map(str_bytes);
                node
            });
        }
    }
    response.node_endpoints = endpoints.into_values().collect();
}

/// One partition's answer: refused before the append (`Err(code)`), or the append's outcome.
fn partition_response(index: i32, reply: Reply, version: i16) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.base_offset = -1;
    p.log_append_time_ms = -1;
    p.log_start_offset = -1;
    match reply {
        Err(code) => p.error_code = code,
        Ok(Ok(appended)) => {
            p.base_offset = appended.base_offset.0;
            p.log_append_time_ms = appended.log_append_time.map_or(-1, |t| t.0);
            p.log_start_offset = appended.log_start_offset.0;
        }
        Ok(Err(Refused {
            error,
            log_start_offset,
        })) => {
            p.error_code = partition_code(&error);
            p.log_start_offset = log_start_offset.0;
            if !matches!(
                error,
                PartitionError::UnknownTopicOrPartition | PartitionError::NotLeader
            ) {
                p.error_message = Some(str_bytes(error.to_string()));
            }
            if let (true, PartitionError::InvalidRecord { record_errors, .. }) =
                (version >= 8, error)
            {
                p.record_errors = record_errors
                    .into_iter()
                    .map(|(index, message)| {
                        let mut error = BatchIndexAndErrorMessage::default();
                        error.batch_index = index;
                        error.batch_index_error_message = Some(str_bytes(message));
                        error
                    })
                    .collect();
            }
        }
    }
    p
}
