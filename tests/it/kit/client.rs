//! rdkafka (librdkafka) clients for the integration tests, driven without an async runtime.

use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn producer(addr: &str, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("message.timeout.ms", "20000")
        .set("linger.ms", "5");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

pub fn consumer(addr: &str, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("group.id", "sluice-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

pub fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client")
}

/// Creates `name` with the broker's `default.replication.factor` (1 on one node; 3 in the suite's
/// cluster run).
pub fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results =
        block_on(admin(addr).create_topics(&[topic], &AdminOptions::new())).expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
    }
}

pub fn create_partitions(addr: &str, name: &str, count: usize) {
    let results = block_on(
        admin(addr).create_partitions(&[NewPartitions::new(name, count)], &AdminOptions::new()),
    )
    .expect("create_partitions");
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("adding partitions to {topic}: {e}"));
    }
}

/// One produced record, as the tests compare them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl Sent {
    pub fn new(key: &str, value: &str) -> Sent {
        Sent {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// Produces `records` to `topic`/`partition` and waits for every delivery: (partition, offset)
/// of each, or the first error.
pub fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    records: &[Sent],
) -> Result<Vec<(i32, i64)>, rdkafka::error::KafkaError> {
    let mut futures = Vec::new();
    for sent in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &sent.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(topic);
        if let Some(key) = &sent.key {
            record = record.key(key);
        }
        if let Some(value) = &sent.value {
            record = record.payload(value);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(ts) = sent.timestamp {
            record = record.timestamp(ts);
        }
        if !sent.headers.is_empty() {
            record = record.headers(headers);
        }
        // Refused at once (a topic the client knows it may not write), or queued.
        let future = producer.send_result(record).map_err(|(e, _)| e)?;
        futures.push(future);
    }
    let mut out = Vec::new();
    for future in futures {
        match block_on(future).expect("delivery report") {
            Ok(delivery) => out.push(delivery),
            Err((e, _)) => return Err(e),
        }
    }
    Ok(out)
}

/// A consumed record.
#[derive(Clone, Debug)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub sent: Sent,
    pub timestamp: rdkafka::Timestamp,
}

pub fn got(message: &BorrowedMessage<'_>) -> Got {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Got {
        partition: message.partition(),
        offset: message.offset(),
        sent: Sent {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis(),
        },
        timestamp: message.timestamp(),
    }
}

/// Reads `count` records of `topic`/`partition` from `offset` with an assigned consumer.
pub fn consume(addr: &str, topic: &str, partition: i32, offset: Offset, count: usize) -> Vec<Got> {
    let consumer = consumer(addr, &[]);
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, offset)
        .expect("partition list");
    consumer.assign(&list).expect("assign");
    read_n(&consumer, count)
}

pub fn read_n<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    count: usize,
) -> Vec<Got> {
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {count} records before the timeout",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => out.push(got(&message)),
            // A node of a cluster that is down (or was, when the client first tried it): the
            // client goes on with the others.
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}
