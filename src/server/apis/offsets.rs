//! The consumer groups' committed offsets: OffsetCommit v0-v8, OffsetFetch v0-v8 and
//! OffsetDelete v0, each sent to the shard whose coordinator holds the group.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::groups::{opt, text};
use super::{str_bytes, topic_name, Answer, Api, Request};
use crate::group::{CommittedOffset, TopicPartitions};
use crate::model::TimestampMs;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::groups::{error_code, result_code, FetchedOffsets, FetchedRow};
use crate::server::Shard;

api!(OFFSET_COMMIT, OffsetCommit, 0, 8, offset_commit);
api!(OFFSET_FETCH, OffsetFetch, 0, 8, offset_fetch);
api!(OFFSET_DELETE, OffsetDelete, 0, 0, offset_delete);

async fn offset_commit(shard: Rc<Shard>, request: Request) -> Answer {
    let body: OffsetCommitRequest = request.decode("OffsetCommitRequest")?;
    let group = body.group_id.0.to_string();
    let now = TimestampMs::now().0;
    let image = shard.image();
    // READ on the group, and on each topic committed for.
    let authz = Authz::of(&shard, &request);
    let group_allowed = authz.group(Operation::Read, &group);
    let mut offsets = Vec::new();
    let mut refused = Vec::new();
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let meta = image.topics.get(&name);
        let topic_allowed = authz.topic(Operation::Read, &name);
        for p in &topic.partitions {
            let error = if !group_allowed {
                Some(E::GroupAuthorizationFailed)
            } else if !topic_allowed {
                Some(E::TopicAuthorizationFailed)
            } else if !meta.is_some_and(|m| (0..m.partitions).contains(&p.partition_index)) {
                Some(E::UnknownTopicOrPartition)
            } else {
                None
            };
            if let Some(error) = error {
                refused.push((name.clone(), p.partition_index, error.code()));
                continue;
            }
            offsets.push((
                name.clone(),
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: opt(&p.committed_metadata).unwrap_or_default(),
                    commit_timestamp: if request.version == 1 && p.commit_timestamp >= 0 {
                        p.commit_timestamp
                    } else {
                        now
                    },
                },
            ));
        }
    }
    let (generation, member_id) = if request.version == 0 {
        (-1, String::new())
    } else {
        (body.generation_id_or_member_epoch, text(&body.member_id))
    };
    let result = if offsets.is_empty() {
        Ok(())
    } else {
        let instance_id = opt(&body.group_instance_id);
        let group_sent = group.clone();
        let committed = shard.on_group(&group, move |shard| async move {
            let (groups, instance_id) = (&shard.groups, instance_id.as_deref());
            groups
                .commit(&group_sent, generation, &member_id, instance_id, offsets)
                .await
        });
        committed.await.and_then(|result| result)
    };
    let code = result_code(result);
    let mut response = OffsetCommitResponse::default();
    for topic in &body.topics {
        let mut out = OffsetCommitResponseTopic::default();
        out.name = topic.name.clone();
        let name = topic.name.0.to_string();
        out.partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let mut r = OffsetCommitResponsePartition::default();
                r.partition_index = p.partition_index;
                let refusal = refused
                    .iter()
                    .find(|(t, i, _)| *t == name && *i == p.partition_index);
                r.error_code = refusal.map_or(code, |(_, _, error)| *error);
                r
            })
            .collect();
        response.topics.push(out);
    }
    request.answer(&response)
}

/// A group's committed offsets, as the principal may see them: DESCRIBE on the group, and on
/// each topic (a topic it may not describe is left out of "all", refused where named).
async fn fetch_group_offsets(
    shard: &Shard,
    authz: &Authz,
    group: &str,
    topics: Option<TopicPartitions>,
    require_stable: bool,
) -> FetchedOffsets {
    if !authz.group(Operation::Describe, group) {
        return Err(E::GroupAuthorizationFailed.code());
    }
    let named = topics.is_some();
    let rows = fetch_committed(shard, group, topics, require_stable).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(topic, partition, offset, code)| {
            match authz.topic(Operation::Describe, &topic) {
                true => Some((topic, partition, offset, code)),
                false if named => {
                    Some((topic, partition, None, E::TopicAuthorizationFailed.code()))
                }
                false => None,
            }
        })
        .collect())
}

async fn fetch_committed(
    shard: &Shard,
    group: &str,
    topics: Option<TopicPartitions>,
    require_stable: bool,
) -> FetchedOffsets {
    let group_sent = group.to_string();
    let fetched = shard.on_group(group, move |shard| async move {
        let (groups, group) = (&shard.groups, &group_sent);
        let rows = groups.fetch_offsets(group, topics)?;
        let row = |(topic, partition, offset): (String, i32, Option<CommittedOffset>)| {
            // OffsetFetch v7+: an offset waiting for a transaction's outcome is answered with
            // UNSTABLE_OFFSET_COMMIT instead.
            if require_stable && groups.is_unstable(group, &topic, partition) {
                (topic, partition, None, E::UnstableOffsetCommit.code())
            } else {
                (topic, partition, offset, 0)
            }
        };
        Ok(rows.into_iter().map(row).collect())
    });
    fetched.await.and_then(|rows| rows).map_err(error_code)
}

