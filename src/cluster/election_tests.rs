//! Reassignments and ElectLeaders as the image changes them.

use super::super::change::tests::{replicated, with_brokers};
use super::super::change::{apply, Change, ChangeError};
use super::*;

fn a(image: &Image) -> Assignment {
    image.topics["t"].assignments[0].clone()
}

fn reassign(replicas: Option<Vec<NodeId>>) -> Change {
    Change::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        replicas,
    }
}

/// The leader's ISR change to `isr`, from the epochs it holds.
fn alter(image: &Image, isr: Vec<NodeId>) -> Change {
    let now = a(image);
    Change::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: now.leader,
        leader_epoch: now.leader_epoch.0,
        partition_epoch: now.partition_epoch,
        isr,
    }
}

fn nodes(ids: &[i32]) -> Vec<NodeId> {
    ids.iter().map(|&id| NodeId(id)).collect()
}

/// Three replicas on brokers 1..=3 of four, broker 1 leading, all in sync.
fn on_first_three() -> Image {
    let image = apply(&with_brokers(4), &replicated("t", 1, 3)).unwrap();
    let placed = a(&image).replicas.clone();
    // Placement may put them anywhere: move them onto 1, 2, 3 (a reassignment whose target is
    // already in sync completes at once, but the fourth broker may be among them).
    let mut image = image;
    if placed.contains(&NodeId(4)) {
        image = apply(&image, &reassign(Some(nodes(&[1, 2, 3])))).unwrap();
        let with_all: Vec<NodeId> = a(&image).replicas.clone();
        image = apply(&image, &alter(&image, with_all)).unwrap();
    }
    let image = apply(&image, &reassign(Some(nodes(&[1, 2, 3])))).unwrap_or(image);
    let image = match a(&image).leader {
        NodeId(1) => image,
        _ => apply(&image, &Change::ElectPreferredLeaders).unwrap(),
    };
    assert_eq!(
        (a(&image).replicas, a(&image).leader, a(&image).isr),
        (nodes(&[1, 2, 3]), NodeId(1), nodes(&[1, 2, 3]))
    );
    assert!(!a(&image).is_reassigning());
    image
}

#[test]
fn a_reassignment_adds_copies_then_drops_the_old_replicas_once_the_new_are_in_sync() {
    let image = on_first_three();
    let before = a(&image);
    // Off broker 1 (the leader) onto 4.
    let moving = apply(&image, &reassign(Some(nodes(&[4, 2, 3])))).unwrap();
    let m = a(&moving);
    assert_eq!(m.replicas, nodes(&[4, 2, 3, 1]));
    assert_eq!(
        (m.adding.clone(), m.removing.clone()),
        (nodes(&[4]), nodes(&[1]))
    );
    assert_eq!((m.leader, m.isr.clone()), (NodeId(1), nodes(&[1, 2, 3])));
    assert_eq!(m.partition_epoch, before.partition_epoch + 1);
    assert_eq!(Image::from_toml(&moving.to_toml()).unwrap(), moving);
    // The new replica caught up: the leader adds it to the ISR, which completes the move; the
    // old leader leaves, and the first of the target in sync leads under a new epoch.
    let done = apply(&moving, &alter(&moving, nodes(&[1, 2, 3, 4]))).unwrap();
    let d = a(&done);
    assert_eq!(d.replicas, nodes(&[4, 2, 3]));
    assert_eq!((d.leader, d.isr.clone()), (NodeId(4), nodes(&[4, 2, 3])));
    assert_eq!(d.leader_epoch.0, before.leader_epoch.0 + 1);
    assert!(!d.is_reassigning());
}

#[test]
fn a_reassignment_cancelled_returns_to_the_replicas_it_had() {
    let image = on_first_three();
    let moving = apply(&image, &reassign(Some(nodes(&[4, 2, 3])))).unwrap();
    let cancelled = apply(&moving, &reassign(None)).unwrap();
    let c = a(&cancelled);
    // The old replicas in the order of the merged list, target first (as Kafka reverts).
    assert_eq!(
        (c.replicas, c.leader, c.isr),
        (nodes(&[2, 3, 1]), NodeId(1), nodes(&[2, 3, 1]))
    );
    assert!(!a(&cancelled).is_reassigning());
    assert_eq!(
        apply(&cancelled, &reassign(None)).unwrap_err(),
        ChangeError::NoReassignment("t".into(), 0)
    );
}

#[test]
fn a_smaller_target_already_in_sync_completes_at_once_and_bad_targets_are_refused() {
    let image = on_first_three();
    let shrunk = apply(&image, &reassign(Some(nodes(&[2, 3])))).unwrap();
    let s = a(&shrunk);
    assert_eq!(
        (s.replicas, s.leader, s.isr),
        (nodes(&[2, 3]), NodeId(2), nodes(&[2, 3]))
    );
    for bad in [vec![], nodes(&[2, 2]), nodes(&[2, 9])] {
        assert!(
            matches!(
                apply(&image, &reassign(Some(bad.clone()))),
                Err(ChangeError::InvalidReplicas(_))
            ),
            "{bad:?}"
        );
    }
    let elsewhere = Change::ReassignPartition {
        topic: "t".into(),
        partition: 1,
        replicas: Some(nodes(&[1])),
    };
    assert_eq!(
        apply(&image, &elsewhere).unwrap_err(),
        ChangeError::UnknownPartition("t".into(), 1)
    );
}

#[test]
fn elect_leaders_preferred_and_unclean() {
    let image = on_first_three();
    let fenced = &image.fenced;
    let one = vec![("t".to_string(), 0)];
    assert_eq!(
        election_refused(&a(&image), false, fenced),
        Some(ElectionRefused::NotNeeded)
    );
    // The leader fenced: 2 leads; the preferred back and in sync is elected on request.
    let image = apply(&image, &Change::fence(NodeId(1))).unwrap();
    assert_eq!(a(&image).leader, NodeId(2));
    assert_eq!(
        election_refused(&a(&image), false, &image.fenced),
        Some(ElectionRefused::PreferredUnavailable)
    );
    let image = apply(&image, &Change::UnfenceBroker { id: NodeId(1) }).unwrap();
    let image = apply(&image, &alter(&image, nodes(&[1, 2, 3]))).unwrap();
    assert_eq!(election_refused(&a(&image), false, &image.fenced), None);
    let elect = |unclean| Change::ElectLeaders {
        unclean,
        partitions: one.clone(),
    };
    let elected = apply(&image, &elect(false)).unwrap();
    assert_eq!(a(&elected).leader, NodeId(1));
    assert_eq!(a(&elected).leader_epoch.0, a(&image).leader_epoch.0 + 1);
    // Unclean: only 1 in sync, and it is fenced; 2 is live but out of sync.
    let image = apply(&elected, &alter(&elected, nodes(&[1]))).unwrap();
    let image = apply(&image, &Change::fence(NodeId(1))).unwrap();
    assert_eq!(a(&image).leader, NodeId(1), "offline");
    assert_eq!(election_refused(&a(&image), true, &image.fenced), None);
    let same = apply(&image, &elect(false)).unwrap();
    assert_eq!(
        a(&same).leader,
        NodeId(1),
        "a preferred election leaves it offline"
    );
    let unclean = apply(&image, &elect(true)).unwrap();
    assert_eq!(
        (a(&unclean).leader, a(&unclean).isr),
        (NodeId(2), nodes(&[2]))
    );
    assert_eq!(
        election_refused(&a(&unclean), true, &unclean.fenced),
        Some(ElectionRefused::NotNeeded)
    );
}
