//! Fetch v4-v16 with long poll: read ranges come from the owning shards as file slices and go to
//! the socket with sendfile, behind a hand-written response header (crate::protocol::fetch).
//! Budgets: `partition_max_bytes` per partition, `max_bytes` for the response, except that the
//! first non-empty partition returns at least one whole batch (KIP-74). A fetch with fewer than
//! `min_bytes` waits for appends, up to `max_wait_ms`.
//!
//! Fetch sessions (KIP-227, v7+): see crate::server::fetch_sessions.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::select_all;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use uuid::Uuid;

use super::{Answer, Api, Request};
use crate::io;
use crate::model::{Isolation, NodeId, Offset, TopicPartition};
use crate::protocol::fetch::{self as encoder, FetchResponseData, PartitionData, TopicData};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::fanout::ReadArgs;
use crate::server::fetch_sessions::{Entry, Plan, Sent};
use crate::server::{partition_code, Shard};

pub const API: Api = Api {
    key: ApiKey::Fetch,
    min_version: encoder::VERSION_MIN,
    max_version: encoder::VERSION_MAX,
    handle: |shard, request| Box::pin(handle(shard, request)),
};

/// The longest a fetch may wait, whatever it asks for.
const FETCH_WAIT_MS_MAX: i32 = 30_000;

