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

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 5) as usize;
    let messages = env_or("SLUICE_BENCH_MESSAGES", 500_000);
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--set",
            &format!("log.dirs={}", data_dir.display()),
        ])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sluice (build it with --release)");
    let mut lines = BufReader::new(broker.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let addr = line
        .strip_prefix("sluice: serving on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("serving line")
        .to_string();
    std::thread::spawn(move || for _ in lines {});

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let rate = |idempotent: bool| {
            let topic = format!("bench-{round}-{idempotent}");
            create_topic(&addr, &topic);
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
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(broker.id() as i32, libc::SIGTERM) };
    let _ = broker.wait();
    ratios.sort_by(f64::total_cmp);
    println!("idempotent_ratio_median {:.3}", ratios[ratios.len() / 2]);
}

fn admin(addr: &str) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap()
}

fn create_topic(addr: &str, topic: &str) {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let topic = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let results =
        futures_lite::future::block_on(admin(addr).create_topics(&[topic], &AdminOptions::new()))
            .unwrap();
    results[0].as_ref().expect("created");
}

fn delete_topic(addr: &str, topic: &str) {
    use rdkafka::admin::AdminOptions;
    let results =
        futures_lite::future::block_on(admin(addr).delete_topics(&[topic], &AdminOptions::new()))
            .unwrap();
    results[0].as_ref().expect("deleted");
}

struct Counting {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Messages per second from the first send to the last acknowledgement, and the seconds a new
/// producer took to get its first message acknowledged.
fn produce(addr: &str, topic: &str, messages: u64, idempotent: bool) -> (f64, f64) {
    let failed = Arc::new(AtomicU64::new(0));
    let producer: BaseProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("max.in.flight", "5")
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting {
            failed: failed.clone(),
        })
        .unwrap();
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
    for i in 0..messages {
        let partition = (i % PARTITIONS as u64) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&payload[..])
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "deliveries failed");
    (messages as f64 / started.elapsed().as_secs_f64(), first_ack)
}
