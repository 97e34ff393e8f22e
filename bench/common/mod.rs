//! What the broker benches share: starting `sluice serve`, topics, a counting librdkafka
//! producer, medians and environment knobs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

/// A numeric environment setting, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts the release `sluice serve` on a free loopback port with data in `data_dir` and the
/// extra `--set` pairs; returns it and its address. SLUICE_BENCH_CORES passes `--cores`;
/// SLUICE_BENCH_WRAP runs it under another program (scripts/zero_copy.sh: strace);
/// SLUICE_BENCH_BIN runs another build of `sluice` (an older commit's, for a before/after).
pub fn start_broker(data_dir: &Path, sets: &[&str]) -> (Child, String) {
    let (child, line) = start_broker_line(data_dir, sets);
    let addr = line
        .strip_prefix("sluice: serving on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("serving line")
        .to_string();
    (child, addr)
}

/// As [`start_broker`], returning the whole serving line (it names the admin listener too).
pub fn start_broker_line(data_dir: &Path, sets: &[&str]) -> (Child, String) {
    let wrap = std::env::var("SLUICE_BENCH_WRAP").unwrap_or_default();
    let mut words: Vec<String> = wrap.split_whitespace().map(String::from).collect();
    words.push(
        std::env::var("SLUICE_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_sluice").to_string()),
    );
    let mut command = Command::new(&words[0]);
    command
        .args(&words[1..])
        .args([
            "serve",
            "--set",
            &format!("log.dirs={}", data_dir.display()),
        ])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"]);
    for set in sets {
        command.args(["--set", set]);
    }
    if let Ok(cores) = std::env::var("SLUICE_BENCH_CORES") {
        command.args(["--cores", &cores]);
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sluice (build it with --release)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    (child, line)
}

/// SIGTERM and wait.
pub fn stop_broker(mut broker: Child, pid: i32) {
    // SAFETY: kill(2) on our own child (or the broker under its wrapper).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = broker.wait();
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap()
}

pub fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results =
        futures_lite::future::block_on(admin(addr).create_topics(&[topic], &AdminOptions::new()))
            .unwrap();
    results[0].as_ref().expect("created");
}

pub fn delete_topic(addr: &str, topic: &str) {
    let results =
        futures_lite::future::block_on(admin(addr).delete_topics(&[topic], &AdminOptions::new()))
            .unwrap();
    results[0].as_ref().expect("deleted");
}

/// A producer context that counts failed deliveries.
pub struct Counting {
    pub failed: Arc<AtomicU64>,
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

/// A producer for bulk sends: large batches and queue, plus `settings`.
pub fn bulk_producer(addr: &str, settings: &[(&str, &str)]) -> BaseProducer<Counting> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create_with_context(Counting {
            failed: Arc::new(AtomicU64::new(0)),
        })
        .unwrap()
}

/// Enqueues `record`, serving delivery reports while the producer's queue is full.
pub fn enqueue<'a, C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) where
    C: ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

/// Sends `messages` copies of `payload` round-robin over `partitions`, waits for every
/// acknowledgement, and checks that none failed.
pub fn send_all(
    producer: &BaseProducer<Counting>,
    topic: &str,
    messages: u64,
    partitions: i32,
    payload: &[u8],
) {
    for i in 0..messages {
        let partition = (i % partitions as u64) as i32;
        let record = BaseRecord::<(), [u8]>::to(topic)
            .payload(payload)
            .partition(partition);
        enqueue(producer, record);
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let failed = producer.context().failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "deliveries failed");
}

/// Writes dirty pages back and lets the machine settle before a measured phase.
pub fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_millis(200));
}

/// user + system CPU seconds of a process, all threads.
/// The serving process's CPU time (user + system): its CPU-time clock
/// (`clock_getcpuclockid`, nanoseconds), or where that is refused, `/proc/<pid>/stat` (10 ms
/// ticks: 0.037 s/GB for a 256 MiB round, too coarse for a before/after of a few percent).
pub fn process_cpu_seconds(pid: i32) -> f64 {
    if let Some(seconds) = cpu_clock_seconds(pid) {
        return seconds;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the command name (which is field 2).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn cpu_clock_seconds(pid: i32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t to the pointer we pass.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer we pass.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

/// Sends `messages` copies of `message` over `partitions` partitions of `topic` with a bulk
/// producer (acks=1) and waits for every delivery.
pub fn produce_bulk(addr: &str, topic: &str, messages: u64, partitions: i32, message: &[u8]) {
    let producer = bulk_producer(addr, &[("acks", "1")]);
    send_all(&producer, topic, messages, partitions, message);
}

/// Reads `messages` records of `message_bytes` each from the start of `partitions` partitions
/// of `topic` with an rdkafka consumer (large fetches, `settings` on top); the seconds it took.
pub fn consume_all(
    addr: &str,
    settings: &[(&str, &str)],
    topic: &str,
    partitions: i32,
    messages: u64,
    message_bytes: usize,
) -> f64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "4194304");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let started = std::time::Instant::now();
    let mut got = 0u64;
    while got < messages {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            assert_eq!(message.payload().map(<[u8]>::len), Some(message_bytes));
            got += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "fetch too slow"
        );
    }
    started.elapsed().as_secs_f64()
}

/// The text of `GET /metrics` (its body), and the seconds the answer took.
pub fn get_metrics(admin: &str) -> (String, f64) {
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(admin).expect("admin listener");
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let took = started.elapsed().as_secs_f64();
    assert!(answer.starts_with("HTTP/1.1 200"), "a scrape failed");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (body.to_string(), took)
}
