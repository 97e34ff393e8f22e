//! Transactions on the shards: each shard runs a `txn::Coordinator` for the transactional ids
//! whose `__transaction_state` partition it owns; a transactional request is routed to that shard.
//! The topic is created on first use (as Kafka does), a shard reads its partitions on start, and
//! a ticker finishes decided transactions and aborts timed-out ones. Markers go through the same
//! append path as WriteTxnMarkers; a marker on `__consumer_offsets` also settles the group
//! coordinator's pending transactional offsets (see [`Shard::append_local`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::FutureExt;

use super::{Shard, INTER_BROKER};
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
        TxnError::NotCoordinator => E::NotCoordinator,
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
                match super::append_code(
                    &shard
                        .append_local(&tp, batch, crate::replication::Acks::INTERNAL)
                        .await,
                ) {
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
    /// Writes the markers of a decision to each partition: those this node leads on their owner
    /// shards, those other nodes lead with one WriteTxnMarkers request to each node (as Kafka's
    /// coordinator sends them), all in parallel; the partitions that did not take theirs, with
    /// the error.
    pub async fn write_markers(&self, markers: MarkerWrite) -> Vec<(String, i32, i16)> {
        let me = self.node_id;
        let mut local = Vec::new();
        let mut remote: BTreeMap<(i32, String, u16), Vec<(String, i32)>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (topic, partition) in markers.partitions.iter().cloned() {
            let exists = self
                .topic(&topic)
                .is_some_and(|m| (0..m.partitions).contains(&partition));
            if !exists {
                failed.push((topic, partition, E::UnknownTopicOrPartition.code()));
                continue;
            }
            let tp = TopicPartition::new(topic.clone(), partition);
            match self.leader_endpoint(&tp, INTER_BROKER) {
                Some((node, _, _)) if node == me => local.push((topic, partition)),
                Some(leader) => remote.entry(leader).or_default().push((topic, partition)),
                None => failed.push((topic, partition, E::NotLeaderOrFollower.code())),
            }
        }
        let here = local.into_iter().map(|(topic, partition)| {
            let batch = marker_batch(
                markers.producer_id,
                markers.producer_epoch,
                markers.commit,
                0,
                TimestampMs::now(),
            );
            async move {
                let tp = TopicPartition::new(topic.clone(), partition);
                let code = super::append_code(
                    &self
                        .append(tp, batch, crate::replication::Acks::INTERNAL)
                        .await,
                );
                vec![(topic, partition, code)]
            }
        });
        let markers = &markers;
        let there = remote
            .into_iter()
            .map(|((node, host, port), partitions)| async move {
                self.send_markers(markers, node, &host, port, partitions)
                    .await
            });
        let (here, there) = futures::future::join(join_all(here), join_all(there)).await;
        failed
            .into_iter()
            .chain(here.into_iter().flatten())
            .chain(there.into_iter().flatten())
            .filter(|(_, _, code)| *code != 0)
            .collect()
    }

    /// WriteTxnMarkers v1 to node `node` for `partitions`; each partition's code (all of them
    /// NOT_LEADER_OR_FOLLOWER when the node cannot be reached: the coordinator tries again).
    async fn send_markers(
        &self,
        markers: &MarkerWrite,
        node: i32,
        host: &str,
        port: u16,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32, i16)> {
        use kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        use kafka_protocol::messages::{
            ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
        };
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(markers.producer_id);
        marker.producer_epoch = markers.producer_epoch;
        marker.transaction_result = markers.commit;
        marker.coordinator_epoch = 0;
        marker.topics = by_topic
            .into_iter()
            .map(|(topic, indexes)| {
                let mut t = WritableTxnMarkerTopic::default();
                t.name = TopicName(kafka_protocol::protocol::StrBytes::from_string(
                    topic.to_string(),
                ));
                t.partition_indexes = indexes;
                t
            })
            .collect();
        let mut request = WriteTxnMarkersRequest::default();
        request.markers = vec![marker];
        let client = format!("sluice-txn-coordinator-{}", self.node_id);
        let answer: Result<WriteTxnMarkersResponse, _> = super::peers::call(
            host,
            port,
            &self.peer_security,
            ApiKey::WriteTxnMarkers,
            1,
            &request,
            &client,
        )
        .await;
        match answer {
            Ok(response) => {
                let mut codes: Vec<(String, i32, i16)> = response
                    .markers
                    .iter()
                    .flat_map(|m| m.topics.iter())
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
                    })
                    .collect();
                // A partition the answer left out did not take its marker.
                for (topic, partition) in partitions {
                    if !codes.iter().any(|(t, p, _)| *t == topic && *p == partition) {
                        codes.push((topic, partition, E::UnknownServerError.code()));
                    }
                }
                codes
            }
            Err(e) => {
                tracing::warn!(node, error = %e, "cannot send transaction markers; retried");
                partitions
                    .into_iter()
                    .map(|(topic, partition)| (topic, partition, E::NotLeaderOrFollower.code()))
                    .collect()
            }
        }
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
        let live = self.image().live_brokers().count().max(1) as i64;
        let factor = self
            .broker()
            .i64("transaction.state.log.replication.factor")
            .min(live) as u16;
        let change =
            Change::create_internal_topic(TXN_TOPIC, self.txns.config().partitions, factor);
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
        // Another node leads the id's partition: it is the coordinator (see `on_group`).
        let partition = txn::txn_partition(transactional_id, self.txns.config().partitions);
        if self.leads_elsewhere(TXN_TOPIC, partition) {
            return Err(TxnError::NotCoordinator);
        }
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
