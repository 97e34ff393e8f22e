//! Regressions for what librdkafka's own test suite found (docs/COMPATIBILITY.md), each with
//! the number of the librdkafka test that found it.

use crate::kit::{broker, client, raw};
use std::time::Duration;

use broker::Broker;
use client::*;
use futures_lite::future::block_on;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

/// 0011: a compacted topic refuses records without a key; the batch fails whole, the keyless
/// records with INVALID_RECORD and the others with "invalid different record".
#[test]
fn a_compacted_topic_refuses_keyless_records_naming_them() {
    let broker = Broker::start(&[]);
    create_topic(
        &broker.addr,
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    );
    let producer = producer(&broker.addr, &[("linger.ms", "200"), ("retries", "0")]);
    let futures: Vec<_> = (0..10)
        .map(|i| {
            let value = format!("value {i}");
            let key = format!("key {i}");
            let mut record = FutureRecord::to("compacted").partition(0).payload(&value);
            if i % 5 != 0 {
                record = record.key(&key);
            }
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let codes: Vec<Option<RDKafkaErrorCode>> = futures
        .into_iter()
        .map(|f| match block_on(f).expect("a delivery report") {
            Ok(_) => None,
            Err((KafkaError::MessageProduction(code), _)) => Some(code),
            Err((e, _)) => panic!("unexpected error {e}"),
        })
        .collect();
    for (i, code) in codes.iter().enumerate() {
        let expected = if i % 5 == 0 {
            RDKafkaErrorCode::InvalidRecord
        } else {
            RDKafkaErrorCode::InvalidDifferentRecord
        };
        assert_eq!(*code, Some(expected), "record {i}: {codes:?}");
    }
    // Keyed records alone go in, and nothing of the refused batch was written.
    let keyed = [Sent::new("k", "kept")];
    assert_eq!(
        produce(&producer, "compacted", Some(0), &keyed).unwrap(),
        vec![(0, 0)]
    );
    let got = consume(&broker.addr, "compacted", 0, Offset::Beginning, 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"kept"[..]));
}

/// 0082: a fetch answers within its `max_bytes` (its first batch aside, KIP-74), however large
/// the partition limit: librdkafka drops a response larger than it asked for.
#[test]
fn a_fetch_stays_within_its_max_bytes_whatever_the_partition_limit() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "big", 1, &[]);
    // 8 MB in 100 KB records, batches of at most 1 MB.
    let producer = producer(
        &broker.addr,
        &[("linger.ms", "50"), ("batch.size", "1000000")],
    );
    let value = "x".repeat(100_000);
    let records: Vec<Sent> = (0..80)
        .map(|i| Sent::new(&format!("{i}"), &value))
        .collect();
    produce(&producer, "big", Some(0), &records).unwrap();
    let consumer: BaseConsumer = consumer(
        &broker.addr,
        &[
            ("fetch.max.bytes", "1000000"),
            ("receive.message.max.bytes", "1000512"),
            ("max.partition.fetch.bytes", "20000000"),
        ],
    );
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("big", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut count = 0;
    while count < 80 {
        assert!(std::time::Instant::now() < deadline, "read {count} of 80");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(message.payload().map(<[u8]>::len), Some(100_000));
                count += 1;
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
}

fn described(
    addr: &str,
    resource: rdkafka::admin::ResourceSpecifier<'_>,
) -> Vec<rdkafka::admin::ConfigEntry> {
    let results =
        block_on(admin(addr).describe_configs(&[resource], &rdkafka::admin::AdminOptions::new()))
            .expect("describe_configs");
    results
        .into_iter()
        .next()
        .unwrap()
        .expect("described")
        .entries
}

/// A described config's value and source (rdkafka's ConfigSource, by name).
fn entry(entries: &[rdkafka::admin::ConfigEntry], name: &str) -> (Option<String>, String) {
    let found = entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is not described"));
    (found.value.clone(), format!("{:?}", found.source))
}

/// 0077, 0081: every Kafka topic config and broker config is accepted, stored and described
/// with its source, whether Sluice uses it or not (file.delete.delay.ms, max.compaction.lag.ms,
/// sasl.kerberos.min.time.before.relogin, background.threads).
#[test]
fn kafka_configs_sluice_does_not_use_are_accepted_stored_and_described() {
    if broker::single_node_only("broker 0's configs (the cluster's nodes are 1 to 3)") {
        return;
    }
    use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
    let broker = Broker::start(&["num.network.threads=5", "zookeeper.connect=zk:2181"]);
    let addr = &broker.addr;
    create_topic(addr, "cfg", 1, &[("file.delete.delay.ms", "1000")]);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("cfg"))
        .set("file.delete.delay.ms", "1000")
        .set("max.compaction.lag.ms", "3600000")
        .set("compression.type", "gzip");
    block_on(admin(addr).alter_configs(&[alter], &AdminOptions::new())).unwrap();
    let topic = described(addr, ResourceSpecifier::Topic("cfg"));
    let dynamic = || "DynamicTopic".to_string();
    let lag = entry(&topic, "max.compaction.lag.ms");
    assert_eq!(lag, (Some("3600000".into()), dynamic()));
    assert_eq!(
        entry(&topic, "file.delete.delay.ms"),
        (Some("1000".into()), dynamic())
    );
    assert_eq!(entry(&topic, "segment.jitter.ms").1, "Default");
    assert_eq!(topic.len(), 36, "every Kafka 3.9 topic config");

    let node = ResourceSpecifier::Broker(0);
    let alter = AlterConfig::new(node)
        .set("sasl.kerberos.min.time.before.relogin", "58000")
        .set("background.threads", "9");
    block_on(admin(addr).alter_configs(&[alter], &AdminOptions::new())).unwrap();
    let brokers = described(addr, ResourceSpecifier::Broker(0));
    assert_eq!(
        entry(&brokers, "sasl.kerberos.min.time.before.relogin"),
        (Some("58000".into()), "DynamicBroker".into())
    );
    assert_eq!(
        entry(&brokers, "num.network.threads"),
        (Some("5".into()), "StaticBroker".into())
    );
    assert_eq!(
        entry(&brokers, "num.replica.fetchers"),
        (Some("1".into()), "Default".into())
    );
    // A name Kafka does not know is still refused.
    let unknown = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("dummy.doesntexist", "1");
    block_on(admin(addr).alter_configs(&[unknown], &AdminOptions::new())).unwrap();
    assert!(described(addr, ResourceSpecifier::Topic("cfg"))
        .iter()
        .all(|e| e.name != "dummy.doesntexist"));
    // And all of it survives a restart.
    let mut broker = broker;
    broker.stop();
    broker.restart();
    let topic = described(&broker.addr, ResourceSpecifier::Topic("cfg"));
    assert_eq!(
        entry(&topic, "max.compaction.lag.ms").0.as_deref(),
        Some("3600000")
    );
    let brokers = described(&broker.addr, ResourceSpecifier::Broker(0));
    let relogin = entry(&brokers, "sasl.kerberos.min.time.before.relogin");
    assert_eq!(relogin.0.as_deref(), Some("58000"));
}