struct Wanted {
    tp: Option<TopicPartition>,
    error_code: i16,
    offset: i64,
    partition_max_bytes: u64,
    /// The leader epoch a follower fetches under.
    epoch: i32,
}

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: FetchRequest = request.decode("FetchRequest")?;
    let version = request.version;
    let image = shard.image();
    // A follower's fetch names its broker (v15 moved the field into replica_state).
    let replica_id = if version >= 15 {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(NodeId(replica_id));
    // Per partition, in request order: the leader epoch a follower fetches under.
    let epochs: std::collections::HashMap<(Arc<str>, i32), i32> = match replica {
        None => Default::default(),
        Some(_) => body
            .topics
            .iter()
            .flat_map(|t| {
                let name: Arc<str> = Arc::from(t.topic.0.as_str());
                t.partitions
                    .iter()
                    .map(move |p| ((name.clone(), p.partition), p.current_leader_epoch))
            })
            .collect(),
    };
    let entry = |name: Arc<str>, id: Uuid, partition: i32, offset: i64, max_bytes: i32| Entry {
        name,
        id,
        partition,
        fetch_offset: offset,
        max_bytes: max_bytes.max(0) as u64,
    };
    let resolve = |name: &kafka_protocol::messages::TopicName, id: Uuid| -> (Arc<str>, Uuid) {
        if version >= 13 {
            match image.topic_by_id(id) {
                Some((name, meta)) => (Arc::from(name), meta.id),
                None => (Arc::from(""), id),
            }
        } else {
            let id = image
                .topics
                .get(name.0.as_str())
                .map_or(Uuid::nil(), |m| m.id);
            (Arc::from(name.0.as_str()), id)
        }
    };
    let mut requested = Vec::new();
    for topic in &body.topics {
        let (name, id) = resolve(&topic.topic, topic.topic_id);
        for p in &topic.partitions {
            requested.push(entry(
                name.clone(),
                id,
                p.partition,
                p.fetch_offset,
                p.partition_max_bytes,
            ));
        }
    }
    let mut forgotten = Vec::new();
    for topic in &body.forgotten_topics_data {
        let (name, id) = resolve(&topic.topic, topic.topic_id);
        for &partition in &topic.partitions {
            forgotten.push(entry(name.clone(), id, partition, 0, 0));
        }
    }
    let plan = if version >= 7 {
        shard.fetch_sessions.borrow_mut().resolve(
            body.session_id,
            body.session_epoch,
            requested,
            &forgotten,
            Instant::now(),
        )
    } else {
        Ok(Plan::Sessionless(requested))
    };
    let mut data = FetchResponseData::default();
    let (session_id, entries, previously_sent) = match plan {
        Err(code) => {
            data.error_code = code;
            return Ok(Some(encoder::encode(
                version,
                request.correlation_id,
                &data,
            )));
        }
        Ok(Plan::Sessionless(entries)) => (0, entries, None),
        Ok(Plan::New { id, entries }) => (id, entries, None),
        Ok(Plan::Incremental { id, entries }) => {
            let (entries, sent): (Vec<Entry>, Vec<Option<Sent>>) = entries.into_iter().unzip();
            (id, entries, Some(sent))
        }
    };
    data.session_id = session_id;
    let unknown = if version >= 13 {
        E::UnknownTopicId.code()
    } else {
        E::UnknownTopicOrPartition.code()
    };
    let mut wanted = Vec::with_capacity(entries.len());
    // A follower fetches as a broker (CLUSTER_ACTION); a consumer needs READ on each topic.
    let authz = Authz::of(&shard, &request);
    let (follower_allowed, refused) = match replica {
        Some(_) => (
            authz.cluster(Operation::ClusterAction),
            E::ClusterAuthorizationFailed.code(),
        ),
        None => (true, E::TopicAuthorizationFailed.code()),
    };
    // The current topic's partition count and whether it may be read, looked up once per
    // topic, not per partition.
    let mut partitions: Option<i32> = None;
    let mut allowed = false;
    for e in &entries {
        if data
            .topics
            .last()
            .is_none_or(|t| *t.name != *e.name || t.id != e.id)
        {
            partitions = image
                .topics
                .get(&*e.name)
                .filter(|m| !e.name.is_empty() && m.id == e.id)
                .map(|m| m.partitions);
            allowed =
                follower_allowed && (replica.is_some() || authz.topic(Operation::Read, &e.name));
            data.topics.push(TopicData {
                name: e.name.to_string(),
                id: e.id,
                partitions: Vec::new(),
            });
        }
        let exists = partitions.is_some_and(|count| (0..count).contains(&e.partition));
        let error_code = match (allowed, exists) {
            (false, _) => refused,
            (true, true) => 0,
            (true, false) => unknown,
        };
        wanted.push(Wanted {
            tp: (allowed && exists).then(|| TopicPartition::new(e.name.clone(), e.partition)),
            error_code,
            offset: e.fetch_offset,
            partition_max_bytes: e.max_bytes,
            epoch: epochs
                .get(&(e.name.clone(), e.partition))
                .copied()
                .unwrap_or(-1),
        });
        data.topics
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(PartitionData {
                partition: e.partition,
                error_code,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted: None,
                records: Vec::new(),
                current_leader: None,
            });
    }
    let max_bytes = if body.max_bytes > 0 {
        body.max_bytes as u64
    } else {
        i32::MAX as u64
    };
    let min_bytes = body.min_bytes.max(0) as u64;
    // isolation_level 1: read_committed (from v4).
    let isolation = if body.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let wait = Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    loop {
        // A fetch that may wait registers its wake-ups in the same pass that reads.
        let watch = Instant::now() < deadline && min_bytes > 0;
        let (total, errors, wakes) = read_all(
            &shard, &wanted, max_bytes, isolation, replica, watch, &mut data,
        )
        .await;
        let now = Instant::now();
        if total >= min_bytes || errors || now >= deadline || shard.is_stopping() {
            break;
        }
        if wakes.is_empty() {
            io::sleep(deadline - now).await;
            break;
        }
        let stopped = shard.stopped();
        let woken = futures_lite::future::or(
            async {
                let _ = select_all(wakes).await;
            },
            async {
                let _ = stopped.await;
            },
        );
        if io::net::timeout(deadline - now, woken).await.is_none() {
            // Timed out: nothing passed what the last read saw (a wake-up is registered in the
            // same pass as the read, so no append raced it), which is the answer.
            break;
        }
    }
    if session_id != 0 {
        answer_session(&shard, session_id, &entries, previously_sent, &mut data);
    }
    if replica.is_none() {
        for topic in &data.topics {
            let bytes: u64 = topic.partitions.iter().map(|p| p.records_len()).sum();
            if bytes > 0 {
                shard
                    .metrics
                    .fetched(&Arc::from(topic.name.as_str()), bytes);
            }
        }
    }
    if version >= 12 {
        name_current_leaders(
            &shard,
            &mut data,
            version >= 16,
            &request.conn.listener.name,
        );
    }
    Ok(Some(encoder::encode(
        version,
        request.correlation_id,
        &data,
    )))
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names the leader
/// now (from v12), and from v16 the response says where it is.
fn name_current_leaders(
    shard: &Shard,
    data: &mut FetchResponseData,
    endpoints: bool,
    listener: &str,
) {
    let moved = [E::NotLeaderOrFollower.code(), E::FencedLeaderEpoch.code()];
    let image = shard.image();
    let mut nodes = std::collections::BTreeMap::new();
    for topic in &mut data.topics {
        for p in &mut topic.partitions {
            if !moved.contains(&p.error_code) {
                continue;
            }
            let Some((leader, epoch, broker)) = super::leader_now(&image, &topic.name, p.partition)
            else {
                continue;
            };
            p.current_leader = Some((leader, epoch));
            if endpoints {
                nodes
                    .entry(leader)
                    .or_insert_with(|| encoder::NodeEndpoint {
                        node_id: leader,
                        host: broker.endpoint(listener).0.to_string(),
                        port: i32::from(broker.endpoint(listener).1),
                        rack: broker.rack.clone(),
                    });
            }
        }
    }
    data.node_endpoints = nodes.into_values().collect();
}

/// Remembers what this answer tells the client; in an incremental answer, leaves out the
/// partitions with no records, no error and nothing changed since the last answer.
fn answer_session(
    shard: &Shard,
    session_id: i32,
    entries: &[Entry],
    previously_sent: Option<Vec<Option<Sent>>>,
    data: &mut FetchResponseData,
) {
    let mut sent_now = Vec::new();
    let mut index = 0;
    for topic in &mut data.topics {
        topic.partitions.retain(|p| {
            let entry = &entries[index];
            let before = previously_sent.as_ref().and_then(|s| s[index]);
            index += 1;
            let now = Sent {
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
            };
            let news = p.error_code != 0 || !p.records.is_empty() || before != Some(now);
            if news {
                sent_now.push((entry.clone(), now));
            }
            news || previously_sent.is_none()
        });
    }
    data.topics.retain(|t| !t.partitions.is_empty());
    shard
        .fetch_sessions
        .borrow_mut()
        .answered(session_id, &sent_now);
}

/// Reads every wanted partition (concurrently, from their owners), then trims to `max_bytes` in
/// request order. Returns the record bytes kept, whether any partition has an error, and with
/// `watch` the wake-ups for data past what this read saw (one per owner shard).
async fn read_all(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    max_bytes: u64,
    isolation: Isolation,
    replica: Option<NodeId>,
    watch: bool,
    data: &mut FetchResponseData,
) -> (u64, bool, Vec<io::Answered<()>>) {
    // No partition may bring more than the whole response may hold (its first batch aside,
    // KIP-74): a 20 MB partition limit under a 1 MB request limit reads 1 MB.
    let reads: Vec<ReadArgs> = wanted
        .iter()
        .filter_map(|w| {
            w.tp.clone().map(|tp| ReadArgs {
                tp,
                offset: Offset(w.offset),
                max_bytes: w.partition_max_bytes.min(max_bytes),
                min_one_batch: true,
                isolation,
                replica: replica.map(|node| (node, w.epoch)),
            })
        })
        .collect();
    let (read, wakes) = shard.read_many(reads, watch).await;
    let mut read = read.into_iter();
    let replies: Vec<_> = wanted
        .iter()
        .map(|w| w.tp.as_ref().and_then(|_| read.next()))
        .collect();
    let mut remaining = max_bytes;
    let mut total = 0;
    let mut errors = false;
    let mut slots = data
        .topics
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
        .collect::<Vec<_>>();
    for (reply, slot) in replies.into_iter().zip(slots.iter_mut()) {
        let Some(reply) = reply else {
            errors = true;
            continue;
        };
        slot.error_code = reply.header.error.as_ref().map_or(0, partition_code);
        slot.high_watermark = reply.header.high_watermark.0;
        slot.last_stable_offset = reply.header.last_stable_offset.0;
        slot.aborted = reply.aborted;
        slot.log_start_offset = reply.header.log_start_offset.0;
        slot.records.clear();
        if slot.error_code != 0 {
            errors = true;
            continue;
        }
        let mut slices = reply.ranges.unwrap_or_default();
        let len: u64 = slices.iter().map(|s| s.len).sum();
        if len > remaining && total > 0 {
            let mut kept = 0;
            let fit = slices
                .iter()
                .take_while(|s| {
                    kept += s.len;
                    kept <= remaining
                })
                .count();
            slices.truncate(fit);
        }
        let len: u64 = slices.iter().map(|s| s.len).sum();
        remaining = remaining.saturating_sub(len);
        total += len;
        slot.records = slices;
    }
    let errors = errors || wanted.iter().any(|w| w.error_code != 0);
    (total, errors, wakes)
}
