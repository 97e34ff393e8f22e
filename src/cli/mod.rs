//! The client commands of the `sluice` binary (`topic`, `group`, `cluster`, `user`, `acl`,
//! `produce`, `consume`, `doctor`): they talk to any Kafka-compatible cluster over the Kafka
//! protocol, with librdkafka (the rdkafka crate) for what it covers and [`wire`] for the admin
//! requests it does not expose, secured as `-X` says ([`secure`]). These modules belong to the binary, not to the broker's library.
//!
//! Exit codes: 0 done; 1 the cluster refused or something failed (each failure named on stderr);
//! 2 bad usage (clap's own code); 3 no broker in `--brokers` could be reached.

pub mod acl;
pub mod cluster;
pub mod data;
pub mod doctor;
pub mod group;
pub mod secure;
pub mod table;
pub mod topic;
pub mod user;
pub mod wire;

use std::process::ExitCode;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::ClientConfig;

use wire::Wire;

/// How the client commands reach the cluster, and how they print (every client command takes
/// these).
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// The brokers to bootstrap from: host:port[,host:port...]
    #[arg(
        short = 'b',
        long,
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,
    /// A librdkafka client property (e.g. -X security.protocol=SSL); repeat for more
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub properties: Vec<String>,
    /// Seconds to wait for the cluster's answers
    #[arg(long, value_name = "SECONDS", default_value_t = 10, global = true)]
    pub timeout: u64,
    /// Print JSON (one document, or one object per line for produce/consume) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a client command stopped.
#[derive(Debug)]
pub enum Failure {
    /// No broker could be reached (exit 3).
    Unreachable(String),
    /// The cluster refused, or the command could not do what it was asked (exit 1).
    Failed(String),
    /// Some of the things asked failed; each was already reported (exit 1).
    Reported,
}

