//! What the broker counts, for the admin listener's `/metrics` (Prometheus text format).
//!
//! Each shard counts on its own, without locks or atomics (a `RefCell` its own thread alone
//! touches): requests and their latency per API key, bytes and messages in per topic, bytes out
//! per topic. A scrape asks every shard for a copy ([`ShardCounts`], plain data that crosses the
//! mesh), merges them, adds what is read at scrape time (connections, partitions, leaders, the
//! controller) and renders the text. Names follow Kafka's JMX metrics as the Prometheus JMX
//! exporter writes them (`kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec,topic=t` is
//! `kafka_server_brokertopicmetrics_bytesin_total{topic="t"}`); the README has the table.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;

/// Latency buckets of the request histograms (seconds), as Prometheus `le` bounds.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One API's requests on one shard: how many, how long each took to answer, and how long each
/// waited between its frame read and its handler's start (microseconds).
#[derive(Clone)]
pub struct ApiCounts {
    pub count: u64,
    pub micros: Histogram<u64>,
    pub queue_micros: Histogram<u64>,
}

impl ApiCounts {
    fn new() -> ApiCounts {
        // 1 µs to 1 hour at 2 significant digits: a few KiB per API per shard.
        let histogram = || Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds");
        ApiCounts {
            count: 0,
            micros: histogram(),
            queue_micros: histogram(),
        }
    }
}

/// A topic's traffic on one shard.
#[derive(Clone, Copy, Default)]
pub struct TopicCounts {
    pub bytes_in: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
}

/// A shard's counters (and, merged, a node's).
#[derive(Clone, Default)]
pub struct ShardCounts {
    pub requests: BTreeMap<i16, ApiCounts>,
    pub topics: BTreeMap<Arc<str>, TopicCounts>,
    /// ISR changes of the partitions this shard led (read from its partitions at a scrape).
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// Times the shard's event loop ran a timer late by STALL or more, and by how long in all.
    pub stalls: u64,
    pub stall_micros: u64,
    /// SASL and TLS authentications that succeeded and that failed.
    pub authentications: u64,
    pub failed_authentications: u64,
    /// SASL re-authentications (KIP-368) that succeeded and that failed, and connections
    /// closed because their session expired first.
    pub reauthentications: u64,
    pub failed_reauthentications: u64,
    pub expired_sessions: u64,
    /// Its open logs' work (appends, writes, syncs, compaction), read at a scrape.
    pub log: crate::storage::LogStats,
    /// Rebalances its groups completed (a new generation), read at a scrape.
    pub rebalances: u64,
    /// The depth each file operation found on the shard's ring when it was submitted.
    pub disk_depths: Option<Histogram<u64>>,
}

/// A timer this late means the shard's event loop was busy (a task that did not yield).
pub const STALL: Duration = Duration::from_millis(10);

impl ShardCounts {
    fn merge(&mut self, other: &ShardCounts) {
        for (api, counts) in &other.requests {
            let mine = self.requests.entry(*api).or_insert_with(ApiCounts::new);
            mine.count += counts.count;
            let _ = mine.micros.add(&counts.micros);
            let _ = mine.queue_micros.add(&counts.queue_micros);
        }
        for (topic, counts) in &other.topics {
            let mine = self.topics.entry(topic.clone()).or_default();
            mine.bytes_in += counts.bytes_in;
            mine.messages_in += counts.messages_in;
            mine.bytes_out += counts.bytes_out;
        }
        self.isr_shrinks += other.isr_shrinks;
        self.isr_expands += other.isr_expands;
        self.stalls += other.stalls;
        self.stall_micros += other.stall_micros;
        self.authentications += other.authentications;
        self.failed_authentications += other.failed_authentications;
        self.reauthentications += other.reauthentications;
        self.failed_reauthentications += other.failed_reauthentications;
        self.expired_sessions += other.expired_sessions;
        self.log.add(&other.log);
        self.rebalances += other.rebalances;
        match (&mut self.disk_depths, &other.disk_depths) {
            (Some(mine), Some(theirs)) => {
                let _ = mine.add(theirs);
            }
            (None, Some(theirs)) => self.disk_depths = Some(theirs.clone()),
            _ => {}
        }
    }
}

