//! ACLs with real clients: a broker with the authorizer on, users authenticated with SASL, ACLs
//! made and removed through the Kafka API (CreateAcls, DeleteAcls) while clients stay
//! connected. `security_matrix.rs` checks every API against an allowed and a denied principal.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::kit::broker::Broker;
use crate::kit::client::{self, Sent};
use crate::kit::raw;
use crate::security::set_password;
use sluice::security::scram::Mechanism;

/// A broker with the authorizer on: its PLAINTEXT listener (loopback) is the operator's
/// (`User:ANONYMOUS` is a super user), clients come in on SASL_PLAINTEXT; users alice, bob.
pub(crate) fn guarded(extra: &[&str]) -> Broker {
    let mut sets = vec![
        "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
    ];
    sets.extend_from_slice(extra);
    let broker = Broker::start(&sets);
    for user in ["alice", "bob"] {
        assert_eq!(
            set_password(&broker, user, Mechanism::Sha512, &format!("{user}-pw")),
            0
        );
    }
    broker
}

/// Kafka's codes for the ACL vocabulary, as the tests write them.
pub(crate) mod code {
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// An ACL: (resource type, name, pattern, principal, operation, permission), any host.
pub(crate) type Acl<'a> = (i8, &'a str, i8, &'a str, i8, i8);

pub(crate) fn operator(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.listener("PLAINTEXT")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

pub(crate) fn create_acls(broker: &Broker, acls: &[Acl<'_>]) {
    let mut request = CreateAclsRequest::default();
    for &(resource_type, name, pattern, principal, operation, permission) in acls {
        let mut c = AclCreation::default();
        c.resource_type = resource_type;
        c.resource_name = StrBytes::from_string(name.to_string());
        c.resource_pattern_type = pattern;
        c.principal = StrBytes::from_string(principal.to_string());
        c.host = StrBytes::from_static_str("*");
        c.operation = operation;
        c.permission_type = permission;
        request.creations.push(c);
    }
    let response: CreateAclsResponse =
        raw::call(&mut operator(broker), ApiKey::CreateAcls, 3, 1, &request);
    for result in response.results {
        assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    }
}

fn delete_acls(broker: &Broker, acl: Acl<'_>) -> usize {
    let (resource_type, name, pattern, principal, operation, permission) = acl;
    let mut f = DeleteAclsFilter::default();
    f.resource_type_filter = resource_type;
    f.resource_name_filter = Some(StrBytes::from_string(name.to_string()));
    f.pattern_type_filter = pattern;
    f.principal_filter = Some(StrBytes::from_string(principal.to_string()));
    f.host_filter = None;
    f.operation = operation;
    f.permission_type = permission;
    let mut request = DeleteAclsRequest::default();
    request.filters.push(f);
    let response: DeleteAclsResponse =
        raw::call(&mut operator(broker), ApiKey::DeleteAcls, 3, 1, &request);
    assert_eq!(response.filter_results[0].error_code, 0);
    response.filter_results[0].matching_acls.len()
}

fn sasl(broker: &Broker, user: &str) -> Vec<(String, String)> {
    vec![
        ("security.protocol".into(), "SASL_PLAINTEXT".into()),
        ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
        ("sasl.username".into(), user.into()),
        ("sasl.password".into(), format!("{user}-pw")),
        (
            "bootstrap.servers".into(),
            broker.listener("SASL_PLAINTEXT"),
        ),
    ]
}

fn settings(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn refused_with(result: Result<Vec<(i32, i64)>, KafkaError>) -> Option<RDKafkaErrorCode> {
    match result {
        Ok(_) => None,
        Err(e) => e.rdkafka_error_code(),
    }
}

#[test]
fn acls_decide_what_clients_may_do_and_changes_apply_at_once() {
    use code::*;
    let broker = guarded(&[]);
    let admin = broker.listener("PLAINTEXT");
    client::create_topic(&admin, "orders", 1, &[]);
    client::create_topic(&admin, "secret", 1, &[]);
    create_acls(
        &broker,
        &[
            (TOPIC, "orders", LITERAL, "User:alice", WRITE, ALLOW),
            (TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW),
            (GROUP, "app-", PREFIXED, "User:alice", READ, ALLOW),
        ],
    );
    let addr = broker.listener("SASL_PLAINTEXT");
    let alice = sasl(&broker, "alice");
    let bob = sasl(&broker, "bob");
    let record = |v: &str| vec![Sent::new("k", v)];
    // The client learns again soon what it may do (librdkafka keeps a topic it was refused
    // for until its next metadata refresh).
    let mut producing = settings(&alice);
    producing.push(("topic.metadata.refresh.interval.ms", "500"));
    let alice_producer = client::producer(&addr, &producing);
    client::produce(&alice_producer, "orders", Some(0), &record("one")).expect("alice writes");
    assert_eq!(
        refused_with(client::produce(
            &alice_producer,
            "secret",
            Some(0),
            &record("x")
        )),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // alice's group reads and commits.
    let mut group = settings(&alice);
    group.extend([("group.id", "app-1"), ("auto.offset.reset", "earliest")]);
    let consumer = client::consumer(&addr, &group);
    consumer.subscribe(&["orders"]).unwrap();
    let got = client::read_n(&consumer, 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"one"[..]));
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("alice commits for app-1");
    // bob sees no topic and may write none.
    let bob_consumer = client::consumer(&addr, &settings(&bob));
    let metadata = bob_consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let visible: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(visible.is_empty(), "bob sees {visible:?}");
    let bob_producer = client::producer(&addr, &settings(&bob));
    assert_eq!(
        refused_with(client::produce(
            &bob_producer,
            "orders",
            Some(0),
            &record("b")
        )),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // An ACL for bob: his connection, already open and refused, may write with its next
    // request.
    let mut bob_raw = raw::connect_as(&addr, "bob", "bob-pw");
    let batch = || crate::kit::batches::batch("b", 1, 0, sluice::model::Codec::None);
    assert_eq!(raw::produce(&mut bob_raw, "orders", batch()).0, 29);
    create_acls(
        &broker,
        &[(TOPIC, "orders", LITERAL, "User:bob", WRITE, ALLOW)],
    );
    assert_eq!(raw::produce(&mut bob_raw, "orders", batch()).0, 0);
    // A DENY wins over alice's ALLOW, on her open connection too, until it is deleted.
    let deny = (TOPIC, "ord", PREFIXED, "User:alice", ALL, DENY);
    create_acls(&broker, &[deny]);
    assert_eq!(
        refused_with(client::produce(
            &alice_producer,
            "orders",
            Some(0),
            &record("x")
        )),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let mut described = DescribeAclsRequest::default();
    described.resource_type_filter = TOPIC;
    (described.resource_name_filter, described.principal_filter) = (None, None);
    described.host_filter = None;
    described.pattern_type_filter = 1; // ANY
    described.operation = 1;
    described.permission_type = 1;
    let listed: DescribeAclsResponse = raw::call(
        &mut operator(&broker),
        ApiKey::DescribeAcls,
        3,
        1,
        &described,
    );
    let acls: usize = listed.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(acls, 4, "{listed:?}");
    assert_eq!(delete_acls(&broker, deny), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused_with(client::produce(
        &alice_producer,
        "orders",
        Some(0),
        &record("3"),
    ))
    .is_some()
    {
        assert!(Instant::now() < deadline, "alice never writes again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_an_authorizer_acl_requests_say_security_is_disabled() {
    let broker = Broker::start(&[]);
    let mut request = DescribeAclsRequest::default();
    request.resource_type_filter = 1;
    request.pattern_type_filter = 1;
    request.operation = 1;
    request.permission_type = 1;
    let response: DescribeAclsResponse = raw::call(
        &mut raw::connect(&broker),
        ApiKey::DescribeAcls,
        3,
        1,
        &request,
    );
    assert_eq!(response.error_code, 54, "SECURITY_DISABLED");
}

#[test]
fn the_cli_creates_lists_and_deletes_acls() {
    use crate::cli_client::sluice;
    let broker = guarded(&[]);
    let admin = broker.listener("PLAINTEXT");
    let create = [
        "acl",
        "create",
        "--principal",
        "User:bob",
        "--operation",
        "read",
        "--operation",
        "write",
        "--topic",
        "logs-",
        "--prefixed",
    ];
    sluice(&admin, &create, "").ok();
    sluice(
        &admin,
        &[
            "acl",
            "create",
            "--principal",
            "User:bob",
            "--operation",
            "read",
            "--group",
            "g",
            "--deny",
        ],
        "",
    )
    .ok();
    let listed = sluice(&admin, &["acl", "list", "--json"], "").ok().json();
    let mut rows: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["resource_type"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["pattern"].as_str().unwrap(),
                r["operation"].as_str().unwrap(),
                r["permission"].as_str().unwrap()
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            "GROUP g LITERAL READ DENY",
            "TOPIC logs- PREFIXED READ ALLOW",
            "TOPIC logs- PREFIXED WRITE ALLOW"
        ]
    );
    // The ACLs that apply to one topic (its prefixes included).
    let applying = sluice(
        &admin,
        &["acl", "list", "--topic", "logs-app", "--json"],
        "",
    )
    .ok()
    .json();
    assert_eq!(applying.as_array().unwrap().len(), 2);
    // bob may not manage ACLs: the cluster refuses, the CLI says so and exits 1.
    let addr = broker.listener("SASL_PLAINTEXT");
    let as_bob = [
        "acl",
        "list",
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanism=PLAIN",
        "-X",
        "sasl.username=bob",
        "-X",
        "sasl.password=bob-pw",
    ];
    let refused = sluice(&addr, &as_bob, "");
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        refused.stderr
    );
    let deleted = sluice(
        &admin,
        &[
            "acl",
            "delete",
            "--principal",
            "User:bob",
            "--topic",
            "logs-",
            "--prefixed",
            "--json",
        ],
        "",
    )
    .ok()
    .json();
    assert_eq!(deleted.as_array().unwrap().len(), 2);
    let left = sluice(&admin, &["acl", "list", "--json"], "").ok().json();
    assert_eq!(left.as_array().unwrap().len(), 1);
}

#[test]
fn the_admin_listener_asks_for_credentials_and_applies_acls() {
    use base64::Engine as _;
    let broker = guarded(&["admin.require.auth=true"]);
    client::create_topic(&broker.listener("PLAINTEXT"), "browsed", 1, &[]);
    let admin = broker.admin.as_deref().expect("an admin listener");
    let get = |path: &str, login: Option<(&str, &str)>| {
        let authorization = login.map_or(String::new(), |(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Authorization: Basic {encoded}\r\n")
        });
        crate::admin_api::http(
            admin,
            &format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n{authorization}\r\n"),
        )
    };
    // Probes stay open; everything else wants a SCRAM user's password.
    assert_eq!(get("/v1/health", None).0, 200);
    assert_eq!(get("/v1/ready", None).0, 200);
    assert_eq!(get("/metrics", None).0, 401);
    assert_eq!(get("/metrics", Some(("alice", "wrong"))).0, 401);
    assert_eq!(get("/metrics", Some(("mallory", "alice-pw"))).0, 401);
    // Authenticated, alice may do only what her ACLs allow.
    assert_eq!(get("/metrics", Some(("alice", "alice-pw"))).0, 403);
    let messages = "/v1/messages?topic=browsed&partition=0";
    assert_eq!(get(messages, Some(("alice", "alice-pw"))).0, 403);
    create_acls(
        &broker,
        &[
            (
                code::CLUSTER,
                "kafka-cluster",
                code::LITERAL,
                "User:alice",
                8, // DESCRIBE
                code::ALLOW,
            ),
            (
                code::TOPIC,
                "browsed",
                code::LITERAL,
                "User:alice",
                code::READ,
                code::ALLOW,
            ),
        ],
    );
    let (status, body) = get("/metrics", Some(("alice", "alice-pw")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kafka_server_socket_server_metrics"));
    assert_eq!(get(messages, Some(("alice", "alice-pw"))).0, 200);
    assert_eq!(get(messages, Some(("bob", "bob-pw"))).0, 403);
    let put = crate::admin_api::http(
        admin,
        &format!(
            "PUT /v1/log-level HTTP/1.1\r\nHost: sluice\r\nAuthorization: Basic {}\r\n\
             Content-Length: 4\r\n\r\ninfo",
            base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
        ),
    );
    assert_eq!(
        put.0, 403,
        "DESCRIBE does not let alice change the log level"
    );
}
