//! The owner side of partition work, as the server reaches it: finding (or opening) the
//! partition a request names on the shard that owns it, and the Kafka error code for each
//! `PartitionError`. What a partition does lives in `crate::replication`.

use std::rc::Rc;

use bytes::Bytes;

use super::Shard;
use crate::cluster::TopicMeta;
use crate::model::{Isolation, NodeId, Offset, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::replication::{
    Acks, Appended, Found, OffsetSpec, Partition, PartitionError, ReadReply, Refused,
};
use crate::storage::{ProducerEntry, ReadRange, SequenceError, StorageError};

/// The Kafka error code a client understands for a partition's failure.
pub fn error_code(error: &PartitionError) -> i16 {
    match error {
        PartitionError::UnknownTopicOrPartition => E::UnknownTopicOrPartition.code(),
        PartitionError::NotLeader => E::NotLeaderOrFollower.code(),
        PartitionError::Storage(e) => storage_code(e),
        PartitionError::Corrupt(_) => E::CorruptMessage.code(),
        PartitionError::InvalidRecord { .. } => E::InvalidRecord.code(),
        PartitionError::DeleteBeyondHighWatermark { .. } => E::OffsetOutOfRange.code(),
        PartitionError::NotEnoughReplicas { .. } => E::NotEnoughReplicas.code(),
        PartitionError::NotEnoughReplicasAfterAppend => E::NotEnoughReplicasAfterAppend.code(),
        PartitionError::TimedOut => E::RequestTimedOut.code(),
        PartitionError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch.code(),
        PartitionError::UnknownLeaderEpoch { .. } => E::UnknownLeaderEpoch.code(),
        // Only a follower's own fetcher meets it.
        PartitionError::Diverged => E::OffsetOutOfRange.code(),
    }
}

fn storage_code(error: &StorageError) -> i16 {
    match error {
        StorageError::CorruptBatch { .. } => E::CorruptMessage.code(),
        StorageError::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        StorageError::DiskFull(_) | StorageError::Io(_) => E::KafkaStorageError.code(),
        StorageError::Closed => E::NotLeaderOrFollower.code(),
        StorageError::Sequence { source, .. } => match source {
            SequenceError::OutOfOrder { .. } => E::OutOfOrderSequenceNumber.code(),
            SequenceError::StaleEpoch { .. } => E::InvalidProducerEpoch.code(),
        },
        _ => E::KafkaStorageError.code(),
    }
}

/// 0 for a completed append, the error's code otherwise.
pub fn append_code(result: &Result<Appended, Refused>) -> i16 {
    result
        .as_ref()
        .err()
        .map_or(0, |refused| error_code(&refused.error))
}

impl Shard {
    /// The partition if this shard owns it and it exists, opening its log on first use.
    pub async fn partition(&self, tp: &TopicPartition) -> Result<Rc<Partition>, PartitionError> {
        if !self.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            return Err(PartitionError::NotLeader);
        }
        if let Some(partition) = self.partitions.get(tp) {
            // A follower's replica is open too, for its fetcher.
            return match partition.is_leader() {
                true => Ok(partition),
                false => Err(PartitionError::NotLeader),
            };
        }
        let meta = self
            .topic(&tp.topic)
            .filter(|meta| tp.partition >= 0 && tp.partition < meta.partitions)
            .ok_or(PartitionError::UnknownTopicOrPartition)?;
        // Another node's (in a cluster), or another shard's (a message that was routed before
        // the image moved it).
        if !meta.led_by(tp.partition, NodeId(self.node_id)) || self.owner(tp) != self.id {
            return Err(PartitionError::NotLeader);
        }
        self.open_partition(tp, &meta).await.map_err(|e| {
            crate::throttled!(|count| {
                tracing::error!(%tp, error = %e, count, "cannot open the partition's log (answered KAFKA_STORAGE_ERROR)")
            });
            e.into()
        })
    }

    /// Whether the image names another live node the leader of `topic`'s `partition` (a
    /// coordinator's partition, say): false where the topic or the partition is unknown.
    pub fn leads_elsewhere(&self, topic: &str, partition: i32) -> bool {
        let image = self.image();
        let me = crate::model::NodeId(self.node_id);
        image
            .topics
            .get(topic)
            .and_then(|meta| meta.leader(partition))
            .is_some_and(|leader| leader != me && !image.fenced.contains(&leader))
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.image.borrow().topics.get(name).cloned()
    }

    /// Opens (recovering) the log of an owned partition; one opening at a time per shard.
    pub async fn open_partition(
        &self,
        tp: &TopicPartition,
        meta: &TopicMeta,
    ) -> Result<Rc<Partition>, StorageError> {
        self.partitions.open(tp, meta, &self.broker()).await
    }

    pub async fn append_local(
        &self,
        tp: &TopicPartition,
        records: Bytes,
        acks: Acks,
    ) -> Result<Appended, Refused> {
        let partition = self.partition(tp).await?;
        let appended = partition.append(records.clone(), acks).await?;
        if &*tp.topic == crate::group::OFFSETS_TOPIC {
            self.settle_group_txn(tp.partition, &records);
        }
        Ok(appended)
    }

    /// A transaction marker written to a `__consumer_offsets` partition settles the producer's
    /// pending transactional offsets of the groups there.
    fn settle_group_txn(&self, partition: i32, records: &Bytes) {
        let Ok((view, _)) = crate::model::BatchView::parse_header(records) else {
            return;
        };
        if !view.is_control() {
            return;
        }
        if let Some(commit) = crate::storage::marker_of(&view) {
            self.groups.settle(partition, view.producer_id(), commit);
        }
    }

    /// A fetch's read of one partition; a follower's (`replica`: its node and the leader epoch
    /// it follows) also tells the leader how far that follower is.
    pub async fn read_local(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: u64,
        min_one_batch: bool,
        isolation: Isolation,
        replica: Option<(NodeId, i32)>,
    ) -> ReadReply<Vec<ReadRange>> {
        let partition = match self.partition(tp).await {
            Ok(p) => p,
            Err(error) => return ReadReply::failed(error),
        };
        if let Some((node, epoch)) = replica {
            let current = partition.leader_epoch().0;
            if epoch >= 0 && epoch < current {
                return ReadReply::failed(PartitionError::FencedLeaderEpoch {
                    asked: epoch,
                    current,
                });
            }
            if epoch > current {
                return ReadReply::failed(PartitionError::UnknownLeaderEpoch {
                    asked: epoch,
                    current,
                });
            }
            if let Some(change) = partition.follower_fetched(node, offset) {
                self.send_isr_change(&partition, change);
            }
        }
        partition
            .read(
                offset,
                max_bytes,
                min_one_batch,
                isolation,
                replica.is_some(),
            )
            .await
    }

    /// The idempotent producers a partition remembers (DescribeProducers).
    pub async fn producers_local(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(i64, ProducerEntry)>, PartitionError> {
        Ok(self.partition(tp).await?.producers())
    }

    pub async fn list_offset_local(
        &self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<Found, PartitionError> {
        self.partition(tp).await?.list_offset(spec).await
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark); the new low
    /// watermark.
    pub async fn delete_records_local(
        &self,
        tp: &TopicPartition,
        offset: Offset,
    ) -> Result<Offset, PartitionError> {
        self.partition(tp).await?.delete_records(offset).await
    }

    /// Brings this shard's partitions in line with the image (see `Partitions::reconcile`): the
    /// replicas this node holds, as leader or follower; followers start fetching.
    pub async fn reconcile_partitions(&self) -> Result<(), (usize, String)> {
        let image = self.image();
        let me = NodeId(self.node_id);
        let owns = |tp: &TopicPartition| {
            self.owner(tp) == self.id
                && image
                    .topics
                    .get(&*tp.topic)
                    .is_some_and(|meta| meta.replica_on(tp.partition, me))
        };
        let (moved, failed) = self
            .partitions
            .reconcile(&image, &self.broker(), owns)
            .await;
        self.coordinators_follow(&moved);
        self.follow(moved);
        match failed {
            None => Ok(()),
            Some(failed) => Err(failed),
        }
    }

    /// Flushes and checkpoints every owned log (shutdown).
    pub async fn close_partitions(&self) {
        self.partitions.close_all().await;
    }
}
