//! WriteTxnMarkers v0-v1: writes COMMIT or ABORT control batches to partitions, ending a
//! producer's transaction there (Kafka's transaction coordinator sends it to partition leaders;
//! Sluice's coordinator calls the same path). A marker from an older producer epoch gets
//! INVALID_PRODUCER_EPOCH.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{Answer, Api, Request};
use crate::model::records::marker_batch;
use crate::model::{TimestampMs, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::{append_code, Shard};

pub const API: Api = Api {
    key: ApiKey::WriteTxnMarkers,
    min_version: 0,
    max_version: 1,
    handle: |shard, request| Box::pin(write_txn_markers(shard, request)),
};

async fn write_txn_markers(shard: Rc<Shard>, request: Request) -> Answer {
    let body: WriteTxnMarkersRequest = request.decode("WriteTxnMarkersRequest")?;
    let mut response = WriteTxnMarkersResponse::default();
    // Only brokers write markers: CLUSTER_ACTION.
    let allowed = Authz::of(&shard, &request).cluster(Operation::ClusterAction);
    for marker in &body.markers {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in &marker.topics {
            let name = topic.name.0.to_string();
            let meta = shard.topic(&name).filter(|_| allowed);
            let writes = topic.partition_indexes.iter().map(|&index| {
                let shard = shard.clone();
                let tp = TopicPartition::new(name.clone(), index);
                let exists = meta
                    .as_ref()
                    .is_some_and(|m| (0..m.partitions).contains(&index));
                let batch = marker_batch(
                    marker.producer_id.0,
                    marker.producer_epoch,
                    marker.transaction_result,
                    marker.coordinator_epoch,
                    TimestampMs::now(),
                );
                async move {
                    let code = if !allowed {
                        E::ClusterAuthorizationFailed.code()
                    } else if exists {
                        append_code(
                            &shard
                                .append(tp, batch, crate::replication::Acks::INTERNAL)
                                .await,
                        )
                    } else {
                        E::UnknownTopicOrPartition.code()
                    };
                    let mut p = WritableTxnMarkerPartitionResult::default();
                    p.partition_index = index;
                    p.error_code = code;
                    p
                }
            });
            let mut out = WritableTxnMarkerTopicResult::default();
            out.name = topic.name.clone();
            out.partitions = join_all(writes).await;
            result.topics.push(out);
        }
        response.markers.push(result);
    }
    request.answer(&response)
}
