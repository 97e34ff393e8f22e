//! Moving replicas and leaderships by request (issue 20): AlterPartitionReassignments moves a
//! partition onto another node while an idempotent acks=all producer keeps writing
//! (ListPartitionReassignments shows it until it is done; the node it left deletes its copy),
//! and ElectLeaders gives a partition back to its preferred replica; CreateTopics and
//! CreatePartitions put replicas where the client names them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::cluster_replication::{idempotent_writer, send, three_nodes, THREE_NODES};
use crate::kit::broker::Broker;
use crate::kit::client::admin;
use crate::kit::cluster::{check_acknowledged, Acked, Cluster};
use crate::kit::raw;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn reassign(broker: &Broker, topic: &str, replicas: Option<Vec<i32>>) -> i16 {
    let mut partition = ReassignablePartition::default();
    partition.partition_index = 0;
    partition.replicas = replicas.map(|r| r.into_iter().map(BrokerId).collect());
    let mut entry = ReassignableTopic::default();
    entry.name = name(topic);
    entry.partitions = vec![partition];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 10_000;
    request.topics = vec![entry];
    let mut s = raw::connect(broker);
    let response: AlterPartitionReassignmentsResponse =
        raw::call(&mut s, ApiKey::AlterPartitionReassignments, 0, 1, &request);
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].error_code
}

/// A running reassignment: topic, partition, replicas, adding, removing.
type Moving = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// The running reassignments.
fn reassignments(broker: &Broker) -> Vec<Moving> {
    let request = ListPartitionReassignmentsRequest::default();
    let mut s = raw::connect(broker);
    let response: ListPartitionReassignmentsResponse =
        raw::call(&mut s, ApiKey::ListPartitionReassignments, 0, 1, &request);
    let ids = |list: &[BrokerId]| list.iter().map(|b| b.0).collect::<Vec<i32>>();
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect()
}

/// ElectLeaders (v2) for partition 0 of `topic`; its error code.
fn elect(broker: &Broker, topic: &str, election_type: i8) -> i16 {
    let mut partitions = TopicPartitions::default();
    partitions.topic = name(topic);
    partitions.partitions = vec![0];
    let mut request = ElectLeadersRequest::default();
    request.election_type = election_type;
    request.topic_partitions = Some(vec![partitions]);
    request.timeout_ms = 10_000;
    let mut s = raw::connect(broker);
    let response: ElectLeadersResponse = raw::call(&mut s, ApiKey::ElectLeaders, 2, 1, &request);
    assert_eq!(response.error_code, 0);
    response.replica_election_results[0].partition_result[0].error_code
}

fn create(bootstrap: &str, topic: &str, replicas: i32) {
    let new =
        NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)).set("min.insync.replicas", "1");
    let created = futures_lite::future::block_on(
        admin(bootstrap).create_topics(&[new], &AdminOptions::new()),
    )
    .expect("create_topics");
    created[0].as_ref().expect("created");
}

