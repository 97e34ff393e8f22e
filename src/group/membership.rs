//! Membership: joins, syncs, heartbeats and leaves, the rebalance they drive (Empty ->
//! PreparingRebalance -> CompletingRebalance -> Stable), the ticker that expires sessions, and
//! what DescribeGroups and ListGroups see.

use super::*;

impl Coordinator {
    pub async fn join(&self, params: JoinParams) -> JoinOutcome {
        if let Err(code) = self.ready(&params.group) {
            return error_join(code, &params.member_id);
        }
        let timeout = params.session_timeout_ms;
        if timeout < self.config.session_timeout_ms_min
            || timeout > self.config.session_timeout_ms_max
        {
            return error_join(GroupError::InvalidSessionTimeout, &params.member_id);
        }
        let now = self.clock.now();
        let receiver = {
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .entry(params.group.clone())
                .or_insert_with(|| Group::new(&params.group));
            match self.join_locked(group, params, now) {
                Ok(receiver) => receiver,
                Err(outcome) => return outcome,
            }
        };
        let group_id = receiver.1;
        self.try_complete_join(&group_id, self.clock.now()).await;
        receiver
            .0
            .await
            .unwrap_or_else(|_| error_join(GroupError::UnknownMember, ""))
    }

    #[allow(clippy::result_large_err)]
    pub(super) fn join_locked(
        &self,
        group: &mut Group,
        params: JoinParams,
        now: Instant,
    ) -> Result<(oneshot::Receiver<JoinOutcome>, String), JoinOutcome> {
        let member_id = params.member_id.clone();
        if group.state != State::Empty {
            let same_type = group.protocol_type.as_deref() == Some(params.protocol_type.as_str());
            let shares = group.members.is_empty()
                || params.protocols.iter().any(|(name, _)| {
                    group
                        .members
                        .values()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                });
            if !same_type || !shares {
                return Err(error_join(GroupError::InconsistentProtocol, &member_id));
            }
        }
        let mut member_id = member_id;
        let mut static_rejoin = false;
        let leader_before = group.leader.clone();
        if member_id.is_empty() {
            let fresh = format!("{}-{}", params.client_id, uuid::Uuid::new_v4());
            match &params.instance_id {
                Some(instance) => {
                    // A static member (re)joining: its old member id is fenced from now on.
                    if let Some(old) = group.static_members.get(instance).cloned() {
                        if let Some(mut member) = group.members.remove(&old) {
                            member.id = fresh.clone();
                            if let Some(waiter) = member.join_waiter.take() {
                                let _ = waiter.send(error_join(GroupError::FencedInstance, &old));
                            }
                            if group.leader.as_deref() == Some(old.as_str()) {
                                group.leader = Some(fresh.clone());
                            }
                            group.members.insert(fresh.clone(), member);
                            static_rejoin = true;
                        }
                    }
                    group.static_members.insert(instance.clone(), fresh.clone());
                    member_id = fresh;
                }
                None if params.require_known_member => {
                    if group.members.len() + group.pending.len() >= self.config.group_size_max {
                        return Err(error_join(GroupError::GroupFull, ""));
                    }
                    let expires = now + Duration::from_millis(params.session_timeout_ms as u64);
                    group.pending.insert(fresh.clone(), expires);
                    return Err(error_join(GroupError::MemberIdRequired, &fresh));
                }
                None => member_id = fresh,
            }
        } else if let Some(instance) = &params.instance_id {
            if group.static_members.get(instance) != Some(&member_id) {
                return Err(error_join(GroupError::FencedInstance, &member_id));
            }
        } else if !group.members.contains_key(&member_id) && !group.pending.contains_key(&member_id)
        {
            return Err(error_join(GroupError::UnknownMember, &member_id));
        }
        group.pending.remove(&member_id);
        let is_new = !group.members.contains_key(&member_id);
        if is_new && group.members.len() >= self.config.group_size_max {
            return Err(error_join(GroupError::GroupFull, &member_id));
        }
        let (tx, rx) = oneshot::channel();
        let changed = match group.members.get(&member_id) {
            Some(m) => m.protocols != params.protocols,
            None => true,
        };
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: params.instance_id.clone(),
                client_id: params.client_id.clone(),
                client_host: params.client_host.clone(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.session_timeout = Duration::from_millis(params.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(params.rebalance_timeout_ms.max(0) as u64);
        member.protocols = params.protocols.clone();
        member.last_heartbeat = now;
        member.join_waiter = Some(tx);
        if let Some(instance) = &params.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            // KIP-814: a static member back under a new id, with the same protocols, in a stable
            // group: the generation and assignment stand; a leader learns the members but keeps
            // the assignment (skip_assignment).
            State::Stable if static_rejoin && !changed => {
                // Before v9 the client cannot be told to skip the assignment: it is told the
                // leader's old id instead, so that it does not think itself the leader (Kafka).
                let (leader, members, skip_assignment) = if !params.skip_assignment_supported {
                    (leader_before, Vec::new(), false)
                } else if is_leader {
                    (group.leader.clone(), group.member_metadata(), true)
                } else {
                    (group.leader.clone(), Vec::new(), false)
                };
                answer_join_now(group, &member_id, leader, members, skip_assignment);
            }
            // The old id may already be in the assignment being synced: rebalance (as Kafka).
            State::CompletingRebalance if static_rejoin => prepare_rebalance(group, now),
            State::Stable | State::CompletingRebalance if !changed && !is_leader && !is_new => {
                // Nothing new from a follower: answer with the current generation, no rebalance.
                let leader = group.leader.clone();
                answer_join_now(group, &member_id, leader, Vec::new(), false);
            }
            State::PreparingRebalance => {}
            _ => {
                if group.state == State::Empty {
                    group.protocol_type = Some(params.protocol_type.clone());
                    let delay = self.config.initial_rebalance_delay_ms.max(0) as u64;
                    group.join_not_before = Some(now + Duration::from_millis(delay));
                }
                prepare_rebalance(group, now);
            }
        }
        Ok((rx, group.id.clone()))
    }

    /// Completes the join phase if everyone is in (and any initial delay has passed), or the
    /// rebalance timeout has run out (members that did not rejoin leave).
    pub(super) async fn try_complete_join(&self, group_id: &str, now: Instant) {
        let completed = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return;
            };
            if group.state != State::PreparingRebalance {
                return;
            }
            let delay_over = group.join_not_before.is_none_or(|t| now >= t);
            let timed_out = group.rebalance_deadline.is_some_and(|t| now >= t);
            let everyone_in = delay_over && group.all_joined();
            if !everyone_in && !timed_out {
                return;
            }
            if timed_out {
                let gone: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.join_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in gone {
                    remove_member(group, &id);
                }
                group.pending.clear();
            }
            complete_join(group);
            self.rebalances.set(self.rebalances.get() + 1);
            true
        };
        if completed {
            let empty = self
                .groups
                .borrow()
                .get(group_id)
                .is_some_and(|g| g.state == State::Empty);
            if empty {
                self.write_group(group_id).await;
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        if let Err(code) = self.ready(group_id) {
            return error_sync(code);
        }
        let receiver = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return error_sync(GroupError::UnknownMember);
            };
            if let Err(code) = group.check_member(member_id, instance_id) {
                return error_sync(code);
            }
            if generation != group.generation {
                return error_sync(GroupError::IllegalGeneration);
            }
            match group.state {
                State::PreparingRebalance => return error_sync(GroupError::RebalanceInProgress),
                State::Stable => {
                    let member = &group.members[member_id];
                    return SyncOutcome {
                        error: None,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        assignment: member.assignment.clone(),
                    };
                }
                State::Empty | State::Dead => return error_sync(GroupError::UnknownMember),
                State::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_waiter = Some(tx);
                member.last_heartbeat = self.clock.now();
            }
            if group.leader.as_deref() != Some(member_id) {
                (rx, false)
            } else {
                for member in group.members.values_mut() {
                    member.assignment = assignments
                        .iter()
                        .find(|(id, _)| *id == member.id)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_default();
                }
                (rx, true)
            }
        };
        let (receiver, is_leader) = receiver;
        if !is_leader {
            return wait_sync(receiver).await;
        }
        // The leader's assignment: write the group, then answer everyone waiting.
        self.write_group(group_id).await;
        {
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(group_id) {
                if group.state == State::CompletingRebalance && group.generation == generation {
                    group.state = State::Stable;
                    let (protocol_type, protocol) =
                        (group.protocol_type.clone(), group.protocol.clone());
                    for member in group.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncOutcome {
                                error: None,
                                protocol_type: protocol_type.clone(),
                                protocol: protocol.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                }
            }
        }
        wait_sync(receiver).await
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.ready(group_id)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups.get_mut(group_id).ok_or(GroupError::UnknownMember)?;
        group.check_member(member_id, instance_id)?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_heartbeat = self.clock.now();
        }
        match group.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes members (by id, or by instance id for static members): per-member error codes.
    pub async fn leave(
        &self,
        group_id: &str,
        leaving: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.ready(group_id)?;
        let results = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.get_mut(group_id).ok_or(GroupError::UnknownMember)?;
            let mut results = Vec::new();
            let mut removed = false;
            for (member_id, instance_id) in leaving {
                let id = match &instance_id {
                    Some(instance) => match group.static_members.get(instance) {
                        Some(current) if member_id.is_empty() || *current == member_id => {
                            current.clone()
                        }
                        Some(_) => {
                            results.push(Err(GroupError::FencedInstance));
                            continue;
                        }
                        None => {
                            results.push(Err(GroupError::UnknownMember));
                            continue;
                        }
                    },
                    None => member_id,
                };
                if group.pending.remove(&id).is_some() {
                    results.push(Ok(()));
                } else if group.members.contains_key(&id) {
                    remove_member(group, &id);
                    removed = true;
                    results.push(Ok(()));
                } else {
                    results.push(Err(GroupError::UnknownMember));
                }
            }
            if removed {
                on_membership_change(group, self.clock.now());
            }
            results
        };
        self.try_complete_join(group_id, self.clock.now()).await;
        Ok(results)
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let mut description = GroupDescription {
            error: None,
            state: State::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Err(error) = self.ready(group_id) {
            description.error = Some(error);
            return description;
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            return description;
        };
        description.state = group.state.name();
        description.protocol_type = group.protocol_type.clone().unwrap_or_default();
        description.protocol = group.protocol.clone().unwrap_or_default();
        description.members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(group.protocol.as_deref().unwrap_or("")),
                assignment: m.assignment.clone(),
            })
            .collect();
        description
    }

    /// (group id, protocol type, state) of every group here.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut all: Vec<_> = self
            .groups
            .borrow()
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// Expires sessions and pending member ids, completes rebalances that are due, and drops the
    /// offsets of groups empty for longer than `offsets.retention.minutes`. Run periodically.
    pub async fn tick(&self, now: Instant) {
        let due: Vec<String> = {
            let mut groups = self.groups.borrow_mut();
            let mut due = Vec::new();
            let now_ms = self.clock.wall().0;
            for group in groups.values_mut() {
                match (group.state, group.empty_since_ms) {
                    (State::Empty, None) => group.empty_since_ms = Some(now_ms),
                    (State::Empty, Some(_)) => {}
                    _ => group.empty_since_ms = None,
                }
                group.pending.retain(|_, expires| *expires > now);
                let expired: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| {
                        m.join_waiter.is_none() && now > m.last_heartbeat + m.session_timeout
                    })
                    .map(|m| m.id.clone())
                    .collect();
                if !expired.is_empty() {
                    for id in &expired {
                        tracing::info!(group = %group.id, member = %id, "session expired");
                        remove_member(group, id);
                    }
                    on_membership_change(group, now);
                }
                if group.state == State::PreparingRebalance {
                    due.push(group.id.clone());
                }
            }
            due
        };
        for group in due {
            self.try_complete_join(&group, now).await;
        }
        let interval = Duration::from_millis(self.config.offsets_retention_check_ms.max(0) as u64);
        if self
            .expiry_checked
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= interval)
        {
            self.expiry_checked.set(Some(now));
            self.expire_offsets().await;
        }
    }
}

