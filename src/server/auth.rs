//! Who a connection is: the listener it came through (its name, for the endpoints Metadata
//! answers with, and its security protocol), its TLS session's client certificate, and its SASL
//! state until it has authenticated. Before that, a SASL listener's connection may send only
//! ApiVersions, SaslHandshake and SaslAuthenticate, one at a time; anything else closes it, as
//! Kafka does. `apis/sasl.rs` answers the two SASL requests.
//!
//! With `connections.max.reauth.ms` set, an authenticated session lasts that long (KIP-368): the
//! client is told in SaslAuthenticate (v1+) and re-authenticates on the same connection, with the
//! same mechanism and as the same principal, by sending SaslHandshake again; a connection whose
//! session has expired is closed at its next request other than SaslHandshake.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use crate::config::Values;
use crate::io::Throttled;
use crate::security::principal::PrincipalRules;
use crate::security::scram::{Credential, Mechanism, ServerExchange, ITERATIONS_MIN};
use crate::security::tls::{Tls, TlsFiles};
use crate::security::{self, ListenerSpec, Protocol};

/// One of the node's client listeners, as a shard serves it.
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    /// The TLS configuration of an `SSL` or `SASL_SSL` listener, reloaded as its files change.
    pub tls: Option<RefCell<Tls>>,
    /// `sasl.enabled.mechanisms`.
    pub mechanisms: Vec<String>,
    /// How long a connection may take to finish its TLS handshake and authenticate.
    pub handshake: Duration,
    /// `connections.max.reauth.ms`: how long an authenticated SASL session lasts (None: for
    /// the connection's life).
    pub reauth: Option<Duration>,
    /// `ssl.principal.mapping.rules`: a client certificate's subject to its principal's name.
    pub principal_rules: PrincipalRules,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication's answer
    /// (and the close) waits, to slow a client guessing passwords.
    pub failure_delay: Duration,
}

impl Listener {
    pub fn new(spec: &ListenerSpec, broker: &Values) -> Result<Listener, String> {
        let tls = if spec.protocol.tls() {
            let files = TlsFiles::from_config(broker)
                .map_err(|e| format!("listener {}: {e}", spec.name))?;
            let tls = Tls::new(files).map_err(|e| format!("listener {}: {e}", spec.name))?;
            Some(RefCell::new(tls))
        } else {
            None
        };
        Ok(Listener {
            name: spec.name.clone(),
            protocol: spec.protocol,
            tls,
            mechanisms: security::enabled_mechanisms(broker)?,
            handshake: Duration::from_millis(broker.i64("sasl.handshake.timeout.ms") as u64),
            principal_rules: PrincipalRules::parse(broker.get("ssl.principal.mapping.rules"))?,
            failure_delay: Duration::from_millis(
                broker.i64("connection.failed.authentication.delay.ms") as u64,
            ),
            reauth: match broker.i64("connections.max.reauth.ms") {
                ms if ms > 0 => Some(Duration::from_millis(ms as u64)),
                _ => None,
            },
        })
    }
}

/// Where a SASL listener's connection is in authenticating.
pub enum SaslState {
    /// Waiting for SaslHandshake.
    Handshake,
    /// SaslHandshake chose PLAIN; waiting for its one SaslAuthenticate.
    Plain,
    /// SaslHandshake chose a SCRAM mechanism.
    Scram(ServerExchange),
    /// Authentication failed: the connection closes once the answer is sent.
    Failed,
}

/// One client connection's identity.
pub struct Conn {
    pub listener: Rc<Listener>,
    pub peer: Option<SocketAddr>,
    /// Kafka's principal: `User:ANONYMOUS`, the certificate's subject (`User:CN=...`) or the
    /// SASL user (`User:alice`).
    principal: RefCell<Rc<str>>,
    /// `None` once authenticated (or on a listener without SASL).
    sasl: RefCell<Option<SaslState>>,
    /// The mechanism the session authenticated with: a re-authentication must use it.
    mechanism: Cell<Option<&'static str>>,
    /// When the current (re-)authentication began: it has `listener.handshake` to finish.
    began: Cell<Instant>,
    /// When the authenticated session expires (`connections.max.reauth.ms`).
    expires: Cell<Option<Instant>>,
}

impl Conn {
    /// A new connection's identity: a client certificate names it (`principal`, the mapped
    /// name), and a SASL listener's must authenticate first.
    pub fn new(
        listener: Rc<Listener>,
        peer: Option<SocketAddr>,
        principal: Option<String>,
    ) -> Conn {
        let principal = principal
            .map(|name| format!("User:{name}"))
            .unwrap_or_else(|| security::ANONYMOUS.to_string());
        let sasl = listener.protocol.sasl().then_some(SaslState::Handshake);
        Conn {
            listener,
            peer,
            principal: RefCell::new(principal.into()),
            sasl: RefCell::new(sasl),
            mechanism: Cell::new(None),
            began: Cell::new(Instant::now()),
            expires: Cell::new(None),
        }
    }

    pub fn principal(&self) -> Rc<str> {
        self.principal.borrow().clone()
    }

