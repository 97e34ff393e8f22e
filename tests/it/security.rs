//! Security with real clients: a broker with a listener of each protocol (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL), certificates made in the test (rcgen), SCRAM users made through
//! the Kafka API (AlterUserScramCredentials), and librdkafka clients configured as users
//! configure them. What must be refused is refused with the error a Kafka client reports.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use crate::kit::broker::Broker;
use crate::kit::pki::{Ca, Issued};
use crate::kit::{client, raw};
use sluice::security::scram::{salt_password, Mechanism};

pub(crate) const PASSWORD: &str = "alice-secret";

/// A broker with every protocol on loopback, TLS from `server`, client certificates requested
/// and checked against `ca`; user `alice` has both SCRAM credentials.
pub(crate) struct Secured {
    pub broker: Broker,
    pub ca: Ca,
    pub _dir: tempfile::TempDir,
}

pub(crate) fn secured(extra: &[&str]) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "sluice-test");
    let server = ca.server(dir.path(), "broker");
    let keystore = format!("ssl.keystore.location={}", server.keystore_file.display());
    let truststore = format!("ssl.truststore.location={}", ca.pem_file.display());
    let mut sets = vec![
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        keystore.as_str(),
        truststore.as_str(),
        "ssl.client.auth=requested",
    ];
    sets.extend_from_slice(extra);
    let broker = Broker::start(&sets);
    for mechanism in Mechanism::ALL {
        set_password(&broker, "alice", mechanism, PASSWORD);
    }
    Secured {
        broker,
        ca,
        _dir: dir,
    }
}

fn plaintext(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.listener("PLAINTEXT")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// AlterUserScramCredentials as a client sends it: the password salted on the client side.
pub(crate) fn set_password(
    broker: &Broker,
    user: &str,
    mechanism: Mechanism,
    password: &str,
) -> i16 {
    let salt = b"a-salt-of-the-client".to_vec();
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = StrBytes::from_string(user.to_string());
    upsertion.mechanism = mechanism.kafka_type();
    upsertion.iterations = 4096;
    upsertion.salted_password = salt_password(mechanism, password, &salt, 4096).into();
    upsertion.salt = salt.into();
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions.push(upsertion);
    let response: AlterUserScramCredentialsResponse = raw::call(
        &mut plaintext(broker),
        ApiKey::AlterUserScramCredentials,
        0,
        1,
        &request,
    );
    assert_eq!(response.results.len(), 1);
    response.results[0].error_code
}

/// Errors the client reported through its context.
#[derive(Clone, Default)]
pub(crate) struct Reported(pub(crate) Arc<Mutex<Vec<Error>>>);

/// An error a client reported: its code, and its text.
type Error = (Option<RDKafkaErrorCode>, String);

impl ClientContext for Reported {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push((error.rdkafka_error_code(), reason.to_string()));
    }
}

impl ConsumerContext for Reported {}

