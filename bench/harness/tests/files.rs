//! The workload and driver files: OMB's as OMB writes them, and the ones shipped in
//! bench/workloads.

use sluice_bench::workload::{DriverFile, KeyDistributor, Workload, DEFAULT_DRIVER};

/// An OMB workload with everything OMB may put in one: its license header, fields this harness
/// reads and fields it does not.
const OMB_WORKLOAD: &str = r#"#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
#

name: 500k rate 4 producers and 4 consumers on 1 topic / 100 partition

topics: 1
partitionsPerTopic: 100
keyDistributor: "KEY_ROUND_ROBIN"

messageSize: 1024
useRandomizedPayloads: true
randomBytesRatio: 0.5
randomizedPayloadPoolSize: 1000

subscriptionsPerTopic: 1
consumerPerSubscription: 4
producersPerTopic: 4
messageRateReceivedForSubscription: 100

# Discover max-sustainable rate
producerRate: 0
producerStartRate: 20000

consumerBacklogSizeGB: 2
testDurationMinutes: 5
warmupDurationMinutes: 2
"#;

const OMB_DRIVER: &str = r#"
name: Kafka
driverClass: io.openmessaging.benchmark.driver.kafka.KafkaBenchmarkDriver

# Kafka client-specific configuration
replicationFactor: 3
reset: true

topicConfig: |
  min.insync.replicas=2

commonConfig: |
  bootstrap.servers=localhost:9092
  default.api.timeout.ms=600000

producerConfig: |
  acks=all
  linger.ms=1
  batch.size=1048576
  key.serializer=org.apache.kafka.common.serialization.StringSerializer

consumerConfig: |
  auto.offset.reset=earliest
  enable.auto.commit=false
  max.partition.fetch.bytes=10485760
  fetch.max.wait.ms=50
"#;

#[test]
fn omb_files_load_as_they_are() {
    let w = Workload::parse(OMB_WORKLOAD).unwrap();
    assert_eq!(w.partitions_per_topic, 100);
    assert_eq!(w.key_distributor, KeyDistributor::KeyRoundRobin);
    assert!(w.use_randomized_payloads && w.random_bytes_ratio == 0.5);
    assert_eq!((w.producers_per_topic, w.consumer_per_subscription), (4, 4));
    assert_eq!(w.producer_rate, 0.0);
    assert_eq!(w.producer_start_rate, 20_000.0);
    assert_eq!(w.consumer_backlog_gb, 2.0);
    assert_eq!(
        (w.test_duration_minutes, w.warmup_duration_minutes),
        (5.0, 2.0)
    );
    let small = w.scaled(0.01);
    assert_eq!(small.producer_start_rate, 200.0);
    assert_eq!(small.consumer_backlog_gb, 0.02);
    assert!((small.test_duration_minutes * 60.0 - 3.0).abs() < 1e-9);
    assert_eq!(small.partitions_per_topic, 100, "the shape stays");

    let d = DriverFile::parse(OMB_DRIVER).unwrap();
    assert_eq!(d.replication_factor, 3);
    assert_eq!(
        d.topic_settings(),
        vec![("min.insync.replicas".into(), "2".into())]
    );
    let producer = d.producer_settings();
    let get = |settings: &[(String, String)], key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(&producer, "batch.size").as_deref(), Some("1048576"));
    assert_eq!(
        get(&producer, "bootstrap.servers").as_deref(),
        Some("localhost:9092")
    );
    // Java-only settings are left out; Java names librdkafka spells otherwise are translated.
    assert_eq!(get(&producer, "key.serializer"), None);
    assert_eq!(get(&producer, "default.api.timeout.ms"), None);
    let consumer = d.consumer_settings();
    assert_eq!(get(&consumer, "fetch.wait.max.ms").as_deref(), Some("50"));
    assert_eq!(get(&consumer, "fetch.max.wait.ms"), None);
    // librdkafka takes every setting that is left.
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in consumer.iter().chain(&producer) {
        config.set(k, v);
    }
    config.set("group.id", "check");
    config
        .create::<rdkafka::consumer::BaseConsumer>()
        .expect("librdkafka accepts the translated settings");
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let no_topics = OMB_WORKLOAD.replace("topics: 1", "topics: 0");
    assert!(Workload::parse(&no_topics).unwrap_err().contains("topics"));
    let missing = OMB_WORKLOAD.replace("messageSize: 1024\n", "");
    assert!(Workload::parse(&missing)
        .unwrap_err()
        .contains("messageSize"));
    let bad_ratio = OMB_WORKLOAD.replace("randomBytesRatio: 0.5", "randomBytesRatio: 2");
    assert!(Workload::parse(&bad_ratio).is_err());
    assert!(DriverFile::parse("replicationFactor: 0").is_err());
    assert!(DriverFile::parse("producerConfig: |\n  not a property\n").is_err());
}

#[test]
fn shipped_workloads_and_driver_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
    let mut workloads = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("driver-") {
            DriverFile::load(&path).unwrap();
        } else if name.ends_with(".yaml") {
            let w = Workload::load(&path).unwrap();
            assert!(w.producer_rate > 0.0 && w.message_size > 0, "{name}");
            workloads += 1;
        }
    }
    assert!(workloads >= 12, "{workloads}");
    DriverFile::parse(DEFAULT_DRIVER).unwrap();
}