/// 0081: asked for them, Metadata, DescribeCluster and DescribeGroups list every operation (no
/// authorizer: Kafka's `AclEntry.supportedOperations` for the resource type).
#[test]
fn authorized_operations_are_every_operation_when_asked() {
    use kafka_protocol::messages::{
        ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeGroupsRequest,
        DescribeGroupsResponse, GroupId, MetadataRequest, MetadataResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "ops", 1, &[]);
    let mut s = raw::connect(&broker);
    // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS (codes 3-8, 10, 11).
    let topic_ops = 0b1101_1111_1000;
    // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE.
    let cluster_ops = 0b1_1111_1010_0000;
    let mut metadata = MetadataRequest::default();
    metadata.topics = None;
    metadata.include_cluster_authorized_operations = true;
    metadata.include_topic_authorized_operations = true;
    // In a cluster the topic reaches node 1's metadata a moment after the controller made it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (answer, ops) = loop {
        let answer: MetadataResponse = raw::call(&mut s, ApiKey::Metadata, 10, 1, &metadata);
        let ops = answer
            .topics
            .iter()
            .position(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "ops"));
        if let Some(ops) = ops {
            break (answer, ops);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic ops never listed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(answer.cluster_authorized_operations, cluster_ops);
    assert_eq!(answer.topics[ops].topic_authorized_operations, topic_ops);
    metadata.include_topic_authorized_operations = false;
    let answer: MetadataResponse = raw::call(&mut s, ApiKey::Metadata, 10, 2, &metadata);
    assert!(answer
        .topics
        .iter()
        .all(|t| t.topic_authorized_operations == i32::MIN));

    let mut cluster = DescribeClusterRequest::default();
    cluster.include_cluster_authorized_operations = true;
    let answer: DescribeClusterResponse =
        raw::call(&mut s, ApiKey::DescribeCluster, 0, 3, &cluster);
    assert_eq!(answer.cluster_authorized_operations, cluster_ops);

    let mut groups = DescribeGroupsRequest::default();
    groups.groups = vec![GroupId(StrBytes::from_static_str("nobody"))];
    groups.include_authorized_operations = true;
    let answer: DescribeGroupsResponse = raw::call(&mut s, ApiKey::DescribeGroups, 5, 4, &groups);
    // READ DESCRIBE DELETE.
    assert_eq!(answer.groups[0].authorized_operations, 0b1_0100_1000);
}