/// A connection's first authentication, or a re-authentication (KIP-368).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    First,
    Again,
}

/// The counters a shard keeps; only its own thread touches them.
pub struct Metrics {
    counts: RefCell<ShardCounts>,
    /// `metrics.enabled`: off, nothing is counted.
    enabled: bool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(true)
    }
}

impl Metrics {
    pub fn new(enabled: bool) -> Metrics {
        Metrics {
            counts: RefCell::default(),
            enabled,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Updates the counts of `api`.
    fn api(&self, api: ApiKey, update: impl FnOnce(&mut ApiCounts)) {
        if !self.enabled {
            return;
        }
        let mut counts = self.counts.borrow_mut();
        update(
            counts
                .requests
                .entry(api as i16)
                .or_insert_with(ApiCounts::new),
        );
    }

    /// A request of `api` answered `took` after its frame was read, its handler started
    /// `queued` after.
    pub fn request(&self, api: ApiKey, queued: Duration, took: Duration) {
        self.api(api, |entry| {
            entry.count += 1;
            entry.micros.saturating_record(micros(took));
            entry.queue_micros.saturating_record(micros(queued));
        });
    }

    /// The event loop ran a timer `late` (counted as a stall from STALL on).
    pub fn lateness(&self, late: Duration) {
        if late >= STALL && self.enabled {
            let mut counts = self.counts.borrow_mut();
            counts.stalls += 1;
            counts.stall_micros += late.as_micros() as u64;
        }
    }

    /// An authentication (a SASL exchange or a TLS handshake), a connection's first or a
    /// re-authentication, succeeded or failed.
    pub fn authentication(&self, attempt: Attempt, succeeded: bool) {
        if self.enabled {
            let mut counts = self.counts.borrow_mut();
            let counter = match (attempt, succeeded) {
                (Attempt::First, true) => &mut counts.authentications,
                (Attempt::First, false) => &mut counts.failed_authentications,
                (Attempt::Again, true) => &mut counts.reauthentications,
                (Attempt::Again, false) => &mut counts.failed_reauthentications,
            };
            *counter += 1;
        }
    }

    /// A connection was closed because its SASL session had expired.
    pub fn expired_session(&self) {
        if self.enabled {
            self.counts.borrow_mut().expired_sessions += 1;
        }
    }

    /// Forgets the traffic of topics `keep` no longer names (deleted ones).
    pub fn retain_topics(&self, keep: impl Fn(&str) -> bool) {
        self.counts
            .borrow_mut()
            .topics
            .retain(|topic, _| keep(topic));
    }

    /// Records appended to `topic` by a producer: `bytes` of batches holding `messages`.
    pub fn produced(&self, topic: &Arc<str>, bytes: u64, messages: u64) {
        if !self.enabled {
            return;
        }
        let mut counts = self.counts.borrow_mut();
        let entry = counts.topics.entry(topic.clone()).or_default();
        entry.bytes_in += bytes;
        entry.messages_in += messages;
    }

    /// Bytes of `topic` sent to a consumer (the name is copied only the first time).
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 || !self.enabled {
            return;
        }
        let mut counts = self.counts.borrow_mut();
        match counts.topics.get_mut(topic) {
            Some(entry) => entry.bytes_out += bytes,
            None => {
                let entry = counts.topics.entry(Arc::from(topic)).or_default();
                entry.bytes_out += bytes;
            }
        }
    }

    /// A copy, for a scrape.
    pub fn snapshot(&self) -> ShardCounts {
        self.counts.borrow().clone()
    }
}

/// How often a shard's stall ticker wakes to see how late its timer ran.
const STALL_TICK: Duration = Duration::from_millis(50);

impl super::Shard {
    /// Wakes every STALL_TICK and counts how late the wake came: a shard whose event loop ran
    /// a task that did not yield shows as stalls (`sluice_reactor_stalls_total`).
    pub fn spawn_stall_ticker(self: &std::rc::Rc<Self>) {
        if !self.metrics.enabled() {
            return;
        }
        // On the hot queue: background work yielding to requests is not a stall.
        let shard = std::rc::Rc::downgrade(self);
        self.hot
            .spawn(async move {
                loop {
                    let asked = std::time::Instant::now();
                    crate::io::sleep(STALL_TICK).await;
                    let late = asked.elapsed().saturating_sub(STALL_TICK);
                    let Some(shard) = shard.upgrade() else {
                        break;
                    };
                    if shard.is_stopping() {
                        break;
                    }
                    shard.metrics.lateness(late);
                }
            })
            .detach();
    }
}

/// What a shard holds now, read at scrape time.
#[derive(Clone, Copy, Default)]
pub struct ShardGauges {
    pub partitions: u64,
    pub leaders: u64,
    /// Partitions this shard leads whose ISR is smaller than their replicas.
    pub under_replicated: u64,
    /// Partitions this shard leads whose ISR is smaller than their `min.insync.replicas`
    /// (acks=all is refused).
    pub under_min_isr: u64,
    /// Bytes and segments of the logs of its open partitions.
    pub log_bytes: u64,
    pub segments: u64,
    /// File operations in flight on its ring.
    pub disk_in_flight: u64,
}

/// One partition's log, for the per-partition series.
#[derive(Clone)]
pub struct PartitionLog {
    pub topic: Arc<str>,
    pub partition: i32,
    pub bytes: u64,
    pub segments: u64,
    pub log_start: i64,
    pub log_end: i64,
}

/// The consumer groups a shard coordinates, and the high watermarks of the partitions it leads
/// (a group's lag is a leader's high watermark less the group's committed offset).
#[derive(Clone, Default)]
pub struct ShardGroups {
    pub groups: Vec<crate::group::GroupOffsets>,
    pub high_watermarks: Vec<(Arc<str>, i32, i64)>,
}

/// What the node says at a scrape.
pub struct Scrape {
    pub shards: Vec<(ShardCounts, ShardGauges)>,
    /// Every open partition's log; empty when `metrics.partition.series` is off.
    pub partitions: Vec<PartitionLog>,
    /// Whether series per partition are written (`metrics.partition.series`).
    pub partition_series: bool,
    pub groups: Vec<ShardGroups>,
    pub connections: u64,
    pub active_controller: bool,
    /// Partitions of the cluster without a live leader, as this node's image has them.
    pub offline_partitions: u64,
}

/// The Prometheus text of a scrape.
pub fn render(scrape: &Scrape) -> String {
    let mut node = ShardCounts::default();
    for (counts, _) in &scrape.shards {
        node.merge(counts);
    }
    let mut out = String::new();
    let requests = "kafka_network_requestmetrics_requests_total";
    family(
        &mut out,
        requests,
        "counter",
        "Requests answered, by API (RequestsPerSec).",
    );
    for (api, counts) in &node.requests {
        let _ = writeln!(
            out,
            "{requests}{{request=\"{}\"}} {}",
            api_name(*api),
            counts.count
        );
    }
    histograms(
        &mut out,
        "kafka_network_requestmetrics_totaltime_seconds",
        "From a request read to its answer, by API (TotalTimeMs).",
        &node,
        |c| &c.micros,
    );
    histograms(
        &mut out,
        "kafka_network_requestmetrics_requestqueuetime_seconds",
        "From a request read to its handler's start, by API (RequestQueueTimeMs).",
        &node,
        |c| &c.queue_micros,
    );
    let topics = [
        ("bytesin", "Bytes produced to the topic (BytesInPerSec)."),
        (
            "messagesin",
            "Messages produced to the topic (MessagesInPerSec).",
        ),
        (
            "bytesout",
            "Bytes of the topic sent to consumers and followers (BytesOutPerSec).",
        ),
    ];
    for (which, help) in topics {
        let name = format!("kafka_server_brokertopicmetrics_{which}_total");
        family(&mut out, &name, "counter", help);
        for (topic, counts) in &node.topics {
            let value = match which {
                "bytesin" => counts.bytes_in,
                "messagesin" => counts.messages_in,
                _ => counts.bytes_out,
            };
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {value}", escape(topic));
        }
    }
    let gauges: [(&str, &str, Gauge); 4] = [
        (
            "partitioncount",
            "Partitions this shard holds a replica of.",
            |g| g.partitions,
        ),
        ("leadercount", "Partitions this shard leads.", |g| g.leaders),
        (
            "underreplicatedpartitions",
            "Partitions this shard leads with fewer in sync than replicas.",
            |g| g.under_replicated,
        ),
        (
            "underminisrpartitioncount",
            "Partitions this shard leads with fewer in sync than min.insync.replicas.",
            |g| g.under_min_isr,
        ),
    ];
    for (which, help, value) in gauges {
        let name = format!("kafka_server_replicamanager_{which}");
        family(&mut out, &name, "gauge", help);
        for (shard, (_, gauges)) in scrape.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(gauges));
        }
    }
    for (which, help, value) in [
        (
            "isrshrinks",
            "ISR shrinks of partitions this node leads (IsrShrinksPerSec).",
            node.isr_shrinks,
        ),
        (
            "isrexpands",
            "ISR expansions of partitions this node leads (IsrExpandsPerSec).",
            node.isr_expands,
        ),
    ] {
        let name = format!("kafka_server_replicamanager_{which}_total");
        family(&mut out, &name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    render_logs(&mut out, scrape, &node);
    render_groups(&mut out, &scrape.groups, scrape.partition_series);
    let rebalances = "kafka_server_group_coordinator_metrics_group_completed_rebalance_count";
    family(
        &mut out,
        rebalances,
        "counter",
        "Rebalances completed (a new generation) by the groups this node coordinates.",
    );
    let _ = writeln!(out, "{rebalances} {}", node.rebalances);
    for (name, help, value) in [
        (
            "sluice_reactor_stalls_total",
            "Timers a shard's event loop ran 10 ms or more late (a task that did not yield).",
            (|c| c.stalls as f64) as fn(&ShardCounts) -> f64,
        ),
        (
            "sluice_reactor_stall_seconds_total",
            "How late those timers ran, in all.",
            |c| c.stall_micros as f64 / 1e6,
        ),
        (
            "kafka_server_socket_server_metrics_successful_authentication_total",
            "SASL exchanges and TLS handshakes that succeeded.",
            |c| c.authentications as f64,
        ),
        (
            "kafka_server_socket_server_metrics_failed_authentication_total",
            "SASL exchanges and TLS handshakes that failed (a wrong password, an unknown user, \
             an untrusted certificate, a client that does not speak TLS).",
            |c| c.failed_authentications as f64,
        ),
        (
            "kafka_server_socket_server_metrics_successful_reauthentication_total",
            "SASL re-authentications (connections.max.reauth.ms) that succeeded.",
            |c| c.reauthentications as f64,
        ),
        (
            "kafka_server_socket_server_metrics_failed_reauthentication_total",
            "SASL re-authentications that failed (the connection is closed).",
            |c| c.failed_reauthentications as f64,
        ),
        (
            "kafka_server_socket_server_metrics_expired_connections_killed_count",
            "Connections closed because their SASL session expired before they re-authenticated.",
            |c| c.expired_sessions as f64,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for (shard, (counts, _)) in scrape.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(counts));
        }
    }
    let single = [
        (
            "kafka_server_socketservermetrics_connection_count",
            "Client connections open.",
            scrape.connections,
        ),
        (
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the node that is the active controller.",
            u64::from(scrape.active_controller),
        ),
        (
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a live leader (as this node's metadata has them).",
            scrape.offline_partitions,
        ),
    ];
    for (name, help, value) in single {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// A histogram per API from each API's counts (`which` picks the histogram).
fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    node: &ShardCounts,
    which: fn(&ApiCounts) -> &Histogram<u64>,
) {
    family(out, name, "histogram", help);
    for (api, counts) in &node.requests {
        let labels = format!("request=\"{}\"", api_name(*api));
        histogram_lines(out, name, &labels, which(counts), &BUCKETS_S, 1e6);
    }
}

/// One histogram's lines: a bucket per bound (`le` in exported units; recorded values are
/// `scale` times those), `+Inf`, the sum (exported units) and the count.
fn histogram_lines(
    out: &mut String,
    name: &str,
    labels: &str,
    recorded: &Histogram<u64>,
    bounds: &[f64],
    scale: f64,
) {
    let comma = if labels.is_empty() { "" } else { "," };
    for bound in bounds {
        let below = recorded.count_between(0, (bound * scale) as u64);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{comma}le=\"{bound}\"}} {below}"
        );
    }
    let total = recorded.len();
    let sum = recorded.mean() * total as f64 / scale;
    let _ = writeln!(out, "{name}_bucket{{{labels}{comma}le=\"+Inf\"}} {total}");
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braced} {sum}");
    let _ = writeln!(out, "{name}_count{braced} {total}");
}

