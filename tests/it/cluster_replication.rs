//! Records copied between nodes (issue 20): a topic with three replicas on three real nodes,
//! written by an idempotent acks=all producer while its leader is killed with `kill -9`; a
//! follower in the ISR takes over, the producer carries on by itself, the killed node comes back,
//! cuts what it must, catches up and rejoins the ISR, and every acknowledged record is read back
//! at its acknowledged offset, once, in order. And min.insync.replicas: with a follower gone, a
//! topic that needs three in sync refuses acks=all (NOT_ENOUGH_REPLICAS) and takes acks=1.

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::kit::client::{admin, consumer, producer, read_n};
use crate::kit::cluster::{check_acknowledged, Acked, Cluster};

pub(crate) fn create_replicated(addr: &str, name: &str, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(3));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results =
        futures_lite::future::block_on(admin(addr).create_topics(&[topic], &AdminOptions::new()))
            .expect("create_topics");
    results[0].as_ref().expect("created");
}

/// Sends `count` records to partition 0 of `topic`, tagged `tag-i`; the acknowledged ones
/// (partition, offset, value) and the errors of the others.
pub(crate) fn send(
    producer: &FutureProducer,
    topic: &str,
    tag: &str,
    count: usize,
) -> (Vec<Acked>, Vec<RDKafkaErrorCode>) {
    let futures: Vec<_> = (0..count)
        .map(|i| {
            let value = format!("{tag}-{i}").into_bytes();
            let record: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(topic)
                .partition(0)
                .key("k")
                .payload(&value);
            let future = producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue");
            (value, future)
        })
        .collect();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for (value, future) in futures {
        match futures_lite::future::block_on(future).expect("not cancelled") {
            Ok((partition, offset)) => acked.push((partition, offset, value)),
            Err((e, _)) => errors.push(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)),
        }
    }
    (acked, errors)
}

/// What the replication tests' nodes are given: a silent broker is fenced after 2 s, a follower
/// behind for 3 s leaves the ISR.
pub(crate) const THREE_NODES: [&str; 3] = [
    "num.partitions=1",
    "broker.session.timeout.ms=2000",
    "replica.lag.time.max.ms=3000",
];

/// Three nodes set as [`THREE_NODES`], formed, and their bootstrap list.
pub(crate) fn three_nodes() -> (Cluster, String) {
    Cluster::start(3, &THREE_NODES).formed()
}

/// An idempotent acks=all producer that rides over faults.
pub(crate) fn idempotent_writer(bootstrap: &str) -> FutureProducer {
    producer(
        bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "30000"),
            // A paused or cut-off broker holds its connections open and answers nothing: the
            // leader gives up waiting for its followers in 5 s, and librdkafka gives up on a
            // request in flight (socket.timeout.ms, 60 s by default) in 5 s and retries where
            // the leader is then.
            ("request.timeout.ms", "5000"),
            ("socket.timeout.ms", "5000"),
        ],
    )
}