/// Groups consecutive rows by topic, keeping their order.
fn by_topic<T>(
    rows: Vec<FetchedRow>,
    mut partition: impl FnMut(i32, Option<CommittedOffset>, i16) -> T,
) -> Vec<(String, Vec<T>)> {
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    for (topic, p, offset, code) in rows {
        if out.last().is_none_or(|(t, _)| *t != topic) {
            out.push((topic.clone(), Vec::new()));
        }
        out.last_mut()
            .expect("pushed")
            .1
            .push(partition(p, offset, code));
    }
    out
}

async fn offset_fetch(shard: Rc<Shard>, request: Request) -> Answer {
    let body: OffsetFetchRequest = request.decode("OffsetFetchRequest")?;
    let version = request.version;
    let authz = Authz::of(&shard, &request);
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for g in &body.groups {
            let group = g.group_id.0.to_string();
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            let fetched = fetch_group_offsets(&shard, &authz, &group, topics, body.require_stable);
            match fetched.await {
                Err(code) => out.error_code = code,
                Ok(rows) => {
                    out.topics = by_topic(rows, |index, offset, code| {
                        let mut p = OffsetFetchResponsePartitions::default();
                        p.partition_index = index;
                        p.error_code = code;
                        fill(
                            &mut p.committed_offset,
                            &mut p.committed_leader_epoch,
                            &mut p.metadata,
                            offset,
                        );
                        p
                    })
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = topic_name(&name);
                        t.partitions = partitions;
                        t
                    })
                    .collect();
                }
            }
            response.groups.push(out);
        }
        return request.answer(&response);
    }
    let group = body.group_id.0.to_string();
    let topics = body.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let require_stable = version >= 7 && body.require_stable;
    match fetch_group_offsets(&shard, &authz, &group, topics, require_stable).await {
        Err(code) => {
            response.error_code = if version >= 2 { code } else { 0 };
        }
        Ok(rows) => {
            response.topics = by_topic(rows, |index, offset, code| {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = index;
                p.error_code = code;
                fill(
                    &mut p.committed_offset,
                    &mut p.committed_leader_epoch,
                    &mut p.metadata,
                    offset,
                );
                if version < 5 {
                    p.committed_leader_epoch = -1;
                }
                p
            })
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = topic_name(&name);
                t.partitions = partitions;
                t
            })
            .collect();
        }
    }
    request.answer(&response)
}

/// An offset fetch answer for one partition: -1 and no metadata when nothing is committed.
fn fill(
    offset_out: &mut i64,
    epoch_out: &mut i32,
    metadata_out: &mut Option<StrBytes>,
    offset: Option<CommittedOffset>,
) {
    match offset {
        Some(o) => {
            *offset_out = o.offset;
            *epoch_out = o.leader_epoch;
            *metadata_out = Some(str_bytes(o.metadata));
        }
        None => {
            *offset_out = -1;
            *epoch_out = -1;
            *metadata_out = Some(str_bytes(""));
        }
    }
}

async fn offset_delete(shard: Rc<Shard>, request: Request) -> Answer {
    let body: OffsetDeleteRequest = request.decode("OffsetDeleteRequest")?;
    let group = body.group_id.0.to_string();
    let mut response = OffsetDeleteResponse::default();
    // DELETE on the group; READ on each topic (the others are refused, not deleted).
    let authz = Authz::of(&shard, &request);
    if !authz.group(Operation::Delete, &group) {
        response.error_code = E::GroupAuthorizationFailed.code();
        return request.answer(&response);
    }
    let readable = |topic: &str| authz.topic(Operation::Read, topic);
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .filter(|t| readable(&t.name.0))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let group_sent = group.clone();
    let codes = shard
        .on_group(&group, move |shard| async move {
            shard.groups.delete_offsets(&group_sent, partitions).await
        })
        .await
        .and_then(|codes| codes);
    match codes {
        Err(error) => response.error_code = error_code(error),
        Ok(codes) => {
            let mut codes = codes.into_iter();
            for t in &body.topics {
                let mut topic = OffsetDeleteResponseTopic::default();
                topic.name = t.name.clone();
                topic.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut r = OffsetDeleteResponsePartition::default();
                        r.partition_index = p.partition_index;
                        r.error_code = match readable(&t.name.0) {
                            true => codes.next().map_or(0, result_code),
                            false => E::TopicAuthorizationFailed.code(),
                        };
                        r
                    })
                    .collect();
                response.topics.push(topic);
            }
        }
    }
    request.answer(&response)
}
