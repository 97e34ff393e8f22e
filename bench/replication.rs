//! What replication costs and how fast a partition fails over, on this machine, in one run:
//!
//! 1. Produce throughput, latency and broker CPU: SLUICE_BENCH_MESSAGES (default 200,000) 1 KiB
//!    messages over 16 partitions with a librdkafka producer, against a single node with
//!    replication factor 1 and acks=1, and against a three-node cluster (three `sluice serve`
//!    processes on loopback) with replication factor 3, min.insync.replicas=2 and acks=all, in
//!    alternating order, SLUICE_BENCH_ROUNDS rounds (default 3). Latency is from enqueue to
//!    acknowledgement of every message (at the producer's full rate, so it includes queueing);
//!    CPU is the brokers' user+system seconds over the run (/proc), summed over the three nodes.
//!    Each round's topics are deleted after it, so that every round writes into memory in the
//!    same state (on a VM, first writes into memory the guest never touched cost about 3x more
//!    CPU in the kernel: without this, CPU per GB rose 3.5x from the third round on).
//!    Then the same rounds at one offered rate for both (SLUICE_BENCH_RATE messages/s, default
//!    0.6x the slower side's full rate): CPU per GB at equal load. At full rate on a small
//!    machine the producer shares the cores with the brokers, so the side whose brokers take
//!    more CPU gets smaller client batches (linger-bound) and more requests per GB; at one
//!    offered rate both get the same batches.
//! 2. Leader failover: an idempotent acks=all producer writes a message every 2 ms to an RF=3
//!    partition; its leader is killed with SIGKILL (or stopped with SIGTERM, a controlled
//!    shutdown), and the producer writes on: the longest time without an acknowledgement from
//!    the signal until a message sent after the old leader's process exited is acknowledged.
//!    The node is restarted and back in the ISR before the next round (SLUICE_BENCH_FAILOVERS,
//!    default 5, of each).
//!
//! `cargo build --release && cargo bench --bench replication`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{env_or, median};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// One `sluice serve` of the bench, restartable on its ports and data.
struct Node {
    sets: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn start(sets: Vec<String>) -> Node {
        let mut node = Node { sets, child: None };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let bin = std::env::var("SLUICE_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_sluice").into());
        let mut command = Command::new(bin);
        command.arg("serve");
        for set in &self.sets {
            command.args(["--set", set]);
        }
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_BENCH_LOGS").unwrap_or("error".into()),
            )
            .stdout(Stdio::null())
            .stderr(if std::env::var("SLUICE_BENCH_LOGS").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start sluice (build it with --release)");
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends `signal`, without waiting: clients go on sending while the node stops, as they do
    /// in a rolling restart (a producer held idle until the process is gone meets a closed
    /// connection instead of an answer naming the new leader).
    fn signal(&mut self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Whether the signalled process has exited (reaped then).
    fn exited(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        match child.try_wait() {
            Ok(Some(_)) => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    /// Waits for the signalled process to exit.
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// User+system CPU seconds so far (/proc/PID/stat).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no memory effects.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            self.reap();
        }
    }
}

/// Starts `n` nodes (one: a single node; more: a cluster of voters), waits until they serve.
fn start(n: usize, dir: &std::path::Path, extra: &[&str]) -> (Vec<Node>, Vec<String>) {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let voters: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
        .collect();
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for (i, &(client, controller)) in ports.iter().enumerate() {
        let mut sets = vec![
            format!("node.id={}", i + 1),
            format!("log.dirs={}", dir.join(format!("node{}", i + 1)).display()),
        ];
        if n > 1 {
            sets.push(format!("controller.quorum.voters={}", voters.join(",")));
            sets.push(format!(
                "listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
            ));
        } else {
            sets.push(format!("listeners=PLAINTEXT://127.0.0.1:{client}"));
        }
        sets.extend(extra.iter().map(|s| s.to_string()));
        nodes.push(Node::start(sets));
        addrs.push(format!("127.0.0.1:{client}"));
    }
    (nodes, addrs)
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap()
}

/// Creates `topic`, retrying while the cluster is still forming.
fn create_topic(addr: &str, topic: &str, partitions: i32, factor: i32, configs: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(factor));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let done =
            futures_lite::future::block_on(admin(addr).create_topics(&[new], &AdminOptions::new()));
        if matches!(&done, Ok(results) if results[0].is_ok()) {
            return;
        }
        assert!(Instant::now() < deadline, "cannot create {topic}: {done:?}");
        if std::env::var("SLUICE_BENCH_LOGS").is_ok() {
            eprintln!("create {topic}: {done:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes `topic`, so that its page cache goes back to the free memory the next round writes
/// into.
fn delete_topic(addr: &str, topic: &str, data_dirs: &[std::path::PathBuf]) {
    let deleted =
        futures_lite::future::block_on(admin(addr).delete_topics(&[topic], &AdminOptions::new()));
    assert!(
        matches!(&deleted, Ok(results) if results[0].is_ok()),
        "cannot delete {topic}: {deleted:?}"
    );
    // The partitions' files are removed in the background: the next round starts once they
    // are gone (and the memory their pages held is free).
    let prefix = format!("{topic}-");
    let left = || {
        data_dirs.iter().any(|dir| {
            let mut entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
            entries.any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while left() {
        assert!(Instant::now() < deadline, "{topic}'s files are still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader and ISR of `topic`'s `partition` as `addr`'s metadata says.
fn leader_and_isr(addr: &str, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(2))
        .ok()?;
    let p = metadata
        .topics()
        .first()?
        .partitions()
        .get(partition as usize)?;
    let mut isr = p.isr().to_vec();
    isr.sort();
    Some((p.leader(), isr))
}

/// Waits until `addr` lists `brokers` brokers (a cluster that formed).
fn await_brokers(addr: &str, brokers: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .create()
            .unwrap();
        let listed = consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .map_or(0, |m| m.brokers().len());
        if listed == brokers {
            return;
        }
        assert!(Instant::now() < deadline, "{addr}: {listed} brokers");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn await_isr(addrs: &[String], topic: &str, partitions: i32, isr: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in 0..partitions {
        while !addrs
            .iter()
            .all(|a| leader_and_isr(a, topic, p).is_some_and(|(l, got)| l >= 0 && got == isr))
        {
            assert!(Instant::now() < deadline, "{topic}-{p} never ISR {isr:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A producer context recording each message's latency (µs) and counting failures.
struct Timed {
    latencies: Arc<Mutex<Vec<u32>>>,
    failed: Arc<AtomicU64>,
    acked_after: AcksAfter,
}

/// From when (the signal), and each acknowledgement since: when the message was sent, when
/// it was acknowledged.
type AcksAfter = Arc<Mutex<Option<(Instant, Vec<(Instant, Instant)>)>>>;

impl ClientContext for Timed {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!("{:.3} librdkafka {fac}: {message}", now.as_secs_f64());
    }
}

impl ProducerContext for Timed {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let micros = now.duration_since(*sent).as_micros().min(u32::MAX as u128) as u32;
        self.latencies.lock().unwrap().push(micros);
        let mut after = self.acked_after.lock().unwrap();
        if let Some((signal, acks)) = after.as_mut() {
            if *sent > *signal {
                acks.push((*sent, now));
            }
        }
    }
}

fn producer(addr: &str, settings: &[(&str, &str)]) -> BaseProducer<Timed> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    // librdkafka's debug log, for the failover producer only (the bulk ones would drown in it).
    let failover = settings.iter().any(|(k, _)| *k == "enable.idempotence");
    if let Some(debug) = std::env::var("SLUICE_BENCH_CLIENT_DEBUG")
        .ok()
        .filter(|_| failover)
    {
        config.set("debug", debug);
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    config
        .create_with_context(Timed {
            latencies: Arc::default(),
            failed: Arc::default(),
            acked_after: Arc::default(),
        })
        .unwrap()
}

/// Waits until every message `producer` holds is answered. Not `flush`: with librdkafka's debug
/// log on, its log events count as queued, and `flush` reports a time-out at once.
fn drain(producer: &BaseProducer<Timed>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "messages still unanswered");
        producer.poll(Duration::from_millis(10));
    }
}

struct Run {
    rate: f64,
    cpu_per_gb: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

/// Sends `messages` to `topic` as fast as the producer goes, or at `rate` messages/s; the rate,
/// CPU per GB over `nodes` and latency percentiles (ms).
fn produce(
    addr: &str,
    nodes: &[Node],
    topic: &str,
    messages: u64,
    acks: &str,
    rate: Option<f64>,
) -> Run {
    let producer = producer(addr, &[("acks", acks)]);
    let payload = vec![b'x'; MESSAGE_BYTES];
    let cpu = |nodes: &[Node]| nodes.iter().map(Node::cpu_seconds).sum::<f64>();
    let cpu_before = cpu(nodes);
    let started = Instant::now();
    for i in 0..messages {
        if let Some(rate) = rate.filter(|_| i % 256 == 0) {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            while Instant::now() < due {
                producer.poll(Duration::from_micros(200));
            }
        }
        let record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(&payload[..])
            .key(&b""[..])
            .partition((i % PARTITIONS as u64) as i32);
        common::enqueue::<_, [u8], [u8]>(&producer, record);
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = cpu(nodes) - cpu_before;
    assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
    let mut latencies = producer.context().latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let gb = (messages as f64 * MESSAGE_BYTES as f64) / 1e9;
    Run {
        rate: messages as f64 / elapsed,
        cpu_per_gb: cpu_used / gb,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
    }
}

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 3) as usize;
    let messages = env_or("SLUICE_BENCH_MESSAGES", 200_000);
    let failovers = env_or("SLUICE_BENCH_FAILOVERS", 5) as usize;
    let temp = tempfile::tempdir().unwrap();
    let (single, single_addrs) = start(1, &temp.path().join("single"), &[]);
    let extra: Vec<String> = std::env::var("SLUICE_BENCH_SET")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (mut cluster, addrs) = start(3, &temp.path().join("cluster"), &extra);
    let bootstrap = addrs.join(",");
    let node_dirs = |under: &str, n: usize| -> Vec<std::path::PathBuf> {
        (1..=n)
            .map(|i| temp.path().join(under).join(format!("node{i}")))
            .collect()
    };
    let (single_dirs, cluster_dirs) = (node_dirs("single", 1), node_dirs("cluster", 3));
    for addr in &addrs {
        await_brokers(addr, 3);
    }

    let phase = |name: &str, rate: Option<f64>| {
        let mut ratios = Vec::new();
        let mut cpu_ratios = Vec::new();
        let mut rf1_rates = Vec::new();
        let mut rf3_rates = Vec::new();
        for round in 0..rounds {
            let one = || {
                let topic = format!("rf1-{name}-{round}");
                create_topic(&single_addrs[0], &topic, PARTITIONS, 1, &[]);
                let run = produce(&single_addrs[0], &single, &topic, messages, "1", rate);
                delete_topic(&single_addrs[0], &topic, &single_dirs);
                run
            };
            let three = || {
                let topic = format!("rf3-{name}-{round}");
                create_topic(
                    &bootstrap,
                    &topic,
                    PARTITIONS,
                    3,
                    &[("min.insync.replicas", "2")],
                );
                await_isr(&addrs, &topic, PARTITIONS, &[1, 2, 3]);
                let run = produce(&bootstrap, &cluster, &topic, messages, "all", rate);
                delete_topic(&bootstrap, &topic, &cluster_dirs);
                run
            };
            let (rf1, rf3) = if round % 2 == 0 {
                let a = one();
                (a, three())
            } else {
                let b = three();
                (one(), b)
            };
            println!(
                "{name} round {round}: rf1 acks=1 {:.0} msgs/s, {:.2} cpu-s/GB, p50/p99/p99.9 {:.1}/{:.1}/{:.1} ms; \
                 rf3 acks=all {:.0} msgs/s, {:.2} cpu-s/GB (3 nodes), p50/p99/p99.9 {:.1}/{:.1}/{:.1} ms",
                rf1.rate, rf1.cpu_per_gb, rf1.p50, rf1.p99, rf1.p999,
                rf3.rate, rf3.cpu_per_gb, rf3.p50, rf3.p99, rf3.p999
            );
            ratios.push(rf3.rate / rf1.rate);
            cpu_ratios.push(rf3.cpu_per_gb / rf1.cpu_per_gb);
            rf1_rates.push(rf1.rate);
            rf3_rates.push(rf3.rate);
        }
        println!(
            "{name} rf3_over_rf1 throughput_median {:.3} cpu_per_gb_median {:.2}",
            median(&mut ratios),
            median(&mut cpu_ratios)
        );
        // The slower side's median rate.
        median(&mut rf1_rates).min(median(&mut rf3_rates))
    };
    // Both sides must sustain the offered rate: below the slower side's full rate.
    let slower = phase("full-rate", None);
    let rate = match env_or("SLUICE_BENCH_RATE", 0) {
        0 => (0.6 * slower).round(),
        rate => rate as f64,
    };
    println!("equal-rate offered {rate:.0} msgs/s to each");
    phase("equal-rate", Some(rate));
    drop(single);
    if failovers == 0 {
        return;
    }

    create_topic(
        &bootstrap,
        "failover",
        1,
        3,
        &[("min.insync.replicas", "2")],
    );
    await_isr(&addrs, "failover", 1, &[1, 2, 3]);
    for (name, signal) in [("kill -9", libc::SIGKILL), ("SIGTERM", libc::SIGTERM)] {
        let mut times = Vec::new();
        for round in 0..failovers {
            let (leader, _) = leader_and_isr(&bootstrap, "failover", 0).unwrap();
            let leader = leader as usize;
            let producer = producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "0"),
                    ("message.timeout.ms", "60000"),
                ],
            );
            let payload = [b'x'; 100];
            let send = |producer: &BaseProducer<Timed>| {
                let record = BaseRecord::with_opaque_to("failover", Box::new(Instant::now()))
                    .payload(&payload[..])
                    .key(&b""[..])
                    .partition(0);
                producer
                    .send::<[u8], [u8]>(record)
                    .map_err(|(e, _)| e)
                    .unwrap();
                producer.poll(Duration::from_millis(2));
            };
            // Warm: the producer has its id and its first messages acknowledged.
            for _ in 0..200 {
                send(&producer);
            }
            drain(&producer, Duration::from_secs(30));
            let signalled = Instant::now();
            *producer.context().acked_after.lock().unwrap() = Some((signalled, Vec::new()));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!("{:.3} SIGNAL {name} to {leader}", now.as_secs_f64());
            cluster[leader - 1].signal(signal);
            // The producer sends on while the node stops, until a message sent after the old
            // leader's process exited is acknowledged (by the new leader).
            let deadline = signalled + Duration::from_secs(60);
            let mut exited = None;
            loop {
                send(&producer);
                if exited.is_none() && cluster[leader - 1].exited() {
                    exited = Some(Instant::now());
                }
                let acks = producer.context().acked_after.lock().unwrap();
                let after_exit = |(sent, _): &(Instant, Instant)| exited.is_some_and(|e| *sent > e);
                if acks
                    .as_ref()
                    .is_some_and(|(_, acks)| acks.iter().any(after_exit))
                {
                    break;
                }
                drop(acks);
                assert!(Instant::now() < deadline, "no acknowledgement after {name}");
            }
            // The longest time without an acknowledgement, from the signal on.
            let acks = producer.context().acked_after.lock().unwrap().take();
            let mut at: Vec<Instant> = acks
                .map(|(_, a)| a)
                .unwrap_or_default()
                .iter()
                .map(|a| a.1)
                .collect();
            at.sort();
            let mut last = signalled;
            let mut took = 0.0f64;
            for ack in at {
                took = took.max(ack.duration_since(last).as_secs_f64());
                last = ack;
            }
            println!("failover {name} round {round}: leader {leader}, longest without an acknowledgement {took:.3} s");
            times.push(took);
            drain(&producer, Duration::from_secs(60));
            assert_eq!(producer.context().failed.load(Ordering::Relaxed), 0);
            cluster[leader - 1].reap();
            cluster[leader - 1].spawn();
            await_isr(&addrs, "failover", 1, &[1, 2, 3]);
        }
        let key = if signal == libc::SIGKILL {
            "kill9"
        } else {
            "sigterm"
        };
        println!("failover_{key}_median_s {:.3}", median(&mut times));
    }
    let _ = &mut cluster;
}
