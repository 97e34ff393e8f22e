//! Idempotent producer throughput as a ratio to a plain one, against a running `sluice serve`:
//! each round sends SLUICE_BENCH_MESSAGES (default 500,000) 1 KiB messages over 16 partitions
//! with a librdkafka producer, once with `enable.idempotence=true` and once without, in
//! alternating order. Both use acks=all and at most 5 requests in flight (what idempotence
//! requires), so the ratio isolates the broker's sequence checks and state upkeep (and the
//! client's own bookkeeping).
//!
//! Each producer's first message is acknowledged before the clock starts (an idempotent one
//! first fetches its producer id); that start-up time is printed beside the rate.
//!
//! `cargo build --release && cargo bench --bench producers` (SLUICE_BENCH_ROUNDS, default 5).
//! Output: a line per round, then the median ratio (idempotent msgs/s ÷ plain msgs/s).

mod common;

use std::time::{Duration, Instant};

use common::{bulk_producer, create_topic, delete_topic, env_or, send_all};
use rdkafka::producer::{BaseRecord, Producer};

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 5) as usize;
    let messages = env_or("SLUICE_BENCH_MESSAGES", 500_000);
    let temp = tempfile::tempdir().expect("temp dir");
    let (broker, addr) = common::start_broker(&temp.path().join("data"), &[]);
    let pid = broker.id() as i32;

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let rate = |idempotent: bool| {
            let topic = format!("bench-{round}-{idempotent}");
            create_topic(&addr, &topic, PARTITIONS);
            let rate = produce(&addr, &topic, messages, idempotent);
            delete_topic(&addr, &topic);
            rate
        };
        // Alternate which goes first, so that neither always meets a warmer or cooler machine.
        let (plain, idempotent) = if round % 2 == 0 {
            let p = rate(false);
            (p, rate(true))
        } else {
            let i = rate(true);
            (rate(false), i)
        };
        let ratio = idempotent.0 / plain.0;
        println!(
            "round {round}: plain {:.0} msgs/s (first ack {:.3} s), idempotent {:.0} msgs/s \
             (first ack {:.3} s), ratio {ratio:.3}",
            plain.0, plain.1, idempotent.0, idempotent.1
        );
        ratios.push(ratio);
    }
    common::stop_broker(broker, pid);
    println!("idempotent_ratio_median {:.3}", common::median(&mut ratios));
}

/// Messages per second from the first send to the last acknowledgement, and the seconds a new
/// producer took to get its first message acknowledged.
fn produce(addr: &str, topic: &str, messages: u64, idempotent: bool) -> (f64, f64) {
    let idempotence = idempotent.to_string();
    let producer = bulk_producer(
        addr,
        &[
            ("acks", "all"),
            ("max.in.flight", "5"),
            ("enable.idempotence", &idempotence),
        ],
    );
    let payload = vec![b'x'; MESSAGE_BYTES];
    // One message first, acknowledged before the clock starts: an idempotent producer gets its
    // producer id before it sends anything, a one-off cost at start that is not throughput.
    let warm = Instant::now();
    producer
        .send(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(&payload[..])
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let first_ack = warm.elapsed().as_secs_f64();
    let started = Instant::now();
    send_all(&producer, topic, messages, PARTITIONS, &payload);
    (messages as f64 / started.elapsed().as_secs_f64(), first_ack)
}
