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
  sluice dump-log <partition-dir> [--records]   recover a partition directory and print its batches
  sluice tune list                              the tuning profiles and their settings
  sluice tune check|apply|revert [--profile P]... [--device DEV] [--iface IF] [--root DIR] [--dry-run]
                                                compare the host with profiles, apply them (root;
                                                records what it replaced), or restore that
  sluice iotune --dir DIR [--seconds N]         measure the disk under DIR (default 20 s) and write
                                                DIR/io-properties.toml, which serve reads";

/// Log lines waiting for stderr before new ones are dropped (see `main`).
const LOG_LINES_BUFFERED: usize = 16 * 1024;

fn main() -> ExitCode {
    // Lines go to stderr from a thread of their own: a shard never waits on a slow reader of its
    // log (a full pipe, a busy journald). Past LOG_LINES_BUFFERED waiting lines, new ones are
    // dropped rather than slow the broker's clients. The guard writes out the rest at exit.
    // The writer thread must never take SIGINT/SIGTERM (serve handles them on its own thread).
    let (writer, _log_guard) = sluice::server::without_stop_signals(|| {
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(LOG_LINES_BUFFERED)
            .thread_name("log-writer")
            .finish(std::io::stderr())
    });
    // The filter sits in a reloadable layer: the admin listener changes it at run time.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    sluice::server::log_level::install(
        &directives,
        Box::new(move |directives| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }),
    );
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
        Some("iotune") => match iotune(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("tune") => match tune(&args[1..]) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        },
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

