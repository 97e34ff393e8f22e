//! The web console (issue 21): one page, its script and its style, built into the binary and
//! served by the admin listener at `/`, and the JSON it reads besides `/v1/cluster`,
//! `/v1/partitions` and `/metrics`: `/v1/topics` (every topic of the cluster's metadata with
//! its assignments, and the shard of this node that owns each partition it holds),
//! `/v1/groups` (the groups this node coordinates: members, assignments, committed offsets and
//! lag) and `/v1/messages` (records of a partition this node leads, from an offset or a time).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Buf;
use futures::future::join_all;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde_json::{json, Value};

use super::Shard;
use crate::model::{records, BatchView, Isolation, NodeId, Offset, TopicPartition};
use crate::replication::OffsetSpec;

/// The most records one `/v1/messages` answer holds, and the bytes it reads for them.
const MESSAGES_MAX: usize = 500;
const MESSAGES_READ_BYTES: u64 = 4 << 20;

/// The console's files: (content type, body) for a path.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", include_str!("index.html"))),
        "/console/app.js" => Some(("text/javascript; charset=utf-8", include_str!("app.js"))),
        "/console/style.css" => Some(("text/css; charset=utf-8", include_str!("style.css"))),
        _ => None,
    }
}

/// `/v1/topics`: the cluster's topics as this node's metadata has them.
pub fn topics(shard: &Shard) -> String {
    let image = shard.image();
    let me = NodeId(shard.node_id);
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| n.0).collect::<Vec<i32>>();
    let topics: Vec<Value> = image
        .topics
        .iter()
        .map(|(name, meta)| {
            let partitions: Vec<Value> = meta
                .assignments
                .iter()
                .enumerate()
                .map(|(p, a)| {
                    let tp = TopicPartition::new(name.as_str(), p as i32);
                    let offline: Vec<i32> = a
                        .replicas
                        .iter()
                        .filter(|n| !image.is_live(n))
                        .map(|n| n.0)
                        .collect();
                    json!({
                        "partition": p,
                        "leader": image.is_live(&a.leader).then_some(a.leader.0),
                        "leader_epoch": a.leader_epoch.0,
                        "replicas": ids(&a.replicas),
                        "isr": ids(&a.isr),
                        "offline_replicas": offline,
                        "shard": a.replicas.contains(&me).then(|| shard.owner(&tp).index()),
                    })
                })
                .collect();
            json!({
                "name": name,
                "id": meta.id.to_string(),
                "internal": name.starts_with("__"),
                "partitions": partitions,
                "replication_factor": meta.assignments.first().map_or(0, |a| a.replicas.len()),
                "configs": meta.configs,
            })
        })
        .collect();
    format!("{}\n", json!({"node_id": shard.node_id, "topics": topics}))
}

/// `/v1/groups`: every group this node coordinates, from the shard that holds it, with the lag
/// of each committed offset behind the high watermark of a partition this node leads.
pub async fn groups(shard: &Rc<Shard>) -> String {
    let mut answers = vec![shard_groups(shard)];
    let others = join_all(
        shard
            .mesh
            .peers()
            .map(|peer| shard.mesh.remote(peer, |s| async move { shard_groups(&s) })),
    )
    .await;
    answers.extend(others.into_iter().flatten());
    let mut ends: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    let mut groups = Vec::new();
    for (held, high_watermarks) in answers {
        groups.extend(held);
        ends.extend(high_watermarks.into_iter().map(|(t, p, e)| ((t, p), e)));
    }
    for group in &mut groups {
        let mut total = 0i64;
        if let Some(offsets) = group["offsets"].as_array_mut() {
            for row in offsets {
                let topic: Arc<str> = Arc::from(row["topic"].as_str().unwrap_or_default());
                let partition = row["partition"].as_i64().unwrap_or(-1) as i32;
                let end = ends.get(&(topic, partition)).copied();
                let committed = row["committed_offset"].as_i64();
                let lag = end.zip(committed).map(|(e, c)| (e - c).max(0));
                total += lag.unwrap_or(0);
                row["log_end_offset"] = json!(end);
                row["lag"] = json!(lag);
            }
        }
        group["total_lag"] = json!(total);
    }
    groups.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    format!("{}\n", Value::Array(groups))
}

/// The high watermark of each partition a shard leads.
type Ends = Vec<(Arc<str>, i32, i64)>;

/// One shard's groups (as JSON) and the high watermarks of the partitions it leads.
fn shard_groups(shard: &Shard) -> (Vec<Value>, Ends) {
    let groups = shard
        .groups
        .committed()
        .into_iter()
        .map(|g| {
            let described = shard.groups.describe(&g.name);
            let members: Vec<Value> = described
                .members
                .into_iter()
                .map(|m| {
                    json!({
                        "member_id": m.member_id,
                        "instance_id": m.instance_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "assignment": assigned(m.assignment),
                    })
                })
                .collect();
            let mut offsets: Vec<Value> = g
                .offsets
                .into_iter()
                .map(|(topic, partition, offset)| {
                    json!({"topic": topic, "partition": partition, "committed_offset": offset})
                })
                .collect();
            // A partition a member holds but has not committed yet: no offset, no lag.
            for assigned in members
                .iter()
                .flat_map(|m| m["assignment"].as_array().cloned())
            {
                for a in assigned {
                    let known = offsets
                        .iter()
                        .any(|o| o["topic"] == a["topic"] && o["partition"] == a["partition"]);
                    if !known {
                        offsets.push(json!({"topic": a["topic"], "partition": a["partition"],
                            "committed_offset": null}));
                    }
                }
            }
            offsets.sort_by_key(|o| (o["topic"].to_string(), o["partition"].as_i64()));
            json!({
                "group": g.name,
                "state": g.state,
                "protocol_type": described.protocol_type,
                "protocol": described.protocol,
                "members": members,
                "offsets": offsets,
            })
        })
        .collect();
    (groups, shard.led_high_watermarks())
}

