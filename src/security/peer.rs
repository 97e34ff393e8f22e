//! How a broker secures its own connections to the other brokers' inter-broker listener
//! (follower fetches, transaction markers), as Kafka configures it: the listener's protocol;
//! for TLS the CAs of `ssl.truststore.location`, the broker's own keystore certificate as its
//! client certificate, and the host name checked unless `ssl.endpoint.identification.algorithm`
//! is empty; for SASL `sasl.mechanism.inter.broker.protocol` with the username and password of
//! `listener.name.LISTENER.MECHANISM.sasl.jaas.config` (or `sasl.jaas.config`).

use std::sync::Arc;

use super::tls::{ClientAuth, Tls, TlsFiles};
use super::Protocol;
use crate::config::Values;

/// The broker's SASL login on the inter-broker listener.
#[derive(Clone)]
pub struct Login {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({} as {})", self.mechanism, self.user)
    }
}

/// The security of a broker's connections to the others.
#[derive(Clone, Debug, Default)]
pub struct PeerSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Login>,
}

impl PeerSecurity {
    /// For the inter-broker listener `listener` of protocol `protocol`; why it cannot be, where
    /// a key it needs is missing or wrong (`serve` stops with that).
    pub fn of(broker: &Values, listener: &str, protocol: Protocol) -> Result<PeerSecurity, String> {
        let mut security = PeerSecurity::default();
        if protocol.tls() {
            let files = TlsFiles::from_config(broker)?;
            let (trusted, origin) = files.truststore()?.ok_or_else(|| {
                format!(
                    "the inter-broker listener {listener} is {}: set ssl.truststore.location \
                     (PEM file of the CAs the other brokers' certificates chain to)",
                    protocol.name()
                )
            })?;
            let check_name = !broker
                .for_listener(listener, None, "ssl.endpoint.identification.algorithm")
                .trim()
                .is_empty();
            let identity = files.identity()?;
            security.tls = Some(super::tls_client::client_config(
                &trusted,
                &origin,
                Some(identity),
                check_name,
            )?);
        }
        if protocol.sasl() {
            let mechanism = broker.get("sasl.mechanism.inter.broker.protocol").trim();
            if !super::enabled_mechanisms(broker)?
                .iter()
                .any(|m| m == mechanism)
            {
                return Err(format!(
                    "the inter-broker listener {listener} is {}: sasl.mechanism.inter.broker.\
                     protocol `{mechanism}` is not one of sasl.enabled.mechanisms (PLAIN, \
                     SCRAM-SHA-256, SCRAM-SHA-512)",
                    protocol.name()
                ));
            }
            let jaas = broker.for_listener(listener, Some(mechanism), "sasl.jaas.config");
            let (user, password) = jaas_login(jaas).ok_or_else(|| {
                format!(
                    "the inter-broker listener {listener} is {}: set listener.name.{}.{}.sasl.\
                     jaas.config to the broker's own login (`org.apache.kafka.common.security.\
                     scram.ScramLoginModule required username=\"broker\" password=\"...\";`)",
                    protocol.name(),
                    listener.to_ascii_lowercase(),
                    mechanism.to_ascii_lowercase()
                )
            })?;
            security.sasl = Some(Login {
                mechanism: mechanism.to_string(),
                user,
                password,
            });
        }
        Ok(security)
    }
}

/// TLS on the controller listener (its protocol SSL): the controllers' and brokers' connections
/// to the voters. Both sides present their keystore certificate and check the other's against
/// `ssl.truststore.location`: raft trusts its peers, so a connection without a trusted
/// certificate is refused (`ssl.client.auth` must be `required` on that listener).
#[derive(Clone, Debug)]
pub struct QuorumTls {
    /// The voter's side (the controller listener's files, loaded at start and reloaded as they
    /// change).
    pub server: Tls,
    /// The side of a node connecting to a voter.
    pub client: Arc<rustls::ClientConfig>,
}

impl QuorumTls {
    /// For the controller listener `listener` of protocol `protocol`: `None` for PLAINTEXT; why
    /// not, for what is not served (SASL there) or a key missing.
    pub fn of(
        broker: &Values,
        listener: &str,
        protocol: Protocol,
    ) -> Result<Option<QuorumTls>, String> {
        match protocol {
            Protocol::Plaintext => return Ok(None),
            Protocol::Ssl => {}
            other => {
                return Err(format!(
                    "the controller listener {listener} is {}: controllers speak PLAINTEXT or \
                     SSL (mutual TLS) for now",
                    other.name()
                ))
            }
        }
        let auth = broker.for_listener(listener, None, "ssl.client.auth");
        if ClientAuth::parse(auth) != Some(ClientAuth::Required) {
            return Err(format!(
                "the controller listener {listener} is SSL: set ssl.client.auth=required (or \
                 listener.name.{}.ssl.client.auth=required): the controllers trust only peers \
                 with a certificate from ssl.truststore.location",
                listener.to_ascii_lowercase()
            ));
        }
        let server = TlsFiles::from_config(broker)?.with_client_auth(ClientAuth::Required);
        let (trusted, origin) = server
            .truststore()?
            .ok_or("the controller listener is SSL: set ssl.truststore.location")?;
        let check_name = !broker
            .for_listener(listener, None, "ssl.endpoint.identification.algorithm")
            .trim()
            .is_empty();
        let client = super::tls_client::client_config(
            &trusted,
            &origin,
            Some(server.identity()?),
            check_name,
        )?;
        // The server's side loads now too: a bad file stops `serve` at start.
        let server = Tls::new(server)?;
        Ok(Some(QuorumTls { server, client }))
    }
}

/// The `username` and `password` options of a JAAS login module entry
/// (`... required username="broker" password="secret";`), values quoted with `"` (a `\"` in one
/// stands for `"`).
pub fn jaas_login(text: &str) -> Option<(String, String)> {
    let option = |name: &str| -> Option<String> {
        let mut rest = text;
        loop {
            let at = rest.find(name)?;
            let before = rest[..at].chars().next_back();
            let after = rest[at + name.len()..].trim_start();
            rest = &rest[at + name.len()..];
            let (true, Some(value)) = (
                before.is_none_or(char::is_whitespace),
                after.strip_prefix('='),
            ) else {
                continue;
            };
            let value = value.trim_start().strip_prefix('"')?;
            let mut out = String::new();
            let mut chars = value.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(out),
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            }
            return None;
        }
    };
    Some((option("username")?, option("password")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_entries_give_the_login() {
        let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"broker\" password=\"se\\\"cret=1\";";
        assert_eq!(
            jaas_login(scram),
            Some(("broker".into(), "se\"cret=1".into()))
        );
        let plain = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                     user_alice=\"x\" username = \"admin\"\n password=\"p\" user_admin=\"p\";";
        assert_eq!(jaas_login(plain), Some(("admin".into(), "p".into())));
        assert_eq!(
            jaas_login("ScramLoginModule required username=\"b\";"),
            None
        );
        assert_eq!(jaas_login("username=\"b\" password=\"open"), None);
        assert_eq!(jaas_login(""), None);
    }
}
