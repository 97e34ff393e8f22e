//! `sluice`: the command line. Today it inspects partition logs; `serve` (the broker) arrives with
//! the broker core.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::io;
use sluice::model::{records, BatchView};
use sluice::storage::{Log, LogConfig};

const USAGE: &str = "usage:
  sluice dump-log <partition-dir> [--records]   recover a partition directory and print its batches
  sluice serve                                  run the broker (not built yet: see README.md)";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump-log") if args.len() >= 2 => {
            let dir = PathBuf::from(&args[1]);
            let with_records = args.iter().any(|a| a == "--records");
            match io::block_on(dump_log(dir, with_records)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("serve") => {
            eprintln!("error: the broker (`serve`) is not built yet; only the storage engine is. See README.md.");
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn dump_log(dir: PathBuf, with_records: bool) -> Result<(), Box<dyn std::error::Error>> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    let log = Log::open(&dir, LogConfig::default(), io::Faults::default()).await?;
    println!(
        "log start {}  log end {}  segments {}",
        log.log_start(),
        log.log_end(),
        log.segment_count()
    );
    let ranges = log
        .read(log.log_start(), log.log_end(), u64::MAX / 2, true)
        .await?;
    for range in ranges {
        let bytes = range.read_bytes().await?;
        let mut rest = &bytes[..];
        let mut position = range.position;
        while !rest.is_empty() {
            let (view, after) = BatchView::validate(rest)?;
            println!(
                "{}  position {position}  offsets {}..={}  records {}  bytes {}  codec {:?}  max timestamp {}{}{}",
                range.file.path().file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                view.base_offset(),
                view.last_offset(),
                view.records_count(),
                view.len(),
                view.codec()?,
                view.max_timestamp().0,
                if view.is_transactional() { "  transactional" } else { "" },
                if view.is_control() { "  control" } else { "" },
            );
            if with_records && !view.is_control() {
                for record in records::decode(&view, 1 << 30)? {
                    println!(
                        "    offset {}  timestamp {}  key {:?}  value {} bytes",
                        record.offset,
                        record.timestamp.0,
                        record.key.as_deref().map(String::from_utf8_lossy),
                        record.value.as_ref().map_or(-1, |v| v.len() as i64)
                    );
                }
            }
            position += view.len() as u64;
            rest = after;
        }
    }
    Ok(())
}
