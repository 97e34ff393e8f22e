//! What librdkafka does not exercise, on a raw socket: incremental fetch sessions (KIP-227, used by
//! the Java client and franz-go), ListOffsets' max timestamp (KIP-734), DescribeCluster and
//! IncrementalAlterConfigs.

use crate::kit::{broker, client, raw};
use std::io::Write;

use broker::Broker;
use bytes::BytesMut;
use client::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use raw::{call, connect, frame, read_response};

const VERSION: i16 = 12;

fn fetch(
    stream: &mut std::net::TcpStream,
    correlation_id: i32,
    session_id: i32,
    epoch: i32,
    partitions: &[(i32, i64)],
) -> FetchResponse {
    let mut request = FetchRequest::default();
    request.max_wait_ms = 0;
    request.min_bytes = 0;
    request.max_bytes = 1 << 20;
    request.session_id = session_id;
    request.session_epoch = epoch;
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    if !partitions.is_empty() {
        let mut topic = FetchTopic::default();
        topic.topic = TopicName(StrBytes::from_static_str("sessions"));
        topic.partitions = partitions
            .iter()
            .map(|&(partition, offset)| {
                let mut p = FetchPartition::default();
                p.partition = partition;
                p.fetch_offset = offset;
                p.partition_max_bytes = 1 << 20;
                p.log_start_offset = -1;
                p
            })
            .collect();
        request.topics = vec![topic];
    }
    let mut body = BytesMut::new();
    request.encode(&mut body, VERSION).unwrap();
    stream
        .write_all(&frame(1, VERSION, correlation_id, &body))
        .unwrap();
    let mut response = read_response(stream).expect("a fetch answer");
    bytes::Buf::advance(&mut response, 5); // correlation id and the header's tagged fields
    FetchResponse::decode(&mut response, VERSION).unwrap()
}

fn partitions_in(response: &FetchResponse) -> Vec<(i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |r| r.len())))
        .collect()
}

#[test]
fn an_incremental_session_answers_only_what_changed() {
    if broker::single_node_only("raw Fetch to node 1, which may not lead the partitions") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "sessions", 3, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    produce(&producer, "sessions", Some(0), &[Sent::new("k", "first")]).unwrap();

    let mut s = connect(&broker);
    // Epoch 0: a new session, a full answer.
    let full = fetch(&mut s, 1, 0, 0, &[(0, 0), (1, 0), (2, 0)]);
    assert_eq!(full.error_code, 0);
    assert_ne!(full.session_id, 0, "a session was created");
    let id = full.session_id;
    let got = partitions_in(&full);
    assert_eq!(got.len(), 3);
    assert!(got[0].1 > 0, "partition 0 has the record");

    // Epoch 1, the client moved partition 0 past its record: nothing has changed anywhere.
    let quiet = fetch(&mut s, 2, id, 1, &[(0, 1)]);
    assert_eq!(quiet.error_code, 0);
    assert_eq!(quiet.session_id, id);
    assert_eq!(partitions_in(&quiet), vec![]);

    // A record on partition 2: only partition 2 comes back.
    produce(&producer, "sessions", Some(2), &[Sent::new("k", "second")]).unwrap();
    let news = fetch(&mut s, 3, id, 2, &[]);
    let got = partitions_in(&news);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 2);
    assert!(got[0].1 > 0);

    // A stale epoch and an unknown session are refused with their errors.
    assert_eq!(
        fetch(&mut s, 4, id, 2, &[]).error_code,
        71,
        "INVALID_FETCH_SESSION_EPOCH"
    );
    assert_eq!(
        fetch(&mut s, 5, id ^ 0x10000, 1, &[]).error_code,
        70,
        "FETCH_SESSION_ID_NOT_FOUND"
    );
    // The final epoch closes the session; it is gone afterwards.
    assert_eq!(fetch(&mut s, 6, id, -1, &[(0, 1)]).session_id, 0);
    assert_eq!(fetch(&mut s, 7, id, 3, &[]).error_code, 70);
}

