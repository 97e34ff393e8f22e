//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them (KIP-84): the
//! stored credential (salt, iterations, StoredKey, ServerKey: never the password), the server's
//! side of the exchange as a state machine over the client's messages, and PLAIN's check of a
//! password against the same stored credential. Primitives from ring; the messages, their
//! parsing and the state machine are here (no crate speaks SCRAM's server side), bounded:
//! every message is at most `MESSAGE_BYTES_MAX` and is parsed without allocation in proportion
//! to anything but its own length.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::{digest, hmac, pbkdf2};

/// The longest client message taken (Kafka's `sasl.server.max.receive.size` is 512 KiB for
/// every mechanism; a SCRAM message is a user name, a nonce and a proof).
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024;
/// Kafka's bounds on a credential's iterations (AlterUserScramCredentials).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism's name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's ScramMechanism type (AlterUserScramCredentials, DescribeUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(kind: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == kind)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_len(self) -> usize {
        self.digest().output_len()
    }
}

fn mac(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(mechanism.hmac(), key), data)
        .as_ref()
        .to_vec()
}

/// What the cluster keeps of a user's password for one mechanism.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Credential {
    /// From the salted password (what AlterUserScramCredentials carries: the client ran PBKDF2).
    pub fn from_salted(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Credential {
        let client_key = mac(mechanism, salted_password, b"Client Key");
        Credential {
            salt,
            iterations,
            stored_key: digest::digest(mechanism.digest(), &client_key)
                .as_ref()
                .to_vec(),
            server_key: mac(mechanism, salted_password, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: u32) -> Credential {
        let mut salt = vec![0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .expect("the system's random source");
        let salted = salt_password(mechanism, password, &salt, iterations);
        Credential::from_salted(mechanism, &salted, salt, iterations)
    }

    /// `salt:iterations:StoredKey:ServerKey`, the bytes in base64: the image's text form.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            BASE64.encode(&self.salt),
            self.iterations,
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }

    pub fn from_text(text: &str) -> Option<Credential> {
        let mut parts = text.split(':');
        let salt = BASE64.decode(parts.next()?).ok()?;
        let iterations = parts.next()?.parse().ok()?;
        let stored_key = BASE64.decode(parts.next()?).ok()?;
        let server_key = BASE64.decode(parts.next()?).ok()?;
        parts.next().is_none().then_some(Credential {
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN's check).
    pub fn matches_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = salt_password(mechanism, password, &self.salt, self.iterations);
        let again = Credential::from_salted(mechanism, &salted, Vec::new(), 0);
        same(&again.stored_key, &self.stored_key)
    }
}

/// SCRAM's SaltedPassword: PBKDF2 with the mechanism's HMAC.
pub fn salt_password(
    mechanism: Mechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.output_len()];
    let rounds = NonZeroU32::new(iterations.max(1)).expect("at least one");
    pbkdf2::derive(
        mechanism.pbkdf2(),
        rounds,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed. `Credentials` is what a client is told about a wrong password or an
/// unknown user alike; the others are malformed messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("invalid credentials")]
    Credentials,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM message of {0} bytes is too long")]
    TooLong(usize),
    #[error("the exchange is already over")]
    Over,
    #[error("the broker did not prove its key")]
    ServerProof,
}

/// The server's side of one exchange.
pub enum ServerExchange {
    /// Waiting for client-first-message.
    Start {
        mechanism: Mechanism,
    },
    /// Sent server-first-message; waiting for client-final-message.
    Challenged(Box<Challenged>),
    Done,
}

/// What the server keeps between its challenge and the client's final message.
pub struct Challenged {
    mechanism: Mechanism,
    user: String,
    credential: Credential,
    nonce: String,
    /// client-first-message-bare "," server-first-message
    auth_prefix: String,
    gs2_header: String,
}

/// What a step gives back.
pub enum Step {
    /// Send this and wait for the next message.
    Challenge(Vec<u8>),
    /// Authenticated as this user; send the final message.
    Authenticated { user: String, last: Vec<u8> },
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> ServerExchange {
        ServerExchange::Start { mechanism }
    }

    /// The user the client named, once it has.
    pub fn user(&self) -> Option<&str> {
        match self {
            ServerExchange::Challenged(challenged) => Some(&challenged.user),
            _ => None,
        }
    }

    pub fn mechanism(&self) -> Option<Mechanism> {
        match self {
            ServerExchange::Start { mechanism } => Some(*mechanism),
            ServerExchange::Challenged(challenged) => Some(challenged.mechanism),
            ServerExchange::Done => None,
        }
    }

    /// Takes the client's next message; `lookup` finds a user's credential for this mechanism.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<Step, ScramError> {
        if message.len() > MESSAGE_BYTES_MAX {
            *self = ServerExchange::Done;
            return Err(ScramError::TooLong(message.len()));
        }
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"));
        let state = std::mem::replace(self, ServerExchange::Done);
        match state {
            ServerExchange::Start { mechanism } => {
                let (next, step) = first(mechanism, text?, lookup)?;
                *self = next;
                Ok(step)
            }
            ServerExchange::Challenged(challenged) => {
                let last = last(text?, &challenged)?;
                Ok(Step::Authenticated {
                    user: challenged.user,
                    last,
                })
            }
            ServerExchange::Done => Err(ScramError::Over),
        }
    }
}

fn first(
    mechanism: Mechanism,
    text: &str,
    lookup: impl FnOnce(&str) -> Option<Credential>,
) -> Result<(ServerExchange, Step), ScramError> {
    // gs2-header: "n," or "y," (no channel binding), then an optional "a=authzid", then ",".
    let (binding, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    if binding != "n" && binding != "y" {
        return Err(ScramError::Malformed(
            "channel binding is not supported (GS2 flag must be n or y)",
        ));
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    let gs2_header = format!("{binding},{authzid},");
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or(ScramError::Malformed("no user name"))?;
    let client_nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or(ScramError::Malformed("no client nonce"))?;
    let user = unescape_user(user)?;
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if unescape_user(authzid)? != user {
            return Err(ScramError::Malformed(
                "the authorization id differs from the user name",
            ));
        }
    }
    let credential = lookup(&user).ok_or(ScramError::Credentials)?;
    let mut server_nonce = [0u8; 18];
    ring::rand::SystemRandom::new()
        .fill(&mut server_nonce)
        .expect("the system's random source");
    let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    let auth_prefix = format!("{bare},{server_first}");
    let challenged = Challenged {
        mechanism,
        user,
        credential,
        nonce,
        auth_prefix,
        gs2_header,
    };
    Ok((
        ServerExchange::Challenged(Box::new(challenged)),
        Step::Challenge(server_first.into_bytes()),
    ))
}

fn last(text: &str, challenged: &Challenged) -> Result<Vec<u8>, ScramError> {
    let Challenged {
        mechanism,
        credential,
        nonce,
        auth_prefix,
        gs2_header,
        ..
    } = challenged;
    let mechanism = *mechanism;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("no proof"))?;
    let mut fields = without_proof.split(',');
    let binding = fields
        .next()
        .and_then(|f| f.strip_prefix("c="))
        .ok_or(ScramError::Malformed("no channel binding"))?;
    if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
        return Err(ScramError::Malformed(
            "the channel binding differs from the GS2 header",
        ));
    }
    let their_nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    if their_nonce != nonce {
        return Err(ScramError::Malformed("the nonce differs from the server's"));
    }
    let proof = BASE64
        .decode(proof)
        .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
    let auth_message = format!("{auth_prefix},{without_proof}");
    let signature = mac(mechanism, &credential.stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return Err(ScramError::Credentials);
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    let stored = digest::digest(mechanism.digest(), &client_key);
    if !same(stored.as_ref(), &credential.stored_key) {
        return Err(ScramError::Credentials);
    }
    let server_signature = mac(mechanism, &credential.server_key, auth_message.as_bytes());
    Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
}

/// The most iterations a client runs for a server's challenge: a hostile server cannot make it
/// spin for long.
pub const CLIENT_ITERATIONS_MAX: u32 = 1 << 20;

/// A client's side of one exchange (the CLI's, and the tests'): `first`, then `last` from the
/// server's challenge, then `verify` the server's final message.
#[derive(Clone)]
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// The exchange and its client-first-message.
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> (ClientExchange, Vec<u8>) {
        let mut nonce = [0u8; 18];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={}", BASE64.encode(nonce));
        let first = format!("n,,{bare}").into_bytes();
        let exchange = ClientExchange {
            mechanism,
            password: password.to_string(),
            bare,
            expected_server_signature: None,
        };
        (exchange, first)
    }

    /// The client-final-message for the server's challenge.
    pub fn last(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        if server_first.len() > MESSAGE_BYTES_MAX {
            return Err(ScramError::TooLong(server_first.len()));
        }
        let text =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut fields = text.split(',');
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        let client_nonce = self.bare.rsplit_once("r=").map(|(_, n)| n).unwrap_or("");
        if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
            return Err(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ));
        }
        let salt = fields
            .next()
            .and_then(|f| f.strip_prefix("s="))
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = fields
            .next()
            .and_then(|f| f.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=CLIENT_ITERATIONS_MAX).contains(i))
            .ok_or(ScramError::Malformed("no iteration count, or too many"))?;
        let m = self.mechanism;
        let salted = salt_password(m, &self.password, &salt, iterations);
        let client_key = mac(m, &salted, b"Client Key");
        let stored = digest::digest(m.digest(), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.bare);
        let signature = mac(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = mac(m, &salted, b"Server Key");
        self.expected_server_signature = Some(mac(m, &server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Whether `last` has run: the server's next message is its final one.
    pub fn awaiting_final(&self) -> bool {
        self.expected_server_signature.is_some()
    }

    /// Whether the server's final message proves it holds the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let signature = std::str::from_utf8(server_final)
            .ok()
            .and_then(|t| t.strip_prefix("v="))
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match &self.expected_server_signature {
            Some(expected) if same(expected, &signature) => Ok(()),
            _ => Err(ScramError::Credentials),
        }
    }
}

/// A client's whole SASL login, PLAIN or SCRAM, without I/O: `start` gives the first message,
/// then each answer of the broker (the bytes of a SaslAuthenticate response without error)
/// gives the next message to send, or none once authenticated. The CLI and the brokers'
/// connections to each other drive it over their own sockets.
#[derive(Clone)]
pub enum ClientLogin {
    Plain,
    Scram(ClientExchange),
}

impl ClientLogin {
    /// For `mechanism` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, else None): the login and its
    /// first message.
    pub fn start(mechanism: &str, user: &str, password: &str) -> Option<(ClientLogin, Vec<u8>)> {
        if mechanism == "PLAIN" {
            let message = format!("\0{user}\0{password}").into_bytes();
            return Some((ClientLogin::Plain, message));
        }
        let (exchange, first) =
            ClientExchange::start(Mechanism::from_name(mechanism)?, user, password);
        Some((ClientLogin::Scram(exchange), first))
    }

    /// The next message for the broker's answer `bytes`, or None when the login is done (for
    /// SCRAM, once the broker proved it holds the credential). SCRAM's second message runs
    /// PBKDF2: a caller on an event loop runs this off its core.
    pub fn answer(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, ScramError> {
        match self {
            ClientLogin::Plain => Ok(None),
            ClientLogin::Scram(exchange) if exchange.awaiting_final() => exchange
                .verify(bytes)
                .map(|()| None)
                .map_err(|_| ScramError::ServerProof),
            ClientLogin::Scram(exchange) => exchange.last(bytes).map(Some),
        }
    }
}

/// `saslname`: `=2C` is a comma and `=3D` an equals sign; any other `=` is malformed.
fn unescape_user(name: &str) -> Result<String, ScramError> {
    if name.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        match code {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// SASL/PLAIN's one message (RFC 4616): `authzid NUL authcid NUL passwd`; the authorization id,
/// when given, must be the user.
pub fn parse_plain(message: &[u8]) -> Result<(&str, &str), ScramError> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(ScramError::TooLong(message.len()));
    }
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed(
            "PLAIN takes authzid NUL user NUL password",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(ScramError::Malformed("empty user name or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(ScramError::Malformed(
            "the authorization id differs from the user name",
        ));
    }
    Ok((user, password))
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
