//! Hostile input against a running `sluice serve`: requests built to make the broker allocate,
//! panic or hang (the array count that once aborted it, for every API key), batches that once
//! panicked recompression, connections past the admission limits, idle and trickling
//! connections. After each, other clients must still produce and consume as if nothing
//! happened, and the broker must be the same process.

use crate::kit::{broker, client, raw};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use broker::Broker;
use bytes::Bytes;
use client::*;
use raw::{connect, frame, read_response};
use rdkafka::Offset;
use sluice::model::batch;
use sluice::model::records::{BatchBuilder, Record};
use sluice::model::{Offset as LogOffset, TimestampMs};

/// Whether the broker closed `stream` (rather than answering or leaving it open).
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn assert_alive(broker: &Broker, pid: i32) {
    assert_eq!(broker.pid(), pid);
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    assert_eq!(
        unsafe { libc::kill(pid, 0) },
        0,
        "the broker process is gone"
    );
}

/// Produces one record to `good` and reads it back at the next offset.
fn still_serving(broker: &Broker, next: &mut i64) {
    let producer = producer(&broker.addr, &[("linger.ms", "0")]);
    let value = format!("still here {next}");
    let offsets = produce(&producer, "good", Some(0), &[Sent::new("k", &value)]).unwrap();
    assert_eq!(offsets, vec![(0, *next)]);
    let got = consume(&broker.addr, "good", 0, Offset::Offset(*next), 1);
    assert_eq!(got[0].sent.value.as_deref(), Some(value.as_bytes()));
    *next += 1;
}

#[test]
fn a_huge_array_count_for_every_api_key_costs_only_its_connection() {
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "good", 1, &[]);
    let pid = broker.pid();
    let mut next = 0;
    still_serving(&broker, &mut next);
    let served: Vec<_> = sluice::server::served_apis().collect();
    let mut refused = 0;
    for api_key in 0..=90i16 {
        let versions = served
            .iter()
            .find(|(key, _)| *key == api_key)
            .map(|(_, versions)| vec![*versions.start(), *versions.end()])
            .unwrap_or_else(|| vec![0]);
        for version in versions {
            // The count 0x7fffffff wherever the body's first array (or string) lands: as an int32
            // in old versions, as the varint 2^31 - 1 + 1 in flexible ones, with a few bytes after.
            let mut body = Vec::new();
            for _ in 0..6 {
                body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
                body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
            }
            let mut s = connect(&broker);
            s.write_all(&frame(api_key, version, 7, &body)).unwrap();
            // Either the connection is closed, or (an API whose body has no array, such as
            // ApiVersions v0) it is answered in order.
            match read_response(&mut s) {
                None => refused += 1,
                Some(answer) => assert_eq!(&answer[..4], &7i32.to_be_bytes()),
            }
        }
    }
    assert!(refused > 60, "only {refused} hostile requests were refused");
    assert_alive(&broker, pid);
    still_serving(&broker, &mut next);
}

fn record(offset: i64, value: &str) -> Record {
    Record {
        offset: LogOffset(offset),
        timestamp: TimestampMs(1),
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
    }
}

#[test]
fn batches_that_once_panicked_recompression_are_refused() {
    if broker::single_node_only("raw Produce to node 1, which may not lead the partition") {
        return;
    }
    // A topic whose codec differs from the producer's: the broker opens every batch.
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "good", 1, &[]);
    create_topic(&broker.addr, "zstd", 1, &[("compression.type", "zstd")]);
    let pid = broker.pid();
    let mut s = connect(&broker);

    // A batch that claims no records (count 0, last offset delta 0, CRC right).
    let mut empty = BatchBuilder::default().build(&[record(0, "x")]).to_vec();
    let count_at = 57; // records_count, after attributes .. producer fields
    empty[count_at..count_at + 4].copy_from_slice(&0i32.to_be_bytes());
    batch::set_crc(&mut empty);
    assert_eq!(
        raw::produce(&mut s, "zstd", Bytes::from(empty)).0,
        87,
        "INVALID_RECORD"
    );

    // Two records whose offset deltas run before the batch's span (-1 and 0), count and span
    // consistent: the records do not fit the batch.
    let built = BatchBuilder {
        span: Some((LogOffset(0), 1)),
        ..Default::default()
    }
    .build(&[record(0, "a"), record(1, "b")]);
    let mut shifted = built.to_vec();
    // The first record's offset delta (a zigzag varint) follows its length, attributes and
    // timestamp delta: 0 -> -1 is 0x00 -> 0x01.
    let first_record = batch::HEADER_BYTES;
    assert_eq!(shifted[first_record + 3], 0x00, "offset delta of record 0");
    shifted[first_record + 3] = 0x01;
    batch::set_crc(&mut shifted);
    assert_eq!(
        raw::produce(&mut s, "zstd", Bytes::from(shifted)).0,
        2,
        "CORRUPT_MESSAGE"
    );

    // The same connection and topic still take a good batch, stored as zstd.
    assert_eq!(raw::produce(&mut s, "zstd", built.clone()).0, 0);
    let got = consume(&broker.addr, "zstd", 0, Offset::Beginning, 2);
    assert_eq!(got[1].sent.value.as_deref(), Some(&b"b"[..]));
    assert_alive(&broker, pid);
}

