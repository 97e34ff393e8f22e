//! The messages between shards and the routing of partition work to its owner: a call to the
//! shard that owns a partition runs in place when that is this shard, and otherwise crosses the
//! mesh as a typed message with a one-shot reply. Record bytes cross as `Bytes` handles; read
//! ranges cross as duplicated file descriptors, so the serving shard sends them itself.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;

use super::fanout::ReadArgs;
use super::metadata::{Change, Image, MetadataError, TopicMeta};
use super::partitions::{AppendReply, ListOffsetReply, OffsetSpec, ReadReply};
use super::Shard;
use crate::io;
use crate::model::TopicPartition;
use crate::protocol::FileSlice;
use crate::storage::ReadRange;

/// How many messages may wait in each shard-to-shard channel.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// Read ranges for another shard: (descriptor, position, bytes) of files the owner shard keeps
/// open until this is dropped.
pub struct SentRanges {
    ranges: Vec<(RawFd, u64, u64)>,
    done: oneshot::Sender<()>,
}

pub enum ShardMessage {
    Append {
        tp: TopicPartition,
        records: Bytes,
        reply: oneshot::Sender<AppendReply>,
    },
    /// A fetch's reads of the partitions this shard owns, answered in order.
    /// With `watch`, a long-polling fetch's wake-up: answered once one of the partitions' high
    /// watermark passes what this read saw.
    Read {
        reads: Vec<ReadArgs>,
        watch: Option<oneshot::Sender<()>>,
        reply: oneshot::Sender<Vec<ReadReply<SentRanges>>>,
    },
    ListOffset {
        tp: TopicPartition,
        spec: OffsetSpec,
        reply: oneshot::Sender<ListOffsetReply>,
    },
    DeleteRecords {
        tp: TopicPartition,
        offset: i64,
        reply: oneshot::Sender<Result<i64, i16>>,
    },
    /// To the controller (shard 0).
    Change {
        change: Change,
        validate_only: bool,
        reply: oneshot::Sender<Result<Option<TopicMeta>, MetadataError>>,
    },
    /// The idempotent producers of a partition.
    Producers {
        tp: TopicPartition,
        reply: oneshot::Sender<Result<Vec<(i64, crate::storage::ProducerEntry)>, i16>>,
    },
    /// To the controller (shard 0): a new producer id.
    ProducerId {
        reply: oneshot::Sender<Result<i64, i16>>,
    },
    /// To a group's coordinator shard.
    Group {
        call: super::groups::GroupCall,
        reply: oneshot::Sender<super::groups::GroupAnswer>,
    },
    /// To a transactional id's coordinator shard.
    Txn {
        call: super::transactions::TxnCall,
        reply: oneshot::Sender<super::transactions::TxnAnswer>,
    },
    /// From the controller: the new image; the reply says this shard holds it.
    Image {
        image: Arc<Image>,
        reply: oneshot::Sender<()>,
    },
}

/// Moves read ranges to another shard without a new descriptor: a task on this shard holds the
/// files open until the other shard drops the ranges (sent, or given up), so the descriptors stay
/// counted where they were opened.
pub fn send_ranges(shard: &Shard, ranges: Vec<ReadRange>) -> SentRanges {
    let (done, released) = oneshot::channel::<()>();
    let sent = ranges
        .iter()
        .map(|range| (range.file.raw_fd(), range.position, range.bytes))
        .collect();
    let files: Vec<Rc<io::File>> = ranges.into_iter().map(|range| range.file).collect();
    shard
        .hot
        .spawn(async move {
            let _ = released.await;
            drop(files);
        })
        .detach();
    SentRanges { ranges: sent, done }
}

pub fn local_slices(ranges: Vec<ReadRange>) -> Vec<FileSlice> {
    ranges
        .into_iter()
        .map(|range| FileSlice {
            fd: range.file.raw_fd(),
            position: range.position,
            len: range.bytes,
            keep: range.file as Rc<dyn std::any::Any>,
        })
        .collect()
}

pub fn remote_slices(sent: SentRanges) -> Vec<FileSlice> {
    let keep: Rc<dyn std::any::Any> = Rc::new(sent.done);
    sent.ranges
        .into_iter()
        .map(|(fd, position, len)| FileSlice {
            fd,
            position,
            len,
            keep: keep.clone(),
        })
        .collect()
}

/// Runs the messages arriving from one other shard, each in its own task on the hot queue.
pub async fn receive_loop(shard: Rc<Shard>, receiver: io::shard::MeshReceiver<ShardMessage>) {
    while let Some(message) = receiver.recv().await {
        let shard = shard.clone();
        shard.hot.spawn(handle(shard.clone(), message)).detach();
    }
}

async fn handle(shard: Rc<Shard>, message: ShardMessage) {
    match message {
        ShardMessage::Append { tp, records, reply } => {
            let _ = reply.send(shard.append_local(&tp, records).await);
        }
        ShardMessage::Read {
            reads,
            watch,
            reply,
        } => {
            let replies = shard.read_many_local(&reads, watch).await;
            let sent = replies
                .into_iter()
                .map(|result| ReadReply {
                    header: result.header,
                    ranges: result.ranges.map(|ranges| send_ranges(&shard, ranges)),
                    aborted: result.aborted,
                })
                .collect();
            let _ = reply.send(sent);
        }
        ShardMessage::ListOffset { tp, spec, reply } => {
            let _ = reply.send(shard.list_offset_local(&tp, spec).await);
        }
        ShardMessage::DeleteRecords { tp, offset, reply } => {
            let _ = reply.send(shard.delete_records_local(&tp, offset).await);
        }
        ShardMessage::Change {
            change,
            validate_only,
            reply,
        } => {
            let _ = reply.send(shard.change_local(change, validate_only).await);
        }
        ShardMessage::Producers { tp, reply } => {
            let _ = reply.send(shard.producers_local(&tp).await);
        }
        ShardMessage::ProducerId { reply } => {
            let _ = reply.send(shard.new_producer_id_local().await);
        }
        ShardMessage::Group { call, reply } => {
            let _ = reply.send(shard.group_local(call).await);
        }
        ShardMessage::Txn { call, reply } => {
            let _ = reply.send(shard.txn_local(call).await);
        }
        ShardMessage::Image { image, reply } => {
            shard.apply_image(image).await;
            let _ = reply.send(());
        }
    }
}
