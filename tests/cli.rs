//! The `sluice` binary: `dump-log` reads a real partition directory.

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
