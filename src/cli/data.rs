//! `sluice produce` (records from stdin) and `sluice consume` (records to stdout).

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, Write};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::cluster::{existing, metadata};
use super::{error_name, pair, wait, Connection, Failure, Outcome};

/// Deliveries awaited at most at once (the rest wait in librdkafka's queue).
const IN_FLIGHT: usize = 10_000;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// The topic to write to
    topic: String,
    /// Send every record to this partition (default: by key, spread when there is none)
    #[arg(short, long)]
    partition: Option<i32>,
    /// The key of every record
    #[arg(short, long)]
    key: Option<String>,
    /// Split each line at the first DELIM into key and value
    #[arg(short = 'K', long, value_name = "DELIM")]
    key_delimiter: Option<String>,
    /// A header on every record (NAME=VALUE); repeat for more
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// acks: all, 1 or 0
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd
    #[arg(short = 'z', long, default_value = "none")]
    compression: String,
}

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The topics to read
    #[arg(required = true)]
    topics: Vec<String>,
    /// Where to start: beginning, end, an offset N, or -N (N before the end); in a group only
    /// beginning or end, for partitions the group has no offset for
    #[arg(short, long, default_value = "beginning", allow_hyphen_values = true)]
    offset: String,
    /// Read as a member of this consumer group (committing its offsets)
    #[arg(short, long)]
    group: Option<String>,
    /// Only these partitions (not with --group)
    #[arg(short, long, value_delimiter = ',', conflicts_with = "group")]
    partitions: Vec<i32>,
    /// Stop after this many records
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Stop at the end of every partition instead of waiting for more
    #[arg(short, long)]
    exit: bool,
    /// Each record as FORMAT: %t topic, %p partition, %o offset, %k key, %s value, %T timestamp
    /// (ms), %h headers, %K key length, %S value length, %% a percent sign; \n, \t
    #[arg(short, long, default_value = "%s\\n")]
    format: String,
}

pub fn produce(args: ProduceArgs, conn: &Connection) -> Outcome {
    let headers = args
        .headers
        .iter()
        .map(|h| pair(h, "--header"))
        .collect::<Result<Vec<_>, _>>()?;
    let producer: FutureProducer = conn.client(&[
        ("acks", args.acks.as_str()),
        ("compression.type", args.compression.as_str()),
        ("linger.ms", "5"),
    ])?;
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut outcome = Tally::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| Failure::Failed(format!("reading stdin: {e}")))?;
        let (key, value) = match &args.key_delimiter {
            Some(delim) => match line.split_once(delim.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (args.key.clone(), line),
        };
        let mut record_headers = OwnedHeaders::new();
        for (name, value) in &headers {
            record_headers = record_headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(&args.topic)
            .payload(value.as_bytes())
            .headers(record_headers);
        if let Some(key) = &key {
            record = record.key(key.as_bytes());
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some(d) => outcome.settle(conn, &args.topic, wait(d), &mut out),
                        None => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                Err((e, _)) => return Err(Failure::Failed(format!("producing: {e}"))),
            }
        }
        while pending.len() > IN_FLIGHT {
            let d = pending.pop_front().expect("pending");
            outcome.settle(conn, &args.topic, wait(d), &mut out);
        }
    }
    while let Some(d) = pending.pop_front() {
        outcome.settle(conn, &args.topic, wait(d), &mut out);
    }
    let _ = out.flush();
    if !conn.json {
        eprintln!(
            "{} record(s) produced to {}{}",
            outcome.produced,
            args.topic,
            if outcome.failed > 0 {
                format!(", {} failed", outcome.failed)
            } else {
                String::new()
            }
        );
    }
    if outcome.failed > 0 {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    produced: u64,
    failed: u64,
    /// The first failure of each kind is printed; the rest are counted.
    seen: BTreeSet<String>,
}

impl Tally {
    fn settle(
        &mut self,
        conn: &Connection,
        topic: &str,
        delivery: Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
        out: &mut impl Write,
    ) {
        match delivery {
            Ok(Ok(delivered)) => {
                self.produced += 1;
                if conn.json {
                    let line = json!({"topic": topic, "partition": delivered.0,
                        "offset": delivered.1});
                    let _ = writeln!(out, "{line}");
                }
            }
            Ok(Err((e, _))) => {
                self.failed += 1;
                let why = match e.rdkafka_error_code() {
                    Some(code) if code as i32 > 0 => error_name(code as i16),
                    _ => e.to_string(),
                };
                if self.seen.insert(why.clone()) {
                    eprintln!("error: a record to {topic} was not produced: {why}");
                }
            }
            Err(_) => self.failed += 1,
        }
    }
}

