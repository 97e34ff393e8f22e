//! OpenMessaging-Benchmark workload and Kafka driver files, read as OMB writes them, and the
//! `--scale` factor that fits one file to a laptop or to a 64-core host.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How producers key their messages (OMB's `keyDistributor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyDistributor {
    /// No key: the client spreads messages over partitions.
    #[default]
    NoKey,
    /// Keys from a fixed set, in turn.
    KeyRoundRobin,
    /// A new key from the clock for each message.
    RandomNano,
}

/// An OMB workload (`workloads/*.yaml`). Fields OMB has and this harness does not use are
/// ignored, so OMB's files load as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    #[serde(default)]
    pub key_distributor: KeyDistributor,
    pub message_size: usize,
    #[serde(default)]
    pub use_randomized_payloads: bool,
    /// The share of each payload that is random (the rest compresses well).
    #[serde(default = "half")]
    pub random_bytes_ratio: f64,
    #[serde(default)]
    pub randomized_payload_pool_size: usize,
    /// OMB's payload file, relative to the workload file or the working directory; a generated
    /// payload of `messageSize` when it is not there.
    #[serde(default)]
    pub payload_file: Option<String>,
    pub subscriptions_per_topic: u32,
    pub producers_per_topic: u32,
    pub consumer_per_subscription: u32,
    /// Messages a second over all producers; 0: find the maximum sustainable rate.
    pub producer_rate: f64,
    /// Where the search for the maximum rate starts.
    #[serde(default = "start_rate")]
    pub producer_start_rate: f64,
    /// Messages produced and not yet consumed that still count as keeping up.
    #[serde(default = "acceptable_backlog")]
    pub acceptable_backlog: u64,
    /// Consumers start once this much is produced, then drain it while producers go on.
    #[serde(default, rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_gb: f64,
    pub test_duration_minutes: f64,
    #[serde(default = "one")]
    pub warmup_duration_minutes: f64,
}

fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn start_rate() -> f64 {
    10_000.0
}
fn acceptable_backlog() -> u64 {
    10_000
}

impl Workload {
    pub fn parse(text: &str) -> Result<Workload, String> {
        let workload: Workload = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        workload.check()?;
        Ok(workload)
    }

    pub fn load(path: &Path) -> Result<Workload, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Workload::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn check(&self) -> Result<(), String> {
        let positive = [
            ("topics", self.topics),
            ("partitionsPerTopic", self.partitions_per_topic),
            ("producersPerTopic", self.producers_per_topic),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.message_size == 0 {
            return Err("messageSize must be at least 1".into());
        }
        if self.subscriptions_per_topic > 0 && self.consumer_per_subscription == 0 {
            return Err("consumerPerSubscription must be at least 1 with subscriptions".into());
        }
        if self.producer_rate < 0.0 || self.test_duration_minutes <= 0.0 {
            return Err("producerRate must be >= 0 and testDurationMinutes > 0".into());
        }
        if !(0.0..=1.0).contains(&self.random_bytes_ratio) {
            return Err("randomBytesRatio must be between 0 and 1".into());
        }
        Ok(())
    }

    /// The workload with its rates, backlog and durations multiplied by `factor`; topics,
    /// partitions, clients and message size stay, so the shape of the load is the same.
    pub fn scaled(&self, factor: f64) -> Workload {
        Workload {
            producer_rate: (self.producer_rate * factor).round(),
            producer_start_rate: (self.producer_start_rate * factor).max(1.0).round(),
            acceptable_backlog: ((self.acceptable_backlog as f64 * factor) as u64).max(100),
            consumer_backlog_gb: self.consumer_backlog_gb * factor,
            test_duration_minutes: self.test_duration_minutes * factor,
            warmup_duration_minutes: self.warmup_duration_minutes * factor,
            ..self.clone()
        }
    }

    pub fn partitions(&self) -> u32 {
        self.topics * self.partitions_per_topic
    }

    /// OMB's payload file when it exists (next to the workload file, or under the working
    /// directory).
    pub fn payload_path(&self, workload_dir: &Path) -> Option<PathBuf> {
        let file = self.payload_file.as_ref()?;
        [workload_dir.join(file), PathBuf::from(file)]
            .into_iter()
            .find(|p| p.is_file())
    }
}

/// An OMB Kafka driver file (`driver-kafka/*.yaml`): client and topic settings as Java
/// properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverFile {
    #[serde(default = "kafka")]
    pub name: String,
    #[serde(default)]
    pub driver_class: Option<String>,
    #[serde(default = "one_replica")]
    pub replication_factor: i32,
    #[serde(default)]
    pub reset: bool,
    #[serde(default)]
    pub topic_config: String,
    #[serde(default)]
    pub common_config: String,
    #[serde(default)]
    pub producer_config: String,
    #[serde(default)]
    pub consumer_config: String,
}

