//! The transaction APIs: AddPartitionsToTxn v0-v4 (v4: the batched broker form, with
//! verify_only), AddOffsetsToTxn v0-v3, EndTxn v0-v3, TxnOffsetCommit v0-v3,
//! DescribeTransactions v0 and ListTransactions v0-v1. Each goes to the shard whose coordinator
//! holds the transactional id (crate::server::transactions) or, for TxnOffsetCommit, the group;
//! this file only translates.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{str_bytes, topic_name, Answer, Api, Request};
use crate::group::{offsets_partition, CommittedOffset, OFFSETS_TOPIC};
use crate::model::{ShardId, TimestampMs};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::transactions::error_code as txn_code;
use crate::server::Shard;
use crate::txn::TxnState;

api!(ADD_PARTITIONS, AddPartitionsToTxn, 0, 4, add_partitions);
api!(ADD_OFFSETS, AddOffsetsToTxn, 0, 3, add_offsets);
api!(END_TXN, EndTxn, 0, 3, end_txn);
api!(TXN_OFFSET_COMMIT, TxnOffsetCommit, 0, 3, txn_offset_commit);
api!(DESCRIBE, DescribeTransactions, 0, 0, describe);
api!(LIST, ListTransactions, 0, 1, list);

/// Before KIP-588 clients knew no PRODUCER_FENCED: they get INVALID_PRODUCER_EPOCH (as Kafka).
pub fn fenced_for(version: i16, first_with_fenced: i16, code: i16) -> i16 {
    if code == E::ProducerFenced.code() && version < first_with_fenced {
        E::InvalidProducerEpoch.code()
    } else {
        code
    }
}

fn code_of(result: Result<(), i16>) -> i16 {
    result.err().unwrap_or(0)
}

/// Adds `partitions` to the transaction of `id`, on its coordinator's shard.
async fn add_to_txn(
    shard: &Shard,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Result<(), i16> {
    let id_sent = id.to_string();
    let added = shard.on_txn(id, move |shard| async move {
        let txns = &shard.txns;
        txns.add_partitions(&id_sent, producer_id, epoch, partitions)
            .await
    });
    added.await.and_then(|result| result).map_err(txn_code)
}

/// One transaction's AddPartitionsToTxn: the code for each of its partitions. WRITE on the
/// transactional id and on each topic.
#[allow(clippy::too_many_arguments)]
async fn add_one(
    shard: &Rc<Shard>,
    authz: &Authz,
    id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let id_allowed = authz.transactional_id(Operation::Write, id);
    let mut partitions = Vec::new();
    let mut refused = Vec::new();
    for topic in topics {
        let name = topic.name.0.to_string();
        let count = shard.topic(&name).map_or(0, |m| m.partitions);
        let error = if !id_allowed {
            Some(E::TransactionalIdAuthorizationFailed)
        } else if !authz.topic(Operation::Write, &name) {
            Some(E::TopicAuthorizationFailed)
        } else {
            None
        };
        for &p in &topic.partitions {
            match error {
                Some(error) => refused.push(((name.clone(), p), error.code())),
                None if (0..count).contains(&p) => partitions.push((name.clone(), p)),
                None => refused.push(((name.clone(), p), E::UnknownTopicOrPartition.code())),
            }
        }
    }
    let codes: Vec<((String, i32), i16)> = if !refused.is_empty() {
        // As Kafka: nothing is added when a partition is refused.
        let skipped = E::OperationNotAttempted.code();
        partitions
            .into_iter()
            .map(|p| (p, skipped))
            .chain(refused)
            .collect()
    } else if verify_only {
        let (id_sent, asked) = (id.to_string(), partitions.clone());
        let verified = shard.on_txn(id, move |shard| async move {
            let txns = &shard.txns;
            txns.verify_partitions(&id_sent, producer_id, epoch, &asked)
        });
        match verified.await.and_then(|added| added).map_err(txn_code) {
            Ok(added) => partitions
                .into_iter()
                .zip(added)
                .map(|(p, ok)| (p, if ok { 0 } else { E::InvalidTxnState.code() }))
                .collect(),
            Err(code) => partitions.into_iter().map(|p| (p, code)).collect(),
        }
    } else {
        let added = add_to_txn(shard, id, producer_id, epoch, partitions.clone()).await;
        let code = fenced_for(version, 2, code_of(added));
        partitions.into_iter().map(|p| (p, code)).collect()
    };
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in codes {
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = partition;
        result.partition_error_code = code;
        match out.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = topic_name(&topic);
                t.results_by_partition.push(result);
                out.push(t);
            }
        }
    }
    out
}

