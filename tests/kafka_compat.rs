//! Regressions for what librdkafka's own test suite found (docs/COMPATIBILITY.md), each with
//! the number of the librdkafka test that found it.

#[path = "kafka/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "kafka/client.rs"]
#[allow(dead_code)]
mod client;

use std::time::Duration;

use broker::Broker;
use client::*;
use futures_lite::future::block_on;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

/// 0011: a compacted topic refuses records without a key; the batch fails whole, the keyless
/// records with INVALID_RECORD and the others with "invalid different record".
#[test]
fn a_compacted_topic_refuses_keyless_records_naming_them() {
    let broker = Broker::start(&[]);
    create_topic(
        &broker.addr,
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    );
    let producer = producer(&broker.addr, &[("linger.ms", "200"), ("retries", "0")]);
    let futures: Vec<_> = (0..10)
        .map(|i| {
            let value = format!("value {i}");
            let key = format!("key {i}");
            let mut record = FutureRecord::to("compacted").partition(0).payload(&value);
            if i % 5 != 0 {
                record = record.key(&key);
            }
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let codes: Vec<Option<RDKafkaErrorCode>> = futures
        .into_iter()
        .map(|f| match block_on(f).expect("a delivery report") {
            Ok(_) => None,
            Err((KafkaError::MessageProduction(code), _)) => Some(code),
            Err((e, _)) => panic!("unexpected error {e}"),
        })
        .collect();
    for (i, code) in codes.iter().enumerate() {
        let expected = if i % 5 == 0 {
            RDKafkaErrorCode::InvalidRecord
        } else {
            RDKafkaErrorCode::InvalidDifferentRecord
        };
        assert_eq!(*code, Some(expected), "record {i}: {codes:?}");
    }
    // Keyed records alone go in, and nothing of the refused batch was written.
    let keyed = [Sent::new("k", "kept")];
    assert_eq!(
        produce(&producer, "compacted", Some(0), &keyed).unwrap(),
        vec![(0, 0)]
    );
    let got = consume(&broker.addr, "compacted", 0, Offset::Beginning, 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"kept"[..]));
}

/// 0082: a fetch answers within its `max_bytes` (its first batch aside, KIP-74), however large
/// the partition limit: librdkafka drops a response larger than it asked for.
#[test]
fn a_fetch_stays_within_its_max_bytes_whatever_the_partition_limit() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "big", 1, &[]);
    // 8 MB in 100 KB records, batches of at most 1 MB.
    let producer = producer(
        &broker.addr,
        &[("linger.ms", "50"), ("batch.size", "1000000")],
    );
    let value = "x".repeat(100_000);
    let records: Vec<Sent> = (0..80)
        .map(|i| Sent::new(&format!("{i}"), &value))
        .collect();
    produce(&producer, "big", Some(0), &records).unwrap();
    let consumer: BaseConsumer = consumer(
        &broker.addr,
        &[
            ("fetch.max.bytes", "1000000"),
            ("receive.message.max.bytes", "1000512"),
            ("max.partition.fetch.bytes", "20000000"),
        ],
    );
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("big", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut count = 0;
    while count < 80 {
        assert!(std::time::Instant::now() < deadline, "read {count} of 80");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(message.payload().map(<[u8]>::len), Some(100_000));
                count += 1;
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
}