#[test]
fn clients_may_not_write_the_internal_topics() {
    // A zstd batch that inflates a thousandfold, aimed at the coordinator's own topic: it would
    // be opened when the broker loads its groups.
    let broker = Broker::start(&[]);
    create_topic(&broker.addr, "good", 1, &[]);
    let mut s = connect(&broker);
    let bomb = BatchBuilder {
        codec: sluice::model::Codec::Zstd,
        ..Default::default()
    }
    .build(&[Record {
        value: Some(Bytes::from(vec![0u8; 4 << 20])),
        ..record(0, "")
    }]);
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    for topic in ["__consumer_offsets", "__transaction_state"] {
        assert_eq!(
            raw::produce(&mut s, topic, bomb.clone()).0,
            17,
            "INVALID_TOPIC_EXCEPTION"
        );
    }
    let mut next = 0;
    still_serving(&broker, &mut next);
}

fn api_versions_answered(s: &mut TcpStream, correlation_id: i32) -> bool {
    if s.write_all(&frame(18, 0, correlation_id, &[])).is_err() {
        return false;
    }
    match read_response(s) {
        Some(answer) => answer[..4] == correlation_id.to_be_bytes(),
        None => false,
    }
}

#[test]
fn connections_past_the_per_ip_limit_are_closed_and_places_come_back() {
    if broker::single_node_only("the other nodes' connections come from the same address") {
        return;
    }
    let broker = Broker::start(&["max.connections.per.ip=3"]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(&broker)).collect();
    for (i, s) in held.iter_mut().enumerate() {
        assert!(api_versions_answered(s, i as i32), "connection {i}");
    }
    let mut fourth = connect(&broker);
    assert!(
        closed(&mut fourth),
        "a fourth connection from 127.0.0.1 is closed"
    );
    held.pop();
    // The place comes back once the broker sees the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect(&broker);
        if api_versions_answered(&mut again, 9) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_max_connections_new_ones_wait_until_a_place_frees() {
    if broker::single_node_only(
        "the other nodes' replica fetches count against max.connections too: one of them may \
         take the place freed before the waiting client's turn",
    ) {
        return;
    }
    let broker = Broker::start(&["max.connections=2"]);
    let mut first = connect(&broker);
    let mut second = connect(&broker);
    assert!(api_versions_answered(&mut first, 1));
    assert!(api_versions_answered(&mut second, 2));
    // The third is queued by the kernel, not served.
    let mut third = connect(&broker);
    third.write_all(&frame(18, 0, 3, &[])).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served past max.connections: {early:?}"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = read_response(&mut third).expect("served once a place freed");
    assert_eq!(&answer[..4], &3i32.to_be_bytes());
}

#[test]
fn idle_and_trickling_connections_are_closed() {
    let broker = Broker::start(&[
        "connections.max.idle.ms=300",
        "socket.request.read.timeout.ms=500",
    ]);
    // Nothing sent at all.
    let mut idle = connect(&broker);
    let started = Instant::now();
    assert!(closed(&mut idle));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A length prefix, then a frame that never completes: 10 of 1000 bytes, a byte now and then.
    let mut trickle = connect(&broker);
    trickle.write_all(&1000i32.to_be_bytes()).unwrap();
    trickle.write_all(&[0; 10]).unwrap();
    let started = Instant::now();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(100));
        if trickle.write_all(&[0]).is_err() {
            break;
        }
    }
    assert!(closed(&mut trickle));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A connection in use stays open past the idle time.
    let mut busy = connect(&broker);
    for i in 0..6 {
        assert!(api_versions_answered(&mut busy, i), "request {i}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// APIs whose well-formed random requests would change what the test relies on (topics,
/// partitions, broker configs), left out of the stress test's valid-looking requests.
const STATEFUL_ADMIN_APIS: [i16; 6] = [19, 20, 21, 33, 37, 44];

/// One attack on a fresh connection, picked by `rng`: noise, framed noise, a well-formed
/// request of a served API (often with a few bytes changed), a hostile length, or a frame cut
/// short. Returns nothing: whatever the broker does with the connection is fine, as long as
/// it does it to this connection only.
fn attack(addr: &str, rng: &mut sluice::protocol::schema::sample::Rng, served: &[(i16, i16)]) {
    use sluice::protocol::schema::{self, sample};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let noise = |rng: &mut sample::Rng, len: usize| -> Vec<u8> {
        (0..len).map(|_| rng.next_u64() as u8).collect()
    };
    let framed = |body: &[u8]| -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    };
    let (api_key, version) = served[rng.below(served.len() as u64) as usize];
    let message = schema::request(api_key).expect("a served API has a schema");
    let request = sample::sample_request(message, version, rng.next_u64() as i32, rng);
    let bytes = match rng.below(6) {
        0 => {
            let len = rng.below(2048) as usize;
            noise(rng, len)
        }
        1 => {
            let len = rng.below(512) as usize;
            framed(&noise(rng, len))
        }
        2 => framed(&request),
        3 => {
            let mut mutated = request.clone();
            for _ in 0..=rng.below(4) {
                let at = 8 + rng.below(mutated.len().saturating_sub(8).max(1) as u64) as usize;
                if at < mutated.len() {
                    mutated[at] = rng.next_u64() as u8;
                }
            }
            framed(&mutated)
        }
        4 => {
            let len = [i32::MAX, i32::MIN, -1, 100 << 20, 64 << 20][rng.below(5) as usize];
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(&request);
            out
        }
        _ => {
            let whole = framed(&request);
            whole[..rng.below(whole.len() as u64) as usize].to_vec()
        }
    };
    let _ = s.write_all(&bytes);
    let mut sink = [0u8; 4096];
    let _ = s.read(&mut sink);
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

#[test]
fn many_connections_of_garbage_while_real_clients_produce_and_consume() {
    const ATTACKERS: usize = 6;
    const RUN: Duration = Duration::from_secs(12);
    /// What the broker may grow by under the attack: both shards' request budgets are 512 MiB,
    /// but nothing here sends more than a few KiB a connection.
    const RSS_GROWTH_KIB_MAX: u64 = 256 * 1024;
    let broker = Broker::start(&["auto.create.topics.enable=false"]);
    create_topic(&broker.addr, "stress-topic", 2, &[]);
    let pid = broker.pid();
    let served: Vec<(i16, i16)> = sluice::server::served_apis()
        .filter(|(key, _)| !STATEFUL_ADMIN_APIS.contains(key))
        .flat_map(|(key, versions)| versions.map(move |v| (key, v)))
        .collect();
    let rss_before = rss_kib(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut threads = Vec::new();
    for seed in 0..ATTACKERS as u64 {
        let (addr, served, stop, attacks) = (
            broker.addr.clone(),
            served.clone(),
            stop.clone(),
            attacks.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = sluice::protocol::schema::sample::Rng::new(seed + 1);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                attack(&addr, &mut rng, &served);
                attacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let rss_max = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            max
        })
    };

    // Meanwhile a real producer (acks=all) and, afterwards, a consumer: everything acknowledged
    // is read back at its offset.
    let producer = producer(&broker.addr, &[("acks", "all"), ("linger.ms", "2")]);
    let started = Instant::now();
    let mut acked = Vec::new();
    let mut round = 0;
    while started.elapsed() < RUN {
        let records: Vec<Sent> = (0..50)
            .map(|i| Sent::new(&format!("k{i}"), &format!("round {round} record {i}")))
            .collect();
        let partition = round % 2;
        let offsets = produce(&producer, "stress-topic", Some(partition), &records)
            .unwrap_or_else(|e| panic!("a produce failed under the attack: {e}"));
        acked.extend(offsets.into_iter().zip(records));
        round += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let rss_max = rss_max.join().unwrap();
    let attacks = attacks.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{attacks} hostile connections, {} records acknowledged, RSS {rss_before} KiB before, \
         {rss_max} KiB at most",
        acked.len()
    );
    assert!(attacks > 1000, "only {attacks} attacks ran");
    assert_alive(&broker, pid);
    assert!(
        rss_max <= rss_before + RSS_GROWTH_KIB_MAX,
        "RSS grew from {rss_before} KiB to {rss_max} KiB"
    );
    for partition in 0..2 {
        let expected: Vec<_> = acked.iter().filter(|((p, _), _)| *p == partition).collect();
        let got = consume(
            &broker.addr,
            "stress-topic",
            partition,
            Offset::Beginning,
            expected.len(),
        );
        for (((_, offset), sent), got) in expected.iter().zip(&got) {
            assert_eq!((got.offset, &got.sent.value), (*offset, &sent.value));
        }
    }
}
