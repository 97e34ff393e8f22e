use super::*;

#[test]
fn groups_land_where_kafka_puts_them() {
    // Java: Math.abs("my-group".hashCode()) % 50, hashCode = -1906497762.
    assert_eq!(offsets_partition("my-group", 50), 12);
    assert!((0..50).contains(&offsets_partition("", 50)));
}

type Written = Rc<RefCell<Vec<(i32, Bytes)>>>;

fn coordinator(retention_ms: i64) -> (Coordinator, Written) {
    coordinator_on(retention_ms, Rc::new(crate::io::SystemClock))
}

/// A coordinator on `clock`'s time.
fn coordinator_on(retention_ms: i64, clock: Rc<dyn Clock>) -> (Coordinator, Written) {
    let written: Written = Rc::default();
    let sink = written.clone();
    let persist: Persist = Rc::new(move |partition, bytes| {
        sink.borrow_mut().push((partition, bytes));
        Box::pin(async { Ok(()) })
    });
    let config = GroupConfig {
        offsets_partitions: 50,
        session_timeout_ms_min: 1_000,
        session_timeout_ms_max: 60_000,
        initial_rebalance_delay_ms: 0,
        group_size_max: 10,
        offsets_retention_ms: retention_ms,
        offsets_retention_check_ms: 0,
    };
    (Coordinator::new(config, persist, clock), written)
}

fn replay(written: &[(i32, Bytes)]) -> Vec<(i32, LogEntry)> {
    let mut entries = Vec::new();
    for (partition, bytes) in written {
        let view = crate::model::BatchView::validate(bytes).unwrap().0;
        batch_entries(&view, &mut |e| entries.push((*partition, e))).unwrap();
    }
    entries
}

fn offset(offset: i64, commit_timestamp: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp,
    }
}

fn committed(c: &Coordinator, group: &str) -> Option<i64> {
    let topics = vec![("t".to_string(), vec![0])];
    let fetched = c.fetch_offsets(group, Some(topics)).unwrap();
    fetched[0].2.as_ref().map(|o| o.offset)
}

#[test]
fn nothing_is_served_before_the_groups_are_loaded() {
    let (c, written) = coordinator(60_000);
    let loading = GroupError::Loading;
    assert_eq!(c.fetch_offsets("g", None).unwrap_err(), loading);
    assert_eq!(c.heartbeat("g", 1, "m", None), Err(loading));
    let commit = c.commit("g", -1, "", None, vec![("t".into(), 0, offset(5, 0))]);
    assert_eq!(futures_lite::future::block_on(commit), Err(loading));
    assert!(written.borrow().is_empty());
    c.load(Vec::new());
    assert_eq!(committed(&c, "g"), None);
}

#[test]
fn offsets_expire_by_retention_and_are_rebuilt_from_the_log() {
    futures_lite::future::block_on(async {
        let day = 86_400_000;
        let now = TimestampMs::now().0;
        let (c, written) = coordinator(day);
        c.load(Vec::new());
        // A standalone committer: retention counts from each commit.
        let stale = vec![("t".to_string(), 0, offset(7, now - 2 * day))];
        let fresh = vec![("t".to_string(), 0, offset(9, now))];
        c.commit("old", -1, "", None, stale).await.unwrap();
        c.commit("new", -1, "", None, fresh).await.unwrap();
        c.tick(Instant::now()).await;
        assert_eq!(committed(&c, "old"), None);
        assert_eq!(committed(&c, "new"), Some(9));
        // A fresh coordinator replaying what was written agrees: the tombstone wins.
        let (replayed, _) = coordinator(day);
        let written = written.borrow();
        replayed.load(replay(&written));
        assert_eq!(committed(&replayed, "old"), None);
        assert_eq!(committed(&replayed, "new"), Some(9));
    });
}

#[test]
fn a_consumer_groups_offsets_count_from_when_it_became_empty() {
    futures_lite::future::block_on(async {
        let day = 86_400_000;
        let clock = Rc::new(crate::io::ManualClock::new());
        let (c, _) = coordinator_on(day, clock.clone());
        c.load(Vec::new());
        let joined = c.join(join_params("", None)).await;
        assert_eq!(joined.error, None);
        let old = clock.wall().0 - 2 * day;
        let offsets = vec![("t".to_string(), 0, offset(3, old))];
        let member = joined.member_id.as_str();
        let synced = c
            .sync("g", joined.generation, member, None, Vec::new())
            .await;
        assert_eq!(synced.error, None);
        c.commit("g", joined.generation, member, None, offsets)
            .await
            .unwrap();
        c.tick(clock.now()).await;
        assert_eq!(committed(&c, "g"), Some(3), "the group is not empty");
        c.leave("g", vec![(joined.member_id.clone(), None)])
            .await
            .unwrap();
        c.tick(clock.now()).await;
        c.tick(clock.now()).await;
        assert_eq!(c.describe("g").state, "Empty");
        assert_eq!(committed(&c, "g"), Some(3), "empty for less than a day");
        // A day after it became empty, on the test's clock: the offsets go.
        clock.advance(Duration::from_millis(day as u64 + 1_000));
        c.tick(clock.now()).await;
        assert_eq!(committed(&c, "g"), None, "empty for more than a day");
    });
}

fn join_params(member_id: &str, instance_id: Option<&str>) -> JoinParams {
    JoinParams {
        group: "g".into(),
        member_id: member_id.into(),
        instance_id: instance_id.map(String::from),
        client_id: "test".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member: false,
        skip_assignment_supported: true,
    }
}

