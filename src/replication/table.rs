//! The partitions one shard owns: opened (and recovered) on first use or when the metadata image
//! names them, reconfigured and deleted as the image changes, closed at shutdown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::Partition;
use crate::cluster::{Image, TopicMeta};
use crate::config::Values;
use crate::io;
use crate::model::TopicPartition;
use crate::storage::{Log, Periods, StorageError};

pub struct Partitions {
    data_dir: PathBuf,
    /// Retention and compaction run here.
    background: io::TaskQueue,
    /// The logs' wall clock.
    clock: Rc<dyn io::Clock>,
    open: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// One opening at a time: a partition is never opened twice.
    opening: io::Lock,
}

impl Partitions {
    pub fn new(
        data_dir: PathBuf,
        background: io::TaskQueue,
        clock: Rc<dyn io::Clock>,
    ) -> Partitions {
        Partitions {
            data_dir,
            background,
            clock,
            open: RefCell::new(HashMap::new()),
            opening: io::Lock::default(),
        }
    }

    /// The partition if it is open.
    pub fn get(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.open.borrow().get(tp).cloned()
    }

    /// Opens (recovering) the log of a partition this shard owns, or finds it open.
    pub async fn open(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
        broker: &Values,
    ) -> Result<Rc<Partition>, StorageError> {
        let _guard = self.opening.lock().await;
        if let Some(partition) = self.get(tp) {
            return Ok(partition);
        }
        let config = meta.log_config(broker);
        let dir = self.data_dir.join(tp.dir_name());
        let faults = io::Faults::default();
        let log = Log::open_with_clock(&dir, config, faults, self.clock.clone()).await?;
        let log = Rc::new(log);
        let codec = meta.codec(broker);
        let partition = Rc::new(Partition::new(tp.clone(), log.clone(), meta.id, codec));
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
        self.open.borrow_mut().insert(tp.clone(), partition.clone());
        Ok(partition)
    }

    /// Brings the open partitions in line with `image`: reconfigures those whose topic's configs
    /// may have changed, closes (deleting their data) those it no longer names, and opens those it
    /// names that `owns` and are not open. Returns how many could not be opened and the first
    /// error; those are retried when next used.
    pub async fn reconcile(
        &self,
        image: &Image,
        broker: &Values,
        owns: impl Fn(&TopicPartition) -> bool,
    ) -> Result<(), (usize, String)> {
        let current: Vec<Rc<Partition>> = self.open.borrow().values().cloned().collect();
        for partition in current {
            let tp = &partition.tp;
            match image.topics.get(&*tp.topic) {
                Some(meta) if meta.id == partition.topic_id && tp.partition < meta.partitions => {
                    partition.reconfigure(meta.log_config(broker), meta.codec(broker));
                }
                _ => {
                    self.open.borrow_mut().remove(tp);
                    partition.wake_waiters();
                    if let Err(e) = partition.log.close().await {
                        tracing::warn!(%tp, error = %e, "closing a deleted partition");
                    }
                    let dir = partition.log.dir().to_path_buf();
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::error!(%tp, dir = %dir.display(), error = %e, "cannot delete the partition's data");
                    } else {
                        tracing::info!(%tp, "deleted partition");
                    }
                }
            }
        }
        let mut failed: Option<(usize, String)> = None;
        for (name, meta) in &image.topics {
            for partition in 0..meta.partitions {
                let tp = TopicPartition::new(name.clone(), partition);
                if !owns(&tp) || self.open.borrow().contains_key(&tp) {
                    continue;
                }
                if let Err(e) = self.open(&tp, meta, broker).await {
                    match &mut failed {
                        Some((count, _)) => *count += 1,
                        None => failed = Some((1, format!("{tp}: {e}"))),
                    }
                }
            }
        }
        match failed {
            None => Ok(()),
            Some(failed) => Err(failed),
        }
    }

    /// Flushes and checkpoints every open log, and forgets them (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Rc<Partition>> = self.open.borrow_mut().drain().map(|(_, p)| p).collect();
        for partition in all {
            partition.wake_waiters();
            if let Err(e) = partition.log.close().await {
                let tp = &partition.tp;
                tracing::error!(%tp, error = %e, "closing the log");
            }
        }
    }
}