#[test]
fn an_rf3_topic_outlives_its_leader_killed_kill9_and_the_leader_rejoins() {
    let (mut cluster, bootstrap) = three_nodes();
    create_replicated(&bootstrap, "copied", &[("min.insync.replicas", "2")]);
    let leader = cluster.await_isr(&[1, 2, 3], "copied", 0, &[1, 2, 3]) as usize;

    let writer = idempotent_writer(&bootstrap);
    let mut acked: Vec<Acked> = Vec::new();
    for round in 0..3 {
        let (ok, errors) = send(&writer, "copied", &format!("before{round}"), 50);
        assert!(errors.is_empty(), "{errors:?}");
        acked.extend(ok);
    }
    // Every replica has it: the high watermark (what a consumer may read) passed it all.
    check_acknowledged(&bootstrap, "copied", &acked);

    cluster.kill9(leader);
    let survivors: Vec<usize> = (1..=3).filter(|&id| id != leader).collect();
    let mut expected: Vec<i32> = survivors.iter().map(|&id| id as i32).collect();
    expected.sort();
    // Writes go on through the failover: the producer finds the new leader by itself.
    let (during, _) = send(&writer, "copied", "during", 50);
    acked.extend(during);
    let next = cluster.await_isr(&survivors, "copied", 0, &expected) as usize;
    assert_ne!(next, leader);
    for round in 0..2 {
        let (ok, errors) = send(&writer, "copied", &format!("after{round}"), 50);
        assert!(errors.is_empty(), "{errors:?}");
        acked.extend(ok);
    }
    acked.sort_by_key(|a| a.1);
    check_acknowledged(&bootstrap, "copied", &acked);

    // The old leader returns as a follower: its stored image still names it leader, but it
    // leads nothing until its registration in this run is committed (and by then it follows):
    // a write sent to it at once is refused, not taken and later cut.
    cluster.restart(leader);
    // Nor does its Metadata name it leader from that image (no leader until it caught up).
    let named = cluster.view(leader).partition("copied", 0).map(|(l, _)| l);
    assert_ne!(
        named,
        Some(leader as i32),
        "the restarted node names itself leader"
    );
    let answer = produce_v10(cluster.node(leader), "copied", 1);
    assert_eq!(
        answer.responses[0].partition_responses[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER from the restarted node"
    );
    cluster.await_isr(&[1, 2, 3], "copied", 0, &[1, 2, 3]);
    let (ok, errors) = send(&writer, "copied", "rejoined", 50);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);
    check_acknowledged(&bootstrap, "copied", &acked);

    // The leader of the moment dies too: the two left (the rejoined node among them) elect one
    // of themselves, and nothing acknowledged is missing.
    cluster.kill9(next);
    let left: Vec<usize> = (1..=3).filter(|&id| id != next).collect();
    let mut expected: Vec<i32> = left.iter().map(|&id| id as i32).collect();
    expected.sort();
    cluster.await_isr(&left, "copied", 0, &expected);
    let addrs: Vec<String> = left
        .iter()
        .map(|&id| cluster.node(id).addr.clone())
        .collect();
    check_acknowledged(&addrs.join(","), "copied", &acked);
}

/// A raw Produce v10 of one record to partition 0 of `topic` on `broker`.
fn produce_v10(
    broker: &mut crate::kit::broker::Broker,
    topic: &str,
    acks: i16,
) -> kafka_protocol::messages::ProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use sluice::model::records::simple_batch;
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(simple_batch(1, 10, sluice::model::Codec::None));
    let mut data = TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.to_string()));
    data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5_000;
    request.topic_data = vec![data];
    let mut s = crate::kit::raw::connect(broker);
    crate::kit::raw::call(&mut s, ApiKey::Produce, 10, 1, &request)
}

/// A raw Fetch v16 (topics by id) of partition 0 of `topic` from offset 0 on `broker`.
fn fetch_v16(
    broker: &mut crate::kit::broker::Broker,
    topic: &str,
) -> kafka_protocol::messages::FetchResponse {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{
        ApiKey, FetchRequest, MetadataRequest, MetadataResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let mut s = crate::kit::raw::connect(broker);
    let mut wanted = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![wanted]);
    let known: MetadataResponse = crate::kit::raw::call(&mut s, ApiKey::Metadata, 12, 1, &metadata);
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.partition_max_bytes = 1 << 20;
    let mut entry = FetchTopic::default();
    entry.topic_id = known.topics[0].topic_id;
    entry.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.max_wait_ms = 0;
    request.max_bytes = 1 << 20;
    request.topics = vec![entry];
    crate::kit::raw::call(&mut s, ApiKey::Fetch, 16, 2, &request)
}

