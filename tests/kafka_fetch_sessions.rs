//! Incremental fetch sessions (KIP-227) on a raw socket: librdkafka does not use them, the Java
//! client and franz-go do.

#[path = "kafka/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "kafka/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "kafka/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::io::Write;

use broker::Broker;
use bytes::BytesMut;
use client::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use raw::{connect, frame, read_response};

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
