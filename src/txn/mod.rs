//! The transaction coordinator, one per shard: a transactional id lives on the shard that owns
//! its `__transaction_state` partition (Kafka's hash of the id) and is touched only there.
//! InitProducerId gives the id a producer id and bumps its epoch (fencing older producers, and
//! aborting the transaction they left open); AddPartitionsToTxn opens a transaction and records
//! its partitions; EndTxn makes the decision durable (PrepareCommit / PrepareAbort), writes the
//! COMMIT or ABORT markers to every partition, then records CompleteCommit / CompleteAbort. A
//! transaction that outlives its timeout is aborted with a bumped epoch. Every state change is
//! written to `__transaction_state` (formats in [`records`]) before it is answered, and the state
//! is rebuilt from it on start; a decision whose markers were not all written is finished by the
//! ticker, after a restart too.
//!
//! One operation per transactional id at a time: while one is in flight the others get
//! CONCURRENT_TRANSACTIONS, which clients retry (as Kafka's `pendingState`).

mod error;
pub mod records;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use crate::io::Clock;
use crate::model::records::{BatchBuilder, Record};
use crate::model::Offset;
pub use error::TxnError;
pub use records::{TxnRecord, TxnState};

pub const TXN_TOPIC: &str = "__transaction_state";

/// The `__transaction_state` partition of a transactional id: Kafka's `partitionFor`, the same
/// hash as groups use.
pub fn txn_partition(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::offsets_partition(transactional_id, partitions)
}

