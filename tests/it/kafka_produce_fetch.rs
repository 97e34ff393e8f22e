//! Produce and fetch through a real `sluice serve` with librdkafka.

use crate::kit::{broker, client};
use broker::Broker;
use client::*;
use rdkafka::Offset;

fn records(n: usize, tag: &str) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("{tag}-value-{i}-{}", "x".repeat(i % 50)).into_bytes()),
            headers: vec![("h".into(), format!("{i}").into_bytes())],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

#[test]
fn acks_0_1_and_all_read_back_exactly_in_order() {
    let broker = Broker::start(&[]);
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        create_topic(&broker.addr, &topic, 1, &[]);
        // acks=0 hears of no refusal: in the cluster run, write once every node knows the topic.
        broker.await_topic_everywhere(&topic);
        let producer = producer(&broker.addr, &[("acks", acks)]);
        let sent = records(200, acks);
        let offsets = produce(&producer, &topic, Some(0), &sent).expect("produce");
        if acks != "0" {
            let expected: Vec<(i32, i64)> = (0..200).map(|i| (0, i)).collect();
            assert_eq!(offsets, expected, "acks={acks}");
        }
        let got = consume(&broker.addr, &topic, 0, Offset::Beginning, 200);
        let got_sent: Vec<Sent> = got.iter().map(|g| g.sent.clone()).collect();
        assert_eq!(got_sent, sent, "acks={acks}");
        assert!(got.iter().enumerate().all(|(i, g)| g.offset == i as i64));
    }
}

#[test]
fn every_codec_passes_through() {
    let broker = Broker::start(&[]);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker.addr, &topic, 1, &[]);
        let producer = producer(&broker.addr, &[("compression.type", codec)]);
        let sent = records(300, codec);
        produce(&producer, &topic, Some(0), &sent).expect("produce");
        let got: Vec<Sent> = consume(&broker.addr, &topic, 0, Offset::Beginning, 300)
            .into_iter()
            .map(|g| g.sent)
            .collect();
        assert_eq!(got, sent, "{codec}");
        // Every batch is stored as the producer sent it: in the codec, or uncompressed where
        // librdkafka found the compressed form no smaller (it does so for tiny batches). lz4 is
        // on because Sluice advertises FindCoordinator (librdkafka's test for Kafka >= 0.9).
        let stored = stored_codecs(&broker, &topic);
        let named = |c: &sluice::model::Codec| format!("{c:?}").eq_ignore_ascii_case(codec);
        assert!(
            stored.iter().any(named)
                && stored
                    .iter()
                    .all(|c| named(c) || *c == sluice::model::Codec::None),
            "{codec}: {stored:?}"
        );
    }
}

