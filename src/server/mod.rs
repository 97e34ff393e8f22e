//! `sluice serve`: one executor per shard, pinned to its core, each with its own listener on the
//! shared port; connections are served on the shard that accepted them and partition work goes to
//! the owning shard over the mesh. This is the only module that turns Kafka requests into calls on
//! storage and storage outcomes into Kafka error codes.
//!
//! `bootstrap`: `serve` and each shard's start and stop; this file: the shard's state; `apis/`:
//! one file per Kafka API (or family); `connection`, `listener`, `admission`: the socket side;
//! `mesh` and `fanout`: messages to the shards that own partitions; `partitions`, `groups`,
//! `transactions`: the owner side of each.

mod admission;
mod apis;
mod bootstrap;
mod connection;
pub(crate) mod fanout;
pub mod fds;
mod fetch_sessions;
mod groups;
mod listener;
mod mesh;
pub mod metadata;
mod partitions;
mod producer_ids;
mod transactions;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::config::Values;
use crate::io;
use crate::model::TopicPartition;
use crate::protocol::ResponseError as E;
pub use apis::served as served_apis;
pub use bootstrap::{serve, without_stop_signals, ServeError};
use mesh::ShardMessage;
use metadata::{Change, Image, MetadataError, TopicMeta};
pub use partitions::{
    AppendReply, ListOffsetReply, OffsetSpec, ReadHeader, ReadReply, LEADER_EPOCH,
};

/// Request bytes one shard may hold at once (frames read but not yet handled), over all its
/// connections: past it, connections wait before reading their next frame.
pub const SHARD_REQUEST_MEMORY_BYTES: usize = 256 << 20;

/// The state of one shard. `!Send`: it lives and dies on its core.
pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub node_id: i32,
    /// The configs the broker started with (file and `--set`).
    pub static_broker: Values,
    /// Those with the image's runtime changes on top.
    broker: RefCell<Rc<Values>>,
    pub data_dir: PathBuf,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: u16,
    image: RefCell<Arc<Image>>,
    partitions: RefCell<HashMap<TopicPartition, Rc<partitions::Partition>>>,
    open_lock: io::Lock,
    controller_lock: io::Lock,
    /// Used on shard 0 only.
    producer_ids: producer_ids::ProducerIds,
    mesh: io::shard::MeshSenders<ShardMessage>,
    pub hot: io::TaskQueue,
    pub background: io::TaskQueue,
    fetch_sessions: RefCell<fetch_sessions::Sessions>,
    pub request_memory: io::Budget,
    /// The consumer groups whose `__consumer_offsets` partition this shard owns.
    groups: crate::group::Coordinator,
    /// The transactional ids whose `__transaction_state` partition this shard owns.
    txns: crate::txn::Coordinator,
    stopping: Cell<bool>,
    stop_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    in_flight: Cell<usize>,
    /// How the descriptor limit is shared out (partitions per shard, connections).
    pub fds: fds::FdBudget,
}

/// Counts a request as in flight until dropped.
pub struct InFlight {
    shard: Rc<Shard>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
    }
}

impl Shard {
    pub fn owner(&self, tp: &TopicPartition) -> usize {
        crate::shard::owner(tp, self.shards)
    }

    /// The broker's effective configs now.
    pub fn broker(&self) -> Rc<Values> {
        self.broker.borrow().clone()
    }

    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    pub fn begin_request(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight {
            shard: self.clone(),
        }
    }

    /// Resolves when the shard begins to stop.
    pub fn stopped(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.stopping.get() {
            let _ = tx.send(());
        } else {
            let mut waiters = self.stop_waiters.borrow_mut();
            waiters.retain(|w| !w.is_canceled());
            waiters.push(tx);
        }
        rx
    }

    async fn call<T>(
        &self,
        peer: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardMessage,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if self.mesh.send_to(peer, make(tx)).await.is_err() {
            return None;
        }
        rx.await.ok()
    }

