//! A blocking request/response connection for the few admin requests librdkafka does not expose
//! (Metadata's controller, a group's committed offsets, IncrementalAlterConfigs): the messages
//! are the kafka-protocol crate's; this only frames them over a `TcpStream`, one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::secure::{Security, Stream};
use super::Failure;

/// The largest answer the CLI reads (a Metadata answer for 100k partitions fits).
const MAX_RESPONSE: usize = 256 << 20;

pub struct Wire {
    stream: Box<dyn Stream>,
    peer: String,
    correlation_id: i32,
}

impl Wire {
    /// Connects to `address` (`host:port`), trying each address it resolves to, and secures
    /// the connection as `security` says (TLS, then SASL; `None`: a bare TCP connection).
    pub fn connect(
        address: &str,
        timeout: Duration,
        security: Option<&Security>,
    ) -> Result<Wire, Failure> {
        let addresses: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map_err(|e| Failure::Unreachable(format!("cannot resolve {address}: {e}")))?
            .collect();
        let mut last = format!("cannot resolve {address}: no address");
        for addr in addresses {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(timeout))
                        .and_then(|()| stream.set_write_timeout(Some(timeout)))
                        .map_err(|e| Failure::Unreachable(format!("{address}: {e}")))?;
                    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let Some(security) = security else {
                        return Ok(Wire {
                            stream: Box::new(stream),
                            peer: address.to_string(),
                            correlation_id: 0,
                        });
                    };
                    let mut wire = Wire {
                        stream: security.wrap(stream, host)?,
                        peer: address.to_string(),
                        correlation_id: 0,
                    };
                    security.authenticate(&mut wire)?;
                    return Ok(wire);
                }
                Err(e) => last = format!("cannot connect to {address}: {e}"),
            }
        }
        Err(Failure::Unreachable(last))
    }

    /// Sends `request` as version `version` and decodes the answer.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, Failure> {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("sluice-cli"));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        let encoded = header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|e| Failure::Failed(format!("encoding a request: {e}")))?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let broken = |e: std::io::Error| Failure::Unreachable(format!("{}: {e}", self.peer));
        self.stream.write_all(&frame).map_err(broken)?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).map_err(broken)?;
        let length = usize::try_from(i32::from_be_bytes(length))
            .ok()
            .filter(|n| *n <= MAX_RESPONSE)
            .ok_or_else(|| Failure::Failed(format!("{}: a malformed answer", self.peer)))?;
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).map_err(broken)?;
        let mut body = Bytes::from(body);
        let malformed = |e| Failure::Failed(format!("{}: a malformed answer: {e}", self.peer));
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(malformed)?;
        if header.correlation_id != self.correlation_id {
            return Err(Failure::Failed(format!(
                "{}: an answer to another request",
                self.peer
            )));
        }
        R::Response::decode(&mut body, version).map_err(malformed)
    }
}