pub fn consume(args: ConsumeArgs, conn: &Connection) -> Outcome {
    let format = Format::parse(&args.format);
    let start = match args.offset.as_str() {
        "beginning" | "earliest" | "start" => Offset::Beginning,
        "end" | "latest" => Offset::End,
        n => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Offset::Offset(n),
            Ok(n) => Offset::OffsetTail(n.unsigned_abs() as i64),
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "--offset {n}: expected beginning, end, N or -N"
                )))
            }
        },
    };
    let reset = if matches!(start, Offset::End) {
        "latest"
    } else {
        "earliest"
    };
    let eof = if args.exit { "true" } else { "false" };
    let consumer: BaseConsumer = match &args.group {
        Some(group) => {
            if !matches!(start, Offset::Beginning | Offset::End) {
                return Err(Failure::Failed(
                    "--offset in a group is beginning or end (the group's committed offsets \
                     decide the rest; `sluice group reset-offsets` moves them)"
                        .into(),
                ));
            }
            let consumer: BaseConsumer = conn.client(&[
                ("group.id", group.as_str()),
                ("auto.offset.reset", reset),
                ("enable.partition.eof", eof),
            ])?;
            let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| Failure::Failed(format!("subscribing: {e}")))?;
            consumer
        }
        None => {
            let consumer: BaseConsumer = conn.client(&[
                ("group.id", "sluice-cli"),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", reset),
                ("enable.partition.eof", eof),
            ])?;
            let found = metadata(conn, Some(&args.topics))?;
            let mut list = TopicPartitionList::new();
            for (name, topic) in existing(&found)? {
                for p in &topic.partitions {
                    if args.partitions.is_empty() || args.partitions.contains(&p.partition_index) {
                        list.add_partition_offset(&name, p.partition_index, start)
                            .map_err(|e| Failure::Failed(e.to_string()))?;
                    }
                }
            }
            if list.count() == 0 {
                return Err(Failure::Failed("no partition to read".into()));
            }
            consumer
                .assign(&list)
                .map_err(|e| Failure::Failed(format!("assigning partitions: {e}")))?;
            consumer
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut read = 0u64;
    let mut at_end: BTreeSet<(String, i32)> = BTreeSet::new();
    let result = loop {
        if args.count.is_some_and(|n| read >= n) {
            break Ok(());
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if out.flush().is_err() {
                    break Ok(());
                }
            }
            Some(Ok(message)) => {
                read += 1;
                at_end.remove(&(message.topic().to_string(), message.partition()));
                let written = if conn.json {
                    writeln!(out, "{}", as_json(&message))
                } else {
                    out.write_all(&format.render(&message))
                };
                if written.is_err() {
                    break Ok(()); // stdout closed (`| head`): done.
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // The event names the partition, not the topic: each read topic's partition of
                // that number is at its end if its position reached its high watermark.
                let assigned = consumer.assignment().unwrap_or_default();
                let position = consumer.position().unwrap_or_default();
                for topic in &args.topics {
                    if assigned.find_partition(topic, partition).is_none() {
                        continue;
                    }
                    let high = consumer
                        .fetch_watermarks(topic, partition, conn.timeout())
                        .map(|m| m.1);
                    let here = position
                        .find_partition(topic, partition)
                        .map(|e| e.offset());
                    let done = match (here, high) {
                        (Some(Offset::Offset(here)), Ok(high)) => here >= high,
                        _ => true,
                    };
                    if done {
                        at_end.insert((topic.clone(), partition));
                    }
                }
                let all = assigned.elements();
                let finished = all
                    .iter()
                    .all(|e| at_end.contains(&(e.topic().to_string(), e.partition())));
                if args.exit && !all.is_empty() && finished {
                    break Ok(());
                }
            }
            Some(Err(e)) => {
                // Without -g the group is librdkafka's placeholder, never used: a cluster that
                // does not let this principal describe it does not stop the read.
                let fatal = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                    | Some(RDKafkaErrorCode::TopicAuthorizationFailed) => true,
                    Some(RDKafkaErrorCode::GroupAuthorizationFailed) => args.group.is_some(),
                    _ => false,
                };
                if fatal {
                    break Err(Failure::Failed(format!("consuming: {e}")));
                }
            }
        }
    };
    let _ = out.flush();
    if args.group.is_some() && read > 0 {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            return Err(Failure::Failed(format!("committing offsets: {e}")));
        }
    }
    consumer.unsubscribe();
    result
}

fn as_json<M: Message>(message: &M) -> serde_json::Value {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let headers: Vec<_> = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| json!({"key": h.key, "value": text(h.value)}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message.timestamp().to_millis(),
        "key": text(message.key()),
        "value": text(message.payload()),
        "headers": headers,
    })
}

/// A `--format` string, parsed once.
struct Format(Vec<Piece>);

enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLength,
    ValueLength,
}

impl Format {
    fn parse(text: &str) -> Format {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('s') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some(other) => {
                        if other != '%' {
                            literal.push(b'%');
                        }
                        let mut buf = [0u8; 4];
                        literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    None => {
                        literal.push(b'%');
                        continue;
                    }
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => literal.push(b'\n'),
                        Some('t') => literal.push(b'\t'),
                        Some('\\') | None => literal.push(b'\\'),
                        Some(other) => {
                            literal.push(b'\\');
                            let mut buf = [0u8; 4];
                            literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    continue;
                }
                other => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Format(pieces)
    }

    fn render<M: Message>(&self, m: &M) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Topic => out.extend_from_slice(m.topic().as_bytes()),
                Piece::Partition => out.extend_from_slice(m.partition().to_string().as_bytes()),
                Piece::Offset => out.extend_from_slice(m.offset().to_string().as_bytes()),
                Piece::Key => out.extend_from_slice(m.key().unwrap_or_default()),
                Piece::Value => out.extend_from_slice(m.payload().unwrap_or_default()),
                Piece::Timestamp => out.extend_from_slice(
                    m.timestamp()
                        .to_millis()
                        .unwrap_or(-1)
                        .to_string()
                        .as_bytes(),
                ),
                Piece::Headers => {
                    if let Some(headers) = m.headers() {
                        let parts: Vec<String> = headers
                            .iter()
                            .map(|h| {
                                let value = h.value.map(String::from_utf8_lossy);
                                format!("{}={}", h.key, value.unwrap_or_default())
                            })
                            .collect();
                        out.extend_from_slice(parts.join(",").as_bytes());
                    }
                }
                Piece::KeyLength => {
                    let len = m.key().map_or(-1, |k| k.len() as i64);
                    out.extend_from_slice(len.to_string().as_bytes())
                }
                Piece::ValueLength => {
                    let len = m.payload().map_or(-1, |v| v.len() as i64);
                    out.extend_from_slice(len.to_string().as_bytes())
                }
            }
        }
        out
    }
}
