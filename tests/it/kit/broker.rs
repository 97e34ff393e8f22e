//! A real `sluice serve` process for integration tests: a temp data dir, an ephemeral port, and
//! the address read from the line it prints once every shard listens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// The working directory `serve` runs in (the test's own when `None`).
    cwd: Option<PathBuf>,
    /// RLIMIT_NOFILE (soft and hard) for the process, when the test sets one.
    fd_limit: Option<u64>,
    /// The line `serve` printed once it listened.
    pub serving_line: String,
    /// Where its admin listener is (`host:port`), if it has one.
    pub admin: Option<String>,
    /// A command that runs `serve` (e.g. in a network namespace: `ip netns exec NS`).
    wrapper: Vec<String>,
    /// With `SLUICE_TEST_CLUSTER` set: the two other nodes of this broker's cluster (this one is
    /// node 1, the one the test talks to; clients find the others through it).
    peers: Vec<Broker>,
    _temp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with `--set` overrides (`key=value`).
    pub fn start(sets: &[&str]) -> Broker {
        Broker::start_on(0, sets)
    }

    /// Starts a broker that keeps one port across restarts, so that clients reconnect to it.
    pub fn start_on_fixed_port(sets: &[&str]) -> Broker {
        Broker::start_on(free_port(), sets)
    }

    /// Starts a broker as a new user does: in a fresh working directory, with no `log.dirs`
    /// (the default, relative `./sluice-data`); only the port is chosen by the kernel.
    pub fn start_as_new_user() -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            child: None,
            addr: String::new(),
            data_dir: temp.path().join("sluice-data"),
            args: vec![
                "--set".to_string(),
                "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
            ],
            cwd: Some(temp.path().to_path_buf()),
            fd_limit: None,
            serving_line: String::new(),
            admin: None,
            wrapper: Vec::new(),
            peers: Vec::new(),
            _temp: Some(temp),
        };
        broker.spawn();
        broker
    }

    /// Starts a broker through `wrapper` (a command that runs the one after it), with `--set`
    /// overrides that give its listeners.
    pub fn start_wrapped(wrapper: Vec<String>, sets: &[&str]) -> Broker {
        Broker::start_with(0, sets, None, wrapper)
    }

    /// Starts a broker whose descriptor limit (soft and hard) is `limit`.
    pub fn start_with_fd_limit(limit: u64, sets: &[&str]) -> Broker {
        Broker::start_with(0, sets, Some(limit), Vec::new())
    }

    /// Starts a broker on client port `port` (kept across restarts). With `SLUICE_TEST_CLUSTER`
    /// set, node 1 of a cluster of three (see [`Broker::start_in_cluster`]).
    pub fn start_on(port: u16, sets: &[&str]) -> Broker {
        // A test that names its node (a `Cluster` of its own) is left as it is.
        let named =
            |s: &&str| s.starts_with("controller.quorum.voters") || s.starts_with("node.id");
        if cluster_mode() && !sets.iter().any(named) {
            return Broker::start_in_cluster(port, sets);
        }
        Broker::start_with(port, sets, None, Vec::new())
    }

    /// Node 1 of three real nodes on loopback (each with `sets`), topics replicated three times
    /// unless the test says otherwise, once all three are registered: the suite run against a
    /// cluster (`SLUICE_TEST_CLUSTER=1`). The test talks to node 1; clients find the others.
    fn start_in_cluster(port: u16, sets: &[&str]) -> Broker {
        let client = |i: usize| {
            if i == 0 && port != 0 {
                port
            } else {
                free_port()
            }
        };
        let ports: Vec<(u16, u16)> = (0..3).map(|i| (client(i), free_port())).collect();
        let voters = voters_on_loopback(&ports);
        let mut nodes: Vec<Broker> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, controller))| {
                let own = [
                    format!("node.id={}", i + 1),
                    voters.clone(),
                    format!(
                        "listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
                    ),
                    "default.replication.factor=3".to_string(),
                ];
                let all: Vec<&str> = own
                    .iter()
                    .map(String::as_str)
                    .chain(sets.iter().copied())
                    .collect();
                Broker::start_with(client, &all, None, Vec::new())
            })
            .collect();
        let mut first = nodes.remove(0);
        first.peers = nodes;
        first.await_cluster(3);
        first
    }

    /// Waits until this node's Metadata lists `brokers` brokers.
    fn await_cluster(&self, brokers: usize) {
        use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut s = super::raw::connect(self);
            let response: MetadataResponse =
                super::raw::call(&mut s, ApiKey::Metadata, 9, 1, &MetadataRequest::default());
            if response.brokers.len() >= brokers {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never formed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node (this one, and the others in the cluster run) names a leader for
    /// each partition of `topic`. For acks=0, which hears of no refusal: a write to a node that
    /// has not learned of the topic yet is lost.
    pub fn await_topic_everywhere(&self, topic: &str) {
        use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in std::iter::once(self).chain(&self.peers) {
            loop {
                let mut s = super::raw::connect(node);
                let mut request = MetadataRequest::default();
                request.topics = None;
                let response: MetadataResponse =
                    super::raw::call(&mut s, ApiKey::Metadata, 9, 1, &request);
                let led = response.topics.iter().any(|t| {
                    t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)
                        && t.error_code == 0
                        && !t.partitions.is_empty()
                        && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
                });
                if led {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the node at {} never named leaders for {topic}",
                    node.addr
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn start_with(port: u16, sets: &[&str], fd_limit: Option<u64>, wrapper: Vec<String>) -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut args = vec![
            "--set".to_string(),
            format!("log.dirs={}", data_dir.display()),
            "--set".to_string(),
            format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
            // Tests run brokers side by side: each its own admin port.
            "--set".to_string(),
            "admin.listener=127.0.0.1:0".to_string(),
        ];
        for set in sets {
            args.push("--set".into());
            args.push(set.to_string());
        }
        if fd_limit.is_some() {
            // The budget is shared over the shards: two, whatever the machine has, so that the
            // test's arithmetic holds on any host.
            args.extend(["--cores".to_string(), "2".to_string()]);
        }
        let mut broker = Broker {
            child: None,
            addr: String::new(),
            data_dir,
            args,
            cwd: None,
            fd_limit,
            serving_line: String::new(),
            admin: None,
            wrapper,
            peers: Vec::new(),
            _temp: Some(temp),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let mut command = match self.fd_limit {
            // The shell sets the limit and becomes sluice (same pid).
            Some(limit) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_sluice"));
                c
            }
            None => match self.wrapper.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg(env!("CARGO_BIN_EXE_sluice"));
                    c
                }
                None => Command::new(env!("CARGO_BIN_EXE_sluice")),
            },
        };
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .arg("serve")
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(match self.fd_limit {
                // Kept, so that the test can tell the broker never ran out of descriptors.
                Some(_) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .expect("serve.log")
                    .into(),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("start sluice");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("sluice printed nothing")
            .expect("read sluice's stdout");
        let addr = line
            .strip_prefix("sluice: serving on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.admin = line
            .split("admin on http://")
            .nth(1)
            .map(|rest| rest.trim().to_string());
        self.addr = addr;
        self.serving_line = line;
        self.child = Some(child);
    }

    /// The address of listener `name` (`host:port`), from the line `serve` printed.
    pub fn listener(&self, name: &str) -> String {
        let prefix = format!("{name}://");
        self.serving_line
            .split(['(', ')', ' ', ','])
            .find_map(|word| word.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no listener {name} in: {}", self.serving_line))
            .to_string()
    }

    /// How the broker ended, if it has (an abort shows as a signal): for a failure's message.
    #[allow(dead_code)] // the harness test's (tests/bench_harness.rs shares this file)
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM and wait: the exit status must be success.
    pub fn stop(&mut self) {
        self.stop_with(libc::SIGTERM);
    }

    /// `signal` (SIGTERM or SIGINT) and wait: the exit status must be success.
    pub fn stop_with(&mut self, signal: i32) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(status.success(), "sluice exited with {status}");
    }

    /// SIGKILL: no chance to flush or checkpoint.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// Starts again on the same data directory (a new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        // The new process binds a fresh ephemeral port.
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where a broker started with a descriptor limit writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_file_name("serve.log")
    }

    /// That log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// `controller.quorum.voters=...` for nodes 1..=N on loopback, given their (client, controller)
/// ports.
/// A port for a broker to keep across restarts: free now, and below the kernel's ephemeral
/// range (`ip_local_port_range`, 32768 and up by default), so that the many client connections
/// of the tests running beside it (each holding an ephemeral local port, in TIME_WAIT after it
/// closes) cannot take it between the pick and the bind, or between a kill and the restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes running at once start apart; the tests of one process take turns.
    let start = std::process::id().wrapping_mul(2_654_435_761) % COUNT;
    loop {
        let port = (FIRST + (start + NEXT.fetch_add(7, Ordering::Relaxed)) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn voters_on_loopback(ports: &[(u16, u16)]) -> String {
    let voters: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
        .collect();
    format!("controller.quorum.voters={}", voters.join(","))
}

/// Whether the suite runs against clusters of three (`SLUICE_TEST_CLUSTER` set).
pub fn cluster_mode() -> bool {
    std::env::var_os("SLUICE_TEST_CLUSTER").is_some()
}

/// For a test that holds only on one node (raw frames to node 1 for what another node leads or
/// coordinates, broker 0's configs, per-broker listings): true, with `why` printed, in the
/// cluster run, where it returns at once.
pub fn single_node_only(why: &str) -> bool {
    if cluster_mode() {
        eprintln!("skipped in the cluster run: {why}");
    }
    cluster_mode()
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
