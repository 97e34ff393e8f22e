//! The partitions a node holds, as leader (and, with the cluster, as follower): each one's log,
//! its high watermark, the fetches waiting on it, and what an append, a read, an offset look-up
//! or a DeleteRecords does to it. Everything here runs on the shard that owns the partition (one
//! writer per partition); the server routes work here over the mesh and turns each
//! `PartitionError` into the Kafka error code a client understands.
//!
//! On one node a partition is its own only replica: the high watermark follows the end of the last
//! completed append. The follower side (fetching from a leader, the ISR, acks=all waiters, leader
//! epochs and truncation) plugs in here with the cluster.
//!
//! `partition`: one partition's state and operations; `table`: the partitions one shard owns,
//! opened on first use and reconciled with the metadata image.

mod partition;
mod table;

pub use partition::{
    fire, Appended, Found, OffsetSpec, Partition, PartitionError, ReadHeader, ReadReply, Refused,
    Wake, LEADER_EPOCH,
};
pub use table::Partitions;

#[cfg(test)]
mod tests;
