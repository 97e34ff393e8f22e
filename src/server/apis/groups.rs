//! The consumer-group APIs: FindCoordinator v0-v4, JoinGroup v0-v9, SyncGroup v0-v5, Heartbeat
//! v0-v4, LeaveGroup v0-v5, DescribeGroups v0-v5, ListGroups v0-v4 and DeleteGroups v0-v2 (the
//! offsets' APIs are in `offsets.rs`). Each request goes to the shard
//! whose coordinator holds the group (crate::server::groups); this file only translates.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Answer, Api, Request};
use crate::group::JoinParams;
use crate::model::ShardId;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::groups::{error_code, membership_code, result_code};
use crate::server::Shard;

api!(FIND_COORDINATOR, FindCoordinator, 0, 4, find_coordinator);
api!(JOIN, JoinGroup, 0, 9, join);
api!(SYNC, SyncGroup, 0, 5, sync);
api!(HEARTBEAT, Heartbeat, 0, 4, heartbeat);
api!(LEAVE, LeaveGroup, 0, 5, leave);
api!(DESCRIBE, DescribeGroups, 0, 5, describe);
api!(LIST, ListGroups, 0, 5, list);
api!(DELETE, DeleteGroups, 0, 2, delete);

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
pub(super) fn text(s: &StrBytes) -> String {
    s.to_string()
}

pub(super) fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(text)
}

fn group_id(name: &str) -> GroupId {
    GroupId(str_bytes(name))
}

async fn find_coordinator(shard: Rc<Shard>, request: Request) -> Answer {
    let body: FindCoordinatorRequest = request.decode("FindCoordinatorRequest")?;
    let keys: Vec<String> = if request.version >= 4 {
        body.coordinator_keys.iter().map(text).collect()
    } else {
        vec![text(&body.key)]
    };
    // The transaction coordinators' topic exists once a producer looks for one.
    let txn_topic = if body.key_type == KEY_TYPE_TRANSACTION {
        shard.ensure_txn_topic().await
    } else {
        Ok(())
    };
    let authz = Authz::of(&shard, &request);
    // DESCRIBE on the group or the transactional id.
    let refused = |key: &str| match body.key_type {
        KEY_TYPE_GROUP if !authz.group(Operation::Describe, key) => {
            Some(E::GroupAuthorizationFailed)
        }
        KEY_TYPE_TRANSACTION if !authz.transactional_id(Operation::Describe, key) => {
            Some(E::TransactionalIdAuthorizationFailed)
        }
        _ => None,
    };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let mut c = Coordinator::default();
            c.key = str_bytes(key.clone());
            if let Some(error) = refused(&key) {
                c.error_code = error.code();
                c.node_id = BrokerId(-1);
                c.port = -1;
            } else if body.key_type != KEY_TYPE_GROUP && body.key_type != KEY_TYPE_TRANSACTION {
                c.error_code = E::InvalidRequest.code();
                c.error_message = Some(str_bytes("unknown coordinator key type"));
                c.node_id = BrokerId(-1);
                c.port = -1;
            } else if let (true, Err(code)) = (body.key_type == KEY_TYPE_TRANSACTION, &txn_topic) {
                c.error_code = *code;
                c.node_id = BrokerId(-1);
                c.port = -1;
            } else if key.is_empty() {
                c.error_code = if body.key_type == KEY_TYPE_GROUP {
                    E::InvalidGroupId.code()
                } else {
                    E::InvalidRequest.code()
                };
                c.node_id = BrokerId(-1);
                c.port = -1;
            } else {
                // The node that leads the key's partition of the coordinators' topic.
                let tp = if body.key_type == KEY_TYPE_GROUP {
                    shard.group_partition(&key)
                } else {
                    shard.txn_partition(&key)
                };
                match shard.leader_endpoint(&tp, &request.conn.listener.name) {
                    Some((node, host, port)) => {
                        c.node_id = BrokerId(node);
                        c.host = str_bytes(host);
                        c.port = port as i32;
                    }
                    None => {
                        c.error_code = E::CoordinatorNotAvailable.code();
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                    }
                }
            }
            c
        })
        .collect();
    let mut response = FindCoordinatorResponse::default();
    if request.version >= 4 {
        response.coordinators = coordinators;
    } else {
        let c = &coordinators[0];
        response.error_code = c.error_code;
        response.error_message = c.error_message.clone();
        response.node_id = c.node_id;
        response.host = c.host.clone();
        response.port = c.port;
    }
    request.answer(&response)
}

