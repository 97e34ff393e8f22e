//! Consumer groups against a running `sluice serve`:
//! - rebalance: 10 librdkafka consumers in one group over a 100-partition topic; the time until
//!   all 100 partitions are assigned (first join), after an 11th member joins, and after a member
//!   leaves, for the eager `range` and the incremental `cooperative-sticky` protocols. The
//!   coordinator's own part is the time beyond the clients' heartbeat interval (members learn of
//!   a rebalance on their next heartbeat), so the interval is printed beside it.
//! - commit: OffsetCommit requests per second from 4 connections (8 in flight each), 1 and 100
//!   partitions per request, as a ratio to Produce requests (acks=1) carrying the same number of
//!   records of the same size, on the same connections, measured in the same run.
//!
//! `cargo bench --bench groups` (SLUICE_BENCH_ROUNDS, default 3; SLUICE_BENCH_ASSIGNORS, default
//! `range,cooperative-sticky`; SLUICE_BENCH_SECONDS per commit
//! phase, default 3; SLUICE_BENCH_CORES passes `--cores`). Output: a line per round and phase,
//! then medians.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::model::records::{BatchBuilder, Record};
use sluice::model::{Offset, TimestampMs};

use common::{create_topic, env_or, median};

const MEMBERS: usize = 10;
const PARTITIONS: i32 = 100;
const HEARTBEAT_MS: u64 = 250;
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 8;

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 3) as usize;
    let seconds = env_or("SLUICE_BENCH_SECONDS", 3);
    let temp = tempfile::tempdir().expect("temp dir");
    let (broker, addr) = common::start_broker(
        &temp.path().join("data"),
        &["group.initial.rebalance.delay.ms=0"],
    );
    let pid = broker.id() as i32;
    create_topic(&addr, "rebalance", PARTITIONS);
    create_topic(&addr, "baseline", CONNECTIONS as i32);
    println!("heartbeat.interval.ms {HEARTBEAT_MS}");

    // SLUICE_BENCH_ASSIGNORS: comma-separated; empty skips the rebalance part.
    let assignors: Vec<String> = std::env::var("SLUICE_BENCH_ASSIGNORS")
        .unwrap_or_else(|_| "range,cooperative-sticky".to_string())
        .split(',')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let mut times: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        for assignor in &assignors {
            let [first, join, leave] =
                rebalance_round(&addr, &format!("rb-{assignor}-{round}"), assignor);
            println!(
                "round {round} {assignor}: first join {first:.3} s, 11th member {join:.3} s, \
                 a member leaves {leave:.3} s"
            );
            for (phase, t) in [
                ("first join", first),
                ("11th member", join),
                ("member leaves", leave),
            ] {
                let name = format!("{assignor} {phase}");
                match times.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push(t),
                    None => times.push((name, vec![t])),
                }
            }
        }
    }
    let mut ratios: Vec<(usize, Vec<f64>, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        for per_request in [1usize, 100] {
            let commits =
                requests_per_second(&addr, seconds, |c| commit_frame(round, c, per_request));
            let produces = requests_per_second(&addr, seconds, |c| produce_frame(c, per_request));
            let ratio = commits / produces;
            println!(
                "round {round} {per_request} partition(s)/request: OffsetCommit {commits:.0} req/s \
                 ({:.0} offsets/s), Produce {produces:.0} req/s, ratio {ratio:.2}",
                commits * per_request as f64
            );
            match ratios.iter_mut().find(|(n, _, _)| *n == per_request) {
                Some((_, c, r)) => {
                    c.push(commits);
                    r.push(ratio)
                }
                None => ratios.push((per_request, vec![commits], vec![ratio])),
            }
        }
    }
    common::stop_broker(broker, pid);
    for (name, mut v) in times {
        println!("median {name}: {:.3} s", median(&mut v));
    }
    for (per_request, mut commits, mut r) in ratios {
        println!(
            "median commit {per_request}/request: {:.0} req/s, ratio to produce {:.2}",
            median(&mut commits),
            median(&mut r)
        );
    }
}

