//! Kafka requests from this broker to another node of the cluster, over the other node's client
//! listener, as any Kafka client sends them: a transaction's markers for the partitions other
//! nodes lead (WriteTxnMarkers, as Kafka's coordinator sends them, one connection per call) and
//! a follower's fetches (a [`Connection`] kept per leader). Bounded in time and in the size of
//! what comes back. Over TLS and SASL where the inter-broker listener asks for them
//! ([`PeerSecurity`]): the handshake and the authentication run when the connection is made.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use futures::future::{select, Either};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::io;
use crate::protocol::ResponseError;
use crate::security::peer::{Login, PeerSecurity};
use crate::security::scram::ClientLogin;

/// How long a call may take, connection included (Kafka's `request.timeout.ms` default is 30 s;
/// a marker write that takes this long is retried by the coordinator).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer larger than this is not one we asked for.
const RESPONSE_BYTES_MAX: usize = 64 << 20;

/// Why a call to another node failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: no answer in time")]
    Timeout { addr: String },
    #[error("{addr}: a malformed answer: {what}")]
    Malformed { addr: String, what: String },
    #[error("{addr}: {what}")]
    Refused { addr: String, what: String },
}

/// Sends `request` as `api_key` v`version` to `host:port` on a connection of its own and decodes
/// the answer.
pub async fn call<Req: Encodable, Resp: Decodable>(
    host: &str,
    port: u16,
    security: &Arc<PeerSecurity>,
    api_key: ApiKey,
    version: i16,
    request: &Req,
    client_id: &str,
) -> Result<Resp, PeerError> {
    let mut connection = Connection::new(host, port, security, client_id);
    connection
        .call(api_key, version, request, CALL_TIMEOUT)
        .await
}

/// A connection to another node kept for many calls, one at a time (a follower's fetcher): made
/// on first use, dropped after any failure and made again by the next call.
pub struct Connection {
    host: String,
    port: u16,
    addr: String,
    client_id: String,
    security: Arc<PeerSecurity>,
    stream: Option<(io::net::ReadHalf, io::net::WriteHalf)>,
    /// When to make the connection again before its SASL session expires (the other broker's
    /// `connections.max.reauth.ms`, at 90%, as librdkafka renews).
    renew_at: Option<std::time::Instant>,
    correlation_id: i32,
}

impl Connection {
    pub fn new(host: &str, port: u16, security: &Arc<PeerSecurity>, client_id: &str) -> Connection {
        Connection {
            host: host.to_string(),
            port,
            addr: format!("{host}:{port}"),
            client_id: client_id.to_string(),
            security: security.clone(),
            stream: None,
            renew_at: None,
            correlation_id: 0,
        }
    }

    /// Whether it connects to `host:port`.
    pub fn is_to(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port == port
    }

