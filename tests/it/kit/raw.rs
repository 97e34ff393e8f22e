//! Raw Kafka frames over a plain socket, for what a well-behaved client never sends.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::broker::Broker;

pub fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(&broker.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

pub fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("raw"));
    let mut buf = BytesMut::new();
    let header_version = ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(version))
        .unwrap_or(1);
    header.encode(&mut buf, header_version).unwrap();
    buf.put_slice(body);
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame; `None` if the broker closed the connection.
pub fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// Sends `request` as `api_key` v`version` and decodes the answer (header v0, or v1 if flexible).
pub fn call<Req: Encodable, Resp: kafka_protocol::protocol::Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Resp {
    use std::io::Write;
    let mut body = BytesMut::new();
    request.encode(&mut body, version).unwrap();
    stream
        .write_all(&frame(api_key as i16, version, correlation_id, &body))
        .unwrap();
    let mut response = read_response(stream).expect("an answer");
    let header = api_key.response_header_version(version);
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut response, header).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    Resp::decode(&mut response, version).unwrap()
}

/// Produce v9 (acks=all) of `records` to partition 0 of `topic`: (error code, base offset).
pub fn produce(stream: &mut TcpStream, topic: &'static str, records: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let mut data = PartitionProduceData::default();
    data.index = 0;
    data.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_static_str(topic));
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic_data];
    let r: ProduceResponse = call(stream, ApiKey::Produce, 9, 1, &request);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A connection to `addr` (a SASL_PLAINTEXT listener) authenticated as `user` with SASL/PLAIN.
pub fn connect_as(addr: &str, user: &str, password: &str) -> TcpStream {
    use kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str("PLAIN");
    let shaken: SaslHandshakeResponse = call(&mut stream, ApiKey::SaslHandshake, 1, 1, &handshake);
    assert_eq!(shaken.error_code, 0, "SaslHandshake");
    let mut authenticate = SaslAuthenticateRequest::default();
    authenticate.auth_bytes = Bytes::from(format!("\0{user}\0{password}"));
    let authenticated: SaslAuthenticateResponse =
        call(&mut stream, ApiKey::SaslAuthenticate, 2, 2, &authenticate);
    assert_eq!(authenticated.error_code, 0, "SaslAuthenticate as {user}");
    stream
}
