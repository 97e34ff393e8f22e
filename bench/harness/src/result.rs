//! The JSON result of a run, under OMB's `TestResult` field names (latencies in milliseconds,
//! publish delay in microseconds, one list entry per sampling period), plus what OMB does not
//! have: MB/s, the rate found, the client settings and the broker's resource use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Percentiles;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub workload: String,
    pub driver: String,
    pub message_size: u64,
    pub topics: u32,
    pub partitions: u32,
    pub producers_per_topic: u32,
    pub consumers_per_topic: u32,

    /// Seconds from the end of the warm-up to the end of each period.
    pub sample_seconds: Vec<f64>,
    pub publish_rate: Vec<f64>,
    pub publish_error_rate: Vec<f64>,
    pub consume_rate: Vec<f64>,
    pub backlog: Vec<i64>,

    pub publish_latency_avg: Vec<f64>,
    #[serde(rename = "publishLatency50pct")]
    pub publish_latency_50pct: Vec<f64>,
    #[serde(rename = "publishLatency75pct")]
    pub publish_latency_75pct: Vec<f64>,
    #[serde(rename = "publishLatency95pct")]
    pub publish_latency_95pct: Vec<f64>,
    #[serde(rename = "publishLatency99pct")]
    pub publish_latency_99pct: Vec<f64>,
    #[serde(rename = "publishLatency999pct")]
    pub publish_latency_999pct: Vec<f64>,
    #[serde(rename = "publishLatency9999pct")]
    pub publish_latency_9999pct: Vec<f64>,
    pub publish_latency_max: Vec<f64>,

    pub publish_delay_latency_avg: Vec<f64>,
    #[serde(rename = "publishDelayLatency50pct")]
    pub publish_delay_latency_50pct: Vec<f64>,
    #[serde(rename = "publishDelayLatency99pct")]
    pub publish_delay_latency_99pct: Vec<f64>,
    pub publish_delay_latency_max: Vec<f64>,

    pub end_to_end_latency_avg: Vec<f64>,
    #[serde(rename = "endToEndLatency50pct")]
    pub end_to_end_latency_50pct: Vec<f64>,
    #[serde(rename = "endToEndLatency75pct")]
    pub end_to_end_latency_75pct: Vec<f64>,
    #[serde(rename = "endToEndLatency95pct")]
    pub end_to_end_latency_95pct: Vec<f64>,
    #[serde(rename = "endToEndLatency99pct")]
    pub end_to_end_latency_99pct: Vec<f64>,
    #[serde(rename = "endToEndLatency999pct")]
    pub end_to_end_latency_999pct: Vec<f64>,
    #[serde(rename = "endToEndLatency9999pct")]
    pub end_to_end_latency_9999pct: Vec<f64>,
    pub end_to_end_latency_max: Vec<f64>,

    #[serde(flatten)]
    pub aggregated: Aggregated,

    pub aggregated_publish_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_publish_delay_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_end_to_end_latency_quantiles: BTreeMap<String, f64>,

    // Not in OMB.
    /// Messages a second over the measured time (after the warm-up).
    pub aggregated_publish_rate: f64,
    pub aggregated_consume_rate: f64,
    #[serde(rename = "aggregatedPublishMBps")]
    pub aggregated_publish_mbps: f64,
    #[serde(rename = "aggregatedConsumeMBps")]
    pub aggregated_consume_mbps: f64,
    /// The rate asked of the producers (the one found when the workload's rate is 0).
    pub target_rate: f64,
    /// Whether `target_rate` was found by the maximum-rate search.
    pub max_rate_search: bool,
    pub scale: f64,
    pub producer_config: BTreeMap<String, String>,
    pub consumer_config: BTreeMap<String, String>,
    pub resources: Option<Resources>,
}

