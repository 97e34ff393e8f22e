//! Topic administration through librdkafka's admin client: create (with configs, validate-only),
//! delete, add partitions, describe and alter configs, delete records.

use crate::kit::{broker, client};
use broker::Broker;
use client::*;
use futures_lite::future::block_on;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

fn topic_config(addr: &str, topic: &str, key: &str) -> Option<String> {
    let results = block_on(
        admin(addr).describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
    )
    .expect("describe_configs");
    let resource = results.into_iter().next().unwrap().expect("described");
    assert_eq!(
        resource.specifier,
        OwnedResourceSpecifier::Topic(topic.into())
    );
    resource.get(key).and_then(|entry| entry.value.clone())
}

fn create_error(
    addr: &str,
    topic: NewTopic<'_>,
    options: &AdminOptions,
) -> Option<RDKafkaErrorCode> {
    let results = block_on(admin(addr).create_topics(&[topic], options)).expect("create_topics");
    results.into_iter().next().unwrap().err().map(|(_, e)| e)
}

#[test]
fn create_validate_describe_alter_and_delete_topics() {
    let broker = Broker::start(&["log.retention.ms=3600000"]);
    let addr = &broker.addr;

    // validate-only creates nothing.
    let dry = NewTopic::new("dry", 3, TopicReplication::Fixed(1));
    assert_eq!(
        create_error(addr, dry, &AdminOptions::new().validate_only(true)),
        None
    );
    let metadata = consumer(addr, &[]).fetch_metadata(None, TIMEOUT).unwrap();
    assert!(metadata.topics().iter().all(|t| t.name() != "dry"));

    // Refusals carry the Kafka error.
    let bad_name = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    assert_eq!(
        create_error(addr, bad_name, &AdminOptions::new()),
        Some(RDKafkaErrorCode::InvalidTopic)
    );
    let bad_config =
        NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    assert_eq!(
        create_error(addr, bad_config, &AdminOptions::new()),
        Some(RDKafkaErrorCode::InvalidConfig)
    );
    // More replicas than brokers (one, or three in the cluster run).
    let factor = if broker::cluster_mode() { 4 } else { 3 };
    let replicated = NewTopic::new("rf3", 1, TopicReplication::Fixed(factor));
    assert_eq!(
        create_error(addr, replicated, &AdminOptions::new()),
        Some(RDKafkaErrorCode::InvalidReplicationFactor)
    );

    create_topic(
        addr,
        "cfg",
        2,
        &[("retention.ms", "60000"), ("cleanup.policy", "compact")],
    );
    let again = NewTopic::new("cfg", 2, TopicReplication::Fixed(1));
    assert_eq!(
        create_error(addr, again, &AdminOptions::new()),
        Some(RDKafkaErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        topic_config(addr, "cfg", "retention.ms").as_deref(),
        Some("60000")
    );
    assert_eq!(
        topic_config(addr, "cfg", "cleanup.policy").as_deref(),
        Some("compact")
    );
    // Not set on the topic: the broker's value.
    create_topic(addr, "plain", 1, &[]);
    assert_eq!(
        topic_config(addr, "plain", "retention.ms").as_deref(),
        Some("3600000")
    );

    // AlterConfigs replaces the overrides.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "120000");
    let results = block_on(admin(addr).alter_configs(&[alter], &AdminOptions::new())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        topic_config(addr, "cfg", "retention.ms").as_deref(),
        Some("120000")
    );
    assert_eq!(
        topic_config(addr, "cfg", "cleanup.policy").as_deref(),
        Some("delete")
    );
    let bad = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("segment.bytes", "-1");
    // rust-rdkafka 0.37 reports every AlterConfigs resource as Ok (it never reads the resource's
    // error), so the refusal shows as the value not changing.
    block_on(admin(addr).alter_configs(&[bad], &AdminOptions::new())).unwrap();
    assert_eq!(
        topic_config(addr, "cfg", "segment.bytes").as_deref(),
        Some("1073741824")
    );
    assert_eq!(
        topic_config(addr, "cfg", "retention.ms").as_deref(),
        Some("120000")
    );

    // Delete: the topic and its data go.
    let producer = producer(addr, &[]);
    produce(&producer, "cfg", Some(1), &[Sent::new("k", "v")]).unwrap();
    assert!(broker.data_dir().join("cfg-1").is_dir());
    let results = block_on(admin(addr).delete_topics(&["cfg"], &AdminOptions::new())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(!broker.data_dir().join("cfg-1").exists());
    let results = block_on(admin(addr).delete_topics(&["cfg"], &AdminOptions::new())).unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
}

#[test]
fn add_partitions_and_delete_records() {
    let broker = Broker::start(&[]);
    let addr = &broker.addr;
    create_topic(addr, "grow", 2, &[]);
    create_partitions(addr, "grow", 5);
    let producer = producer(addr, &[("linger.ms", "0")]);
    let sent: Vec<Sent> = (0..10).map(|i| Sent::new("k", &format!("v{i}"))).collect();
    produce(&producer, "grow", Some(4), &sent).unwrap();
    let got = consume(addr, "grow", 4, Offset::Beginning, 10);
    assert_eq!(got.len(), 10);

    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset("grow", 4, Offset::Offset(6))
        .unwrap();
    let results = block_on(admin(addr).delete_records(&list, &AdminOptions::new())).unwrap();
    assert_eq!(results.elements()[0].error(), Ok(()));
    let (low, high) = consumer(addr, &[])
        .fetch_watermarks("grow", 4, TIMEOUT)
        .unwrap();
    assert_eq!((low, high), (6, 10));
    let got = consume(addr, "grow", 4, Offset::Beginning, 4);
    assert_eq!(got[0].offset, 6);
}

#[test]
fn a_topic_created_again_after_deletion_starts_empty() {
    let mut broker = Broker::start(&[]);
    let addr = broker.addr.clone();
    let create = |addr: &str| {
        let topic = NewTopic::new("again", 1, TopicReplication::Fixed(1));
        let results = block_on(admin(addr).create_topics(&[topic], &AdminOptions::new())).unwrap();
        assert!(results[0].is_ok(), "{results:?}");
    };
    create(&addr);
    let producer = producer(&addr, &[]);
    let old: Vec<Sent> = (0..500)
        .map(|i| Sent::new("k", &format!("old-{i}")))
        .collect();
    produce(&producer, "again", Some(0), &old).unwrap();
    let results = block_on(admin(&addr).delete_topics(&["again"], &AdminOptions::new())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(!broker.data_dir().join("again-0").exists());

    // The deleted data went with its files (unwritten pages dropped, not synced first): the new
    // topic of the same name holds only its own records, before and after a restart.
    create(&addr);
    let new = [Sent::new("k", "new-0"), Sent::new("k", "new-1")];
    let acked = produce(&producer, "again", Some(0), &new).unwrap();
    assert_eq!(acked, vec![(0, 0), (0, 1)]);
    drop(producer);
    let read = |addr: &str| {
        let got = consume(addr, "again", 0, Offset::Beginning, 2);
        let values: Vec<_> = got.iter().map(|g| g.sent.value.clone().unwrap()).collect();
        assert_eq!(values, vec![b"new-0".to_vec(), b"new-1".to_vec()]);
        assert_eq!(got[0].offset, 0);
    };
    read(&addr);
    broker.stop();
    broker.restart();
    read(&broker.addr.clone());
}