async fn join(shard: Rc<Shard>, request: Request) -> Answer {
    let body: JoinGroupRequest = request.decode("JoinGroupRequest")?;
    let group = body.group_id.0.to_string();
    if !may_read(&shard, &request, &group) {
        let mut response = JoinGroupResponse::default();
        response.error_code = E::GroupAuthorizationFailed.code();
        response.generation_id = -1;
        return request.answer(&response);
    }
    let params = JoinParams {
        group: group.clone(),
        member_id: text(&body.member_id),
        instance_id: opt(&body.group_instance_id),
        client_id: request.client_id.clone(),
        client_host: request.client_host.clone(),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if request.version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: text(&body.protocol_type),
        protocols: body
            .protocols
            .iter()
            .map(|p| (text(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member: request.version >= 4,
        skip_assignment_supported: request.version >= 9,
    };
    let joined = shard
        .on_group(
            &group,
            |shard| async move { shard.groups.join(params).await },
        )
        .await;
    let outcome = joined.unwrap_or_else(|error| crate::group::JoinOutcome {
        error: Some(error),
        generation: -1,
        ..Default::default()
    });
    let mut response = JoinGroupResponse::default();
    response.error_code = outcome.error.map_or(0, membership_code);
    response.generation_id = outcome.generation;
    if request.version >= 7 {
        response.protocol_type = outcome.protocol_type.map(str_bytes);
        response.protocol_name = outcome.protocol.map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(outcome.protocol.unwrap_or_default()));
    }
    response.leader = str_bytes(outcome.leader);
    if request.version >= 9 {
        response.skip_assignment = outcome.skip_assignment;
    }
    response.member_id = str_bytes(outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(id);
            if request.version >= 5 {
                m.group_instance_id = instance.map(str_bytes);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    request.answer(&response)
}

async fn sync(shard: Rc<Shard>, request: Request) -> Answer {
    let body: SyncGroupRequest = request.decode("SyncGroupRequest")?;
    let group = body.group_id.0.to_string();
    if !may_read(&shard, &request, &group) {
        let mut response = SyncGroupResponse::default();
        response.error_code = E::GroupAuthorizationFailed.code();
        return request.answer(&response);
    }
    let (generation, member_id) = (body.generation_id, text(&body.member_id));
    let instance_id = opt(&body.group_instance_id);
    let assignments: Vec<_> = body
        .assignments
        .iter()
        .map(|a| (text(&a.member_id), a.assignment.clone()))
        .collect();
    let group_sent = group.clone();
    let synced = shard
        .on_group(&group, move |shard| async move {
            let instance_id = instance_id.as_deref();
            let groups = &shard.groups;
            groups
                .sync(
                    &group_sent,
                    generation,
                    &member_id,
                    instance_id,
                    assignments,
                )
                .await
        })
        .await;
    let outcome = synced.unwrap_or_else(|error| crate::group::SyncOutcome {
        error: Some(error),
        ..Default::default()
    });
    let mut response = SyncGroupResponse::default();
    response.error_code = outcome.error.map_or(0, membership_code);
    if request.version >= 5 {
        response.protocol_type = outcome.protocol_type.map(str_bytes);
        response.protocol_name = outcome.protocol.map(str_bytes);
    }
    response.assignment = outcome.assignment;
    request.answer(&response)
}

async fn heartbeat(shard: Rc<Shard>, request: Request) -> Answer {
    let body: HeartbeatRequest = request.decode("HeartbeatRequest")?;
    let group = body.group_id.0.to_string();
    if !may_read(&shard, &request, &group) {
        let mut response = HeartbeatResponse::default();
        response.error_code = E::GroupAuthorizationFailed.code();
        return request.answer(&response);
    }
    let (generation, member_id) = (body.generation_id, text(&body.member_id));
    let instance_id = opt(&body.group_instance_id);
    let group_sent = group.clone();
    let beat = shard.on_group(&group, move |shard| async move {
        let groups = &shard.groups;
        groups.heartbeat(&group_sent, generation, &member_id, instance_id.as_deref())
    });
    let mut response = HeartbeatResponse::default();
    response.error_code = result_code(beat.await.and_then(|beat| beat));
    request.answer(&response)
}

async fn leave(shard: Rc<Shard>, request: Request) -> Answer {
    let body: LeaveGroupRequest = request.decode("LeaveGroupRequest")?;
    let group = body.group_id.0.to_string();
    if !may_read(&shard, &request, &group) {
        let mut response = LeaveGroupResponse::default();
        response.error_code = E::GroupAuthorizationFailed.code();
        return request.answer(&response);
    }
    let members: Vec<(String, Option<String>)> = if request.version >= 3 {
        body.members
            .iter()
            .map(|m| (text(&m.member_id), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(text(&body.member_id), None)]
    };
    let (group_sent, members_sent) = (group.clone(), members.clone());
    let codes = shard
        .on_group(&group, move |shard| async move {
            shard.groups.leave(&group_sent, members_sent).await
        })
        .await
        .and_then(|codes| codes);
    let mut response = LeaveGroupResponse::default();
    match codes {
        Err(error) => response.error_code = error_code(error),
        Ok(codes) if request.version >= 3 => {
            response.members = members
                .into_iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.map(str_bytes);
                    m.error_code = result_code(code);
                    m
                })
                .collect();
        }
        Ok(codes) => response.error_code = codes.first().map_or(0, |code| result_code(*code)),
    }
    request.answer(&response)
}

/// READ on the group: what its members need to join, sync, beat and leave.
fn may_read(shard: &Shard, request: &Request, group: &str) -> bool {
    Authz::of(shard, request).group(Operation::Read, group)
}

async fn describe(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeGroupsRequest = request.decode("DescribeGroupsRequest")?;
    let mut response = DescribeGroupsResponse::default();
    let authz = Authz::of(&shard, &request);
    let described = join_all(body.groups.iter().map(|g| {
        let shard = shard.clone();
        let group = g.0.to_string();
        let allowed = authz.group(Operation::Describe, &group);
        async move {
            if !allowed {
                return (group, None);
            }
            let group_sent = group.clone();
            let described = shard
                .on_group(
                    &group,
                    |shard| async move { shard.groups.describe(&group_sent) },
                )
                .await;
            (group, Some(described))
        }
    }))
    .await;
    for (group, answer) in described {
        let mut out = DescribedGroup::default();
        out.group_id = group_id(&group);
        out.authorized_operations =
            super::authorized::group(&authz, body.include_authorized_operations, &group);
        match answer {
            None => out.error_code = E::GroupAuthorizationFailed.code(),
            Some(Ok(d)) => {
                out.error_code = d.error.map_or(0, error_code);
                out.group_state = str_bytes(d.state);
                out.protocol_type = str_bytes(d.protocol_type);
                out.protocol_data = str_bytes(d.protocol);
                out.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = str_bytes(m.member_id);
                        if request.version >= 4 {
                            member.group_instance_id = m.instance_id.map(str_bytes);
                        }
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.member_metadata = m.metadata;
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            Some(Err(error)) => out.error_code = error_code(error),
        }
        response.groups.push(out);
    }
    request.answer(&response)
}

/// ListGroups v5's type of a classic-protocol group.
const GROUP_TYPE_CLASSIC: &str = "classic";

async fn list(shard: Rc<Shard>, request: Request) -> Answer {
    let body: ListGroupsRequest = request.decode("ListGroupsRequest")?;
    let answers = join_all((0..shard.shards as u32).map(|peer| {
        let list = |shard: Rc<Shard>| async move { shard.groups.list() };
        shard.on_shard::<_, crate::group::GroupError, _, _>(ShardId(peer), list)
    }))
    .await;
    let filter: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_string().to_ascii_lowercase())
        .collect();
    // v5 (KIP-848): every group here runs the classic protocol.
    let types: Vec<String> = body
        .types_filter
        .iter()
        .map(|t| t.to_string().to_ascii_lowercase())
        .collect();
    if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE_CLASSIC) {
        return request.answer(&ListGroupsResponse::default());
    }
    let mut response = ListGroupsResponse::default();
    // DESCRIBE on the cluster lists every group; otherwise those the principal may describe.
    let authz = Authz::of(&shard, &request);
    let all = authz.cluster(Operation::Describe);
    for answer in answers {
        match answer {
            Ok(groups) => {
                for (id, protocol_type, state) in groups {
                    if !filter.is_empty() && !filter.contains(&state.to_ascii_lowercase()) {
                        continue;
                    }
                    if !all && !authz.group(Operation::Describe, &id) {
                        continue;
                    }
                    let mut g = ListedGroup::default();
                    g.group_id = group_id(&id);
                    g.protocol_type = str_bytes(protocol_type);
                    if request.version >= 4 {
                        g.group_state = str_bytes(state);
                    }
                    if request.version >= 5 {
                        g.group_type = str_bytes(GROUP_TYPE_CLASSIC);
                    }
                    response.groups.push(g);
                }
            }
            Err(error) => response.error_code = error_code(error),
        }
    }
    request.answer(&response)
}

async fn delete(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DeleteGroupsRequest = request.decode("DeleteGroupsRequest")?;
    let mut response = DeleteGroupsResponse::default();
    let authz = Authz::of(&shard, &request);
    for g in &body.groups_names {
        let group = g.0.to_string();
        if !authz.group(Operation::Delete, &group) {
            let mut result =
                kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
            result.group_id = g.clone();
            result.error_code = E::GroupAuthorizationFailed.code();
            response.results.push(result);
            continue;
        }
        let group_sent = group.clone();
        let deleted = shard.on_group(&group, |shard| async move {
            shard.groups.delete(&group_sent).await
        });
        let mut result =
            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
        result.group_id = g.clone();
        result.error_code = result_code(deleted.await.and_then(|deleted| deleted));
        response.results.push(result);
    }
    request.answer(&response)
}