/// `sluice tune ...`: exit 0 when the host matches (check) or everything applied, 1 otherwise.
fn tune(args: &[String]) -> Result<ExitCode, String> {
    use sluice::tune::{self, Outcome, State, Target};
    let command = args.first().map(String::as_str).unwrap_or("");
    let mut names = Vec::new();
    let mut target = Target {
        root: PathBuf::from("/"),
        device: None,
        iface: None,
    };
    let mut dry_run = false;
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| option_value(&mut iter, name);
        match arg.as_str() {
            "--profile" => names.push(value("--profile")?),
            "--device" => target.device = Some(value("--device")?),
            "--iface" => target.iface = Some(value("--iface")?),
            "--root" => target.root = PathBuf::from(value("--root")?),
            "--dry-run" => dry_run = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let needs_privilege = (command == "apply" && !dry_run) || command == "revert";
    // SAFETY: geteuid(2) has no preconditions.
    if needs_privilege && tune::is_real_root(&target.root) && unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "`tune {command}` writes /proc and /sys: run it as root"
        ));
    }
    match command {
        "list" => {
            for (name, _) in tune::PROFILES {
                let profile = tune::profile(name)?;
                println!("{name}: {}", profile.description);
                for s in &profile.settings {
                    let what = s.boot.as_deref().unwrap_or(&s.value);
                    println!("  {} = {what}  ({})", s.name, s.reason);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "check" | "apply" => {
            if names.is_empty() {
                return Err("name at least one --profile (see `sluice tune list`)".into());
            }
            let profiles = names
                .iter()
                .map(|n| tune::profile(n))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = tune::check(&profiles, &target)?;
            if command == "check" {
                print!("{}", tune::table(&rows));
                let all_ok = rows.iter().all(|r| r.state == State::Ok);
                return Ok(exit_code(all_ok));
            }
            let outcomes = tune::apply(&rows, &target, dry_run);
            let mut failed = false;
            if !dry_run && names.iter().any(|n| n.starts_with("nic/")) {
                match tune::record_nic_cpus(&target) {
                    Ok(cpus) => println!(
                        "NIC interrupts on CPUs {cpus}: `sluice serve` pins its shards to the \
                         others (--cores overrides)"
                    ),
                    Err(e) => {
                        failed = true;
                        println!("cannot record the NIC interrupt CPUs: {e}");
                    }
                }
            }
            for (i, outcome) in outcomes.iter().enumerate() {
                let name = rows.get(i).map_or("revert record", |r| r.name.as_str());
                match outcome {
                    Outcome::AlreadySet => println!("{name}: already set"),
                    Outcome::Written { previous } => {
                        println!("{name}: {previous} -> {}", rows[i].wanted)
                    }
                    Outcome::WouldRun(command) => println!("{name}: {command}"),
                    Outcome::Printed(what) => println!("{name}: {what}"),
                    Outcome::Failed(why) => {
                        failed = true;
                        println!("{name}: NOT APPLIED: {why}")
                    }
                }
            }
            Ok(exit_code(!failed))
        }
        "revert" => {
            let results = tune::revert(&target)?;
            let mut failed = false;
            for (path, result) in results {
                match result {
                    Ok(value) => println!("{path}: restored {value}"),
                    Err(why) => {
                        failed = true;
                        println!("{path}: NOT RESTORED: {why}")
                    }
                }
            }
            Ok(exit_code(!failed))
        }
        other => Err(format!("unknown tune command `{other}`")),
    }
}

/// `sluice iotune --dir DIR [--seconds N]`: measures, prints, writes DIR/io-properties.toml.
fn iotune(args: &[String]) -> Result<(), String> {
    use sluice::tune::iotune;
    let mut dir = None;
    let mut seconds: u64 = 20;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| option_value(&mut iter, name);
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or("--seconds takes a whole number of seconds, at least 1")?
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let dir = dir.ok_or("iotune needs --dir (the directory of log.dirs)")?;
    io::probe_io_uring()?;
    println!("measuring {} for about {seconds} s", dir.display());
    let found = iotune::measure(&dir, std::time::Duration::from_secs(seconds))
        .map_err(|e| format!("measuring {}: {e}", dir.display()))?;
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "sequential write {:.0} MiB/s, sequential read {:.0} MiB/s, fdatasync p50 {:.0} us p99 \
         {:.0} us, random 4 KiB reads {:.0} IOPS: disk profile `disk/{}`",
        mib(found.write_bytes_per_sec),
        mib(found.read_bytes_per_sec),
        found.fdatasync_p50_us,
        found.fdatasync_p99_us,
        found.random_read_iops,
        found.disk_profile
    );
    let path = dir.join(iotune::FILE_NAME);
    std::fs::write(&path, found.to_toml(&dir))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!(
        "wrote {}: serve gives background I/O {} shares and writes concurrent appends in groups \
         of up to {} KiB (log.write.group.max.bytes); check the device with `sluice tune check \
         --profile disk/{} --device <dev>`",
        path.display(),
        found.background_shares(),
        found.write_group_bytes() / 1024,
        found.disk_profile
    );
    Ok(())
}

/// The value after option `name`.
fn option_value<'a>(
    iter: &mut impl Iterator<Item = &'a String>,
    name: &str,
) -> Result<String, String> {
    iter.next()
        .cloned()
        .ok_or_else(|| format!("{name} needs a value"))
}

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The CPUs for shards when `--cores` is not given: the available ones less those `sluice tune
/// apply --profile nic/...` gave to NIC interrupts (when any are left).
fn avoid_nic_cpus(available: Vec<usize>) -> Vec<usize> {
    let Some(nic) = sluice::tune::nic::recorded_nic_cpus(std::path::Path::new("/")) else {
        return available;
    };
    let Some(rest) = sluice::shard::avoiding(&available, &nic) else {
        return available;
    };
    eprintln!(
        "sluice: shards avoid CPUs {} (NIC interrupts, /{}); --cores overrides",
        sluice::tune::nic::list(&nic),
        sluice::tune::nic::NIC_CPUS_FILE
    );
    rest
}

/// Parses `serve`'s options: the config file first, then `--set` overrides in order.
fn serve_options(args: &[String]) -> Result<(Values, Vec<Option<usize>>), String> {
    let mut broker = Values::new(&BROKER_KEYS);
    let mut sets = Vec::new();
    let mut config_file = None;
    let mut cores = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| option_value(&mut iter, name);
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
    let available = sluice::shard::available_cpus();
    let cores = match cores {
        Some(text) => sluice::shard::parse_cores(&text, &available)?
            .into_iter()
            .map(Some)
            .collect(),
        None => avoid_nic_cpus(available).into_iter().map(Some).collect(),
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