#[test]
fn list_offsets_max_timestamp() {
    if broker::single_node_only("raw ListOffsets to node 1, which may not lead the partition") {
        return;
    }
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "maxts", 1, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "5")]);
    // The largest timestamp sits in the middle of a batch.
    let stamps = [5_000, 9_000, 7_000, 20_000, 8_000, 6_000];
    let sent: Vec<Sent> = stamps
        .iter()
        .map(|&t| Sent {
            timestamp: Some(t),
            ..Sent::new("k", &format!("at {t}"))
        })
        .collect();
    produce(&producer, "maxts", Some(0), &sent).unwrap();
    let mut s = connect(&broker);
    let ask = |s: &mut std::net::TcpStream, version: i16, timestamp: i64| {
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = timestamp;
        partition.current_leader_epoch = -1;
        let mut topic = ListOffsetsTopic::default();
        topic.name = TopicName(StrBytes::from_static_str("maxts"));
        topic.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = kafka_protocol::messages::BrokerId(-1);
        request.topics = vec![topic];
        let response: ListOffsetsResponse = call(s, ApiKey::ListOffsets, version, 1, &request);
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(ask(&mut s, 7, -3), (0, 3, 20_000));
    assert_eq!(
        ask(&mut s, 7, 8_500),
        (0, 1, 9_000),
        "offsets for times still works"
    );
    assert_eq!(ask(&mut s, 6, -3).0, 42, "INVALID_REQUEST before v7");
}

#[test]
fn describe_cluster_and_incremental_alter_configs() {
    if broker::single_node_only("DescribeCluster answers one broker") {
        return;
    }
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ApiKey, DescribeClusterRequest, DescribeClusterResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    };
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "inc", 1, &[("retention.ms", "1000")]);
    let mut s = connect(&broker);
    let cluster: DescribeClusterResponse = call(
        &mut s,
        ApiKey::DescribeCluster,
        0,
        1,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(
        format!(
            "{}:{}",
            cluster.brokers[0].host.as_str(),
            cluster.brokers[0].port
        ),
        broker.addr
    );
    // v1, endpoint type 2 (KIP-919, controllers): a broker refuses it as Kafka's do.
    let mut controllers = DescribeClusterRequest::default();
    controllers.endpoint_type = 2;
    let refused: DescribeClusterResponse =
        call(&mut s, ApiKey::DescribeCluster, 1, 2, &controllers);
    assert_eq!(refused.error_code, 119, "UNSUPPORTED_ENDPOINT_TYPE");
    assert!(refused.brokers.is_empty());
    let alter = |s: &mut std::net::TcpStream,
                 resource_type: i8,
                 name: &str,
                 ops: &[(&str, i8, Option<&str>)]| {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = resource_type;
        resource.resource_name = StrBytes::from_string(name.to_string());
        resource.configs = ops
            .iter()
            .map(|(key, op, value)| {
                let mut c = AlterableConfig::default();
                c.name = StrBytes::from_string(key.to_string());
                c.config_operation = *op;
                c.value = value.map(|v| StrBytes::from_string(v.to_string()));
                c
            })
            .collect();
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let response: IncrementalAlterConfigsResponse =
            call(s, ApiKey::IncrementalAlterConfigs, 1, 2, &request);
        response.responses[0].error_code
    };
    // SET one key, APPEND to a list, DELETE another: the others stay.
    assert_eq!(
        alter(
            &mut s,
            2,
            "inc",
            &[
                ("segment.ms", 0, Some("60000")),
                ("cleanup.policy", 2, Some("compact"))
            ]
        ),
        0
    );
    assert_eq!(alter(&mut s, 2, "inc", &[("retention.ms", 1, None)]), 0);
    let configs = std::fs::read_to_string(
        broker
            .data_dir()
            .join("__cluster_metadata")
            .join("topics.toml"),
    )
    .unwrap();
    assert!(configs.contains("\"segment.ms\" = \"60000\""), "{configs}");
    assert!(
        configs.contains("\"cleanup.policy\" = \"delete,compact\""),
        "{configs}"
    );
    assert!(!configs.contains("retention.ms"), "{configs}");
    // A bad value is refused (INVALID_CONFIG) and changes nothing; an unknown topic too.
    assert_eq!(
        alter(&mut s, 2, "inc", &[("segment.ms", 0, Some("never"))]),
        40
    );
    assert_eq!(alter(&mut s, 2, "nope", &[("segment.ms", 0, Some("1"))]), 3);
    // Broker configs: the runtime ones change (and reach the topics that take their default),
    // the others need a restart.
    create_topic(&broker.addr, "follows-broker", 1, &[]);
    assert_eq!(
        alter(&mut s, 4, "0", &[("log.retention.ms", 0, Some("7200000"))]),
        0
    );
    assert_eq!(
        alter(
            &mut s,
            4,
            "0",
            &[("listeners", 0, Some("PLAINTEXT://127.0.0.1:1"))]
        ),
        40
    );
    assert_eq!(
        alter(&mut s, 4, "7", &[("log.retention.ms", 0, Some("1"))]),
        42,
        "another broker"
    );
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let described = futures_lite::future::block_on(admin(&broker.addr).describe_configs(
        &[
            ResourceSpecifier::Topic("follows-broker"),
            ResourceSpecifier::Broker(0),
        ],
        &AdminOptions::new(),
    ))
    .unwrap();
    let topic = described[0].as_ref().unwrap();
    assert_eq!(
        topic.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("7200000")
    );
    let node = described[1].as_ref().unwrap();
    let entry = node.get("log.retention.ms").unwrap();
    assert_eq!(entry.value.as_deref(), Some("7200000"));
    assert_eq!(entry.source, rdkafka::admin::ConfigSource::DynamicBroker);
}

