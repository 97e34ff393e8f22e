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

/// One API's requests on one shard: how many, and how long each took to answer (microseconds).
#[derive(Clone)]
pub struct ApiCounts {
    pub count: u64,
    pub micros: Histogram<u64>,
}

impl ApiCounts {
    fn new() -> ApiCounts {
        ApiCounts {
            count: 0,
            // 1 µs to 1 hour at 2 significant digits: a few KiB per API per shard.
            micros: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
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
}

impl ShardCounts {
    fn merge(&mut self, other: &ShardCounts) {
        for (api, counts) in &other.requests {
            let mine = self.requests.entry(*api).or_insert_with(ApiCounts::new);
            mine.count += counts.count;
            let _ = mine.micros.add(&counts.micros);
        }
        for (topic, counts) in &other.topics {
            let mine = self.topics.entry(topic.clone()).or_default();
            mine.bytes_in += counts.bytes_in;
            mine.messages_in += counts.messages_in;
            mine.bytes_out += counts.bytes_out;
        }
        self.isr_shrinks += other.isr_shrinks;
        self.isr_expands += other.isr_expands;
    }
}

/// The counters a shard keeps; only its own thread touches them.
#[derive(Default)]
pub struct Metrics {
    counts: RefCell<ShardCounts>,
}

impl Metrics {
    /// A request of `api` answered after `took`.
    pub fn request(&self, api: ApiKey, took: Duration) {
        let mut counts = self.counts.borrow_mut();
        let entry = counts
            .requests
            .entry(api as i16)
            .or_insert_with(ApiCounts::new);
        entry.count += 1;
        entry
            .micros
            .saturating_record(took.as_micros().max(1) as u64);
    }

    /// Records appended to `topic` by a producer: `bytes` of batches holding `messages`.
    pub fn produced(&self, topic: &Arc<str>, bytes: u64, messages: u64) {
        let mut counts = self.counts.borrow_mut();
        let entry = counts.topics.entry(topic.clone()).or_default();
        entry.bytes_in += bytes;
        entry.messages_in += messages;
    }

    /// Bytes of `topic` sent to a consumer (the name is copied only the first time).
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 {
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
    let time = "kafka_network_requestmetrics_totaltime_seconds";
    family(
        &mut out,
        time,
        "histogram",
        "From a request read to its answer, by API (TotalTimeMs).",
    );
    for (api, counts) in &node.requests {
        let name = api_name(*api);
        for bound in BUCKETS_S {
            let below = counts.micros.count_between(0, (bound * 1e6) as u64);
            let _ = writeln!(
                out,
                "{time}_bucket{{request=\"{name}\",le=\"{bound}\"}} {below}"
            );
        }
        let total = counts.micros.len();
        let sum = counts.micros.mean() * total as f64 / 1e6;
        let _ = writeln!(
            out,
            "{time}_bucket{{request=\"{name}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "{time}_sum{{request=\"{name}\"}} {sum}");
        let _ = writeln!(out, "{time}_count{{request=\"{name}\"}} {total}");
    }
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
    render_groups(&mut out, &scrape.groups);
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

/// Groups by state, and each group's lag on the partitions this node leads: per partition
/// (`kafka_consumergroup_lag`, as the Kafka exporter names it) and summed per group.
fn render_groups(out: &mut String, shards: &[ShardGroups]) {
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

/// How a per-shard gauge is read.
type Gauge = fn(&ShardGauges) -> u64;

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
mod tests {
    use super::*;

    #[test]
    fn counts_merge_over_shards_and_render_as_prometheus_text() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.request(ApiKey::Produce, Duration::from_micros(300));
        b.request(ApiKey::Produce, Duration::from_millis(20));
        b.request(ApiKey::Fetch, Duration::from_millis(2));
        let topic: Arc<str> = Arc::from("t\"q");
        a.produced(&topic, 1000, 10);
        b.produced(&topic, 500, 5);
        b.fetched(&topic, 700);
        let mut counts_a = a.snapshot();
        counts_a.isr_shrinks = 1;
        let mut counts_b = b.snapshot();
        (counts_b.isr_shrinks, counts_b.isr_expands) = (1, 1);
        let gauges = ShardGauges {
            partitions: 3,
            leaders: 2,
            under_replicated: 1,
            under_min_isr: 1,
        };
        let text = render(&Scrape {
            shards: vec![(counts_a, gauges), (counts_b, gauges)],
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
        });
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
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
