//! What the metrics cost (issue 21), measured against the same broker with them off:
//! - produce: two `sluice serve` processes, one with `metrics.enabled=false`, take the same
//!   1 KiB messages on 16 partitions from an rdkafka producer (acks=1, linger.ms=5), in turn
//!   (which goes first alternates by round): messages per second and the broker's CPU per GB,
//!   each as an on/off ratio per round, then the medians;
//! - scrape: `GET /metrics` of a broker holding a 10,000-partition topic, with the series per
//!   partition and without (`metrics.partition.series=false`): the median time of 20 scrapes
//!   and the size of the text.
//!
//! `cargo bench --bench metrics` (SLUICE_BENCH_MB per round and broker, default 128;
//! SLUICE_BENCH_ROUNDS, default 6; SLUICE_BENCH_WIDE partitions, default 10000).

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Instant;

use common::{create_topic, delete_topic, env_or, median, process_cpu_seconds, settle};

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;

/// A broker started here: the process, its Kafka address and its admin listener.
struct Broker {
    child: Child,
    addr: String,
    admin: String,
}

fn start(dir: &Path, sets: &[&str]) -> Broker {
    let mut all = vec!["admin.listener=127.0.0.1:0"];
    all.extend_from_slice(sets);
    let (child, line) = common::start_broker_line(dir, &all);
    let addr = line
        .strip_prefix("sluice: serving on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("serving line")
        .to_string();
    let admin = line
        .rsplit_once("admin on http://")
        .map(|(_, a)| a.trim().to_string())
        .expect("the admin listener in the serving line");
    Broker { child, addr, admin }
}

fn stop(broker: Broker) {
    let pid = broker.child.id() as i32;
    common::stop_broker(broker.child, pid);
}

/// One round of produce to `broker`: (messages per second, broker CPU seconds per GB).
fn produce_round(broker: &Broker, topic: &str, messages: u64) -> (f64, f64) {
    create_topic(&broker.addr, topic, PARTITIONS);
    settle();
    let pid = broker.child.id() as i32;
    let cpu = process_cpu_seconds(pid);
    let started = Instant::now();
    common::produce_bulk(
        &broker.addr,
        topic,
        messages,
        PARTITIONS,
        &[b'x'; MESSAGE_BYTES],
    );
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds(pid) - cpu;
    delete_topic(&broker.addr, topic);
    let gb = (messages * MESSAGE_BYTES as u64) as f64 / 1e9;
    (messages as f64 / wall, cpu / gb)
}

/// `GET /metrics`: the seconds it took and the bytes of text.
fn scrape(admin: &str) -> (f64, usize) {
    let (text, took) = common::get_metrics(admin);
    (took, text.len())
}

fn main() {
    let megabytes = env_or("SLUICE_BENCH_MB", 128);
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 6) as usize;
    let wide = env_or("SLUICE_BENCH_WIDE", 10_000) as i32;
    let messages = megabytes * 1024 * 1024 / MESSAGE_BYTES as u64;
    // Under target/: a scratch directory of its own, on the disk the build uses.
    let temp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let on = start(&temp.path().join("on"), &[]);
    let off = start(&temp.path().join("off"), &["metrics.enabled=false"]);
    println!("messages_per_round {messages}");
    let (mut rate_ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let topic = format!("bench-{round}");
        let (first, second) = if round % 2 == 0 {
            (&on, &off)
        } else {
            (&off, &on)
        };
        let a = produce_round(first, &topic, messages);
        let b = produce_round(second, &topic, messages);
        let ((on_rate, on_cpu), (off_rate, off_cpu)) = if round % 2 == 0 { (a, b) } else { (b, a) };
        println!(
            "round {round}: metrics on {on_rate:.0} msgs/s {on_cpu:.3} cpu s/GB; off \
             {off_rate:.0} msgs/s {off_cpu:.3} cpu s/GB; rate on/off {:.3}, cpu on/off {:.3}",
            on_rate / off_rate,
            on_cpu / off_cpu
        );
        rate_ratios.push(on_rate / off_rate);
        cpu_ratios.push(on_cpu / off_cpu);
    }
    println!("rate_ratio_median {:.3}", median(&mut rate_ratios));
    println!("cpu_ratio_median {:.3}", median(&mut cpu_ratios));
    stop(off);

    // Scrapes of a wide topic, with and without the series per partition.
    let quiet = start(
        &temp.path().join("quiet"),
        &["metrics.partition.series=false"],
    );
    for (label, broker) in [("per-partition series", &on), ("sums only", &quiet)] {
        let started = Instant::now();
        create_topic(&broker.addr, "wide", wide);
        // The partitions open as the image reaches each shard: wait until a scrape counts them.
        loop {
            let count = partition_count(&broker.admin);
            if count >= wide as u64 || started.elapsed().as_secs() > 300 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let (took, size) = scrape(&broker.admin);
            times.push(took * 1000.0);
            bytes = size;
        }
        println!(
            "scrape with {wide} partitions, {label}: median {:.1} ms, {} KiB of text",
            median(&mut times),
            bytes / 1024
        );
    }
    stop(quiet);
    stop(on);
}

/// The partitions the node holds, as its scrape sums them over the shards.
fn partition_count(admin: &str) -> u64 {
    common::get_metrics(admin)
        .0
        .lines()
        .filter_map(|l| l.strip_prefix("kafka_server_replicamanager_partitioncount{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}