#[test]
fn create_time_and_log_append_time() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "create-time", 1, &[]);
    create_topic(
        &broker.addr,
        "append-time",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let producer = producer(&broker.addr, &[]);
    let sent = records(10, "ts");
    produce(&producer, "create-time", Some(0), &sent).unwrap();
    let before = now_ms();
    produce(&producer, "append-time", Some(0), &sent).unwrap();
    let after = now_ms();
    let create = consume(&broker.addr, "create-time", 0, Offset::Beginning, 10);
    for (g, s) in create.iter().zip(&sent) {
        assert!(matches!(g.timestamp, rdkafka::Timestamp::CreateTime(t) if Some(t) == s.timestamp));
    }
    let append = consume(&broker.addr, "append-time", 0, Offset::Beginning, 10);
    for g in &append {
        match g.timestamp {
            rdkafka::Timestamp::LogAppendTime(t) => {
                assert!(t >= before && t <= after, "{t} not in [{before}, {after}]")
            }
            other => panic!("expected LogAppendTime, got {other:?}"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_batch_near_message_max_bytes_is_taken_and_one_over_is_refused() {
    let limit = 200_000;
    let broker = Broker::start(&[&format!("message.max.bytes={limit}")]);
    create_topic(&broker.addr, "big", 1, &[]);
    // The client's own limit is higher, so the broker is the one that decides.
    let producer = producer(
        &broker.addr,
        &[("message.max.bytes", "1000000"), ("linger.ms", "0")],
    );
    let near = Sent::new("near", &"n".repeat(limit - 1_000));
    assert_eq!(
        produce(&producer, "big", Some(0), std::slice::from_ref(&near)).unwrap(),
        vec![(0, 0)]
    );
    let over = Sent::new("over", &"o".repeat(limit + 1_000));
    let err = produce(&producer, "big", Some(0), &[over]).unwrap_err();
    assert!(
        format!("{err:?}").contains("MessageSizeTooLarge"),
        "expected MESSAGE_TOO_LARGE, got {err:?}"
    );
    let after = Sent::new("after", "small");
    assert_eq!(
        produce(&producer, "big", Some(0), std::slice::from_ref(&after)).unwrap(),
        vec![(0, 1)]
    );
    let got = consume(&broker.addr, "big", 0, Offset::Beginning, 2);
    assert_eq!(got[0].sent.value, near.value);
    assert_eq!(got[1].sent.value, after.value);
}

#[test]
fn sixteen_partitions_spread_over_all_shards() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "wide", 16, &[]);
    let producer = producer(&broker.addr, &[]);
    for partition in 0..16 {
        let sent: Vec<Sent> = (0..20)
            .map(|i| Sent::new(&format!("p{partition}"), &format!("v{i}")))
            .collect();
        let offsets = produce(&producer, "wide", Some(partition), &sent).unwrap();
        assert_eq!(offsets.last(), Some(&(partition, 19)));
    }
    for partition in 0..16 {
        let got = consume(&broker.addr, "wide", partition, Offset::Beginning, 20);
        assert!(got.iter().all(|g| g.partition == partition));
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, g)| g.sent.value == Some(format!("v{i}").into_bytes())));
        assert!(broker.data_dir().join(format!("wide-{partition}")).is_dir());
    }
    // Every shard owns some of them (the shard count is the machine's core count).
    let shards = sluice::io::shard::available_cpus().len();
    let owners: std::collections::BTreeSet<sluice::model::ShardId> = (0..16)
        .map(|p| sluice::shard::owner(&sluice::model::TopicPartition::new("wide", p), shards))
        .collect();
    assert_eq!(owners.len(), shards.min(16));
}

#[test]
fn list_offsets_offsets_for_times_and_seek() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "times", 1, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    let sent: Vec<Sent> = (0..50)
        .map(|i| Sent {
            timestamp: Some(1_000_000 + i * 1_000),
            ..Sent::new("k", &format!("v{i}"))
        })
        .collect();
    produce(&producer, "times", Some(0), &sent).unwrap();
    let consumer = consumer(&broker.addr, &[]);
    use rdkafka::consumer::Consumer;
    let (low, high) = consumer
        .fetch_watermarks("times", 0, TIMEOUT)
        .expect("watermarks");
    assert_eq!((low, high), (0, 50));
    let mut query = rdkafka::TopicPartitionList::new();
    query
        .add_partition_offset("times", 0, Offset::Offset(1_000_000 + 20_500))
        .unwrap();
    let found = consumer
        .offsets_for_times(query, TIMEOUT)
        .expect("offsets for times");
    assert_eq!(found.elements()[0].offset(), Offset::Offset(21));
    let mut late = rdkafka::TopicPartitionList::new();
    late.add_partition_offset("times", 0, Offset::Offset(9_000_000))
        .unwrap();
    let found = consumer.offsets_for_times(late, TIMEOUT).unwrap();
    assert_eq!(found.elements()[0].offset(), Offset::End);
    // Seek: read from 40, then from 10.
    let got = consume(&broker.addr, "times", 0, Offset::Offset(40), 10);
    assert_eq!(got.first().map(|g| g.offset), Some(40));
    let got = consume(&broker.addr, "times", 0, Offset::Offset(10), 5);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let got = consume(&broker.addr, "times", 0, Offset::End, 0);
    assert!(got.is_empty());
}