pub(super) async fn wait_sync(receiver: oneshot::Receiver<SyncOutcome>) -> SyncOutcome {
    receiver
        .await
        .unwrap_or_else(|_| error_sync(GroupError::RebalanceInProgress))
}

pub(super) fn remove_member(group: &mut Group, id: &str) {
    if let Some(member) = group.members.remove(id) {
        if let Some(instance) = &member.instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(id) {
                group.static_members.remove(instance);
            }
        }
        if let Some(waiter) = member.join_waiter {
            let _ = waiter.send(error_join(GroupError::UnknownMember, id));
        }
        if let Some(waiter) = member.sync_waiter {
            let _ = waiter.send(error_sync(GroupError::UnknownMember));
        }
    }
    if group.leader.as_deref() == Some(id) {
        group.leader = group.members.keys().next().cloned();
    }
}

/// After members left or expired: rebalance the rest, or become Empty.
pub(super) fn on_membership_change(group: &mut Group, now: Instant) {
    match group.state {
        State::Stable | State::CompletingRebalance => prepare_rebalance(group, now),
        State::PreparingRebalance | State::Empty | State::Dead => {}
    }
    if group.members.is_empty() && group.state != State::PreparingRebalance {
        group.state = State::Empty;
        group.leader = None;
    }
}

