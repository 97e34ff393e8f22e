//! The client commands of the `sluice` binary (issue 21) against a running broker: every topic
//! and group subcommand, produce from stdin and consume to stdout, cluster info and doctor, each
//! with `--json` parsed back and checked against what a real Kafka client (rdkafka) sees; a
//! stopped group's offsets moved by `group reset-offsets` and read from by a real consumer; a
//! running group's refused; bad `--brokers` and bad usage answered with one line and an exit code.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use serde_json::Value;

use crate::kit::broker::Broker;
use crate::kit::client::{consume, consumer, create_topic, produce, producer, read_n, Sent};

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    /// One JSON document per line (produce and consume).
    pub(crate) fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub(crate) fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{}\n{}", self.stdout, self.stderr);
        self
    }
}

/// `sluice ARGS --brokers ADDR`, with `stdin` piped in.
pub(crate) fn sluice(addr: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--brokers", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sluice group describe GROUP --json`: the group's document.
fn describe_group(addr: &str, group: &str) -> Value {
    sluice(addr, &["group", "describe", group, "--json"], "")
        .ok()
        .json()[0]
        .clone()
}

/// `sluice group reset-offsets GROUP ARGS`, which must succeed.
fn reset(addr: &str, group: &str, args: &[&str]) -> Run {
    let mut all = vec!["group", "reset-offsets", group];
    all.extend_from_slice(args);
    sluice(addr, &all, "").ok()
}

#[test]
fn topic_commands_create_describe_alter_grow_and_delete() {
    let broker = Broker::start(&[]);
    let addr = broker.addr.as_str();
    let created = sluice(
        addr,
        &[
            "topic",
            "create",
            "cli-a",
            "cli-b",
            "-p",
            "3",
            "-c",
            "cleanup.policy=compact",
            "--json",
        ],
        "",
    )
    .ok()
    .json();
    assert_eq!(created.as_array().unwrap().len(), 2, "{created}");
    assert!(created[0]["error"].is_null(), "{created}");
    // Again: refused, named as Kafka names it, exit 1.
    let again = sluice(addr, &["topic", "create", "cli-a"], "");
    assert_eq!(again.code, 1);
    assert!(
        again.stdout.contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        again.stdout
    );

    let listed = sluice(addr, &["topic", "list", "--json"], "").ok().json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"cli-a") && names.contains(&"cli-b"),
        "{listed}"
    );
    assert!(
        !names.contains(&"__consumer_offsets"),
        "internal topics listed: {listed}"
    );

    // describe agrees with what a Kafka client's Metadata says.
    let records = [Sent::new("k", "v1"), Sent::new("k", "v2")];
    produce(&producer(addr, &[]), "cli-a", Some(1), &records).unwrap();
    let described = sluice(addr, &["topic", "describe", "cli-a", "--json"], "")
        .ok()
        .json();
    let topic = &described[0];
    assert_eq!(topic["configs"]["cleanup.policy"], "compact", "{described}");
    let partitions = topic["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    assert_eq!(partitions[1]["high_watermark"], 2, "{described}");
    let metadata = consumer(addr, &[])
        .fetch_metadata(Some("cli-a"), Duration::from_secs(10))
        .unwrap();
    for (p, seen) in metadata.topics()[0].partitions().iter().zip(partitions) {
        let p_seen = partitions
            .iter()
            .find(|d| d["partition"] == p.id())
            .unwrap_or(seen);
        assert_eq!(p_seen["leader"], p.leader(), "{described}");
        assert_eq!(p_seen["replicas"], serde_json::json!(p.replicas()));
        assert_eq!(p_seen["isr"], serde_json::json!(p.isr()));
    }
    let text = sluice(addr, &["topic", "describe", "cli-a"], "")
        .ok()
        .stdout;
    assert!(
        text.contains("HIGH-WATERMARK") && text.contains("cleanup.policy=compact"),
        "{text}"
    );

    sluice(
        addr,
        &[
            "topic",
            "alter-config",
            "cli-a",
            "--set",
            "retention.ms=60000",
            "--delete",
            "cleanup.policy",
        ],
        "",
    )
    .ok();
    let configs = &sluice(addr, &["topic", "describe", "cli-a", "--json"], "")
        .ok()
        .json()[0]["configs"];
    assert_eq!(configs["retention.ms"], "60000", "{configs}");
    assert!(configs.get("cleanup.policy").is_none(), "{configs}");
    let refused = sluice(
        addr,
        &["topic", "alter-config", "cli-a", "--set", "no.such.key=1"],
        "",
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("INVALID_CONFIG"),
        "{}",
        refused.stderr
    );

    sluice(addr, &["topic", "add-partitions", "cli-a", "-n", "2"], "").ok();
    let grown = sluice(addr, &["topic", "list", "--json"], "").ok().json();
    let a = grown
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "cli-a")
        .unwrap();
    assert_eq!(a["partitions"], 5, "{grown}");

    sluice(addr, &["topic", "delete", "cli-a", "cli-b"], "").ok();
    let gone = sluice(addr, &["topic", "delete", "cli-a"], "");
    assert_eq!(gone.code, 1);
    assert!(
        gone.stdout.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        gone.stdout
    );
    let missing = sluice(addr, &["topic", "describe", "cli-a"], "");
    assert_eq!(missing.code, 1, "{}", missing.stdout);
}

