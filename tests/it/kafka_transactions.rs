//! Transactions end to end with librdkafka's transactional producer against the real binary:
//! committed records reach read_committed consumers and aborted ones only read_uncommitted; a
//! consume-transform-produce loop commits its input offsets inside its transactions; a second
//! producer with the same transactional id fences the first; a transaction left open past its
//! timeout is aborted by the coordinator; a restart keeps every outcome; the operator APIs
//! (DescribeTransactions, ListTransactions) report them.

use crate::kit::{broker, client, raw};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::Broker;
use client::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(20);

pub(crate) fn txn_producer(addr: &str, id: &str, settings: &[(&str, &str)]) -> FutureProducer {
    let mut all = vec![("transactional.id", id)];
    all.extend_from_slice(settings);
    let producer = producer(addr, &all);
    producer.init_transactions(T).expect("init_transactions");
    producer
}

pub(crate) fn send(producer: &FutureProducer, topic: &str, values: &[String]) {
    let sent: Vec<Sent> = values.iter().map(|v| Sent::new(v, v)).collect();
    produce(producer, topic, None, &sent).expect("produce");
}

pub(crate) fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every value a fresh consumer reads from the beginning of each partition of `topic` within
/// `settle` after the last one arrived.
pub(crate) fn read_all(addr: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = consumer(addr, &[("isolation.level", isolation)]);
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let mut quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message.expect("consume");
            out.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
            quiet_until = Instant::now() + Duration::from_millis(1000);
        }
    }
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn describe(broker: &Broker, id: &str) -> describe_transactions_response::TransactionState {
    let mut s = raw::connect(broker);
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(StrBytes::from_string(id.to_string()))];
    let r: DescribeTransactionsResponse =
        raw::call(&mut s, ApiKey::DescribeTransactions, 0, 1, &request);
    r.transaction_states[0].clone()
}

fn list(broker: &Broker, states: &[&str]) -> BTreeMap<String, String> {
    let mut s = raw::connect(broker);
    let mut request = ListTransactionsRequest::default();
    request.state_filters = states
        .iter()
        .map(|s| StrBytes::from_string(s.to_string()))
        .collect();
    request.duration_filter = -1;
    let r: ListTransactionsResponse = raw::call(&mut s, ApiKey::ListTransactions, 1, 1, &request);
    assert_eq!(r.error_code, 0);
    r.transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.transaction_state.to_string(),
            )
        })
        .collect()
}

fn wait_for_state(broker: &Broker, id: &str, state: &str) {
    let deadline = Instant::now() + T;
    loop {
        let described = describe(broker, id);
        if described.transaction_state.as_str() == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} stayed {} (wanted {state})",
            described.transaction_state.as_str()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn committed_records_are_read_committed_and_aborted_ones_only_uncommitted() {
    if broker::single_node_only("raw DescribeTransactions to node 1, which may not coordinate") {
        return;
    }
    let mut broker = Broker::start_on_fixed_port(&[]);
    create_topic(&broker.addr, "txn", 2, &[]);
    let producer = txn_producer(&broker.addr, "t1", &[]);
    let plain = self::producer(&broker.addr, &[]);

    producer.begin_transaction().unwrap();
    send(&producer, "txn", &values("c1", 20));
    // A plain record written while the transaction is open.
    send(&plain, "txn", &values("plain", 1));
    producer.commit_transaction(T).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "txn", &values("a", 20));
    producer.abort_transaction(T).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, "txn", &values("c2", 5));
    producer.commit_transaction(T).unwrap();

    let committed = sorted([values("c1", 20), values("plain", 1), values("c2", 5)].concat());
    let everything = sorted([committed.clone(), values("a", 20)].concat());
    assert_eq!(
        read_all(&broker.addr, "txn", 2, "read_committed"),
        committed
    );
    assert_eq!(
        read_all(&broker.addr, "txn", 2, "read_uncommitted"),
        everything
    );

    let described = describe(&broker, "t1");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.transaction_state.as_str(), "CompleteCommit");
    assert!(described.producer_id.0 >= 0);
    assert_eq!(
        describe(&broker, "nobody").error_code,
        kafka_protocol::error::ResponseError::TransactionalIdNotFound.code()
    );
    assert_eq!(list(&broker, &[])["t1"], "CompleteCommit");
    assert!(list(&broker, &["Ongoing"]).is_empty());

    // A transaction open across a crash (SIGKILL) and restart: its records stay invisible to read_committed until
    // the same producer commits after the broker is back.
    producer.begin_transaction().unwrap();
    send(&producer, "txn", &values("c3", 4));
    assert_eq!(list(&broker, &["Ongoing"])["t1"], "Ongoing");
    broker.kill9();
    broker.restart();
    assert_eq!(
        describe(&broker, "t1").transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(
        read_all(&broker.addr, "txn", 2, "read_committed"),
        committed
    );
    producer.commit_transaction(T).unwrap();
    assert_eq!(
        read_all(&broker.addr, "txn", 2, "read_committed"),
        sorted([committed, values("c3", 4)].concat())
    );
}