/// OMB's `aggregated*` figures of the whole measured run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregated {
    pub aggregated_publish_latency_avg: f64,
    #[serde(rename = "aggregatedPublishLatency50pct")]
    pub aggregated_publish_latency_50pct: f64,
    #[serde(rename = "aggregatedPublishLatency75pct")]
    pub aggregated_publish_latency_75pct: f64,
    #[serde(rename = "aggregatedPublishLatency95pct")]
    pub aggregated_publish_latency_95pct: f64,
    #[serde(rename = "aggregatedPublishLatency99pct")]
    pub aggregated_publish_latency_99pct: f64,
    #[serde(rename = "aggregatedPublishLatency999pct")]
    pub aggregated_publish_latency_999pct: f64,
    #[serde(rename = "aggregatedPublishLatency9999pct")]
    pub aggregated_publish_latency_9999pct: f64,
    pub aggregated_publish_latency_max: f64,

    pub aggregated_publish_delay_latency_avg: f64,
    #[serde(rename = "aggregatedPublishDelayLatency50pct")]
    pub aggregated_publish_delay_latency_50pct: f64,
    #[serde(rename = "aggregatedPublishDelayLatency99pct")]
    pub aggregated_publish_delay_latency_99pct: f64,
    #[serde(rename = "aggregatedPublishDelayLatency9999pct")]
    pub aggregated_publish_delay_latency_9999pct: f64,
    pub aggregated_publish_delay_latency_max: f64,

    pub aggregated_end_to_end_latency_avg: f64,
    #[serde(rename = "aggregatedEndToEndLatency50pct")]
    pub aggregated_end_to_end_latency_50pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency75pct")]
    pub aggregated_end_to_end_latency_75pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency95pct")]
    pub aggregated_end_to_end_latency_95pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency99pct")]
    pub aggregated_end_to_end_latency_99pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency999pct")]
    pub aggregated_end_to_end_latency_999pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency9999pct")]
    pub aggregated_end_to_end_latency_9999pct: f64,
    pub aggregated_end_to_end_latency_max: f64,
}

/// The broker's use of the host over the measured time, read from /proc by pid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub pid: i32,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// CPU seconds per GB (10^9 bytes) of message payload produced.
    #[serde(rename = "cpuSecondsPerGBIn")]
    pub cpu_seconds_per_gb_in: f64,
    /// CPU seconds per GB consumed (all subscriptions).
    #[serde(rename = "cpuSecondsPerGBOut")]
    pub cpu_seconds_per_gb_out: f64,
    /// The largest resident set seen in the samples (VmRSS), and the kernel's high-water mark.
    pub peak_rss_bytes: u64,
    pub rss_high_water_bytes: u64,
}

impl TestResult {
    pub(crate) fn push_period(
        &mut self,
        seconds: f64,
        rates: (f64, f64, f64),
        backlog: i64,
        publish: &Percentiles,
        delay: &Percentiles,
        e2e: &Percentiles,
    ) {
        self.sample_seconds.push(seconds);
        self.publish_rate.push(rates.0);
        self.publish_error_rate.push(rates.1);
        self.consume_rate.push(rates.2);
        self.backlog.push(backlog);
        self.publish_latency_avg.push(publish.avg);
        self.publish_latency_50pct.push(publish.p50);
        self.publish_latency_75pct.push(publish.p75);
        self.publish_latency_95pct.push(publish.p95);
        self.publish_latency_99pct.push(publish.p99);
        self.publish_latency_999pct.push(publish.p999);
        self.publish_latency_9999pct.push(publish.p9999);
        self.publish_latency_max.push(publish.max);
        self.publish_delay_latency_avg.push(delay.avg);
        self.publish_delay_latency_50pct.push(delay.p50);
        self.publish_delay_latency_99pct.push(delay.p99);
        self.publish_delay_latency_max.push(delay.max);
        self.end_to_end_latency_avg.push(e2e.avg);
        self.end_to_end_latency_50pct.push(e2e.p50);
        self.end_to_end_latency_75pct.push(e2e.p75);
        self.end_to_end_latency_95pct.push(e2e.p95);
        self.end_to_end_latency_99pct.push(e2e.p99);
        self.end_to_end_latency_999pct.push(e2e.p999);
        self.end_to_end_latency_9999pct.push(e2e.p9999);
        self.end_to_end_latency_max.push(e2e.max);
    }

    pub(crate) fn set_aggregated(
        &mut self,
        publish: &Percentiles,
        delay: &Percentiles,
        e2e: &Percentiles,
    ) {
        self.aggregated = Aggregated {
            aggregated_publish_latency_avg: publish.avg,
            aggregated_publish_latency_50pct: publish.p50,
            aggregated_publish_latency_75pct: publish.p75,
            aggregated_publish_latency_95pct: publish.p95,
            aggregated_publish_latency_99pct: publish.p99,
            aggregated_publish_latency_999pct: publish.p999,
            aggregated_publish_latency_9999pct: publish.p9999,
            aggregated_publish_latency_max: publish.max,
            aggregated_publish_delay_latency_avg: delay.avg,
            aggregated_publish_delay_latency_50pct: delay.p50,
            aggregated_publish_delay_latency_99pct: delay.p99,
            aggregated_publish_delay_latency_9999pct: delay.p9999,
            aggregated_publish_delay_latency_max: delay.max,
            aggregated_end_to_end_latency_avg: e2e.avg,
            aggregated_end_to_end_latency_50pct: e2e.p50,
            aggregated_end_to_end_latency_75pct: e2e.p75,
            aggregated_end_to_end_latency_95pct: e2e.p95,
            aggregated_end_to_end_latency_99pct: e2e.p99,
            aggregated_end_to_end_latency_999pct: e2e.p999,
            aggregated_end_to_end_latency_9999pct: e2e.p9999,
            aggregated_end_to_end_latency_max: e2e.max,
        };
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data")
    }

