//! Where a topic's replicas go (Kafka's replica placement, rack-aware with `broker.rack`).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::change::ChangeError;
use super::image::{Assignment, Image};
use crate::model::NodeId;

/// Replicas for `partitions` of topic `id`: `factor` distinct registered brokers each, the first
/// of them the leader. Deterministic: the same image and id place the same.
///
/// Rack-aware as Kafka's placement (`broker.rack`): the live brokers are listed alternating
/// between racks (a broker without a rack is a rack of its own); partition `p`'s first replica is
/// the list's entry at a start derived from the id (so that topics do not all lead on the same
/// broker) plus `p`, and each next replica the next broker in the list on a rack the partition
/// does not use yet, while there is one. Without racks that is round-robin over the brokers.
pub fn place(
    image: &Image,
    id: Uuid,
    partitions: std::ops::Range<i32>,
    factor: u16,
) -> Result<Vec<Assignment>, ChangeError> {
    // A broker's rack, or itself where it has none (in id order).
    type Rack = (Option<String>, i32);
    let live: Vec<(NodeId, Rack)> = image
        .live_brokers()
        .map(|(id, b)| match &b.rack {
            Some(rack) => (*id, (Some(rack.clone()), 0)),
            None => (*id, (None, id.0)),
        })
        .collect();
    if factor == 0 || factor as usize > live.len() {
        return Err(ChangeError::InvalidReplicationFactor {
            factor,
            brokers: live.len(),
        });
    }
    let mut by_rack: BTreeMap<&Rack, Vec<NodeId>> = BTreeMap::new();
    for (id, rack) in &live {
        by_rack.entry(rack).or_default().push(*id);
    }
    // Alternating racks: the first broker of each rack, then the second of each, and so on.
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let list: Vec<(NodeId, &Rack)> = (0..deepest)
        .flat_map(|i| {
            by_rack
                .iter()
                .filter_map(move |(rack, ids)| ids.get(i).map(|id| (*id, *rack)))
        })
        .collect();
    let racks = by_rack.len();
    let start = (id.as_u128() % list.len() as u128) as usize;
    Ok(partitions
        .map(|partition| {
            let first = (start + partition as usize) % list.len();
            let mut replicas = vec![list[first].0];
            let mut used = vec![list[first].1];
            for step in 1..list.len() {
                if replicas.len() == factor as usize {
                    break;
                }
                let (id, rack) = list[(first + step) % list.len()];
                if used.len() < racks && used.contains(&rack) {
                    continue;
                }
                replicas.push(id);
                used.push(rack);
            }
            // Fewer racks than replicas: the rest in list order.
            for step in 1..list.len() {
                if replicas.len() == factor as usize {
                    break;
                }
                let id = list[(first + step) % list.len()].0;
                if !replicas.contains(&id) {
                    replicas.push(id);
                }
            }
            Assignment::new(replicas)
        })
        .collect())
}

