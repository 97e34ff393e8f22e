//! Consumer groups with librdkafka consumers: assignors, rebalances, session expiry, commits that
//! survive restarts, admin operations, many groups over the shards.

use crate::kit::{broker, client, raw};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::Broker;
use client::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const GROUP_SETTINGS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=1000",
];

fn member(addr: &str, group: &str, assignor: &str) -> BaseConsumer {
    let c = consumer(
        addr,
        &[
            ("group.id", group),
            ("partition.assignment.strategy", assignor),
            ("heartbeat.interval.ms", "200"),
            ("session.timeout.ms", "6000"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    c.subscribe(&["shared"]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|l| l.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until their assignments are disjoint, non-empty and cover `partitions`.
fn settle(consumers: &[&BaseConsumer], partitions: i32) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if total == partitions as usize
            && union.len() == partitions as usize
            && sets.iter().all(|s| !s.is_empty())
        {
            return sets;
        }
        assert!(Instant::now() < deadline, "no settled assignment: {sets:?}");
    }
}

#[test]
fn members_split_partitions_with_every_assignor_and_rebalance() {
    let broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 4, &[]);
    for assignor in ["range", "roundrobin", "cooperative-sticky"] {
        let group = format!("split-{assignor}");
        let a = member(&broker.addr, &group, assignor);
        let b = member(&broker.addr, &group, assignor);
        let sets = settle(&[&a, &b], 4);
        assert_eq!(
            sets.iter().map(BTreeSet::len).sum::<usize>(),
            4,
            "{assignor}"
        );
        // A third member joins: partitions move to it.
        let c = member(&broker.addr, &group, assignor);
        let sets = settle(&[&a, &b, &c], 4);
        assert!(!sets[2].is_empty(), "{assignor}: {sets:?}");
        // One leaves: the other two cover everything again.
        drop(b);
        settle(&[&a, &c], 4);
    }
}

#[test]
fn a_member_that_stops_heartbeating_is_expelled() {
    if broker::single_node_only("raw group requests to node 1, which may not coordinate the group")
    {
        return;
    }
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{
        ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, JoinGroupRequest,
        JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 2, &[]);
    let mut s = raw::connect(&broker);
    let join = |s: &mut std::net::TcpStream, member: &str| -> JoinGroupResponse {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = StrBytes::from_static_str("range");
        protocol.metadata = bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0, 1, 0, 6, b's', b'h', b'a', b'r', b'e', b'd', 0, 0, 0, 0,
        ]);
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("silent"));
        request.session_timeout_ms = 1_000;
        request.rebalance_timeout_ms = 1_000;
        request.member_id = StrBytes::from_string(member.to_string());
        request.protocol_type = StrBytes::from_static_str("consumer");
        request.protocols = vec![protocol];
        raw::call(s, ApiKey::JoinGroup, 5, 1, &request)
    };
    // KIP-394: the first join gets MEMBER_ID_REQUIRED and an id to join with.
    let first = join(&mut s, "");
    assert_eq!(first.error_code, 79);
    let joined = join(&mut s, first.member_id.as_str());
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id);
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("silent"));
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    // Before the member's last sign of life (its sync): the session cannot end sooner than 1 s
    // after this.
    let silent_since = std::time::Instant::now();
    let synced: SyncGroupResponse = raw::call(&mut s, ApiKey::SyncGroup, 3, 2, &sync);
    assert_eq!(synced.error_code, 0);
    let describe = |s: &mut std::net::TcpStream| -> (String, usize) {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(StrBytes::from_static_str("silent"))];
        let response: DescribeGroupsResponse = raw::call(s, ApiKey::DescribeGroups, 5, 3, &request);
        let g = &response.groups[0];
        (g.group_state.to_string(), g.members.len())
    };
    assert_eq!(describe(&mut s), ("Stable".to_string(), 1));
    // No heartbeats: once the 1 s session timeout has passed (not before), the member is gone.
    let deadline = silent_since + Duration::from_secs(10);
    while describe(&mut s).0 == "Stable" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(describe(&mut s), ("Empty".to_string(), 0));
    assert!(silent_since.elapsed() >= Duration::from_millis(1_000));
}

