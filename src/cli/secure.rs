//! The CLI's own connections ([`super::wire`]) secured as librdkafka's are, from the same `-X`
//! properties: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), `ssl.ca.location`,
//! `ssl.certificate.location` and `ssl.key.location` (PEM; `ssl.key.password` where the key is
//! encrypted PKCS#8), `sasl.mechanism` (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), `sasl.username`, `sasl.password`. TLS is rustls; SCRAM's
//! client side is `security::scram::ClientLogin`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sluice::security::scram::ClientLogin;
use sluice::security::tls::{private_key, Identity};
use sluice::security::tls_client::client_config;
use sluice::security::Protocol;

use super::wire::Wire;
use super::{error_name, Failure};

/// A byte stream to a broker: a socket, or TLS over one.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// How the CLI's connections are secured.
#[derive(Clone)]
pub struct Security {
    protocol: Protocol,
    ca: Option<String>,
    certificate: Option<String>,
    key: Option<String>,
    key_password: String,
    mechanism: String,
    user: String,
    password: String,
}

/// Leaves the passwords out: a debug print or a panic message must not show them.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("ca", &self.ca)
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// From the `-X` properties (the others are librdkafka's alone).
    pub fn from_properties(properties: &[(String, String)]) -> Result<Security, Failure> {
        let get = |key: &str| {
            properties
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let protocol_name = get("security.protocol").unwrap_or("PLAINTEXT".into());
        let protocol = Protocol::parse(&protocol_name.to_ascii_uppercase()).ok_or_else(|| {
            Failure::Failed(format!(
                "security.protocol {protocol_name}: not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ))
        })?;
        Ok(Security {
            protocol,
            ca: get("ssl.ca.location"),
            certificate: get("ssl.certificate.location"),
            key: get("ssl.key.location"),
            key_password: get("ssl.key.password").unwrap_or_default(),
            mechanism: get("sasl.mechanism").unwrap_or("GSSAPI".into()),
            user: get("sasl.username").unwrap_or_default(),
            password: get("sasl.password").unwrap_or_default(),
        })
    }

    /// TLS over `socket` where the protocol asks for it.
    pub fn wrap(&self, socket: TcpStream, host: &str) -> Result<Box<dyn Stream>, Failure> {
        if !self.protocol.tls() {
            return Ok(Box::new(socket));
        }
        let config = self.tls_config()?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Failure::Failed(format!("{host}: not a TLS server name: {e}")))?;
        let session = rustls::ClientConnection::new(config, name)
            .map_err(|e| Failure::Failed(format!("TLS: {e}")))?;
        let mut stream = rustls::StreamOwned::new(session, socket);
        // The handshake now, so that a refused certificate is said as such (exit 1), not as a
        // broker that does not answer.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| Failure::Failed(format!("TLS with {host}: {e}")))?;
        }
        Ok(Box::new(stream))
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Failure> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| Failure::Failed(format!("{what}: {e}"));
        let ca = self.ca.as_deref().ok_or_else(|| {
            Failure::Failed("TLS: set -X ssl.ca.location=FILE (the CA's PEM certificate)".into())
        })?;
        let trusted = std::fs::read(ca).map_err(|e| failed(ca, &e))?;
        let identity = match (&self.certificate, &self.key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| failed(cert, &e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| failed(cert, &e))?;
                let pem = std::fs::read(key).map_err(|e| failed(key, &e))?;
                let key = private_key(&pem, &self.key_password, key)
                    .map_err(|e| Failure::Failed(format!("TLS: {e}")))?;
                Some(Identity {
                    chain,
                    key,
                    origin: cert.clone(),
                })
            }
            _ => None,
        };
        client_config(&trusted, ca, identity, true)
            .map_err(|e| Failure::Failed(format!("TLS: {e}")))
    }

    /// Authenticates a new connection where the protocol asks for SASL.
    pub fn authenticate(&self, wire: &mut Wire) -> Result<(), Failure> {
        if !self.protocol.sasl() {
            return Ok(());
        }
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_string(self.mechanism.clone());
        let answer = wire.call(1, &handshake)?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Failure::Failed(format!(
                "SASL mechanism {}: {} (the broker offers {})",
                self.mechanism,
                error_name(answer.error_code),
                offered.join(", ")
            )));
        }
        let mut step = |bytes: Vec<u8>| -> Result<Vec<u8>, Failure> {
            let mut request = SaslAuthenticateRequest::default();
            request.auth_bytes = bytes.into();
            let answer = wire.call(2, &request)?;
            if answer.error_code != 0 {
                return Err(Failure::Failed(format!(
                    "authentication as {}: {}: {}",
                    self.user,
                    error_name(answer.error_code),
                    answer.error_message.as_deref().unwrap_or("")
                )));
            }
            Ok(answer.auth_bytes.to_vec())
        };
        let (mut login, mut message) =
            ClientLogin::start(&self.mechanism, &self.user, &self.password).ok_or_else(|| {
                Failure::Failed(format!(
                    "sasl.mechanism {}: not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    self.mechanism
                ))
            })?;
        loop {
            let answer = step(message)?;
            match login.answer(&answer) {
                Ok(Some(next)) => message = next,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Failure::Failed(format!("SCRAM: {e}"))),
            }
        }
    }
}