/// Answers `member_id`'s pending join with the current generation, without a rebalance.
pub(super) fn answer_join_now(
    group: &mut Group,
    member_id: &str,
    leader: Option<String>,
    members: Vec<(String, Option<String>, Bytes)>,
    skip_assignment: bool,
) {
    let Some(waiter) = group
        .members
        .get_mut(member_id)
        .and_then(|m| m.join_waiter.take())
    else {
        return;
    };
    let _ = waiter.send(JoinOutcome {
        error: None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: leader.unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment,
    });
}

pub(super) fn prepare_rebalance(group: &mut Group, now: Instant) {
    // Members waiting on a sync of the old generation learn that it is over.
    for member in group.members.values_mut() {
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(error_sync(GroupError::RebalanceInProgress));
        }
    }
    let timeout = group
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::ZERO);
    group.state = State::PreparingRebalance;
    group.rebalance_deadline = Some(now + timeout);
}

pub(super) fn complete_join(group: &mut Group) {
    group.generation += 1;
    group.rebalance_deadline = None;
    group.join_not_before = None;
    if group.members.is_empty() {
        group.state = State::Empty;
        group.protocol = None;
        group.leader = None;
        return;
    }
    group.protocol = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.state = State::CompletingRebalance;
    let leader = group.leader.clone().unwrap_or_default();
    let all = group.member_metadata();
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinOutcome {
                error: None,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                leader: leader.clone(),
                member_id: member.id.clone(),
                members: if member.id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
                skip_assignment: false,
            });
        }
    }
}

/// The topics in a consumer protocol subscription (ConsumerProtocolSubscription: version i16,
/// then an array of strings); empty if it does not parse.
pub(super) fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = metadata;
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Some(head.to_vec())
    };
    let Some(_) = take(&mut rest, 2) else {
        return out;
    };
    let Some(count) = take(&mut rest, 4) else {
        return out;
    };
    let count = i32::from_be_bytes([count[0], count[1], count[2], count[3]]).max(0);
    for _ in 0..count {
        let Some(len) = take(&mut rest, 2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]).max(0) as usize;
        let Some(name) = take(&mut rest, len) else {
            break;
        };
        out.push(String::from_utf8_lossy(&name).into_owned());
    }
    out
}
