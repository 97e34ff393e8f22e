//! `sluice`: the command line: `serve` runs the broker; `dump-log` inspects a partition directory.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::config::{load_toml, Values, BROKER_KEYS};
use sluice::io;
use sluice::model::{records, BatchView};
use sluice::storage::{Log, LogConfig};

const USAGE: &str = "usage:
  sluice serve [--config FILE] [--set key=value]... [--cores N|LIST]
                                                run the broker (Kafka listener 127.0.0.1:9092,
                                                data in ./sluice-data, one shard per core)
  sluice dump-log <partition-dir> [--records]   recover a partition directory and print its batches";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump-log") if args.len() >= 2 => {
            let dir = PathBuf::from(&args[1]);
            let with_records = args.iter().any(|a| a == "--records");
            if let Err(message) = io::probe_io_uring() {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
            match io::block_on(dump_log(dir, with_records)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("serve") => match serve_options(&args[1..]) {
            Ok((broker, cores)) => match sluice::server::serve(broker, cores) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(message) => {
                eprintln!("error: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Parses `serve`'s options: the config file first, then `--set` overrides in order.
fn serve_options(args: &[String]) -> Result<(Values, Vec<Option<usize>>), String> {
    let mut broker = Values::new(BROKER_KEYS);
    let mut sets = Vec::new();
    let mut config_file = None;
    let mut cores = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" => config_file = Some(value("--config")?),
            "--set" => sets.push(value("--set")?),
            "--cores" => cores = Some(value("--cores")?),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if let Some(path) = config_file {
        load_toml(&mut broker, std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    }
    for pair in &sets {
        broker.set_pair(pair).map_err(|e| e.to_string())?;
    }
    let available = sluice::io::shard::available_cpus();
    let cores = match cores {
        Some(text) => sluice::shard::parse_cores(&text, &available)?
            .into_iter()
            .map(Some)
            .collect(),
        None => available.into_iter().map(Some).collect(),
    };
    Ok((broker, cores))
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