#[test]
fn offset_for_leader_epoch() {
    if broker::single_node_only(
        "raw OffsetForLeaderEpoch to node 1, which may not lead the partition",
    ) {
        return;
    }
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    };
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "epochs", 1, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    produce(
        &producer,
        "epochs",
        Some(0),
        &[Sent::new("k", "a"), Sent::new("k", "b")],
    )
    .unwrap();
    let mut s = connect(&broker);
    let ask = |s: &mut std::net::TcpStream, partition: i32, current: i32, epoch: i32| {
        let mut p = OffsetForLeaderPartition::default();
        p.partition = partition;
        p.current_leader_epoch = current;
        p.leader_epoch = epoch;
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = TopicName(StrBytes::from_static_str("epochs"));
        topic.partitions = vec![p];
        let mut request = OffsetForLeaderEpochRequest::default();
        request.replica_id = kafka_protocol::messages::BrokerId(-1);
        request.topics = vec![topic];
        let response: OffsetForLeaderEpochResponse =
            call(s, ApiKey::OffsetForLeaderEpoch, 4, 1, &request);
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(ask(&mut s, 0, 0, 0), (0, 0, 2));
    assert_eq!(ask(&mut s, 0, -1, 0), (0, 0, 2));
    assert_eq!(ask(&mut s, 0, 0, 5), (0, -1, -1), "an epoch that never was");
    assert_eq!(ask(&mut s, 0, 3, 0).0, 75, "UNKNOWN_LEADER_EPOCH");
    assert_eq!(ask(&mut s, 9, 0, 0).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn an_lz4_batch_passes_through_untouched() {
    if broker::single_node_only("raw Produce to node 1, which may not lead the partition") {
        return;
    }
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
    use sluice::model::records::{BatchBuilder, Record};
    use sluice::model::{Codec, Offset as LogOffset, TimestampMs};
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "lz4", 1, &[]);
    let records: Vec<Record> = (0..50)
        .map(|i| Record {
            offset: LogOffset(i),
            timestamp: TimestampMs(1_000 + i),
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("lz4 value {i} {}", "z".repeat(40)))),
            headers: Vec::new(),
        })
        .collect();
    let batch = BatchBuilder {
        codec: Codec::Lz4,
        ..BatchBuilder::default()
    }
    .build(&records);
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(batch.clone());
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("lz4"));
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic];
    let mut s = connect(&broker);
    let response: ProduceResponse = call(&mut s, ApiKey::Produce, 9, 1, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    // Stored byte for byte, but for the base offset and leader epoch the broker writes.
    let stored = std::fs::read(
        broker
            .data_dir()
            .join("lz4-0")
            .join(format!("{:020}.log", 0)),
    )
    .unwrap();
    assert_eq!(stored.len(), batch.len());
    assert_eq!(
        &stored[21..],
        &batch[21..],
        "from the magic byte on, nothing changed"
    );
    let got = consume(&broker.addr, "lz4", 0, rdkafka::Offset::Beginning, 50);
    for (g, r) in got.iter().zip(&records) {
        assert_eq!(g.sent.value.as_deref(), r.value.as_deref());
    }
}
