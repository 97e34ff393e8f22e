//! Scale within the descriptor limit: `serve` under a low RLIMIT_NOFILE holds more segments than
//! it has descriptors, serves them all, refuses politely what it cannot hold, and keeps its
//! connections within its budget.

use crate::kit::{broker, client};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::Broker;
use client::*;
use futures_lite::future::block_on;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const FD_LIMIT: u64 = 512;

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The number after `label` in the serving line: "... 5986 per shard (5580 partitions, ...".
fn number_before(line: &str, label: &str) -> usize {
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("`{label}` in {line}"));
    line[..at]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before `{label}` in {line}"))
}

/// Reads every record of `topic` (partitions 0..partitions) from the beginning.
fn read_all(
    addr: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> BTreeMap<(i32, i64), Vec<u8>> {
    let consumer = consumer(addr, &[("fetch.wait.max.ms", "10")]);
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    read_n(&consumer, count)
        .into_iter()
        .map(|got| ((got.partition, got.offset), got.sent.value.unwrap()))
        .collect()
}

#[test]
fn more_segments_than_descriptors_are_served_and_what_cannot_be_held_is_refused() {
    let mut broker = Broker::start_with_fd_limit(FD_LIMIT, &["offsets.topic.num.partitions=2"]);
    let line = broker.serving_line.clone();
    assert!(line.contains(&format!("descriptors {FD_LIMIT}:")), "{line}");
    let shards = number_before(&line, "shards;");
    let per_shard = number_before(&line, "partitions,");
    // Three quarters of what the node may hold (the offsets topic has two): each partition gets
    // four segments, so the topic has more segment files than the process has descriptors
    // (before this, each segment held three).
    let partitions = (shards * per_shard * 3 / 4 - 2) as i32;
    assert!(partitions as u64 * 4 > FD_LIMIT, "{partitions} partitions");
    create_topic(
        &broker.addr,
        "wide",
        partitions,
        &[("segment.bytes", "1024")],
    );

    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    let mut sent = BTreeMap::new();
    for round in 0..4 {
        let values: Vec<Sent> = (0..partitions)
            .map(|p| Sent::new("k", &format!("{p}/{round}/{}", "x".repeat(800))))
            .collect();
        for (p, value) in values.iter().enumerate() {
            let delivered = produce(
                &producer,
                "wide",
                Some(p as i32),
                std::slice::from_ref(value),
            )
            .expect("delivered");
            sent.insert(delivered[0], value.value.clone().unwrap());
        }
        assert!(open_fds(broker.pid()) < FD_LIMIT as usize);
    }
    let total = sent.len();
    assert_eq!(read_all(&broker.addr, "wide", partitions, total), sent);
    let segments = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("wide-"))
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap())
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments as u64 > FD_LIMIT, "{segments} segments");

    // Restarted, it opens them all again within the limit and serves the same records.
    drop(producer);
    broker.stop();
    broker.restart();
    assert_eq!(read_all(&broker.addr, "wide", partitions, total), sent);

    // Past what the shards can hold: refused before anything is created, with the limit named.
    let admin = admin(&broker.addr);
    let too_many = NewTopic::new(
        "wider",
        (shards * per_shard) as i32,
        TopicReplication::Fixed(1),
    );
    let results = block_on(admin.create_topics(&[too_many], &AdminOptions::new())).unwrap();
    match &results[0] {
        Err((_, code)) => assert_eq!(*code, RDKafkaErrorCode::PolicyViolation),
        Ok(topic) => panic!("{topic} created past the descriptor budget"),
    }
    assert!(!broker.data_dir().join("wider-0").exists());
    // And it keeps serving.
    let producer = client::producer(&broker.addr, &[]);
    let more = produce(&producer, "wide", Some(0), &[Sent::new("k", "after")]).expect("produce");
    assert_eq!(more[0].1, 4);
    broker.stop();
    let log = broker.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn connections_stop_at_their_share_of_descriptors_and_the_broker_keeps_serving() {
    let broker = Broker::start_with_fd_limit(FD_LIMIT, &[]);
    let line = broker.serving_line.clone();
    let allowed = number_before(&line, "for connections");
    assert!(allowed < FD_LIMIT as usize);
    // As many connections as the process has descriptors: those over its share wait in the
    // listen queue; the broker never runs out of descriptors.
    let mut held = Vec::new();
    for _ in 0..FD_LIMIT {
        held.push(std::net::TcpStream::connect(&broker.addr).expect("connect"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert!(open_fds(broker.pid()) < FD_LIMIT as usize);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once some go, a client gets in and is served.
    held.truncate(allowed / 2);
    create_topic(&broker.addr, "after-the-flood", 1, &[]);
    let producer = producer(&broker.addr, &[]);
    produce(
        &producer,
        "after-the-flood",
        Some(0),
        &[Sent::new("k", "v")],
    )
    .expect("produce");
    drop(held);
    let log = broker.log();
    assert!(!log.contains("Too many open files"), "{log}");
}
