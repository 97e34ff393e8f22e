//! Who a connection is: the listener it came through (its name, for the endpoints Metadata
//! answers with, and its security protocol), its TLS session's client certificate, and its SASL
//! state until it has authenticated. Before that, a SASL listener's connection may send only
//! ApiVersions, SaslHandshake and SaslAuthenticate, one at a time; anything else closes it, as
//! Kafka does. `apis/sasl.rs` answers the two SASL requests.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use crate::config::Values;
use crate::io::Throttled;
use crate::security::scram::ServerExchange;
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
}

impl Conn {
    /// A new connection's identity: a client certificate names it, and a SASL listener's must
    /// authenticate first.
    pub fn new(
        listener: Rc<Listener>,
        peer: Option<SocketAddr>,
        certificate: Option<Vec<u8>>,
    ) -> Conn {
        let principal = certificate
            .as_deref()
            .and_then(security::tls::principal_of)
            .unwrap_or_else(|| security::ANONYMOUS.to_string());
        let sasl = listener.protocol.sasl().then_some(SaslState::Handshake);
        Conn {
            listener,
            peer,
            principal: RefCell::new(principal.into()),
            sasl: RefCell::new(sasl),
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

    /// Whether a request of this API may be served now.
    pub fn allows(&self, api: ApiKey) -> bool {
        !self.authenticating()
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
    }

    /// The SASL state, for the SASL requests to move on.
    pub fn sasl(&self) -> std::cell::RefMut<'_, Option<SaslState>> {
        self.sasl.borrow_mut()
    }

    /// Authenticated as `user`: every API is open to it now.
    pub fn authenticated(&self, user: &str) {
        *self.principal.borrow_mut() = format!("User:{user}").into();
        *self.sasl.borrow_mut() = None;
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

thread_local! {
    /// This shard's failed authentications, logged at most once a second.
    static FAILURES: RefCell<Throttled> = RefCell::new(Throttled::default());
}