#[test]
fn produce_and_consume_with_keys_headers_partitions_and_groups() {
    let broker = Broker::start(&[]);
    let addr = broker.addr.as_str();
    create_topic(addr, "cli-data", 2, &[]);
    let produced = sluice(
        addr,
        &[
            "produce",
            "cli-data",
            "-K",
            ":",
            "-H",
            "source=cli",
            "-p",
            "1",
            "--json",
        ],
        "k1:one\nk2:two\nthree\n",
    )
    .ok()
    .json_lines();
    assert_eq!(produced.len(), 3);
    let offsets: Vec<i64> = produced
        .iter()
        .map(|d| d["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 1, 2]);
    assert!(produced.iter().all(|d| d["partition"] == 1));
    // A real consumer reads what the CLI wrote, keys and headers included.
    let got = consume(addr, "cli-data", 1, Offset::Beginning, 3);
    assert_eq!(got[0].sent.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(got[0].sent.value.as_deref(), Some(&b"one"[..]));
    assert_eq!(got[2].sent.key, None);
    assert_eq!(
        got[2].sent.headers,
        vec![("source".to_string(), b"cli".to_vec())]
    );

    // And the CLI reads what a real producer wrote.
    produce(
        &producer(addr, &[]),
        "cli-data",
        Some(0),
        &[Sent::new("a", "zero")],
    )
    .unwrap();
    let read = sluice(addr, &["consume", "cli-data", "-e", "--json"], "")
        .ok()
        .json_lines();
    assert_eq!(read.len(), 4, "{read:?}");
    let first = read
        .iter()
        .find(|r| r["partition"] == 1 && r["offset"] == 0)
        .unwrap();
    assert_eq!(first["key"], "k1");
    assert_eq!(first["value"], "one");
    assert_eq!(first["headers"][0]["key"], "source");
    let formatted = sluice(
        addr,
        &[
            "consume",
            "cli-data",
            "-p",
            "1",
            "-o",
            "-1",
            "-e",
            "-f",
            "%p/%o %k=%s %h\\n",
        ],
        "",
    )
    .ok()
    .stdout;
    assert_eq!(formatted, "1/2 =three source=cli\n");
    let counted = sluice(
        addr,
        &["consume", "cli-data", "-p", "1", "-o", "1", "-n", "1"],
        "",
    )
    .ok()
    .stdout;
    assert_eq!(counted, "two\n");

    // A group reads everything, commits, and has no lag.
    let grouped = sluice(addr, &["consume", "cli-data", "-g", "cli-g", "-n", "4"], "").ok();
    assert_eq!(grouped.stdout.lines().count(), 4, "{}", grouped.stdout);
    let described = describe_group(addr, "cli-g");
    assert_eq!(described["state"], "Empty", "{described}");
    assert_eq!(described["total_lag"], 0, "{described}");
    let listed = sluice(addr, &["group", "list", "--json"], "").ok().json();
    let groups = listed.as_array().unwrap();
    assert!(groups.iter().any(|g| g["group"] == "cli-g"), "{listed}");

    // A dry run changes nothing; each reset moves the stopped group and its lag shows it.
    let all = ["--all-topics"];
    let dry = reset(
        addr,
        "cli-g",
        &[&all[..], &["--to-earliest", "--dry-run", "--json"]].concat(),
    );
    assert_eq!(dry.json()["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(describe_group(addr, "cli-g")["total_lag"], 0);
    for (args, lag) in [
        (&["--topic", "cli-data:1", "--to-offset", "1"][..], 2),
        (&["--topic", "cli-data", "--shift-by", "-1"], 4),
        (&["--all-topics", "--to-latest"], 0),
        (
            &["--all-topics", "--to-datetime", "2000-01-01T00:00:00Z"],
            4,
        ),
    ] {
        reset(addr, "cli-g", args);
        let described = describe_group(addr, "cli-g");
        assert_eq!(described["total_lag"], lag, "{args:?}: {described}");
    }
    // A real group member resumes where the reset put the group.
    let member = consumer(
        addr,
        &[("group.id", "cli-g"), ("enable.auto.commit", "false")],
    );
    member.subscribe(&["cli-data"]).unwrap();
    let again = read_n(&member, 4);
    assert_eq!(again.len(), 4);
    // While it is a member, the group's offsets are not reset.
    let refused = sluice(
        addr,
        &[
            "group",
            "reset-offsets",
            "cli-g",
            "--all-topics",
            "--to-latest",
        ],
        "",
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("stop its consumers"),
        "{}",
        refused.stderr
    );
    let active = describe_group(addr, "cli-g");
    assert_eq!(active["state"], "Stable", "{active}");
    assert_eq!(active["members"].as_array().unwrap().len(), 1, "{active}");
    drop(member);
    let deleted = sluice(addr, &["group", "delete", "cli-g", "no-such-group"], "");
    assert_eq!(deleted.code, 1);
    assert!(
        deleted.stdout.contains("deleted") && deleted.stdout.contains("GROUP_ID_NOT_FOUND"),
        "{}",
        deleted.stdout
    );
}

#[test]
fn cluster_info_doctor_and_what_fails_say_so_in_one_line() {
    let broker = Broker::start(&[]);
    let addr = broker.addr.as_str();
    let info = sluice(addr, &["cluster", "info", "--json"], "").ok().json();
    let brokers = info["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{info}");
    assert_eq!(info["controller"], brokers[0]["id"], "{info}");
    assert_eq!(
        brokers[0]["port"].as_i64().unwrap().to_string(),
        addr.rsplit(':').next().unwrap()
    );
    let table = sluice(addr, &["cluster", "info"], "").ok().stdout;
    assert!(table.contains("CONTROLLER"), "{table}");

    let doctor = sluice(
        addr,
        &[
            "doctor",
            "--json",
            "--log-dir",
            broker.data_dir().to_str().unwrap(),
        ],
        "",
    );
    let report = doctor.json();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .clone()
    };
    assert_eq!(check("brokers")["status"], "ok", "{report}");
    assert_eq!(check("offline partitions")["status"], "ok", "{report}");
    assert!(
        check("disk ")["detail"]
            .as_str()
            .unwrap()
            .contains("% used"),
        "{report}"
    );
    assert_eq!(
        doctor.code,
        i32::from(report["status"] == "FAIL"),
        "{report}"
    );

    // Nothing listens: exit 3 and one line naming the address, at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    for args in [
        &["topic", "list"][..],
        &["cluster", "info"],
        &["consume", "x", "-e"],
    ] {
        let unreachable = sluice(&dead, args, "");
        assert_eq!(unreachable.code, 3, "{args:?}: {}", unreachable.stderr);
        assert_eq!(
            unreachable.stderr.lines().count(),
            1,
            "{}",
            unreachable.stderr
        );
        assert!(unreachable.stderr.contains(&dead), "{}", unreachable.stderr);
    }
    let unresolvable = sluice("no-such-host.invalid:9092", &["topic", "list"], "");
    assert_eq!(unresolvable.code, 3, "{}", unresolvable.stderr);
    // A broker doctor cannot reach is a failure, exit 1.
    assert_eq!(sluice(&dead, &["doctor"], "").code, 1);
    // Bad usage: clap's exit 2, naming what is wrong.
    let usage = sluice(addr, &["topic", "create"], "");
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("<NAMES>"), "{}", usage.stderr);
    let usage = sluice(addr, &["group", "reset-offsets", "g", "--all-topics"], "");
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    // A topic that does not exist: exit 1 with Kafka's name for it.
    let unknown = sluice(addr, &["consume", "no-such-topic", "-e"], "");
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        unknown.stderr
    );
    // Completion scripts for the shells.
    let bash = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bash.stdout).contains("reset-offsets"));
}
