//! The admin listener (issue 21, first steps): `/v1/health`, `/v1/ready` and `/metrics` over
//! plain HTTP, the metrics parsed with a Prometheus text parser and checked to move as a real
//! client produces and consumes; requests the listener does not serve get HTTP errors and the
//! broker goes on serving Kafka clients. `/v1/cluster` and `/v1/partitions` agree with what
//! Metadata and a consumer say.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use rdkafka::types::RDKafkaErrorCode;

use crate::kit::broker::{cluster_mode, Broker};
use crate::kit::client::{consume, create_topic, produce, producer, Sent};

/// Sends `request` (a whole HTTP request) to `addr`: the status code and the body.
pub(crate) fn http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n"),
    )
}

/// A scrape: each sample's name, labels and value.
pub(crate) fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
}

/// The value of `name` where its labels include `labels` (summed over the others), if any.
pub(crate) fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[test]
fn metrics_health_and_readiness_over_the_admin_listener() {
    let broker = Broker::start(&[]);
    let admin = broker
        .admin
        .clone()
        .expect("the serving line names the admin listener");
    let (status, body) = get(&admin, "/v1/health");
    assert_eq!((status, body.contains("live")), (200, true), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&admin, "/v1/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    create_topic(&broker.addr, "metered", 1, &[]);
    let before = scrape(&admin);
    let metadata = |s: &prometheus_parse::Scrape| {
        let requests = "kafka_network_requestmetrics_requests_total";
        value(s, requests, &[("request", "Metadata")]).unwrap_or(0.0)
    };
    let writer = producer(&broker.addr, &[("acks", "all")]);
    let records: Vec<Sent> = (0..20).map(|i| Sent::new("k", &format!("v{i}"))).collect();
    produce(&writer, "metered", Some(0), &records).expect("produced");
    let read = consume(&broker.addr, "metered", 0, rdkafka::Offset::Beginning, 20);
    assert_eq!(read.len(), 20);
    let after = scrape(&admin);
    // The clients bootstrap through this node: its Metadata count moved.
    assert!(
        metadata(&after) > metadata(&before),
        "Metadata requests did not move"
    );
    let partitions = value(&after, "kafka_server_replicamanager_partitioncount", &[]);
    assert!(partitions.unwrap_or(0.0) >= 1.0, "{partitions:?}");
    assert_eq!(
        value(
            &after,
            "kafka_server_socketservermetrics_connection_count",
            &[]
        )
        .map(|v| v >= 1.0),
        Some(true)
    );
    let latency = after
        .samples
        .iter()
        .find(|s| s.metric == "kafka_network_requestmetrics_totaltime_seconds")
        .map(|s| s.value.clone());
    assert!(
        matches!(latency, Some(prometheus_parse::Value::Histogram(_))),
        "{latency:?}"
    );
    if !cluster_mode() {
        // One node: it leads the partition, so the produce and the fetch were its own.
        let topic = [("topic", "metered")];
        let counter = |name: &str| value(&after, name, &topic).unwrap_or(0.0);
        assert_eq!(
            counter("kafka_server_brokertopicmetrics_messagesin_total"),
            20.0
        );
        assert!(counter("kafka_server_brokertopicmetrics_bytesin_total") > 20.0 * 2.0);
        assert!(counter("kafka_server_brokertopicmetrics_bytesout_total") > 0.0);
        let produced = value(
            &after,
            "kafka_network_requestmetrics_requests_total",
            &[("request", "Produce")],
        );
        assert!(produced.unwrap_or(0.0) >= 1.0);
        assert_eq!(
            value(
                &after,
                "kafka_controller_kafkacontroller_activecontrollercount",
                &[]
            ),
            Some(1.0)
        );
        // A group that read and committed everything has no lag; five more records make five.
        use rdkafka::consumer::{CommitMode, Consumer};
        let group = crate::kit::client::consumer(
            &broker.addr,
            &[
                ("group.id", "metered-group"),
                ("auto.offset.reset", "earliest"),
            ],
        );
        group.subscribe(&["metered"]).unwrap();
        assert_eq!(crate::kit::client::read_n(&group, 20).len(), 20);
        group.commit_consumer_state(CommitMode::Sync).unwrap();
        let lag = |s: &prometheus_parse::Scrape| {
            let labels = [("consumergroup", "metered-group"), ("topic", "metered")];
            value(s, "kafka_consumergroup_lag", &labels)
        };
        assert_eq!(lag(&scrape(&admin)), Some(0.0));
        produce(&writer, "metered", Some(0), &records[..5]).expect("produced");
        assert_eq!(lag(&scrape(&admin)), Some(5.0));
        let sum = value(
            &scrape(&admin),
            "kafka_consumergroup_lag_sum",
            &[("consumergroup", "metered-group")],
        );
        assert_eq!(sum, Some(5.0));
    }

    // What the listener does not serve.
    assert_eq!(get(&admin, "/nope").0, 404);
    assert_eq!(
        http(&admin, "POST /metrics HTTP/1.1\r\nHost: s\r\n\r\n").0,
        405
    );
    assert_eq!(http(&admin, "\x16\x03\x01 not http at all\r\n\r\n").0, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "x".repeat(16 << 10));
    assert_eq!(http(&admin, &huge).0, 431);
    // The Kafka listener goes on.
    let more = produce(&writer, "metered", Some(0), &records[..1]);
    assert!(
        more.is_ok(),
        "{:?}",
        more.err().map(|e| e.rdkafka_error_code())
    );
    let _ = RDKafkaErrorCode::NoError;
}

/// `/v1/cluster` names the brokers and controller Metadata names; `/v1/partitions` lists each
/// partition of a new topic with the leader Metadata names and, for the partition written, the
/// log end and high watermark past the last record a consumer reads.
#[test]
fn the_admin_json_agrees_with_the_kafka_api() {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let broker = Broker::start(&[]);
    let admin = broker.admin.clone().expect("an admin listener");
    create_topic(&broker.addr, "described", 3, &[]);
    let writer = producer(&broker.addr, &[("acks", "all")]);
    let records: Vec<Sent> = (0..7).map(|i| Sent::new("k", &format!("v{i}"))).collect();
    produce(&writer, "described", Some(1), &records).expect("produced");

    let mut s = crate::kit::raw::connect(&broker);
    let mut request = MetadataRequest::default();
    request.topics = None;
    let metadata: MetadataResponse =
        crate::kit::raw::call(&mut s, ApiKey::Metadata, 9, 1, &request);
    let (status, body) = get(&admin, "/v1/cluster");
    assert_eq!(status, 200, "{body}");
    let cluster: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(cluster["controller_id"], metadata.controller_id.0);
    let mut listed: Vec<i64> = cluster["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["fenced"] == false)
        .map(|b| b["node_id"].as_i64().unwrap())
        .collect();
    listed.sort();
    let mut named: Vec<i64> = metadata
        .brokers
        .iter()
        .map(|b| b.node_id.0 as i64)
        .collect();
    named.sort();
    assert_eq!(listed, named);

    let leaders: Vec<(i32, i32)> = metadata
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "described"))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
        })
        .collect();
    assert_eq!(leaders.len(), 3);
    let (status, body) = get(&admin, "/v1/partitions");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
    let node = cluster["node_id"].as_i64().unwrap();
    for (partition, leader) in leaders {
        let row = rows
            .iter()
            .find(|r| r["topic"] == "described" && r["partition"] == partition);
        // In a cluster a node lists the partitions it holds a replica of.
        let Some(row) = row else {
            assert!(cluster_mode(), "partition {partition} not listed: {body}");
            continue;
        };
        assert_eq!(row["leader"], leader, "{row}");
        assert_eq!(row["node"], node);
        assert!(row["isr"].as_array().unwrap().iter().any(|n| *n == leader));
        if partition == 1 && leader as i64 == node {
            let end = crate::kit::client::consume(
                &broker.addr,
                "described",
                1,
                rdkafka::Offset::Beginning,
                7,
            )
            .last()
            .map(|g| g.offset + 1);
            assert_eq!(row["log_end_offset"].as_i64(), end, "{row}");
            assert_eq!(row["high_watermark"], row["log_end_offset"]);
            assert!(row["size_bytes"].as_u64().unwrap_or(0) > 0, "{row}");
        }
    }
}