    /// Whether the connection still has to authenticate (or failed to).
    pub fn authenticating(&self) -> bool {
        self.sasl.borrow().is_some()
    }

    pub fn failed(&self) -> bool {
        matches!(*self.sasl.borrow(), Some(SaslState::Failed))
    }

    /// Whether a session authenticated before is authenticating again (KIP-368).
    pub fn reauthenticating(&self) -> bool {
        self.authenticating() && self.mechanism.get().is_some()
    }

    /// When the current (re-)authentication began.
    pub fn began(&self) -> Instant {
        self.began.get()
    }

    /// Whether the authenticated session has expired (it must re-authenticate first).
    pub fn expired(&self) -> bool {
        self.expires.get().is_some_and(|at| at <= Instant::now())
    }

    /// What SaslAuthenticate tells the client of its session's lifetime (0: unlimited).
    pub fn session_lifetime_ms(&self) -> i64 {
        self.listener.reauth.map_or(0, |d| d.as_millis() as i64)
    }

    /// Whether a request of this API may be served now.
    pub fn allows(&self, api: ApiKey) -> bool {
        !self.authenticating()
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
    }

    /// SaslHandshake on an authenticated SASL connection: a re-authentication with `mechanism`
    /// begins (false: it is not the one the session used, and may not be).
    pub fn begin_reauthentication(&self, mechanism: &str) -> bool {
        if self.mechanism.get() != Some(mechanism) {
            return false;
        }
        *self.sasl.borrow_mut() = Some(SaslState::Handshake);
        self.began.set(Instant::now());
        true
    }

    /// The mechanism the session authenticated with, if it has.
    pub fn mechanism(&self) -> Option<&'static str> {
        self.mechanism.get()
    }

    /// The SASL state, for the SASL requests to move on.
    pub fn sasl(&self) -> std::cell::RefMut<'_, Option<SaslState>> {
        self.sasl.borrow_mut()
    }

    /// Authenticated as `user` with `mechanism`: every API is open to it now, until the
    /// session expires. A re-authentication must name the same principal.
    pub fn authenticated(&self, mechanism: &'static str, user: &str) -> Result<(), String> {
        let principal = format!("User:{user}");
        if self.mechanism.get().is_some() && *self.principal() != *principal {
            return Err(format!(
                "cannot change principals during re-authentication from {}: {principal}",
                self.principal()
            ));
        }
        *self.principal.borrow_mut() = principal.into();
        *self.sasl.borrow_mut() = None;
        self.mechanism.set(Some(mechanism));
        self.expires.set(
            self.listener
                .reauth
                .map(|lifetime| Instant::now() + lifetime),
        );
        Ok(())
    }

    /// Authentication failed: logged (at most once a second per shard, with how many) and
    /// counted; the connection closes once the answer is sent.
    pub fn fail(&self, mechanism: &str, user: Option<&str>, reason: &dyn std::fmt::Display) {
        *self.sasl.borrow_mut() = Some(SaslState::Failed);
        let peer = self.peer;
        let listener = &self.listener.name;
        FAILURES.with(|throttle| {
            throttle.borrow_mut().note(|count| {
                tracing::warn!(?peer, listener, mechanism, user, %reason, count, "authentication failed")
            })
        });
    }
}

/// Whether `password` is `user`'s, checked against the user's strongest SCRAM credential in the
/// cluster metadata (PBKDF2 off the shard's core): SASL/PLAIN, and the admin listener's HTTP
/// Basic authentication.
pub async fn password_matches(shard: &super::Shard, user: &str, password: String) -> bool {
    let stored = shard
        .image()
        .scram
        .get(user)
        .and_then(|credentials| credentials.iter().next_back().map(|(m, c)| (*m, c.clone())));
    // An unknown user's password is checked against a credential no password matches, with
    // the same cost: how long the answer takes does not tell whether the user exists.
    let known = stored.is_some();
    // One PBKDF2 at a time per shard: a flood of password guesses queues here instead of
    // taking every core.
    let checks = PASSWORD_CHECKS.with(|budget| budget.clone());
    let _turn = checks.acquire(1).await;
    let matches = crate::io::off_core(move || {
        let (mechanism, credential) = stored.unwrap_or_else(|| (Mechanism::Sha512, unmatchable()));
        credential.matches_password(mechanism, &password)
    })
    .await;
    known && matches
}

/// A SCRAM-SHA-512 credential of Kafka's default iterations for a random password nobody
/// knows (made once per thread that checks passwords).
fn unmatchable() -> Credential {
    thread_local! {
        static UNMATCHABLE: Credential = {
            let mut secret = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .expect("the system's random source");
            let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            Credential::from_password(Mechanism::Sha512, &password, ITERATIONS_MIN)
        };
    }
    UNMATCHABLE.with(Credential::clone)
}

thread_local! {
    /// This shard's password checks (PBKDF2), one at a time.
    static PASSWORD_CHECKS: crate::io::Budget = crate::io::Budget::new(1);
    /// This shard's failed authentications, logged at most once a second.
    static FAILURES: RefCell<Throttled> = RefCell::new(Throttled::default());
}
