//! `sluice-bench`: run OMB workloads, compare results, sweep client settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_bench::result::TestResult;
use sluice_bench::run::{run, RunOptions};
use sluice_bench::sweep::{self, Point};
use sluice_bench::workload::{properties, DriverFile, Workload};
use sluice_bench::{chart, compare, replace_table, results_table, today};

const USAGE: &str = "\
usage:
  sluice-bench run [OPTIONS] WORKLOAD.yaml...     run OMB workloads; a JSON result and an SVG
                                                 chart per workload under --out
  sluice-bench compare A.json B.json... [--chart FILE.svg]
                                                 (also: sluice-bench --compare ...) the runs on
                                                 one chart and a table of ratios to the first
  sluice-bench sweep [OPTIONS] [--grid KEY=V1,V2]... [--write-profiles DIR] WORKLOAD.yaml
                                                 the workload over a grid of client settings:
                                                 the throughput / p99 frontier, and the
                                                 throughput, latency and balanced profiles
  sluice-bench table [--into FILE.md] RESULT.json...
                                                 the Markdown table of results (replaced
                                                 between its markers in FILE.md)
options (run, sweep):
  --bootstrap HOST:PORT   the broker (default: the driver's bootstrap.servers)
  --driver FILE.yaml      an OMB Kafka driver file (default: one replica, acks=all, linger 1 ms)
  --profile FILE          client settings (key=value lines) over the driver's
  --set KEY=VALUE         one client setting over the driver's and the profile's
  --rate N                msg/s instead of the workload's, not scaled (0: find the maximum
                          sustainable rate)
  --scale F               multiply rates, backlog and durations (default 1)
  --period SECONDS        sampling period (default 10)
  --search-step SECONDS   time at each rate of the maximum-rate search (default 3)
  --broker-pid PID        account the broker's CPU and memory from /proc
  --out DIR               where results go (default bench/results/<date>)
  --label TEXT            the run's name in files and tables (default: the workload file)
  --keep-topics           leave the benchmark topics
  --no-progress           no progress bar";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("compare") | Some("--compare") => cmd_compare(&args[1..]),
        Some("sweep") => cmd_sweep(&args[1..]),
        Some("table") => cmd_table(&args[1..]),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("no command\n{USAGE}")),
    };
    if let Err(e) = outcome {
        eprintln!("sluice-bench: {e}");
        std::process::exit(1);
    }
}

struct Common {
    options: RunOptions,
    out: PathBuf,
    label: Option<String>,
    files: Vec<PathBuf>,
    grid: Vec<sweep::Axis>,
    profiles_dir: Option<PathBuf>,
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, name: &str) -> Result<String, String> {
    it.next()
        .cloned()
        .ok_or_else(|| format!("{name} needs a value"))
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: `{text}` is not a number"))
}

fn parse_common(args: &[String]) -> Result<Common, String> {
    let mut options = RunOptions::default();
    let mut driver_file = None;
    let mut bootstrap = None;
    let mut overrides = Vec::new();
    let mut common = Common {
        options: RunOptions::default(),
        out: PathBuf::from("bench/results").join(today()),
        label: None,
        files: Vec::new(),
        grid: Vec::new(),
        profiles_dir: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bootstrap" => bootstrap = Some(value(&mut it, arg)?),
            "--driver" => driver_file = Some(PathBuf::from(value(&mut it, arg)?)),
            "--profile" => {
                let path = value(&mut it, arg)?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                overrides.extend(properties(&text).map_err(|e| format!("{path}: {e}"))?);
            }
            "--set" => {
                let pair = value(&mut it, arg)?;
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--set `{pair}`: want key=value"))?;
                overrides.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--rate" => options.rate = Some(number(&value(&mut it, arg)?, arg)?),
            "--scale" => options.scale = number(&value(&mut it, arg)?, arg)?,
            "--period" => {
                options.period = Duration::from_secs_f64(number(&value(&mut it, arg)?, arg)?)
            }
            "--search-step" => {
                options.search_step = Duration::from_secs_f64(number(&value(&mut it, arg)?, arg)?)
            }
            "--broker-pid" => options.broker_pid = Some(number(&value(&mut it, arg)?, arg)?),
            "--out" => common.out = PathBuf::from(value(&mut it, arg)?),
            "--label" => common.label = Some(value(&mut it, arg)?),
            "--keep-topics" => options.keep_topics = true,
            "--no-progress" => options.progress = false,
            "--grid" => common.grid.push(sweep::parse_axis(&value(&mut it, arg)?)?),
            "--write-profiles" => common.profiles_dir = Some(PathBuf::from(value(&mut it, arg)?)),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            file => common.files.push(PathBuf::from(file)),
        }
    }
    if options.scale <= 0.0 || options.period.is_zero() || options.search_step.is_zero() {
        return Err("--scale, --period and --search-step must be above 0".into());
    }
    if let Some(path) = driver_file {
        options.driver = DriverFile::load(&path)?;
    }
    options.bootstrap = match bootstrap {
        Some(b) => b,
        None => options
            .driver
            .producer_settings()
            .into_iter()
            .find(|(k, _)| k == "bootstrap.servers")
            .map_or_else(|| "localhost:9092".into(), |(_, v)| v),
    };
    options.client_overrides = overrides;
    common.options = options;
    Ok(common)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "run".into(), |s| s.to_string_lossy().into_owned())
}