async fn add_partitions(shard: Rc<Shard>, request: Request) -> Answer {
    let body: AddPartitionsToTxnRequest = request.decode("AddPartitionsToTxnRequest")?;
    let mut response = AddPartitionsToTxnResponse::default();
    let authz = &Authz::of(&shard, &request);
    if request.version >= 4 {
        let results = body.transactions.iter().map(|txn| {
            let shard = shard.clone();
            async move {
                let mut result = AddPartitionsToTxnResult::default();
                result.transactional_id = txn.transactional_id.clone();
                result.topic_results = add_one(
                    &shard,
                    authz,
                    txn.transactional_id.0.as_str(),
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &txn.topics,
                    txn.verify_only,
                    request.version,
                )
                .await;
                result
            }
        });
        response.results_by_transaction = join_all(results).await;
    } else {
        response.results_by_topic_v3_and_below = add_one(
            &shard,
            authz,
            body.v3_and_below_transactional_id.0.as_str(),
            body.v3_and_below_producer_id.0,
            body.v3_and_below_producer_epoch,
            &body.v3_and_below_topics,
            false,
            request.version,
        )
        .await;
    }
    request.answer(&response)
}

async fn add_offsets(shard: Rc<Shard>, request: Request) -> Answer {
    let body: AddOffsetsToTxnRequest = request.decode("AddOffsetsToTxnRequest")?;
    let id = body.transactional_id.0.to_string();
    let group = body.group_id.0.to_string();
    let mut response = AddOffsetsToTxnResponse::default();
    // WRITE on the transactional id, READ on the group.
    let authz = Authz::of(&shard, &request);
    response.error_code = if !authz.transactional_id(Operation::Write, &id) {
        E::TransactionalIdAuthorizationFailed.code()
    } else if !authz.group(Operation::Read, &group) {
        E::GroupAuthorizationFailed.code()
    } else if group.is_empty() {
        E::InvalidGroupId.code()
    } else {
        let partition = offsets_partition(&group, shard.group_partitions());
        let partitions = vec![(OFFSETS_TOPIC.to_string(), partition)];
        let (producer_id, epoch) = (body.producer_id.0, body.producer_epoch);
        let added = add_to_txn(&shard, &id, producer_id, epoch, partitions).await;
        fenced_for(request.version, 2, code_of(added))
    };
    request.answer(&response)
}

async fn end_txn(shard: Rc<Shard>, request: Request) -> Answer {
    let body: EndTxnRequest = request.decode("EndTxnRequest")?;
    let id = body.transactional_id.0.to_string();
    let mut response = EndTxnResponse::default();
    if !Authz::of(&shard, &request).transactional_id(Operation::Write, &id) {
        response.error_code = E::TransactionalIdAuthorizationFailed.code();
        return request.answer(&response);
    }
    let (producer_id, epoch) = (body.producer_id.0, body.producer_epoch);
    let commit = body.committed;
    let id_sent = id.clone();
    let ended = shard.on_txn(&id, move |shard| async move {
        let txns = &shard.txns;
        txns.end_txn(&id_sent, producer_id, epoch, commit).await
    });
    let result = ended.await.and_then(|result| result).map_err(txn_code);
    response.error_code = fenced_for(request.version, 2, code_of(result));
    request.answer(&response)
}