#[test]
fn members_commit_while_a_rebalance_is_prepared_not_while_it_completes() {
    futures_lite::future::block_on(async {
        let (c, _) = coordinator(86_400_000);
        c.load(Vec::new());
        let a = c.join(join_params("", None)).await;
        assert_eq!(a.error, None);
        let offsets = |o| vec![("t".to_string(), 0, offset(o, TimestampMs::now().0))];
        let commit = |o| c.commit("g", a.generation, &a.member_id, None, offsets(o));
        // Joined, not yet synced: the assignment is being completed (Kafka refuses here).
        assert_eq!(c.describe("g").state, "CompletingRebalance");
        assert_eq!(commit(1).await, Err(GroupError::RebalanceInProgress));
        let synced = c
            .sync("g", a.generation, &a.member_id, None, Vec::new())
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(commit(2).await, Ok(()));
        // A second consumer joins: the group prepares a rebalance, and the first member
        // commits what it processed before it gives its partitions up.
        let b = c.join(join_params("", None));
        futures::pin_mut!(b);
        assert!(futures::poll!(b.as_mut()).is_pending());
        assert_eq!(c.describe("g").state, "PreparingRebalance");
        assert_eq!(commit(3).await, Ok(()));
        assert_eq!(committed(&c, "g"), Some(3));
    });
}

#[test]
fn a_static_leader_rejoins_a_stable_group_without_a_rebalance() {
    futures_lite::future::block_on(async {
        let (c, _) = coordinator(86_400_000);
        c.load(Vec::new());
        let first = c.join(join_params("", Some("i1"))).await;
        assert_eq!(
            (first.error, first.leader.as_str()),
            (None, first.member_id.as_str())
        );
        let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"p0"))];
        let synced = c
            .sync("g", first.generation, &first.member_id, None, assignment)
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(c.describe("g").state, "Stable");

        // The same instance restarts (no member id), same protocols: answered at once.
        let again = c.join(join_params("", Some("i1"))).await;
        assert_eq!(again.error, None);
        assert_eq!(again.generation, first.generation, "no new generation");
        assert_ne!(again.member_id, first.member_id);
        assert_eq!(again.leader, again.member_id);
        assert!(again.skip_assignment);
        assert_eq!(again.members.len(), 1);
        assert_eq!(c.describe("g").state, "Stable");
        // Its assignment stands; the old id is fenced.
        let synced = c
            .sync(
                "g",
                again.generation,
                &again.member_id,
                Some("i1"),
                Vec::new(),
            )
            .await;
        assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
        let fenced = c.heartbeat("g", first.generation, &first.member_id, Some("i1"));
        assert_eq!(fenced, Err(GroupError::FencedInstance));

        // A client before JoinGroup v9 is told the previous leader, so it assigns nothing.
        let old_client = c
            .join(JoinParams {
                skip_assignment_supported: false,
                ..join_params("", Some("i1"))
            })
            .await;
        assert_eq!(old_client.generation, first.generation);
        assert_eq!(old_client.leader, again.member_id);
        assert!(old_client.members.is_empty() && !old_client.skip_assignment);
    });
}

#[test]
fn reads_a_subscription() {
    let mut m = vec![0, 1, 0, 0, 0, 2];
    for t in ["a", "bc"] {
        m.extend_from_slice(&(t.len() as i16).to_be_bytes());
        m.extend_from_slice(t.as_bytes());
    }
    assert_eq!(subscription_topics(&m), vec!["a", "bc"]);
    assert!(subscription_topics(&[1]).is_empty());
}

#[test]
fn transactional_offsets_wait_for_their_marker() {
    futures_lite::future::block_on(async {
        let (c, written) = coordinator(86_400_000);
        c.load(Vec::new());
        let partition = offsets_partition("g", 50);
        let commit = |pid: i64, epoch: i16, at: i64| {
            c.txn_commit(
                "g",
                pid,
                epoch,
                -1,
                "",
                None,
                vec![("t".into(), 0, offset(at, 0))],
            )
        };
        commit(7, 0, 10).await.unwrap();
        assert_eq!(committed(&c, "g"), None, "pending until the marker");
        assert!(c.is_unstable("g", "t", 0));
        c.settle(partition + 1, 7, true);
        assert_eq!(committed(&c, "g"), None, "a marker on another partition");
        c.settle(partition, 7, true);
        assert_eq!(committed(&c, "g"), Some(10));
        assert!(!c.is_unstable("g", "t", 0));
        commit(7, 1, 20).await.unwrap();
        assert_eq!(
            commit(7, 0, 30).await,
            Err(GroupError::InvalidProducerEpoch)
        );
        c.settle(partition, 7, false);
        assert_eq!(committed(&c, "g"), Some(10), "aborted offsets are dropped");
        // A pending commit, then a replay of the log: pending again until its marker.
        commit(8, 0, 40).await.unwrap();
        let mut log = written.borrow().clone();
        let (replayed, _) = coordinator(86_400_000);
        replayed.load(replay(&log));
        assert_eq!(committed(&replayed, "g"), None);
        let marker = crate::model::records::marker_batch(8, 0, true, 0, TimestampMs(0));
        log.push((partition, marker));
        let (replayed, _) = coordinator(86_400_000);
        replayed.load(replay(&log));
        assert_eq!(committed(&replayed, "g"), Some(40));
    });
}