#[test]
fn a_clean_shutdown_hands_its_leaderships_over_before_it_stops() {
    // The default session timeout (9 s): only the controlled shutdown can move the leader sooner.
    let (mut cluster, bootstrap) = Cluster::start(3, &["num.partitions=1"]).formed();
    create_replicated(&bootstrap, "handed", &[("min.insync.replicas", "2")]);
    let leader = cluster.await_isr(&[1, 2, 3], "handed", 0, &[1, 2, 3]) as usize;
    let writer = producer(
        &bootstrap,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    let (mut acked, errors) = send(&writer, "handed", "before", 50);
    assert!(errors.is_empty(), "{errors:?}");

    let stopping = std::time::Instant::now();
    cluster.node(leader).stop();
    let survivors: Vec<usize> = (1..=3).filter(|&id| id != leader).collect();
    let view = cluster.view(survivors[0]);
    let (now, isr) = view.partition("handed", 0).expect("listed");
    assert!(
        now >= 0 && now != leader as i32 && !isr.contains(&(leader as i32)),
        "the leadership moved before the node stopped: {view:?}"
    );
    // KIP-951: a node that does not lead names the leader in its NOT_LEADER_OR_FOLLOWER.
    let other = *survivors.iter().find(|&&id| id as i32 != now).unwrap();
    let answer = produce_v10(cluster.node(other), "handed", -1);
    let p = &answer.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, now);
    let leader_port = cluster
        .node(now as usize)
        .addr
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        answer
            .node_endpoints
            .iter()
            .any(|n| n.node_id.0 == now && n.port.to_string() == leader_port),
        "{:?}",
        answer.node_endpoints
    );
    // And so does its Fetch (v12+ the leader, v16 its address).
    let fetched = fetch_v16(cluster.node(other), "handed");
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, now);
    assert!(
        fetched
            .node_endpoints
            .iter()
            .any(|n| n.node_id.0 == now && n.port.to_string() == leader_port),
        "{:?}",
        fetched.node_endpoints
    );
    let (ok, errors) = send(&writer, "handed", "after", 50);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(8),
        "writes resumed within the session timeout: {:?}",
        stopping.elapsed()
    );
    acked.extend(ok);
    cluster.restart(leader);
    cluster.await_isr(&[1, 2, 3], "handed", 0, &[1, 2, 3]);
    check_acknowledged(&bootstrap, "handed", &acked);
}

#[test]
fn min_insync_replicas_refuses_acks_all_and_takes_acks_1_with_a_follower_down() {
    let (mut cluster, bootstrap) = Cluster::start(
        3,
        &[
            "num.partitions=1",
            "broker.session.timeout.ms=2000",
            "replica.lag.time.max.ms=2000",
        ],
    )
    .formed();
    create_replicated(&bootstrap, "two", &[("min.insync.replicas", "2")]);
    create_replicated(&bootstrap, "three", &[("min.insync.replicas", "3")]);
    let leader = cluster.await_isr(&[1, 2, 3], "three", 0, &[1, 2, 3]) as usize;
    cluster.await_isr(&[1, 2, 3], "two", 0, &[1, 2, 3]);
    // A follower of "three" goes down (not its leader; the same node follows or leads "two").
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    cluster.kill9(follower);
    let up: Vec<usize> = (1..=3).filter(|&id| id != follower).collect();
    let mut isr: Vec<i32> = up.iter().map(|&id| id as i32).collect();
    isr.sort();
    cluster.await_isr(&up, "three", 0, &isr);
    cluster.await_isr(&up, "two", 0, &isr);

    let quick = [
        ("acks", "all"),
        ("message.timeout.ms", "3000"),
        ("retries", "0"),
    ];
    let all = producer(&bootstrap, &quick);
    let (ok, _) = send(&all, "two", "two", 10);
    assert_eq!(ok.len(), 10, "ISR 2 meets min.insync.replicas=2");
    let (ok, errors) = send(&all, "three", "three", 5);
    assert!(ok.is_empty(), "{ok:?}");
    assert!(
        errors
            .iter()
            .all(|e| *e == RDKafkaErrorCode::NotEnoughReplicas),
        "{errors:?}"
    );
    let one = producer(&bootstrap, &[("acks", "1"), ("message.timeout.ms", "5000")]);
    let (ok, errors) = send(&one, "three", "one", 5);
    assert_eq!((ok.len(), errors.len()), (5, 0), "{errors:?}");
    // The leader's metrics say so (what operators alert on).
    let admin = cluster
        .node(leader)
        .admin
        .clone()
        .expect("an admin listener");
    let metric = |name: &str| {
        let scraped = crate::admin_api::scrape(&admin);
        crate::admin_api::value(&scraped, name, &[]).unwrap_or(0.0)
    };
    assert!(metric("kafka_server_replicamanager_underminisrpartitioncount") >= 1.0);
    assert!(metric("kafka_server_replicamanager_underreplicatedpartitions") >= 1.0);
    assert!(metric("kafka_server_replicamanager_isrshrinks_total") >= 1.0);

    // The follower returns: writes with acks=all go through again.
    cluster.restart(follower);
    cluster.await_isr(&[1, 2, 3], "three", 0, &[1, 2, 3]);
    let retrying = producer(
        &bootstrap,
        &[("acks", "all"), ("message.timeout.ms", "10000")],
    );
    let (ok, errors) = send(&retrying, "three", "back", 5);
    assert_eq!((ok.len(), errors.len()), (5, 0), "{errors:?}");
    assert!(metric("kafka_server_replicamanager_isrexpands_total") >= 1.0);
    assert_eq!(
        metric("kafka_server_replicamanager_underminisrpartitioncount"),
        0.0
    );
}