fn write_result(out: &Path, name: &str, result: &TestResult) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = out.join(format!("{name}.json"));
    std::fs::write(&json, result.to_json()).map_err(|e| format!("{}: {e}", json.display()))?;
    let svg = out.join(format!("{name}.svg"));
    chart::draw(&[(name.to_string(), result.clone())], &svg)?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

fn load_workload(path: &Path, common: &mut Common) -> Result<Workload, String> {
    common.options.workload_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Workload::load(path)
}

fn cmd_run(args: &[String]) -> Result<(), String> {
    let mut common = parse_common(args)?;
    if common.files.is_empty() {
        return Err("run needs a workload file".into());
    }
    for file in common.files.clone() {
        let workload = load_workload(&file, &mut common)?;
        println!(
            "== {} ({}) against {}, scale {}",
            workload.name,
            file.display(),
            common.options.bootstrap,
            common.options.scale
        );
        let result = run(&workload, &common.options)?;
        print!("{}", result.summary());
        let name = match &common.label {
            Some(label) if common.files.len() == 1 => label.clone(),
            Some(label) => format!("{label}-{}", stem(&file)),
            None => stem(&file),
        };
        write_result(&common.out, &name, &result)?;
    }
    Ok(())
}

fn cmd_compare(args: &[String]) -> Result<(), String> {
    let mut chart_path = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--chart" => chart_path = Some(PathBuf::from(value(&mut it, arg)?)),
            file => files.push(PathBuf::from(file)),
        }
    }
    if files.is_empty() {
        return Err("compare needs result files".into());
    }
    let runs = files
        .iter()
        .map(|f| Ok((stem(f), TestResult::load(f)?)))
        .collect::<Result<Vec<_>, String>>()?;
    print!("{}", compare::ratio_table(&runs));
    let chart_path = chart_path.unwrap_or_else(|| PathBuf::from("compare.svg"));
    chart::draw(&runs, &chart_path)?;
    println!("wrote {}", chart_path.display());
    Ok(())
}

fn cmd_sweep(args: &[String]) -> Result<(), String> {
    let mut common = parse_common(args)?;
    let [file] = common.files.as_slice() else {
        return Err("sweep needs one workload file".into());
    };
    let file = file.clone();
    let workload = load_workload(&file, &mut common)?;
    let grid = if common.grid.is_empty() {
        sweep::default_grid()
    } else {
        common.grid.clone()
    };
    let combos = sweep::combinations(&grid);
    println!(
        "== sweep of {} over {} client settings",
        workload.name,
        combos.len()
    );
    let mut points = Vec::new();
    let base = common.options.client_overrides.clone();
    for (i, settings) in combos.into_iter().enumerate() {
        let mut options = common.options.clone();
        options.client_overrides = base.iter().cloned().chain(settings.clone()).collect();
        let point_name = settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!("-- point {} : {point_name}", i + 1);
        let result = run(&workload, &options)?;
        print!("{}", result.summary());
        let name = format!("{}-sweep-{:02}", stem(&file), i + 1);
        std::fs::create_dir_all(&common.out).map_err(|e| e.to_string())?;
        let json = common.out.join(format!("{name}.json"));
        std::fs::write(&json, result.to_json()).map_err(|e| e.to_string())?;
        points.push(Point { settings, result });
    }
    let front = sweep::frontier(&points);
    println!(
        "\n(* on the throughput / p99 frontier)\n{}",
        sweep::table(&points, &front)
    );
    let picks = sweep::picks(&points, &front);
    let frontier_runs: Vec<(String, TestResult)> = front
        .iter()
        .map(|&i| (points[i].describe(), points[i].result.clone()))
        .collect();
    let chart_path = common.out.join(format!("{}-sweep.svg", stem(&file)));
    chart::draw(&frontier_runs, &chart_path)?;
    println!("wrote {}", chart_path.display());
    let command = format!("sluice-bench sweep {}", args.join(" "));
    for (profile, i) in picks {
        let p = &points[i];
        println!(
            "{profile:>10}: {} ({:.1} MB/s, p99 {:.2} ms)",
            p.describe(),
            p.throughput_mbps(),
            p.p99_ms()
        );
        if let Some(dir) = &common.profiles_dir {
            let rank = match profile {
                "throughput" => "most MB/s on the frontier",
                "latency" => "lowest p99 on the frontier",
                _ => "best MB/s x 1/p99 on the frontier",
            };
            let path = dir.join(format!("{profile}.properties"));
            sweep::write_profile(&path, profile, p, rank, &command, &today())?;
            println!("            wrote {}", path.display());
        }
    }
    Ok(())
}

fn cmd_table(args: &[String]) -> Result<(), String> {
    let mut into = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--into" => into = Some(PathBuf::from(value(&mut it, arg)?)),
            file => files.push(PathBuf::from(file)),
        }
    }
    let runs = files
        .iter()
        .map(|f| {
            let dir = f
                .parent()
                .and_then(Path::file_name)
                .map_or_else(String::new, |d| format!("{}/", d.to_string_lossy()));
            Ok((format!("{dir}{}", stem(f)), TestResult::load(f)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let table = results_table(&runs);
    match into {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            std::fs::write(&path, replace_table(&text, &table))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!("updated the table in {}", path.display());
        }
        None => print!("{table}"),
    }
    Ok(())
}
