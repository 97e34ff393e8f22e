//! Restarts: a clean stop keeps everything; `kill -9` during acks=all production keeps every
//! acknowledged record.

use crate::kit::cluster::{check_acknowledged, Cluster};
use crate::kit::{broker, client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use broker::Broker;

/// (partition, offset, value) of each acknowledged record, as the producer thread sees them.
type AckedLog = Arc<Mutex<Vec<crate::kit::cluster::Acked>>>;
use client::*;
use rdkafka::Offset;

#[test]
fn a_clean_restart_keeps_topics_and_records() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker.addr, "kept", 4, &[("retention.ms", "86400000")]);
    let producer = producer(&broker.addr, &[("acks", "all")]);
    let sent: Vec<Sent> = (0..100).map(|i| Sent::new("k", &format!("v{i}"))).collect();
    for p in 0..4 {
        produce(&producer, "kept", Some(p), &sent).unwrap();
    }
    drop(producer);
    broker.stop_with(libc::SIGINT);
    broker.restart();
    for p in 0..4 {
        let got: Vec<Sent> = consume(&broker.addr, "kept", p, Offset::Beginning, 100)
            .into_iter()
            .map(|g| g.sent)
            .collect();
        assert_eq!(got.len(), 100);
        assert_eq!(
            got.iter().map(|g| g.value.clone()).collect::<Vec<_>>(),
            sent.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
        );
    }
    // New records continue the offsets.
    let again = client::producer(&broker.addr, &[]);
    assert_eq!(
        produce(&again, "kept", Some(0), &[Sent::new("k", "after")]).unwrap(),
        vec![(0, 100)]
    );
}

/// A pause (SIGSTOP) and then `kill -9` during acks=all production, through the cluster kit
/// (one node): every acknowledged record is read back at its offset, once, in order.
#[test]
fn kill_9_during_acks_all_production_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start(1, &[]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "crash", 2, &[]);
    let acked: AckedLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bootstrap, acked, stop) = (bootstrap.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer = producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("linger.ms", "1"),
                    ("message.timeout.ms", "3000"),
                ],
            );
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Sent> = (0..20)
                    .map(|j| Sent::new("k", &format!("m{}", i * 20 + j)))
                    .collect();
                i += 1;
                let partition = (i % 2) as i32;
                match produce(&producer, "crash", Some(partition), &batch) {
                    Ok(offsets) => {
                        let mut acked = acked.lock().unwrap();
                        for ((p, o), s) in offsets.into_iter().zip(&batch) {
                            acked.push((p, o, s.value.clone().unwrap()));
                        }
                    }
                    Err(_) => break, // the broker is gone
                }
            }
        })
    };
    let wait_for = |count: usize| {
        while acked.lock().unwrap().len() < count {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for(1_000);
    cluster.pause(1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    cluster.resume(1);
    wait_for(2_000);
    cluster.kill9(1);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    cluster.restart(1);
    let acked = acked.lock().unwrap().clone();
    check_acknowledged(&cluster.bootstrap(), "crash", &acked);
}

/// A data dir written before the metadata image held brokers, assignments and producer-id blocks
/// (its `topics.toml` without them, the producer ids' end in a file of its own) starts: the
/// broker registers, takes every partition, and hands out producer ids past the old file's end.
#[test]
fn a_data_dir_from_before_assignments_is_taken_over() {
    if broker::single_node_only("a single node's data dir from before assignments") {
        return;
    }
    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
    use rdkafka::consumer::Consumer;
    use sluice::cluster::{FileStore, Image};

    let mut broker = Broker::start(&[]);
    create_topic(&broker.addr, "old", 3, &[]);
    let producer = producer(&broker.addr, &[]);
    produce(&producer, "old", Some(2), &[Sent::new("k", "v")]).unwrap();
    drop(producer);
    broker.stop_with(libc::SIGINT);

    let store = FileStore::new(broker.data_dir());
    let mut image = store.load().unwrap();
    assert_eq!(image.topics["old"].assignments.len(), 3);
    image.brokers.clear();
    image.producer_ids_end = 0;
    for meta in image.topics.values_mut() {
        meta.assignments = Default::default();
    }
    let legacy: String = image
        .to_toml()
        .lines()
        .filter(|line| !line.starts_with("producer_ids_end") && !line.starts_with("[brokers"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        !legacy.contains("assignments") && !legacy.contains("brokers"),
        "{legacy}"
    );
    std::fs::write(store.path(), legacy).unwrap();
    let metadata_dir = store.path().parent().unwrap().to_path_buf();
    std::fs::write(metadata_dir.join("producer_ids"), "5000\n").unwrap();
    // Nor had it a metadata quorum's log.
    std::fs::remove_dir_all(metadata_dir.join("raft")).unwrap();

    broker.restart();
    let consumer = consumer(&broker.addr, &[]);
    let metadata = consumer
        .fetch_metadata(Some("old"), std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.brokers().len(), 1);
    let node = metadata.brokers()[0].id();
    let partitions = metadata.topics()[0].partitions();
    assert_eq!(partitions.len(), 3);
    for p in partitions {
        assert_eq!(
            (p.leader(), p.replicas(), p.isr()),
            (node, &[node][..], &[node][..])
        );
    }
    let got = consume(&broker.addr, "old", 2, Offset::Beginning, 1);
    assert_eq!(got[0].sent.value, Some(b"v".to_vec()));
    let mut s = crate::kit::raw::connect(&broker);
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let r: InitProducerIdResponse =
        crate::kit::raw::call(&mut s, ApiKey::InitProducerId, 4, 1, &request);
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 5000, "{}", r.producer_id.0);
    // The image holds all of it now.
    let image: Image = store.load().unwrap();
    assert_eq!(image.brokers.len(), 1);
    assert_eq!(image.topics["old"].assignments.len(), 3);
    assert!(image.producer_ids_end > r.producer_id.0);
}
