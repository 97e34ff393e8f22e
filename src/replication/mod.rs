//! The partitions a node holds, as leader (and, with the cluster, as follower): each one's log,
//! its high watermark, the fetches waiting on it, and what an append, a read, an offset look-up
//! or a DeleteRecords does to it. Everything here runs on the shard that owns the partition (one
//! writer per partition); the server routes work here over the mesh and turns each
//! `PartitionError` into the Kafka error code a client understands.
//!
//! On one node a partition is its own only replica: the high watermark follows the end of the last
//! completed append. With replicas on other nodes, the leader's high watermark is the minimum log
//! end over the ISR and a follower appends what the leader sends (`replica`); the server's
//! fetchers move the records, over the Kafka wire.
//!
//! `partition`: one partition's state and operations; `replica`: its place among its replicas
//! (leader or follower, the ISR); `table`: the partitions one shard owns, opened on first use and
//! reconciled with the metadata image.

mod partition;
mod replica;
mod table;

pub use partition::{
    fire, Acks, Appended, Found, OffsetSpec, Partition, PartitionError, ReadHeader, ReadReply,
    Refused, Wake, LEADER_EPOCH,
};
pub use replica::{IsrChange, Transition};
pub use table::Partitions;

#[cfg(test)]
mod tests;
