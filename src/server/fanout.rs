//! A fetch's reads and long-poll watches, batched per owner shard: a fetch over thousands of
//! partitions sends one message to each other shard (not one per partition), and waits on one
//! wake-up per shard, shared by every partition it watches there.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::join_all;

use super::mesh::{self, ShardMessage};
use super::partitions::{ReadHeader, ReadReply};
use super::Shard;
use crate::model::TopicPartition;
use crate::protocol::{FileSlice, ResponseError as E};
use crate::storage::{Log, ReadRange};

/// One partition's read in a fetch.
#[derive(Clone, Debug)]
pub struct ReadArgs {
    pub tp: TopicPartition,
    pub offset: i64,
    pub max_bytes: u64,
    pub min_one_batch: bool,
    pub read_committed: bool,
}

/// A long-polling fetch's wake-up, shared by every partition of one shard it waits on: the first
/// of them to pass its offset takes and fires it.
pub type Wake = Rc<RefCell<Option<oneshot::Sender<()>>>>;

pub fn fire(wake: &Wake) {
    if let Some(sender) = wake.borrow_mut().take() {
        let _ = sender.send(());
    }
}

/// Whether nobody waits on `wake` any more (fired, or the fetch gave up).
pub fn is_done(wake: &Wake) -> bool {
    wake.borrow()
        .as_ref()
        .is_none_or(oneshot::Sender::is_canceled)
}

impl<R> ReadReply<R> {
    fn map_ranges<S>(self, f: impl FnOnce(R) -> S) -> ReadReply<S> {
        ReadReply {
            header: self.header,
            ranges: self.ranges.map(f),
            aborted: self.aborted,
        }
    }
}

/// Splits `items` by owner shard, keeping each item's index.
fn by_owner<T>(
    shard: &Shard,
    items: Vec<T>,
    tp: impl Fn(&T) -> &TopicPartition,
) -> Vec<(usize, Vec<(usize, T)>)> {
    let mut groups: Vec<Vec<(usize, T)>> = (0..shard.shards).map(|_| Vec::new()).collect();
    for (index, item) in items.into_iter().enumerate() {
        groups[shard.owner(tp(&item))].push((index, item));
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .collect()
}

impl Shard {
    /// Reads every partition of `reads` from its owner (one message per other shard), answers in
    /// the order asked.
    pub async fn read_many(
        self: &Rc<Self>,
        reads: Vec<ReadArgs>,
    ) -> Vec<ReadReply<Vec<FileSlice>>> {
        let count = reads.len();
        let groups = by_owner(self, reads, |r| &r.tp);
        let answered = join_all(groups.into_iter().map(|(owner, group)| {
            let shard = self.clone();
            async move {
                let (indexes, args): (Vec<usize>, Vec<ReadArgs>) = group.into_iter().unzip();
                let replies: Vec<ReadReply<Vec<FileSlice>>> = if owner == shard.id {
                    shard
                        .read_many_local(&args)
                        .await
                        .into_iter()
                        .map(|r| r.map_ranges(mesh::local_slices))
                        .collect()
                } else {
                    let asked = args.len();
                    match shard
                        .call(owner, |reply| ShardMessage::Read { reads: args, reply })
                        .await
                    {
                        Some(replies) => replies
                            .into_iter()
                            .map(|r| r.map_ranges(mesh::remote_slices))
                            .collect(),
                        None => (0..asked).map(|_| not_leader()).collect(),
                    }
                };
                (indexes, replies)
            }
        }))
        .await;
        let mut out: Vec<Option<ReadReply<Vec<FileSlice>>>> = (0..count).map(|_| None).collect();
        for (indexes, replies) in answered {
            for (index, reply) in indexes.into_iter().zip(replies) {
                out[index] = Some(reply);
            }
        }
        out.into_iter()
            .map(|reply| reply.unwrap_or_else(not_leader))
            .collect()
    }

    /// The reads of partitions this shard owns, concurrently. A partition read at its log end
    /// (most of a wide topic's, most of the time) is answered on the spot, without a task.
    pub async fn read_many_local(&self, reads: &[ReadArgs]) -> Vec<ReadReply<Vec<ReadRange>>> {
        let mut out: Vec<Option<ReadReply<Vec<ReadRange>>>> = Vec::with_capacity(reads.len());
        let mut pending = Vec::new();
        {
            let partitions = self.partitions.borrow();
            for (index, read) in reads.iter().enumerate() {
                match partitions.get(&read.tp) {
                    Some(partition) if partition.log.log_end().0 == read.offset => {
                        out.push(Some(nothing_new(&partition.log, read.read_committed)));
                    }
                    _ => {
                        out.push(None);
                        pending.push(index);
                    }
                }
            }
        }
        let read = join_all(pending.iter().map(|&index| {
            let r = &reads[index];
            self.read_local(
                &r.tp,
                r.offset,
                r.max_bytes,
                r.min_one_batch,
                r.read_committed,
            )
        }))
        .await;
        for (index, reply) in pending.into_iter().zip(read) {
            out[index] = Some(reply);
        }
        out.into_iter()
            .map(|reply| reply.expect("every read answered"))
            .collect()
    }

    /// Watches every (partition, offset): one receiver per owner shard, resolved when one of its
    /// partitions' log end passes its offset (or a partition is gone).
    pub async fn watch_many(
        &self,
        watches: Vec<(TopicPartition, i64)>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut receivers = Vec::new();
        for (owner, group) in by_owner(self, watches, |(tp, _)| tp) {
            let (tx, rx) = oneshot::channel();
            let group: Vec<(TopicPartition, i64)> = group.into_iter().map(|(_, w)| w).collect();
            if owner == self.id {
                self.watch_many_local(group, tx);
            } else {
                let _ = self
                    .mesh
                    .send_to(
                        owner,
                        ShardMessage::Watch {
                            watches: group,
                            reply: tx,
                        },
                    )
                    .await;
            }
            receivers.push(rx);
        }
        receivers
    }

    /// Registers one wake-up on each partition (owned here) of `watches`; fires at once if one
    /// has already passed its offset.
    pub fn watch_many_local(
        &self,
        watches: Vec<(TopicPartition, i64)>,
        reply: oneshot::Sender<()>,
    ) {
        let wake: Wake = Rc::new(RefCell::new(Some(reply)));
        let partitions = self.partitions.borrow();
        for (tp, offset) in watches {
            match partitions.get(&tp) {
                Some(partition) if partition.log.log_end().0 <= offset => {
                    partition.add_waiter(wake.clone())
                }
                _ => {
                    fire(&wake);
                    return;
                }
            }
        }
    }
}

/// What a read at the log end finds: the partition's watermarks and no records.
fn nothing_new(log: &Log, read_committed: bool) -> ReadReply<Vec<ReadRange>> {
    ReadReply {
        header: ReadHeader {
            error_code: 0,
            high_watermark: log.log_end().0,
            last_stable_offset: log.last_stable_offset().0,
            log_start_offset: log.log_start().0,
        },
        ranges: Some(Vec::new()),
        aborted: read_committed.then(Vec::new),
    }
}

fn not_leader<R>() -> ReadReply<R> {
    ReadReply {
        header: ReadHeader {
            error_code: E::NotLeaderOrFollower.code(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        },
        ranges: None,
        aborted: None,
    }
}