    pub fn load(path: &std::path::Path) -> Result<TestResult, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The terminal summary of a finished run.
    pub fn summary(&self) -> String {
        let a = &self.aggregated;
        let mut out = format!(
            "{} ({}): {} topic(s) x {} partitions, {} B messages, {} producer(s) and {} consumer(s) per topic\n",
            self.workload,
            self.driver,
            self.topics,
            self.partitions / self.topics.max(1),
            self.message_size,
            self.producers_per_topic,
            self.consumers_per_topic
        );
        out += &format!(
            "target rate {:.0} msg/s{}\n",
            self.target_rate,
            if self.max_rate_search {
                " (the maximum sustainable rate found)"
            } else {
                ""
            }
        );
        out += &format!(
            "publish  {:>10.0} msg/s {:>8.1} MB/s   consume {:>10.0} msg/s {:>8.1} MB/s   backlog at end {}\n",
            self.aggregated_publish_rate,
            self.aggregated_publish_mbps,
            self.aggregated_consume_rate,
            self.aggregated_consume_mbps,
            self.backlog.last().copied().unwrap_or(0)
        );
        out += "                        avg      p50      p75      p95      p99    p99.9   p99.99      max\n";
        out += &format!(
            "publish latency ms {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}\n",
            a.aggregated_publish_latency_avg,
            a.aggregated_publish_latency_50pct,
            a.aggregated_publish_latency_75pct,
            a.aggregated_publish_latency_95pct,
            a.aggregated_publish_latency_99pct,
            a.aggregated_publish_latency_999pct,
            a.aggregated_publish_latency_9999pct,
            a.aggregated_publish_latency_max
        );
        out += &format!(
            "publish delay us   {:>8.0} {:>8.0} {:>8} {:>8} {:>8.0} {:>8} {:>8.0} {:>8.0}\n",
            a.aggregated_publish_delay_latency_avg,
            a.aggregated_publish_delay_latency_50pct,
            "",
            "",
            a.aggregated_publish_delay_latency_99pct,
            "",
            a.aggregated_publish_delay_latency_9999pct,
            a.aggregated_publish_delay_latency_max
        );
        out += &format!(
            "end to end ms      {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}\n",
            a.aggregated_end_to_end_latency_avg,
            a.aggregated_end_to_end_latency_50pct,
            a.aggregated_end_to_end_latency_75pct,
            a.aggregated_end_to_end_latency_95pct,
            a.aggregated_end_to_end_latency_99pct,
            a.aggregated_end_to_end_latency_999pct,
            a.aggregated_end_to_end_latency_9999pct,
            a.aggregated_end_to_end_latency_max
        );
        if let Some(r) = &self.resources {
            out += &format!(
                "broker (pid {}): {:.1} CPU-s, {:.2} CPU-s/GB in, {:.2} CPU-s/GB out, peak RSS {:.0} MiB (high-water {:.0} MiB)\n",
                r.pid,
                r.cpu_seconds,
                r.cpu_seconds_per_gb_in,
                r.cpu_seconds_per_gb_out,
                r.peak_rss_bytes as f64 / 1048576.0,
                r.rss_high_water_bytes as f64 / 1048576.0
            );
        }
        out
    }
}

/// A period's line while a run goes on (as OMB logs them).
pub fn period_line(
    seconds: f64,
    rates: (f64, f64, f64),
    mbps: (f64, f64),
    backlog: i64,
    publish: &Percentiles,
    e2e: &Percentiles,
) -> String {
    format!(
        "{seconds:>6.0}s  pub {:>9.0} msg/s {:>7.1} MB/s  err {:>5.0}/s | cons {:>9.0} msg/s {:>7.1} MB/s | backlog {:>8} | pub ms p50 {:.2} p99 {:.2} max {:.1} | e2e ms p50 {:.2} p99 {:.2} max {:.1}",
        rates.0, mbps.0, rates.1, rates.2, mbps.1, backlog, publish.p50, publish.p99, publish.max,
        e2e.p50, e2e.p99, e2e.max
    )
}