async fn txn_offset_commit(shard: Rc<Shard>, request: Request) -> Answer {
    let body: TxnOffsetCommitRequest = request.decode("TxnOffsetCommitRequest")?;
    let group = body.group_id.0.to_string();
    let now = TimestampMs::now().0;
    // WRITE on the transactional id, READ on the group and on each topic.
    let authz = Authz::of(&shard, &request);
    let refused = if !authz.transactional_id(Operation::Write, &body.transactional_id) {
        Some(E::TransactionalIdAuthorizationFailed)
    } else if !authz.group(Operation::Read, &group) {
        Some(E::GroupAuthorizationFailed)
    } else {
        None
    };
    let topic_refused = |t: &str| {
        refused.or((!authz.topic(Operation::Read, t)).then_some(E::TopicAuthorizationFailed))
    };
    let offsets: Vec<(String, i32, CommittedOffset)> = body
        .topics
        .iter()
        .filter(|t| topic_refused(&t.name.0).is_none())
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if request.version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now,
                    },
                )
            })
        })
        .collect();
    let code = if group.is_empty() {
        E::InvalidGroupId.code()
    } else if offsets.is_empty() {
        0
    } else {
        let (producer_id, epoch) = (body.producer_id.0, body.producer_epoch);
        let generation = if request.version >= 3 {
            body.generation_id
        } else {
            -1
        };
        let member_id = body.member_id.to_string();
        let instance_id = body.group_instance_id.as_ref().map(|i| i.to_string());
        let group_sent = group.clone();
        let committed = shard.on_group(&group, move |shard| async move {
            let (groups, instance_id) = (&shard.groups, instance_id.as_deref());
            let (member, group) = (member_id.as_str(), group_sent.as_str());
            groups
                .txn_commit(
                    group,
                    producer_id,
                    epoch,
                    generation,
                    member,
                    instance_id,
                    offsets,
                )
                .await
        });
        crate::server::groups::result_code(committed.await.and_then(|result| result))
    };
    let mut response = TxnOffsetCommitResponse::default();
    for topic in &body.topics {
        let mut t = TxnOffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        let refused = topic_refused(&topic.name.0);
        for p in &topic.partitions {
            let mut out = TxnOffsetCommitResponsePartition::default();
            out.partition_index = p.partition_index;
            out.error_code = refused.map_or(code, |e| e.code());
            t.partitions.push(out);
        }
        response.topics.push(t);
    }
    request.answer(&response)
}

async fn describe(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeTransactionsRequest = request.decode("DescribeTransactionsRequest")?;
    let exists = shard.topic(crate::txn::TXN_TOPIC).is_some();
    let authz = &Authz::of(&shard, &request);
    let states = body.transactional_ids.iter().map(|id| {
        let shard = shard.clone();
        async move {
            let mut state = TransactionState::default();
            state.transactional_id = id.clone();
            state.producer_id = ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            state.transaction_state = str_bytes("");
            let text = id.0.to_string();
            // DESCRIBE on the transactional id.
            let answer = if !authz.transactional_id(Operation::Describe, &text) {
                Err(E::TransactionalIdAuthorizationFailed.code())
            } else if exists {
                let id_sent = text.clone();
                let described =
                    shard.on_txn(&text, |shard| async move { shard.txns.describe(&id_sent) });
                described.await.and_then(|txn| txn).map_err(txn_code)
            } else {
                Err(E::TransactionalIdNotFound.code())
            };
            match answer {
                Err(code) => state.error_code = code,
                Ok(txn) => {
                    state.transaction_state = str_bytes(txn.state.name());
                    state.transaction_timeout_ms = txn.timeout_ms;
                    state.transaction_start_time_ms = txn.start_ms;
                    state.producer_id = ProducerId(txn.producer_id);
                    state.producer_epoch = txn.producer_epoch;
                    for (topic, partition) in txn.partitions {
                        match state
                            .topics
                            .iter_mut()
                            .find(|t| t.topic.0.as_str() == topic)
                        {
                            Some(t) => t.partitions.push(partition),
                            None => {
                                let mut t = TopicData::default();
                                t.topic = topic_name(&topic);
                                t.partitions.push(partition);
                                state.topics.push(t);
                            }
                        }
                    }
                }
            }
            state
        }
    });
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = join_all(states).await;
    request.answer(&response)
}

async fn list(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ListTransactionsRequest = request.decode("ListTransactionsRequest")?;
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &body.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    if !body.state_filters.is_empty() && states.is_empty() {
        // Every filter names an unknown state: nothing can match.
        return request.answer(&response);
    }
    let producer_ids: Vec<i64> = body.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if request.version >= 1 {
        body.duration_filter
    } else {
        -1
    };
    let calls = (0..shard.shards as u32).map(|target| {
        let (states, producer_ids) = (states.clone(), producer_ids.clone());
        shard.on_shard::<_, crate::txn::TxnError, _, _>(ShardId(target), move |shard| async move {
            shard.txns.list(&states, &producer_ids, min_duration_ms)
        })
    });
    // Those the principal may describe.
    let authz = Authz::of(&shard, &request);
    for answer in join_all(calls).await {
        match answer {
            Ok(listed) => {
                for (id, producer_id, state) in listed {
                    if !authz.transactional_id(Operation::Describe, &id) {
                        continue;
                    }
                    let mut out = ListedState::default();
                    out.transactional_id = TransactionalId(str_bytes(id));
                    out.producer_id = ProducerId(producer_id);
                    out.transaction_state = str_bytes(state.name());
                    response.transaction_states.push(out);
                }
            }
            Err(error) => response.error_code = txn_code(error),
        }
    }
    request.answer(&response)
}
