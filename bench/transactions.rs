//! Transactional producer throughput against a running `sluice serve`: each round sends
//! SLUICE_BENCH_MESSAGES (default 100,000) 1 KiB messages over 16 partitions with librdkafka,
//!
//! - `idempotent`: an idempotent producer (acks=all), sending continuously: the baseline;
//! - `flushed-N`: the same producer flushing every N messages (what a commit waits for, without
//!   the coordinator): the client-side cost of stopping every N messages;
//! - `txn-N`: a transactional producer committing every N messages (begin, N sends, commit:
//!   AddPartitionsToTxn, EndTxn and a marker per partition written by the coordinator),
//!
//! for N = 100 and 1,000, in an order that rotates between rounds. Printed: messages/s of each,
//! transactions/s, and the ratios txn-N / idempotent and txn-N / flushed-N (the coordinator's
//! own share).
//!
//! `cargo build --release && cargo bench --bench transactions` (SLUICE_BENCH_ROUNDS, default 3;
//! SLUICE_BENCH_LINGER_MS, default 5, the producers' linger.ms).

mod common;

use std::time::{Duration, Instant};

use common::{bulk_producer, create_topic, delete_topic, env_or, send_all, Counting};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;
const SIZES: [u64; 2] = [100, 1000];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Idempotent,
    Flushed(u64),
    Txn(u64),
}

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 3) as usize;
    let messages = env_or("SLUICE_BENCH_MESSAGES", 100_000);
    let temp = tempfile::tempdir().expect("temp dir");
    let (broker, addr) = common::start_broker(&temp.path().join("data"), &[]);
    let pid = broker.id() as i32;

    let mut modes = vec![Mode::Idempotent];
    for n in SIZES {
        modes.push(Mode::Flushed(n));
        modes.push(Mode::Txn(n));
    }
    let mut to_idempotent: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut to_flushed: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut txn_rates: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    for round in 0..rounds {
        let mut order = modes.clone();
        order.rotate_left(round % modes.len());
        let mut rates = Vec::new();
        for (i, mode) in order.iter().enumerate() {
            let topic = format!("bench-{round}-{i}");
            create_topic(&addr, &topic, PARTITIONS);
            let rate = run(&addr, &topic, messages, *mode, round);
            delete_topic(&addr, &topic);
            rates.push((*mode, rate));
        }
        let rate_of = |wanted: &dyn Fn(Mode) -> bool| {
            rates
                .iter()
                .find(|(m, _)| wanted(*m))
                .map(|(_, r)| *r)
                .expect("measured")
        };
        let idempotent = rate_of(&|m| matches!(m, Mode::Idempotent));
        let mut line = format!("round {round}: idempotent {idempotent:.0} msgs/s");
        for (k, n) in SIZES.iter().enumerate() {
            let flushed = rate_of(&|m| matches!(m, Mode::Flushed(x) if x == *n));
            let txn = rate_of(&|m| matches!(m, Mode::Txn(x) if x == *n));
            line += &format!(
                ", flushed-{n} {flushed:.0}, txn-{n} {txn:.0} msgs/s ({:.1} txn/s, {:.3} of \
                 idempotent, {:.3} of flushed)",
                txn / *n as f64,
                txn / idempotent,
                txn / flushed
            );
            to_idempotent[k].push(txn / idempotent);
            to_flushed[k].push(txn / flushed);
            txn_rates[k].push(txn);
        }
        println!("{line}");
    }
    common::stop_broker(broker, pid);
    for (k, n) in SIZES.iter().enumerate() {
        let rate = common::median(&mut txn_rates[k]);
        println!(
            "txn_{n}_median {rate:.0} msgs/s {:.1} txn/s, ratio to idempotent {:.3}, ratio to \
             flushed {:.3}",
            rate / *n as f64,
            common::median(&mut to_idempotent[k]),
            common::median(&mut to_flushed[k])
        );
    }
}

/// Messages per second from the first send to the last acknowledgement (or commit).
fn run(addr: &str, topic: &str, messages: u64, mode: Mode, round: usize) -> f64 {
    let payload = vec![b'x'; MESSAGE_BYTES];
    let linger = env_or("SLUICE_BENCH_LINGER_MS", 5).to_string();
    let base = [
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("linger.ms", linger.as_str()),
    ];
    match mode {
        Mode::Idempotent => {
            let producer = bulk_producer(addr, &base);
            warm_up(&producer, topic, &payload);
            let started = Instant::now();
            send_all(&producer, topic, messages, PARTITIONS, &payload);
            messages as f64 / started.elapsed().as_secs_f64()
        }
        Mode::Flushed(n) => {
            let producer = bulk_producer(addr, &base);
            warm_up(&producer, topic, &payload);
            let started = Instant::now();
            for _ in 0..messages / n {
                send_all(&producer, topic, n, PARTITIONS, &payload);
            }
            messages as f64 / started.elapsed().as_secs_f64()
        }
        Mode::Txn(n) => {
            let id = format!("bench-{round}-{n}");
            let mut settings = base.to_vec();
            settings.push(("transactional.id", &id));
            let producer = bulk_producer(addr, &settings);
            producer
                .init_transactions(Duration::from_secs(30))
                .expect("init_transactions");
            let started = Instant::now();
            for _ in 0..messages / n {
                producer.begin_transaction().expect("begin");
                send_all(&producer, topic, n, PARTITIONS, &payload);
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .expect("commit");
            }
            messages as f64 / started.elapsed().as_secs_f64()
        }
    }
}

/// One message acknowledged before the clock starts (the producer id fetch is not throughput).
fn warm_up(producer: &BaseProducer<Counting>, topic: &str, payload: &[u8]) {
    producer
        .send(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(payload)
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
}
