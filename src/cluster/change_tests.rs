use super::*;

/// An image with brokers 1..=n registered.
pub(in crate::cluster) fn with_brokers(n: i32) -> Image {
    (1..=n).fold(Image::default(), |image, id| {
        let broker = BrokerMeta {
            host: "127.0.0.1".into(),
            port: 9092 + id as u16,
            rack: None,
            listeners: Vec::new(),
            capacity: None,
        };
        let id = NodeId(id);
        apply(&image, &Change::RegisterBroker { id, broker }).unwrap()
    })
}

/// Creates `name` with `factor` replicas of each of its `partitions`.
pub(in crate::cluster) fn replicated(name: &str, partitions: i32, factor: u16) -> Change {
    match Change::create_topic(name, partitions, BTreeMap::new()) {
        Change::CreateTopic {
            name,
            id,
            partitions,
            configs,
            ..
        } => Change::CreateTopic {
            name,
            id,
            partitions,
            replication_factor: factor,
            configs,
            assignments: None,
        },
        _ => unreachable!(),
    }
}

#[test]
fn round_trips_through_toml() {
    let mut image = with_brokers(1);
    let configs = [("retention.ms".to_string(), "1000".to_string())].into();
    let create = Change::create_topic("a.b-c_d", 3, configs);
    image = apply(&image, &create).unwrap();
    let runtime = Change::SetBrokerConfigs {
        configs: [("log.retention.ms".to_string(), "5000".to_string())].into(),
    };
    image = apply(&image, &runtime).unwrap();
    let static_only = Change::SetBrokerConfigs {
        configs: [("log.dirs".to_string(), "/elsewhere".to_string())].into(),
    };
    assert!(matches!(
        apply(&image, &static_only),
        Err(ChangeError::InvalidConfig(_))
    ));
    // A broker with named listeners, and a user's SCRAM credential (bytes that base64
    // writes with its `/` and `+`).
    let endpoint = |name: &str, host: &str| crate::cluster::Endpoint {
        name: name.into(),
        host: host.into(),
        port: 9094,
    };
    let broker = BrokerMeta {
        host: "b2".into(),
        port: 9092,
        rack: None,
        listeners: vec![
            endpoint("SASL_SSL", "b2.example"),
            endpoint("INTERNAL", "::1"),
        ],
        capacity: Some(crate::cluster::Capacity {
            shards: 4,
            partitions_per_shard: 5_000,
        }),
    };
    image = apply(
        &image,
        &Change::RegisterBroker {
            id: NodeId(2),
            broker,
        },
    )
    .unwrap();
    assert_eq!(
        image.brokers[&NodeId(2)].endpoint("INTERNAL"),
        ("::1", 9094)
    );
    assert_eq!(image.brokers[&NodeId(2)].endpoint("OTHER"), ("b2", 9092));
    let credential = Credential {
        salt: vec![0xfb, 0xff, 0xbf],
        iterations: 4096,
        stored_key: vec![0xff; 32],
        server_key: vec![0x3e; 32],
    };
    let user = |credential: Option<Credential>| Change::SetScramCredential {
        user: "al ice=,".into(),
        mechanism: Mechanism::Sha256,
        credential,
    };
    image = apply(&image, &user(Some(credential.clone()))).unwrap();
    assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
    let weak = Credential {
        iterations: 100,
        ..credential
    };
    assert!(matches!(
        apply(&image, &user(Some(weak))),
        Err(ChangeError::UnacceptableCredential(_))
    ));
    let without = apply(&image, &user(None)).unwrap();
    assert!(without.scram.is_empty());
    assert!(matches!(
        apply(&without, &user(None)),
        Err(ChangeError::NoCredential(..))
    ));
    assert_eq!(
        apply(&image, &create).unwrap_err(),
        ChangeError::TopicExists("a.b-c_d".into())
    );
}

