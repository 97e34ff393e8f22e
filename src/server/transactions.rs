//! Transactions on the shards: each shard runs a `txn::Coordinator` for the transactional ids
//! whose `__transaction_state` partition it owns; a transactional request is routed to that shard.
//! The topic is created on first use (as Kafka does), a shard reads its partitions on start, and
//! a ticker finishes decided transactions and aborts timed-out ones. Markers go through the same
//! append path as WriteTxnMarkers; a marker on `__consumer_offsets` also settles the group
//! coordinator's pending transactional offsets (see [`Shard::append_local`]).

use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::FutureExt;

use super::Shard;
use crate::cluster::{Change, ChangeError};
use crate::config::Values;
use crate::group::LogEntry;
use crate::io;
use crate::model::records::marker_batch;
use crate::model::{ShardId, TimestampMs, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::txn::{self, Coordinator, MarkerWrite, TxnConfig, TxnError, TXN_TOPIC};

/// How often a shard's transaction coordinator runs its ticker.
const TXN_TICK_MS: u64 = 100;

pub fn txn_config(broker: &Values) -> TxnConfig {
    TxnConfig {
        partitions: broker.i32("transaction.state.log.num.partitions"),
        max_timeout_ms: broker.i32("transaction.max.timeout.ms"),
        id_expiration_ms: broker.i64("transactional.id.expiration.ms"),
        abort_check_ms: broker.i64("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        expire_check_ms: broker.i64("transaction.remove.expired.transaction.cleanup.interval.ms"),
    }
}

/// The Kafka error code for a refused transaction operation.
pub fn error_code(error: TxnError) -> i16 {
    match error {
        TxnError::EmptyId => E::InvalidRequest,
        TxnError::Loading => E::CoordinatorLoadInProgress,
        TxnError::UnknownProducerId => E::InvalidProducerIdMapping,
        TxnError::Concurrent => E::ConcurrentTransactions,
        TxnError::InvalidTimeout => E::InvalidTransactionTimeout,
        TxnError::Fenced => E::ProducerFenced,
        TxnError::InvalidState => E::InvalidTxnState,
        TxnError::NotFound => E::TransactionalIdNotFound,
        TxnError::Unavailable => E::CoordinatorNotAvailable,
    }
    .code()
}

/// The coordinator of a shard, writing through that shard.
pub fn coordinator(shard: Weak<Shard>, config: TxnConfig) -> Coordinator {
    let persist = {
        let shard = shard.clone();
        Rc::new(move |partition: i32, batch| {
            let shard = shard.clone();
            async move {
                let Some(shard) = shard.upgrade() else {
                    return Err(TxnError::Unavailable);
                };
                let tp = TopicPartition::new(TXN_TOPIC, partition);
                match super::append_code(&shard.append_local(&tp, batch).await) {
                    0 => Ok(()),
                    code => {
                        tracing::warn!(%tp, code, "cannot write transaction state");
                        Err(TxnError::Unavailable)
                    }
                }
            }
            .boxed_local()
        })
    };
    let new_producer_id = {
        let shard = shard.clone();
        Rc::new(move || {
            let shard = shard.clone();
            async move {
                let Some(shard) = shard.upgrade() else {
                    return Err(TxnError::Unavailable);
                };
                shard.new_producer_id().await.map_err(|e| {
                    tracing::warn!(error = %e, "no producer id for a transactional id");
                    TxnError::Unavailable
                })
            }
            .boxed_local()
        })
    };
    let write_markers = Rc::new(move |markers: MarkerWrite| {
        let shard = shard.clone();
        async move {
            let Some(shard) = shard.upgrade() else {
                return markers.partitions;
            };
            let failed = shard.write_markers(markers).await;
            // A partition that no longer exists needs no marker.
            let unknown = E::UnknownTopicOrPartition.code();
            let failed = failed.into_iter().filter(|(_, _, code)| *code != unknown);
            failed
                .map(|(topic, partition, code)| {
                    tracing::debug!(
                        topic,
                        partition,
                        code,
                        "a transaction marker was not written"
                    );
                    (topic, partition)
                })
                .collect()
        }
        .boxed_local()
    });
    Coordinator::new(
        config,
        txn::Io {
            persist,
            new_producer_id,
            write_markers,
            clock: Rc::new(io::SystemClock),
        },
    )
}

impl Shard {
    /// Writes the markers of a decision to each partition (on its owner shard, in parallel);
    /// the partitions that did not take theirs, with the error.
    pub async fn write_markers(&self, markers: MarkerWrite) -> Vec<(String, i32, i16)> {
        let writes = markers.partitions.into_iter().map(|(topic, partition)| {
            let batch = marker_batch(
                markers.producer_id,
                markers.producer_epoch,
                markers.commit,
                0,
                TimestampMs::now(),
            );
            async move {
                let exists = self
                    .topic(&topic)
                    .is_some_and(|m| (0..m.partitions).contains(&partition));
                let code = if exists {
                    let tp = TopicPartition::new(topic.clone(), partition);
                    super::append_code(&self.append(tp, batch).await)
                } else {
                    E::UnknownTopicOrPartition.code()
                };
                (topic, partition, code)
            }
        });
        join_all(writes)
            .await
            .into_iter()
            .filter(|(_, _, code)| *code != 0)
            .collect()
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn txn_partition(&self, transactional_id: &str) -> TopicPartition {
        let partition = txn::txn_partition(transactional_id, self.txns.config().partitions);
        TopicPartition::new(TXN_TOPIC, partition)
    }

    /// The shard whose coordinator holds `transactional_id`.
    pub fn txn_shard(&self, transactional_id: &str) -> ShardId {
        let partition = txn::txn_partition(transactional_id, self.txns.config().partitions);
        self.owner(&TopicPartition::new(TXN_TOPIC, partition))
    }

    /// Creates `__transaction_state` (compacted) on first use, as Kafka does.
    pub async fn ensure_txn_topic(&self) -> Result<(), i16> {
        if self.topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        let change = Change::create_internal_topic(TXN_TOPIC, self.txns.config().partitions);
        match self.change(change, false).await {
            Ok(_) => {
                tracing::info!(topic = TXN_TOPIC, "created");
                Ok(())
            }
            Err(ChangeError::TopicExists(_)) => Ok(()),
            Err(e) => {
                tracing::error!(topic = TXN_TOPIC, error = %e, "cannot create");
                Err(E::CoordinatorNotAvailable.code())
            }
        }
    }

    /// Runs `op` on the shard whose coordinator holds `transactional_id`.
    pub async fn on_txn<T, F, Fut>(&self, transactional_id: &str, op: F) -> Result<T, TxnError>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.on_shard(self.txn_shard(transactional_id), op).await
    }

    /// Reads this shard's `__transaction_state` partitions and rebuilds their transactions.
    pub async fn load_txns(&self) {
        let started = Instant::now();
        let mut entries = Vec::new();
        if self.topic(TXN_TOPIC).is_some() {
            let partitions = self.txns.config().partitions;
            self.read_internal(TXN_TOPIC, partitions, |_, entry| {
                if let LogEntry::Record { key, value, .. } = entry {
                    entries.push((key, value));
                }
            })
            .await;
        }
        let count = entries.len();
        self.txns.load(entries);
        tracing::debug!(shard = %self.id, records = count, elapsed = ?started.elapsed(), "transactions loaded");
    }

    pub fn spawn_txn_ticker(self: &Rc<Self>) {
        let shard = Rc::downgrade(self);
        self.background
            .spawn(async move {
                loop {
                    io::sleep(Duration::from_millis(TXN_TICK_MS)).await;
                    let Some(shard) = shard.upgrade() else {
                        break;
                    };
                    if shard.is_stopping() {
                        break;
                    }
                    shard.txns.tick(Instant::now()).await;
                }
            })
            .detach();
    }
}
