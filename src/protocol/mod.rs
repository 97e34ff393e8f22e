//! The Kafka wire: frames, request headers, responses as a list of parts (bytes from memory and
//! slices of files that go to the socket with sendfile), the glue to the kafka-protocol crate for
//! message schemas, and hand-written encoders where the bytes are ours to shape (the fetch
//! response, whose record bytes never pass through user space).

pub mod fetch;

use std::os::fd::RawFd;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

pub use kafka_protocol::error::ResponseError;
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::StrBytes;

/// The fixed start of every request: enough to route it, or to answer ApiVersions, before the
/// header's version is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("request of {bytes} bytes is shorter than a request header")]
    Truncated { bytes: usize },
    #[error("cannot decode {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

pub fn parse_prefix(frame: &[u8]) -> Result<RequestPrefix, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::Truncated { bytes: frame.len() });
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the request header, leaving `frame` at the start of the request body.
pub fn decode_header(
    api_key: ApiKey,
    api_version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, ProtocolError> {
    let header_version = api_key.request_header_version(api_version);
    RequestHeader::decode(frame, header_version).map_err(|e| ProtocolError::Malformed {
        what: "request header",
        reason: e.to_string(),
    })
}

/// Decodes a request body of the given version. Bytes after the message are ignored, as Kafka
/// ignores them (librdkafka sends a few after some Metadata requests).
pub fn decode_body<M: Decodable>(
    what: &'static str,
    mut body: Bytes,
    version: i16,
) -> Result<M, ProtocolError> {
    let message = M::decode(&mut body, version).map_err(|e| ProtocolError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !body.is_empty() {
        tracing::trace!(what, bytes = body.len(), "ignoring bytes after the request");
    }
    Ok(message)
}

/// A slice of an open file, sent with sendfile. `keep` holds the file open until it is sent.
#[derive(Clone)]
pub struct FileSlice {
    pub fd: RawFd,
    pub position: u64,
    pub len: u64,
    pub keep: Rc<dyn std::any::Any>,
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileSlice(fd {} @{} +{})",
            self.fd, self.position, self.len
        )
    }
}

#[derive(Clone, Debug)]
pub enum Part {
    Bytes(Bytes),
    File(FileSlice),
}

impl Part {
    pub fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole response frame, length prefix included, as parts in wire order.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub parts: Vec<Part>,
}

impl Response {
    pub fn len(&self) -> u64 {
        self.parts.iter().map(Part::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Encodes a response frame for an API whose response the kafka-protocol crate encodes.
pub fn encode_response<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Response, ProtocolError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header_version = api_key.response_header_version(api_version);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, header_version)
        .map_err(|e| ProtocolError::Encode {
            what: "response header",
            reason: e.to_string(),
        })?;
    body.encode(&mut buf, api_version)
        .map_err(|e| ProtocolError::Encode {
            what: "response",
            reason: e.to_string(),
        })?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(Response {
        parts: vec![Part::Bytes(buf.freeze())],
    })
}
