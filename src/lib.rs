//! Sluice: a Kafka-compatible streaming broker, thread-per-core on io_uring.
//! The module map and the dependency rules are in DESIGN.md.

pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod group;
pub mod io;
pub mod model;
pub mod protocol;
pub mod replication;
pub mod security;
pub mod server;
pub mod shard;
pub mod storage;
pub mod tune;
pub mod txn;