impl Reported {
    /// Waits until `consumer` reported `code` (polling it: errors come as events); what it
    /// reported, to show on failure.
    fn wait_for(
        &self,
        consumer: &BaseConsumer<Reported>,
        code: RDKafkaErrorCode,
    ) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(50)) {
                let mut seen = self.0.lock().unwrap();
                seen.push((e.rdkafka_error_code(), e.to_string()));
            }
            let seen = self.0.lock().unwrap().clone();
            if let Some((_, reason)) = seen.iter().find(|(c, _)| *c == Some(code)) {
                return Ok(reason.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("{seen:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn secured_consumer(
    addr: &str,
    settings: &[(&str, &str)],
) -> (BaseConsumer<Reported>, Reported) {
    let reported = Reported::default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("group.id", "security-tests")
        .set("enable.auto.commit", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer = config
        .create_with_context(reported.clone())
        .expect("consumer");
    (consumer, reported)
}

/// Produces three records through `settings` and reads them back through the same settings.
pub(crate) fn round_trip(addr: &str, settings: &[(&str, &str)], topic: &str) {
    let producer = client::producer(addr, settings);
    let sent: Vec<client::Sent> = (0..3)
        .map(|i| client::Sent::new(&format!("k{i}"), &format!("{topic}-{i}")))
        .collect();
    client::produce(&producer, topic, Some(0), &sent).expect("produced");
    let (consumer, _) = secured_consumer(addr, settings);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let got = client::read_n(&consumer, 3);
    let values: Vec<Option<Vec<u8>>> = got.iter().map(|g| g.sent.value.clone()).collect();
    let wanted: Vec<Option<Vec<u8>>> = sent.iter().map(|s| s.value.clone()).collect();
    assert_eq!(values, wanted);
}

pub(crate) fn ca_location(ca: &Ca) -> String {
    ca.pem_file.display().to_string()
}

#[test]
fn real_clients_produce_and_consume_over_every_protocol() {
    let s = secured(&[]);
    let ca = ca_location(&s.ca);
    client::create_topic(&s.broker.listener("PLAINTEXT"), "secured", 1, &[]);
    let scram = |mechanism: &'static str| {
        vec![
            ("sasl.mechanism", mechanism),
            ("sasl.username", "alice"),
            ("sasl.password", PASSWORD),
        ]
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("PLAINTEXT", vec![]),
        (
            "SSL",
            vec![("security.protocol", "SSL"), ("ssl.ca.location", &ca)],
        ),
        (
            "SASL_PLAINTEXT",
            [
                vec![("security.protocol", "SASL_PLAINTEXT")],
                scram("SCRAM-SHA-256"),
            ]
            .concat(),
        ),
        (
            "SASL_PLAINTEXT",
            [
                vec![("security.protocol", "SASL_PLAINTEXT")],
                scram("PLAIN"),
            ]
            .concat(),
        ),
        (
            "SASL_SSL",
            [
                vec![("security.protocol", "SASL_SSL"), ("ssl.ca.location", &ca)],
                scram("SCRAM-SHA-512"),
            ]
            .concat(),
        ),
    ];
    for (i, (listener, settings)) in cases.iter().enumerate() {
        let topic = format!("secured-{i}");
        client::create_topic(&s.broker.listener("PLAINTEXT"), &topic, 1, &[]);
        round_trip(&s.broker.listener(listener), settings, &topic);
    }
    // Metadata names the brokers on the listener the client asked through.
    let (consumer, _) = secured_consumer(
        &s.broker.listener("SASL_SSL"),
        &[
            [
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", ca.as_str()),
            ]
            .as_slice(),
            &scram("SCRAM-SHA-512"),
        ]
        .concat(),
    );
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let broker = &metadata.brokers()[0];
    assert_eq!(
        format!("{}:{}", broker.host(), broker.port()),
        s.broker.listener("SASL_SSL")
    );
}

#[test]
fn wrong_passwords_unknown_users_and_plaintext_on_tls_are_refused() {
    let s = secured(&[]);
    let ca = ca_location(&s.ca);
    let sasl = s.broker.listener("SASL_SSL");
    for (mechanism, user, password) in [
        ("SCRAM-SHA-512", "alice", "guess"),
        ("SCRAM-SHA-256", "mallory", PASSWORD),
        ("PLAIN", "alice", "guess"),
        ("PLAIN", "mallory", PASSWORD),
    ] {
        let (consumer, reported) = secured_consumer(
            &sasl,
            &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", &ca),
                ("sasl.mechanism", mechanism),
                ("sasl.username", user),
                ("sasl.password", password),
            ],
        );
        assert!(consumer
            .fetch_metadata(None, Duration::from_secs(3))
            .is_err());
        let reason = reported
            .wait_for(&consumer, RDKafkaErrorCode::Authentication)
            .unwrap_or_else(|seen| panic!("{mechanism} {user}: no authentication error: {seen}"));
        assert!(
            reason.contains("Authentication failed"),
            "{mechanism} {user}: {reason}"
        );
    }
    // A plaintext client on the TLS port, and a TLS client that does not trust the broker.
    let (consumer, _) = secured_consumer(&s.broker.listener("SSL"), &[]);
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(3))
        .is_err());
    let other = Ca::new(s._dir.path(), "other");
    let (consumer, reported) = secured_consumer(
        &s.broker.listener("SSL"),
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca_location(&other)),
        ],
    );
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(3))
        .is_err());
    reported
        .wait_for(&consumer, RDKafkaErrorCode::SSL)
        .expect("the client reports the broker's certificate as untrusted");
    // Before authenticating, a SASL listener answers nothing but ApiVersions and SASL.
    let mut stream = TcpStream::connect(s.broker.listener("SASL_PLAINTEXT")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str("GSSAPI");
    let answer: SaslHandshakeResponse =
        raw::call(&mut stream, ApiKey::SaslHandshake, 1, 1, &handshake);
    assert_eq!(answer.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let mechanisms: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    let mut stream = TcpStream::connect(s.broker.listener("SASL_PLAINTEXT")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::Write;
    let metadata = raw::frame(ApiKey::Metadata as i16, 9, 1, &[0, 0]);
    stream.write_all(&metadata).unwrap();
    assert!(
        raw::read_response(&mut stream).is_none(),
        "Metadata before authentication closes the connection"
    );
    // Every failure counted.
    let scrape = crate::admin_api::scrape(s.broker.admin.as_deref().expect("an admin listener"));
    let failed = crate::admin_api::value(
        &scrape,
        "kafka_server_socket_server_metrics_failed_authentication_total",
        &[],
    );
    assert!(failed >= Some(7.0), "{failed:?} failures counted");
}

#[test]
fn mutual_tls_needs_a_trusted_unexpired_client_certificate() {
    let s = secured(&["ssl.client.auth=required"]);
    let dir = s._dir.path();
    let ca = ca_location(&s.ca);
    let addr = s.broker.listener("SSL");
    let with = |issued: Option<&Issued>| {
        let mut settings = vec![
            ("security.protocol", "SSL".to_string()),
            ("ssl.ca.location", ca.clone()),
        ];
        if let Some(issued) = issued {
            settings.push((
                "ssl.certificate.location",
                issued.cert_file.display().to_string(),
            ));
            settings.push(("ssl.key.location", issued.key_file.display().to_string()));
        }
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (consumer, _) = secured_consumer(&addr, &settings);
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok()
    };
    let good = s.ca.issue(dir, "alice", "alice", &["alice"], false);
    let expired = s.ca.issue(dir, "old", "old", &["old"], true);
    let stranger = Ca::new(dir, "stranger").issue(dir, "eve", "eve", &["eve"], false);
    assert!(with(Some(&good)), "a trusted client certificate is taken");
    assert!(!with(None), "no client certificate");
    assert!(!with(Some(&expired)), "an expired client certificate");
    assert!(!with(Some(&stranger)), "a certificate of another CA");
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let s = secured(&[]);
    let dir = s._dir.path();
    let addr = s.broker.listener("SSL");
    let trusts = |ca: &Ca| {
        let location = ca_location(ca);
        let (consumer, _) = secured_consumer(
            &addr,
            &[("security.protocol", "SSL"), ("ssl.ca.location", &location)],
        );
        consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok()
    };
    assert!(trusts(&s.ca));
    // The keystore file replaced by a certificate of a new CA (as a renewal would).
    let renewed_ca = Ca::new(dir, "renewed");
    let renewed = renewed_ca.server(dir, "renewed-broker");
    let keystore = dir.join("broker-keystore.pem");
    std::fs::copy(&renewed.keystore_file, &keystore).unwrap();
    // Each shard looks at the files at most once a second, as connections arrive: every
    // connection of a few in a row gets the renewed certificate, none the old one.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(0..4).all(|_| trusts(&renewed_ca) && !trusts(&s.ca)) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is never served everywhere"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn scram_credentials_are_described_and_deleted_through_the_admin_api() {
    let s = secured(&[]);
    let describe = |users: Option<&[&str]>| {
        let mut request = DescribeUserScramCredentialsRequest::default();
        request.users = users.map(|users| {
            users
                .iter()
                .map(|u| {
                    let mut name = UserName::default();
                    name.name = StrBytes::from_string(u.to_string());
                    name
                })
                .collect()
        });
        let response: DescribeUserScramCredentialsResponse = raw::call(
            &mut plaintext(&s.broker),
            ApiKey::DescribeUserScramCredentials,
            0,
            1,
            &request,
        );
        response
    };
    let all = describe(None);
    assert_eq!(all.results.len(), 1);
    let infos: Vec<(i8, i32)> = all.results[0]
        .credential_infos
        .iter()
        .map(|c| (c.mechanism, c.iterations))
        .collect();
    assert_eq!(infos, [(1, 4096), (2, 4096)]);
    let unknown = describe(Some(&["nobody"]));
    assert_eq!(unknown.results[0].error_code, 91, "RESOURCE_NOT_FOUND");
    // Too few iterations: UNACCEPTABLE_CREDENTIAL; then a deletion.
    let mut request = AlterUserScramCredentialsRequest::default();
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = StrBytes::from_static_str("bob");
    upsertion.mechanism = 1;
    upsertion.iterations = 10;
    upsertion.salt = b"salt".to_vec().into();
    upsertion.salted_password = vec![1u8; 32].into();
    request.upsertions.push(upsertion);
    let mut deletion =
        kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion::default();
    deletion.name = StrBytes::from_static_str("alice");
    deletion.mechanism = 1;
    request.deletions.push(deletion);
    let response: AlterUserScramCredentialsResponse = raw::call(
        &mut plaintext(&s.broker),
        ApiKey::AlterUserScramCredentials,
        0,
        2,
        &request,
    );
    let codes: Vec<(&str, i16)> = response
        .results
        .iter()
        .map(|r| (r.user.as_str(), r.error_code))
        .collect();
    assert_eq!(codes, [("alice", 0), ("bob", 93)]);
    let after = describe(Some(&["alice"]));
    assert_eq!(after.results[0].credential_infos.len(), 1);
    assert_eq!(after.results[0].credential_infos[0].mechanism, 2);
    // SCRAM-SHA-256 is gone for alice: a client using it is refused; SHA-512 still works.
    let addr = s.broker.listener("SASL_PLAINTEXT");
    let login = |mechanism: &str| {
        let (consumer, _) = secured_consumer(
            &addr,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", PASSWORD),
            ],
        );
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok()
    };
    assert!(!login("SCRAM-SHA-256"));
    assert!(login("SCRAM-SHA-512"));
    // The credentials survive a restart (they are in the cluster metadata).
    let mut broker = s.broker;
    broker.stop();
    broker.restart();
    let (consumer, _) = secured_consumer(
        &broker.listener("SASL_PLAINTEXT"),
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", PASSWORD),
        ],
    );
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .is_ok());
}