/// A consumer-protocol assignment's partitions, `[{topic, partition}]` (empty if it is not one).
fn assigned(mut bytes: bytes::Bytes) -> Vec<Value> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) else {
        return Vec::new();
    };
    assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| json!({"topic": t.topic.0.as_str(), "partition": p}))
        })
        .collect()
}

/// `/v1/messages?topic=T&partition=P[&offset=N|&timestamp=MS][&limit=N]`: up to `limit`
/// records (50 by default) of a partition this node leads, below its high watermark, keys,
/// values and header values as hex. An error is (HTTP status, message).
pub async fn messages(
    shard: &Rc<Shard>,
    query: &str,
    authz: &crate::server::authz::Authz,
) -> Result<String, (&'static str, String)> {
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let bad = |why: String| ("400 Bad Request", why);
    let number = |key: &str| -> Result<Option<i64>, (&'static str, String)> {
        match params.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{key}={v}: not a number"))),
        }
    };
    let topic = params
        .get("topic")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("name a topic: ?topic=T&partition=P".into()))?
        .clone();
    if !authz.topic(crate::security::acl::Operation::Read, &topic) {
        return Err((
            "403 Forbidden",
            format!("not authorized to read topic `{topic}`"),
        ));
    }
    let partition = number("partition")?.unwrap_or(0) as i32;
    let offset = number("offset")?;
    let timestamp = number("timestamp")?;
    let limit = number("limit")?.unwrap_or(50).clamp(1, MESSAGES_MAX as i64) as usize;
    let tp = TopicPartition::new(topic.as_str(), partition);
    let owner = shard.owner(&tp);
    let read = shard
        .mesh
        .route(owner, move |s| async move {
            read_records(&s, tp, offset, timestamp, limit).await
        })
        .await;
    match read {
        Ok(Ok(body)) => Ok(format!("{body}\n")),
        Ok(Err(why)) => Err(("404 Not Found", why)),
        Err(e) => Err(("503 Service Unavailable", e.to_string())),
    }
}

async fn read_records(
    shard: &Shard,
    tp: TopicPartition,
    offset: Option<i64>,
    timestamp: Option<i64>,
    limit: usize,
) -> Result<Value, String> {
    let partition = shard
        .partition(&tp)
        .await
        .map_err(|e| format!("{tp}: {e} (the console reads partitions this node leads)"))?;
    let log_start = partition.log.log_start().0;
    let high_watermark = partition.high_watermark().0;
    let start = match (timestamp, offset) {
        (Some(ts), _) => {
            let found = partition
                .list_offset(OffsetSpec::Timestamp(ts))
                .await
                .map_err(|e| format!("{tp}: {e}"))?;
            if found.offset.0 < 0 {
                high_watermark
            } else {
                found.offset.0
            }
        }
        (None, Some(offset)) => offset,
        (None, None) => log_start,
    }
    .clamp(log_start, high_watermark);
    let mut out = Vec::new();
    let mut next = start;
    while out.len() < limit && next < high_watermark {
        let reply = partition
            .read(
                Offset(next),
                MESSAGES_READ_BYTES,
                true,
                Isolation::ReadUncommitted,
                false,
            )
            .await;
        if let Some(error) = reply.header.error {
            return Err(format!("{tp}: {error}"));
        }
        let ranges = reply.ranges.unwrap_or_default();
        let Some(last) = ranges.last() else { break };
        let after = last.next_offset.0;
        for range in &ranges {
            let bytes = range.read_bytes().await.map_err(|e| format!("{tp}: {e}"))?;
            let mut rest = &bytes[..];
            while !rest.is_empty() && out.len() < limit {
                let (view, tail) = BatchView::validate(rest).map_err(|e| format!("{tp}: {e}"))?;
                rest = tail;
                if view.is_control() {
                    continue;
                }
                let decoded = records::decode(&view, MESSAGES_READ_BYTES as usize * 4)
                    .map_err(|e| format!("{tp}: {e}"))?;
                for r in decoded.into_iter().filter(|r| r.offset.0 >= start) {
                    if out.len() == limit {
                        break;
                    }
                    let headers: Vec<Value> = r
                        .headers
                        .iter()
                        .map(|h| {
                            json!({"key": String::from_utf8_lossy(&h.key),
                                "value": h.value.as_deref().map(hex)})
                        })
                        .collect();
                    out.push(json!({
                        "offset": r.offset.0,
                        "timestamp": r.timestamp.0,
                        "key": r.key.as_deref().map(hex),
                        "value": r.value.as_deref().map(hex),
                        "headers": headers,
                    }));
                }
            }
        }
        if after <= next {
            break;
        }
        next = after;
    }
    Ok(json!({
        "topic": &*tp.topic,
        "partition": tp.partition,
        "log_start_offset": log_start,
        "high_watermark": high_watermark,
        "from": start,
        "records": out,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `%XX` and `+` in a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(digit(bytes[i + 1])? * 16 + digit(bytes[i + 2])?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(super::percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(super::percent_decode("%e2%82%ac"), "\u{20ac}");
        assert_eq!(super::hex(b"\x00\xffA"), "00ff41");
    }
}