/// A consumer group and a transactional producer whose coordinators' node is killed with
/// `kill -9`: `__consumer_offsets` and `__transaction_state` have three replicas, a follower of
/// their partition leads them next and loads the groups and transactions from its copy; the group
/// resumes at its committed offset and the producer commits its next transaction.
#[test]
fn a_group_and_a_transaction_carry_on_across_their_coordinator_killed_kill9() {
    use crate::kafka_transactions::{read_all, send as send_values, txn_producer, values};
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::producer::Producer;
    const T: std::time::Duration = std::time::Duration::from_secs(30);

    let (mut cluster, bootstrap) =
        Cluster::start(3, &["num.partitions=1", "broker.session.timeout.ms=2000"]).formed();
    create_replicated(&bootstrap, "work", &[("min.insync.replicas", "2")]);
    cluster.await_isr(&[1, 2, 3], "work", 0, &[1, 2, 3]);
    let group_partition = sluice::group::offsets_partition("carry", 50) as usize;
    let coordinator = cluster.await_isr(
        &[1, 2, 3],
        "__consumer_offsets",
        group_partition,
        &[1, 2, 3],
    ) as usize;

    let writer = producer(&bootstrap, &[("acks", "all")]);
    let (acked, errors) = send(&writer, "work", "w", 20);
    assert!(errors.is_empty(), "{errors:?}");
    let group_config = [("group.id", "carry"), ("auto.offset.reset", "earliest")];
    let group = consumer(&bootstrap, &group_config);
    group.subscribe(&["work"]).unwrap();
    let first = read_n(&group, 10);
    assert_eq!(first[9].offset, acked[9].1);
    group.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(group);

    // A transactional id whose coordinator is on the same node as the group's.
    drop(txn_producer(&bootstrap, "warm-up", &[]));
    let txn_id = (0..)
        .map(|i| format!("carry-{i}"))
        .find(|id| {
            let p = sluice::txn::txn_partition(id, 50) as usize;
            cluster.await_isr(&[1, 2, 3], "__transaction_state", p, &[1, 2, 3]) as usize
                == coordinator
        })
        .unwrap();
    let txn = txn_producer(&bootstrap, &txn_id, &[]);
    txn.begin_transaction().unwrap();
    send_values(&txn, "work", &values("t1", 5));
    txn.commit_transaction(T).unwrap();

    cluster.kill9(coordinator);
    let survivors: Vec<usize> = (1..=3).filter(|&id| id != coordinator).collect();
    let mut isr: Vec<i32> = survivors.iter().map(|&id| id as i32).collect();
    isr.sort();
    cluster.await_isr(&survivors, "__consumer_offsets", group_partition, &isr);

    let group = consumer(&bootstrap, &group_config);
    group.subscribe(&["work"]).unwrap();
    let rest = read_n(&group, 10);
    assert_eq!(
        rest[0].offset, acked[10].1,
        "resumed at the committed offset"
    );
    drop(group);

    txn.begin_transaction().unwrap();
    send_values(&txn, "work", &values("t2", 5));
    txn.commit_transaction(T).unwrap();
    let addrs: Vec<String> = survivors
        .iter()
        .map(|&id| cluster.node(id).addr.clone())
        .collect();
    let committed = read_all(&addrs.join(","), "work", 1, "read_committed");
    let mut expected: Vec<String> = (0..20).map(|i| format!("w-{i}")).collect();
    expected.extend(values("t1", 5));
    expected.extend(values("t2", 5));
    expected.sort();
    assert_eq!(committed, expected);
}

