use super::*;

#[test]
fn counts_merge_over_shards_and_render_as_prometheus_text() {
    let (a, b) = (Metrics::default(), Metrics::default());
    a.request(
        ApiKey::Produce,
        Duration::from_micros(300),
        Duration::from_micros(300),
    );
    b.request(
        ApiKey::Produce,
        Duration::from_millis(1),
        Duration::from_millis(20),
    );
    b.request(
        ApiKey::Fetch,
        Duration::from_millis(1),
        Duration::from_millis(2),
    );
    let topic: Arc<str> = Arc::from("t\"q");
    a.produced(&topic, 1000, 10);
    b.produced(&topic, 500, 5);
    b.fetched(&topic, 700);
    b.lateness(Duration::from_millis(3));
    b.lateness(Duration::from_millis(40));
    let mut counts_a = a.snapshot();
    counts_a.isr_shrinks = 1;
    counts_a.log.syncs = 2;
    counts_a.log.sync_micros = 1500;
    let mut counts_b = b.snapshot();
    (counts_b.isr_shrinks, counts_b.isr_expands) = (1, 1);
    counts_b.log.appends = 64;
    counts_b.log.writes = 4;
    counts_b.rebalances = 3;
    let mut depths = Histogram::new_with_bounds(1, 1 << 20, 2).unwrap();
    depths.record(1).unwrap();
    depths.record(3).unwrap();
    counts_b.disk_depths = Some(depths);
    let gauges = ShardGauges {
        partitions: 3,
        leaders: 2,
        under_replicated: 1,
        under_min_isr: 1,
        log_bytes: 4096,
        segments: 2,
        disk_in_flight: 1,
    };
    let partition = PartitionLog {
        topic: topic.clone(),
        partition: 0,
        bytes: 4096,
        segments: 2,
        log_start: 5,
        log_end: 55,
    };
    let mut scrape = Scrape {
        shards: vec![(counts_a, gauges), (counts_b, gauges)],
        partitions: vec![partition],
        partition_series: true,
        groups: vec![ShardGroups {
            groups: vec![crate::group::GroupOffsets {
                name: "g".into(),
                state: "Stable",
                members: 2,
                offsets: vec![("t\"q".into(), 0, 40)],
            }],
            high_watermarks: vec![(topic.clone(), 0, 55)],
        }],
        connections: 4,
        active_controller: true,
        offline_partitions: 0,
    };
    let text = render(&scrape);
    for line in [
        "kafka_network_requestmetrics_requests_total{request=\"Produce\"} 2",
        "kafka_network_requestmetrics_totaltime_seconds_bucket{request=\"Produce\",le=\"0.0005\"} 1",
        "kafka_network_requestmetrics_totaltime_seconds_bucket{request=\"Produce\",le=\"0.025\"} 2",
        "kafka_network_requestmetrics_totaltime_seconds_count{request=\"Fetch\"} 1",
        "kafka_server_brokertopicmetrics_bytesin_total{topic=\"t\\\"q\"} 1500",
        "kafka_server_brokertopicmetrics_messagesin_total{topic=\"t\\\"q\"} 15",
        "kafka_server_brokertopicmetrics_bytesout_total{topic=\"t\\\"q\"} 700",
        "kafka_server_replicamanager_underreplicatedpartitions{shard=\"1\"} 1",
        "kafka_server_socketservermetrics_connection_count 4",
        "kafka_server_replicamanager_isrshrinks_total 2",
        "kafka_consumergroup_lag{consumergroup=\"g\",topic=\"t\\\"q\",partition=\"0\"} 15",
        "kafka_consumergroup_lag_sum{consumergroup=\"g\"} 15",
        "kafka_coordinator_group_groupmetadatamanager_numgroups{state=\"Stable\"} 1",
        "kafka_server_replicamanager_isrexpands_total 1",
        "kafka_server_replicamanager_underminisrpartitioncount{shard=\"0\"} 1",
        "kafka_controller_kafkacontroller_activecontrollercount 1",
        "kafka_network_requestmetrics_requestqueuetime_seconds_bucket{request=\"Produce\",le=\"0.0005\"} 1",
        "sluice_reactor_stalls_total{shard=\"1\"} 1",
        "sluice_reactor_stall_seconds_total{shard=\"1\"} 0.04",
        "kafka_log_logflushstats_logflushrateandtimems_seconds_sum 0.0015",
        "kafka_log_logflushstats_logflushrateandtimems_seconds_count 2",
        "sluice_log_appends_total 64",
        "sluice_log_writes_total 4",
        "kafka_server_group_coordinator_metrics_group_completed_rebalance_count 3",
        "sluice_shard_log_size_bytes{shard=\"0\"} 4096",
        "sluice_io_uring_disk_in_flight{shard=\"1\"} 1",
        "sluice_io_uring_disk_queue_depth_bucket{le=\"2\"} 1",
        "sluice_io_uring_disk_queue_depth_bucket{le=\"4\"} 2",
        "kafka_log_log_numlogsegments{topic=\"t\\\"q\",partition=\"0\"} 2",
        "kafka_log_log_logstartoffset{topic=\"t\\\"q\",partition=\"0\"} 5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    // Without the per-partition series: the sums stay, the partitions' lines go.
    scrape.partition_series = false;
    scrape.partitions.clear();
    let text = render(&scrape);
    assert!(text.contains("kafka_consumergroup_lag_sum{consumergroup=\"g\"} 15"));
    assert!(!text.contains("kafka_consumergroup_lag{"), "{text}");
    assert!(!text.contains("kafka_log_log_size{"), "{text}");
    assert!(text.contains("sluice_shard_log_segments{shard=\"1\"} 2"));
}
