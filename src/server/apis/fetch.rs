//! Fetch v4-v16 with long poll: read ranges come from the owning shards as file slices and go to
//! the socket with sendfile, behind a hand-written response header (crate::protocol::fetch).
//! Budgets: `partition_max_bytes` per partition, `max_bytes` for the response, except that the
//! first non-empty partition returns at least one whole batch (KIP-74). A fetch with fewer than
//! `min_bytes` waits for appends, up to `max_wait_ms`.
//!
//! Fetch sessions (KIP-227) are not kept yet: every answer has session id 0, which tells clients
//! that no session was created, so they keep sending full fetch requests.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{join_all, select_all};
use kafka_protocol::messages::{ApiKey, FetchRequest};
use uuid::Uuid;

use super::{Answer, Api, Request};
use crate::io;
use crate::model::TopicPartition;
use crate::protocol::fetch::{self as encoder, FetchResponseData, PartitionData, TopicData};
use crate::protocol::ResponseError as E;
use crate::server::Shard;

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
}

async fn handle(shard: Rc<Shard>, request: Request) -> Answer {
    let body: FetchRequest = request.decode("FetchRequest")?;
    let mut data = FetchResponseData::default();
    if request.version >= 7 && body.session_id != 0 {
        // We never hand out sessions, so a client naming one is confused: tell it so.
        data.error_code = E::FetchSessionIdNotFound.code();
        return Ok(Some(encoder::encode(
            request.version,
            request.correlation_id,
            &data,
        )));
    }
    let image = shard.image();
    let mut wanted = Vec::new();
    for topic in &body.topics {
        let (name, id, known) = if request.version >= 13 {
            match image.topic_by_id(topic.topic_id) {
                Some((name, meta)) => (name.to_string(), meta.id, true),
                None => (String::new(), topic.topic_id, false),
            }
        } else {
            let name = topic.topic.0.to_string();
            let meta = image.topics.get(&name);
            (name, meta.map_or(Uuid::nil(), |m| m.id), meta.is_some())
        };
        let topic_index = data.topics.len();
        data.topics.push(TopicData {
            name: name.clone(),
            id,
            partitions: Vec::new(),
        });
        for p in &topic.partitions {
            let unknown = if request.version >= 13 {
                E::UnknownTopicId.code()
            } else {
                E::UnknownTopicOrPartition.code()
            };
            let exists = known
                && image
                    .topics
                    .get(&name)
                    .is_some_and(|m| (0..m.partitions).contains(&p.partition));
            wanted.push(Wanted {
                tp: exists.then(|| TopicPartition::new(name.clone(), p.partition)),
                error_code: if exists { 0 } else { unknown },
                offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as u64,
            });
            data.topics[topic_index].partitions.push(PartitionData {
                partition: p.partition,
                error_code: if exists { 0 } else { unknown },
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                records: Vec::new(),
            });
        }
    }
    let max_bytes = if body.max_bytes > 0 {
        body.max_bytes as u64
    } else {
        i32::MAX as u64
    };
    let min_bytes = body.min_bytes.max(0) as u64;
    let wait = Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    loop {
        let (total, errors) = read_all(&shard, &wanted, max_bytes, &mut data).await;
        let now = Instant::now();
        if total >= min_bytes || errors || now >= deadline || shard.is_stopping() {
            break;
        }
        // Wait for data past what this read already saw (the high watermark), not past the fetch
        // offset: otherwise a fetch short of min_bytes would wake at once and spin.
        let seen: Vec<i64> = data
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.high_watermark))
            .collect();
        let watches =
            join_all(wanted.iter().zip(seen).filter_map(|(w, seen)| {
                w.tp.as_ref().map(|tp| shard.watch(tp, w.offset.max(seen)))
            }))
            .await;
        if watches.is_empty() {
            io::sleep(deadline - now).await;
            break;
        }
        let stopped = shard.stopped();
        let woken = futures_lite::future::or(
            async {
                let _ = select_all(watches).await;
            },
            async {
                let _ = stopped.await;
            },
        );
        if io::net::timeout(deadline - now, woken).await.is_none() {
            // Timed out: answer with what the last read found (re-read for appends that raced).
            read_all(&shard, &wanted, max_bytes, &mut data).await;
            break;
        }
    }
    Ok(Some(encoder::encode(
        request.version,
        request.correlation_id,
        &data,
    )))
}

/// Reads every wanted partition (concurrently, from their owners), then trims to `max_bytes` in
/// request order. Returns the record bytes kept and whether any partition has an error.
async fn read_all(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    max_bytes: u64,
    data: &mut FetchResponseData,
) -> (u64, bool) {
    let replies = join_all(wanted.iter().map(|w| {
        let shard = shard.clone();
        async move {
            match &w.tp {
                Some(tp) => Some(shard.read(tp, w.offset, w.partition_max_bytes, true).await),
                None => None,
            }
        }
    }))
    .await;
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
        slot.error_code = reply.header.error_code;
        slot.high_watermark = reply.header.high_watermark;
        slot.last_stable_offset = reply.header.high_watermark;
        slot.log_start_offset = reply.header.log_start_offset;
        slot.records.clear();
        if reply.header.error_code != 0 {
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
    (total, errors || wanted.iter().any(|w| w.error_code != 0))
}