#[test]
fn the_same_changes_make_the_same_image() {
    let changes = [
        Change::create_topic("a", 2, BTreeMap::new()),
        Change::create_topic("b", 1, BTreeMap::new()),
        Change::CreatePartitions {
            name: "a".into(),
            count: 5,
            assignments: None,
        },
        Change::DeleteTopic { name: "b".into() },
    ];
    let replay = || {
        changes
            .iter()
            .try_fold(with_brokers(3), |image, change| apply(&image, change))
            .unwrap()
    };
    let image = replay();
    assert_eq!(image, replay());
    assert_eq!(image.revision, 3 + 4);
    assert_eq!(image.topics["a"].partitions, 5);
    assert!(!image.topics.contains_key("b"));
    // An id travels in its change: the same id twice is refused.
    let Change::CreateTopic { id, .. } = &changes[0] else {
        unreachable!()
    };
    let again = Change::CreateTopic {
        name: "c".into(),
        id: *id,
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
        assignments: None,
    };
    assert_eq!(
        apply(&image, &again).unwrap_err(),
        ChangeError::TopicIdInUse(*id)
    );
}

#[test]
fn a_fenced_broker_gets_no_new_replicas_until_it_returns() {
    let image = with_brokers(3);
    let fence = Change::fence(NodeId(2));
    let image = apply(&image, &fence).unwrap();
    assert_eq!(image.live_brokers().count(), 2);
    let image = apply(&image, &replicated("t", 4, 1)).unwrap();
    assert!(image.topics["t"]
        .assignments
        .iter()
        .all(|a| a.leader != NodeId(2)));
    assert_eq!(
        apply(&image, &replicated("u", 1, 3)).unwrap_err(),
        ChangeError::InvalidReplicationFactor {
            factor: 3,
            brokers: 2
        }
    );
    assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
    assert_eq!(
        apply(&image, &Change::fence(NodeId(9))).unwrap_err(),
        ChangeError::UnknownBroker(9)
    );
    let back = apply(&image, &Change::UnfenceBroker { id: NodeId(2) }).unwrap();
    assert_eq!(back.live_brokers().count(), 3);
    // Registering again unfences too.
    let broker = image.brokers[&NodeId(2)].clone();
    let registered = Change::RegisterBroker {
        id: NodeId(2),
        broker,
    };
    assert!(apply(&image, &registered).unwrap().fenced.is_empty());
}

#[test]
fn replicas_spread_over_the_brokers_and_new_partitions_follow() {
    let image = apply(&with_brokers(3), &replicated("t", 6, 3)).unwrap();
    let meta = &image.topics["t"];
    assert_eq!(meta.assignments.len(), 6);
    let mut leads = BTreeMap::new();
    for a in meta.assignments.iter() {
        let mut replicas = a.replicas.clone();
        replicas.sort();
        replicas.dedup();
        assert_eq!(replicas.len(), 3, "{a:?}");
        assert_eq!((a.leader, &a.isr), (a.replicas[0], &a.replicas));
        *leads.entry(a.leader).or_insert(0) += 1;
    }
    assert_eq!(leads.values().collect::<Vec<_>>(), [&2, &2, &2]);
    let grown = Change::CreatePartitions {
        name: "t".into(),
        count: 8,
        assignments: None,
    };
    let image = apply(&image, &grown).unwrap();
    assert_eq!(image.topics["t"].assignments.len(), 8);
    assert_eq!(image.topics["t"].assignments[7].replicas.len(), 3);
    assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
    assert_eq!(
        apply(&image, &replicated("u", 1, 4)).unwrap_err(),
        ChangeError::InvalidReplicationFactor {
            factor: 4,
            brokers: 3
        }
    );
}

#[test]
fn a_broker_registering_alone_takes_partitions_written_without_assignments() {
    let mut image = with_brokers(1);
    image = apply(&image, &Change::create_topic("old", 2, BTreeMap::new())).unwrap();
    image.brokers.clear();
    image.topics.get_mut("old").unwrap().assignments = Default::default();
    let image = Image::from_toml(&image.to_toml()).unwrap();
    assert!(image.topics["old"].assignments.is_empty());
    let broker = BrokerMeta {
        host: "localhost".into(),
        port: 9092,
        rack: None,
        listeners: Vec::new(),
        capacity: None,
    };
    let id = NodeId(7);
    let image = apply(&image, &Change::RegisterBroker { id, broker }).unwrap();
    let assignments = &image.topics["old"].assignments;
    assert!(assignments
        .iter()
        .map(|a| &a.replicas)
        .eq([&vec![id], &vec![id]]));
}

