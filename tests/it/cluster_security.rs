//! Brokers secured among themselves (issue 22): three nodes whose inter-broker listener is
//! SASL_SSL with mutual TLS, each broker logging in to the others as `User:broker` with
//! SCRAM-SHA-512 (Kafka's `listener.name.internal.scram-sha-512.sasl.jaas.config`), ACLs on and
//! `User:ANONYMOUS` without CLUSTER_ACTION; the controllers' quorum over SSL (mutual TLS).
//! Followers cannot replicate until the broker's user exists; once it does they join the ISR,
//! acks=all with `min.insync.replicas=3` succeeds, and a transaction's markers reach the other
//! nodes' partitions.
use crate::cluster_replication::{create_replicated, send};
use crate::kit::client::producer;
use crate::kit::cluster::{check_acknowledged, Cluster};
use crate::kit::pki::Ca;
use crate::security::set_password;
use crate::security_acl::{code, create_acls};
use sluice::security::scram::Mechanism;

/// ALTER, in Kafka's operation codes (DESCRIBE comes with it; CLUSTER_ACTION does not).
const ALTER: i8 = 7;

#[test]
fn brokers_replicate_over_sasl_ssl_as_their_own_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let server = ca.server(dir.path(), "broker");
    let keystore = format!("ssl.keystore.location={}", server.keystore_file.display());
    let truststore = format!("ssl.truststore.location={}", ca.pem_file.display());
    let sets = [
        "listeners=PLAINTEXT://127.0.0.1:{client},INTERNAL://127.0.0.1:0,CONTROLLER://127.0.0.1:{controller}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=INTERNAL",
        keystore.as_str(),
        truststore.as_str(),
        "ssl.client.auth=required",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.\
         scram.ScramLoginModule required username=\"broker\" password=\"broker-secret\";",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:broker",
        "allow.everyone.if.no.acl.found=true",
        "num.partitions=1",
        "broker.session.timeout.ms=2000",
        "replica.lag.time.max.ms=2000",
        // Sessions end: the brokers' connections to each other are renewed in time.
        "connections.max.reauth.ms=3000",
    ];
    let (mut cluster, bootstrap) = Cluster::start(3, &sets).formed();
    // Nobody but the brokers' user may act for the cluster (CLUSTER_ACTION: a follower's
    // fetch): an ACL names the cluster now, letting the test's anonymous client alter it.
    create_acls(
        cluster.node(1),
        &[(
            code::CLUSTER,
            "kafka-cluster",
            code::LITERAL,
            "User:ANONYMOUS",
            ALTER,
            code::ALLOW,
        )],
    );

    // Without their user, the followers' logins fail: the ISR shrinks to the leader.
    create_replicated(&bootstrap, "guarded", &[("min.insync.replicas", "3")]);
    let leader = cluster.view(1).partition("guarded", 0).expect("created").0;
    cluster.await_isr(&[1, 2, 3], "guarded", 0, &[leader]);
    let failed = counter(&mut cluster, leader, "failed_authentication_total");
    assert!(
        failed >= 2.0,
        "the followers' logins were refused: {failed}"
    );

    // With it, they follow over SASL_SSL and every write needs all three.
    assert_eq!(
        set_password(
            cluster.node(1),
            "broker",
            Mechanism::Sha512,
            "broker-secret"
        ),
        0
    );
    cluster.await_isr(&[1, 2, 3], "guarded", 0, &[1, 2, 3]);
    let writer = producer(
        &bootstrap,
        &[("acks", "all"), ("message.timeout.ms", "20000")],
    );
    let (acked, errors) = send(&writer, "guarded", "secured", 50);
    assert!(errors.is_empty(), "{errors:?}");
    check_acknowledged(&bootstrap, "guarded", &acked);
    let succeeded = counter(&mut cluster, leader, "successful_authentication_total");
    assert!(
        succeeded >= 2.0,
        "the followers logged in to the leader: {succeeded}"
    );
    // Three seconds more of following: every session renewed before it expired.
    std::thread::sleep(std::time::Duration::from_secs(3));
    for node in 1..=3 {
        let killed = counter(&mut cluster, node, "expired_connections_killed_count");
        assert_eq!(killed, 0.0, "node {node} closed an expired broker session");
    }

    // A transaction over partitions every node leads: the coordinator's markers go to the
    // other leaders over the same SASL_SSL listener, as the brokers' user (CLUSTER_ACTION).
    {
        use crate::kafka_transactions::{read_all, send as send_txn, txn_producer, values};
        use rdkafka::producer::Producer;
        let timeout = std::time::Duration::from_secs(20);
        crate::kit::client::create_topic(&bootstrap, "txn-secured", 6, &[]);
        for id in 1..=3 {
            let leaders = crate::cluster_quorum::await_topic(&mut cluster, id, "txn-secured");
            let distinct: std::collections::BTreeSet<_> = leaders.iter().collect();
            assert_eq!(distinct.len(), 3, "{leaders:?}");
        }
        let producer = txn_producer(&bootstrap, "secured-txn", &[]);
        producer.begin_transaction().unwrap();
        send_txn(&producer, "txn-secured", &values("c", 12));
        producer.commit_transaction(timeout).unwrap();
        let mut committed = values("c", 12);
        committed.sort();
        assert_eq!(
            read_all(&bootstrap, "txn-secured", 6, "read_committed"),
            committed
        );
    }
}

/// `kafka_server_socket_server_metrics_NAME` on node `id`, over its shards.
fn counter(cluster: &mut Cluster, id: i32, name: &str) -> f64 {
    let node = cluster.node(id as usize);
    let scrape = crate::admin_api::scrape(node.admin.as_deref().expect("an admin listener"));
    let name = format!("kafka_server_socket_server_metrics_{name}");
    crate::admin_api::value(&scrape, &name, &[]).unwrap_or(0.0)
}