/// Partitions on the replicas a client named (CreateTopics' and CreatePartitions' assignments),
/// checked as Kafka checks them: each list names registered brokers, each once, and as many as
/// `factor` (the topic's other partitions) where there is one. The replicas that are not fenced
/// are in sync and the first of them leads; a partition none of whose replicas is live is refused.
pub fn manual(
    image: &Image,
    lists: &[Vec<NodeId>],
    factor: Option<usize>,
) -> Result<Vec<Assignment>, ChangeError> {
    let refuse = |message: String| Err(ChangeError::InvalidReplicas(message));
    let mut placed = Vec::with_capacity(lists.len());
    for (i, replicas) in lists.iter().enumerate() {
        if replicas.is_empty() {
            return refuse(format!("the replica list of new partition {i} is empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = replicas.iter().find(|n| !seen.insert(**n)) {
            return refuse(format!(
                "new partition {i} names broker {} more than once",
                twice.0
            ));
        }
        if let Some(unknown) = replicas.iter().find(|n| !image.brokers.contains_key(n)) {
            return refuse(format!(
                "new partition {i} names broker {}, which is not registered",
                unknown.0
            ));
        }
        if let Some(factor) = factor.filter(|&f| f != replicas.len()) {
            return refuse(format!(
                "new partition {i} has {} replicas, the topic's others {factor}",
                replicas.len()
            ));
        }
        let mut assignment = Assignment::new(replicas.clone());
        assignment.isr.retain(|n| !image.fenced.contains(n));
        let Some(&leader) = assignment.isr.first() else {
            return refuse(format!(
                "every broker named for new partition {i} is fenced or shut down"
            ));
        };
        assignment.leader = leader;
        placed.push(assignment);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::change::{apply, Change};
    use crate::cluster::image::BrokerMeta;

    /// An image with brokers 1..=racks.len(), broker i+1 on rack racks[i].
    fn on_racks(racks: &[Option<&str>]) -> Image {
        racks
            .iter()
            .enumerate()
            .fold(Image::default(), |image, (i, rack)| {
                let broker = BrokerMeta {
                    host: "127.0.0.1".into(),
                    port: 9092 + i as u16,
                    rack: rack.map(str::to_string),
                    listeners: Vec::new(),
                    capacity: None,
                };
                let id = NodeId(i as i32 + 1);
                apply(&image, &Change::RegisterBroker { id, broker }).unwrap()
            })
    }

    fn rack_of<'a>(racks: &[Option<&'a str>], id: NodeId) -> Option<&'a str> {
        racks[id.0 as usize - 1]
    }

    #[test]
    fn replicas_spread_over_racks_and_leaders_over_brokers() {
        let racks = [
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ];
        let image = on_racks(&racks);
        let placed = place(&image, Uuid::from_u128(7), 0..12, 3).unwrap();
        let mut leads = BTreeMap::new();
        for a in &placed {
            let mut used: Vec<_> = a.replicas.iter().map(|id| rack_of(&racks, *id)).collect();
            used.sort();
            used.dedup();
            assert_eq!(used.len(), 3, "{:?} not on three racks", a.replicas);
            *leads.entry(a.leader).or_insert(0) += 1;
        }
        assert!(leads.values().all(|&n| n == 2), "{leads:?}");
        // Two racks, three replicas: both racks, three distinct brokers.
        let racks = [Some("a"), Some("a"), Some("b"), Some("b")];
        for a in place(&on_racks(&racks), Uuid::from_u128(3), 0..8, 3).unwrap() {
            let on_a = a
                .replicas
                .iter()
                .filter(|id| rack_of(&racks, **id) == Some("a"));
            assert!((1..=2).contains(&on_a.count()), "{:?}", a.replicas);
            let mut distinct = a.replicas.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
        }
    }

    #[test]
    fn without_racks_replicas_go_round_robin() {
        let image = on_racks(&[None, None, None, None]);
        let placed = place(&image, Uuid::from_u128(0), 0..4, 2).unwrap();
        let ids: Vec<Vec<i32>> = placed
            .iter()
            .map(|a| a.replicas.iter().map(|n| n.0).collect())
            .collect();
        assert_eq!(ids, [vec![1, 2], vec![2, 3], vec![3, 4], vec![4, 1]]);
        assert!(matches!(
            place(&image, Uuid::from_u128(0), 0..1, 5),
            Err(ChangeError::InvalidReplicationFactor {
                factor: 5,
                brokers: 4
            })
        ));
    }

    #[test]
    fn named_replicas_are_checked_as_kafka_checks_them() {
        let fenced = apply(&on_racks(&[None, None, None]), &Change::fence(NodeId(3))).unwrap();
        let nodes = |lists: &[&[i32]]| -> Vec<Vec<NodeId>> {
            let list = |l: &&[i32]| l.iter().map(|&n| NodeId(n)).collect();
            lists.iter().map(list).collect()
        };
        let create = |lists: &[&[i32]]| Change::CreateTopic {
            name: "t".into(),
            id: Uuid::from_u128(7),
            partitions: lists.len() as i32,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Some(nodes(lists)),
        };
        let image = apply(&fenced, &create(&[&[3, 2], &[1, 3]])).unwrap();
        let a = &image.topics["t"].assignments;
        // The fenced broker is a replica, not in sync, and does not lead.
        assert_eq!(a[0].replicas, nodes(&[&[3, 2]])[0]);
        assert_eq!(
            (a[0].leader, a[0].isr.clone()),
            (NodeId(2), vec![NodeId(2)])
        );
        assert_eq!(
            (a[1].leader, a[1].isr.clone()),
            (NodeId(1), vec![NodeId(1)])
        );
        // Empty, a broker twice, one not registered, only fenced ones.
        for bad in [&[&[][..]][..], &[&[1, 1]], &[&[4]], &[&[3]]] {
            let refused = apply(&fenced, &create(bad)).unwrap_err();
            assert!(
                matches!(refused, ChangeError::InvalidReplicas(_)),
                "{bad:?}"
            );
        }
        let grow = |count: i32, lists: &[&[i32]]| Change::CreatePartitions {
            name: "t".into(),
            count,
            assignments: Some(nodes(lists)),
        };
        let grown = apply(&image, &grow(3, &[&[2, 1]])).unwrap();
        assert_eq!(
            grown.topics["t"].assignments[2].replicas,
            nodes(&[&[2, 1]])[0]
        );
        // As many lists as new partitions, each as long as the topic's others.
        for (count, lists) in [(4, &[&[2, 1][..]][..]), (3, &[&[2]]), (3, &[&[1, 2, 3]])] {
            let refused = apply(&image, &grow(count, lists)).unwrap_err();
            assert!(
                matches!(refused, ChangeError::InvalidReplicas(_)),
                "{lists:?}"
            );
        }
    }

    #[test]
    fn a_change_written_before_named_replicas_still_reads() {
        let old = r#"{"CreatePartitions":{"name":"t","count":3}}"#;
        let change: Change = serde_json::from_str(old).unwrap();
        assert!(matches!(
            change,
            Change::CreatePartitions {
                assignments: None,
                ..
            }
        ));
    }
}
