//! Garbage, truncated and oversized frames, unknown APIs and corrupt batches on raw sockets: the
//! offending connection gets a Kafka error or is closed; every other client keeps working.

use crate::kit::{broker, client, raw};
use std::io::{Read, Write};
use std::net::TcpStream;

use broker::Broker;
use bytes::{Bytes, BytesMut};
use client::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsResponse, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use raw::{connect, frame, read_response};
use rdkafka::Offset;
use sluice::model::records::{BatchBuilder, Record};
use sluice::model::{Offset as LogOffset, TimestampMs};

fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the connection closed, got {other:?}"),
    }
}

fn produce_body(topic: &str, records: Bytes) -> Vec<u8> {
    produce_body_to(topic, 0, 1, records)
}

fn produce_body_to(topic: &str, index: i32, acks: i16, records: Bytes) -> Vec<u8> {
    let mut partition = PartitionProduceData::default();
    partition.index = index;
    partition.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.into()));
    topic_data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5000;
    request.topic_data = vec![topic_data];
    let mut buf = BytesMut::new();
    request.encode(&mut buf, 8).unwrap();
    buf.to_vec()
}

fn batch(value: &str) -> Bytes {
    BatchBuilder::default().build(&[Record {
        offset: LogOffset(0),
        timestamp: TimestampMs(1),
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
    }])
}

fn produce_error(stream: &mut TcpStream, correlation_id: i32, records: Bytes) -> i16 {
    stream
        .write_all(&frame(0, 8, correlation_id, &produce_body("raw", records)))
        .unwrap();
    let mut response = read_response(stream).expect("a produce response");
    let got = i32::from_be_bytes(response[..4].try_into().unwrap());
    assert_eq!(got, correlation_id);
    bytes::Buf::advance(&mut response, 4);
    let decoded = ProduceResponse::decode(&mut response, 8).unwrap();
    decoded.responses[0].partition_responses[0].error_code
}

#[test]
fn bad_frames_close_only_their_connection() {
    let broker = Broker::start(&["socket.request.max.bytes=1048576"]);
    create_topic(&broker.addr, "raw", 1, &[]);
    create_topic(&broker.addr, "good", 1, &[]);
    let good = producer(&broker.addr, &[("linger.ms", "0")]);
    let mut sent = 0;
    let keep_working = |sent: &mut i64| {
        let offsets = produce(&good, "good", Some(0), &[Sent::new("k", "still here")]).unwrap();
        assert_eq!(offsets, vec![(0, *sent)]);
        *sent += 1;
    };

    // A length prefix over socket.request.max.bytes.
    let mut s = connect(&broker);
    s.write_all(&(64_i32 << 20).to_be_bytes()).unwrap();
    assert_closed(&mut s, "oversized frame");
    keep_working(&mut sent);

    // A negative length.
    let mut s = connect(&broker);
    s.write_all(&(-5_i32).to_be_bytes()).unwrap();
    assert_closed(&mut s, "negative length");
    keep_working(&mut sent);

    // An unknown API key.
    let mut s = connect(&broker);
    s.write_all(&frame(9_999, 0, 1, b"whatever")).unwrap();
    assert_closed(&mut s, "unknown api key");
    keep_working(&mut sent);

    // A frame shorter than a request header.
    let mut s = connect(&broker);
    s.write_all(&[0, 0, 0, 3, 0, 3, 0]).unwrap();
    assert_closed(&mut s, "short header");
    keep_working(&mut sent);

    // A produce whose body is garbage.
    let mut s = connect(&broker);
    s.write_all(&frame(0, 8, 7, &[0xff; 40])).unwrap();
    assert_closed(&mut s, "garbage body");
    keep_working(&mut sent);

    // A truncated frame, then the client goes away.
    let mut s = connect(&broker);
    s.write_all(&[0, 0, 1, 0, 0, 0, 0]).unwrap();
    drop(s);
    keep_working(&mut sent);

    // Pure noise.
    let mut s = connect(&broker);
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&noise);
    drop(s);
    keep_working(&mut sent);
}

