//! Metadata change latency against a running `sluice serve` (a quorum of one): CreateTopics of
//! one one-partition topic at a time through one admin client, SLUICE_BENCH_CHANGES (default 50)
//! per round, the median milliseconds per change; beside it, in the same round, the floor: one
//! atomic replace of a file the size of the broker's `topics.toml` (write, fsync, rename, fsync of
//! the directory: what a change cost the broker before the metadata quorum), on the same disk.
//!
//! `cargo build --release && cargo bench --bench metadata` (SLUICE_BENCH_ROUNDS, default 5;
//! SLUICE_BENCH_BIN runs another build). Output: a line per round, then the median ratio.

mod common;

use std::io::Write;
use std::time::Instant;

use common::{env_or, median};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

fn main() {
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 5) as usize;
    let changes = env_or("SLUICE_BENCH_CHANGES", 50) as usize;
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let (broker, addr) = common::start_broker(&data, &[]);
    let pid = broker.id() as i32;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .create()
        .expect("admin client");
    create(&admin, "warm-up");

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut took = Vec::new();
        for i in 0..changes {
            let started = Instant::now();
            create(&admin, &format!("t-{round}-{i}"));
            took.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let change_ms = median(&mut took);
        let image = data.join("__cluster_metadata").join("topics.toml");
        let size = std::fs::metadata(&image).map_or(4096, |m| m.len() as usize);
        let floor_ms = floor(temp.path(), size, changes);
        let ratio = change_ms / floor_ms;
        println!(
            "round {round}: a change {change_ms:.2} ms (median of {changes}), an atomic replace of \
             {size} bytes {floor_ms:.2} ms, ratio {ratio:.2}"
        );
        ratios.push(ratio);
    }
    println!("change_ratio_median {:.2}", median(&mut ratios));
    common::stop_broker(broker, pid);
}

fn create(admin: &AdminClient<DefaultClientContext>, name: &str) {
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    let results =
        futures_lite::future::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
            .expect("create_topics");
    results[0].as_ref().expect("created");
}

/// The median milliseconds of `times` atomic replaces of a `size`-byte file under `dir`.
fn floor(dir: &std::path::Path, size: usize, times: usize) -> f64 {
    let body = vec![b'x'; size];
    let target = dir.join("floor.toml");
    let temporary = dir.join("floor.toml.tmp");
    let mut took = Vec::new();
    for _ in 0..times {
        let started = Instant::now();
        let mut file = std::fs::File::create(&temporary).expect("create");
        file.write_all(&body).expect("write");
        file.sync_all().expect("fsync");
        std::fs::rename(&temporary, &target).expect("rename");
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("fsync the directory");
        took.push(started.elapsed().as_secs_f64() * 1e3);
    }
    median(&mut took)
}