    pub async fn append(&self, tp: &TopicPartition, records: Bytes) -> AppendReply {
        let owner = self.owner(tp);
        if owner == self.id {
            return self.append_local(tp, records).await;
        }
        let tp_sent = tp.clone();
        self.call(owner, |reply| ShardMessage::Append {
            tp: tp_sent,
            records,
            reply,
        })
        .await
        .unwrap_or_else(|| AppendReply {
            error_code: E::NotLeaderOrFollower.code(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            ..Default::default()
        })
    }

    pub async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> ListOffsetReply {
        let owner = self.owner(tp);
        if owner == self.id {
            return self.list_offset_local(tp, spec).await;
        }
        let tp_sent = tp.clone();
        self.call(owner, |reply| ShardMessage::ListOffset {
            tp: tp_sent,
            spec,
            reply,
        })
        .await
        .unwrap_or(ListOffsetReply {
            error_code: E::NotLeaderOrFollower.code(),
            offset: -1,
            timestamp: -1,
        })
    }

    pub async fn producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, crate::storage::ProducerEntry)>, i16> {
        let owner = self.owner(tp);
        if owner == self.id {
            return self.producers_local(tp).await;
        }
        let tp = tp.clone();
        self.call(owner, |reply| ShardMessage::Producers { tp, reply })
            .await
            .unwrap_or(Err(E::NotLeaderOrFollower.code()))
    }

    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, i16> {
        let owner = self.owner(tp);
        if owner == self.id {
            return self.delete_records_local(tp, offset).await;
        }
        let tp_sent = tp.clone();
        self.call(owner, |reply| ShardMessage::DeleteRecords {
            tp: tp_sent,
            offset,
            reply,
        })
        .await
        .unwrap_or(Err(E::NotLeaderOrFollower.code()))
    }

    /// A metadata change, made by the controller (shard 0); returns once every shard holds the
    /// new image. The topic's metadata after the change, if it still exists.
    pub async fn change(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Option<TopicMeta>, MetadataError> {
        if self.id == 0 {
            return self.change_local(change, validate_only).await;
        }
        self.call(0, |reply| ShardMessage::Change {
            change,
            validate_only,
            reply,
        })
        .await
        .unwrap_or_else(|| {
            Err(MetadataError::new(
                E::NotController.code(),
                "the controller shard is not running",
            ))
        })
    }

    /// A new producer id from the controller (shard 0).
    pub async fn new_producer_id(&self) -> Result<i64, i16> {
        if self.id == 0 {
            return self.new_producer_id_local().await;
        }
        self.call(0, |reply| ShardMessage::ProducerId { reply })
            .await
            .unwrap_or(Err(E::CoordinatorNotAvailable.code()))
    }

    pub async fn new_producer_id_local(&self) -> Result<i64, i16> {
        self.producer_ids.allocate().await.map_err(|e| {
            tracing::error!(error = %e, "cannot persist a producer id block");
            E::CoordinatorNotAvailable.code()
        })
    }

    /// Creates `topic` with the broker's defaults if auto-creation is on and it does not exist.
    pub async fn auto_create(&self, topic: &str) -> Option<TopicMeta> {
        if let Some(meta) = self.topic(topic) {
            return Some(meta);
        }
        if !self.broker().bool("auto.create.topics.enable") {
            return None;
        }
        let change = Change::CreateTopic {
            name: topic.to_string(),
            partitions: self.broker().i32("num.partitions"),
            configs: Default::default(),
        };
        match self.change(change, false).await {
            Ok(meta) => meta,
            Err(e) if e.code == E::TopicAlreadyExists.code() => self.topic(topic),
            Err(e) => {
                tracing::debug!(topic, error = %e.message, "auto-creation refused");
                None
            }
        }
    }

    async fn change_local(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<Option<TopicMeta>, MetadataError> {
        assert_eq!(self.id, 0, "only shard 0 is the controller");
        let _guard = self.controller_lock.lock().await;
        let current = self.image();
        let next = metadata::apply(&current, &change)?;
        if matches!(
            change,
            Change::CreateTopic { .. } | Change::CreatePartitions { .. }
        ) {
            self.check_partition_room(&current, &next)?;
        }
        let name = match &change {
            Change::CreateTopic { name, .. }
            | Change::DeleteTopic { name }
            | Change::CreatePartitions { name, .. }
            | Change::SetTopicConfigs { name, .. } => name.clone(),
            Change::SetBrokerConfigs { .. } => String::new(),
        };
        let meta = next.topics.get(&name).cloned();
        if validate_only {
            return Ok(meta);
        }
        metadata::persist(&self.data_dir, &next, &io::Faults::default())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot write the metadata image");
                MetadataError::new(E::KafkaStorageError.code(), e.to_string())
            })?;
        let next = Arc::new(next);
        for peer in 1..self.shards {
            let image = next.clone();
            let held = self
                .call(peer, |reply| ShardMessage::Image { image, reply })
                .await;
            if held.is_none() {
                tracing::warn!(peer, "a shard did not take the new metadata image");
            }
        }
        self.apply_image(next).await;
        tracing::info!(?change, "metadata changed");
        Ok(meta)
    }

    async fn apply_image(&self, image: Arc<Image>) {
        if image.revision <= self.image.borrow().revision {
            return;
        }
        *self.broker.borrow_mut() = Rc::new(image.broker_values(&self.static_broker));
        *self.image.borrow_mut() = image;
        if let Err((count, first)) = self.reconcile_partitions().await {
            tracing::error!(
                shard = self.id, count, first = %first,
                "cannot open new partitions' logs; they answer KAFKA_STORAGE_ERROR until they open"
            );
        }
    }
}
