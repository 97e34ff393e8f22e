//! The `sluice` binary: `dump-log` reads a real partition directory; `serve` refuses bad configs.

use std::process::Command;

use sluice::io::{self, Faults};
use sluice::model::{records, Codec};
use sluice::storage::{AppendOptions, Log, LogConfig};

#[test]
fn dump_log_prints_every_batch_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("orders-0");
    io::block_on(async {
        let log = Log::open(&partition, LogConfig::default(), Faults::default())
            .await
            .unwrap();
        for codec in [Codec::None, Codec::Zstd] {
            log.append(
                vec![records::simple_batch(3, 10, codec)],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        }
        log.close().await.unwrap();
    });
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dump-log")
        .arg(&partition)
        .arg("--records")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("log start 0  log end 6  segments 1"),
        "{text}"
    );
    assert!(text.contains("offsets 3..=5  records 3"), "{text}");
    assert!(text.contains("codec Zstd"), "{text}");
    assert_eq!(text.matches("    offset ").count(), 6, "{text}");

    let missing = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dump-log")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a directory"));
}

fn serve_refuses(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(["--set", &format!("log.dirs={}", dir.path().display())])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected `{expected}` in: {stderr}"
    );
}

#[test]
fn serve_refuses_bad_configs_at_start_naming_them() {
    serve_refuses(&["--set", "no.such.key=1"], "no.such.key");
    serve_refuses(&["--set", "log.retention.ms=soon"], "log.retention.ms");
    serve_refuses(&["--set", "listeners=nonsense"], "listeners");
    serve_refuses(&["--cores", "4096"], "--cores");
    serve_refuses(&["--bogus"], "--bogus");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "[log]\nretention.ms = \"forever\"\n").unwrap();
    serve_refuses(&["--config", file.to_str().unwrap()], "log.retention.ms");
}
