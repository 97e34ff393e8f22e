//! The cluster metadata: the image every shard reads (brokers and their endpoints, topics with
//! their ids, config overrides and each partition's replicas, leader, epochs and ISR, runtime
//! broker configs, the producer ids handed out) and the changes to it, as a deterministic state
//! machine: [`apply`] computes the next image from the current one and a change, and everything
//! that is drawn at random (a topic's id) travels in the change, so that replaying the same
//! changes anywhere yields the same image. The [`Quorum`] replicates the changes as the entries
//! of a Raft log (a node with no other voters is a quorum of one) and stores each applied image
//! ([`FileStore`]); the [`Controller`] is the one place changes are made: one at a time, each
//! committed, then published.
//!
//! Nothing here knows a Kafka error code: a refused change is a [`ChangeError`], which the
//! server turns into the code a client understands.

mod change;
mod controller;
mod election;
mod image;
mod placement;
mod quorum;
mod store;

pub use change::{
    apply, validate_broker_configs, validate_topic_configs, validate_topic_name, Change,
    ChangeError,
};
pub use controller::{legacy_producer_ids_end, Controller, PRODUCER_ID_BLOCK};
pub use election::{election_refused, preferred_elections, ElectionRefused};
pub use image::{
    Assignment, BrokerMeta, Capacity, Endpoint, Image, TopicMeta, DYNAMIC_BROKER_KEYS,
    TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX,
};
pub use placement::place;
pub use quorum::{
    directory_id, parse_voters, serve_voters, NoPeers, Quorum, QuorumError, TcpTransport,
    Transport, Voter,
};
pub use store::{Applied, FileStore, StoreError, METADATA_DIR};