/// The logs: size and segments per shard (and per partition when those series are on),
/// flushes and their time, group commit (appends per write), compaction.
fn render_logs(out: &mut String, scrape: &Scrape, node: &ShardCounts) {
    let per_shard: [(&str, &str, Gauge); 2] = [
        (
            "sluice_shard_log_size_bytes",
            "Bytes of the logs of the partitions a shard holds.",
            |g| g.log_bytes,
        ),
        (
            "sluice_shard_log_segments",
            "Segments of the logs of the partitions a shard holds.",
            |g| g.segments,
        ),
    ];
    for (name, help, value) in per_shard {
        family(out, name, "gauge", help);
        for (shard, (_, gauges)) in scrape.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(gauges));
        }
    }
    if scrape.partition_series {
        let per_partition: [(&str, &str, PartitionValue); 4] = [
            ("size", "Bytes of the partition's log (Size).", |p| {
                p.bytes as i64
            }),
            (
                "numlogsegments",
                "Segments of the partition's log (NumLogSegments).",
                |p| p.segments as i64,
            ),
            (
                "logstartoffset",
                "The log start offset (LogStartOffset).",
                |p| p.log_start,
            ),
            ("logendoffset", "The log end offset (LogEndOffset).", |p| {
                p.log_end
            }),
        ];
        for (which, help, value) in per_partition {
            let name = format!("kafka_log_log_{which}");
            family(out, &name, "gauge", help);
            for p in &scrape.partitions {
                let topic = escape(&p.topic);
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{topic}\",partition=\"{}\"}} {}",
                    p.partition,
                    value(p)
                );
            }
        }
    }
    let in_flight = "sluice_io_uring_disk_in_flight";
    family(
        out,
        in_flight,
        "gauge",
        "File operations (reads, writes, fdatasyncs) in flight on a shard's io_uring.",
    );
    for (shard, (_, gauges)) in scrape.shards.iter().enumerate() {
        let _ = writeln!(
            out,
            "{in_flight}{{shard=\"{shard}\"}} {}",
            gauges.disk_in_flight
        );
    }
    let depth = "sluice_io_uring_disk_queue_depth";
    family(
        out,
        depth,
        "histogram",
        "File operations in flight on the shard's io_uring when each was submitted (itself included).",
    );
    if let Some(depths) = &node.disk_depths {
        let bounds = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        histogram_lines(out, depth, "", depths, &bounds, 1.0);
    }
    let flush = "kafka_log_logflushstats_logflushrateandtimems_seconds";
    family(
        out,
        flush,
        "summary",
        "fdatasyncs of active segments (flushes and rolls) and their time (LogFlushRateAndTimeMs).",
    );
    let _ = writeln!(out, "{flush}_sum {}", node.log.sync_micros as f64 / 1e6);
    let _ = writeln!(out, "{flush}_count {}", node.log.syncs);
    for (name, help, value) in [
        (
            "sluice_log_appends_total",
            "Appends acknowledged by the logs of open partitions.",
            node.log.appends,
        ),
        (
            "sluice_log_writes_total",
            "Segment writes that carried them (appends per write: the group commit).",
            node.log.writes,
        ),
        (
            "sluice_log_cleaner_passes_total",
            "Compaction passes that cleaned something.",
            node.log.cleanings,
        ),
        (
            "sluice_log_cleaner_removed_records_total",
            "Records compaction removed.",
            node.log.cleaned_records,
        ),
        (
            "sluice_log_cleaner_reclaimed_bytes_total",
            "Bytes compaction gave back.",
            node.log.cleaned_bytes,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Groups by state, and each group's lag on the partitions this node leads: per partition
/// (`kafka_consumergroup_lag`, as the Kafka exporter names it, when the per-partition series
/// are on) and summed per group.
fn render_groups(out: &mut String, shards: &[ShardGroups], per_partition: bool) {
    let mut ends: std::collections::HashMap<(&str, i32), i64> = Default::default();
    for shard in shards {
        for (topic, partition, hw) in &shard.high_watermarks {
            ends.insert((topic, *partition), *hw);
        }
    }
    let groups = || shards.iter().flat_map(|s| &s.groups);
    let states = "kafka_coordinator_group_groupmetadatamanager_numgroups";
    family(
        out,
        states,
        "gauge",
        "Groups this node coordinates, by state (NumGroups).",
    );
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    for group in groups() {
        *by_state.entry(group.state).or_default() += 1;
    }
    for (state, count) in by_state {
        let _ = writeln!(out, "{states}{{state=\"{state}\"}} {count}");
    }
    let members = "kafka_consumergroup_members";
    family(
        out,
        members,
        "gauge",
        "Members of each group this node coordinates.",
    );
    for group in groups() {
        let (name, count) = (escape(&group.name), group.members);
        let _ = writeln!(out, "{members}{{consumergroup=\"{name}\"}} {count}");
    }
    let lag = "kafka_consumergroup_lag";
    let sum = "kafka_consumergroup_lag_sum";
    family(
        out,
        lag,
        "gauge",
        "High watermark less the committed offset, on partitions this node leads.",
    );
    let mut sums = Vec::new();
    for group in groups() {
        let name = &group.name;
        let mut total = 0;
        for (topic, partition, committed) in &group.offsets {
            let Some(end) = ends.get(&(topic.as_str(), *partition)) else {
                continue;
            };
            let behind = (end - committed).max(0);
            total += behind;
            if !per_partition {
                continue;
            }
            let _ = writeln!(
                out,
                "{lag}{{consumergroup=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {behind}",
                escape(name),
                escape(topic)
            );
        }
        sums.push((name, total));
    }
    family(
        out,
        sum,
        "gauge",
        "A group's lag summed over the partitions this node leads.",
    );
    for (name, total) in sums {
        let _ = writeln!(out, "{sum}{{consumergroup=\"{}\"}} {total}", escape(name));
    }
}

/// A duration in whole microseconds, at least 1 (the histograms' lowest value).
fn micros(took: Duration) -> u64 {
    took.as_micros().max(1) as u64
}

/// How a per-shard gauge is read.
type Gauge = fn(&ShardGauges) -> u64;

/// How a per-partition gauge is read.
type PartitionValue = fn(&PartitionLog) -> i64;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Kafka's name of an API (`Produce`, `Fetch`, ...).
fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => key.to_string(),
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
