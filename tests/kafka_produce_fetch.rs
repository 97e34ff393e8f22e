//! Produce and fetch through a real `sluice serve` with librdkafka.

#[path = "kafka/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "kafka/client.rs"]
#[allow(dead_code)]
mod client;

use broker::Broker;
use client::*;
use rdkafka::Offset;

fn records(n: usize, tag: &str) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("{tag}-value-{i}-{}", "x".repeat(i % 50)).into_bytes()),
            headers: vec![("h".into(), format!("{i}").into_bytes())],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

#[test]
fn acks_0_1_and_all_read_back_exactly_in_order() {
    let broker = Broker::start(&[]);
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        create_topic(&broker.addr, &topic, 1, &[]);
        let producer = producer(&broker.addr, &[("acks", acks)]);
        let sent = records(200, acks);
        let offsets = produce(&producer, &topic, Some(0), &sent).expect("produce");
        if acks != "0" {
            let expected: Vec<(i32, i64)> = (0..200).map(|i| (0, i)).collect();
            assert_eq!(offsets, expected, "acks={acks}");
        }
        let got = consume(&broker.addr, &topic, 0, Offset::Beginning, 200);
        let got_sent: Vec<Sent> = got.iter().map(|g| g.sent.clone()).collect();
        assert_eq!(got_sent, sent, "acks={acks}");
        assert!(got.iter().enumerate().all(|(i, g)| g.offset == i as i64));
    }
}
