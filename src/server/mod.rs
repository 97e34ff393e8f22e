//! `sluice serve`: one executor per shard, pinned to its core, each with its own listener on the
//! shared port; connections are served on the shard that accepted them and partition work goes to
//! the owning shard over the mesh (`crate::shard`). This is the only module that turns Kafka
//! requests into calls on partitions (`crate::replication`) and the coordinators, and their
//! typed errors into Kafka error codes.
//!
//! `bootstrap`: `serve` and each shard's start and stop; this file: the shard's state and the
//! routing of partition work to its owner; `apis/`: one file per Kafka API (or family);
//! `connection`, `listener`, `admission`: the socket side; `fanout` and `ranges`: a fetch's
//! reads on the shards that own its partitions; `partitions`, `groups`, `transactions`: the
//! owner side of each as requests reach it, and each one's error -> code mapping; `controller`
//! and `quorum`: metadata changes and the metadata quorum's voter on the controller shard;
//! `peers`: Kafka requests to other nodes; `fetcher`: a follower's fetching from its leaders and
//! the leader's ISR upkeep.

mod addresses;
mod admin;
mod admission;
mod apis;
mod auth;
pub(crate) mod authz;
mod bootstrap;
mod connection;
mod console;
mod controller;
pub(crate) mod fanout;
pub mod fds;
mod fetch_sessions;
mod fetcher;
mod groups;
mod listener;
pub mod log_level;
mod metrics;
mod partitions;
mod peers;
mod quorum;
mod ranges;
mod transactions;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::cluster::Image;
use crate::config::Values;
use crate::io;
use crate::model::{Offset, ShardId, TopicPartition};
use crate::replication::{Acks, Appended, Found, OffsetSpec, PartitionError, Partitions, Refused};
use crate::shard::Mesh;
pub use apis::served as served_apis;
pub use bootstrap::{serve, without_stop_signals, ServeError};
pub use controller::CONTROLLER_SHARD;
pub use partitions::{append_code, error_code as partition_code};

/// Request bytes one shard may hold at once (frames read but not yet handled), over all its
/// connections: past it, connections wait before reading their next frame.
pub const SHARD_REQUEST_MEMORY_BYTES: usize = 256 << 20;

/// The state of one shard. `!Send`: it lives and dies on its core.
pub struct Shard {
    pub id: ShardId,
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
    /// Each client listener's advertised address, by name (registered with the broker).
    pub endpoints: Vec<crate::cluster::Endpoint>,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: Rc<crate::security::acl::Authorizer>,
    /// How this broker's connections to the others' inter-broker listener are secured.
    pub peer_security: Arc<crate::security::peer::PeerSecurity>,
    image: RefCell<Arc<Image>>,
    partitions: Partitions,
    /// On the controller shard only: the one place metadata changes are made.
    controller: Option<crate::cluster::Controller>,
    mesh: Mesh<Shard>,
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
    /// The node id of the metadata quorum's leader (-1 while none is known).
    pub active_controller: Arc<std::sync::atomic::AtomicI32>,
    /// Whether this node acts on the leaderships in its image: a node of a cluster starts from the
    /// image it stored, which may be stale (it was killed, others took over); it serves as leader
    /// only once its registration in this run is committed, so its image holds every change
    /// before it. (A node alone: from the start.)
    pub caught_up: Arc<std::sync::atomic::AtomicBool>,
    /// This shard, for the tasks it starts.
    this: Weak<Shard>,
    /// Fetching the partitions this shard follows, one fetcher per leader node.
    fetchers: fetcher::Fetchers,
    /// What this shard counts for `/metrics`.
    pub metrics: metrics::Metrics,
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

/// The listener name brokers reach each other through: the first client listener, the one a
/// broker registers as its `host` and `port`.
pub const INTER_BROKER: &str = "";

impl Shard {
    pub fn owner(&self, tp: &TopicPartition) -> ShardId {
        crate::shard::owner(tp, self.shards)
    }

    /// The node that leads `tp` and where clients of `listener` reach it, if the image knows
    /// both.
    pub fn leader_endpoint(
        &self,
        tp: &TopicPartition,
        listener: &str,
    ) -> Option<(i32, String, u16)> {
        let image = self.image();
        let meta = image.topics.get(&*tp.topic)?;
        // An image from before assignments: this node holds every partition.
        let leader = meta
            .leader(tp.partition)
            .unwrap_or(crate::model::NodeId(self.node_id));
        if image.fenced.contains(&leader) {
            return None;
        }
        let broker = image.brokers.get(&leader)?;
        let (host, port) = broker.endpoint(listener);
        Some((leader.0, host.to_string(), port))
    }

    /// The node id of the metadata quorum's leader (-1 while none is known).
    pub fn active_controller(&self) -> i32 {
        self.active_controller
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The controller as clients are told it (Metadata, DescribeCluster): the active controller
    /// when it is a live broker; else, as Kafka's KRaft brokers do (clients cannot reach a
    /// controller-only node; any broker takes their admin requests), a live broker: the lowest
    /// id, so that every node names the same one.
    pub fn controller_for_clients(&self) -> i32 {
        let active = self.active_controller();
        let image = self.image();
        let live: Vec<i32> = image.live_brokers().map(|(id, _)| id.0).collect();
        if active < 0 || live.contains(&active) {
            return active;
        }
        live.first().copied().unwrap_or(-1)
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

    /// Runs `op` on `shard` (in place when that is this shard); a shard that cannot be reached
    /// is the caller's `E` (a coordinator's "unavailable").
    pub async fn on_shard<T, E, F, Fut>(&self, shard: ShardId, op: F) -> Result<T, E>
    where
        E: From<crate::shard::Unreachable>,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
        T: Send + 'static,
    {
        Ok(self.mesh.route(shard, op).await?)
    }

    /// Appends to `tp` on its owner shard (`tp` moves there with the records, not a copy).
    pub async fn append(
        &self,
        tp: TopicPartition,
        records: Bytes,
        acks: Acks,
    ) -> Result<Appended, Refused> {
        self.mesh
            .route(self.owner(&tp), move |shard| async move {
                shard.append_local(&tp, records, acks).await
            })
            .await
            .unwrap_or_else(|unreachable| Err(unreachable.into()))
    }

    pub async fn list_offset(
        &self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<Found, PartitionError> {
        let tp = tp.clone();
        self.mesh
            .route(self.owner(&tp), move |shard| async move {
                shard.list_offset_local(&tp, spec).await
            })
            .await?
    }

    pub async fn producers(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, crate::storage::ProducerEntry)>, PartitionError> {
        let tp = tp.clone();
        self.mesh
            .route(self.owner(&tp), move |shard| async move {
                shard.producers_local(&tp).await
            })
            .await?
    }

    pub async fn delete_records(
        &self,
        tp: &TopicPartition,
        offset: Offset,
    ) -> Result<Offset, PartitionError> {
        let tp = tp.clone();
        self.mesh
            .route(self.owner(&tp), move |shard| async move {
                shard.delete_records_local(&tp, offset).await
            })
            .await?
    }
}
