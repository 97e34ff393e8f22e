//! Nodes with one role (issue 20): `process.roles=controller` votes in the metadata quorum and
//! holds no partitions, `process.roles=broker` holds partitions and follows the metadata log as
//! a raft learner, without a vote. Together with combined nodes they make one cluster, as
//! KRaft's dedicated controllers and brokers do.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::cli_client::sluice;
use crate::cluster_replication::{create_replicated, idempotent_writer, send, THREE_NODES};
use crate::kit::client::create_topic;
use crate::kit::cluster::{check_acknowledged, Cluster};

/// Node `id`'s `/v1/cluster` (its admin listener).
fn cluster_json(cluster: &mut Cluster, id: usize) -> Option<serde_json::Value> {
    let admin = cluster.node(id).admin.clone().expect("an admin listener");
    let mut stream = std::net::TcpStream::connect(&admin).ok()?;
    stream
        .write_all(b"GET /v1/cluster HTTP/1.1\r\nHost: s\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let body = answer.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// The active controller as node `id`'s admin listener names it (`/v1/cluster`; Metadata names
/// a broker instead when the controller is a controller only, as Kafka's KRaft brokers do).
fn active_controller(cluster: &mut Cluster, id: usize) -> Option<i64> {
    cluster_json(cluster, id)?["controller_id"].as_i64()
}

/// Waits until node `id`'s raft has exactly `learners` as the quorum's learners.
fn await_learners(cluster: &mut Cluster, id: usize, learners: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = cluster_json(cluster, id).map(|c| c["quorum"]["learners"].clone());
        if seen
            .as_ref()
            .and_then(|l| l.as_array())
            .is_some_and(|l| l.iter().filter_map(|n| n.as_i64()).collect::<Vec<_>>() == learners)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: learners never {learners:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every node of `brokers` lists exactly `brokers` as the cluster's brokers and
/// `topic`, names one of them as the controller in Metadata, and names one active controller
/// among `voters` on its admin listener; returns that one.
fn await_agreement(cluster: &mut Cluster, brokers: &[usize], voters: &[i32], topic: &str) -> i32 {
    let listed: Vec<i32> = brokers.iter().map(|&b| b as i32).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<_> = brokers.iter().map(|&id| cluster.view(id)).collect();
        let for_clients = views[0].controller;
        let agreed = views.iter().all(|v| {
            let mut seen = v.brokers.clone();
            seen.sort();
            v.controller == for_clients && seen == listed && v.topics.iter().any(|t| t.0 == topic)
        });
        let active: Vec<Option<i64>> = brokers
            .iter()
            .map(|&id| active_controller(cluster, id))
            .collect();
        let one = active[0].filter(|a| voters.contains(&(*a as i32)));
        if let Some(one) = one {
            let same = active.iter().all(|a| *a == Some(one));
            if agreed && listed.contains(&for_clients) && same {
                return one as i32;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never agreed: {views:?} {active:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nodes 1 and 2 are broker and controller, node 3 a controller only, node 4 a broker only.
/// The brokers are 1, 2 and 4 (3 is never listed and holds no copy); the active controller is
/// one of the voters 1, 2, 3 (4 never leads the quorum), and Metadata names a broker as the
/// controller even when node 3 is it (clients cannot reach a controller only; any broker takes
/// their admin requests). A topic replicated three times lives on 1, 2
/// and 4 and takes acks=all writes; the broker-only node killed with `kill -9` is fenced and
/// leaves the ISR, writes go on, and restarted it catches up on the metadata it missed and
/// rejoins the ISR; with the controller-only node killed, the others still make changes and the
/// broker-only node follows them. Every acknowledged record is read back. Last, the
/// broker-only node is taken out of service: `sluice cluster unregister` refuses it while it
/// runs; stopped, it is unregistered, no longer listed, and leaves raft's learners; started
/// again, it registers and follows as a learner again.
#[test]
fn controllers_only_and_brokers_only_make_one_cluster() {
    let roles = [
        "broker,controller",
        "broker,controller",
        "controller",
        "broker",
    ];
    let mut cluster = Cluster::start_with_roles(&roles, &THREE_NODES);
    let (brokers, voters) = ([1, 2, 4], [1, 2, 3]);
    await_agreement(&mut cluster, &brokers, &voters, "__consumer_offsets");
    let bootstrap: Vec<String> = brokers
        .iter()
        .map(|&id| cluster.node(id).addr.clone())
        .collect();
    let bootstrap = bootstrap.join(",");
    create_replicated(&bootstrap, "roles", &[("min.insync.replicas", "2")]);
    cluster.await_isr(&brokers, "roles", 0, &[1, 2, 4]);
    let writer = idempotent_writer(&bootstrap);
    let (mut acked, errors) = send(&writer, "roles", "all-in", 20);
    assert!(errors.is_empty(), "{errors:?}");
    let nowhere = cluster.node(3).data_dir().join("roles-0");
    assert!(!nowhere.exists(), "a controller only holds no partition");

    cluster.kill9(4);
    cluster.await_isr(&[1, 2], "roles", 0, &[1, 2]);
    let (ok, errors) = send(&writer, "roles", "without-4", 20);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);
    create_topic(&cluster.node(1).addr, "while-4-was-away", 1, &[]);
    cluster.restart(4);
    cluster.await_isr(&brokers, "roles", 0, &[1, 2, 4]);
    await_agreement(&mut cluster, &brokers, &voters, "while-4-was-away");

    cluster.kill9(3);
    await_agreement(&mut cluster, &brokers, &[1, 2], "__consumer_offsets");
    create_topic(&cluster.node(2).addr, "without-3", 1, &[]);
    await_agreement(&mut cluster, &brokers, &[1, 2], "without-3");
    let (ok, errors) = send(&writer, "roles", "without-3", 20);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);
    check_acknowledged(&bootstrap, "roles", &acked);

    await_learners(&mut cluster, 1, &[4]);
    let unregister = ["cluster", "unregister", "--id", "4"];
    let live = sluice(&cluster.node(1).addr, &unregister, "");
    assert_eq!(live.code, 1, "{}", live.stderr);
    assert!(live.stderr.contains("is live"), "{}", live.stderr);
    cluster.node(4).stop();
    let mut done = sluice(&cluster.node(1).addr, &unregister, "");
    // Fenced once the controller sees it gone (at once: its port refuses).
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.code != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        done = sluice(&cluster.node(1).addr, &unregister, "");
    }
    assert_eq!(done.code, 0, "{}", done.stderr);
    await_agreement(&mut cluster, &[1, 2], &[1, 2], "without-3");
    await_learners(&mut cluster, 1, &[]);
    await_learners(&mut cluster, 2, &[]);
    let again = sluice(&cluster.node(1).addr, &unregister, "");
    assert!(
        again.stderr.contains("BROKER_ID_NOT_REGISTERED"),
        "{}",
        again.stderr
    );
    cluster.restart(4);
    await_agreement(&mut cluster, &brokers, &[1, 2], "without-3");
    await_learners(&mut cluster, 1, &[4]);
}
