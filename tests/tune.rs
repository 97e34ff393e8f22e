//! `sluice tune` against a fake /proc and /sys tree: check prints the differences, apply writes
//! them and records what it replaced, revert restores exactly that; a missing file is reported
//! for its setting while the rest still apply.

use std::path::Path;
use std::process::{Command, Output};

fn tune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("tune")
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn put(root: &Path, path: &str, value: &str) {
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, value).unwrap();
}

fn get(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap()
        .trim()
        .to_string()
}

/// A host as a fresh install leaves it, except that the clocksource knob does not exist.
fn fake_host(root: &Path) {
    for (path, value) in [
        ("/proc/sys/vm/swappiness", "60"),
        ("/proc/sys/vm/dirty_background_ratio", "10"),
        ("/proc/sys/vm/dirty_ratio", "20"),
        ("/proc/sys/vm/dirty_expire_centisecs", "3000"),
        ("/proc/sys/fs/aio-max-nr", "65536"),
        ("/proc/sys/fs/file-max", "2097152"),
        ("/proc/sys/net/core/somaxconn", "4096"),
        ("/proc/sys/net/ipv4/tcp_max_syn_backlog", "512"),
        ("/proc/sys/net/core/rmem_max", "212992"),
        ("/proc/sys/net/core/wmem_max", "212992"),
        ("/proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
        ("/proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("/proc/sys/net/core/busy_poll", "0"),
        (
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        ),
        (
            "/proc/sys/kernel/core_pattern",
            "|/usr/lib/systemd/systemd-coredump %P",
        ),
        (
            "/sys/block/nvme0n1/queue/scheduler",
            "[none] mq-deadline kyber",
        ),
        ("/sys/block/nvme0n1/queue/nomerges", "0"),
        ("/sys/block/nvme0n1/queue/nr_requests", "1023"),
        ("/sys/block/nvme0n1/queue/read_ahead_kb", "128"),
        ("/sys/block/nvme0n1/queue/write_cache", "write back"),
        ("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet"),
    ] {
        put(root, path, value);
    }
}

#[test]
fn check_apply_revert_round_trip_on_a_fake_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_host(root);
    let before: Vec<(String, String)> = ["/proc/sys/vm/swappiness", "/proc/sys/net/ipv4/tcp_rmem"]
        .iter()
        .map(|p| (p.to_string(), get(root, p)))
        .collect();
    let r = root.to_str().unwrap();
    let profiles = ["--profile", "os/production", "--profile", "disk/nvme"];
    let args = |cmd: &'static str| -> Vec<&str> {
        [
            &[cmd, "--root", r, "--device", "nvme0n1"][..],
            &profiles[..],
        ]
        .concat()
    };

    let check = tune(&args("check"));
    let table = text(&check);
    assert_eq!(check.status.code(), Some(1), "{table}");
    assert!(
        table.contains("vm.swappiness") && table.contains("DIFFERS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("net.core.somaxconn") && l.ends_with("ok")),
        "{table}"
    );
    assert!(table.contains("scheduler (nvme0n1)"), "{table}");
    assert!(
        table.contains("clocksource") && table.contains("unavailable"),
        "{table}"
    );

    // Dry run: the commands, nothing written.
    let dry = tune(&[args("apply"), vec!["--dry-run"]].concat());
    assert!(
        text(&dry).contains("echo '1' > /proc/sys/vm/swappiness"),
        "{}",
        text(&dry)
    );
    assert_eq!(get(root, "/proc/sys/vm/swappiness"), "60");

    // Apply: everything available is written; the missing knob is reported, exit 1.
    let applied = tune(&args("apply"));
    let out = text(&applied);
    assert_eq!(applied.status.code(), Some(1), "{out}");
    assert!(out.contains("clocksource: NOT APPLIED"), "{out}");
    assert!(out.contains("vm.swappiness: 60 -> 1"), "{out}");
    assert_eq!(get(root, "/proc/sys/vm/swappiness"), "1");
    assert_eq!(
        get(root, "/proc/sys/net/ipv4/tcp_rmem"),
        "4096 87380 16777216"
    );
    assert_eq!(get(root, "/sys/block/nvme0n1/queue/nomerges"), "2");
    assert_eq!(
        get(root, "/sys/kernel/mm/transparent_hugepage/enabled"),
        "madvise"
    );

    // A second apply changes nothing and keeps the original values on record.
    let again = tune(&args("apply"));
    assert!(
        text(&again).contains("vm.swappiness: already set"),
        "{}",
        text(&again)
    );
    let after = text(&tune(&args("check")));
    assert!(
        after.lines().filter(|l| l.contains("DIFFERS")).count() == 0,
        "{after}"
    );

    // Revert restores what was there before the first apply.
    let reverted = tune(&["revert", "--root", r]);
    assert_eq!(reverted.status.code(), Some(0), "{}", text(&reverted));
    for (path, value) in &before {
        assert_eq!(&get(root, path), value, "{path}");
    }
    assert_eq!(
        get(root, "/sys/kernel/mm/transparent_hugepage/enabled"),
        "always"
    );
    assert!(!root.join(sluice::tune::REVERT_FILE).exists());
    let nothing = tune(&["revert", "--root", r]);
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing));
}

#[test]
fn tune_explains_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().to_str().unwrap();
    let no_device = tune(&["check", "--root", r, "--profile", "disk/ssd"]);
    assert_eq!(no_device.status.code(), Some(2));
    assert!(
        text(&no_device).contains("--device"),
        "{}",
        text(&no_device)
    );
    let unknown = tune(&["check", "--root", r, "--profile", "os/turbo"]);
    assert!(
        text(&unknown).contains("os/production"),
        "{}",
        text(&unknown)
    );
    let list = tune(&["list"]);
    assert!(text(&list).contains("cpu/performance") && text(&list).contains("c-states"));
    // Boot parameters are printed, never applied.
    put(dir.path(), "/proc/cmdline", "quiet");
    let boot = tune(&["apply", "--root", r, "--profile", "cpu/performance"]);
    assert!(
        text(&boot)
            .contains("intel_idle.max_cstate=1 processor.max_cstate=1` to the kernel command line"),
        "{}",
        text(&boot)
    );
}

/// The client profiles are real client configuration: librdkafka accepts every key and value.
#[test]
fn client_profiles_configure_librdkafka() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;
    for name in ["throughput", "latency", "balanced"] {
        let path = format!(
            "{}/tuning/client/{name}.properties",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let mut keys = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').expect("key=value");
            config.set(key, value);
            keys += 1;
        }
        assert!(keys >= 7, "{name}");
        config
            .create::<BaseProducer>()
            .unwrap_or_else(|e| panic!("{name} as a producer: {e}"));
        config.set("group.id", "profile-check");
        config
            .create::<BaseConsumer>()
            .unwrap_or_else(|e| panic!("{name} as a consumer: {e}"));
    }
}
