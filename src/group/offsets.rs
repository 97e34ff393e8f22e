//! Committed offsets: rebuilt from `__consumer_offsets` at start, committed (plain and
//! transactional, settled by the producer's marker), fetched, deleted and expired.

use super::*;

impl Coordinator {
    /// Rebuilds the groups from the records of this shard's `__consumer_offsets` partitions, in
    /// log order per partition (later records win; a null value deletes; transactional offsets
    /// wait for their producer's marker).
    pub fn load(&self, entries: impl IntoIterator<Item = (i32, LogEntry)>) {
        let mut groups = self.groups.borrow_mut();
        let now = self.clock.now();
        for (partition, entry) in entries {
            let (key, value, producer_id) = match entry {
                LogEntry::Record {
                    key,
                    value,
                    producer_id,
                } => (key, value, producer_id),
                LogEntry::Marker {
                    producer_id,
                    commit,
                } => {
                    self.settle_txn(&mut groups, partition, producer_id, commit);
                    continue;
                }
            };
            let key = match Key::decode(key) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a __consumer_offsets record");
                    continue;
                }
            };
            let group = groups
                .entry(key.group().to_string())
                .or_insert_with(|| Group::new(key.group()));
            match (key, value) {
                (
                    Key::Offset {
                        topic, partition, ..
                    },
                    None,
                ) => {
                    group.offsets.remove(&(topic, partition));
                }
                (
                    Key::Offset {
                        topic, partition, ..
                    },
                    Some(value),
                ) => match CommittedOffset::decode(value) {
                    Ok(offset) => match producer_id {
                        Some(producer_id) => {
                            group
                                .pending_txn
                                .entry(producer_id)
                                .or_default()
                                .offsets
                                .insert((topic, partition), offset);
                            self.txn_groups
                                .borrow_mut()
                                .entry(producer_id)
                                .or_default()
                                .insert(group.id.clone());
                        }
                        None => {
                            group.offsets.insert((topic, partition), offset);
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "skipping an offset record"),
                },
                (Key::Group { .. }, None) => {
                    group.members.clear();
                    group.static_members.clear();
                    group.generation = 0;
                    group.state = State::Dead;
                }
                (Key::Group { .. }, Some(value)) => match StoredGroup::decode(value) {
                    Ok(stored) => restore(group, stored, now),
                    Err(e) => tracing::warn!(error = %e, "skipping a group record"),
                },
            }
        }
        groups.retain(|_, g| {
            g.state != State::Dead || !g.offsets.is_empty() || !g.pending_txn.is_empty()
        });
        for group in groups.values_mut() {
            if group.state == State::Dead {
                group.state = State::Empty;
            }
        }
        self.loaded.set(true);
    }

    /// Commits offsets. A commit with generation -1 and no member id is a simple (unmanaged)
    /// consumer's, allowed while the group has no members.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), GroupError> {
        self.ready(group_id)?;
        self.with_group(group_id, |group| {
            if generation < 0 && member_id.is_empty() {
                if !group.members.is_empty() {
                    return Err(GroupError::UnknownMember);
                }
            } else {
                group.check_member(member_id, instance_id)?;
                if generation != group.generation {
                    return Err(GroupError::IllegalGeneration);
                }
                // As Kafka: a current member may commit while the group prepares a rebalance
                // (the commits consumers make as they give partitions up); only while the new
                // generation's assignment is being synced is it refused.
                if group.state == State::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
                if let Some(member) = group.members.get_mut(member_id) {
                    member.last_heartbeat = self.clock.now();
                }
            }
            Ok(())
        })?;
        self.write(group_id, offset_records(group_id, &offsets))
            .await?;
        self.with_group(group_id, |group| {
            for (topic, partition, offset) in offsets {
                group.offsets.insert((topic, partition), offset);
            }
        });
        Ok(())
    }

    /// Runs `f` on the group `group_id`, created empty if it is new (a commit may be a group's
    /// first sign of life).
    fn with_group<T>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> T) -> T {
        let mut groups = self.groups.borrow_mut();
        f(groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id)))
    }

    /// TxnOffsetCommit: offsets committed inside a producer's transaction, written to the log
    /// as part of it and applied when its COMMIT marker lands here ([`Coordinator::settle`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
        epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), GroupError> {
        self.ready(group_id)?;
        self.with_group(group_id, |group| {
            if !member_id.is_empty() || instance_id.is_some() {
                group.check_member(member_id, instance_id)?;
            }
            if generation >= 0 && generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
            if group
                .pending_txn
                .get(&producer_id)
                .is_some_and(|p| epoch < p.epoch)
            {
                return Err(GroupError::InvalidProducerEpoch);
            }
            Ok(())
        })?;
        let records = offset_records(group_id, &offsets);
        let builder = BatchBuilder {
            transactional: true,
            producer: ProducerInfo {
                producer_id,
                producer_epoch: epoch,
                // Written by the coordinator: no sequence to check (as Kafka's coordinator).
                base_sequence: -1,
            },
            ..BatchBuilder::default()
        };
        self.write_as(group_id, records, builder).await?;
        self.with_group(group_id, |group| {
            let pending = group.pending_txn.entry(producer_id).or_default();
            if pending.epoch != epoch {
                pending.epoch = epoch;
                pending.offsets.clear();
            }
            for (topic, partition, offset) in offsets {
                pending.offsets.insert((topic, partition), offset);
            }
        });
        self.txn_groups
            .borrow_mut()
            .entry(producer_id)
            .or_default()
            .insert(group_id.to_string());
        Ok(())
    }

    /// A COMMIT or ABORT marker of `producer_id` reached offsets partition `partition`: its
    /// pending transactional offsets there become committed, or are dropped.
    pub fn settle(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut groups = self.groups.borrow_mut();
        self.settle_txn(&mut groups, partition, producer_id, commit);
    }

    pub(super) fn settle_txn(
        &self,
        groups: &mut HashMap<String, Group>,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        let mut txn_groups = self.txn_groups.borrow_mut();
        let Some(ids) = txn_groups.get_mut(&producer_id) else {
            return;
        };
        ids.retain(|id| {
            if offsets_partition(id, self.config.offsets_partitions) != partition {
                return true;
            }
            if let Some(group) = groups.get_mut(id) {
                if let Some(pending) = group.pending_txn.remove(&producer_id) {
                    if commit {
                        group.offsets.extend(pending.offsets);
                    }
                }
            }
            false
        });
        if ids.is_empty() {
            txn_groups.remove(&producer_id);
        }
    }

    /// Whether any offset of the group waits for a transaction's outcome (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn is_unstable(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups.borrow().get(group_id).is_some_and(|g| {
            let key = (topic.to_string(), partition);
            g.pending_txn.values().any(|p| p.offsets.contains_key(&key))
        })
    }

    /// Committed offsets of `topics` (all of them when `None`); `None` for a partition with none.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<TopicPartitions>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, GroupError> {
        self.ready(group_id)?;
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        let committed = |topic: &str, partition: i32| {
            group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)).cloned())
        };
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .map(move |p| (topic.clone(), p))
                        .collect::<Vec<_>>()
                })
                .map(|(topic, p)| {
                    let offset = committed(&topic, p);
                    (topic, p, offset)
                })
                .collect(),
            None => {
                let mut all: Vec<(String, i32, Option<CommittedOffset>)> = group
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                all
            }
        })
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        self.ready(group_id)?;
        let records = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id).ok_or(GroupError::GroupNotFound)?;
            if !group.members.is_empty() || group.state != State::Empty {
                return Err(GroupError::NonEmptyGroup);
            }
            let mut records: Vec<(Bytes, Option<Bytes>)> = group
                .offsets
                .keys()
                .map(|(topic, partition)| (Key::offset(group_id, topic, *partition), None))
                .collect();
            records.push((
                Key::Group {
                    group: group_id.to_string(),
                }
                .encode(),
                None,
            ));
            records
        };
        self.write(group_id, records).await?;
        self.groups.borrow_mut().remove(group_id);
        Ok(())
    }

    /// OffsetDelete: drops committed offsets of topics the group does not consume now.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.ready(group_id)?;
        let (codes, records) = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id).ok_or(GroupError::GroupNotFound)?;
            let subscribed = |topic: &str| {
                group.state != State::Empty
                    && group.members.values().any(|m| {
                        let metadata = m.metadata_for(group.protocol.as_deref().unwrap_or(""));
                        subscription_topics(&metadata).iter().any(|t| t == topic)
                    })
            };
            let mut codes = Vec::new();
            let mut records = Vec::new();
            for (topic, partition) in &partitions {
                if subscribed(topic) {
                    codes.push(Err(GroupError::SubscribedToTopic));
                    continue;
                }
                codes.push(Ok(()));
                if group.offsets.contains_key(&(topic.clone(), *partition)) {
                    records.push((Key::offset(group_id, topic, *partition), None));
                }
            }
            (codes, records)
        };
        self.write(group_id, records).await?;
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            for ((topic, partition), code) in partitions.into_iter().zip(&codes) {
                if code.is_ok() {
                    group.offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(codes)
    }

    pub(super) async fn expire_offsets(&self) {
        let now_ms = self.clock.wall().0;
        let retention = self.config.offsets_retention_ms;
        let expired: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .values()
            .filter(|g| g.state == State::Empty)
            .map(|g| {
                let old: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(_, o)| {
                        // A consumer group's offsets live until it has been empty for the
                        // retention; a standalone committer's count from each commit.
                        let since = match (&g.protocol_type, g.empty_since_ms) {
                            (Some(_), Some(empty)) => empty.max(o.commit_timestamp),
                            _ => o.commit_timestamp,
                        };
                        since + retention < now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                (g.id.clone(), old)
            })
            .filter(|(_, old)| !old.is_empty())
            .collect();
        for (group, partitions) in expired {
            tracing::info!(%group, partitions = partitions.len(), "committed offsets expired");
            let _ = self.delete_offsets(&group, partitions).await;
        }
    }
}

/// The `__consumer_offsets` records of committed offsets.
pub(super) fn offset_records(
    group_id: &str,
    offsets: &[(String, i32, CommittedOffset)],
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|(topic, partition, offset)| {
            (
                Key::offset(group_id, topic, *partition),
                Some(offset.encode()),
            )
        })
        .collect()
}

pub(super) fn restore(group: &mut Group, stored: StoredGroup, now: Instant) {
    group.generation = stored.generation;
    group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
    group.protocol = stored.protocol.clone();
    group.leader = stored.leader;
    group.members.clear();
    group.static_members.clear();
    for m in stored.members {
        if let Some(instance) = &m.instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        let protocols = vec![(stored.protocol.clone().unwrap_or_default(), m.subscription)];
        group.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                protocols,
                assignment: m.assignment,
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            },
        );
    }
    group.state = if group.members.is_empty() {
        State::Empty
    } else {
        State::Stable
    };
    group.empty_since_ms = (group.state == State::Empty && stored.state_timestamp >= 0)
        .then_some(stored.state_timestamp);
}
