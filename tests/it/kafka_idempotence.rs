//! Idempotent producers with librdkafka: producer ids, no duplicate and no gap across a broker
//! killed with SIGKILL and restarted while batches are in flight; sequence errors on raw frames.

use crate::kit::{broker, client, raw};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::Broker;
use client::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

const MESSAGES: u64 = 100_000;

#[test]
fn an_idempotent_producer_leaves_no_duplicate_and_no_gap_across_a_kill_9() {
    let mut broker = Broker::start_on_fixed_port(&[]);
    // An fdatasync after every write holds each append between its write and its answer for a
    // while: a SIGKILL then leaves batches in the log whose producer never heard back, and
    // whose retries must be recognised after the restart.
    create_topic(&broker.addr, "exactly", 2, &[("flush.messages", "1")]);
    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("batch.num.messages", "500")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Counting(deliveries.clone()))
        .unwrap();
    let mut killed = false;
    for i in 0..MESSAGES {
        let value = i.to_string();
        let mut record = BaseRecord::<(), str>::to("exactly")
            .payload(value.as_str())
            .partition((i % 2) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
        // Half-way, with batches in flight: no flush, no checkpoint, no goodbye.
        if !killed && i == MESSAGES / 2 {
            while deliveries.ok.load(Ordering::Relaxed) < MESSAGES / 4 {
                producer.poll(Duration::from_millis(1));
            }
            broker.kill9();
            std::thread::sleep(Duration::from_millis(300));
            broker.restart();
            killed = true;
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(deliveries.failed.load(Ordering::Relaxed), 0);
    assert_eq!(deliveries.ok.load(Ordering::Relaxed), MESSAGES);

    // Every value exactly once, in order within its partition.
    let consumer = consumer(&broker.addr, &[]);
    let mut list = TopicPartitionList::new();
    for p in 0..2 {
        list.add_partition_offset("exactly", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut last = [None::<u64>; 2];
    let started = Instant::now();
    let mut total = 0u64;
    while total < MESSAGES || started.elapsed() < Duration::from_secs(2) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "read {total} of {MESSAGES}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let value: u64 = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let p = message.partition() as usize;
        assert!(
            last[p].is_none_or(|l| l < value),
            "partition {p}: {value} after {last:?}"
        );
        last[p] = Some(value);
        *seen.entry(value).or_default() += 1;
        total += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(total, MESSAGES);
    assert_eq!(seen.len() as u64, MESSAGES, "gaps");
}

#[test]
fn producer_ids_never_repeat_and_sequences_are_enforced() {
    if broker::single_node_only(
        "raw InitProducerId and Produce to node 1, which may not coordinate or lead",
    ) {
        return;
    }
    use bytes::Bytes;
    use kafka_protocol::messages::{
        ApiKey, InitProducerIdRequest, InitProducerIdResponse, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    use sluice::model::records::{BatchBuilder, ProducerInfo, Record};
    use sluice::model::{Offset as LogOffset, TimestampMs};

    let mut broker = Broker::start(&[]);
    create_topic(&broker.addr, "seq", 1, &[]);
    let init = |s: &mut std::net::TcpStream| -> (i64, i16) {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        let r: InitProducerIdResponse = raw::call(s, ApiKey::InitProducerId, 4, 1, &request);
        assert_eq!(r.error_code, 0);
        (r.producer_id.0, r.producer_epoch)
    };
    let mut s = raw::connect(&broker);
    let (first, epoch) = init(&mut s);
    assert_eq!(epoch, 0);
    let (second, _) = init(&mut s);
    assert_ne!(first, second);
    let mut transactional = InitProducerIdRequest::default();
    transactional.transactional_id = Some(TransactionalId(StrBytes::from_static_str("t")));
    let refused: InitProducerIdResponse =
        raw::call(&mut s, ApiKey::InitProducerId, 4, 2, &transactional);
    assert_eq!(
        refused.error_code, 50,
        "INVALID_TRANSACTION_TIMEOUT for 0 ms"
    );
    // A transactional id keeps its producer id and gets a new epoch per initialisation.
    transactional.transaction_timeout_ms = 60_000;
    let t1: InitProducerIdResponse =
        raw::call(&mut s, ApiKey::InitProducerId, 4, 3, &transactional);
    assert_eq!((t1.error_code, t1.producer_epoch), (0, 0));
    assert!(![first, second].contains(&t1.producer_id.0));
    let t2: InitProducerIdResponse =
        raw::call(&mut s, ApiKey::InitProducerId, 4, 4, &transactional);
    assert_eq!(
        (t2.error_code, t2.producer_id, t2.producer_epoch),
        (0, t1.producer_id, 1)
    );
    // KIP-360: naming an epoch that is neither current nor the one before it is fenced
    // (PRODUCER_FENCED from v4, INVALID_PRODUCER_EPOCH before).
    transactional.producer_id = t1.producer_id;
    transactional.producer_epoch = 7;
    for (version, code) in [(4, 90), (3, 47)] {
        let r: InitProducerIdResponse =
            raw::call(&mut s, ApiKey::InitProducerId, version, 5, &transactional);
        assert_eq!(r.error_code, code, "v{version}");
    }

    let produce = |s: &mut std::net::TcpStream, epoch: i16, seq: i32, count: usize| {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                offset: LogOffset(i as i64),
                timestamp: TimestampMs::now(),
                key: None,
                value: Some(Bytes::from(format!("s{}", seq as usize + i))),
                headers: Vec::new(),
            })
            .collect();
        let batch = BatchBuilder {
            producer: ProducerInfo {
                producer_id: first,
                producer_epoch: epoch,
                base_sequence: seq,
            },
            ..BatchBuilder::default()
        }
        .build(&records);
        raw::produce(s, "seq", batch)
    };
    assert_eq!(produce(&mut s, 0, 0, 3), (0, 0));
    assert_eq!(produce(&mut s, 0, 3, 2), (0, 3));
    assert_eq!(
        produce(&mut s, 0, 0, 3),
        (0, 0),
        "a retry gets its original offset"
    );
    assert_eq!(
        produce(&mut s, 0, 9, 1).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(produce(&mut s, 1, 0, 1), (0, 5), "a new epoch starts at 0");
    assert_eq!(produce(&mut s, 0, 5, 1).0, 47, "INVALID_PRODUCER_EPOCH");

    // After a restart: the same answers, and ids past every one handed out.
    drop(s);
    broker.stop();
    broker.restart();
    let mut s = raw::connect(&broker);
    assert_eq!(
        produce(&mut s, 1, 0, 1),
        (0, 5),
        "still a duplicate after a restart"
    );
    assert_eq!(produce(&mut s, 1, 1, 1), (0, 6));
    let (third, _) = init(&mut s);
    assert!(
        third > first.max(second),
        "{third} after {first} and {second}"
    );

    // DescribeProducers shows what the partition remembers.
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
    let mut topic = TopicRequest::default();
    topic.name = TopicName(StrBytes::from_static_str("seq"));
    topic.partition_indexes = vec![0, 7];
    let mut request = DescribeProducersRequest::default();
    request.topics = vec![topic];
    let described: DescribeProducersResponse =
        raw::call(&mut s, ApiKey::DescribeProducers, 0, 4, &request);
    let partitions = &described.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    let states: Vec<(i64, i32, i32)> = partitions[0]
        .active_producers
        .iter()
        .map(|p| (p.producer_id.0, p.producer_epoch, p.last_sequence))
        .collect();
    assert_eq!(states, vec![(first, 1, 1)]);
    assert_eq!(partitions[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}
