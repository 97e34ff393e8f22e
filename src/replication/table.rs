//! The partitions one shard owns: opened (and recovered) on first use or when the metadata image
//! names them, reconfigured and deleted as the image changes, closed at shutdown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Partition, Transition};
use crate::cluster::{Assignment, Image, TopicMeta};
use crate::config::Values;
use crate::io;
use crate::model::{NodeId, TopicPartition};
use crate::storage::{Log, Periods, StorageError};

/// Partitions a shard opens at once (creating a wide topic, or at start).
const OPENING_AT_ONCE: usize = 32;

pub struct Partitions {
    data_dir: PathBuf,
    /// Retention and compaction run here.
    background: io::TaskQueue,
    /// The logs' wall clock.
    clock: Rc<dyn io::Clock>,
    open: RefCell<ByTopic>,
    /// A lock per partition being opened or deleted: a partition is never opened twice, nor
    /// opened while its directory is removed. Partitions open side by side.
    opening: RefCell<HashMap<TopicPartition, Rc<io::Lock>>>,
    /// This node.
    me: NodeId,
    /// How often the ISR of a partition this node leads shrank and grew (by the leader's own
    /// AlterPartition or by the controller fencing a follower), for the metrics.
    isr_shrinks: std::cell::Cell<u64>,
    isr_expands: std::cell::Cell<u64>,
}

/// One topic's open partitions on this shard, by partition number.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Rc<Partition>>>,
    /// How many of them are open.
    open: usize,
}

impl Slots {
    fn get(&self, partition: i32) -> Option<&Rc<Partition>> {
        self.slots.get(usize::try_from(partition).ok()?)?.as_ref()
    }
}

/// The open partitions, by topic and then by partition number.
#[derive(Default)]
struct ByTopic {
    topics: HashMap<Arc<str>, Slots>,
}

impl ByTopic {
    fn get(&self, tp: &TopicPartition) -> Option<&Rc<Partition>> {
        self.topics.get(&*tp.topic)?.get(tp.partition)
    }

    /// Only partitions the image names are opened: their numbers are below the topic's
    /// partition count, which the controller bounds.
    fn insert(&mut self, partition: Rc<Partition>) {
        let index =
            usize::try_from(partition.tp.partition).expect("a partition number is not negative");
        let topic = self.topics.entry(partition.tp.topic.clone()).or_default();
        if topic.slots.len() <= index {
            topic.slots.resize(index + 1, None);
        }
        if topic.slots[index].replace(partition).is_none() {
            topic.open += 1;
        }
    }

    fn remove(&mut self, tp: &TopicPartition) {
        let Some(topic) = self.topics.get_mut(&*tp.topic) else {
            return;
        };
        let place = usize::try_from(tp.partition)
            .ok()
            .and_then(|i| topic.slots.get_mut(i));
        if place.and_then(Option::take).is_some() {
            topic.open -= 1;
        }
        if topic.open == 0 {
            self.topics.remove(&*tp.topic);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Rc<Partition>> {
        self.topics.values().flat_map(|t| t.slots.iter().flatten())
    }

    fn drain(&mut self) -> Vec<Rc<Partition>> {
        self.topics
            .drain()
            .flat_map(|(_, t)| t.slots)
            .flatten()
            .collect()
    }
}

/// The assignment of `tp` in `meta` (an image from before assignments: `me` alone).
fn assignment_of(meta: &TopicMeta, partition: i32, me: NodeId) -> Assignment {
    usize::try_from(partition)
        .ok()
        .and_then(|p| meta.assignments.get(p))
        .cloned()
        .unwrap_or_else(|| Assignment::new(vec![me]))
}

/// `min.insync.replicas` of a topic on a broker with `broker` configs.
fn min_insync(meta: &TopicMeta, broker: &Values) -> usize {
    let key = "min.insync.replicas";
    meta.configs
        .get(key)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| broker.i64(key).max(1) as usize)
}

impl Partitions {
    pub fn new(
        data_dir: PathBuf,
        background: io::TaskQueue,
        clock: Rc<dyn io::Clock>,
        me: NodeId,
    ) -> Partitions {
        Partitions {
            data_dir,
            background,
            clock,
            open: RefCell::new(ByTopic::default()),
            opening: RefCell::new(HashMap::new()),
            isr_shrinks: Default::default(),
            isr_expands: Default::default(),
            me,
        }
    }

    /// The open partitions.
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.open.borrow().values().cloned().collect()
    }

