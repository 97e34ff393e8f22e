//! The benchmark harness (`bench/harness`, `sluice-bench`) end to end against a Sluice started
//! here: a shipped OMB workload at a small scale with real librdkafka clients, its periods, its
//! aggregated latencies, the broker's resource use, the JSON result and the chart; then the
//! maximum-rate search.
//!
//! A binary of its own, not a module of `tests/it`: its assertions are on rates and latencies
//! that hold only when it does not share the two cores with the rest of the suite (cargo runs
//! test binaries one after another).

#[path = "it/kit/broker.rs"]
#[allow(dead_code)] // this binary uses only part of the kit's broker helper
mod broker;
#[path = "it/kit/raw.rs"]
#[allow(dead_code)] // the broker helper's, to see a cluster formed
mod raw;

use std::path::Path;
use std::time::Duration;

use sluice_bench::result::TestResult;
use sluice_bench::run::{run, RunOptions};
use sluice_bench::workload::Workload;

fn workload(name: &str) -> Workload {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/workloads");
    Workload::load(&dir.join(name)).unwrap()
}

fn options(broker: &broker::Broker, scale: f64) -> RunOptions {
    RunOptions {
        bootstrap: broker.addr.clone(),
        scale,
        period: Duration::from_secs(1),
        broker_pid: Some(broker.pid()),
        progress: false,
        search_step: Duration::from_millis(400),
        ..RunOptions::default()
    }
}

#[test]
fn a_scaled_workload_runs_with_real_clients_and_reports_it() {
    let broker = broker::Broker::start(&[]);
    // 50,000 msg/s for 15 minutes at 1/200: 250 msg/s for 4.5 s after a 0.3 s warm-up.
    let w = workload("1-topic-16-partitions-1kb.yaml");
    let result = run(&w, &options(&broker, 0.005)).unwrap();

    assert_eq!((result.topics, result.partitions), (1, 16));
    assert_eq!(result.target_rate, 250.0);
    assert!(!result.max_rate_search);
    // One sample a second: 4 full periods and the half at the end.
    assert_eq!(
        result.sample_seconds.len(),
        5,
        "{:?}",
        result.sample_seconds
    );
    assert_eq!(result.publish_rate.len(), 5);
    assert_eq!(result.end_to_end_latency_99pct.len(), 5);
    // The schedule holds the rate; consumers keep up; nothing fails.
    let rate = result.aggregated_publish_rate;
    assert!((rate / 250.0 - 1.0).abs() < 0.1, "publish rate {rate}");
    assert!(
        (result.aggregated_consume_rate / rate - 1.0).abs() < 0.1,
        "{}",
        result.aggregated_consume_rate
    );
    assert!((result.aggregated_publish_mbps - rate * 1024.0 / 1e6).abs() < 0.01);
    assert!(result.publish_error_rate.iter().all(|&e| e == 0.0));
    assert!(
        result.backlog.iter().all(|&b| b < 250),
        "{:?}",
        result.backlog
    );
    // Latencies: there, in order, end to end no shorter than publish at the median.
    let a = &result.aggregated;
    assert!(a.aggregated_publish_latency_50pct > 0.0);
    assert!(a.aggregated_end_to_end_latency_50pct > 0.0);
    assert!(a.aggregated_end_to_end_latency_50pct <= a.aggregated_end_to_end_latency_99pct);
    assert!(a.aggregated_end_to_end_latency_99pct <= a.aggregated_end_to_end_latency_9999pct);
    assert!(a.aggregated_end_to_end_latency_9999pct <= a.aggregated_end_to_end_latency_max);
    assert!(a.aggregated_publish_delay_latency_50pct >= 1.0);
    assert_eq!(
        result.aggregated_end_to_end_latency_quantiles["99"],
        a.aggregated_end_to_end_latency_99pct
    );
    // The broker did work and holds memory.
    let r = result
        .resources
        .as_ref()
        .expect("the broker's pid was given");
    assert_eq!(r.pid, broker.pid());
    assert!(
        r.cpu_seconds > 0.0 && r.cpu_seconds_per_gb_in > 0.0,
        "{r:?}"
    );
    assert!(r.peak_rss_bytes > 1 << 20, "{r:?}");
    assert_eq!(result.producer_config["acks"], "all");

    // The JSON has OMB's names and reads back; the chart draws both panels.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    std::fs::write(&json, result.to_json()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    for key in [
        "workload",
        "publishRate",
        "consumeRate",
        "backlog",
        "publishLatency99pct",
        "publishDelayLatency99pct",
        "endToEndLatency9999pct",
        "aggregatedEndToEndLatency99pct",
        "aggregatedPublishLatencyQuantiles",
        "aggregatedEndToEndLatencyQuantiles",
    ] {
        assert!(value.get(key).is_some(), "no {key} in the JSON");
    }
    assert_eq!(TestResult::load(&json).unwrap(), result);
    let svg = dir.path().join("run.svg");
    sluice_bench::chart::draw(
        &[("a".into(), result.clone()), ("b".into(), result.clone())],
        &svg,
    )
    .unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("End-to-end latency"));
    assert!(
        text.matches("<polyline").count() >= 6,
        "2 runs x (publish, consume, e2e)"
    );
    let table =
        sluice_bench::compare::ratio_table(&[("a".into(), result.clone()), ("b".into(), result)]);
    assert!(table.contains("(x1.00)"), "{table}");
}

/// A workload rate of 0: the search finds a rate the broker holds, well above where it starts.
#[test]
fn the_maximum_rate_search_finds_a_sustainable_rate() {
    let mut broker = broker::Broker::start(&[]);
    let mut w = workload("1-topic-16-partitions-1kb.yaml");
    w.producer_rate = 0.0;
    // Starts at 10,000 x 0.004 = 40 msg/s; measures for 3.6 s.
    let result = run(&w, &options(&broker, 0.004)).unwrap();
    assert!(result.max_rate_search);
    assert!(result.target_rate >= 320.0, "found {}", result.target_rate);
    // Seen in CI and by hand (a few runs in a hundred): nothing acknowledged at all from one
    // step of the search on (the test took 94 s), once with the broker's stderr saying "free():
    // double free detected"; whether the broker is still there says which it was.
    assert!(
        result.aggregated_publish_rate >= 0.8 * result.target_rate,
        "{} of {}: published {:?}, errors {:?}, backlog {:?}; the broker: {}",
        result.aggregated_publish_rate,
        result.target_rate,
        result.publish_rate,
        result.publish_error_rate,
        result.backlog,
        match broker.exited() {
            Some(status) => format!("ended ({status})"),
            None => "still running".into(),
        }
    );
    assert!(result.aggregated.aggregated_end_to_end_latency_99pct > 0.0);
}