/// A partition on two of three nodes moves off its leader onto the third while a producer
/// writes: the new replica copies, joins the ISR, and the old one leaves and deletes its copy;
/// the new replica leads (the first of the target in sync), and every acknowledged record is
/// read back from it. A reassignment is listed while it runs; one onto an unknown node, or a
/// cancel with none running, is refused.
#[test]
fn a_partition_moves_to_another_node_while_a_producer_writes() {
    let (mut cluster, bootstrap) = three_nodes();
    create(&bootstrap, "moving", 2);
    let replicas = |cluster: &mut Cluster, id: usize| {
        let view = cluster.view(id);
        let found = view.replicas.iter().find(|(n, _)| n == "moving");
        found.map(|(_, r)| r[0].clone()).unwrap_or_default()
    };
    let mut before = replicas(&mut cluster, 1);
    while before.len() != 2 {
        std::thread::sleep(Duration::from_millis(100));
        before = replicas(&mut cluster, 1);
    }
    let mut isr = before.clone();
    isr.sort();
    let leader = cluster.await_isr(&[1, 2, 3], "moving", 0, &isr);
    let other = *before.iter().find(|&&id| id != leader).unwrap();
    let third = (1..=3).find(|id| !before.contains(id)).unwrap();

    // A reassignment onto a node that does not exist is refused; one cancelled returns.
    assert_eq!(
        reassign(cluster.node(1), "moving", Some(vec![third, 9])),
        39
    );
    assert_eq!(reassign(cluster.node(1), "moving", None), 85);

    let writing = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicUsize::new(0));
    let wait_rounds = |rounds: &AtomicUsize, at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rounds.load(Ordering::Relaxed) < at_least {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let writer = {
        let (writing, rounds, bootstrap) = (writing.clone(), rounds.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let producer = idempotent_writer(&bootstrap);
            let mut acked: Vec<Acked> = Vec::new();
            let mut round = 0;
            while writing.load(Ordering::Relaxed) {
                let (ok, errors) = send(&producer, "moving", &format!("r{round}"), 20);
                assert!(errors.is_empty(), "round {round}: {errors:?}");
                acked.extend(ok);
                round += 1;
                rounds.store(round, Ordering::Relaxed);
            }
            acked
        })
    };
    wait_rounds(&rounds, 3);
    let target = vec![third, other];
    assert_eq!(reassign(cluster.node(2), "moving", Some(target.clone())), 0);
    let running = reassignments(cluster.node(3));
    // Listed until the new replica is in sync (it may already be done).
    if let Some((_, _, all, adding, removing)) = running.iter().find(|r| r.0 == "moving") {
        assert_eq!(
            (adding.clone(), removing.clone()),
            (vec![third], vec![leader])
        );
        assert_eq!(all.clone(), vec![third, other, leader]);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let done = (1..=3).all(|id| replicas(&mut cluster, id) == target);
        if done && reassignments(cluster.node(1)).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never moved: {:?}",
            reassignments(cluster.node(1))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut in_sync = target.clone();
    in_sync.sort();
    assert_eq!(cluster.await_isr(&[1, 2, 3], "moving", 0, &in_sync), third);
    // Writes go on through the new leader.
    wait_rounds(&rounds, rounds.load(Ordering::Relaxed) + 3);
    writing.store(false, Ordering::Relaxed);
    let mut acked = writer.join().expect("the writer");
    // The node it left deletes its copy.
    let left = cluster.node(leader as usize).data_dir().join("moving-0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while left.exists() {
        assert!(Instant::now() < deadline, "{} still there", left.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Read back through the new leader: the moved copy holds everything acknowledged.
    acked.sort_by_key(|a| a.1);
    check_acknowledged(&bootstrap, "moving", &acked);
}

/// With automatic rebalancing off, a leader killed and back in sync stays a follower until
/// ElectLeaders (preferred) gives the partition back to it; asked again, no election is needed.
#[test]
fn elect_leaders_gives_the_partition_back_to_its_preferred_replica() {
    let sets: Vec<&str> = THREE_NODES
        .iter()
        .copied()
        .chain(["auto.leader.rebalance.enable=false"])
        .collect();
    let (mut cluster, bootstrap) = Cluster::start(3, &sets).formed();
    create(&bootstrap, "elected", 3);
    let preferred = cluster.await_isr(&[1, 2, 3], "elected", 0, &[1, 2, 3]) as usize;
    cluster.kill9(preferred);
    let others: Vec<usize> = (1..=3).filter(|&id| id != preferred).collect();
    let isr: Vec<i32> = others.iter().map(|&id| id as i32).collect();
    let interim = cluster.await_isr(&others, "elected", 0, &isr);
    let writer = idempotent_writer(&bootstrap);
    let (mut acked, errors) = send(&writer, "elected", "while-away", 20);
    assert!(errors.is_empty(), "{errors:?}");
    cluster.restart(preferred);
    assert_eq!(
        cluster.await_isr(&[1, 2, 3], "elected", 0, &[1, 2, 3]),
        interim
    );
    assert_eq!(elect(cluster.node(others[0]), "elected", 0), 0);
    assert_eq!(
        cluster.await_isr(&[1, 2, 3], "elected", 0, &[1, 2, 3]) as usize,
        preferred
    );
    assert_eq!(
        elect(cluster.node(others[1]), "elected", 0),
        84,
        "ELECTION_NOT_NEEDED"
    );
    // Unclean: the partition has a live leader, so none is needed either.
    assert_eq!(elect(cluster.node(others[1]), "elected", 1), 84);
    let (ok, errors) = send(&writer, "elected", "back", 20);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);
    check_acknowledged(&bootstrap, "elected", &acked);
}

/// A topic created with its replicas named (kafka-topics' `--replica-assignment`) lives on those
/// nodes, the first of each list leading, and takes acks=all writes; partitions added with
/// named replicas likewise. A list naming an unknown node, or a count that does not match, is
/// refused with INVALID_REPLICA_ASSIGNMENT and nothing is created.
#[test]
fn replicas_named_by_the_client_are_where_partitions_live() {
    let (mut cluster, bootstrap) = three_nodes();
    let client = admin(&bootstrap);
    let options = AdminOptions::new();
    let named = NewTopic::new("named", 2, TopicReplication::Variable(&[&[2, 3], &[3, 1]]));
    let created = block_on(client.create_topics(&[named], &options)).expect("create_topics");
    created[0].as_ref().expect("created");
    let unknown = NewTopic::new("nowhere", 1, TopicReplication::Variable(&[&[1, 9]]));
    let refused = block_on(client.create_topics(&[unknown], &options)).expect("create_topics");
    assert_eq!(
        refused[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicaAssignment
    );
    let layout = |cluster: &mut Cluster, id: usize, topic: &str| {
        let view = cluster.view(id);
        let found = view.replicas.iter().find(|(n, _)| n == topic);
        found.map(|(_, r)| r.clone()).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while (1..=3).any(|id| layout(&mut cluster, id, "named") != [vec![2, 3], vec![3, 1]]) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            layout(&mut cluster, 1, "named")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(layout(&mut cluster, 1, "nowhere").is_empty());
    assert_eq!(cluster.await_isr(&[1, 2, 3], "named", 0, &[2, 3]), 2);
    assert_eq!(cluster.await_isr(&[1, 2, 3], "named", 1, &[1, 3]), 3);

    let grow = NewPartitions::new("named", 3).assign(&[&[1, 2]]);
    let grown = block_on(client.create_partitions(&[grow], &options)).expect("create_partitions");
    grown[0].as_ref().expect("grown");
    let short = NewPartitions::new("named", 5).assign(&[&[1, 2]]);
    let refused =
        block_on(client.create_partitions(&[short], &options)).expect("create_partitions");
    assert_eq!(
        refused[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicaAssignment
    );
    assert_eq!(cluster.await_isr(&[1, 2, 3], "named", 2, &[1, 2]), 1);
    assert_eq!(layout(&mut cluster, 3, "named").len(), 3);

    let writer = idempotent_writer(&bootstrap);
    let (acked, errors) = send(&writer, "named", "on-2-and-3", 20);
    assert!(errors.is_empty(), "{errors:?}");
    // Node 1 holds no copy of partition 0; nodes 2 and 3 do.
    assert!(!cluster.node(1).data_dir().join("named-0").exists());
    assert!(cluster.node(3).data_dir().join("named-0").exists());
    check_acknowledged(&bootstrap, "named", &acked);
}
