//! What TLS and SASL cost (issue 22): one broker with a PLAINTEXT and a SASL_SSL listener
//! (rustls, SCRAM-SHA-512; a certificate made here), the same 1 KiB messages on 16 partitions
//! produced by an rdkafka producer (acks=1) and read back by an rdkafka consumer through each
//! listener in turn (which goes first alternates by round): messages per second and the
//! broker's CPU seconds per GB, each as a SASL_SSL/PLAINTEXT ratio per round, then the medians.
//! Over TLS the record bytes of a fetch are read and encrypted in user space (no sendfile).
//!
//! `cargo bench --bench security` (SLUICE_BENCH_MB per round and listener, default 128;
//! SLUICE_BENCH_ROUNDS, default 6).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use common::{create_topic, delete_topic, env_or, median, process_cpu_seconds, settle};
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::security::scram::{salt_password, Mechanism};

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;
const PASSWORD: &str = "bench-secret";

/// A CA and a server certificate for 127.0.0.1, the broker's keystore and the clients' CA file.
fn certificates(dir: &Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sluice bench CA");
    let ca_cert = ca.self_signed(&key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let server_cert = server.signed_by(&server_key, &ca_cert, &key).unwrap();
    let keystore = dir.join("broker.pem");
    let ca_file = dir.join("ca.pem");
    std::fs::write(
        &keystore,
        format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
    )
    .unwrap();
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    (
        keystore.display().to_string(),
        ca_file.display().to_string(),
    )
}

/// User `bench` with a SCRAM-SHA-512 credential, made through the PLAINTEXT listener.
fn create_user(addr: &str) {
    let salt = b"bench-salt".to_vec();
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = StrBytes::from_static_str("bench");
    upsertion.mechanism = Mechanism::Sha512.kafka_type();
    upsertion.iterations = 4096;
    upsertion.salted_password = salt_password(Mechanism::Sha512, PASSWORD, &salt, 4096).into();
    upsertion.salt = salt.into();
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions.push(upsertion);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::AlterUserScramCredentials as i16;
    header.correlation_id = 1;
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, 2).unwrap();
    request.encode(&mut frame, 0).unwrap();
    let length = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(&frame).unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).unwrap();
}

/// The client settings of one listener.
struct Listener {
    addr: String,
    settings: Vec<(&'static str, String)>,
}

impl Listener {
    fn settings(&self) -> Vec<(&str, &str)> {
        self.settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }
}

/// The Produce requests the broker has answered (its `/metrics`).
fn produce_requests(admin_http: &str) -> f64 {
    common::get_metrics(admin_http)
        .0
        .lines()
        .filter(|l| {
            l.starts_with("kafka_network_requestmetrics_requests_total{request=\"Produce\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One round through `listener`: (produce msgs/s, produce CPU s/GB, fetch msgs/s, fetch CPU
/// s/GB, Produce requests).
fn round(
    pid: i32,
    listener: &Listener,
    (admin, admin_http): (&str, &str),
    topic: &str,
    messages: u64,
) -> [f64; 5] {
    create_topic(admin, topic, PARTITIONS);
    settle();
    let gb = (messages * MESSAGE_BYTES as u64) as f64 / 1e9;
    let mut settings = listener.settings();
    settings.push(("acks", "1"));
    let producer = common::bulk_producer(&listener.addr, &settings);
    let requests = produce_requests(admin_http);
    let cpu = process_cpu_seconds(pid);
    let started = Instant::now();
    common::send_all(
        &producer,
        topic,
        messages,
        PARTITIONS,
        &[b'x'; MESSAGE_BYTES],
    );
    let produce_wall = started.elapsed().as_secs_f64();
    let produce_cpu = process_cpu_seconds(pid) - cpu;
    let requests = produce_requests(admin_http) - requests;
    drop(producer);
    settle();
    let cpu = process_cpu_seconds(pid);
    let fetch_wall = consume(listener, topic, messages);
    let fetch_cpu = process_cpu_seconds(pid) - cpu;
    delete_topic(admin, topic);
    [
        messages as f64 / produce_wall,
        produce_cpu / gb,
        messages as f64 / fetch_wall,
        fetch_cpu / gb,
        requests,
    ]
}

fn consume(listener: &Listener, topic: &str, messages: u64) -> f64 {
    let settings = listener.settings();
    common::consume_all(
        &listener.addr,
        &settings,
        topic,
        PARTITIONS,
        messages,
        MESSAGE_BYTES,
    )
}

fn main() {
    let megabytes = env_or("SLUICE_BENCH_MB", 128);
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 6) as usize;
    let messages = megabytes * 1024 * 1024 / MESSAGE_BYTES as u64;
    let temp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (keystore, ca) = certificates(temp.path());
    let keystore = format!("ssl.keystore.location={keystore}");
    let (child, line) = common::start_broker_line(
        &temp.path().join("data"),
        &[
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            &keystore,
            "admin.listener=127.0.0.1:0",
        ],
    );
    let admin_http = line
        .rsplit_once("admin on http://")
        .map(|(_, a)| a.trim().to_string())
        .expect("the admin listener in the serving line");
    let listener = |name: &str| {
        line.split(['(', ')', ' ', ','])
            .find_map(|w| w.strip_prefix(&format!("{name}://")).map(str::to_string))
            .expect("the listener in the serving line")
    };
    let plain = Listener {
        addr: listener("PLAINTEXT"),
        settings: Vec::new(),
    };
    create_user(&plain.addr);
    let secured = Listener {
        addr: listener("SASL_SSL"),
        settings: vec![
            ("security.protocol", "SASL_SSL".into()),
            ("ssl.ca.location", ca),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", "bench".into()),
            ("sasl.password", PASSWORD.into()),
        ],
    };
    let pid = child.id() as i32;
    println!("messages_per_round {messages}");
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for round_index in 0..rounds {
        let topic = format!("bench-{round_index}");
        let (first, second) = if round_index % 2 == 0 {
            (&plain, &secured)
        } else {
            (&secured, &plain)
        };
        let admin = (plain.addr.as_str(), admin_http.as_str());
        let a = round(pid, first, admin, &topic, messages);
        let b = round(pid, second, admin, &topic, messages);
        let (p, s) = if round_index % 2 == 0 { (a, b) } else { (b, a) };
        println!(
            "round {round_index}: produce {:.0} vs {:.0} msgs/s, {:.3} vs {:.3} cpu s/GB; \
             fetch {:.0} vs {:.0} msgs/s, {:.3} vs {:.3} cpu s/GB; {} vs {} Produce requests \
             (PLAINTEXT vs SASL_SSL)",
            p[0], s[0], p[1], s[1], p[2], s[2], p[3], s[3], p[4], s[4]
        );
        for (i, ratios) in ratios.iter_mut().enumerate() {
            ratios.push(s[i] / p[i]);
        }
    }
    let names = [
        "produce_rate_ratio",
        "produce_cpu_per_gb_ratio",
        "fetch_rate_ratio",
        "fetch_cpu_per_gb_ratio",
    ];
    for (name, ratios) in names.iter().zip(ratios.iter_mut()) {
        println!("{name}_median {:.3} (SASL_SSL / PLAINTEXT)", median(ratios));
    }
    common::stop_broker(child, pid);
}
