//! The partition side of transactions with librdkafka consumers: records of an open transaction
//! are held back from read_committed by the last stable offset, a COMMIT marker releases them, an
//! ABORT marker's records are filtered out by the client from the aborted-transaction list, and
//! markers never reach applications. Markers are written with WriteTxnMarkers, as Kafka's
//! transaction coordinator does.

use crate::kit::{broker, client, raw};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use broker::Broker;
use bytes::Bytes;
use client::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::model::records::{marker_batch, BatchBuilder, ProducerInfo, Record};
use sluice::model::{Offset as LogOffset, TimestampMs};

fn produce(s: &mut TcpStream, records: Bytes) -> (i16, i64) {
    raw::produce(s, "tx", records)
}

/// Values `values`, from producer `producer` (pid, seq) in a transaction, or plain.
fn batch(values: &[&str], producer: Option<(i64, i32)>) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            offset: LogOffset(i as i64),
            timestamp: TimestampMs::now(),
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        })
        .collect();
    let mut builder = BatchBuilder::default();
    if let Some((producer_id, base_sequence)) = producer {
        builder.transactional = true;
        builder.producer = ProducerInfo {
            producer_id,
            producer_epoch: 0,
            base_sequence,
        };
    }
    builder.build(&records)
}

fn end_txn(s: &mut TcpStream, producer_id: i64, commit: bool) -> i16 {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let mut topic = WritableTxnMarkerTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("tx"));
    topic.partition_indexes = vec![0];
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(producer_id);
    marker.producer_epoch = 0;
    marker.transaction_result = commit;
    marker.topics = vec![topic];
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    let r: WriteTxnMarkersResponse = raw::call(s, ApiKey::WriteTxnMarkers, 1, 2, &request);
    r.markers[0].topics[0].partitions[0].error_code
}

fn latest(s: &mut TcpStream, read_committed: bool) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_static_str("tx"));
    t.partitions = vec![p];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.isolation_level = read_committed as i8;
    request.topics = vec![t];
    let r: ListOffsetsResponse = raw::call(s, ApiKey::ListOffsets, 7, 3, &request);
    r.topics[0].partitions[0].offset
}

/// Every value a fresh consumer in `isolation` reads from the beginning within `settle`.
fn read_all(addr: &str, isolation: &str, settle: Duration) -> Vec<String> {
    let consumer: BaseConsumer = consumer(addr, &[("isolation.level", isolation)]);
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("tx", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + settle;
    let mut values = Vec::new();
    while Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message.unwrap();
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[test]
fn read_committed_sees_committed_transactions_only() {
    if broker::single_node_only("raw Produce to node 1, which may not lead the partition") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "tx", 1, &[]);
    let mut s = raw::connect(&broker);
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    let producer_id =
        raw::call::<_, InitProducerIdResponse>(&mut s, ApiKey::InitProducerId, 4, 9, &init)
            .producer_id
            .0;
    let settle = Duration::from_millis(1500);

    assert_eq!(produce(&mut s, batch(&["a0", "a1"], None)), (0, 0));
    assert_eq!(
        produce(
            &mut s,
            batch(&["t1-0", "t1-1", "t1-2"], Some((producer_id, 0)))
        ),
        (0, 2)
    );
    assert_eq!(produce(&mut s, batch(&["b0"], None)), (0, 5));
    // The open transaction holds the last stable offset at its first record.
    assert_eq!(latest(&mut s, true), 2);
    assert_eq!(latest(&mut s, false), 6);
    assert_eq!(
        read_all(&broker.addr, "read_committed", settle),
        ["a0", "a1"]
    );

    assert_eq!(end_txn(&mut s, producer_id, true), 0);
    assert_eq!(latest(&mut s, true), 7);
    assert_eq!(
        read_all(&broker.addr, "read_committed", settle),
        ["a0", "a1", "t1-0", "t1-1", "t1-2", "b0"]
    );

    assert_eq!(
        produce(&mut s, batch(&["t2-0", "t2-1"], Some((producer_id, 3)))),
        (0, 7)
    );
    assert_eq!(end_txn(&mut s, producer_id, false), 0);
    assert_eq!(produce(&mut s, batch(&["c0"], None)), (0, 10));
    let committed = read_all(&broker.addr, "read_committed", settle);
    assert_eq!(committed, ["a0", "a1", "t1-0", "t1-1", "t1-2", "b0", "c0"]);
    let everything = read_all(&broker.addr, "read_uncommitted", settle);
    assert_eq!(
        everything,
        ["a0", "a1", "t1-0", "t1-1", "t1-2", "b0", "t2-0", "t2-1", "c0"],
        "markers never reach the application"
    );

    // Clients may not write markers themselves.
    let forged = marker_batch(producer_id, 0, true, 0, TimestampMs::now());
    assert_eq!(produce(&mut s, forged).0, 87, "INVALID_RECORD");
    // A marker from a fenced epoch is refused.
    assert_eq!(produce(&mut s, batch(&["t3"], Some((producer_id, 5)))).0, 0);
    let mut stale = WriteTxnMarkersRequest::default();
    let mut marker =
        kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker::default();
    marker.producer_id = ProducerId(producer_id);
    marker.producer_epoch = -1;
    let mut topic =
        kafka_protocol::messages::write_txn_markers_request::WritableTxnMarkerTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("tx"));
    topic.partition_indexes = vec![0];
    marker.topics = vec![topic];
    stale.markers = vec![marker];
    let r: WriteTxnMarkersResponse = raw::call(&mut s, ApiKey::WriteTxnMarkers, 1, 4, &stale);
    assert_eq!(
        r.markers[0].topics[0].partitions[0].error_code, 47,
        "INVALID_PRODUCER_EPOCH"
    );
}