#[test]
fn producer_id_blocks_never_overlap() {
    let block = Change::AllocateProducerIds { count: 1000 };
    let image = apply(&Image::default(), &block).unwrap();
    let image = apply(&image, &block).unwrap();
    assert_eq!(image.producer_ids_end, 2000);
    assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
}

#[test]
fn refuses_bad_names_counts_and_configs() {
    let image = with_brokers(1);
    let create = |name: &str, partitions: i32, key: &str, value: &str| {
        Change::create_topic(name, partitions, [(key.into(), value.into())].into())
    };
    for bad in ["", ".", "..", "a/b", "spaced name", &"x".repeat(250)] {
        assert!(
            matches!(
                apply(&image, &create(bad, 1, "retention.ms", "1")),
                Err(ChangeError::InvalidTopicName(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        apply(&image, &create("t", 0, "retention.ms", "1")),
        Err(ChangeError::InvalidPartitions(_))
    ));
    let bad_config = apply(&image, &create("t", 1, "retention.ms", "soon")).unwrap_err();
    assert!(
        bad_config.to_string().contains("retention.ms"),
        "{bad_config:?}"
    );
    assert!(apply(&image, &create("t", 1, "no.such.key", "1")).is_err());
}

#[test]
fn a_fenced_leader_hands_over_to_the_isr_and_the_last_in_sync_leads_again() {
    let image = apply(&with_brokers(3), &replicated("t", 1, 3)).unwrap();
    let a = |image: &Image| image.topics["t"].assignments[0].clone();
    let first = a(&image);
    let leader = first.leader;
    let image = apply(&image, &Change::fence(leader)).unwrap();
    let second = a(&image);
    assert_ne!(second.leader, leader);
    assert_eq!(second.leader_epoch.0, first.leader_epoch.0 + 1);
    assert_eq!(second.partition_epoch, first.partition_epoch + 1);
    assert!(!second.isr.contains(&leader) && second.isr.len() == 2);
    // A follower fenced leaves the ISR; the leader stays.
    let follower = *second.isr.iter().find(|f| **f != second.leader).unwrap();
    let image = apply(&image, &Change::fence(follower)).unwrap();
    let third = a(&image);
    assert_eq!(
        (third.leader, &third.isr),
        (second.leader, &vec![second.leader])
    );
    assert_eq!(third.leader_epoch, second.leader_epoch);
    // The last in sync fenced: offline, nothing changes, and brokers out of sync that return
    // do not lead.
    let last = third.leader;
    let image = apply(&image, &Change::fence(last)).unwrap();
    assert_eq!(a(&image), third);
    let image = apply(&image, &Change::UnfenceBroker { id: leader }).unwrap();
    assert_eq!(a(&image), third);
    let image = apply(&image, &Change::UnfenceBroker { id: last }).unwrap();
    assert_eq!(a(&image).leader, last);
    // The leader grows the ISR from the epochs it holds, with live replicas only.
    let now = a(&image);
    let alter = |isr: Vec<NodeId>, partition_epoch| Change::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: now.leader,
        leader_epoch: now.leader_epoch.0,
        partition_epoch,
        isr,
    };
    let all = now.replicas.clone();
    assert_eq!(
        apply(&image, &alter(all.clone(), now.partition_epoch)).unwrap_err(),
        ChangeError::IneligibleReplica(follower.0)
    );
    let two = vec![now.leader, leader];
    assert_eq!(
        apply(&image, &alter(two.clone(), now.partition_epoch - 1)).unwrap_err(),
        ChangeError::StaleEpoch
    );
    assert_eq!(
        apply(&image, &alter(vec![leader], now.partition_epoch)).unwrap_err(),
        ChangeError::IneligibleReplica(now.leader.0)
    );
    let image = apply(&image, &alter(two, now.partition_epoch)).unwrap();
    assert_eq!(a(&image).isr.len(), 2);
    assert_eq!(a(&image).partition_epoch, now.partition_epoch + 1);
    // The preferred replica (the first) is in sync again: an election makes it the leader.
    let preferred = a(&image).replicas[0];
    let moves = super::super::election::preferred_elections(&image);
    let elected = apply(&image, &Change::ElectPreferredLeaders).unwrap();
    assert_eq!(
        (moves, a(&elected).leader),
        if a(&image).isr.contains(&preferred) && a(&image).leader != preferred {
            (1, preferred)
        } else {
            (0, a(&image).leader)
        }
    );
    assert_eq!(Image::from_toml(&image.to_toml()).unwrap(), image);
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let image = apply(&with_brokers(2), &replicated("t", 1, 2)).unwrap();
    let leader = image.topics["t"].assignments[0].leader;
    let other = image.topics["t"].assignments[0].replicas[1];
    // The follower drops out of sync, then the leader is fenced.
    let a = image.topics["t"].assignments[0].clone();
    let shrink = Change::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: a.leader_epoch.0,
        partition_epoch: a.partition_epoch,
        isr: vec![leader],
    };
    let image = apply(&image, &shrink).unwrap();
    let fenced = apply(&image, &Change::fence(leader)).unwrap();
    assert_eq!(fenced.topics["t"].assignments[0].leader, leader, "offline");
    // The controller's default lets it, unless the topic says no.
    let controller_says = Change::FenceBroker {
        id: leader,
        unclean: true,
    };
    let fenced = apply(&image, &controller_says).unwrap();
    assert_eq!(fenced.topics["t"].assignments[0].leader, other);
    let topic_says_no = Change::SetTopicConfigs {
        name: "t".into(),
        configs: [("unclean.leader.election.enable".into(), "false".into())].into(),
    };
    let refusing = apply(&image, &topic_says_no).unwrap();
    let fenced = apply(&refusing, &controller_says).unwrap();
    assert_eq!(fenced.topics["t"].assignments[0].leader, leader);
    let unclean = Change::SetTopicConfigs {
        name: "t".into(),
        configs: [("unclean.leader.election.enable".into(), "true".into())].into(),
    };
    let image = apply(&image, &unclean).unwrap();
    let fenced = apply(&image, &Change::fence(leader)).unwrap();
    let a = &fenced.topics["t"].assignments[0];
    assert_eq!((a.leader, &a.isr), (other, &vec![other]));
}

#[test]
fn an_unregistered_broker_leaves_the_cluster_and_its_replicas_stay_offline() {
    let image = apply(&with_brokers(3), &replicated("t", 3, 2)).unwrap();
    let gone = NodeId(2);
    let unregister = Change::UnregisterBroker { id: gone };
    let after = apply(&image, &unregister).unwrap();
    assert!(!after.brokers.contains_key(&gone));
    assert!(!after.is_live(&gone));
    for (before, now) in image.topics["t"]
        .assignments
        .iter()
        .zip(after.topics["t"].assignments.iter())
    {
        // Its replicas stay assigned (offline) until reassigned; it leads none and is in no ISR.
        assert_eq!(before.replicas, now.replicas);
        assert_ne!(now.leader, gone);
        assert!(!now.isr.contains(&gone));
    }
    // Nothing new goes on it, and a fence of another broker does not elect it.
    let after = apply(&after, &replicated("u", 4, 2)).unwrap();
    assert!(after.topics["u"]
        .assignments
        .iter()
        .all(|a| !a.replicas.contains(&gone)));
    let other = apply(&after, &Change::fence(NodeId(1))).unwrap();
    assert!(other.topics["t"]
        .assignments
        .iter()
        .all(|a| a.leader != gone));
    assert_eq!(
        apply(&after, &unregister).unwrap_err(),
        ChangeError::UnknownBroker(2)
    );
    assert_eq!(Image::from_toml(&after.to_toml()).unwrap(), after);
    // Registering again brings it back.
    let broker = image.brokers[&gone].clone();
    let back = apply(&after, &Change::RegisterBroker { id: gone, broker }).unwrap();
    assert!(back.is_live(&gone));
}