#[test]
fn a_waiting_consumer_gets_records_produced_later() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "later", 2, &[]);
    let consumer = consumer(&broker.addr, &[("fetch.wait.max.ms", "5000")]);
    use rdkafka::consumer::Consumer;
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset("later", 1, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    assert!(consumer
        .poll(std::time::Duration::from_millis(500))
        .is_none());
    let started = std::time::Instant::now();
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    produce(&producer, "later", Some(1), &[Sent::new("k", "late")]).unwrap();
    let got = read_n(&consumer, 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"late"[..]));
    // The long poll answered on the append, not at fetch.wait.max.ms (5 s).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// The codecs of the batches stored for `topic`-0.
fn stored_codecs(broker: &Broker, topic: &str) -> Vec<sluice::model::Codec> {
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let log = dir.join(format!("{:020}.log", 0));
    let bytes = std::fs::read(log).unwrap();
    let mut rest = &bytes[..];
    let mut codecs = Vec::new();
    while !rest.is_empty() {
        let (view, after) = sluice::model::BatchView::validate(rest).unwrap();
        codecs.push(view.codec().unwrap());
        rest = after;
    }
    codecs
}

#[test]
fn a_topic_compression_type_recodes_batches() {
    use sluice::model::Codec;
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "to-zstd", 1, &[("compression.type", "zstd")]);
    create_topic(
        &broker.addr,
        "to-plain",
        1,
        &[("compression.type", "uncompressed")],
    );
    create_topic(&broker.addr, "as-sent", 1, &[]);
    let plain = producer(&broker.addr, &[]);
    let gzip = producer(&broker.addr, &[("compression.type", "gzip")]);
    let sent = records(100, "recode");
    produce(&plain, "to-zstd", Some(0), &sent).unwrap();
    produce(&gzip, "to-plain", Some(0), &sent).unwrap();
    produce(&gzip, "as-sent", Some(0), &sent).unwrap();
    for topic in ["to-zstd", "to-plain", "as-sent"] {
        let got: Vec<Sent> = consume(&broker.addr, topic, 0, Offset::Beginning, 100)
            .into_iter()
            .map(|g| g.sent)
            .collect();
        assert_eq!(got, sent, "{topic}");
    }
    assert!(stored_codecs(&broker, "to-zstd")
        .iter()
        .all(|c| *c == Codec::Zstd));
    assert!(stored_codecs(&broker, "to-plain")
        .iter()
        .all(|c| *c == Codec::None));
    assert!(stored_codecs(&broker, "as-sent")
        .iter()
        .all(|c| *c == Codec::Gzip));
}

#[test]
fn a_new_user_in_a_fresh_directory_with_the_default_data_dir() {
    // No log.dirs: the default ./sluice-data, relative to where serve was started.
    let broker = Broker::start_as_new_user();
    let producer = producer(&broker.addr, &[]);
    let sent = records(20, "new-user");
    // Auto-created on the first produce, as `kcat -P -t greetings` does.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let offsets = loop {
        match produce(&producer, "greetings", Some(0), &sent) {
            Ok(offsets) => break offsets,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("retrying the first produce: {e}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("produce to an auto-created topic: {e}"),
        }
    };
    assert_eq!(offsets.len(), 20);
    // A consumer group (the coordinator's __consumer_offsets lives in the same directory).
    let consumer = consumer(
        &broker.addr,
        &[("group.id", "new-user"), ("auto.offset.reset", "earliest")],
    );
    rdkafka::consumer::Consumer::subscribe(&consumer, &["greetings"]).unwrap();
    let got = read_n(&consumer, offsets.len());
    let values: Vec<_> = got.iter().map(|g| g.sent.value.clone()).collect();
    let expected: Vec<_> = sent[..offsets.len()]
        .iter()
        .map(|s| s.value.clone())
        .collect();
    assert_eq!(values, expected);
    rdkafka::consumer::Consumer::commit_consumer_state(
        &consumer,
        rdkafka::consumer::CommitMode::Sync,
    )
    .unwrap();
    assert!(broker.data_dir().join("greetings-0").is_dir());
    assert!(broker.data_dir().join("__consumer_offsets-0").is_dir());
}