    /// Sends `request` and decodes the answer, within `within` (connecting included).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
        within: Duration,
    ) -> Result<Resp, PeerError> {
        let addr = self.addr.clone();
        let answer = {
            let exchange = async {
                if self
                    .renew_at
                    .is_some_and(|at| std::time::Instant::now() >= at)
                {
                    self.stream = None;
                }
                if self.stream.is_none() {
                    self.open().await?;
                }
                self.correlation_id = self.correlation_id.wrapping_add(1);
                let correlation_id = self.correlation_id;
                let frame = self
                    .exchange(api_key, version, request, correlation_id)
                    .await?;
                Ok((frame, correlation_id))
            };
            let timeout = io::sleep(within);
            futures::pin_mut!(exchange, timeout);
            match select(exchange, timeout).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => Err(PeerError::Timeout { addr: addr.clone() }),
            }
        };
        let decoded = answer.and_then(|(frame, correlation_id)| {
            decode(&addr, frame, api_key, version, correlation_id)
        });
        if decoded.is_err() {
            self.stream = None;
        }
        decoded
    }

    async fn exchange<Req: Encodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
        correlation_id: i32,
    ) -> Result<Vec<u8>, PeerError> {
        let addr = self.addr.clone();
        let failed = |source: std::io::Error| PeerError::Io {
            addr: addr.clone(),
            source,
        };
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        let Some((read, write)) = self.stream.as_mut() else {
            return Err(failed(std::io::ErrorKind::NotConnected.into()));
        };
        write.write_all(&frame).await.map_err(failed)?;
        write.flush().await.map_err(failed)?;
        let mut len = [0u8; 4];
        if !read.read_exact_or_eof(&mut len).await.map_err(failed)? {
            return Err(failed(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| failed(std::io::Error::other(format!("a {len}-byte answer"))))?;
        let mut answer = vec![0u8; len];
        if !read.read_exact_or_eof(&mut answer).await.map_err(failed)? {
            return Err(failed(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(answer)
    }
}

impl Connection {
    /// Connects; then the TLS handshake and the SASL exchange, where the listener has them.
    async fn open(&mut self) -> Result<(), PeerError> {
        let addr = self.addr.clone();
        let failed = |source: std::io::Error| PeerError::Io {
            addr: addr.clone(),
            source,
        };
        let target = std::net::ToSocketAddrs::to_socket_addrs(&addr)
            .map_err(failed)?
            .next()
            .ok_or_else(|| failed(std::io::Error::other("no address")))?;
        let mut halves = io::net::connect(target, CONNECT_TIMEOUT)
            .await
            .map_err(failed)?;
        if let Some(config) = &self.security.tls {
            let refused = |what: String| PeerError::Refused {
                addr: addr.clone(),
                what,
            };
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| refused(format!("not a TLS server name: {e}")))?;
            halves = io::net::tls::connect(halves, config.clone(), name, CONNECT_TIMEOUT)
                .await
                .map_err(|e| refused(e.to_string()))?;
        }
        self.stream = Some(halves);
        self.renew_at = None;
        if let Some(login) = self.security.sasl.clone() {
            match self.authenticate(&login).await {
                Ok(lifetime_ms) if lifetime_ms > 0 => {
                    let lifetime = Duration::from_millis(lifetime_ms as u64 * 9 / 10);
                    self.renew_at = Some(std::time::Instant::now() + lifetime);
                }
                Ok(_) => {}
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// SaslHandshake, then SaslAuthenticate (v2) with PLAIN or SCRAM as `login`: the session's
    /// lifetime in ms (0: unbounded).
    async fn authenticate(&mut self, login: &Login) -> Result<i64, PeerError> {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let addr = self.addr.clone();
        let refused = |what: String| PeerError::Refused {
            addr: addr.clone(),
            what,
        };
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_string(login.mechanism.clone());
        let answer: SaslHandshakeResponse = self.step(ApiKey::SaslHandshake, 1, &handshake).await?;
        if answer.error_code != 0 {
            return Err(refused(format!(
                "SASL mechanism {}: {}",
                login.mechanism,
                error_name(answer.error_code)
            )));
        }
        let (mut client, mut message) =
            ClientLogin::start(&login.mechanism, &login.user, &login.password).ok_or_else(
                || refused(format!("SASL mechanism {}: not served", login.mechanism)),
            )?;
        loop {
            let mut request = SaslAuthenticateRequest::default();
            request.auth_bytes = message.into();
            let answer: SaslAuthenticateResponse =
                self.step(ApiKey::SaslAuthenticate, 2, &request).await?;
            if answer.error_code != 0 {
                return Err(refused(format!(
                    "authentication as {} ({}): {}: {}",
                    login.user,
                    login.mechanism,
                    error_name(answer.error_code),
                    answer.error_message.as_deref().unwrap_or("")
                )));
            }
            // PBKDF2 (SCRAM's second message) off the shard's core.
            let (mut off, bytes) = (client.clone(), answer.auth_bytes.to_vec());
            let (done, next) = io::off_core(move || {
                let next = off.answer(&bytes);
                (off, next)
            })
            .await;
            client = done;
            match next.map_err(|e| refused(format!("SCRAM: {e}")))? {
                Some(next) => message = next,
                None => return Ok(answer.session_lifetime_ms),
            }
        }
    }

    /// One request of the SASL exchange on the connection being opened.
    async fn step<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, PeerError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = self
            .exchange(api_key, version, request, correlation_id)
            .await?;
        decode(&self.addr, frame, api_key, version, correlation_id)
    }
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error {code}"),
    }
}

fn decode<Resp: Decodable>(
    addr: &str,
    frame: Vec<u8>,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<Resp, PeerError> {
    let malformed = |what: String| PeerError::Malformed {
        addr: addr.to_string(),
        what,
    };
    let mut frame = bytes::Bytes::from(frame);
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(malformed(format!(
            "correlation id {}",
            header.correlation_id
        )));
    }
    let answer = Resp::decode(&mut frame, version).map_err(|e| malformed(e.to_string()))?;
    if frame.has_remaining() {
        return Err(malformed(format!(
            "{} bytes past the answer",
            frame.remaining()
        )));
    }
    Ok(answer)
}