#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`
    pub partitions: i32,
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_check_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`
    pub expire_check_ms: i64,
}

/// The markers of one decision, for the partitions of a transaction.
#[derive(Clone, Debug)]
pub struct MarkerWrite {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

pub type Persist = Rc<dyn Fn(i32, Bytes) -> LocalBoxFuture<'static, Result<(), TxnError>>>;
pub type NewProducerId = Rc<dyn Fn() -> LocalBoxFuture<'static, Result<i64, TxnError>>>;
/// Writes the markers; the partitions that did not take theirs (a partition that no longer
/// exists needs none and is not among them).
pub type WriteMarkers = Rc<dyn Fn(MarkerWrite) -> LocalBoxFuture<'static, Vec<(String, i32)>>>;

/// What the coordinator needs from the broker.
pub struct Io {
    /// Writes one batch to a partition of `__transaction_state`.
    pub persist: Persist,
    /// A producer id never handed out before.
    pub new_producer_id: NewProducerId,
    /// Writes the markers; answers the partitions that did not take theirs.
    pub write_markers: WriteMarkers,
    /// The time transactions are stamped and timed out with.
    pub clock: Rc<dyn Clock>,
}

struct Txn {
    record: TxnRecord,
    /// The epoch before the last bump: a producer naming it in InitProducerId (KIP-360) is
    /// retrying, or recovering after the coordinator fenced it by aborting on timeout.
    last_epoch: i16,
    /// An operation on this id is in flight.
    busy: bool,
}

pub struct Coordinator {
    config: TxnConfig,
    io: Io,
    txns: RefCell<HashMap<String, Txn>>,
    /// Ids with a decision whose markers are not all written.
    unfinished: RefCell<BTreeSet<String>>,
    loaded: Cell<bool>,
    timeouts_checked: Cell<Option<Instant>>,
    expiry_checked: Cell<Option<Instant>>,
    /// `__transaction_state` partitions being loaded (led here since a moment).
    loading: RefCell<BTreeSet<i32>>,
}

/// Marks an id busy for one operation; dropping it (also when the request is dropped) frees it.
struct Busy<'a> {
    coordinator: &'a Coordinator,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut txns = self.coordinator.txns.borrow_mut();
        let placeholder = match txns.get_mut(&self.id) {
            Some(txn) => {
                txn.busy = false;
                txn.record.producer_id < 0
            }
            None => false,
        };
        if placeholder {
            // A first InitProducerId that failed: the id never existed.
            txns.remove(&self.id);
        }
    }
}

impl Coordinator {
    pub fn new(config: TxnConfig, io: Io) -> Coordinator {
        Coordinator {
            config,
            io,
            txns: RefCell::new(HashMap::new()),
            unfinished: RefCell::new(BTreeSet::new()),
            loaded: Cell::new(false),
            timeouts_checked: Cell::new(None),
            expiry_checked: Cell::new(None),
            loading: RefCell::new(BTreeSet::new()),
        }
    }

    /// Whether the transactions were loaded at start.
    pub fn is_loaded(&self) -> bool {
        self.loaded.get()
    }

    /// This shard leads `partition` of `__transaction_state` from now: its ids wait while they
    /// are loaded (then [`Coordinator::load`] and [`Coordinator::end_loading`]).
    pub fn begin_loading(&self, partition: i32) {
        self.unload(partition);
        self.loading.borrow_mut().insert(partition);
    }

    pub fn end_loading(&self, partition: i32) {
        self.loading.borrow_mut().remove(&partition);
    }

    /// Another node leads `partition` of `__transaction_state` from now: its ids are forgotten.
    pub fn unload(&self, partition: i32) {
        let partitions = self.config.partitions;
        let ours = |id: &str| txn_partition(id, partitions) == partition;
        self.txns.borrow_mut().retain(|id, _| !ours(id));
        self.unfinished.borrow_mut().retain(|id| !ours(id));
        self.loading.borrow_mut().remove(&partition);
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    fn ready(&self, id: &str) -> Result<(), TxnError> {
        if id.is_empty() {
            return Err(TxnError::EmptyId);
        }
        let partition = txn_partition(id, self.config.partitions);
        if !self.loaded.get() || self.loading.borrow().contains(&partition) {
            return Err(TxnError::Loading);
        }
        Ok(())
    }

    /// Rebuilds the transactions from this shard's `__transaction_state` records, oldest first.
    pub fn load(&self, records: impl IntoIterator<Item = (Bytes, Option<Bytes>)>) {
        let mut txns = self.txns.borrow_mut();
        for (key, value) in records {
            let id = match records::decode_key(key) {
                Ok(Some(id)) => id,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a __transaction_state record");
                    continue;
                }
            };
            match value.map(TxnRecord::decode) {
                None => {
                    txns.remove(&id);
                }
                Some(Ok(record)) => {
                    txns.insert(
                        id,
                        Txn {
                            record,
                            last_epoch: -1,
                            busy: false,
                        },
                    );
                }
                Some(Err(e)) => tracing::warn!(%id, error = %e, "skipping a transaction record"),
            }
        }
        let unfinished: BTreeSet<String> = txns
            .iter()
            .filter(|(_, t)| t.record.state.is_preparing())
            .map(|(id, _)| id.clone())
            .collect();
        drop(txns);
        *self.unfinished.borrow_mut() = unfinished;
        self.loaded.set(true);
    }

    async fn write(&self, id: &str, value: Option<&TxnRecord>) -> Result<(), TxnError> {
        let record = Record {
            offset: Offset(0),
            timestamp: self.io.clock.wall(),
            key: Some(records::encode_key(id)),
            value: value.map(TxnRecord::encode),
            headers: Vec::new(),
        };
        let batch = BatchBuilder::default().build(&[record]);
        (self.io.persist)(txn_partition(id, self.config.partitions), batch).await
    }

    /// Takes `id` for one operation after `check` accepts its state; the record to start from.
    fn take(
        &self,
        id: &str,
        check: impl FnOnce(&Txn) -> Result<(), TxnError>,
    ) -> Result<(Busy<'_>, TxnRecord, i16), TxnError> {
        let mut txns = self.txns.borrow_mut();
        let txn = txns.get_mut(id).ok_or(TxnError::UnknownProducerId)?;
        if txn.busy {
            return Err(TxnError::Concurrent);
        }
        check(txn)?;
        txn.busy = true;
        let busy = Busy {
            coordinator: self,
            id: id.to_string(),
        };
        Ok((busy, txn.record.clone(), txn.last_epoch))
    }

    /// Writes `record` as the id's state and installs it once durable.
    async fn store(&self, id: &str, record: TxnRecord, last_epoch: i16) -> Result<(), TxnError> {
        self.write(id, Some(&record)).await?;
        let preparing = record.state.is_preparing();
        if let Some(txn) = self.txns.borrow_mut().get_mut(id) {
            txn.record = record;
            txn.last_epoch = last_epoch;
        }
        let mut unfinished = self.unfinished.borrow_mut();
        if preparing {
            unfinished.insert(id.to_string());
        } else {
            unfinished.remove(id);
        }
        Ok(())
    }

    /// InitProducerId for a transactional id: the producer id and the epoch to use now.
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        self.ready(id)?;
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTimeout);
        }
        let fresh = {
            let mut txns = self.txns.borrow_mut();
            if txns.contains_key(id) {
                false
            } else {
                txns.insert(
                    id.to_string(),
                    Txn {
                        record: TxnRecord {
                            producer_id: -1,
                            producer_epoch: -1,
                            timeout_ms,
                            state: TxnState::Empty,
                            partitions: Vec::new(),
                            last_update_ms: self.io.clock.wall().0,
                            start_ms: -1,
                        },
                        last_epoch: -1,
                        busy: true,
                    },
                );
                true
            }
        };
        if fresh {
            let _busy = Busy {
                coordinator: self,
                id: id.to_string(),
            };
            let producer_id = (self.io.new_producer_id)().await?;
            let record = TxnRecord {
                producer_id,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Vec::new(),
                last_update_ms: self.io.clock.wall().0,
                start_ms: -1,
            };
            self.store(id, record, -1).await?;
            return Ok((producer_id, 0));
        }
        let (busy, current, last_epoch) = self.take(id, |txn| {
            let r = &txn.record;
            match expected {
                None => Ok(()),
                Some((pid, epoch))
                    if pid == r.producer_id
                        && (epoch == r.producer_epoch || epoch == txn.last_epoch) =>
                {
                    Ok(())
                }
                Some(_) => Err(TxnError::Fenced),
            }
        })?;
        if let Some((_, epoch)) = expected {
            if epoch == last_epoch
                && epoch != current.producer_epoch
                && current.state == TxnState::Empty
            {
                // A retry of the bump that already happened.
                return Ok((current.producer_id, current.producer_epoch));
            }
        }
        let current = match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                drop(busy);
                let _ = self.complete(id).await;
                return Err(TxnError::Concurrent);
            }
            TxnState::Ongoing => {
                // The previous producer left a transaction open: abort it under a new epoch,
                // which fences that producer everywhere the markers land.
                let fenced = self.fence_and_abort(id, current).await?;
                drop(busy);
                if self.complete(id).await.is_err() {
                    // Markers still to write (the ticker retries): the client retries too.
                    return Err(TxnError::Concurrent);
                }
                let (busy, current, _) = self.take(id, |_| Ok(()))?;
                if current.state != TxnState::CompleteAbort || current.producer_epoch != fenced {
                    return Err(TxnError::Concurrent);
                }
                return self.bump(id, busy, current, timeout_ms).await;
            }
            _ => current,
        };
        self.bump(id, busy, current, timeout_ms).await
    }

    /// A new epoch for the id (a new producer id when the epoch is exhausted), no transaction.
    async fn bump(
        &self,
        id: &str,
        busy: Busy<'_>,
        current: TxnRecord,
        timeout_ms: i32,
    ) -> Result<(i64, i16), TxnError> {
        let (producer_id, epoch) = if current.producer_epoch >= i16::MAX - 1 {
            ((self.io.new_producer_id)().await?, 0)
        } else {
            (current.producer_id, current.producer_epoch + 1)
        };
        let record = TxnRecord {
            producer_id,
            producer_epoch: epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: Vec::new(),
            last_update_ms: self.io.clock.wall().0,
            start_ms: -1,
        };
        self.store(id, record, current.producer_epoch).await?;
        drop(busy);
        Ok((producer_id, epoch))
    }

    /// Decides to abort `current` (an open transaction) under the next epoch; that epoch.
    async fn fence_and_abort(&self, id: &str, current: TxnRecord) -> Result<i16, TxnError> {
        let epoch = current.producer_epoch.saturating_add(1).min(i16::MAX - 1);
        let record = TxnRecord {
            producer_epoch: epoch,
            state: TxnState::PrepareAbort,
            last_update_ms: self.io.clock.wall().0,
            ..current.clone()
        };
        self.store(id, record, current.producer_epoch).await?;
        Ok(epoch)
    }

    fn check_producer(txn: &Txn, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if txn.record.producer_id != producer_id {
            return Err(TxnError::UnknownProducerId);
        }
        if txn.record.producer_epoch != epoch {
            return Err(TxnError::Fenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): opens the
    /// transaction if none is, and records the partitions before the producer writes to them.
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        self.ready(id)?;
        let mut already = false;
        let (busy, current, last_epoch) = self.take(id, |txn| {
            Self::check_producer(txn, producer_id, epoch)?;
            let r = &txn.record;
            match r.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                    Err(TxnError::Concurrent)
                }
                TxnState::Dead => Err(TxnError::InvalidState),
                TxnState::Ongoing => {
                    already = partitions
                        .iter()
                        .all(|p| r.partitions.binary_search(p).is_ok());
                    Ok(())
                }
                _ => Ok(()),
            }
        })?;
        if already {
            return Ok(());
        }
        let ongoing = current.state == TxnState::Ongoing;
        let mut all: BTreeSet<(String, i32)> = if ongoing {
            current.partitions.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        all.extend(partitions);
        let now = self.io.clock.wall().0;
        let record = TxnRecord {
            state: TxnState::Ongoing,
            partitions: all.into_iter().collect(),
            last_update_ms: now,
            start_ms: if ongoing { current.start_ms } else { now },
            ..current
        };
        self.store(id, record, last_epoch).await?;
        drop(busy);
        Ok(())
    }

    /// AddPartitionsToTxn v4 with verify_only: whether each partition is in the open transaction.
    pub fn verify_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, TxnError> {
        self.ready(id)?;
        let txns = self.txns.borrow();
        let txn = txns.get(id).ok_or(TxnError::UnknownProducerId)?;
        Self::check_producer(txn, producer_id, epoch)?;
        let ongoing = txn.record.state == TxnState::Ongoing;
        Ok(partitions
            .iter()
            .map(|p| ongoing && txn.record.partitions.binary_search(p).is_ok())
            .collect())
    }

    /// EndTxn: commits or aborts the open transaction. Answered once the decision is durable
    /// and, unless a partition refuses its marker for now, once every marker is written.
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.ready(id)?;
        let mut done = false;
        let (busy, current, last_epoch) = self.take(id, |txn| {
            Self::check_producer(txn, producer_id, epoch)?;
            match (txn.record.state, commit) {
                (TxnState::Ongoing, _) => Ok(()),
                // A retry of an EndTxn that completed.
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    done = true;
                    Ok(())
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    Err(TxnError::Concurrent)
                }
                _ => Err(TxnError::InvalidState),
            }
        })?;
        if done {
            return Ok(());
        }
        let record = TxnRecord {
            state: if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            },
            last_update_ms: self.io.clock.wall().0,
            ..current
        };
        self.store(id, record, last_epoch).await?;
        drop(busy);
        if let Err(error) = self.complete(id).await {
            // The decision is durable; the ticker writes the markers that are missing.
            tracing::debug!(
                transactional_id = id,
                %error,
                "markers pending; retried by the ticker"
            );
        }
        Ok(())
    }

    /// Writes the markers of a decided transaction and records it complete.
    async fn complete(&self, id: &str) -> Result<(), TxnError> {
        let (busy, current, last_epoch) = self.take(id, |_| Ok(()))?;
        let commit = match current.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let failed = (self.io.write_markers)(MarkerWrite {
            producer_id: current.producer_id,
            producer_epoch: current.producer_epoch,
            commit,
            partitions: current.partitions.clone(),
        })
        .await;
        if let Some((topic, partition)) = failed.first() {
            tracing::warn!(
                transactional_id = id,
                topic,
                partition,
                partitions = failed.len(),
                "a transaction marker was not written; retrying"
            );
            // Only those are written again.
            if let Some(txn) = self.txns.borrow_mut().get_mut(id) {
                txn.record.partitions = failed;
            }
            return Err(TxnError::Unavailable);
        }
        let record = TxnRecord {
            state: if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            },
            partitions: Vec::new(),
            last_update_ms: self.io.clock.wall().0,
            ..current
        };
        self.store(id, record, last_epoch).await?;
        drop(busy);
        Ok(())
    }

    pub fn describe(&self, id: &str) -> Result<TxnRecord, TxnError> {
        self.ready(id)?;
        self.txns
            .borrow()
            .get(id)
            .filter(|t| t.record.producer_id >= 0)
            .map(|t| t.record.clone())
            .ok_or(TxnError::NotFound)
    }

    /// The transactions in one of `states` (any when empty), of one of `producer_ids` (any when
    /// empty), open for at least `min_duration_ms` (any when negative).
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<(String, i64, TxnState)> {
        let now = self.io.clock.wall().0;
        let mut out: Vec<(String, i64, TxnState)> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, t)| t.record.producer_id >= 0)
            .filter(|(_, t)| states.is_empty() || states.contains(&t.record.state))
            .filter(|(_, t)| {
                producer_ids.is_empty() || producer_ids.contains(&t.record.producer_id)
            })
            .filter(|(_, t)| {
                min_duration_ms < 0
                    || (t.record.start_ms >= 0 && now - t.record.start_ms >= min_duration_ms)
            })
            .map(|(id, t)| (id.clone(), t.record.producer_id, t.record.state))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Finishes decided transactions, aborts those past their timeout and forgets ids idle past
    /// `transactional.id.expiration.ms`. Run periodically.
    pub async fn tick(&self, now: Instant) {
        if !self.loaded.get() {
            return;
        }
        let unfinished: Vec<String> = self.unfinished.borrow().iter().cloned().collect();
        for id in unfinished {
            let _ = self.complete(&id).await;
        }
        if due(&self.timeouts_checked, now, self.config.abort_check_ms) {
            let now_ms = self.io.clock.wall().0;
            let timed_out: Vec<String> = self
                .txns
                .borrow()
                .iter()
                .filter(|(_, t)| {
                    !t.busy
                        && t.record.state == TxnState::Ongoing
                        && t.record.start_ms + t.record.timeout_ms as i64 <= now_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in timed_out {
                self.abort_timed_out(&id).await;
            }
        }
        if due(&self.expiry_checked, now, self.config.expire_check_ms) {
            let now_ms = self.io.clock.wall().0;
            let expired: Vec<String> = self
                .txns
                .borrow()
                .iter()
                .filter(|(_, t)| {
                    !t.busy
                        && matches!(
                            t.record.state,
                            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        )
                        && t.record.last_update_ms + self.config.id_expiration_ms <= now_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.expire(&id).await;
            }
        }
    }

    async fn abort_timed_out(&self, id: &str) {
        let Ok((busy, current, _)) = self.take(id, |txn| {
            if txn.record.state == TxnState::Ongoing {
                Ok(())
            } else {
                Err(TxnError::InvalidState)
            }
        }) else {
            return;
        };
        tracing::info!(
            transactional_id = id,
            producer_id = current.producer_id,
            timeout_ms = current.timeout_ms,
            "transaction timed out: aborting it and fencing its producer epoch"
        );
        let fenced = self.fence_and_abort(id, current).await;
        drop(busy);
        if fenced.is_ok() {
            let _ = self.complete(id).await;
        }
    }

    async fn expire(&self, id: &str) {
        let Ok((busy, _, _)) = self.take(id, |_| Ok(())) else {
            return;
        };
        if self.write(id, None).await.is_ok() {
            tracing::info!(transactional_id = id, "transactional id expired");
            self.txns.borrow_mut().remove(id);
        }
        drop(busy);
    }
}

/// Whether a check run every `interval_ms` is due, recording it as run when it is.
fn due(last: &Cell<Option<Instant>>, now: Instant, interval_ms: i64) -> bool {
    let interval = Duration::from_millis(interval_ms.max(0) as u64);
    if last
        .get()
        .is_none_or(|at| now.saturating_duration_since(at) >= interval)
    {
        last.set(Some(now));
        return true;
    }
    false
}

#[cfg(test)]
mod tests;
