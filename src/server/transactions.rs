//! Transactions on the shards: each shard runs a `txn::Coordinator` for the transactional ids
//! whose `__transaction_state` partition it owns; a transactional request is routed to that shard.
//! The topic is created on first use (as Kafka does), a shard reads its partitions on start, and
//! a ticker finishes decided transactions and aborts timed-out ones. Markers go through the same
//! append path as WriteTxnMarkers; a marker on `__consumer_offsets` also settles the group
//! coordinator's pending transactional offsets (see [`Shard::append_local`]).

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::FutureExt;

use super::mesh::ShardMessage;
use super::metadata::Change;
use super::Shard;
use crate::config::Values;
use crate::group::LogEntry;
use crate::io;
use crate::model::records::marker_batch;
use crate::model::{TimestampMs, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::txn::{self, Coordinator, MarkerWrite, TxnConfig, TxnState, TXN_TOPIC};

/// How often a shard's transaction coordinator runs its ticker.
const TXN_TICK_MS: u64 = 100;

/// A transaction operation, sent to the coordinator's shard.
pub enum TxnCall {
    InitProducerId {
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    },
    AddPartitions {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    Verify {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    End {
        id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    },
    Describe {
        id: String,
    },
    List {
        states: Vec<TxnState>,
        producer_ids: Vec<i64>,
        min_duration_ms: i64,
    },
}

pub enum TxnAnswer {
    Producer(Result<(i64, i16), i16>),
    Code(Result<(), i16>),
    Verified(Result<Vec<bool>, i16>),
    Described(Result<crate::txn::TxnRecord, i16>),
    Listed(Vec<(String, i64, TxnState)>),
}

pub fn txn_config(broker: &Values) -> TxnConfig {
    TxnConfig {
        partitions: broker.i32("transaction.state.log.num.partitions"),
        max_timeout_ms: broker.i32("transaction.max.timeout.ms"),
        id_expiration_ms: broker.i64("transactional.id.expiration.ms"),
        abort_check_ms: broker.i64("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        expire_check_ms: broker.i64("transaction.remove.expired.transaction.cleanup.interval.ms"),
    }
}

/// The coordinator of a shard, writing through that shard.
pub fn coordinator(shard: Weak<Shard>, config: TxnConfig) -> Coordinator {
    let persist = {
        let shard = shard.clone();
        Rc::new(move |partition: i32, batch| {
            let shard = shard.clone();
            async move {
                let Some(shard) = shard.upgrade() else {
                    return Err(E::CoordinatorNotAvailable.code());
                };
                let tp = TopicPartition::new(TXN_TOPIC, partition);
                match shard.append_local(&tp, batch).await.error_code {
                    0 => Ok(()),
                    code => {
                        tracing::warn!(%tp, code, "cannot write transaction state");
                        Err(E::CoordinatorNotAvailable.code())
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
                match shard.upgrade() {
                    Some(shard) => shard.new_producer_id().await,
                    None => Err(E::CoordinatorNotAvailable.code()),
                }
            }
            .boxed_local()
        })
    };
    let write_markers = Rc::new(move |markers: MarkerWrite| {
        let shard = shard.clone();
        async move {
            match shard.upgrade() {
                Some(shard) => shard.write_markers(markers).await,
                None => markers
                    .partitions
                    .into_iter()
                    .map(|(t, p)| (t, p, E::CoordinatorNotAvailable.code()))
                    .collect(),
            }
        }
        .boxed_local()
    });
    Coordinator::new(
        config,
        txn::Io {
            persist,
            new_producer_id,
            write_markers,
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
                    self.append(&tp, batch).await.error_code
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

    /// The shard whose coordinator holds `transactional_id`.
    pub fn txn_shard(&self, transactional_id: &str) -> usize {
        let partition = txn::txn_partition(transactional_id, self.txns.config().partitions);
        self.owner(&TopicPartition::new(TXN_TOPIC, partition))
    }

    /// Creates `__transaction_state` (compacted) on first use, as Kafka does.
    pub async fn ensure_txn_topic(&self) -> Result<(), i16> {
        if self.topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        let change = Change::CreateTopic {
            name: TXN_TOPIC.to_string(),
            partitions: self.txns.config().partitions,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), (100 << 20).to_string()),
            ]
            .into(),
        };
        match self.change(change, false).await {
            Ok(_) => {
                tracing::info!(topic = TXN_TOPIC, "created");
                Ok(())
            }
            Err(e) if e.code == E::TopicAlreadyExists.code() => Ok(()),
            Err(e) => {
                tracing::error!(topic = TXN_TOPIC, error = %e.message, "cannot create");
                Err(E::CoordinatorNotAvailable.code())
            }
        }
    }

    pub async fn txn_call(&self, transactional_id: &str, call: TxnCall) -> TxnAnswer {
        self.txn_call_on(self.txn_shard(transactional_id), call)
            .await
    }

    pub async fn txn_call_on(&self, shard: usize, call: TxnCall) -> TxnAnswer {
        if shard == self.id {
            return self.txn_local(call).await;
        }
        self.call(shard, |reply| ShardMessage::Txn { call, reply })
            .await
            .unwrap_or(TxnAnswer::Code(Err(E::CoordinatorNotAvailable.code())))
    }

    pub async fn txn_local(&self, call: TxnCall) -> TxnAnswer {
        let txns = &self.txns;
        match call {
            TxnCall::InitProducerId {
                id,
                timeout_ms,
                expected,
            } => TxnAnswer::Producer(txns.init_producer_id(&id, timeout_ms, expected).await),
            TxnCall::AddPartitions {
                id,
                producer_id,
                epoch,
                partitions,
            } => TxnAnswer::Code(
                txns.add_partitions(&id, producer_id, epoch, partitions)
                    .await,
            ),
            TxnCall::Verify {
                id,
                producer_id,
                epoch,
                partitions,
            } => TxnAnswer::Verified(txns.verify_partitions(&id, producer_id, epoch, &partitions)),
            TxnCall::End {
                id,
                producer_id,
                epoch,
                commit,
            } => TxnAnswer::Code(txns.end_txn(&id, producer_id, epoch, commit).await),
            TxnCall::Describe { id } => TxnAnswer::Described(txns.describe(&id)),
            TxnCall::List {
                states,
                producer_ids,
                min_duration_ms,
            } => TxnAnswer::Listed(txns.list(&states, &producer_ids, min_duration_ms)),
        }
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
        tracing::debug!(shard = self.id, records = count, elapsed = ?started.elapsed(), "transactions loaded");
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
