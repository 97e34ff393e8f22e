//! `sluice user create|delete|list`: SCRAM users, through the Kafka API
//! (AlterUserScramCredentials, DescribeUserScramCredentials; KIP-554), so that they work against
//! any cluster that serves it. The password is salted here (PBKDF2) and only the salted form is
//! sent, as Kafka's own tools do.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use ring::rand::SecureRandom as _;
use serde_json::json;
use sluice::security::scram::{self, Mechanism};

use super::table::Table;
use super::{emit, error_name, Connection, Failure, Outcome};

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a SCRAM user, or set its password (for each mechanism asked)
    Create {
        name: String,
        /// The password (read from the first line of stdin when not given)
        #[arg(long)]
        password: Option<String>,
        /// SCRAM-SHA-256, SCRAM-SHA-512 or both (the default)
        #[arg(long, value_name = "MECHANISM")]
        mechanism: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384)
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Delete a user's SCRAM credentials (every mechanism it has, or those asked)
    Delete {
        name: String,
        #[arg(long, value_name = "MECHANISM")]
        mechanism: Vec<String>,
    },
    /// Users and their SCRAM mechanisms (never a password: the cluster keeps none)
    List,
}

fn mechanisms(names: &[String]) -> Result<Vec<Mechanism>, Failure> {
    if names.is_empty() {
        return Ok(Mechanism::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            Mechanism::from_name(name).ok_or_else(|| {
                Failure::Failed(format!(
                    "--mechanism {name}: not SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            })
        })
        .collect()
}

pub fn run(command: UserCommand, conn: &Connection) -> Outcome {
    match command {
        UserCommand::Create {
            name,
            password,
            mechanism,
            iterations,
        } => {
            let mechanisms = mechanisms(&mechanism)?;
            let password = match password {
                Some(password) => password,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Failure::Failed(format!("reading the password: {e}")))?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                return Err(Failure::Failed("the password is empty".into()));
            }
            let mut request = AlterUserScramCredentialsRequest::default();
            for mechanism in mechanisms {
                let mut salt = vec![0u8; 24];
                ring::rand::SystemRandom::new()
                    .fill(&mut salt)
                    .map_err(|_| Failure::Failed("no random source".into()))?;
                let mut upsertion = ScramCredentialUpsertion::default();
                upsertion.name = StrBytes::from_string(name.clone());
                upsertion.mechanism = mechanism.kafka_type();
                upsertion.iterations = iterations as i32;
                upsertion.salted_password =
                    scram::salt_password(mechanism, &password, &salt, iterations).into();
                upsertion.salt = salt.into();
                request.upsertions.push(upsertion);
            }
            alter(conn, &request, "created")
        }
        UserCommand::Delete { name, mechanism } => {
            let asked = mechanisms(&mechanism)?;
            // Without --mechanism: the ones the user has (deleting one it lacks is an error).
            let mechanisms = if mechanism.is_empty() {
                let has = describe(conn, Some(&name))?;
                let has: Vec<Mechanism> = has
                    .into_iter()
                    .flat_map(|(_, mechanisms)| mechanisms)
                    .filter_map(|(m, _)| Mechanism::from_name(&m))
                    .collect();
                if has.is_empty() {
                    return Err(Failure::Failed(format!("user {name} does not exist")));
                }
                has
            } else {
                asked
            };
            let mut request = AlterUserScramCredentialsRequest::default();
            for mechanism in mechanisms {
                let mut deletion = ScramCredentialDeletion::default();
                deletion.name = StrBytes::from_string(name.clone());
                deletion.mechanism = mechanism.kafka_type();
                request.deletions.push(deletion);
            }
            alter(conn, &request, "deleted")
        }
        UserCommand::List => {
            let users = describe(conn, None)?;
            let mut table = Table::new(&["USER", "MECHANISMS"]);
            let mut rows = Vec::new();
            for (user, mechanisms) in &users {
                let names: Vec<String> = mechanisms
                    .iter()
                    .map(|(m, i)| format!("{m} ({i} iterations)"))
                    .collect();
                table.row(vec![user.clone(), names.join(", ")]);
                let mechanisms: Vec<_> = mechanisms
                    .iter()
                    .map(|(m, i)| json!({"mechanism": m, "iterations": i}))
                    .collect();
                rows.push(json!({"user": user, "mechanisms": mechanisms}));
            }
            emit(conn, &table, &json!(rows));
            Ok(())
        }
    }
}

fn alter(conn: &Connection, request: &AlterUserScramCredentialsRequest, done: &str) -> Outcome {
    let answer: AlterUserScramCredentialsResponse = conn.bootstrap()?.call(0, request)?;
    let results = answer
        .results
        .iter()
        .map(|r| match r.error_code {
            0 => Ok(r.user.to_string()),
            code => Err((
                r.user.to_string(),
                format!(
                    "{}: {}",
                    error_name(code),
                    r.error_message.as_deref().unwrap_or("")
                ),
            )),
        })
        .collect();
    super::report_named(conn, "user", done, results)
}

/// Users (one, or all) with their mechanisms and iterations.
#[allow(clippy::type_complexity)]
fn describe(
    conn: &Connection,
    user: Option<&str>,
) -> Result<Vec<(String, Vec<(String, i32)>)>, Failure> {
    let mut request = DescribeUserScramCredentialsRequest::default();
    request.users = user.map(|name| {
        let mut entry =
            kafka_protocol::messages::describe_user_scram_credentials_request::UserName::default();
        entry.name = StrBytes::from_string(name.to_string());
        vec![entry]
    });
    let answer = conn.bootstrap()?.call(0, &request)?;
    if answer.error_code != 0 {
        return Err(Failure::Failed(format!(
            "describing users: {}",
            error_name(answer.error_code)
        )));
    }
    let mut users = Vec::new();
    for result in answer.results {
        // An unknown user asked by name: no mechanisms.
        const RESOURCE_NOT_FOUND: i16 = 91;
        match result.error_code {
            0 => {}
            RESOURCE_NOT_FOUND => continue,
            code => {
                return Err(Failure::Failed(format!(
                    "user {}: {}",
                    result.user.as_str(),
                    error_name(code)
                )))
            }
        }
        let mechanisms = result
            .credential_infos
            .iter()
            .map(|c| {
                let name = Mechanism::from_kafka_type(c.mechanism)
                    .map_or(format!("mechanism {}", c.mechanism), |m| {
                        m.name().to_string()
                    });
                (name, c.iterations)
            })
            .collect();
        users.push((result.user.to_string(), mechanisms));
    }
    Ok(users)
}
