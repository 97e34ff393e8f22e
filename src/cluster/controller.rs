//! The controller: the one place that changes the metadata. It checks each change against the
//! current image (`apply`, and the caller's `admit`), one at a time, proposes it to the metadata
//! quorum, and once the quorum has committed and applied it has the new image published (to
//! every shard, by the caller's `publish`) before the next change starts. It also hands out
//! producer ids from blocks that the image records. On a single node it lives on one shard over a
//! quorum of one; in a cluster only the quorum's leader makes changes.

use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use super::{apply, Change, ChangeError, Image, Quorum, TopicMeta, METADATA_DIR};
use crate::io;

/// Producer ids per block (Kafka's controller allocates 1000 at a time).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    quorum: Rc<Quorum>,
    /// Held from a change's check until its image is published: changes are made one at a time
    /// and published in order.
    lock: io::Lock,
    /// The next producer id of the current block.
    next_producer_id: Cell<i64>,
    /// The first id past the current block (no block yet: equal to `next_producer_id`).
    block_end: Cell<i64>,
}

impl Controller {
    pub fn new(quorum: Rc<Quorum>) -> Controller {
        Controller {
            quorum,
            lock: io::Lock::default(),
            next_producer_id: Cell::new(0),
            block_end: Cell::new(0),
        }
    }

    pub fn image(&self) -> Arc<Image> {
        self.quorum.image()
    }

    pub fn quorum(&self) -> &Rc<Quorum> {
        &self.quorum
    }

    /// Makes `change`: checks that it applies, asks `admit` whether the node can hold the result
    /// (given the image before and after), has the quorum commit it and awaits `publish` with the
    /// new image. With `validate_only`, stops after `admit`. The topic's metadata after the
    /// change, if it names a topic that still exists.
    pub async fn change<P: Future<Output = ()>>(
        &self,
        change: &Change,
        validate_only: bool,
        admit: impl FnOnce(&Image, &Image) -> Result<(), ChangeError>,
        publish: impl FnOnce(Arc<Image>) -> P,
    ) -> Result<Option<TopicMeta>, ChangeError> {
        let _guard = self.lock.lock().await;
        self.change_locked(change, validate_only, admit, publish)
            .await
    }

    async fn change_locked<P: Future<Output = ()>>(
        &self,
        change: &Change,
        validate_only: bool,
        admit: impl FnOnce(&Image, &Image) -> Result<(), ChangeError>,
        publish: impl FnOnce(Arc<Image>) -> P,
    ) -> Result<Option<TopicMeta>, ChangeError> {
        let current = self.image();
        let next = apply(&current, change)?;
        admit(&current, &next)?;
        let topic = |image: &Image| {
            change
                .topic()
                .and_then(|name| image.topics.get(name).cloned())
        };
        if validate_only {
            return Ok(topic(&next));
        }
        let next = self.quorum.propose(change).await.inspect_err(|e| {
            if matches!(e, ChangeError::NotStored(_)) {
                tracing::error!(error = %e, ?change, "the metadata change was not committed");
            }
        })?;
        let meta = topic(&next);
        publish(next).await;
        Ok(meta)
    }

    /// A new producer id. When the current block is used up, the next one is allocated through
    /// the image (`Change::AllocateProducerIds`) and stored before any of its ids is handed out,
    /// so that after a restart ids never repeat.
    pub async fn new_producer_id<P: Future<Output = ()>>(
        &self,
        publish: impl FnOnce(Arc<Image>) -> P,
    ) -> Result<i64, ChangeError> {
        let _guard = self.lock.lock().await;
        if self.next_producer_id.get() >= self.block_end.get() {
            let block = Change::AllocateProducerIds {
                count: PRODUCER_ID_BLOCK,
            };
            self.change_locked(&block, false, |_, _| Ok(()), publish)
                .await?;
            // Blocks are allocated only here, under the lock: the image's end is this block's.
            let end = self.image().producer_ids_end;
            self.block_end.set(end);
            self.next_producer_id.set(end - PRODUCER_ID_BLOCK);
        }
        let id = self.next_producer_id.get();
        self.next_producer_id.set(id + 1);
        Ok(id)
    }
}

/// Where the last block ended when a version before the image handed out producer ids: it kept
/// the end in `<log.dirs>/__cluster_metadata/producer_ids` (0 when it never did). A file that is
/// not a number is an error: handing out ids again could merge two producers' sequences.
pub fn legacy_producer_ids_end(data_dir: &Path) -> Result<i64, String> {
    let path = data_dir.join(METADATA_DIR).join("producer_ids");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| {
            format!(
                "{} does not hold a producer id ({:?}); restore it or remove it knowing that \
                 ids may repeat",
                path.display(),
                text.trim()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::{Controller, PRODUCER_ID_BLOCK};
    use crate::cluster::{BrokerMeta, Change, ChangeError, FileStore, Image, Quorum};
    use crate::io;
    use crate::model::NodeId;

    async fn controller(dir: &std::path::Path) -> Controller {
        let me = NodeId(1);
        let quorum = Quorum::open(
            dir,
            me,
            &[me],
            io::Faults::default(),
            std::rc::Rc::new(crate::cluster::NoPeers),
        )
        .await;
        Controller::new(quorum.unwrap())
    }

    #[test]
    fn a_change_is_stored_and_published_and_a_refused_one_is_neither() {
        let dir = tempfile::tempdir().unwrap();
        let published: Rc<RefCell<Vec<u64>>> = Rc::default();
        let publish = |image: Arc<Image>| {
            let published = published.clone();
            async move { published.borrow_mut().push(image.revision) }
        };
        io::block_on(async {
            let c = controller(dir.path()).await;
            let me = Change::RegisterBroker {
                id: NodeId(1),
                broker: BrokerMeta {
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                    listeners: Vec::new(),
                    capacity: None,
                },
            };
            c.change(&me, false, |_, _| Ok(()), publish).await.unwrap();
            let create = Change::create_topic("t", 3, Default::default());
            let meta = c.change(&create, false, |_, _| Ok(()), publish).await;
            assert_eq!(meta.unwrap().unwrap().partitions, 3);
            let again = c.change(&create, false, |_, _| Ok(()), publish).await;
            assert!(matches!(again, Err(ChangeError::TopicExists(_))));
            let refused = Change::create_topic("u", 1, Default::default());
            let no_room = |_: &Image, _: &Image| Err(ChangeError::PolicyViolation("full".into()));
            assert!(c.change(&refused, false, no_room, publish).await.is_err());
            let checked = c.change(&refused, true, |_, _| Ok(()), publish).await;
            assert!(
                checked.unwrap().is_some(),
                "validate_only answers the topic"
            );
        });
        assert_eq!(published.borrow().len(), 2, "only the changes made");
        let stored = FileStore::new(dir.path()).load().unwrap();
        assert!(stored.topics.contains_key("t"));
        assert!(!stored.topics.contains_key("u"));
    }

    #[test]
    fn producer_ids_never_repeat_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let publish = |_: Arc<Image>| async {};
        let first: Vec<i64> = io::block_on(async {
            let c = controller(dir.path()).await;
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(c.new_producer_id(publish).await.unwrap());
            }
            ids
        });
        assert_eq!(first, [0, 1, 2]);
        let after = io::block_on(async {
            let c = controller(dir.path()).await;
            c.new_producer_id(publish).await.unwrap()
        });
        assert_eq!(
            after, PRODUCER_ID_BLOCK,
            "the next block, past the one handed out"
        );
    }
}
