//! A quorum of one on a real data dir: changes commit once on disk, survive a restart, are
//! replayed from the log when the stored image is behind it, and the log is cut behind the
//! stored image.

use std::path::Path;
use std::rc::Rc;

use super::{NoPeers, Quorum};
use crate::cluster::{BrokerMeta, Change, ChangeError, FileStore};
use crate::io;
use crate::model::NodeId;

/// The default `node.id`: raft itself keeps 0 for "none".
const ME: NodeId = NodeId(0);

async fn open(dir: &Path) -> Rc<Quorum> {
    Quorum::open(dir, ME, &[ME], io::Faults::default(), Rc::new(NoPeers))
        .await
        .expect("the quorum opens")
}

fn register() -> Change {
    Change::RegisterBroker {
        id: ME,
        broker: BrokerMeta {
            host: "localhost".into(),
            port: 9092,
            rack: None,
            listeners: Vec::new(),
            capacity: None,
        },
    }
}

#[test]
fn a_quorum_of_one_commits_its_changes_and_recovers_them() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let q = open(dir.path()).await;
        assert!(q.is_leader(), "the only voter leads");
        q.propose(&register()).await.unwrap();
        let create = Change::create_topic("t", 4, Default::default());
        let image = q.propose(&create).await.unwrap();
        assert_eq!(image.topics["t"].partitions, 4);
        let again = q.propose(&create).await;
        assert!(
            matches!(again, Err(ChangeError::TopicExists(_))),
            "{again:?}"
        );
        assert_eq!(
            q.image().revision,
            image.revision,
            "a refusal changes nothing"
        );
    });
    let (stored, applied) = FileStore::new(dir.path()).load_applied().unwrap();
    assert_eq!(stored.topics["t"].partitions, 4);
    assert_eq!(applied.voters, [0]);
    assert!(applied.index >= 4, "{applied:?}");
    io::block_on(async {
        let q = open(dir.path()).await;
        assert_eq!(q.image().topics["t"].partitions, 4);
        assert_eq!(q.image().brokers.len(), 1);
        let more = Change::CreatePartitions {
            name: "t".into(),
            count: 6,
            assignments: None,
        };
        assert_eq!(q.propose(&more).await.unwrap().topics["t"].partitions, 6);
    });
}

#[test]
fn committed_changes_the_stored_image_lacks_are_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let topics = FileStore::new(dir.path()).path();
    let before = io::block_on(async {
        let q = open(dir.path()).await;
        q.propose(&register()).await.unwrap();
        let before = std::fs::read(&topics).unwrap();
        let create = Change::create_topic("late", 2, Default::default());
        q.propose(&create).await.unwrap();
        before
    });
    // A crash after the entry was committed and before the image was stored.
    std::fs::write(&topics, before).unwrap();
    assert!(!FileStore::new(dir.path())
        .load()
        .unwrap()
        .topics
        .contains_key("late"));
    io::block_on(async {
        let q = open(dir.path()).await;
        assert_eq!(q.image().topics["late"].partitions, 2, "replayed");
    });
    assert!(FileStore::new(dir.path())
        .load()
        .unwrap()
        .topics
        .contains_key("late"));
}

#[test]
fn the_log_is_cut_behind_the_stored_image() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("__cluster_metadata/raft/entries");
    io::block_on(async {
        let q = open(dir.path()).await;
        for _ in 0..60 {
            q.propose(&Change::AllocateProducerIds { count: 1000 })
                .await
                .unwrap();
        }
        let first = {
            let node = q.node.borrow();
            raft::Storage::first_index(node.store()).unwrap()
        };
        assert!(first > 30, "the log starts at {first}");
    });
    assert!(std::fs::metadata(&entries).unwrap().len() < 30 * 200);
    io::block_on(async {
        let q = open(dir.path()).await;
        assert_eq!(q.image().producer_ids_end, 60_000);
        q.propose(&Change::AllocateProducerIds { count: 1000 })
            .await
            .unwrap();
        assert_eq!(q.image().producer_ids_end, 61_000);
    });
}

#[test]
fn a_full_disk_refuses_the_change_and_a_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let faults = io::Faults::default();
        let q = Quorum::open(dir.path(), ME, &[ME], faults.clone(), Rc::new(NoPeers))
            .await
            .unwrap();
        q.propose(&register()).await.unwrap();
        faults.set(Some(io::Fault::FailWrites {
            errno: libc::ENOSPC,
        }));
        let create = Change::create_topic("full", 1, Default::default());
        let refused = q.propose(&create).await;
        assert!(
            matches!(refused, Err(ChangeError::NotStored(_))),
            "{refused:?}"
        );
        faults.set(None);
        // Raft's state and the disk may differ now: nothing more until a restart.
        let after = q.propose(&create).await;
        assert!(matches!(after, Err(ChangeError::NotStored(_))), "{after:?}");
    });
    io::block_on(async {
        let q = open(dir.path()).await;
        assert!(!q.image().topics.contains_key("full"), "never committed");
        assert_eq!(q.image().brokers.len(), 1, "what was committed stays");
        let create = Change::create_topic("full", 1, Default::default());
        assert!(q.propose(&create).await.is_ok());
    });
}
