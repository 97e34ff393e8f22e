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
    serve_exits(2, args, expected);
}

/// `serve` with `args` on a fresh data dir (a plaintext listener unless `args` set another)
/// exits with `code`, saying `expected` on stderr.
pub(crate) fn serve_exits(code: i32, args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(["--set", &format!("log.dirs={}", dir.path().display())])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
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

/// A container that blocks io_uring (Docker's default seccomp profile does): `serve` must say so
/// and what to do, not fail somewhere inside the executor. The child gets a seccomp filter that
/// answers io_uring_setup with EPERM, as such a profile does.
#[cfg(target_arch = "x86_64")]
#[test]
fn serve_explains_a_blocked_io_uring() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("serve")
        .args(["--set", &format!("log.dirs={}", dir.path().display())])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"]);
    // SAFETY: between fork and exec the closure only calls prctl(2) with data on its own stack.
    unsafe {
        command.pre_exec(|| {
            let nr_offset = 0; // seccomp_data.nr
            let filter = [
                libc::sock_filter {
                    code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                    jt: 0,
                    jf: 0,
                    k: nr_offset,
                },
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: libc::SYS_io_uring_setup as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
            ];
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("io_uring is blocked"), "{stderr}");
    assert!(stderr.contains("seccomp=unconfined"), "{stderr}");
    assert!(
        !dir.path().join("__cluster_metadata").exists(),
        "it stopped before touching the data directory"
    );
}

/// The shipped `deploy/sluice.toml` (`mode = "production"`) loads; production mode checks the
/// real host at start and warns per setting off the profile; it still serves.
/// Runs `serve` until it prints its serving line, then stops it with SIGTERM (a clean stop,
/// which flushes the log): its log and exit status.
fn serve_until_serving(command: &mut Command) -> (String, std::process::ExitStatus) {
    serve_and(command, |_| {})
}

/// Runs `serve` until it prints its serving line, calls `meanwhile` with the address it
/// serves on, then stops it with SIGTERM: its log and exit status.
fn serve_and(
    command: &mut Command,
    meanwhile: impl FnOnce(&str),
) -> (String, std::process::ExitStatus) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .strip_prefix("sluice: serving on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{first}"));
    meanwhile(addr);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status,
    )
}

#[test]
fn production_mode_warns_about_the_host_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/sluice.toml");
    let (stderr, status) = serve_until_serving(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config", config])
            .args(["--set", &format!("log.dirs={}", dir.path().display())])
            .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
            .env("RUST_LOG", "warn"),
    );
    assert!(status.success());
    let swappiness = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    assert_eq!(
        stderr.contains("host off the production profile: vm.swappiness"),
        swappiness.trim() != "1",
        "swappiness {swappiness}: {stderr}"
    );
}

/// `iotune` measures a directory for a bounded time and writes io-properties that `serve` reads
/// (and refuses to start on when they do not parse).
#[test]
fn iotune_measures_a_directory_and_serve_reads_the_result() {
    use sluice::tune::iotune::{IoProperties, FILE_NAME};
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "iotune",
            "--dir",
            dir.path().to_str().unwrap(),
            "--seconds",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded"
    );
    assert!(stdout.contains("disk profile `disk/"), "{stdout}");
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    let props = IoProperties::parse(&text).unwrap();
    assert!(
        props.write_bytes_per_sec > 0.0 && props.read_bytes_per_sec > 0.0,
        "{text}"
    );
    assert!(props.fdatasync_p50_us > 0.0 && props.fdatasync_p99_us >= props.fdatasync_p50_us);
    assert!(props.random_read_iops > 0.0, "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(leftovers.len(), 1, "only the properties file stays");

    // serve logs what it took from them.
    // The serving line comes after the io-properties are read.
    let (log, _) = serve_until_serving(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .args(["--set", &format!("log.dirs={}", dir.path().display())])
            .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"]),
    );
    assert!(log.contains("io-properties from sluice iotune"), "{log}");
    let group = props.write_group_bytes();
    assert!(
        log.contains(&format!("write_group_max_bytes={group}"))
            || log.contains(&format!("write_group_max_bytes=\"{group}\"")),
        "{log}"
    );

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join(FILE_NAME), "disk_profile = \"tape\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(["--set", &format!("log.dirs={}", bad.path().display())])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("io-properties") && stderr.contains("disk_profile"),
        "{stderr}"
    );
}

/// `serve --log-format json`: every line on stderr is one JSON object, and a line about a
/// client's connection names the node and shard it was logged on and the client's peer and id.
#[test]
fn json_logs_name_the_shard_and_the_client() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--log-format", "json", "--cores", "1"])
        .args(["--set", &format!("log.dirs={}", dir.path().display())])
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .args(["--set", "admin.listener=127.0.0.1:0", "--set", "node.id=7"])
        .env_remove("RUST_LOG");
    let (stderr, status) = serve_and(&mut command, |addr| {
        // ApiVersions v0 from client "json-test", then a frame of an unknown API: the broker
        // closes the connection and logs why.
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        let mut request = vec![0, 18, 0, 0, 0, 0, 0, 1, 0, 9];
        request.extend_from_slice(b"json-test");
        let mut frame = (request.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&request);
        socket.write_all(&frame).unwrap();
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).unwrap();
        let mut answer = vec![0u8; i32::from_be_bytes(length) as usize];
        socket.read_exact(&mut answer).unwrap();
        socket
            .write_all(&[0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 2])
            .unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
        std::thread::sleep(std::time::Duration::from_millis(300));
    });
    assert!(status.success());
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let closed = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("closing the connection"))
        })
        .unwrap_or_else(|| panic!("no line about the closed connection in {stderr}"));
    let spans = closed["spans"].as_array().expect("spans");
    let shard = spans.iter().find(|s| s["name"] == "shard").expect("shard");
    assert_eq!(shard["node"], 7, "{closed}");
    assert_eq!(shard["shard"], 0, "{closed}");
    let conn = spans.iter().find(|s| s["name"] == "conn").expect("conn");
    assert_eq!(conn["client"], "json-test", "{closed}");
    assert!(
        conn["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{closed}"
    );
}

/// A second `serve` on a port another broker listens on stops with EADDRINUSE: SO_REUSEPORT
/// (each shard's listener) would otherwise let it join the port, and the kernel would hand it
/// half the connections (a broker stuck in shutdown on 9092 once took them and never answered).
#[test]
fn a_second_broker_on_a_taken_port_refuses_to_start() {
    let first = crate::kit::broker::Broker::start_on_fixed_port(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(["--set", &format!("log.dirs={}", dir.path().display())])
        .args(["--set", &format!("listeners=PLAINTEXT://{}", first.addr)])
        .args(["--set", "admin.listener="])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert!(stderr.contains(&first.addr), "{stderr}");
}