#[test]
fn the_cli_manages_users_and_speaks_sasl_ssl() {
    use crate::cli_client::sluice;
    let s = secured(&[]);
    let plain = s.broker.listener("PLAINTEXT");
    sluice(
        &plain,
        &["user", "create", "bob", "--mechanism", "SCRAM-SHA-512"],
        "bob-secret\n",
    )
    .ok();
    let listed = sluice(&plain, &["user", "list", "--json"], "").ok().json();
    let users: Vec<(&str, usize)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap(),
                u["mechanisms"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(users, [("alice", 2), ("bob", 1)]);
    // Every client command over SASL_SSL as bob: the CLI's own requests and librdkafka's.
    let ca = format!("ssl.ca.location={}", ca_location(&s.ca));
    let secured_args = |args: &[&'static str], password: &'static str| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for x in [
            "security.protocol=SASL_SSL".to_string(),
            ca.clone(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            "sasl.username=bob".to_string(),
            format!("sasl.password={password}"),
        ] {
            all.push("-X".into());
            all.push(x);
        }
        all
    };
    let sasl = s.broker.listener("SASL_SSL");
    let run = |args: &[&'static str], password: &'static str, stdin: &str| {
        let args = secured_args(args, password);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sluice(&sasl, &args, stdin)
    };
    let info = run(&["cluster", "info", "--json"], "bob-secret", "")
        .ok()
        .json();
    assert_eq!(
        info["brokers"][0]["port"].to_string(),
        sasl.rsplit(':').next().unwrap()
    );
    run(&["topic", "create", "cli-secured"], "bob-secret", "").ok();
    run(&["produce", "cli-secured"], "bob-secret", "one\ntwo\n").ok();
    let got = run(
        &["consume", "cli-secured", "-e", "--json"],
        "bob-secret",
        "",
    )
    .ok();
    let values: Vec<String> = got
        .json_lines()
        .iter()
        .map(|r| r["value"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(values, ["one", "two"]);
    let refused = run(&["cluster", "info"], "wrong", "");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("SASL_AUTHENTICATION_FAILED"),
        "{}",
        refused.stderr
    );
    sluice(&plain, &["user", "delete", "bob"], "").ok();
    let gone = run(&["cluster", "info"], "bob-secret", "");
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    let missing = sluice(&plain, &["user", "delete", "bob"], "");
    assert_eq!(missing.code, 1);
}

#[test]
fn the_cli_trusts_a_self_signed_certificate_given_as_its_own_ca() {
    use crate::cli_client::sluice;
    // What `openssl req -x509` makes: one certificate, a CA, serving as the broker's own.
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (keystore, ca) = (dir.path().join("broker.pem"), dir.path().join("cert.pem"));
    std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let broker = Broker::start(&[
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        &format!("ssl.keystore.location={}", keystore.display()),
    ]);
    let ca_location = format!("ssl.ca.location={}", ca.display());
    let args = [
        "cluster",
        "info",
        "--json",
        "-X",
        "security.protocol=SSL",
        "-X",
        &ca_location,
    ];
    let info = sluice(&broker.listener("SSL"), &args, "").ok().json();
    assert_eq!(info["brokers"].as_array().unwrap().len(), 1);
    // Another certificate in the CA file: refused, and said so (exit 1, not 3).
    let other = Ca::new(dir.path(), "other");
    let other_location = format!("ssl.ca.location={}", other.pem_file.display());
    let args = [
        "cluster",
        "info",
        "-X",
        "security.protocol=SSL",
        "-X",
        &other_location,
    ];
    let refused = sluice(&broker.listener("SSL"), &args, "");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("TLS with"), "{}", refused.stderr);
}

#[test]
fn passwords_are_never_described_nor_altered_dynamically() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    };
    let s = secured(&["ssl.key.password=hunter2"]);
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = 4; // BROKER
    resource.resource_name = StrBytes::from_static_str("");
    resource.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources.push(resource);
    let described: DescribeConfigsResponse = raw::call(
        &mut plaintext(&s.broker),
        ApiKey::DescribeConfigs,
        4,
        1,
        &request,
    );
    let configs = &described.results[0].configs;
    let entry = |name: &str| configs.iter().find(|c| c.name.as_str() == name).unwrap();
    for name in ["ssl.key.password", "sasl.jaas.config", "ssl.keystore.key"] {
        assert!(entry(name).is_sensitive, "{name} is sensitive");
        assert_eq!(entry(name).value, None, "{name}'s value is not said");
        assert_eq!(entry(name).config_type, 9, "{name} is a PASSWORD");
    }
    assert!(!entry("ssl.keystore.location").is_sensitive);
    assert!(entry("ssl.keystore.location").value.is_some());
    let mut config = AlterableConfig::default();
    config.name = StrBytes::from_static_str("sasl.jaas.config");
    config.config_operation = 0; // SET
    config.value = Some(StrBytes::from_static_str(
        "ScramLoginModule required username=\"b\" password=\"p\";",
    ));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 4;
    resource.resource_name = StrBytes::from_static_str("");
    resource.configs.push(config);
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources.push(resource);
    let altered: IncrementalAlterConfigsResponse = raw::call(
        &mut plaintext(&s.broker),
        ApiKey::IncrementalAlterConfigs,
        1,
        2,
        &request,
    );
    assert_eq!(altered.responses[0].error_code, 40, "INVALID_CONFIG");
}

#[test]
fn mapping_rules_name_certificate_principals_and_refuse_the_unmapped() {
    use crate::security_acl::{code, create_acls};
    let s = secured(&[
        "ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([a-z]+)$/$1/, RULE:^CN=([a-z]+),O=(.*)$/$1@$2/L",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
    ]);
    client::create_topic(&s.broker.listener("PLAINTEXT"), "mapped", 1, &[]);
    // ACLs name the mapped principal, not the certificate's subject.
    create_acls(
        &s.broker,
        &[(
            code::TOPIC,
            "mapped",
            code::LITERAL,
            "User:alice",
            8, // DESCRIBE
            code::ALLOW,
        )],
    );
    let dir = s._dir.path();
    let ca = ca_location(&s.ca);
    let addr = s.broker.listener("SSL");
    let metadata = |issued: &Issued| {
        let (consumer, _) = secured_consumer(
            &addr,
            &[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", &ca),
                (
                    "ssl.certificate.location",
                    &issued.cert_file.display().to_string(),
                ),
                ("ssl.key.location", &issued.key_file.display().to_string()),
            ],
        );
        consumer
            .fetch_metadata(Some("mapped"), Duration::from_secs(5))
            .map(|m| m.topics()[0].error())
    };
    let alice = s.ca.issue(dir, "alice", "alice", &["alice"], false);
    assert_eq!(
        metadata(&alice),
        Ok(None),
        "User:alice may describe `mapped`"
    );
    let bob = s.ca.issue(dir, "bob", "bob", &["bob"], false);
    assert!(
        matches!(metadata(&bob), Ok(Some(_))),
        "User:bob is mapped and authenticated, but not allowed"
    );
    let unmapped = s.ca.issue(dir, "shouty", "SHOUTY", &["shouty"], false);
    assert!(
        metadata(&unmapped).is_err(),
        "no rule applies to CN=SHOUTY: refused"
    );
}