    /// The open partitions of `topic`.
    pub fn of_topic(&self, topic: &str) -> Vec<Rc<Partition>> {
        self.open
            .borrow()
            .topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.slots.iter().flatten().cloned().collect())
    }

    /// The partition if it is open.
    pub fn get(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.open.borrow().get(tp).cloned()
    }

    /// The open partitions of `tps`, in order. A run of one topic's partitions (a fetch's) looks
    /// the topic up once, then each partition by its number: a wide fetch asks for thousands at a
    /// time, many times a second.
    pub fn get_many<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<Option<Rc<Partition>>> {
        let open = self.open.borrow();
        let mut last: Option<(&Arc<str>, Option<&Slots>)> = None;
        tps.into_iter()
            .map(|tp| {
                let slots = match last {
                    // (Arc's equality compares the pointers first.)
                    Some((topic, slots)) if *topic == tp.topic => slots,
                    _ => {
                        let slots = open.topics.get(&*tp.topic);
                        last = Some((&tp.topic, slots));
                        slots
                    }
                };
                slots.and_then(|s| s.get(tp.partition)).cloned()
            })
            .collect()
    }

    /// Opens (recovering) the log of a partition this shard owns, or finds it open.
    pub async fn open(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
        broker: &Values,
    ) -> Result<Rc<Partition>, StorageError> {
        Ok(self.open_assigned(tp, meta, broker).await?.0)
    }

    /// `open`, and what the assignment made of the replica when this opened it.
    async fn open_assigned(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
        broker: &Values,
    ) -> Result<(Rc<Partition>, Transition), StorageError> {
        let open = async {
            match self.get(tp) {
                Some(partition) => Ok((partition, Transition::Same)),
                None => self.open_locked(tp, meta, broker).await,
            }
        };
        self.under_lock(tp, open).await
    }

    /// Runs `work` holding `tp`'s lock of opening and deletion, and forgets the lock after if
    /// no other task holds or waits for it.
    async fn under_lock<T>(&self, tp: &TopicPartition, work: impl Future<Output = T>) -> T {
        let lock = self
            .opening
            .borrow_mut()
            .entry(tp.clone())
            .or_default()
            .clone();
        let guard = lock.lock().await;
        let done = work.await;
        drop(guard);
        // The map's reference and `lock`: nobody else has it.
        if Rc::strong_count(&lock) == 2 {
            self.opening.borrow_mut().remove(tp);
        }
        done
    }

    /// Opens `tp` (its lock held, not open yet).
    async fn open_locked(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
        broker: &Values,
    ) -> Result<(Rc<Partition>, Transition), StorageError> {
        let config = meta.log_config(broker);
        let dir = self.data_dir.join(tp.dir_name());
        let faults = io::Faults::default();
        let log = Log::open_with_clock(&dir, config, faults, self.clock.clone()).await?;
        let log = Rc::new(log);
        let codec = meta.codec(broker);
        let assignment = assignment_of(meta, tp.partition, self.me);
        let alone = assignment.replicas == [self.me];
        let partition = Partition::new(tp.clone(), log.clone(), meta.id, codec, self.me, alone);
        let partition = Rc::new(partition);
        partition.set_min_insync(min_insync(meta, broker));
        let transition = partition.assign(&assignment);
        let millis = |key: &str| Duration::from_millis(broker.i64(key).max(10) as u64);
        let periods = Periods {
            retention_check: millis("log.retention.check.interval.ms"),
            cleaner_backoff: millis("log.cleaner.backoff.ms"),
        };
        partition.set_maintenance(crate::storage::spawn_maintenance(
            log,
            self.background,
            periods,
        ));
        self.open.borrow_mut().insert(partition.clone());
        Ok((partition, transition))
    }

    /// ISR shrinks and expansions of the partitions this node led, since it started.
    pub fn isr_changes(&self) -> (u64, u64) {
        (self.isr_shrinks.get(), self.isr_expands.get())
    }

    /// Brings the open partitions in line with `image`: reconfigures those whose topic's configs
    /// may have changed and gives them their assignment, closes (deleting their data) those it no
    /// longer names or no longer places on this node, and opens those it names that `owns` and are not open. Returns what the
    /// assignments made of the replicas that changed role, and how many could not be opened with
    /// the first error (those are retried when next used).
    pub async fn reconcile(
        &self,
        image: &Image,
        broker: &Values,
        owns: impl Fn(&TopicPartition) -> bool,
    ) -> (Vec<(Rc<Partition>, Transition)>, Option<(usize, String)>) {
        let mut moved = Vec::new();
        let current: Vec<Rc<Partition>> = self.open.borrow().values().cloned().collect();
        for partition in current {
            let tp = &partition.tp;
            match image.topics.get(&*tp.topic) {
                Some(meta)
                    if meta.id == partition.topic_id
                        && tp.partition < meta.partitions
                        && meta.replica_on(tp.partition, self.me) =>
                {
                    partition.reconfigure(meta.log_config(broker), meta.codec(broker));
                    partition.set_min_insync(min_insync(meta, broker));
                    let assignment = assignment_of(meta, tp.partition, self.me);
                    let (led, before) = (partition.is_leader(), partition.isr_len());
                    let transition = partition.assign(&assignment);
                    if led && partition.is_leader() {
                        let after = partition.isr_len();
                        let counter = match after.cmp(&before) {
                            std::cmp::Ordering::Less => Some(&self.isr_shrinks),
                            std::cmp::Ordering::Greater => Some(&self.isr_expands),
                            std::cmp::Ordering::Equal => None,
                        };
                        if let Some(counter) = counter {
                            counter.set(counter.get() + 1);
                        }
                    }
                    if transition != Transition::Same {
                        moved.push((partition.clone(), transition));
                    }
                }
                _ => {
                    self.open.borrow_mut().remove(tp);
                    partition.wake_waiters();
                    partition.stop_maintenance();
                    partition.log.discard().await;
                    let dir = partition.log.dir().to_path_buf();
                    // Unlinking a large partition's files can take a while: not on the shard.
                    // No open of the same directory (a topic created again under the name)
                    // meanwhile.
                    let removing = dir.clone();
                    let remove = io::off_core(move || std::fs::remove_dir_all(removing));
                    let removed = self.under_lock(tp, remove).await;
                    if let Err(e) = removed {
                        tracing::error!(%tp, dir = %dir.display(), error = %e, "cannot delete the partition's data");
                    } else {
                        tracing::info!(%tp, "deleted the partition's replica on this node");
                    }
                    moved.push((partition.clone(), Transition::Gone));
                }
            }
        }
        let mut closed = Vec::new();
        for (name, meta) in &image.topics {
            for partition in 0..meta.partitions {
                let tp = TopicPartition::new(name.clone(), partition);
                if owns(&tp) && self.open.borrow().get(&tp).is_none() {
                    closed.push((tp, meta));
                }
            }
        }
        // Side by side: a new log's few syscalls (and a recovering one's reads) mostly wait on
        // the disk, and 10,000 of them one after the other took most of a minute.
        let mut opened = futures::stream::iter(closed)
            .map(|(tp, meta)| async move { (self.open_assigned(&tp, meta, broker).await, tp) })
            .buffer_unordered(OPENING_AT_ONCE);
        let mut failed: Option<(usize, String)> = None;
        while let Some((result, tp)) = opened.next().await {
            match result {
                Ok((partition, transition)) => {
                    if transition != Transition::Same {
                        moved.push((partition, transition));
                    }
                }
                Err(e) => match &mut failed {
                    Some((count, _)) => *count += 1,
                    None => failed = Some((1, format!("{tp}: {e}"))),
                },
            }
        }
        (moved, failed)
    }

    /// Flushes and checkpoints every open log, and forgets them (shutdown).
    pub async fn close_all(&self) {
        let all = self.open.borrow_mut().drain();
        for partition in all {
            partition.wake_waiters();
            if let Err(e) = partition.log.close().await {
                let tp = &partition.tp;
                tracing::error!(%tp, error = %e, "closing the log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TopicMeta;
    use crate::config::BROKER_KEYS;

    fn topic(partitions: i32) -> TopicMeta {
        TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: Default::default(),
            assignments: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn open_partitions_are_found_one_at_a_time_and_in_runs_of_a_topic() {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let partitions = Partitions::new(
                dir.path().to_path_buf(),
                io::TaskQueue::new("background", 10),
                Rc::new(io::SystemClock),
                NodeId(1),
            );
            let broker = Values::new(&BROKER_KEYS);
            let mut image = Image::default();
            image.topics.insert("a".into(), topic(3));
            image.topics.insert("b".into(), topic(2));
            // a-1 is another shard's.
            let owns = |tp: &TopicPartition| !(&*tp.topic == "a" && tp.partition == 1);
            let (_, failed) = partitions.reconcile(&image, &broker, owns).await;
            assert!(failed.is_none(), "{failed:?}");

            let a = |p| TopicPartition::new("a", p);
            // Names in their own allocations: found by the name, not by the shared Arc.
            let asked = [
                a(0),
                a(1),
                a(2),
                a(3),
                a(-1),
                TopicPartition::new("b", 1),
                a(2),
            ];
            let asked: Vec<TopicPartition> = asked
                .into_iter()
                .chain([TopicPartition::new("c", 0)])
                .collect();
            let found = partitions.get_many(&asked);
            let names: Vec<Option<String>> = found
                .iter()
                .map(|p| p.as_ref().map(|p| p.tp.to_string()))
                .collect();
            let one_by_one: Vec<Option<String>> = asked
                .iter()
                .map(|tp| partitions.get(tp).map(|p| p.tp.to_string()))
                .collect();
            assert_eq!(names, one_by_one);
            let open = |tp: &TopicPartition| Some(tp.to_string());
            assert_eq!(
                names,
                [
                    open(&a(0)),
                    None,
                    open(&a(2)),
                    None,
                    None,
                    open(&asked[5]),
                    open(&a(2)),
                    None
                ]
            );
            assert!(Rc::ptr_eq(
                found[2].as_ref().unwrap(),
                found[6].as_ref().unwrap()
            ));
            assert_eq!(partitions.of_topic("a").len(), 2);
            assert_eq!(partitions.all().len(), 4);

            // Topic b deleted: its partitions go, a's stay.
            image.topics.remove("b");
            partitions.reconcile(&image, &broker, owns).await;
            assert!(partitions.get(&asked[5]).is_none());
            assert!(partitions.of_topic("b").is_empty());
            assert_eq!(partitions.all().len(), 2);
            assert!(partitions.get_many(&asked)[0].is_some());
            partitions.close_all().await;
            assert!(partitions.all().is_empty());
        });
    }
}