impl Failure {
    /// Prints the one line that says what failed and gives the exit code.
    pub fn exit(self) -> ExitCode {
        match self {
            Failure::Unreachable(why) => {
                eprintln!("error: {why}");
                ExitCode::from(3)
            }
            Failure::Failed(why) => {
                eprintln!("error: {why}");
                ExitCode::FAILURE
            }
            Failure::Reported => ExitCode::FAILURE,
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// Names a Kafka error code as Kafka does (`TOPIC_ALREADY_EXISTS`), with its number if unknown.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(error) => {
            // The enum's variant (`TopicAlreadyExists`) in Kafka's spelling.
            let mut name = String::new();
            for (i, c) in format!("{error:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
        None => format!("error code {code}"),
    }
}

impl Connection {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    fn addresses(&self) -> Vec<&str> {
        self.brokers
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// A connection to the first broker of `--brokers` that answers, secured as `-X` says
    /// (TLS, SASL), for the CLI's own requests.
    pub fn bootstrap(&self) -> Result<Wire, Failure> {
        self.first_answering(Some(&self.security()?))
    }

    /// Whether a broker of `--brokers` answers at all (a TCP connection), checked before
    /// librdkafka spends its whole timeout retrying; TLS and SASL are then librdkafka's.
    fn reachable(&self) -> Result<(), Failure> {
        self.first_answering(None).map(drop)
    }

    fn first_answering(&self, security: Option<&secure::Security>) -> Result<Wire, Failure> {
        let addresses = self.addresses();
        if addresses.is_empty() {
            return Err(Failure::Unreachable("--brokers names no broker".into()));
        }
        let mut reasons = Vec::new();
        for address in addresses {
            if !address.contains(':') {
                reasons.push(format!("{address}: not host:port"));
                continue;
            }
            let within = self.timeout().min(Duration::from_secs(5));
            match Wire::connect(address, within, security) {
                Ok(wire) => return Ok(wire),
                Err(Failure::Unreachable(why)) => reasons.push(why),
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Unreachable(format!(
            "no broker in --brokers {} answers: {}",
            self.brokers,
            reasons.join("; ")
        )))
    }

    /// How the CLI's own connections are secured (the `-X` properties librdkafka takes too).
    pub fn security(&self) -> Result<secure::Security, Failure> {
        let properties: Vec<(String, String)> = self
            .properties
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        secure::Security::from_properties(&properties)
    }

    /// librdkafka's configuration for these brokers and `-X` properties.
    pub fn client_config(&self) -> Result<ClientConfig, Failure> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "sluice-cli")
            // The command reports failures itself, once; librdkafka's own log stays quiet.
            .set("log_level", "0");
        for property in &self.properties {
            let (key, value) = property
                .split_once('=')
                .ok_or_else(|| Failure::Failed(format!("-X {property}: expected KEY=VALUE")))?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }

    /// A client of type `T` (an admin client, a producer, a consumer), once the cluster answers.
    pub fn client<T: FromClientConfig>(&self, extra: &[(&str, &str)]) -> Result<T, Failure> {
        self.reachable()?;
        let mut config = self.client_config()?;
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
            .create()
            .map_err(|e| Failure::Failed(format!("client configuration: {e}")))
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, Failure> {
        self.client(&[])
    }

    /// A connection to `group`'s coordinator (FindCoordinator on a bootstrap broker).
    pub fn coordinator(&self, group: &str) -> Result<Wire, Failure> {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let mut wire = self.bootstrap()?;
        let mut request = FindCoordinatorRequest::default();
        request.key = kafka_protocol::protocol::StrBytes::from_string(group.to_string());
        request.key_type = 0;
        let deadline = std::time::Instant::now() + self.timeout();
        loop {
            let answer = wire.call(3, &request)?;
            if answer.error_code == 0 {
                let address = format!("{}:{}", answer.host.as_str(), answer.port);
                return Wire::connect(&address, self.timeout(), Some(&self.security()?));
            }
            // COORDINATOR_NOT_AVAILABLE while the offsets topic is created: ask again.
            if answer.error_code != 15 || std::time::Instant::now() > deadline {
                return Err(Failure::Failed(format!(
                    "finding the coordinator of group {group}: {}",
                    error_name(answer.error_code)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One row per topic or group of an admin answer (`what` names the column); exit 1 if any failed.
pub fn report(
    conn: &Connection,
    what: &str,
    done: &str,
    results: Vec<Result<String, (String, rdkafka::types::RDKafkaErrorCode)>>,
) -> Outcome {
    let named = results
        .into_iter()
        .map(|r| r.map_err(|(name, code)| (name, topic::rd_error(code))))
        .collect();
    report_named(conn, what, done, named)
}

/// As [`report`], the errors already named.
pub fn report_named(
    conn: &Connection,
    what: &str,
    done: &str,
    results: Vec<Result<String, (String, String)>>,
) -> Outcome {
    let mut table = table::Table::new(&[&what.to_uppercase(), "STATUS"]);
    let mut rows = Vec::new();
    let mut failed = false;
    for result in results {
        let (name, error) = match result {
            Ok(name) => (name, None),
            Err((name, error)) => {
                failed = true;
                (name, Some(error))
            }
        };
        table.row(vec![
            name.clone(),
            error.clone().unwrap_or(done.to_string()),
        ]);
        rows.push(serde_json::json!({what: name, "error": error}));
    }
    emit(conn, &table, &serde_json::json!(rows));
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

/// Prints `table`, or `document` with `--json`.
pub fn emit(conn: &Connection, table: &table::Table, document: &serde_json::Value) {
    if conn.json {
        print_json(document);
    } else {
        table.print();
    }
}

/// Waits for an rdkafka admin future.
pub fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

/// Splits `key=value` (for `--config`, `--set`, `-H`).
pub fn pair(text: &str, what: &str) -> Result<(String, String), Failure> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| Failure::Failed(format!("{what} {text}: expected KEY=VALUE")))?;
    Ok((key.trim().to_string(), value.to_string()))
}

/// Prints `value` as JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
