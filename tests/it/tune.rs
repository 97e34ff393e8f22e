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

/// A 16-CPU host with a two-queue NIC `eth0` (interrupts 40 and 41) and a fake `ethtool` that
/// keeps its settings in files.
fn fake_nic(root: &Path) {
    for cpu in 0..16 {
        std::fs::create_dir_all(root.join(format!("sys/devices/system/cpu/cpu{cpu}"))).unwrap();
    }
    for (path, value) in [
        ("/sys/class/net/eth0/device/msi_irqs/40", "msix"),
        ("/sys/class/net/eth0/device/msi_irqs/41", "msix"),
        ("/proc/irq/40/smp_affinity_list", "0-15"),
        ("/proc/irq/41/smp_affinity_list", "0-15"),
        ("/sys/class/net/eth0/queues/rx-0/rps_cpus", "0000"),
        ("/sys/class/net/eth0/queues/rx-1/rps_cpus", "0000"),
        ("/sys/class/net/eth0/queues/rx-0/rps_flow_cnt", "0"),
        ("/sys/class/net/eth0/queues/rx-1/rps_flow_cnt", "0"),
        ("/sys/class/net/eth0/queues/tx-0/xps_cpus", "0000"),
        ("/sys/class/net/eth0/queues/tx-1/xps_cpus", "0000"),
        ("/proc/sys/net/core/rps_sock_flow_entries", "0"),
        ("/ethtool-state/rx", "256"),
        ("/ethtool-state/tx", "4096"),
        ("/ethtool-state/adaptive-rx", "off"),
        ("/ethtool-state/gro", "on"),
        ("/ethtool-state/gso", "off"),
        ("/ethtool-state/tso", "on"),
    ] {
        put(root, path, value);
    }
    let script = r#"#!/bin/sh
d="$(dirname "$0")/../../ethtool-state"
[ "$2" = eth0 ] || { echo "no such device $2" >&2; exit 1; }
case "$1" in
  -g) printf 'Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nTX:\t\t4096\nCurrent hardware settings:\nRX:\t\t%s\nTX:\t\t%s\n' "$(cat $d/rx)" "$(cat $d/tx)" ;;
  -c) printf 'Coalesce parameters for eth0:\nAdaptive RX: %s  TX: off\n' "$(cat $d/adaptive-rx)" ;;
  -k) printf 'Features for eth0:\ngeneric-receive-offload: %s\ngeneric-segmentation-offload: %s\ntcp-segmentation-offload: %s\n' "$(cat $d/gro)" "$(cat $d/gso)" "$(cat $d/tso)" ;;
  -G|-C|-K) echo "$4" > "$d/$3" ;;
  *) exit 1 ;;
esac
"#;
    put(root, "/usr/sbin/ethtool", script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("usr/sbin/ethtool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn the_nic_profile_splits_interrupts_from_shards_and_reverts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_nic(root);
    let r = root.to_str().unwrap();
    let files = [
        "/proc/irq/40/smp_affinity_list",
        "/sys/class/net/eth0/queues/rx-1/rps_cpus",
        "/sys/class/net/eth0/queues/tx-1/xps_cpus",
        "/sys/class/net/eth0/queues/rx-0/rps_flow_cnt",
        "/ethtool-state/rx",
        "/ethtool-state/adaptive-rx",
        "/ethtool-state/gso",
    ];
    let before: Vec<String> = files.iter().map(|f| get(root, f)).collect();
    let args = ["--profile", "nic/split", "--iface", "eth0", "--root", r];

    let check = tune(&[&["check"], &args[..]].concat());
    let table = text(&check);
    assert_eq!(check.status.code(), Some(1), "{table}");
    for line in [
        "irq affinity (irq 40)",
        "rx ring (eth0)",
        "gro (eth0)",
        "xps_cpus (tx-1)",
    ] {
        assert!(table.contains(line), "{line} in:\n{table}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in:\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("irq affinity (irq 41)"),
        "irq affinity (irq 41) 0-15 0 DIFFERS"
    );
    assert_eq!(row("rx ring (eth0)"), "rx ring (eth0) 256 4096 DIFFERS");
    assert_eq!(row("tx ring (eth0)"), "tx ring (eth0) 4096 4096 ok");
    assert_eq!(row("gro (eth0)"), "gro (eth0) on on ok");

    let dry = tune(&[&["apply", "--dry-run"], &args[..]].concat());
    assert!(
        text(&dry).contains("ethtool -G eth0 rx 4096"),
        "{}",
        text(&dry)
    );
    assert_eq!(
        get(root, "/ethtool-state/rx"),
        "256",
        "a dry run writes nothing"
    );

    let apply = tune(&[&["apply"], &args[..]].concat());
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    // One interrupt CPU on 16; packet steering to the other 15; each transmit queue to every
    // other CPU; RFS shared over two receive queues; ethtool settings through ethtool.
    assert_eq!(get(root, "/proc/irq/40/smp_affinity_list"), "0");
    assert_eq!(
        get(root, "/sys/class/net/eth0/queues/rx-1/rps_cpus"),
        "0000fffe"
    );
    assert_eq!(
        get(root, "/sys/class/net/eth0/queues/tx-0/xps_cpus"),
        "00005555"
    );
    assert_eq!(
        get(root, "/sys/class/net/eth0/queues/tx-1/xps_cpus"),
        "0000aaaa"
    );
    assert_eq!(
        get(root, "/sys/class/net/eth0/queues/rx-0/rps_flow_cnt"),
        "16384"
    );
    assert_eq!(get(root, "/ethtool-state/rx"), "4096");
    assert_eq!(get(root, "/ethtool-state/adaptive-rx"), "on");
    assert_eq!(get(root, "/ethtool-state/gso"), "on");
    assert_eq!(get(root, "/var/lib/sluice/nic-cpus"), "0");
    assert_eq!(
        tune(&[&["check"], &args[..]].concat()).status.code(),
        Some(0)
    );

    let revert = tune(&["revert", "--root", r]);
    assert_eq!(revert.status.code(), Some(0), "{}", text(&revert));
    let after: Vec<String> = files.iter().map(|f| get(root, f)).collect();
    assert_eq!(after, before);
    assert!(!root.join("var/lib/sluice/nic-cpus").exists());

    // Without the interface, the profile says what it needs; with a wrong one, each ethtool
    // setting is reported unavailable.
    let missing = tune(&["check", "--profile", "nic/split", "--root", r]);
    assert!(
        text(&missing).contains("needs --iface"),
        "{}",
        text(&missing)
    );
    let wrong = tune(&[
        "check",
        "--profile",
        "nic/split",
        "--iface",
        "eth9",
        "--root",
        r,
    ]);
    let wrong = text(&wrong);
    assert!(
        wrong.contains("unavailable: ethtool -g eth9 failed: no such device"),
        "{wrong}"
    );
    assert!(
        wrong.contains("unavailable: eth9 has no receive queues in sysfs"),
        "{wrong}"
    );
    assert!(
        wrong.contains("unavailable: eth9 has no MSI interrupts in sysfs"),
        "{wrong}"
    );
}