#[test]
fn commits_survive_a_restart_and_a_new_member_resumes() {
    let mut broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 1, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    let sent: Vec<Sent> = (0..20).map(|i| Sent::new("k", &format!("v{i}"))).collect();
    produce(&producer, "shared", Some(0), &sent).unwrap();
    {
        let c = member(&broker.addr, "resume", "range");
        let got = read_n(&c, 8);
        assert_eq!(got[0].offset, 0);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("shared", 0, Offset::Offset(8))
            .unwrap();
        c.commit(&list, CommitMode::Sync).expect("commit");
        let committed = c.committed(TIMEOUT).expect("committed");
        assert_eq!(committed.elements()[0].offset(), Offset::Offset(8));
    }
    broker.stop();
    broker.restart();
    let c = member(&broker.addr, "resume", "range");
    let got = read_n(&c, 12);
    assert_eq!(got[0].offset, 8, "resumed from the committed offset");
    assert_eq!(got.last().unwrap().offset, 19);
}

#[test]
fn two_groups_each_get_every_message_and_auto_commit() {
    let broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 3, &[]);
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    for p in 0..3 {
        let sent: Vec<Sent> = (0..10)
            .map(|i| Sent::new("k", &format!("{p}-{i}")))
            .collect();
        produce(&producer, "shared", Some(p), &sent).unwrap();
    }
    for group in ["first", "second"] {
        let c = consumer(
            &broker.addr,
            &[
                ("group.id", group),
                ("auto.offset.reset", "earliest"),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "100"),
            ],
        );
        c.subscribe(&["shared"]).unwrap();
        let got = read_n(&c, 30);
        let values: BTreeSet<Vec<u8>> = got.iter().filter_map(|g| g.sent.value.clone()).collect();
        assert_eq!(values.len(), 30, "{group}");
        // Auto commit stores the positions.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let _ = c.poll(Duration::from_millis(100));
            let committed = c.committed(TIMEOUT).unwrap();
            let done = committed
                .elements()
                .iter()
                .filter(|e| e.offset() == Offset::Offset(10))
                .count();
            if done == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "auto commit: {committed:?}");
        }
    }
}

#[test]
fn groups_are_listed_described_and_deleted_through_the_admin_api() {
    use futures_lite::future::block_on;
    use rdkafka::admin::AdminOptions;
    let broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 2, &[]);
    let active = member(&broker.addr, "active", "range");
    settle(&[&active], 2);
    // A group with only committed offsets (a simple consumer's commit).
    {
        let c = consumer(&broker.addr, &[("group.id", "parked")]);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("shared", 0, Offset::Offset(0))
            .unwrap();
        c.assign(&list).unwrap();
        c.commit(&list, CommitMode::Sync).expect("simple commit");
    }
    let groups = active.fetch_group_list(None, TIMEOUT).expect("list groups");
    let names: BTreeSet<&str> = groups.groups().iter().map(|g| g.name()).collect();
    assert!(
        names.contains("active") && names.contains("parked"),
        "{names:?}"
    );
    let described = active.fetch_group_list(Some("active"), TIMEOUT).unwrap();
    let g = &described.groups()[0];
    assert_eq!(g.state(), "Stable");
    assert_eq!(g.protocol(), "range");
    assert_eq!(g.members().len(), 1);
    let admin = admin(&broker.addr);
    let results =
        block_on(admin.delete_groups(&["parked", "active", "nobody"], &AdminOptions::new()))
            .unwrap();
    let codes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.1))
        .collect();
    assert_eq!(codes[0], None, "an empty group is deleted");
    assert_eq!(
        codes[1],
        Some(rdkafka::types::RDKafkaErrorCode::NonEmptyGroup)
    );
    assert_eq!(
        codes[2],
        Some(rdkafka::types::RDKafkaErrorCode::GroupIdNotFound)
    );
    let after = active.fetch_group_list(None, TIMEOUT).unwrap();
    assert!(after.groups().iter().all(|g| g.name() != "parked"));
}

#[test]
fn a_hundred_groups_spread_over_the_shards() {
    let broker = Broker::start(GROUP_SETTINGS);
    create_topic(&broker.addr, "shared", 1, &[]);
    for i in 0..100 {
        let group = format!("many-{i}");
        let c = consumer(&broker.addr, &[("group.id", &group)]);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("shared", 0, Offset::Offset(i))
            .unwrap();
        c.commit(&list, CommitMode::Sync).expect("commit");
        let mut query = TopicPartitionList::new();
        query.add_partition("shared", 0);
        let committed = c.committed_offsets(query, TIMEOUT).unwrap();
        assert_eq!(
            committed.elements()[0].offset(),
            Offset::Offset(i),
            "{group}"
        );
    }
    let shards = sluice::io::shard::available_cpus().len();
    let used: BTreeSet<sluice::model::ShardId> = (0..100)
        .map(|i| {
            let p = sluice::group::offsets_partition(&format!("many-{i}"), 50);
            sluice::shard::owner(
                &sluice::model::TopicPartition::new("__consumer_offsets", p),
                shards,
            )
        })
        .collect();
    assert_eq!(
        used.len(),
        shards,
        "every shard coordinates some of the groups"
    );
}

