//! The authorization matrix: every API the broker serves (but the ones every client may send:
//! ApiVersions and the SASL exchange) sent by a principal the ACLs allow and by one they do not,
//! over SASL connections that stay open. Each answer's error codes are collected: the denied
//! principal must get an authorization error for everything it asked (an unauthorized success
//! is counted), the allowed one none.

use std::collections::BTreeSet;
use std::net::TcpStream;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::kit::batches::batch;
use crate::kit::raw;
use crate::security_acl::code::*;
use crate::security_acl::{create_acls, guarded, operator};

/// TOPIC_, GROUP_, CLUSTER_ and TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
const AUTHORIZATION_ERRORS: [i16; 4] = [29, 30, 31, 53];
/// Stands for "left out of a listing": what filtering answers instead of an error.
const FILTERED: i16 = 29;

fn ask<Req: Encodable, Resp: Decodable>(s: &mut TcpStream, key: ApiKey, v: i16, r: &Req) -> Resp {
    raw::call(s, key, v, 7, r)
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

fn group(name: &str) -> GroupId {
    GroupId(s(name))
}

fn txn(name: &str) -> TransactionalId {
    TransactionalId(s(name))
}

/// The topic, group and transactional id every request is about.
const TOPIC_NAME: &str = "m-topic";
const GROUP_NAME: &str = "m-group";
const TXN_ID: &str = "m-txn";

type Case = (&'static str, fn(&mut TcpStream) -> Vec<i16>);

fn cases() -> Vec<Case> {
    vec![
        ("Produce", |c| {
            vec![raw::produce(c, TOPIC_NAME, batch("m", 1, 0, sluice::model::Codec::None)).0]
        }),
        ("Fetch", |c| fetch(c, -1)),
        ("Fetch as a follower", |c| fetch(c, 0)),
        ("ListOffsets", |c| {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.timestamp = -1;
            let mut t = list_offsets_request::ListOffsetsTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = ListOffsetsRequest::default();
            r.replica_id = BrokerId(-1);
            r.topics.push(t);
            let a: ListOffsetsResponse = ask(c, ApiKey::ListOffsets, 7, &r);
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("Metadata (named)", |c| {
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(topic(TOPIC_NAME));
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![t]);
            let a: MetadataResponse = ask(c, ApiKey::Metadata, 9, &r);
            a.topics.iter().map(|t| t.error_code).collect()
        }),
        ("Metadata (all)", |c| {
            let mut r = MetadataRequest::default();
            r.topics = None;
            let a: MetadataResponse = ask(c, ApiKey::Metadata, 9, &r);
            listed(
                a.topics
                    .iter()
                    .filter_map(|t| t.name.as_ref())
                    .any(|n| n.0.as_str() == TOPIC_NAME),
            )
        }),
        ("OffsetCommit", |c| {
            let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
            p.committed_offset = 0;
            let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = OffsetCommitRequest::default();
            (r.group_id, r.generation_id_or_member_epoch) = (group(GROUP_NAME), -1);
            r.topics.push(t);
            let a: OffsetCommitResponse = ask(c, ApiKey::OffsetCommit, 8, &r);
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("OffsetFetch", |c| {
            let mut r = OffsetFetchRequest::default();
            (r.group_id, r.topics) = (group(GROUP_NAME), None);
            let a: OffsetFetchResponse = ask(c, ApiKey::OffsetFetch, 7, &r);
            let mut codes = vec![a.error_code];
            codes.extend(
                a.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
            codes
        }),
        ("FindCoordinator (group)", |c| {
            find_coordinator(c, 0, GROUP_NAME)
        }),
        ("FindCoordinator (transaction)", |c| {
            find_coordinator(c, 1, TXN_ID)
        }),
        ("JoinGroup", |c| {
            let mut p = join_group_request::JoinGroupRequestProtocol::default();
            p.name = s("range");
            let mut r = JoinGroupRequest::default();
            (r.group_id, r.session_timeout_ms, r.rebalance_timeout_ms) =
                (group("m-join"), 6000, 100);
            (r.protocol_type, r.protocols) = (s("consumer"), vec![p]);
            let a: JoinGroupResponse = ask(c, ApiKey::JoinGroup, 5, &r);
            vec![a.error_code]
        }),
        ("Heartbeat", |c| {
            let mut r = HeartbeatRequest::default();
            (r.group_id, r.generation_id, r.member_id) = (group(GROUP_NAME), 1, s("nobody"));
            let a: HeartbeatResponse = ask(c, ApiKey::Heartbeat, 4, &r);
            vec![a.error_code]
        }),
        ("SyncGroup", |c| {
            let mut r = SyncGroupRequest::default();
            (r.group_id, r.generation_id, r.member_id) = (group(GROUP_NAME), 1, s("nobody"));
            let a: SyncGroupResponse = ask(c, ApiKey::SyncGroup, 5, &r);
            vec![a.error_code]
        }),
        ("LeaveGroup", |c| {
            let mut m = leave_group_request::MemberIdentity::default();
            m.member_id = s("nobody");
            let mut r = LeaveGroupRequest::default();
            (r.group_id, r.members) = (group(GROUP_NAME), vec![m]);
            let a: LeaveGroupResponse = ask(c, ApiKey::LeaveGroup, 4, &r);
            vec![a.error_code]
        }),
        ("DescribeGroups", |c| {
            let mut r = DescribeGroupsRequest::default();
            r.groups.push(group(GROUP_NAME));
            let a: DescribeGroupsResponse = ask(c, ApiKey::DescribeGroups, 5, &r);
            a.groups.iter().map(|g| g.error_code).collect()
        }),
        ("ListGroups", |c| {
            let a: ListGroupsResponse =
                ask(c, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
            listed(a.groups.iter().any(|g| g.group_id.0.as_str() == GROUP_NAME))
        }),
        ("OffsetDelete", |c| {
            let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
            p.partition_index = 0;
            let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = OffsetDeleteRequest::default();
            (r.group_id, r.topics) = (group("m-idle"), vec![t]);
            let a: OffsetDeleteResponse = ask(c, ApiKey::OffsetDelete, 0, &r);
            let mut codes = vec![a.error_code];
            codes.extend(
                a.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
            codes
        }),
        ("DeleteGroups", |c| {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names.push(group("m-idle"));
            let a: DeleteGroupsResponse = ask(c, ApiKey::DeleteGroups, 2, &r);
            a.results.iter().map(|g| g.error_code).collect()
        }),
        ("CreateTopics", |c| {
            let mut t = create_topics_request::CreatableTopic::default();
            (t.name, t.num_partitions, t.replication_factor) = (topic("m-new"), 1, -1);
            let mut r = CreateTopicsRequest::default();
            r.topics.push(t);
            let a: CreateTopicsResponse = ask(c, ApiKey::CreateTopics, 5, &r);
            a.topics.iter().map(|t| t.error_code).collect()
        }),
        ("CreatePartitions", |c| {
            let mut t = create_partitions_request::CreatePartitionsTopic::default();
            (t.name, t.count) = (topic(TOPIC_NAME), 2);
            let mut r = CreatePartitionsRequest::default();
            (r.topics, r.validate_only) = (vec![t], true);
            let a: CreatePartitionsResponse = ask(c, ApiKey::CreatePartitions, 3, &r);
            a.results.iter().map(|t| t.error_code).collect()
        }),
        ("DeleteRecords", |c| {
            let mut p = delete_records_request::DeleteRecordsPartition::default();
            p.offset = 0;
            let mut t = delete_records_request::DeleteRecordsTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = DeleteRecordsRequest::default();
            r.topics.push(t);
            let a: DeleteRecordsResponse = ask(c, ApiKey::DeleteRecords, 2, &r);
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("DeleteTopics", |c| {
            let mut r = DeleteTopicsRequest::default();
            r.topic_names.push(topic("m-doomed"));
            let a: DeleteTopicsResponse = ask(c, ApiKey::DeleteTopics, 5, &r);
            a.responses.iter().map(|t| t.error_code).collect()
        }),
        ("DescribeConfigs (topic)", |c| {
            describe_configs(c, 2, TOPIC_NAME)
        }),
        ("DescribeConfigs (broker)", |c| describe_configs(c, 4, "")),
        ("AlterConfigs", |c| {
            let mut cfg = alter_configs_request::AlterableConfig::default();
            (cfg.name, cfg.value) = (s("retention.ms"), Some(s("600000")));
            let mut res = alter_configs_request::AlterConfigsResource::default();
            (res.resource_type, res.resource_name, res.configs) = (2, s(TOPIC_NAME), vec![cfg]);
            let mut r = AlterConfigsRequest::default();
            (r.resources, r.validate_only) = (vec![res], true);
            let a: AlterConfigsResponse = ask(c, ApiKey::AlterConfigs, 2, &r);
            a.responses.iter().map(|t| t.error_code).collect()
        }),
        ("IncrementalAlterConfigs (broker)", |c| {
            let mut cfg = incremental_alter_configs_request::AlterableConfig::default();
            (cfg.name, cfg.value) = (s("log.retention.ms"), Some(s("600000")));
            let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
            (res.resource_type, res.resource_name, res.configs) = (4, s(""), vec![cfg]);
            let mut r = IncrementalAlterConfigsRequest::default();
            (r.resources, r.validate_only) = (vec![res], true);
            let a: IncrementalAlterConfigsResponse = ask(c, ApiKey::IncrementalAlterConfigs, 1, &r);
            a.responses.iter().map(|t| t.error_code).collect()
        }),
        ("InitProducerId (transactional)", |c| {
            init_producer_id(c, Some(TXN_ID))
        }),
        ("InitProducerId (idempotent)", |c| init_producer_id(c, None)),
        ("AddPartitionsToTxn", |c| {
            let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![0]);
            let mut r = AddPartitionsToTxnRequest::default();
            r.v3_and_below_transactional_id = txn(TXN_ID);
            r.v3_and_below_topics.push(t);
            let a: AddPartitionsToTxnResponse = ask(c, ApiKey::AddPartitionsToTxn, 3, &r);
            let topics = a.results_by_topic_v3_and_below.iter();
            topics
                .flat_map(|t| {
                    t.results_by_partition
                        .iter()
                        .map(|p| p.partition_error_code)
                })
                .collect()
        }),
        ("AddOffsetsToTxn", |c| {
            let mut r = AddOffsetsToTxnRequest::default();
            (r.transactional_id, r.group_id) = (txn(TXN_ID), group(GROUP_NAME));
            let a: AddOffsetsToTxnResponse = ask(c, ApiKey::AddOffsetsToTxn, 3, &r);
            vec![a.error_code]
        }),
        ("TxnOffsetCommit", |c| {
            let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
            p.committed_offset = 0;
            let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = TxnOffsetCommitRequest::default();
            (r.transactional_id, r.group_id, r.topics) = (txn(TXN_ID), group(GROUP_NAME), vec![t]);
            let a: TxnOffsetCommitResponse = ask(c, ApiKey::TxnOffsetCommit, 3, &r);
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("EndTxn", |c| {
            let mut r = EndTxnRequest::default();
            r.transactional_id = txn(TXN_ID);
            let a: EndTxnResponse = ask(c, ApiKey::EndTxn, 3, &r);
            vec![a.error_code]
        }),
        ("DescribeTransactions", |c| {
            let mut r = DescribeTransactionsRequest::default();
            r.transactional_ids.push(txn(TXN_ID));
            let a: DescribeTransactionsResponse = ask(c, ApiKey::DescribeTransactions, 0, &r);
            a.transaction_states.iter().map(|t| t.error_code).collect()
        }),
        ("ListTransactions", |c| {
            let r = ListTransactionsRequest::default();
            let a: ListTransactionsResponse = ask(c, ApiKey::ListTransactions, 1, &r);
            listed(
                a.transaction_states
                    .iter()
                    .any(|t| t.transactional_id.0.as_str() == TXN_ID),
            )
        }),
        ("DescribeProducers", |c| {
            let mut t = describe_producers_request::TopicRequest::default();
            (t.name, t.partition_indexes) = (topic(TOPIC_NAME), vec![0]);
            let mut r = DescribeProducersRequest::default();
            r.topics.push(t);
            let a: DescribeProducersResponse = ask(c, ApiKey::DescribeProducers, 0, &r);
            a.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("WriteTxnMarkers", |c| {
            let mut t = write_txn_markers_request::WritableTxnMarkerTopic::default();
            (t.name, t.partition_indexes) = (topic(TOPIC_NAME), vec![0]);
            let mut m = write_txn_markers_request::WritableTxnMarker::default();
            (m.producer_id, m.topics) = (ProducerId(999), vec![t]);
            let mut r = WriteTxnMarkersRequest::default();
            r.markers.push(m);
            let a: WriteTxnMarkersResponse = ask(c, ApiKey::WriteTxnMarkers, 1, &r);
            let topics = a.markers.iter().flat_map(|m| m.topics.iter());
            topics
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        }),
        ("OffsetForLeaderEpoch", |c| offset_for_leader_epoch(c, -1)),
        ("OffsetForLeaderEpoch as a follower", |c| {
            offset_for_leader_epoch(c, 0)
        }),
        ("DescribeCluster", |c| {
            let r = DescribeClusterRequest::default();
            let a: DescribeClusterResponse = ask(c, ApiKey::DescribeCluster, 0, &r);
            vec![a.error_code]
        }),
        ("UnregisterBroker", |c| {
            let mut r = UnregisterBrokerRequest::default();
            r.broker_id = BrokerId(99);
            let a: UnregisterBrokerResponse = ask(c, ApiKey::UnregisterBroker, 0, &r);
            vec![a.error_code]
        }),
        ("ElectLeaders", |c| {
            let mut r = ElectLeadersRequest::default();
            r.topic_partitions = Some(Vec::new());
            let a: ElectLeadersResponse = ask(c, ApiKey::ElectLeaders, 2, &r);
            vec![a.error_code]
        }),
        ("AlterPartitionReassignments", |c| {
            let mut p = alter_partition_reassignments_request::ReassignablePartition::default();
            p.replicas = None;
            let mut t = alter_partition_reassignments_request::ReassignableTopic::default();
            (t.name, t.partitions) = (topic(TOPIC_NAME), vec![p]);
            let mut r = AlterPartitionReassignmentsRequest::default();
            r.topics.push(t);
            let a: AlterPartitionReassignmentsResponse =
                ask(c, ApiKey::AlterPartitionReassignments, 0, &r);
            vec![a.error_code]
        }),
        ("ListPartitionReassignments", |c| {
            let r = ListPartitionReassignmentsRequest::default();
            let a: ListPartitionReassignmentsResponse =
                ask(c, ApiKey::ListPartitionReassignments, 0, &r);
            vec![a.error_code]
        }),
        ("DescribeAcls", |c| {
            let mut r = DescribeAclsRequest::default();
            (r.resource_type_filter, r.pattern_type_filter) = (1, 1);
            (r.resource_name_filter, r.principal_filter, r.host_filter) = (None, None, None);
            (r.operation, r.permission_type) = (1, 1);
            let a: DescribeAclsResponse = ask(c, ApiKey::DescribeAcls, 3, &r);
            vec![a.error_code]
        }),
        ("CreateAcls", |c| {
            let mut acl = create_acls_request::AclCreation::default();
            (
                acl.resource_type,
                acl.resource_name,
                acl.resource_pattern_type,
            ) = (TOPIC, s("m-other"), LITERAL);
            (acl.principal, acl.host) = (s("User:nobody"), s("*"));
            (acl.operation, acl.permission_type) = (READ, ALLOW);
            let mut r = CreateAclsRequest::default();
            r.creations.push(acl);
            let a: CreateAclsResponse = ask(c, ApiKey::CreateAcls, 3, &r);
            a.results.iter().map(|r| r.error_code).collect()
        }),
        ("DeleteAcls", |c| {
            let mut f = delete_acls_request::DeleteAclsFilter::default();
            (f.resource_type_filter, f.pattern_type_filter) = (1, 1);
            (f.resource_name_filter, f.host_filter) = (None, None);
            f.principal_filter = Some(s("User:nobody"));
            (f.operation, f.permission_type) = (1, 1);
            let mut r = DeleteAclsRequest::default();
            r.filters.push(f);
            let a: DeleteAclsResponse = ask(c, ApiKey::DeleteAcls, 3, &r);
            a.filter_results.iter().map(|r| r.error_code).collect()
        }),
        ("DescribeUserScramCredentials", |c| {
            let r = DescribeUserScramCredentialsRequest::default();
            let a: DescribeUserScramCredentialsResponse =
                ask(c, ApiKey::DescribeUserScramCredentials, 0, &r);
            vec![a.error_code]
        }),
        ("AlterUserScramCredentials", |c| {
            let mut u = alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
            (u.name, u.mechanism, u.iterations) = (s("m-carol"), 1, 4096);
            (u.salt, u.salted_password) = (vec![1u8; 16].into(), vec![2u8; 32].into());
            let mut r = AlterUserScramCredentialsRequest::default();
            r.upsertions.push(u);
            let a: AlterUserScramCredentialsResponse =
                ask(c, ApiKey::AlterUserScramCredentials, 0, &r);
            a.results.iter().map(|r| r.error_code).collect()
        }),
    ]
}

/// A listing's answer about the resource: there (0) or left out.
fn listed(present: bool) -> Vec<i16> {
    vec![if present { 0 } else { FILTERED }]
}

fn fetch(c: &mut TcpStream, replica: i32) -> Vec<i16> {
    let mut p = fetch_request::FetchPartition::default();
    (p.partition, p.partition_max_bytes) = (0, 1 << 16);
    let mut t = fetch_request::FetchTopic::default();
    (t.topic, t.partitions) = (topic(TOPIC_NAME), vec![p]);
    let mut r = FetchRequest::default();
    (r.replica_id, r.max_bytes, r.max_wait_ms) = (BrokerId(replica), 1 << 20, 0);
    r.topics.push(t);
    let a: FetchResponse = ask(c, ApiKey::Fetch, 12, &r);
    // The partitions' codes, and the response's own where it has one.
    let mut codes: Vec<i16> = a
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    if a.error_code != 0 || codes.is_empty() {
        codes.push(a.error_code);
    }
    codes
}

fn find_coordinator(c: &mut TcpStream, key_type: i8, key: &str) -> Vec<i16> {
    let mut r = FindCoordinatorRequest::default();
    (r.key, r.key_type) = (s(key), key_type);
    let a: FindCoordinatorResponse = ask(c, ApiKey::FindCoordinator, 3, &r);
    vec![a.error_code]
}

fn describe_configs(c: &mut TcpStream, resource_type: i8, name: &str) -> Vec<i16> {
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    (res.resource_type, res.resource_name, res.configuration_keys) = (resource_type, s(name), None);
    let mut r = DescribeConfigsRequest::default();
    r.resources.push(res);
    let a: DescribeConfigsResponse = ask(c, ApiKey::DescribeConfigs, 4, &r);
    a.results.iter().map(|r| r.error_code).collect()
}

fn init_producer_id(c: &mut TcpStream, id: Option<&str>) -> Vec<i16> {
    let mut r = InitProducerIdRequest::default();
    (r.transactional_id, r.transaction_timeout_ms) = (id.map(txn), 60_000);
    (r.producer_id, r.producer_epoch) = (ProducerId(-1), -1);
    let a: InitProducerIdResponse = ask(c, ApiKey::InitProducerId, 4, &r);
    vec![a.error_code]
}

fn offset_for_leader_epoch(c: &mut TcpStream, replica: i32) -> Vec<i16> {
    let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    (p.partition, p.current_leader_epoch, p.leader_epoch) = (0, -1, 0);
    let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    (t.topic, t.partitions) = (topic(TOPIC_NAME), vec![p]);
    let mut r = OffsetForLeaderEpochRequest::default();
    (r.replica_id, r.topics) = (BrokerId(replica), vec![t]);
    let a: OffsetForLeaderEpochResponse = ask(c, ApiKey::OffsetForLeaderEpoch, 4, &r);
    a.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[test]
fn every_api_refuses_a_principal_without_acls_and_serves_one_with_them() {
    let broker = guarded(&[]);
    let admin = broker.listener("PLAINTEXT");
    for name in [TOPIC_NAME, "m-doomed"] {
        crate::kit::client::create_topic(&admin, name, 1, &[]);
    }
    // A committed offset for the group, by the operator.
    let mut operator = operator(&broker);
    let (code, _) = raw::produce(
        &mut operator,
        TOPIC_NAME,
        batch("x", 1, 0, sluice::model::Codec::None),
    );
    assert_eq!(code, 0);
    create_acls(
        &broker,
        &[
            (TOPIC, "m-", PREFIXED, "User:alice", ALL, ALLOW),
            (GROUP, "m-", PREFIXED, "User:alice", ALL, ALLOW),
            (TRANSACTIONAL_ID, "m-", PREFIXED, "User:alice", ALL, ALLOW),
            (CLUSTER, "kafka-cluster", LITERAL, "User:alice", ALL, ALLOW),
        ],
    );
    let addr = broker.listener("SASL_PLAINTEXT");
    // Both connections open before the first request and kept to the end.
    let mut bob = raw::connect_as(&addr, "bob", "bob-pw");
    let mut alice = raw::connect_as(&addr, "alice", "alice-pw");
    let auth = |code: &i16| AUTHORIZATION_ERRORS.contains(code);
    let mut unauthorized_successes = Vec::new();
    let mut wrongly_refused = Vec::new();
    let mut apis = BTreeSet::new();
    for (name, case) in cases() {
        apis.insert(name.split(' ').next().unwrap());
        let denied = case(&mut bob);
        if denied.is_empty() || !denied.iter().all(auth) {
            unauthorized_successes.push(format!("{name}: {denied:?}"));
        }
        let allowed = case(&mut alice);
        if allowed.iter().any(auth) {
            wrongly_refused.push(format!("{name}: {allowed:?}"));
        }
    }
    assert!(
        unauthorized_successes.is_empty(),
        "{} unauthorized successes:\n{}",
        unauthorized_successes.len(),
        unauthorized_successes.join("\n")
    );
    assert!(
        wrongly_refused.is_empty(),
        "refused with ACLs:\n{}",
        wrongly_refused.join("\n")
    );
    // Every API the broker serves is in the matrix, but those every client may send.
    let open = ["ApiVersions", "SaslHandshake", "SaslAuthenticate"];
    let served: BTreeSet<String> = sluice::server::served_apis()
        .map(|(key, _)| format!("{:?}", ApiKey::try_from(key).unwrap()))
        .filter(|name| !open.contains(&name.as_str()))
        .collect();
    let covered: BTreeSet<String> = apis.iter().map(|a| a.to_string()).collect();
    let missing: Vec<&String> = served.difference(&covered).collect();
    assert!(missing.is_empty(), "not in the matrix: {missing:?}");
}