#[test]
fn consume_transform_produce_commits_its_offsets_in_the_transaction() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "in", 1, &[]);
    create_topic(&broker.addr, "out", 1, &[]);
    let plain = producer(&broker.addr, &[]);
    send(&plain, "in", &values("in", 100));

    let group_settings = [
        ("group.id", "ctp"),
        ("isolation.level", "read_committed"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
    ];
    let input: BaseConsumer = consumer(&broker.addr, &group_settings);
    input.subscribe(&["in"]).unwrap();
    let producer = txn_producer(&broker.addr, "ctp-1", &[]);

    // One round: up to `n` input records, transformed into `out`, with the input position
    // committed in the same transaction, then committed or aborted. The input offset after it.
    let round = |n: usize, commit: bool| -> i64 {
        let deadline = Instant::now() + T;
        let mut taken = Vec::new();
        let mut next = -1;
        while taken.len() < n {
            assert!(Instant::now() < deadline, "input ran dry");
            if let Some(message) = input.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                taken.push(format!(
                    "out-{}",
                    String::from_utf8_lossy(message.payload().unwrap())
                ));
                next = message.offset() + 1;
            }
        }
        producer.begin_transaction().unwrap();
        send(&producer, "out", &taken);
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, Offset::Offset(next))
            .unwrap();
        let metadata = input.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, T)
            .unwrap();
        if commit {
            producer.commit_transaction(T).unwrap();
        } else {
            producer.abort_transaction(T).unwrap();
        }
        next
    };
    assert_eq!(round(30, true), 30);
    assert_eq!(round(30, true), 60);
    // An aborted round: its output is dropped and its offsets are not committed.
    assert_eq!(round(20, false), 80);
    drop(input);

    let committed = |group: &str| -> i64 {
        let c: BaseConsumer = consumer(&broker.addr, &[("group.id", group)]);
        let mut list = TopicPartitionList::new();
        list.add_partition("in", 0);
        let committed = c.committed_offsets(list, T).unwrap();
        match committed.find_partition("in", 0).unwrap().offset() {
            Offset::Offset(o) => o,
            other => panic!("no committed offset: {other:?}"),
        }
    };
    assert_eq!(committed("ctp"), 60);

    // A new member of the group carries on from the committed offset: the aborted round's
    // records are processed again, and every input record lands in `out` exactly once.
    let input: BaseConsumer = consumer(&broker.addr, &group_settings);
    input.subscribe(&["in"]).unwrap();
    let deadline = Instant::now() + T;
    let mut taken = Vec::new();
    let mut first = None;
    while taken.len() < 40 {
        assert!(Instant::now() < deadline, "input ran dry");
        if let Some(message) = input.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            first.get_or_insert(message.offset());
            taken.push(format!(
                "out-{}",
                String::from_utf8_lossy(message.payload().unwrap())
            ));
        }
    }
    assert_eq!(first, Some(60));
    producer.begin_transaction().unwrap();
    send(&producer, "out", &taken);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("in", 0, Offset::Offset(100))
        .unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &input.group_metadata().unwrap(), T)
        .unwrap();
    producer.commit_transaction(T).unwrap();
    assert_eq!(committed("ctp"), 100);
    let expected: Vec<String> = values("in", 100)
        .into_iter()
        .map(|v| format!("out-{v}"))
        .collect();
    assert_eq!(
        read_all(&broker.addr, "out", 1, "read_committed"),
        sorted(expected)
    );
}

#[test]
fn a_second_producer_with_the_same_id_fences_the_first() {
    if broker::single_node_only("raw ListTransactions to node 1 (each broker lists its own)") {
        return;
    }
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "fence", 1, &[]);
    let first = txn_producer(&broker.addr, "shared", &[]);
    first.begin_transaction().unwrap();
    send(&first, "fence", &values("zombie", 5));
    assert_eq!(list(&broker, &["Ongoing"])["shared"], "Ongoing");

    // The second producer's init aborts the first one's open transaction under a new epoch.
    let second = txn_producer(&broker.addr, "shared", &[]);
    let err = first
        .commit_transaction(T)
        .expect_err("the fenced producer cannot commit");
    match &err {
        KafkaError::Transaction(e) => assert!(
            e.is_fatal() || e.code() == RDKafkaErrorCode::ProducerFenced,
            "the first producer is fenced: {e:?}"
        ),
        other => panic!("not a transaction error: {other:?}"),
    }
    second.begin_transaction().unwrap();
    send(&second, "fence", &values("live", 3));
    second.commit_transaction(T).unwrap();
    assert_eq!(
        read_all(&broker.addr, "fence", 1, "read_committed"),
        values("live", 3)
    );
    assert_eq!(
        read_all(&broker.addr, "fence", 1, "read_uncommitted"),
        sorted([values("live", 3), values("zombie", 5)].concat())
    );
}

#[test]
fn a_transaction_left_open_past_its_timeout_is_aborted() {
    if broker::single_node_only("raw DescribeTransactions to node 1, which may not coordinate") {
        return;
    }
    let broker =
        Broker::start(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=100"]);
    create_topic(&broker.addr, "slow", 1, &[]);
    let producer = txn_producer(
        &broker.addr,
        "slow-1",
        &[
            ("transaction.timeout.ms", "1500"),
            ("message.timeout.ms", "1500"),
        ],
    );
    producer.begin_transaction().unwrap();
    send(&producer, "slow", &values("late", 5));
    let opened = Instant::now();
    wait_for_state(&broker, "slow-1", "CompleteAbort");
    assert!(
        opened.elapsed() >= Duration::from_millis(1000),
        "aborted only after the timeout ({:?})",
        opened.elapsed()
    );
    // The coordinator's abort released the last stable offset: later records are readable.
    let plain = self::producer(&broker.addr, &[]);
    send(&plain, "slow", &values("after", 2));
    assert_eq!(
        read_all(&broker.addr, "slow", 1, "read_committed"),
        values("after", 2)
    );
    assert!(
        producer.commit_transaction(T).is_err(),
        "the timed-out transaction cannot commit"
    );
}
