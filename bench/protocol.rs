//! Criterion benches of the bounded walk (`protocol::bounded`) against the crate's decoding of
//! the same request, which every request pays already: what the walk adds to the hot path.
//! Run: `cargo bench --bench protocol`.
//!
//! - `produce-16`: Produce v9 of 16 partitions, 64 KiB of records each (the walk skips the
//!   record bytes by their length; the crate slices them).
//! - `fetch-16`: Fetch v12 of 16 partitions, a consumer's request.
//! - `metadata-100`: Metadata v12 naming 100 topics.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice::protocol::bounded::{self, Limits};

/// A whole frame (header and body, no length prefix).
fn frame<M: Encodable>(api_key: ApiKey, version: i16, message: &M) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("bench-client"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    message.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn produce() -> Bytes {
    let records = Bytes::from(vec![7u8; 64 << 10]);
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench-topic"));
    topic.partition_data = (0..16)
        .map(|index| {
            let mut partition = PartitionProduceData::default();
            partition.index = index;
            partition.records = Some(records.clone());
            partition
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    frame(ApiKey::Produce, 9, &request)
}

fn fetch() -> Bytes {
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str("bench-topic"));
    topic.partitions = (0..16)
        .map(|index| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.fetch_offset = 1_000_000;
            partition.partition_max_bytes = 1 << 20;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    request.topics = vec![topic];
    frame(ApiKey::Fetch, 12, &request)
}

fn metadata() -> Bytes {
    let mut request = MetadataRequest::default();
    request.topics = Some(
        (0..100)
            .map(|i| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(TopicName(StrBytes::from_string(format!("topic-{i}"))));
                topic
            })
            .collect(),
    );
    frame(ApiKey::Metadata, 12, &request)
}

fn walk_and_decode(c: &mut Criterion) {
    let limits = Limits {
        decoded_bytes_max: 64 << 20,
    };
    let cases: [(&str, ApiKey, i16, Bytes); 3] = [
        ("produce-16", ApiKey::Produce, 9, produce()),
        ("fetch-16", ApiKey::Fetch, 12, fetch()),
        ("metadata-100", ApiKey::Metadata, 12, metadata()),
    ];
    for (name, api_key, version, frame) in cases {
        let mut group = c.benchmark_group(name);
        group.bench_function("walk", |b| {
            b.iter(|| bounded::walk_request(api_key as i16, version, &frame, limits).unwrap())
        });
        let header_version = api_key.request_header_version(version);
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = frame.clone();
                RequestHeader::decode(&mut buf, header_version).unwrap();
                match api_key {
                    ApiKey::Produce => drop(ProduceRequest::decode(&mut buf, version).unwrap()),
                    ApiKey::Fetch => drop(FetchRequest::decode(&mut buf, version).unwrap()),
                    _ => drop(MetadataRequest::decode(&mut buf, version).unwrap()),
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, walk_and_decode);
criterion_main!(benches);