fn kafka() -> String {
    "Kafka".into()
}
fn one_replica() -> i32 {
    1
}

impl DriverFile {
    pub fn parse(text: &str) -> Result<DriverFile, String> {
        let driver: DriverFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if driver.replication_factor < 1 {
            return Err("replicationFactor must be at least 1".into());
        }
        for block in [
            &driver.topic_config,
            &driver.common_config,
            &driver.producer_config,
            &driver.consumer_config,
        ] {
            properties(block)?;
        }
        Ok(driver)
    }

    pub fn load(path: &Path) -> Result<DriverFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        DriverFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// librdkafka settings for producers: common then producer properties, translated.
    pub fn producer_settings(&self) -> Vec<(String, String)> {
        librdkafka_settings(&[&self.common_config, &self.producer_config])
    }

    pub fn consumer_settings(&self) -> Vec<(String, String)> {
        librdkafka_settings(&[&self.common_config, &self.consumer_config])
    }

    pub fn topic_settings(&self) -> Vec<(String, String)> {
        properties(&self.topic_config).unwrap_or_default()
    }
}

/// `key=value` lines (Java properties as OMB writes them: `#` and `!` comments, `=` or `:`).
pub fn properties(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line
            .find(['=', ':'])
            .ok_or_else(|| format!("`{line}` is not key=value"))?;
        out.push((
            line[..split].trim().to_string(),
            line[split + 1..].trim().to_string(),
        ));
    }
    Ok(out)
}

/// Java client properties that librdkafka names otherwise.
const RENAMED: &[(&str, &str)] = &[
    ("fetch.max.wait.ms", "fetch.wait.max.ms"),
    ("max.request.size", "message.max.bytes"),
    ("buffer.memory", "queue.buffering.max.kbytes"),
];

/// Java client properties with no librdkafka meaning (serializers, the Java client's own
/// timeouts and pools): left out.
const JAVA_ONLY: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "default.api.timeout.ms",
    "max.poll.records",
    "client.dns.lookup",
    "interceptor.classes",
    "partitioner.class",
];

/// Joins property blocks (later wins) and translates them for librdkafka.
pub fn librdkafka_settings(blocks: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for block in blocks {
        for (key, value) in properties(block).unwrap_or_default() {
            if JAVA_ONLY.contains(&key.as_str()) {
                continue;
            }
            let (key, value) = match RENAMED.iter().find(|(java, _)| *java == key) {
                Some((_, "queue.buffering.max.kbytes")) => (
                    "queue.buffering.max.kbytes".to_string(),
                    value
                        .parse::<u64>()
                        .map(|b| (b / 1024).max(1).to_string())
                        .unwrap_or(value),
                ),
                Some((_, ours)) => (ours.to_string(), value),
                None => (key, value),
            };
            out.retain(|(k, _)| *k != key);
            out.push((key, value));
        }
    }
    out
}

/// Sets `key` in `settings`, replacing an earlier value.
pub fn set(settings: &mut Vec<(String, String)>, key: &str, value: &str) {
    settings.retain(|(k, _)| k != key);
    settings.push((key.to_string(), value.to_string()));
}

/// The driver used when none is named: one replica, the OMB Kafka driver's client settings.
pub const DEFAULT_DRIVER: &str = "\
name: Kafka
driverClass: io.openmessaging.benchmark.driver.kafka.KafkaBenchmarkDriver
replicationFactor: 1
reset: true
topicConfig: |
commonConfig: |
  bootstrap.servers=localhost:9092
producerConfig: |
  acks=all
  linger.ms=1
  batch.size=131072
consumerConfig: |
  auto.offset.reset=earliest
  enable.auto.commit=false
  max.partition.fetch.bytes=10485760
";