/// One member: polls its consumer in a thread and publishes how many partitions it holds.
struct Member {
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn spawn_member(addr: &str, group: &str, assignor: &str, start: Arc<Barrier>) -> Member {
    let held = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("partition.assignment.strategy", assignor)
        .set("heartbeat.interval.ms", HEARTBEAT_MS.to_string())
        .set("session.timeout.ms", "10000")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (h, s) = (held.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        start.wait();
        consumer.subscribe(&["rebalance"]).unwrap();
        while !s.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(5));
            h.store(
                consumer.assignment().map(|a| a.count()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        consumer.unsubscribe();
        drop(consumer);
    });
    Member { held, stop, thread }
}

/// Waits until `members` hold every partition between them, each at least one.
fn covered(members: &[Member]) -> f64 {
    let started = Instant::now();
    loop {
        let counts: Vec<usize> = members
            .iter()
            .map(|m| m.held.load(Ordering::Relaxed))
            .collect();
        if counts.iter().sum::<usize>() == PARTITIONS as usize && counts.iter().all(|&c| c > 0) {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no cover: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rebalance_round(addr: &str, group: &str, assignor: &str) -> [f64; 3] {
    let start = Arc::new(Barrier::new(MEMBERS + 1));
    let mut members: Vec<Member> = (0..MEMBERS)
        .map(|_| spawn_member(addr, group, assignor, start.clone()))
        .collect();
    start.wait();
    let first = covered(&members);
    let start = Arc::new(Barrier::new(2));
    members.push(spawn_member(addr, group, assignor, start.clone()));
    start.wait();
    let join = covered(&members);
    let leaving = members.remove(0);
    leaving.stop.store(true, Ordering::Relaxed);
    let leave = covered(&members);
    leaving.thread.join().unwrap();
    for m in &members {
        m.stop.store(true, Ordering::Relaxed);
    }
    for m in members {
        m.thread.join().unwrap();
    }
    [first, join, leave]
}

/// One request frame for connection `c`, as bytes to send as they are.
fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.client_id = Some(StrBytes::from_static_str("bench"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(buf.len() as i32);
    out.put_slice(&buf);
    out.freeze()
}

/// A simple consumer's commit (generation -1, no member), group `commit-<round>-<c>`.
fn commit_frame(round: usize, c: usize, partitions: usize) -> Bytes {
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("rebalance"));
    topic.partitions = (0..partitions as i32)
        .map(|p| {
            let mut partition = OffsetCommitRequestPartition::default();
            partition.partition_index = p;
            partition.committed_offset = 1_000_000 + p as i64;
            partition.committed_leader_epoch = 0;
            partition.committed_metadata = Some(StrBytes::from_static_str(""));
            partition
        })
        .collect();
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(format!("commit-{round}-{c}")));
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![topic];
    frame(ApiKey::OffsetCommit, 8, &request)
}

/// A Produce with as many records as a commit of `partitions` writes, each sized like an offset
/// record (key: version, group, topic, partition; value: version 3 fields), to partition `c`.
fn produce_frame(c: usize, partitions: usize) -> Bytes {
    let key = Bytes::from(vec![b'k'; 2 + 2 + 14 + 2 + 9 + 4]);
    let value = Bytes::from(vec![b'v'; 2 + 8 + 4 + 2 + 8]);
    let records: Vec<Record> = (0..partitions)
        .map(|i| Record {
            offset: Offset(i as i64),
            timestamp: TimestampMs::now(),
            key: Some(key.clone()),
            value: Some(value.clone()),
            headers: Vec::new(),
        })
        .collect();
    let mut data = PartitionProduceData::default();
    data.index = c as i32;
    data.records = Some(BatchBuilder::default().build(&records));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("baseline"));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    frame(ApiKey::Produce, 9, &request)
}

/// Requests per second over `CONNECTIONS` connections with `IN_FLIGHT` requests each, sending
/// `request(c)` again as each answer arrives, for `seconds`.
fn requests_per_second(addr: &str, seconds: u64, request: impl Fn(usize) -> Bytes) -> f64 {
    let frames: Vec<Bytes> = (0..CONNECTIONS).map(&request).collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = frames
        .into_iter()
        .map(|frame| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_nodelay(true).unwrap();
                for _ in 0..IN_FLIGHT {
                    s.write_all(&frame).unwrap();
                }
                let mut answered = 0u64;
                let mut len = [0u8; 4];
                let mut body = Vec::new();
                loop {
                    s.read_exact(&mut len).unwrap();
                    body.resize(i32::from_be_bytes(len) as usize, 0);
                    s.read_exact(&mut body).unwrap();
                    if answered == 0 {
                        check(&frame, &body);
                    }
                    answered += 1;
                    if Instant::now() >= deadline {
                        break;
                    }
                    s.write_all(&frame).unwrap();
                }
                // Drain what is still in flight, uncounted.
                for _ in 1..IN_FLIGHT {
                    s.read_exact(&mut len).unwrap();
                    body.resize(i32::from_be_bytes(len) as usize, 0);
                    s.read_exact(&mut body).unwrap();
                }
                answered
            })
        })
        .collect();
    let answered: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    answered as f64 / seconds as f64
}

/// Asserts that an answer to `request` reports success for every partition.
fn check(request: &[u8], response: &[u8]) {
    use kafka_protocol::messages::{OffsetCommitResponse, ProduceResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    let api_key = ApiKey::try_from(i16::from_be_bytes([request[4], request[5]])).unwrap();
    let version = i16::from_be_bytes([request[6], request[7]]);
    let mut body = Bytes::copy_from_slice(response);
    ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
    let codes: Vec<i16> = match api_key {
        ApiKey::OffsetCommit => OffsetCommitResponse::decode(&mut body, version)
            .unwrap()
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        _ => ProduceResponse::decode(&mut body, version)
            .unwrap()
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
    };
    assert!(
        !codes.is_empty() && codes.iter().all(|&c| c == 0),
        "{api_key:?}: {codes:?}"
    );
}
