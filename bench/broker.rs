//! Broker CPU cost per GB, each as a ratio to a floor measured in the same run:
//! - ingest: `sluice serve` taking 1 KiB messages on 16 partitions from an rdkafka producer on
//!   loopback, vs a minimal process that receives the same number of bytes over TCP and appends
//!   them to a file;
//! - fetch: an rdkafka consumer reading it all back, vs a minimal process that sendfile()s the same
//!   segment files to a socket.
//!
//! `cargo bench --bench broker` (SLUICE_BENCH_MB sets the volume, default 256; SLUICE_BENCH_CORES
//! passes `--cores`; SLUICE_BENCH_ROUNDS, default 3). Output: a line per round, then the median
//! ratios. CPU time is user+system of the serving process only, read from its CPU-time clock.
//! SLUICE_BENCH_BIN runs another build of the broker (an older commit's, for a before/after).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_topic, delete_topic, median, process_cpu_seconds, settle};

const PARTITIONS: i32 = 16;
const MESSAGE_BYTES: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("floor-ingest") => return floor_ingest(Path::new(&args[2])),
        Some("floor-fetch") => return floor_fetch(&args[2..]),
        _ => {}
    }
    let megabytes: u64 = std::env::var("SLUICE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let messages = megabytes * 1024 * 1024 / MESSAGE_BYTES as u64;
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let (broker, addr) = common::start_broker(&data_dir, &[]);
    let pid = broker_pid(broker.id() as i32);
    println!("messages_per_round {messages}");
    let mut ingest_ratios = Vec::new();
    let mut fetch_ratios = Vec::new();
    // Broker and floor alternate within each round, so that both see the same machine.
    for round in 0..rounds {
        let topic = format!("bench-{round}");
        create_topic(&addr, &topic, PARTITIONS);
        settle();
        let cpu_before = process_cpu_seconds(pid);
        let started = Instant::now();
        produce(&addr, &topic, messages);
        let ingest_wall = started.elapsed().as_secs_f64();
        let ingest_cpu = process_cpu_seconds(pid) - cpu_before;
        let segment_files = segment_files(&data_dir, &topic);
        let stored_bytes: u64 = segment_files
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let gb = stored_bytes as f64 / 1e9;
        settle();
        let floor_ingest_cpu = run_floor_ingest(stored_bytes, temp.path());

        settle();
        let cpu_before = process_cpu_seconds(pid);
        let fetch_wall = consume(&addr, &topic, messages);
        let fetch_cpu = process_cpu_seconds(pid) - cpu_before;
        settle();
        let floor_fetch_cpu = run_floor_fetch(&segment_files);
        delete_topic(&addr, &topic);

        let ingest_ratio = ingest_cpu / floor_ingest_cpu.max(1e-9);
        let fetch_ratio = fetch_cpu / floor_fetch_cpu.max(1e-9);
        println!(
            "round {round}: stored_bytes {stored_bytes} ingest {:.0} MB/s {:.0} msgs/s, \
             cpu s/GB {:.3} (floor {:.3}) ratio {ingest_ratio:.2}; \
             fetch {:.0} MB/s, cpu s/GB {:.3} (floor {:.3}) ratio {fetch_ratio:.2}",
            stored_bytes as f64 / 1e6 / ingest_wall,
            messages as f64 / ingest_wall,
            ingest_cpu / gb,
            floor_ingest_cpu / gb,
            stored_bytes as f64 / 1e6 / fetch_wall,
            fetch_cpu / gb,
            floor_fetch_cpu / gb,
        );
        ingest_ratios.push(ingest_ratio);
        fetch_ratios.push(fetch_ratio);
    }
    common::stop_broker(broker, pid);
    println!("ingest_ratio_median {:.2}", median(&mut ingest_ratios));
    println!("fetch_ratio_median {:.2}", median(&mut fetch_ratios));
}

/// The broker's pid: the child itself, or the sluice process under a wrapper.
fn broker_pid(child: i32) -> i32 {
    for _ in 0..100 {
        let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        if comm.trim() == "sluice" {
            return child;
        }
        let children = std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
            .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Writes back dirty pages before a measured phase, so that neither side pays for the other's
/// writeback (it made the ingest floor swing 3x between runs).
fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn produce(addr: &str, topic: &str, messages: u64) {
    common::produce_bulk(addr, topic, messages, PARTITIONS, &[b'x'; MESSAGE_BYTES]);
}

fn consume(addr: &str, topic: &str, messages: u64) -> f64 {
    common::consume_all(addr, &[], topic, PARTITIONS, messages, MESSAGE_BYTES)
}

fn segment_files(data_dir: &Path, topic: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in 0..PARTITIONS {
        for entry in std::fs::read_dir(data_dir.join(format!("{topic}-{p}"))).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs a child of this binary with `args`, reading the port it prints, then its CPU seconds.
fn spawn_floor(args: &[&str]) -> (Child, u16, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (child, line.trim().parse().unwrap(), out)
}

fn finish_floor(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> f64 {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    child.wait().unwrap();
    line.trim().parse().unwrap()
}

fn run_floor_ingest(bytes: u64, dir: &Path) -> f64 {
    let target = dir.join("floor-ingest.bin");
    let (child, port, out) = spawn_floor(&["floor-ingest", target.to_str().unwrap()]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    drop(stream);
    let cpu = finish_floor(child, out);
    let _ = std::fs::remove_file(&target);
    cpu
}

/// The ingest floor: receive bytes over TCP and append them to a file, nothing else.
fn floor_ingest(target: &Path) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut file = std::fs::File::create(target).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let start = self_cpu_seconds();
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).unwrap();
    }
    println!("{}", self_cpu_seconds() - start);
}

fn run_floor_fetch(files: &[PathBuf]) -> f64 {
    let mut args = vec!["floor-fetch".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, port, out) = spawn_floor(&refs);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while stream.read(&mut buf).unwrap() > 0 {}
    finish_floor(child, out)
}

/// The fetch floor: sendfile() each segment file whole to one socket.
fn floor_fetch(files: &[String]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (stream, _) = listener.accept().unwrap();
    let start = self_cpu_seconds();
    for path in files {
        let file = std::fs::File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut offset: libc::off_t = 0;
        while (offset as u64) < len {
            // SAFETY: both descriptors are open; sendfile advances `offset`.
            let n = unsafe {
                libc::sendfile(
                    stream.as_raw_fd(),
                    file.as_raw_fd(),
                    &mut offset,
                    (len - offset as u64) as usize,
                )
            };
            assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        }
    }
    drop(stream);
    println!("{}", self_cpu_seconds() - start);
}
