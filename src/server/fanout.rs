//! A fetch's reads and long-poll watches, batched per owner shard: a fetch over thousands of
//! partitions sends one message to each other shard (not one per partition), and waits on one
//! wake-up per shard, shared by every partition it watches there, registered by the same pass
//! that reads (a wide fetch that finds nothing costs one pass over its partitions, not two).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::join_all;

use super::ranges;
use super::Shard;
use crate::model::{Isolation, NodeId, Offset, ShardId, TopicPartition};
use crate::protocol::FileSlice;
use crate::replication::{fire, PartitionError, ReadReply, Wake};
use crate::storage::ReadRange;

/// One partition's read in a fetch.
#[derive(Clone, Debug)]
pub struct ReadArgs {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub max_bytes: u64,
    pub min_one_batch: bool,
    pub isolation: Isolation,
    /// A follower's fetch: its node and the leader epoch it follows.
    pub replica: Option<(NodeId, i32)>,
}

/// Splits `items` by owner shard, keeping each item's index.
fn by_owner<T>(
    shard: &Shard,
    items: Vec<T>,
    tp: impl Fn(&T) -> &TopicPartition,
) -> Vec<(ShardId, Vec<(usize, T)>)> {
    let mut groups: Vec<Vec<(usize, T)>> = (0..shard.shards).map(|_| Vec::new()).collect();
    for (index, item) in items.into_iter().enumerate() {
        groups[shard.owner(tp(&item)).index()].push((index, item));
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .map(|(owner, group)| (ShardId(owner as u32), group))
        .collect()
}

impl Shard {
    /// Reads every partition of `reads` from its owner (one message per other shard), answers in
    /// the order asked. With `watch`, also one wake-up per owner shard, fired when one of its
    /// partitions' high watermark passes what this read saw.
    pub async fn read_many(
        self: &Rc<Self>,
        reads: Vec<ReadArgs>,
        watch: bool,
    ) -> (Vec<ReadReply<Vec<FileSlice>>>, Vec<crate::io::Answered<()>>) {
        let count = reads.len();
        let groups = by_owner(self, reads, |r| &r.tp);
        let answered = join_all(groups.into_iter().map(|(owner, group)| {
            let shard = self.clone();
            async move {
                let (indexes, args): (Vec<usize>, Vec<ReadArgs>) = group.into_iter().unzip();
                // Fired on the owner shard's thread.
                let (wake, woken) = match watch.then(crate::io::answer_channel) {
                    Some((tx, rx)) => (Some(tx), Some(rx)),
                    None => (None, None),
                };
                let replies: Vec<ReadReply<Vec<FileSlice>>> = if owner == shard.id {
                    shard
                        .read_many_local(&args, wake)
                        .await
                        .into_iter()
                        .map(|r| r.map_ranges(ranges::local_slices))
                        .collect()
                } else {
                    let asked = args.len();
                    let read = shard.mesh.remote(owner, move |owner| async move {
                        let replies = owner.read_many_local(&args, wake).await;
                        replies
                            .into_iter()
                            .map(|r| r.map_ranges(|ranges| ranges::send_ranges(&owner, ranges)))
                            .collect::<Vec<_>>()
                    });
                    match read.await {
                        Ok(replies) => replies
                            .into_iter()
                            .map(|r| r.map_ranges(ranges::remote_slices))
                            .collect(),
                        Err(_) => (0..asked).map(|_| not_leader()).collect(),
                    }
                };
                (indexes, replies, woken)
            }
        }))
        .await;
        let mut out: Vec<Option<ReadReply<Vec<FileSlice>>>> = (0..count).map(|_| None).collect();
        let mut wakes = Vec::new();
        for (indexes, replies, woken) in answered {
            for (index, reply) in indexes.into_iter().zip(replies) {
                out[index] = Some(reply);
            }
            wakes.extend(woken);
        }
        let replies = out
            .into_iter()
            .map(|reply| reply.unwrap_or_else(not_leader))
            .collect();
        (replies, wakes)
    }

    /// The reads of partitions this shard owns, concurrently. A partition read at its high
    /// watermark (most of a wide topic's, most of the time) is answered on the spot, without a
    /// task. With `watch`, registers it on every partition read, to fire when its high watermark
    /// passes what the read saw (at once if it already has, or if a partition is gone).
    pub async fn read_many_local(
        &self,
        reads: &[ReadArgs],
        watch: Option<oneshot::Sender<()>>,
    ) -> Vec<ReadReply<Vec<ReadRange>>> {
        let wake: Option<Wake> = watch.map(|reply| Rc::new(RefCell::new(Some(reply))));
        let mut out: Vec<Option<ReadReply<Vec<ReadRange>>>> = Vec::with_capacity(reads.len());
        let mut pending = Vec::new();
        {
            // Only a leader answers consumers (a follower's replica is open too, for its
            // fetcher: it answers NOT_LEADER_OR_FOLLOWER through `read_local`).
            let serving = self.caught_up.load(std::sync::atomic::Ordering::Acquire);
            let found = self.partitions.get_many(reads.iter().map(|r| &r.tp));
            for (index, (read, found)) in reads.iter().zip(found).enumerate() {
                match found {
                    Some(partition)
                        if serving
                            && read.replica.is_none()
                            && partition.is_leader()
                            && partition.high_watermark() == read.offset =>
                    {
                        out.push(Some(partition.nothing_new(read.isolation)));
                        // Registered in the same look-up, before anything can append.
                        if let Some(wake) = &wake {
                            partition.add_waiter(wake.clone());
                        }
                    }
                    found => {
                        out.push(None);
                        // Where the partition ends before it is read: the read returns at least
                        // that much (or its max_bytes), so a watch past it wakes only for what
                        // was appended since, not at once.
                        let replica = read.replica.is_some();
                        let before = found.map(|p| p.readable_end(replica));
                        pending.push((index, before));
                    }
                }
            }
        }
        let read = join_all(pending.iter().map(|&(index, _)| {
            let r = &reads[index];
            self.read_local(
                &r.tp,
                r.offset,
                r.max_bytes,
                r.min_one_batch,
                r.isolation,
                r.replica,
            )
        }))
        .await;
        for (&(index, _), reply) in pending.iter().zip(read) {
            out[index] = Some(reply);
        }
        let out: Vec<ReadReply<Vec<ReadRange>>> = out
            .into_iter()
            .map(|reply| reply.expect("every read answered"))
            .collect();
        if let Some(wake) = &wake {
            // The partitions read from disk: past what was seen, not past the fetch offset
            // (otherwise a fetch short of its min_bytes would wake at once and spin: a follower's
            // did, re-reading every partition until its wait ran out), at once if an append came
            // while reading or a partition is gone.
            let found = self
                .partitions
                .get_many(pending.iter().map(|&(index, _)| &reads[index].tp));
            for (&(index, before), found) in pending.iter().zip(found) {
                let (read, reply) = (&reads[index], &out[index]);
                let replica = read.replica.is_some();
                let seen = if replica {
                    read.offset.max(before.unwrap_or(read.offset))
                } else {
                    read.offset.max(reply.header.high_watermark)
                };
                match found {
                    Some(partition) if partition.readable_end(replica) <= seen => {
                        partition.add_waiter(wake.clone())
                    }
                    _ => {
                        fire(wake);
                        break;
                    }
                }
            }
        }
        out
    }
}

fn not_leader<R>() -> ReadReply<R> {
    ReadReply::failed(PartitionError::NotLeader)
}
