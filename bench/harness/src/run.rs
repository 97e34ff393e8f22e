//! Running a workload: topics, librdkafka producers (one thread each, paced by schedule) and
//! consumers (one thread each, a consumer group per subscription), the maximum-rate search,
//! warm-up, sampling every period, and the aggregated result.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::resources::{ProcReader, Reading};
use crate::result::{period_line, Resources, TestResult};
use hdrhistogram::Histogram;

use crate::stats::{histogram, quantiles, ClientStats, Percentiles, Totals};
use crate::workload::{set, DriverFile, KeyDistributor, Workload};

/// How to run a workload.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub bootstrap: String,
    pub driver: DriverFile,
    /// Settings over the driver's for producers and consumers (a client profile, a sweep
    /// point). librdkafka ignores a producer setting on a consumer and the other way round.
    pub client_overrides: Vec<(String, String)>,
    /// Multiplies the workload's rates, backlog and durations (`Workload::scaled`).
    pub scale: f64,
    /// Messages a second over all producers instead of the workload's (after scaling; 0: find
    /// the maximum sustainable rate).
    pub rate: Option<f64>,
    /// The sampling period (OMB: 10 s).
    pub period: Duration,
    /// The broker's pid when it runs on this host: its CPU and memory are accounted.
    pub broker_pid: Option<i32>,
    /// Where the workload file is (OMB's payload files are relative to it).
    pub workload_dir: PathBuf,
    pub progress: bool,
    /// How long each step of the maximum-rate search offers one rate.
    pub search_step: Duration,
    pub keep_topics: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            bootstrap: "localhost:9092".into(),
            driver: DriverFile::parse(crate::workload::DEFAULT_DRIVER).expect("valid"),
            client_overrides: Vec::new(),
            scale: 1.0,
            rate: None,
            period: Duration::from_secs(10),
            broker_pid: None,
            workload_dir: PathBuf::from("."),
            progress: true,
            search_step: Duration::from_secs(3),
            keep_topics: false,
        }
    }
}

/// Most steps of the maximum-rate search.
const SEARCH_STEPS_MAX: usize = 14;
/// How long producers get to deliver what they hold, and consumers to drain, at the end.
const DRAIN: Duration = Duration::from_secs(20);

fn monotonic_micros() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(wall_micros());
    h.finish()
}

/// Payloads of `size` bytes whose first `ratio` is random and the rest a repeating text (so
/// that compression has the share of work the workload asks for).
pub fn generated_payloads(size: usize, ratio: f64, count: usize) -> Vec<Vec<u8>> {
    let mut state = random_u64() | 1;
    let text = b"sluice bench payload, compressible tail. ";
    (0..count.max(1))
        .map(|_| {
            let random = (size as f64 * ratio).round() as usize;
            let mut payload = Vec::with_capacity(size);
            while payload.len() < random {
                // xorshift64: fast, and random enough to defeat compression.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                payload.extend_from_slice(&state.to_le_bytes());
            }
            payload.truncate(random);
            while payload.len() < size {
                let n = (size - payload.len()).min(text.len());
                payload.extend_from_slice(&text[..n]);
            }
            payload
        })
        .collect()
}