#[test]
fn corrupt_batches_get_corrupt_message_and_nothing_is_written() {
    if broker::single_node_only("raw Produce to node 1, which may not lead the partition") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "raw", 1, &[]);
    let mut s = connect(&broker);
    assert_eq!(produce_error(&mut s, 1, batch("first")), 0);

    let mut flipped = batch("bad crc").to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    assert_eq!(
        produce_error(&mut s, 2, Bytes::from(flipped)),
        2,
        "CORRUPT_MESSAGE"
    );

    let whole = batch("truncated");
    let cut = whole.slice(..whole.len() - 3);
    assert_eq!(produce_error(&mut s, 3, cut), 2, "CORRUPT_MESSAGE");

    let mut magic1 = batch("old magic").to_vec();
    magic1[16] = 1;
    assert_eq!(
        produce_error(&mut s, 4, Bytes::from(magic1)),
        2,
        "CORRUPT_MESSAGE"
    );

    // Two batches for one partition: Kafka allows exactly one per partition from v3.
    let two = [batch("one of two"), batch("two of two")].concat();
    assert_eq!(
        produce_error(&mut s, 5, Bytes::from(two)),
        87,
        "INVALID_RECORD"
    );

    // The same connection still works, and only the good batches are in the log.
    assert_eq!(produce_error(&mut s, 6, batch("second")), 0);
    let got = consume(&broker.addr, "raw", 0, Offset::Beginning, 2);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"first"[..]));
    assert_eq!(
        (got[1].offset, got[1].sent.value.as_deref()),
        (1, Some(&b"second"[..]))
    );
}

#[test]
fn an_acks_0_produce_that_fails_closes_its_connection() {
    if broker::single_node_only("raw Produce to node 1, which may not lead the partition") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "quiet", 1, &[]);
    let mut s = connect(&broker);
    // A good acks=0 produce has no answer, and the connection serves on.
    let good = produce_body_to("quiet", 0, 0, batch("written"));
    s.write_all(&frame(0, 8, 1, &good)).unwrap();
    s.write_all(&frame(18, 0, 2, &[])).unwrap();
    let answer = read_response(&mut s).expect("ApiVersions after an acks=0 produce");
    assert_eq!(
        &answer[..4],
        &2i32.to_be_bytes(),
        "no answer to the produce itself"
    );
    // One that fails (a partition the topic does not have) closes it, as Kafka does, so that
    // the client asks for metadata again instead of writing on into nothing.
    let bad = produce_body_to("quiet", 7, 0, batch("nowhere"));
    s.write_all(&frame(0, 8, 3, &bad)).unwrap();
    assert_closed(
        &mut s,
        "an acks=0 produce to a partition that does not exist",
    );
    let got = consume(&broker.addr, "quiet", 0, Offset::Beginning, 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"written"[..]));
}

#[test]
fn api_versions_answers_an_unknown_version_in_v0() {
    let broker = Broker::start(&[]);
    let mut s = connect(&broker);
    // ApiVersions v99 with a v2 header (what a newer client sends).
    let mut request = frame(18, 3, 42, &[0, 0, 0]);
    request[6..8].copy_from_slice(&99_i16.to_be_bytes());
    s.write_all(&request).unwrap();
    let mut response = read_response(&mut s).expect("an ApiVersions answer");
    assert_eq!(i32::from_be_bytes(response[..4].try_into().unwrap()), 42);
    bytes::Buf::advance(&mut response, 4);
    let decoded = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(decoded.error_code, 35, "UNSUPPORTED_VERSION");
    let produce = decoded.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 10));
    // The connection stays usable with a version we serve.
    let mut body = BytesMut::new();
    let mut versions = kafka_protocol::messages::ApiVersionsRequest::default();
    versions.client_software_name = StrBytes::from_static_str("raw-test");
    versions.client_software_version = StrBytes::from_static_str("1.0");
    versions.encode(&mut body, 3).unwrap();
    s.write_all(&frame(18, 3, 43, &body)).unwrap();
    let mut response = read_response(&mut s).expect("a second answer");
    bytes::Buf::advance(&mut response, 4);
    assert_eq!(
        ApiVersionsResponse::decode(&mut response, 3)
            .unwrap()
            .error_code,
        0
    );
}
