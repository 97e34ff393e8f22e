//! `sluice`: the command line: `serve` runs the broker; `dump-log` inspects a partition directory.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use sluice::config::{load_toml, Values, BROKER_KEYS};
use sluice::io;
use sluice::model::{records, BatchView};
use sluice::storage::{Log, LogConfig};

/// Log lines waiting for stderr before new ones are dropped (see `logging`).
const LOG_LINES_BUFFERED: usize = 16 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible streaming broker, and a command line for any \
             Kafka-compatible cluster",
    after_help = "Client commands (topic, group, cluster, produce, consume, doctor) reach the \
                  brokers in --brokers (default 127.0.0.1:9092, or $SLUICE_BROKERS). Exit codes: \
                  0 done, 1 refused or failed, 2 bad usage, 3 no broker reachable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (Kafka listener 127.0.0.1:9092, data in ./sluice-data, one shard per core)
    Serve(ServeArgs),
    /// Create, list, describe, alter, grow and delete topics
    Topic {
        #[command(subcommand)]
        command: cli::topic::TopicCommand,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// List, describe and delete consumer groups; reset their offsets
    Group {
        #[command(subcommand)]
        command: cli::group::GroupCommand,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// The cluster's id, controller and brokers
    Cluster {
        #[command(subcommand)]
        command: cli::cluster::ClusterCommand,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Create, delete and list SCRAM users
    User {
        #[command(subcommand)]
        command: cli::user::UserCommand,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Create, list and delete ACLs
    Acl {
        #[command(subcommand)]
        command: cli::acl::AclCommand,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Write records read from stdin, one per line
    Produce {
        #[command(flatten)]
        args: cli::data::ProduceArgs,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Print records to stdout
    Consume {
        #[command(flatten)]
        args: cli::data::ConsumeArgs,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Check the host, the cluster's health and the log directories' free space
    Doctor {
        #[command(flatten)]
        args: cli::doctor::DoctorArgs,
        #[command(flatten)]
        conn: cli::Connection,
    },
    /// Compare the host with tuning profiles, apply them (root), or restore what was replaced
    Tune {
        #[command(subcommand)]
        command: TuneCommand,
    },
    /// Measure the disk under DIR and write DIR/io-properties.toml, which serve reads
    Iotune {
        /// The directory of log.dirs
        #[arg(long)]
        dir: PathBuf,
        /// How long to measure
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// Recover a partition directory and print its batches
    DumpLog {
        dir: PathBuf,
        /// Print every record too
        #[arg(long)]
        records: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion { shell: clap_complete::Shell },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A config file (TOML, Kafka's key names)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A config key=value, after the file; repeat for more
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The cores for shards: a count or a list (0,2,4-7)
    #[arg(long, value_name = "N|LIST")]
    cores: Option<String>,
    /// How log lines are written to stderr: text, or json (one object per line)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum TuneCommand {
    /// The tuning profiles and their settings
    List,
    /// Compare the host with profiles (exit 1 where it differs)
    Check(TuneArgs),
    /// Apply profiles (root; records what it replaced)
    Apply(TuneArgs),
    /// Restore what apply replaced
    Revert(TuneArgs),
}

#[derive(clap::Args, Debug)]
struct TuneArgs {
    /// A profile (see `sluice tune list`); repeat for more
    #[arg(long = "profile", value_name = "P")]
    profiles: Vec<String>,
    /// The block device for disk profiles
    #[arg(long)]
    device: Option<String>,
    /// The network interface for NIC profiles
    #[arg(long)]
    iface: Option<String>,
    /// The root of /proc and /sys
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print what apply would do
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let broker_side = matches!(
        cli.command,
        Command::Serve(_) | Command::DumpLog { .. } | Command::Tune { .. } | Command::Iotune { .. }
    );
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    let _log_guard = logging(broker_side, format);
    let client = |outcome: cli::Outcome| match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    };
    match cli.command {
        Command::DumpLog { dir, records } => {
            if let Err(message) = io::probe_io_uring() {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
            match io::block_on(dump_log(dir, records)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Iotune { dir, seconds } => match iotune(&dir, seconds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Tune { command } => match tune(command) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => match serve_options(args) {
            Ok((broker, cores)) => match sluice::server::serve(broker, cores) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Topic { command, conn } => client(cli::topic::run(command, &conn)),
        Command::Group { command, conn } => client(cli::group::run(command, &conn)),
        Command::Cluster { command, conn } => client(cli::cluster::run(command, &conn)),
        Command::User { command, conn } => client(cli::user::run(command, &conn)),
        Command::Acl { command, conn } => client(cli::acl::run(command, &conn)),
        Command::Produce { args, conn } => client(cli::data::produce(args, &conn)),
        Command::Consume { args, conn } => client(cli::data::consume(args, &conn)),
        Command::Doctor { args, conn } => client(cli::doctor::run(args, &conn)),
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "sluice", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// The broker's log (and the other broker-side commands'): lines go to stderr from a thread of
/// their own, so a shard never waits on a slow reader of its log (a full pipe, a busy journald).
/// Past LOG_LINES_BUFFERED waiting lines, new ones are dropped rather than slow the broker's
/// clients; the guard writes out the rest at exit. The client commands print their own lines and
/// log only what RUST_LOG asks for. Each line names the spans it was logged in: the shard
/// (`node`, `shard`) and the client connection (`peer`, `client`); JSON lines carry them as the
/// fields of `spans`.
fn logging(broker_side: bool, format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    // The writer thread must never take SIGINT/SIGTERM (serve handles them on its own thread).
    let (writer, guard) = sluice::server::without_stop_signals(|| {
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(LOG_LINES_BUFFERED)
            .thread_name("log-writer")
            .finish(std::io::stderr())
    });
    // The filter sits in a reloadable layer: the admin listener changes it at run time.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let fallback = if broker_side { "info" } else { "off" };
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| fallback.into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_thread_names(true)
                    .with_writer(writer),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
    sluice::server::log_level::install(
        &directives,
        Box::new(move |directives| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }),
    );
    guard
}

/// `sluice tune ...`: exit 0 when the host matches (check) or everything applied, 1 otherwise.
fn tune(command: TuneCommand) -> Result<ExitCode, String> {
    use sluice::tune::{self, Outcome, State, Target};
    let (command, args) = match command {
        TuneCommand::List => ("list", None),
        TuneCommand::Check(args) => ("check", Some(args)),
        TuneCommand::Apply(args) => ("apply", Some(args)),
        TuneCommand::Revert(args) => ("revert", Some(args)),
    };
    let args = args.unwrap_or(TuneArgs {
        profiles: Vec::new(),
        device: None,
        iface: None,
        root: PathBuf::from("/"),
        dry_run: false,
    });
    let names = args.profiles;
    let dry_run = args.dry_run;
    let target = Target {
        root: args.root,
        device: args.device,
        iface: args.iface,
    };
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
        _ => unreachable!("the tune commands are clap's"),
    }
}

/// `sluice iotune --dir DIR [--seconds N]`: measures, prints, writes DIR/io-properties.toml.
fn iotune(dir: &std::path::Path, seconds: u64) -> Result<(), String> {
    use sluice::tune::iotune;
    io::probe_io_uring()?;
    println!("measuring {} for about {seconds} s", dir.display());
    let found = iotune::measure(dir, std::time::Duration::from_secs(seconds))
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
    std::fs::write(&path, found.to_toml(dir))
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
fn serve_options(args: ServeArgs) -> Result<(Values, Vec<Option<usize>>), String> {
    let mut broker = Values::new(&BROKER_KEYS);
    if let Some(path) = &args.config {
        load_toml(&mut broker, path).map_err(|e| e.to_string())?;
    }
    for pair in &args.sets {
        broker.set_pair(pair).map_err(|e| e.to_string())?;
    }
    let cores = args.cores;
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
