//! Re-authentication (KIP-368): with `connections.max.reauth.ms` set, a SASL session lasts that
//! long. librdkafka clients re-authenticate on their connections and carry on; a connection that
//! does not is closed at its next request; a re-authentication may not change the principal or
//! the mechanism. And a failed authentication is answered only after
//! `connection.failed.authentication.delay.ms`.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use crate::kit::{client, raw};
use crate::security::{ca_location, secured, secured_consumer, set_password, PASSWORD};
use sluice::security::scram::Mechanism;

const LIFETIME_MS: u64 = 3000;

fn handshake(stream: &mut TcpStream, mechanism: &'static str) -> SaslHandshakeResponse {
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str(mechanism);
    raw::call(stream, ApiKey::SaslHandshake, 1, 7, &request)
}

fn plain(stream: &mut TcpStream, user: &str, password: &str) -> SaslAuthenticateResponse {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::from(format!("\0{user}\0{password}"));
    raw::call(stream, ApiKey::SaslAuthenticate, 2, 8, &request)
}

/// A SASL_PLAINTEXT connection authenticated as `user` with PLAIN: the session's lifetime.
fn login(addr: &str, user: &str) -> (TcpStream, i64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let answer = plain(&mut stream, user, PASSWORD);
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    (stream, answer.session_lifetime_ms)
}

/// Whether Metadata is answered (false: the broker closed the connection).
fn metadata_answered(stream: &mut TcpStream) -> bool {
    let mut body = bytes::BytesMut::new();
    MetadataRequest::default().encode(&mut body, 9).unwrap();
    let frame = raw::frame(ApiKey::Metadata as i16, 9, 3, &body);
    if stream.write_all(&frame).is_err() {
        return false;
    }
    match raw::read_response(stream) {
        None => false,
        Some(mut answer) => {
            use kafka_protocol::protocol::Decodable;
            let header = ApiKey::Metadata.response_header_version(9);
            kafka_protocol::messages::ResponseHeader::decode(&mut answer, header).unwrap();
            MetadataResponse::decode(&mut answer, 9).is_ok()
        }
    }
}

#[test]
fn sessions_expire_and_real_clients_reauthenticate_on_their_connections() {
    let lifetime = format!("connections.max.reauth.ms={LIFETIME_MS}");
    let s = secured(&[&lifetime]);
    for mechanism in Mechanism::ALL {
        set_password(&s.broker, "bob", mechanism, PASSWORD);
    }
    let sasl_plaintext = s.broker.listener("SASL_PLAINTEXT");

    // A connection that does not re-authenticate is closed at its first request after expiry;
    // one that does (same mechanism, same principal) carries on past the first lifetime.
    let expiring = {
        let addr = sasl_plaintext.clone();
        std::thread::spawn(move || {
            let (mut stream, lifetime) = login(&addr, "alice");
            assert_eq!(
                lifetime, LIFETIME_MS as i64,
                "SaslAuthenticate v2 tells the lifetime"
            );
            assert!(metadata_answered(&mut stream));
            std::thread::sleep(Duration::from_millis(LIFETIME_MS + 300));
            assert!(
                !metadata_answered(&mut stream),
                "a request after the session expired closes the connection"
            );
        })
    };
    let renewing = {
        let addr = sasl_plaintext.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let (mut stream, _) = login(&addr, "alice");
            std::thread::sleep(Duration::from_millis(LIFETIME_MS * 2 / 3));
            assert_eq!(
                handshake(&mut stream, "PLAIN").error_code,
                0,
                "re-handshake"
            );
            let again = plain(&mut stream, "alice", PASSWORD);
            assert_eq!(again.error_code, 0, "{:?}", again.error_message);
            assert_eq!(again.session_lifetime_ms, LIFETIME_MS as i64);
            std::thread::sleep(Duration::from_millis(LIFETIME_MS * 2 / 3));
            assert!(started.elapsed() > Duration::from_millis(LIFETIME_MS));
            assert!(
                metadata_answered(&mut stream),
                "a renewed session is served past the first session's expiry"
            );
        })
    };

    // A re-authentication as someone else, or with another mechanism, fails and closes.
    let (mut stream, _) = login(&sasl_plaintext, "alice");
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let as_bob = plain(&mut stream, "bob", PASSWORD);
    assert_eq!(as_bob.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(
        !metadata_answered(&mut stream),
        "closed after a failed re-authentication"
    );
    let (mut stream, _) = login(&sasl_plaintext, "alice");
    let other = handshake(&mut stream, "SCRAM-SHA-256");
    assert_eq!(other.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let offered: Vec<&str> = other.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN"], "only the session's mechanism");
    assert!(
        !metadata_answered(&mut stream),
        "closed after a refused re-handshake"
    );

    // librdkafka re-authenticates at 90% of the lifetime it was told: a producer and a
    // consumer over SASL_SSL with SCRAM-SHA-512 keep working over three lifetimes.
    let ca = ca_location(&s.ca);
    let settings = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", PASSWORD),
    ];
    let addr = s.broker.listener("SASL_SSL");
    client::create_topic(&s.broker.addr, "renewed", 1, &[]);
    let producer = client::producer(&addr, &settings);
    let (consumer, reported) = secured_consumer(&addr, &settings);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset("renewed", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(LIFETIME_MS * 3) {
        let record = client::Sent::new(&format!("k{sent}"), &format!("v{sent}"));
        let acked = client::produce(&producer, "renewed", Some(0), std::slice::from_ref(&record))
            .unwrap_or_else(|e| panic!("record {sent} after {:?}: {e}", started.elapsed()));
        let got = client::read_n(&consumer, 1);
        assert_eq!(got[0].offset, acked[0].1, "record {sent} read back");
        assert_eq!(got[0].sent.value, record.value);
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reported.0.lock().unwrap().is_empty(),
        "the consumer reported no error"
    );
    expiring.join().unwrap();
    renewing.join().unwrap();

    let admin = s.broker.admin.as_deref().expect("an admin listener");
    let scrape = crate::admin_api::scrape(admin);
    let count = |name: &str| crate::admin_api::value(&scrape, name, &[]).unwrap_or(0.0);
    let renewed = count("kafka_server_socket_server_metrics_successful_reauthentication_total");
    let refused = count("kafka_server_socket_server_metrics_failed_reauthentication_total");
    let expired = count("kafka_server_socket_server_metrics_expired_connections_killed_count");
    // The raw renewal, and at least two each from the producer's and consumer's connections.
    assert!(renewed >= 5.0, "{renewed} re-authentications");
    assert_eq!(refused, 2.0, "the other principal and the other mechanism");
    assert_eq!(expired, 1.0, "only the raw connection that did not renew");
}

#[test]
fn a_failed_authentication_is_answered_after_the_delay() {
    let s = secured(&["connection.failed.authentication.delay.ms=700"]);
    let mut stream = TcpStream::connect(s.broker.listener("SASL_PLAINTEXT")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let asked = Instant::now();
    let answer = plain(&mut stream, "alice", "a guess");
    assert_eq!(answer.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(
        asked.elapsed() >= Duration::from_millis(700),
        "answered after {:?}",
        asked.elapsed()
    );
    assert!(!metadata_answered(&mut stream), "then closed");
    // A right password is not delayed by the one before (another connection).
    let (mut stream, _) = login(&s.broker.listener("SASL_PLAINTEXT"), "alice");
    assert!(metadata_answered(&mut stream));
}