/// The leader paused (SIGSTOP) past the session timeout while an idempotent acks=all producer
/// writes: a replica in sync takes over, the producer carries on, and the old leader, resumed,
/// follows, cuts whatever it had that was never committed, and is back in the ISR; every
/// acknowledged record is read back once, in order, at its offset.
#[test]
fn a_leader_paused_past_its_session_loses_the_lead_and_rejoins_after_resume() {
    let (cluster, bootstrap) = three_nodes();
    outlive_a_stalled_leader(
        cluster,
        &bootstrap,
        "paused",
        Cluster::pause,
        Cluster::resume,
    );
}

/// The leader stalled by `stall` (its connections open, nothing answered) while an idempotent
/// acks=all producer writes to `topic`: the others fence it, one of them leads, the producer
/// carries on; after `recover` the old leader follows, cuts what was never committed and rejoins
/// the ISR. Every acknowledged record is read back once, in order, at its offset, then through
/// the old leader alone (the others stopped, it leads): its log holds all of them.
pub(crate) fn outlive_a_stalled_leader(
    mut cluster: Cluster,
    bootstrap: &str,
    topic: &str,
    stall: fn(&mut Cluster, usize),
    recover: fn(&mut Cluster, usize),
) {
    create_replicated(bootstrap, topic, &[("min.insync.replicas", "2")]);
    let leader = cluster.await_isr(&[1, 2, 3], topic, 0, &[1, 2, 3]) as usize;
    let writer = idempotent_writer(bootstrap);
    let (mut acked, errors) = send(&writer, topic, "before", 50);
    assert!(errors.is_empty(), "{errors:?}");

    stall(&mut cluster, leader);
    let others: Vec<usize> = (1..=3).filter(|&id| id != leader).collect();
    let mut isr: Vec<i32> = others.iter().map(|&id| id as i32).collect();
    isr.sort();
    let (during, _) = send(&writer, topic, "during", 50);
    acked.extend(during);
    let next = cluster.await_isr(&others, topic, 0, &isr);
    assert_ne!(next as usize, leader);
    let (ok, errors) = send(&writer, topic, "after", 50);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);

    recover(&mut cluster, leader);
    cluster.await_isr(&[1, 2, 3], topic, 0, &[1, 2, 3]);
    let (ok, errors) = send(&writer, topic, "recovered", 50);
    assert!(errors.is_empty(), "{errors:?}");
    acked.extend(ok);
    acked.sort_by_key(|a| a.1);
    check_acknowledged(bootstrap, topic, &acked);
    for &id in &others {
        cluster.node(id).stop();
    }
    let alone = cluster.node(leader).addr.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.view(leader).partition(topic, 0).map(|(l, _)| l) != Some(leader as i32) {
        assert!(
            std::time::Instant::now() < deadline,
            "the recovered node never led"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    check_acknowledged(&alone, topic, &acked);
}

/// With `auto.leader.rebalance.enable` (the default) the leader killed and restarted leads its
/// partition again once it is back in sync: the preferred replica (the first) is the leader.
#[test]
fn the_preferred_leader_leads_again_once_back_in_sync() {
    let (mut cluster, bootstrap) = Cluster::start(
        3,
        &[
            "num.partitions=1",
            "broker.session.timeout.ms=2000",
            "leader.imbalance.check.interval.seconds=1",
        ],
    )
    .formed();
    create_replicated(&bootstrap, "preferred", &[]);
    let preferred = cluster.await_isr(&[1, 2, 3], "preferred", 0, &[1, 2, 3]) as usize;
    cluster.kill9(preferred);
    let others: Vec<usize> = (1..=3).filter(|&id| id != preferred).collect();
    let mut isr: Vec<i32> = others.iter().map(|&id| id as i32).collect();
    isr.sort();
    assert_ne!(
        cluster.await_isr(&others, "preferred", 0, &isr) as usize,
        preferred
    );
    cluster.restart(preferred);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // Every node agrees (the restarted one's Metadata shows its stored image at first).
        let now: Vec<_> = (1..=3)
            .map(|id| cluster.view(id).partition("preferred", 0))
            .collect();
        if now
            .iter()
            .all(|v| v == &Some((preferred as i32, vec![1, 2, 3])))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {now:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
