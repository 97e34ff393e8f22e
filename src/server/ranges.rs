//! Read ranges across shards: the shard that serves a fetch's socket sends the record bytes
//! from the files of the shard that owns each partition. A range that crosses the mesh carries
//! the file's descriptor, and the owner keeps the file open until the range is dropped.

use std::os::fd::RawFd;
use std::rc::Rc;

use futures::channel::oneshot;

use super::Shard;
use crate::io;
use crate::protocol::FileSlice;
use crate::storage::ReadRange;

/// Read ranges for another shard: (descriptor, position, bytes) of files the owner shard keeps
/// open until this is dropped.
pub struct SentRanges {
    ranges: Vec<(RawFd, u64, u64)>,
    done: oneshot::Sender<()>,
}

/// Moves read ranges to another shard without a new descriptor: a task on this shard holds the
/// files open until the other shard drops the ranges (sent, or given up), so the descriptors stay
/// counted where they were opened.
pub fn send_ranges(shard: &Shard, ranges: Vec<ReadRange>) -> SentRanges {
    // Released on the other shard's thread.
    let (done, released) = io::answer_channel::<()>();
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
