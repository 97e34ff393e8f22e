//! The web console (issue 21) end to end: a running broker's admin listener serves it, headless
//! Chromium opens each page, and what a real Kafka client did shows there: the topic it created
//! with its partitions and the core that owns each, the record it produced in the message
//! browser, and a group's lag falling as the group consumes. No page reports an error.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};

use crate::kit::broker::Broker;
use crate::kit::browser::{self, Browser};
use crate::kit::client::{consumer, create_topic, produce, producer, read_n, Sent};

#[test]
fn console_pages_show_topics_messages_groups_and_lag() {
    if !browser::available("console_pages_show_topics_messages_groups_and_lag") {
        return;
    }
    let broker = Broker::start(&[]);
    let addr = broker.addr.as_str();
    let admin = broker.admin.clone().expect("the admin listener");
    create_topic(addr, "console-t", 3, &[("retention.ms", "3600000")]);
    let mut first = Sent::new("ck", r#"{"hello":"console","n":1}"#);
    first.headers.push(("source".into(), b"test".to_vec()));
    let records = [first, Sent::new("ck2", "second"), Sent::new("ck3", "third")];
    produce(&producer(addr, &[]), "console-t", Some(1), &records).unwrap();
    // A group reads one record of three and commits: its lag is 2.
    let group = consumer(
        addr,
        &[
            ("group.id", "console-g"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    group.subscribe(&["console-t"]).unwrap();
    let got = read_n(&group, 1);
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("console-t", 1, rdkafka::Offset::Offset(got[0].offset + 1))
        .unwrap();
    group.commit(&offsets, CommitMode::Sync).unwrap();

    let mut page = Browser::start();
    let base = format!("http://{admin}/");

    page.open(&format!("{base}#/"));
    let brokers = page.wait_for_text("[data-testid=brokers]", |t| t.contains("live"));
    assert!(brokers.contains("(controller)"), "{brokers}");
    let charts = page.eval("document.querySelectorAll('[data-testid=chart]').length");
    assert_eq!(charts, 6);

    page.open(&format!("{base}#/topics"));
    let topics = page.wait_for_text("[data-testid=topics]", |t| t.contains("console-t"));
    let row = topics.lines().find(|l| l.contains("console-t")).unwrap();
    assert!(row.contains("\t3\t1"), "partitions and replicas: {row:?}");
    assert!(!topics.contains("__consumer_offsets"), "{topics}");

    page.open(&format!("{base}#/topics/console-t"));
    let partitions = page.wait_for_text("[data-testid=partitions]", |t| t.contains("/ core "));
    let owned = partitions.lines().filter(|l| l.contains("node 0 / core "));
    assert_eq!(owned.count(), 3, "{partitions}");
    let one = partitions.lines().find(|l| l.starts_with("1\t")).unwrap();
    assert!(
        one.contains("\t3\t"),
        "partition 1 ends at offset 3: {one:?}"
    );

    page.open(&format!(
        "{base}#/messages?topic=console-t&partition=1&format=json"
    ));
    let shown = page.wait_for_text("[data-testid=records]", |t| t.contains("ck"));
    assert!(
        shown.contains("\"hello\": \"console\""),
        "pretty JSON: {shown}"
    );
    assert!(shown.contains("source=test"), "{shown}");
    assert!(
        shown.contains("second") && shown.contains("third"),
        "{shown}"
    );
    page.open(&format!(
        "{base}#/messages?topic=console-t&partition=1&offset=2&format=hex"
    ));
    let tail = page.wait_for_text("[data-testid=records]", |t| t.contains("74 68"));
    assert!(tail.contains("74 68 69 72 64"), "'third' as hex: {tail}");
    assert!(!tail.contains("ck2"), "from offset 2 only: {tail}");

    page.open(&format!("{base}#/groups"));
    page.wait_for_text("[data-testid=groups]", |t| t.contains("console-g"));
    page.open(&format!("{base}#/groups/console-g"));
    page.wait_for_text("[data-testid=total-lag]", |t| t.ends_with('2'));
    let members = page.wait_for_text("[data-testid=members]", |t| t.contains("console-t-"));
    assert!(
        members.contains("rdkafka"),
        "the member's client id: {members}"
    );
    // The group consumes the rest: the page, refreshing itself, shows the lag gone.
    let rest = read_n(&group, 2);
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("console-t", 1, rdkafka::Offset::Offset(rest[1].offset + 1))
        .unwrap();
    group.commit(&offsets, CommitMode::Sync).unwrap();
    page.wait_for_text("[data-testid=total-lag]", |t| t.ends_with('0'));
    drop(group);

    // A partition this node does not have: the page says so in its banner, not in a crash.
    page.open(&format!("{base}#/messages?topic=no-such-topic&partition=0"));
    let banner = page.wait_for_text("#error", |t| !t.is_empty());
    assert!(banner.contains("no-such-topic"), "{banner}");
    // The failed load is what the error collection must catch (else it catches nothing).
    page.eval("1");
    let failed_loads = page
        .errors
        .iter()
        .filter(|e| e.contains("/v1/messages"))
        .count();
    assert!(
        failed_loads > 0,
        "the 404 went unnoticed: {:?}",
        page.errors
    );
    page.errors.retain(|e| !e.contains("/v1/messages"));

    std::thread::sleep(Duration::from_millis(300));
    page.eval("1");
    assert!(
        page.errors.is_empty(),
        "the pages reported errors: {:?}",
        page.errors
    );
}

/// Writes the README's screenshots of the console (docs/console/*.png) from a broker under a
/// steady load with a running group: `cargo test --test it console_screenshots -- --ignored`.
#[test]
#[ignore]
fn console_screenshots() {
    if !browser::available("console_screenshots") {
        return;
    }
    let broker = Broker::start(&[]);
    let addr = broker.addr.clone();
    let admin = broker.admin.clone().expect("the admin listener");
    create_topic(&addr, "orders", 6, &[("retention.ms", "86400000")]);
    create_topic(&addr, "payments", 3, &[]);
    create_topic(&addr, "audit-log", 1, &[("cleanup.policy", "compact")]);
    let orders: Vec<Sent> = (0..120)
        .map(|i| {
            let mut sent = Sent::new(
                &format!("user-{}", i % 17),
                &format!(
                    r#"{{"order":{i},"user":"user-{}","amount":{:.2},"currency":"EUR"}}"#,
                    i % 17,
                    f64::from(i) * 1.37
                ),
            );
            sent.headers.push(("source".into(), b"web".to_vec()));
            sent
        })
        .collect();
    for partition in 0..6 {
        produce(
            &producer(&addr, &[]),
            "orders",
            Some(partition),
            &orders[..20],
        )
        .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer = producer(&addr, &[]);
            let batch: Vec<Sent> = (0..200)
                .map(|i| Sent::new(&format!("k{i}"), "payment"))
                .collect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                produce(&producer, "payments", None, &batch).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let billing = consumer(
        &addr,
        &[
            ("group.id", "billing"),
            ("client.id", "billing-worker-1"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    billing.subscribe(&["orders"]).unwrap();
    read_n(&billing, 90);
    billing.commit_consumer_state(CommitMode::Sync).unwrap();
    let mut page = Browser::start();
    let base = format!("http://{admin}/");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    let shots = [
        ("overview", "#/", "[data-testid=brokers]", 30),
        ("topics", "#/topics", "[data-testid=topics]", 0),
        ("topic", "#/topics/orders", "[data-testid=partitions]", 0),
        ("groups", "#/groups", "[data-testid=groups]", 0),
        ("group", "#/groups/billing", "[data-testid=offsets]", 0),
        (
            "messages",
            "#/messages?topic=orders&partition=2&format=json&limit=8",
            "[data-testid=records]",
            0,
        ),
    ];
    for (name, fragment, ready, seconds) in shots {
        page.open(&format!("{base}{fragment}"));
        page.wait_for_text(ready, |t| !t.is_empty());
        for _ in 0..seconds * 5 {
            let _ = billing.poll(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(dir.join(format!("{name}.png")), page.screenshot()).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    assert!(page.errors.is_empty(), "{:?}", page.errors);
}