/// Raw JoinGroup v5 for topic `shared` with the range protocol.
fn raw_join(
    s: &mut std::net::TcpStream,
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_timeout_ms: i32,
) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupRequest};
    use kafka_protocol::protocol::StrBytes;
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = bytes::Bytes::from_static(&[
        0, 0, 0, 0, 0, 1, 0, 6, b's', b'h', b'a', b'r', b'e', b'd', 0, 0, 0, 0,
    ]);
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.session_timeout_ms = session_timeout_ms;
    request.rebalance_timeout_ms = 5_000;
    request.member_id = StrBytes::from_string(member.to_string());
    request.group_instance_id = instance.map(|i| StrBytes::from_string(i.to_string()));
    request.protocol_type = StrBytes::from_static_str("consumer");
    request.protocols = vec![protocol];
    raw::call(s, ApiKey::JoinGroup, 5, 1, &request)
}

fn raw_heartbeat(
    s: &mut std::net::TcpStream,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> i16 {
    use kafka_protocol::messages::{ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse};
    use kafka_protocol::protocol::StrBytes;
    let mut request = HeartbeatRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.generation_id = generation;
    request.member_id = StrBytes::from_string(member.to_string());
    request.group_instance_id = instance.map(|i| StrBytes::from_string(i.to_string()));
    let response: HeartbeatResponse = raw::call(s, ApiKey::Heartbeat, 4, 2, &request);
    response.error_code
}

#[test]
fn the_coordinator_answers_with_kafka_error_codes() {
    if broker::single_node_only("raw group requests to node 1, which may not coordinate the group (it answers NOT_COORDINATOR)") {
        return;
    }
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let mut settings = GROUP_SETTINGS.to_vec();
    settings.push("group.max.size=1");
    let broker = Broker::start(&settings);
    create_topic(&broker.addr, "shared", 2, &[]);
    let mut s = raw::connect(&broker);

    assert_eq!(
        raw_join(&mut s, "g", "", None, 500).error_code,
        26,
        "INVALID_SESSION_TIMEOUT below group.min.session.timeout.ms"
    );
    let first = raw_join(&mut s, "g", "", None, 10_000);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert_eq!(
        raw_join(&mut s, "g", "made-up", None, 10_000).error_code,
        25,
        "UNKNOWN_MEMBER_ID for an id the coordinator never gave"
    );
    let joined = raw_join(&mut s, "g", first.member_id.as_str(), None, 10_000);
    assert_eq!(joined.error_code, 0);
    let (me, generation) = (joined.member_id.to_string(), joined.generation_id);
    assert_eq!(
        raw_join(&mut s, "g", "", None, 10_000).error_code,
        81,
        "GROUP_MAX_SIZE_REACHED with group.max.size=1"
    );
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("g"));
    sync.generation_id = generation + 1;
    sync.member_id = StrBytes::from_string(me.clone());
    let stale: SyncGroupResponse = raw::call(&mut s, ApiKey::SyncGroup, 3, 3, &sync);
    assert_eq!(stale.error_code, 22, "ILLEGAL_GENERATION on sync");
    sync.generation_id = generation;
    let synced: SyncGroupResponse = raw::call(&mut s, ApiKey::SyncGroup, 3, 3, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(raw_heartbeat(&mut s, "g", generation, &me, None), 0);
    assert_eq!(raw_heartbeat(&mut s, "g", generation - 1, &me, None), 22);
    assert_eq!(raw_heartbeat(&mut s, "g", generation, "stranger", None), 25);
    assert_eq!(raw_heartbeat(&mut s, "nogroup", 1, "stranger", None), 25);

    // Commits check the member and generation; metadata and leader epoch come back.
    let commit = |s: &mut std::net::TcpStream, generation: i32, member: &str| {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 1;
        p.committed_offset = 42;
        p.committed_leader_epoch = 0;
        p.committed_metadata = Some(StrBytes::from_static_str("note"));
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("shared"));
        t.partitions = vec![p];
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("g"));
        request.generation_id_or_member_epoch = generation;
        request.member_id = StrBytes::from_string(member.to_string());
        request.topics = vec![t];
        let r: OffsetCommitResponse = raw::call(s, ApiKey::OffsetCommit, 8, 4, &request);
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut s, generation + 3, &me), 22);
    assert_eq!(commit(&mut s, generation, "stranger"), 25);
    assert_eq!(commit(&mut s, generation, &me), 0);

    // OffsetFetch v8, two groups in one request; partitions never committed answer -1.
    let mut topics = OffsetFetchRequestTopics::default();
    topics.name = TopicName(StrBytes::from_static_str("shared"));
    topics.partition_indexes = vec![0, 1];
    let mut mine = OffsetFetchRequestGroup::default();
    mine.group_id = GroupId(StrBytes::from_static_str("g"));
    mine.topics = Some(vec![topics]);
    let mut other = OffsetFetchRequestGroup::default();
    other.group_id = GroupId(StrBytes::from_static_str("never-seen"));
    let mut fetch = OffsetFetchRequest::default();
    fetch.groups = vec![mine, other];
    let fetched: OffsetFetchResponse = raw::call(&mut s, ApiKey::OffsetFetch, 8, 5, &fetch);
    assert_eq!(fetched.groups.len(), 2);
    let parts = &fetched.groups[0].topics[0].partitions;
    let by_index = |i: i32| parts.iter().find(|p| p.partition_index == i).unwrap();
    assert_eq!(by_index(0).committed_offset, -1);
    assert_eq!(by_index(1).committed_offset, 42);
    assert_eq!(by_index(1).committed_leader_epoch, 0);
    assert_eq!(by_index(1).metadata.as_deref(), Some("note"));
    assert_eq!(fetched.groups[1].error_code, 0);
    assert!(fetched.groups[1].topics.is_empty());

    // Static membership (KIP-345): a rejoin with the same group.instance.id fences the old id.
    let static_one = raw_join(&mut s, "st", "", Some("i-1"), 10_000);
    assert_eq!(
        static_one.error_code, 0,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let replaced = raw_join(&mut s, "st", "", Some("i-1"), 10_000);
    assert_eq!(replaced.error_code, 0);
    assert_ne!(replaced.member_id, static_one.member_id);
    assert_eq!(
        raw_heartbeat(
            &mut s,
            "st",
            replaced.generation_id,
            static_one.member_id.as_str(),
            Some("i-1")
        ),
        82,
        "FENCED_INSTANCE_ID"
    );
    assert_eq!(
        raw_join(
            &mut s,
            "st",
            static_one.member_id.as_str(),
            Some("i-1"),
            10_000
        )
        .error_code,
        82
    );

    // ListGroups v4 filters by state; FindCoordinator v4 answers batched keys.
    let mut list = ListGroupsRequest::default();
    list.states_filter = vec![StrBytes::from_static_str("CompletingRebalance")];
    let listed: ListGroupsResponse = raw::call(&mut s, ApiKey::ListGroups, 4, 6, &list);
    let names: BTreeSet<String> = listed
        .groups
        .iter()
        .map(|g| g.group_id.to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["st".to_string()]), "g is Stable");
    // v5 (KIP-848) names each group's type, and filters by it: every group here is classic.
    let mut list = ListGroupsRequest::default();
    list.types_filter = vec![StrBytes::from_static_str("Classic")];
    let listed: ListGroupsResponse = raw::call(&mut s, ApiKey::ListGroups, 5, 10, &list);
    assert!(listed.groups.len() >= 2, "{listed:?}");
    assert!(listed
        .groups
        .iter()
        .all(|g| g.group_type.as_str() == "classic"));
    list.types_filter = vec![StrBytes::from_static_str("consumer")];
    let listed: ListGroupsResponse = raw::call(&mut s, ApiKey::ListGroups, 5, 11, &list);
    assert!(
        listed.groups.is_empty(),
        "no group uses the consumer protocol"
    );
    let mut find = FindCoordinatorRequest::default();
    find.coordinator_keys = vec![
        StrBytes::from_static_str("g"),
        StrBytes::from_static_str("st"),
    ];
    let found: FindCoordinatorResponse = raw::call(&mut s, ApiKey::FindCoordinator, 4, 7, &find);
    assert_eq!(found.coordinators.len(), 2);
    assert!(found
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id == 0));
    find.key_type = 1;
    let txn: FindCoordinatorResponse = raw::call(&mut s, ApiKey::FindCoordinator, 4, 8, &find);
    assert!(
        txn.coordinators
            .iter()
            .all(|c| c.error_code == 0 && c.node_id == 0),
        "transaction coordinators are found too"
    );
    find.key_type = 2;
    let unknown: FindCoordinatorResponse = raw::call(&mut s, ApiKey::FindCoordinator, 4, 9, &find);
    assert!(
        unknown.coordinators.iter().all(|c| c.error_code == 42),
        "INVALID_REQUEST for an unknown key type"
    );
}