struct Delivery {
    stats: Arc<ClientStats>,
    size: usize,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    /// When the message was handed to the client, in `monotonic_micros`.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: usize) {
        match result {
            Ok(_) => {
                self.stats
                    .latency
                    .record(monotonic_micros().saturating_sub(sent as u64));
                self.stats.count(self.size);
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Producers' rate, messages a second each, as f64 bits (0: no limit).
type SharedRate = Arc<AtomicU64>;

struct ProducerTask {
    topic: String,
    payloads: Arc<Vec<Vec<u8>>>,
    keys: KeyDistributor,
    rate: SharedRate,
    stop: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
}

fn run_producer(producer: ThreadedProducer<Delivery>, task: ProducerTask) {
    let mut rate = f64::from_bits(task.rate.load(Ordering::Relaxed));
    let mut pacer = crate::pace::Pacer::new(rate);
    let mut buf = Vec::new();
    let mut n = 0usize;
    while !task.stop.load(Ordering::Relaxed) {
        let now_rate = f64::from_bits(task.rate.load(Ordering::Relaxed));
        if now_rate != rate {
            rate = now_rate;
            pacer = crate::pace::Pacer::new(rate);
        }
        let due = pacer.wait();
        let payload = &task.payloads[n % task.payloads.len()];
        buf.clear();
        buf.extend_from_slice(payload);
        if buf.len() >= 8 {
            buf[..8].copy_from_slice(&wall_micros().to_le_bytes());
        }
        let key = match task.keys {
            KeyDistributor::NoKey => None,
            KeyDistributor::KeyRoundRobin => Some(format!("key-{}", n % 10_000)),
            KeyDistributor::RandomNano => Some(format!("{}", monotonic_micros() ^ n as u64)),
        };
        n += 1;
        task.stats.delay.record(
            Instant::now()
                .saturating_duration_since(due)
                .as_micros()
                .max(1) as u64,
        );
        let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(
            &task.topic,
            monotonic_micros() as usize,
        )
        .payload(&buf[..]);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        task.stats.attempted.fetch_add(1, Ordering::Relaxed);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The client holds all it may: wait for deliveries (the lateness shows in
                    // the publish delay of the messages after this one).
                    record = back;
                    if task.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((_, _)) => {
                    task.stats.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    let _ = producer.flush(DRAIN);
}

struct ConsumerTask {
    stop: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
    assigned: Arc<AtomicUsize>,
    /// Probe records received (`PROBE_KEY`): counted here, not in `stats`.
    probes: Arc<AtomicUsize>,
}

/// The key of the probe records `await_consumers_fetching` sends, one to each partition.
const PROBE_KEY: &[u8] = b"sluice-bench-probe";
/// How long consumers get to receive every probe (a consumer of 10,000 partitions on two cores
/// takes 10-30 s to look up where to start in each).
const PROBE_WAIT: Duration = Duration::from_secs(180);

fn run_consumer(consumer: BaseConsumer, task: ConsumerTask) {
    let mut received = 0u64;
    while !task.stop.load(Ordering::Relaxed) {
        // The assignment is read when the consumer is idle, and now and then when it is not.
        let mut look = received % 4096 == 0;
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) if message.key() == Some(PROBE_KEY) => {
                task.probes.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or(&[]);
                let sent = if payload.len() >= 8 {
                    u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"))
                } else {
                    message.timestamp().to_millis().unwrap_or(0).max(0) as u64 * 1000
                };
                task.stats
                    .latency
                    .record(wall_micros().saturating_sub(sent));
                task.stats.count(payload.len());
                received += 1;
            }
            Some(Err(_)) => {
                task.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            None => look = true,
        }
        if look {
            let count = consumer.assignment().map_or(0, |a| a.count());
            task.assigned.store(count, Ordering::Relaxed);
        }
    }
}

fn client_config(bootstrap: &str, settings: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(key, value);
    }
    config.set("bootstrap.servers", bootstrap);
    config
}

/// A running set of clients.
struct Clients {
    producers: Vec<Arc<ClientStats>>,
    consumers: Vec<Arc<ClientStats>>,
    assigned: Vec<Arc<AtomicUsize>>,
    probes: Vec<Arc<AtomicUsize>>,
    threads: Vec<JoinHandle<()>>,
    producer_stop: Arc<AtomicBool>,
    consumer_stop: Arc<AtomicBool>,
    subscriptions: u64,
}

impl Clients {
    fn published(&self) -> Totals {
        Totals::of(self.producers.iter().map(|s| &**s))
    }
    fn consumed(&self) -> Totals {
        Totals::of(self.consumers.iter().map(|s| &**s))
    }
    /// Messages acknowledged to producers and not yet received, summed over subscriptions (a
    /// consumer may see a message before its producer sees the acknowledgement: never below 0).
    fn backlog(&self) -> i64 {
        ((self.published().messages * self.subscriptions) as i64 - self.consumed().messages as i64)
            .max(0)
    }

    /// Every client's latencies since the last take, merged: publish, publish delay and end to
    /// end; each also added to `totals`.
    fn take_periods(&self, totals: &mut [Histogram<u64>; 3]) -> [Histogram<u64>; 3] {
        let mut period = [histogram(), histogram(), histogram()];
        for s in &self.producers {
            s.latency.take_period(&mut period[0]);
            s.delay.take_period(&mut period[1]);
        }
        for s in &self.consumers {
            s.latency.take_period(&mut period[2]);
        }
        for (total, h) in totals.iter_mut().zip(&period) {
            total.add(h).expect("same bounds");
        }
        period
    }

    /// Messages handed to producers and not yet acknowledged (or failed).
    fn in_flight(&self) -> u64 {
        let p = self.published();
        p.attempted.saturating_sub(p.messages + p.errors)
    }
}

fn settings_map(settings: &[(String, String)]) -> std::collections::BTreeMap<String, String> {
    settings.iter().cloned().collect()
}

/// Runs `workload` (scaled by `options.scale`) against the broker at `options.bootstrap`.
pub fn run(workload: &Workload, options: &RunOptions) -> Result<TestResult, String> {
    let mut w = workload.scaled(options.scale);
    if let Some(rate) = options.rate {
        w.producer_rate = rate.max(0.0);
    }
    let mut producer_settings = options.driver.producer_settings();
    let mut consumer_settings = options.driver.consumer_settings();
    for (key, value) in &options.client_overrides {
        set(&mut producer_settings, key, value);
        set(&mut consumer_settings, key, value);
    }
    for settings in [&mut producer_settings, &mut consumer_settings] {
        set(settings, "bootstrap.servers", &options.bootstrap);
    }
    let id = random_u64() % 1_000_000;
    let slug: String = w
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let topics: Vec<String> = (0..w.topics)
        .map(|i| format!("sluice-bench-{slug}-{id:06}-{i}"))
        .collect();
    create_topics(options, &w, &topics)?;
    let outcome = run_on_topics(&w, options, &topics, &producer_settings, &consumer_settings);
    if !options.keep_topics {
        if let Err(e) = delete_topics(options, &topics) {
            eprintln!("sluice-bench: could not delete the benchmark topics: {e}");
        }
    }
    let mut result = outcome?;
    result.scale = options.scale;
    result.producer_config = settings_map(&producer_settings);
    result.consumer_config = settings_map(&consumer_settings);
    Ok(result)
}

fn admin(options: &RunOptions) -> Result<AdminClient<DefaultClientContext>, String> {
    client_config(&options.bootstrap, &options.driver.consumer_settings())
        .create()
        .map_err(|e| format!("admin client: {e}"))
}

fn create_topics(options: &RunOptions, w: &Workload, topics: &[String]) -> Result<(), String> {
    let config = options.driver.topic_settings();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut topic = NewTopic::new(
                t,
                w.partitions_per_topic as i32,
                TopicReplication::Fixed(options.driver.replication_factor),
            );
            for (key, value) in &config {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let admin = admin(options)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let results = futures_lite::future::block_on(admin.create_topics(&new, &opts))
        .map_err(|e| format!("creating topics at {}: {e}", options.bootstrap))?;
    for result in results {
        result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
    }
    Ok(())
}

fn delete_topics(options: &RunOptions, topics: &[String]) -> Result<(), String> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let admin = admin(options)?;
    let results = futures_lite::future::block_on(admin.delete_topics(&names, &AdminOptions::new()))
        .map_err(|e| e.to_string())?;
    for result in results {
        result.map_err(|(topic, code)| format!("{topic}: {code}"))?;
    }
    Ok(())
}

fn start_consumers(
    clients: &mut Clients,
    w: &Workload,
    options: &RunOptions,
    topics: &[String],
    settings: &[(String, String)],
) -> Result<(), String> {
    for topic in topics {
        for subscription in 0..w.subscriptions_per_topic {
            // Topic names are unique to the run, and so are these.
            let group = format!("{topic}-sub-{subscription}");
            for _ in 0..w.consumer_per_subscription {
                let mut config = client_config(&options.bootstrap, settings);
                config.set("group.id", &group);
                let consumer: BaseConsumer =
                    config.create().map_err(|e| format!("consumer: {e}"))?;
                consumer
                    .subscribe(&[topic])
                    .map_err(|e| format!("subscribing to {topic}: {e}"))?;
                let task = ConsumerTask {
                    stop: clients.consumer_stop.clone(),
                    stats: Arc::new(ClientStats::default()),
                    assigned: Arc::new(AtomicUsize::new(0)),
                    probes: Arc::new(AtomicUsize::new(0)),
                };
                clients.consumers.push(task.stats.clone());
                clients.assigned.push(task.assigned.clone());
                clients.probes.push(task.probes.clone());
                clients.threads.push(
                    std::thread::Builder::new()
                        .name("bench-consumer".into())
                        .spawn(move || run_consumer(consumer, task))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
    }
    // Every partition of every subscription assigned before the clock starts.
    let want = (w.partitions() * w.subscriptions_per_topic) as usize;
    let assigned = || sum(&clients.assigned);
    if !wait_for(Duration::from_secs(60), || assigned() >= want) {
        return Err(format!(
            "consumers were assigned {} of {want} partitions in 60 s",
            assigned()
        ));
    }
    Ok(())
}

fn sum(counts: &[Arc<AtomicUsize>]) -> usize {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Waits (checking every 50 ms) until `done`, for `limit` at most; whether it came.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Sends one probe record to every partition and waits until the consumers have received them
/// all: every consumer has then found where to start in each partition it was assigned and is
/// fetching from it. OMB waits for one probe per topic (`ensureTopicsAreReady`); one per
/// partition matters for a wide topic, whose librdkafka consumer looks up its starting offsets
/// one partition at a time and takes many seconds over 10,000 of them: a rate search or a
/// warm-up that began before would measure that, not the broker.
fn await_consumers_fetching(
    clients: &Clients,
    w: &Workload,
    options: &RunOptions,
    topics: &[String],
    settings: &[(String, String)],
) -> Result<(), String> {
    let producer: BaseProducer = client_config(&options.bootstrap, settings)
        .create()
        .map_err(|e| format!("probe producer: {e}"))?;
    for topic in topics {
        for partition in 0..w.partitions_per_topic as i32 {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .key(PROBE_KEY)
                .payload(&[]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(format!("probe to {topic} [{partition}]: {e}")),
                }
            }
        }
    }
    // Delivered, by the clock (rdkafka's `flush` counts each poll that served an event as a
    // whole poll interval, and gives up early when thousands of deliveries come in).
    let delivered = wait_for(PROBE_WAIT, || {
        producer.poll(Duration::from_millis(50));
        producer.in_flight_count() == 0
    });
    if !delivered {
        return Err(format!(
            "{} probes not delivered in {} s",
            producer.in_flight_count(),
            PROBE_WAIT.as_secs()
        ));
    }
    let want = (w.partitions() * w.subscriptions_per_topic) as usize;
    let received = || sum(&clients.probes);
    if !wait_for(PROBE_WAIT, || received() >= want) {
        return Err(format!(
            "consumers received {} of {want} probes (one per partition and subscription) in {} s",
            received(),
            PROBE_WAIT.as_secs()
        ));
    }
    Ok(())
}

fn start_producers(
    clients: &mut Clients,
    w: &Workload,
    options: &RunOptions,
    topics: &[String],
    settings: &[(String, String)],
    rate: &SharedRate,
) -> Result<(), String> {
    let payloads = match w.payload_path(&options.workload_dir) {
        Some(path) => {
            vec![std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?]
        }
        None => generated_payloads(
            w.message_size,
            w.random_bytes_ratio,
            if w.use_randomized_payloads {
                w.randomized_payload_pool_size.max(1)
            } else {
                1
            },
        ),
    };
    let payloads = Arc::new(payloads);
    for topic in topics {
        for _ in 0..w.producers_per_topic {
            let stats = Arc::new(ClientStats::default());
            let producer: ThreadedProducer<Delivery> = client_config(&options.bootstrap, settings)
                .create_with_context(Delivery {
                    stats: stats.clone(),
                    size: payloads[0].len(),
                })
                .map_err(|e| format!("producer: {e}"))?;
            let task = ProducerTask {
                topic: topic.clone(),
                payloads: payloads.clone(),
                keys: w.key_distributor,
                rate: rate.clone(),
                stop: clients.producer_stop.clone(),
                stats: stats.clone(),
            };
            clients.producers.push(stats);
            clients.threads.push(
                std::thread::Builder::new()
                    .name("bench-producer".into())
                    .spawn(move || run_producer(producer, task))
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(())
}

fn set_rate(rate: &SharedRate, total: f64, producers: usize) {
    let each = if total > 0.0 {
        total / producers as f64
    } else {
        0.0
    };
    rate.store(each.to_bits(), Ordering::Relaxed);
}

/// OMB's search for the maximum sustainable rate: double the offered rate while it holds, then
/// bisect between the last rate that held and the first that did not. A rate holds when
/// producers get 95% of it acknowledged, the messages waiting in the producers for an
/// acknowledgement stay under 100 ms of sending (or `acceptableBacklog`), and consumers keep
/// up (the backlog stays under `acceptableBacklog` or shrinks): a client queue that grows would
/// show as acknowledgements for a while and as latency without bound.
fn search_max_rate(
    clients: &Clients,
    w: &Workload,
    options: &RunOptions,
    rate: &SharedRate,
    bar: &ProgressBar,
) -> f64 {
    let producers = clients.producers.len();
    let mut offered = w.producer_start_rate.max(1.0);
    let (mut good, mut bad) = (0.0f64, f64::INFINITY);
    let mut best_seen = 0.0f64;
    for _ in 0..SEARCH_STEPS_MAX {
        set_rate(rate, offered, producers);
        // What a rate that did not hold left queued drains first (for a few seconds at most).
        let queue_max = (offered * 0.1).max(w.acceptable_backlog as f64);
        settle(clients, queue_max);
        let (before, backlog_before) = (clients.published(), clients.backlog());
        std::thread::sleep(options.search_step);
        let delta = clients.published().since(before);
        let backlog = clients.backlog();
        let acked = delta.messages as f64 / options.search_step.as_secs_f64();
        let queued = clients.in_flight();
        let held = acked >= 0.95 * offered
            && delta.errors == 0
            && queued as f64 <= queue_max
            && (backlog <= w.acceptable_backlog as i64 || backlog < backlog_before);
        if held {
            best_seen = best_seen.max(acked);
        }
        bar.suspend(|| {
            println!(
                "rate search: offered {offered:.0} msg/s, acknowledged {acked:.0}, waiting in producers {queued}, backlog {backlog}: {}",
                if held { "held" } else { "did not hold" }
            )
        });
        if held {
            good = offered;
        } else {
            bad = offered;
        }
        if good > 0.0 && bad.is_finite() && bad / good < 1.1 {
            break;
        }
        offered = match (good > 0.0, bad.is_finite()) {
            (true, true) => (good + bad) / 2.0,
            (true, false) => good * 2.0,
            (false, _) => offered / 2.0,
        };
    }
    if good > 0.0 {
        good
    } else {
        best_seen.max(1.0)
    }
}

/// Waits (5 s at most) until the messages waiting in the producers are `queue_max` or fewer.
fn settle(clients: &Clients, queue_max: f64) {
    let until = Instant::now() + Duration::from_secs(5);
    while clients.in_flight() as f64 > queue_max && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_on_topics(
    w: &Workload,
    options: &RunOptions,
    topics: &[String],
    producer_settings: &[(String, String)],
    consumer_settings: &[(String, String)],
) -> Result<TestResult, String> {
    let mut clients = Clients {
        producers: Vec::new(),
        consumers: Vec::new(),
        assigned: Vec::new(),
        probes: Vec::new(),
        threads: Vec::new(),
        producer_stop: Arc::new(AtomicBool::new(false)),
        consumer_stop: Arc::new(AtomicBool::new(false)),
        subscriptions: u64::from(w.subscriptions_per_topic),
    };
    let outcome = drive(
        &mut clients,
        w,
        options,
        topics,
        producer_settings,
        consumer_settings,
    );
    clients.producer_stop.store(true, Ordering::Relaxed);
    clients.consumer_stop.store(true, Ordering::Relaxed);
    for thread in clients.threads.drain(..) {
        let _ = thread.join();
    }
    outcome
}

fn drive(
    clients: &mut Clients,
    w: &Workload,
    options: &RunOptions,
    topics: &[String],
    producer_settings: &[(String, String)],
    consumer_settings: &[(String, String)],
) -> Result<TestResult, String> {
    let backlog_bytes = (w.consumer_backlog_gb * 1e9) as u64;
    if backlog_bytes == 0 {
        start_consumers(clients, w, options, topics, consumer_settings)?;
        await_consumers_fetching(clients, w, options, topics, producer_settings)?;
    }
    let search = w.producer_rate == 0.0;
    let rate: SharedRate = Arc::new(AtomicU64::new(0));
    let producers = (w.topics * w.producers_per_topic) as usize;
    set_rate(
        &rate,
        if search {
            w.producer_start_rate
        } else {
            w.producer_rate
        },
        producers,
    );
    start_producers(clients, w, options, topics, producer_settings, &rate)?;

    let measured = Duration::from_secs_f64(w.test_duration_minutes * 60.0);
    let bar = if options.progress {
        let bar = ProgressBar::new(measured.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:12} [{bar:40}] {pos}/{len} s")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let target = if search {
        bar.set_message("rate search");
        let found = search_max_rate(clients, w, options, &rate, &bar);
        set_rate(&rate, found, producers);
        // The last step may have been one that did not hold: its queue drains before the
        // warm-up, so that the measured run is of the found rate alone.
        settle(clients, (found * 0.1).max(w.acceptable_backlog as f64));
        found
    } else {
        w.producer_rate
    };
    if backlog_bytes > 0 {
        bar.set_message("backlog");
        while clients.published().bytes < backlog_bytes {
            std::thread::sleep(Duration::from_millis(100));
        }
        start_consumers(clients, w, options, topics, consumer_settings)?;
    }
    bar.set_message("warm-up");
    std::thread::sleep(Duration::from_secs_f64(w.warmup_duration_minutes * 60.0));
    for stats in clients.producers.iter().chain(&clients.consumers) {
        stats.reset_latencies();
    }

    let proc = options.broker_pid.map(ProcReader::new);
    let read_proc = || proc.as_ref().and_then(|p| p.read().ok());
    let proc_start = read_proc();
    let mut peak_rss = proc_start.map_or(0, |r| r.rss_bytes);

    bar.set_message("measuring");
    let start = Instant::now();
    let (start_pub, start_cons) = (clients.published(), clients.consumed());
    let (mut last_pub, mut last_cons, mut last_at) = (start_pub, start_cons, start);
    // The whole measured run: every period's histograms added up.
    let mut totals = [histogram(), histogram(), histogram()];
    let mut result = TestResult {
        workload: w.name.clone(),
        driver: options.driver.name.clone(),
        message_size: w.message_size as u64,
        topics: w.topics,
        partitions: w.partitions(),
        producers_per_topic: w.producers_per_topic,
        consumers_per_topic: w.subscriptions_per_topic * w.consumer_per_subscription,
        target_rate: target,
        max_rate_search: search,
        ..TestResult::default()
    };
    loop {
        let elapsed = start.elapsed();
        let drained = backlog_bytes == 0 || clients.backlog() <= w.acceptable_backlog as i64;
        if elapsed >= measured && (drained || elapsed >= measured * 3) {
            break;
        }
        let next = (last_at - start) + options.period;
        let until = if elapsed < measured {
            next.min(measured)
        } else {
            next
        };
        std::thread::sleep(until.saturating_sub(start.elapsed()));
        let now = Instant::now();
        let seconds = now.duration_since(last_at).as_secs_f64();
        let (published, consumed) = (clients.published(), clients.consumed());
        let (p, c) = (published.since(last_pub), consumed.since(last_cons));
        let rates = (
            p.messages as f64 / seconds,
            p.errors as f64 / seconds,
            c.messages as f64 / seconds,
        );
        let mbps = (
            p.bytes as f64 / seconds / 1e6,
            c.bytes as f64 / seconds / 1e6,
        );
        let [publish, delay, e2e] = clients.take_periods(&mut totals);
        let (publish, delay, e2e) = (
            Percentiles::of(&publish, 1000.0),
            Percentiles::of(&delay, 1.0),
            Percentiles::of(&e2e, 1000.0),
        );
        let backlog = clients.backlog();
        let at = now.duration_since(start).as_secs_f64();
        result.push_period(at, rates, backlog, &publish, &delay, &e2e);
        bar.suspend(|| println!("{}", period_line(at, rates, mbps, backlog, &publish, &e2e)));
        bar.set_position(at as u64);
        if let Some(r) = read_proc() {
            peak_rss = peak_rss.max(r.rss_bytes);
        }
        (last_pub, last_cons, last_at) = (published, consumed, now);
    }
    let window = start.elapsed().as_secs_f64();
    let (p, c) = (
        clients.published().since(start_pub),
        clients.consumed().since(start_cons),
    );
    let proc_end = read_proc();
    bar.finish_and_clear();

    // Producers stop and deliver what they hold; consumers read everything that was delivered.
    clients.producer_stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + DRAIN;
    while clients.backlog() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }

    result.aggregated_publish_rate = p.messages as f64 / window;
    result.aggregated_consume_rate = c.messages as f64 / window;
    result.aggregated_publish_mbps = p.bytes as f64 / window / 1e6;
    result.aggregated_consume_mbps = c.bytes as f64 / window / 1e6;
    // What was recorded after the last period (the drain) counts in the totals too.
    clients.take_periods(&mut totals);
    let [publish, delay, e2e] = &totals;
    result.set_aggregated(
        &Percentiles::of(publish, 1000.0),
        &Percentiles::of(delay, 1.0),
        &Percentiles::of(e2e, 1000.0),
    );
    result.aggregated_publish_latency_quantiles = quantiles(publish, 1000.0);
    result.aggregated_publish_delay_latency_quantiles = quantiles(delay, 1.0);
    result.aggregated_end_to_end_latency_quantiles = quantiles(e2e, 1000.0);
    if let (Some(pid), Some(a), Some(b)) = (options.broker_pid, proc_start, proc_end) {
        result.resources = Some(resources(pid, a, b, peak_rss, p.bytes, c.bytes));
    }
    Ok(result)
}

fn resources(
    pid: i32,
    a: Reading,
    b: Reading,
    peak: u64,
    bytes_in: u64,
    bytes_out: u64,
) -> Resources {
    let cpu = (b.cpu_seconds - a.cpu_seconds).max(0.0);
    let per_gb = |bytes: u64| {
        if bytes == 0 {
            0.0
        } else {
            cpu / (bytes as f64 / 1e9)
        }
    };
    Resources {
        pid,
        cpu_seconds: cpu,
        cpu_seconds_per_gb_in: per_gb(bytes_in),
        cpu_seconds_per_gb_out: per_gb(bytes_out),
        peak_rss_bytes: peak.max(b.rss_bytes),
        rss_high_water_bytes: b.rss_high_water_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_the_random_share() {
        let payloads = generated_payloads(1024, 0.5, 3);
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|p| p.len() == 1024));
        assert_ne!(payloads[0], payloads[1]);
        // The tail repeats: compressible; the head does not.
        assert_eq!(
            &payloads[0][512..512 + 41],
            &payloads[0][512 + 41..512 + 82]
        );
        let distinct: std::collections::HashSet<&[u8]> = payloads[0][..512].chunks(8).collect();
        assert!(distinct.len() > 60);
        assert_eq!(generated_payloads(5, 1.0, 0)[0].len(), 5);
    }
}