/// `PUT /v1/log-level` changes the log filter while the broker runs: a metadata change is not
/// logged at the tests' `warn`, and is once the filter says `info`; `GET` names the filter; a
/// filter that does not parse is refused and the one in force stays.
#[test]
fn the_log_filter_changes_at_run_time() {
    let broker = Broker::start_with_fd_limit(8192, &[]);
    let admin = broker.admin.clone().expect("an admin listener");
    let put = |filter: &str| {
        http(
            &admin,
            &format!(
                "PUT /v1/log-level HTTP/1.1\r\nHost: s\r\ncontent-length: {}\r\n\r\n{filter}",
                filter.len()
            ),
        )
    };
    create_topic(&broker.addr, "quiet", 1, &[]);
    assert_eq!(put("info").0, 200);
    assert_eq!(get(&admin, "/v1/log-level"), (200, "info\n".to_string()));
    create_topic(&broker.addr, "loud", 1, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker
        .log()
        .lines()
        .any(|l| l.contains("metadata changed") && l.contains("\"loud\""))
    {
        assert!(
            Instant::now() < deadline,
            "no info line after the change:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if std::env::var_os("SLUICE_TEST_LOG").is_none() {
        let log = broker.log();
        assert!(!log.contains("\"quiet\""), "logged at warn:\n{log}");
    }
    assert_eq!(put("sluice=loudest[").0, 400);
    assert_eq!(get(&admin, "/v1/log-level").1, "info\n");
}

/// The logs' metrics: per partition (size, segments, offsets) and per shard, flushes and their
/// time, group commit, the requests' queue time, stalls and rebalances; a deleted topic's series
/// go with it; `metrics.partition.series=false` keeps the sums and drops the partitions' lines.
#[test]
fn log_metrics_follow_the_partitions_and_forget_deleted_topics() {
    if crate::kit::broker::single_node_only("one node's partitions and shards") {
        return;
    }
    let broker = Broker::start(&[]);
    let admin = broker.admin.clone().expect("the admin listener");
    create_topic(&broker.addr, "logged", 1, &[("segment.bytes", "4096")]);
    let writer = producer(&broker.addr, &[("acks", "all"), ("linger.ms", "0")]);
    let records: Vec<Sent> = (0..60)
        .map(|i| Sent::new("k", &format!("{i:0>200}")))
        .collect();
    for chunk in records.chunks(6) {
        produce(&writer, "logged", Some(0), chunk).expect("produced");
    }
    use rdkafka::consumer::{CommitMode, Consumer};
    let group = crate::kit::client::consumer(
        &broker.addr,
        &[
            ("group.id", "logged-group"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    group.subscribe(&["logged"]).unwrap();
    assert_eq!(crate::kit::client::read_n(&group, 60).len(), 60);
    group.commit_consumer_state(CommitMode::Sync).unwrap();

    let s = scrape(&admin);
    let tp = [("topic", "logged"), ("partition", "0")];
    let segments = value(&s, "kafka_log_log_numlogsegments", &tp).unwrap_or(0.0);
    assert!(segments >= 2.0, "4 KiB segments of 12 KiB: {segments}");
    assert_eq!(value(&s, "kafka_log_log_logendoffset", &tp), Some(60.0));
    assert!(value(&s, "kafka_log_log_size", &tp).unwrap_or(0.0) > 12_000.0);
    assert!(value(&s, "sluice_shard_log_size_bytes", &[]).unwrap_or(0.0) > 12_000.0);
    assert!(value(&s, "sluice_shard_log_segments", &[]).unwrap_or(0.0) >= segments);
    assert!(value(&s, "sluice_log_appends_total", &[]).unwrap_or(0.0) >= 10.0);
    assert!(value(&s, "sluice_log_writes_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(value(&s, "sluice_reactor_stalls_total", &[]).is_some());
    assert!(value(&s, "sluice_io_uring_disk_in_flight", &[]).is_some());
    let depth = s.samples.iter().find_map(|x| match &x.value {
        prometheus_parse::Value::Histogram(buckets)
            if x.metric == "sluice_io_uring_disk_queue_depth" =>
        {
            buckets.last().map(|b| b.count)
        }
        _ => None,
    });
    assert!(
        depth.unwrap_or(0.0) >= 10.0,
        "file operations counted: {depth:?}"
    );
    let rebalances = "kafka_server_group_coordinator_metrics_group_completed_rebalance_count";
    assert!(value(&s, rebalances, &[]).unwrap_or(0.0) >= 1.0);
    let queue = s.samples.iter().find(|x| {
        x.metric == "kafka_network_requestmetrics_requestqueuetime_seconds"
            && x.labels.get("request") == Some("Produce")
    });
    assert!(
        matches!(
            queue.map(|q| &q.value),
            Some(prometheus_parse::Value::Histogram(_))
        ),
        "{queue:?}"
    );
    // Each segment roll synced the old one: the flush summary counted them.
    let (_, text) = get(&admin, "/metrics");
    let flushes: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("kafka_log_logflushstats_logflushrateandtimems_seconds_count ")
        })
        .and_then(|v| v.parse().ok())
        .expect("the flush count");
    assert!(
        flushes >= segments - 1.0,
        "{flushes} flushes, {segments} segments"
    );

    drop(group);
    let admin_client = crate::kit::client::admin(&broker.addr);
    let options = rdkafka::admin::AdminOptions::new();
    futures_lite::future::block_on(admin_client.delete_topics(&["logged"], &options)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(&admin);
        let left = s
            .samples
            .iter()
            .filter(|x| x.labels.get("topic") == Some("logged"))
            .map(|x| x.metric.clone())
            .collect::<Vec<_>>();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a deleted topic's series stay: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let quiet = Broker::start(&["metrics.partition.series=false"]);
    let quiet_admin = quiet.admin.clone().expect("the admin listener");
    create_topic(&quiet.addr, "quiet", 1, &[]);
    produce(&producer(&quiet.addr, &[]), "quiet", Some(0), &records[..3]).expect("produced");
    let s = scrape(&quiet_admin);
    assert!(value(&s, "kafka_log_log_size", &[]).is_none());
    assert!(value(&s, "sluice_shard_log_size_bytes", &[]).unwrap_or(0.0) > 600.0);
}
