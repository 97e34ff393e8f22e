//! The Kafka wire: frames, request headers, responses as a list of parts (bytes from memory and
//! slices of files that go to the socket with sendfile), the glue to the kafka-protocol crate for
//! message schemas, and hand-written encoders where the bytes are ours to shape (the fetch
//! response, whose record bytes never pass through user space).

pub mod bounded;
pub mod fetch;
pub mod schema;

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
    #[error("refused {api:?} v{version} before decoding: {source}")]
    Bounded {
        api: ApiKey,
        version: i16,
        #[source]
        source: bounded::Malformed,
    },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    /// An acks=0 Produce failed: it has no answer, so the connection is closed (Kafka's way of
    /// telling the client to refresh its metadata).
    #[error(
        "an acks=0 produce failed ({detail}): closed so that the client asks for metadata again"
    )]
    Acks0Failed { detail: String },
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

/// A frame the bounded walk accepted: how much memory its body takes decoded. Only
/// [`check_request`] makes one, and the decoders below take one, so that nothing from the wire
/// is decoded before it has been bounded.
#[derive(Debug)]
pub struct Checked {
    decoded_bytes: u64,
}

impl Checked {
    /// What the request's body will take in memory once decoded (the walk's upper estimate).
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }
}

/// Walks a whole frame (header and body) for `prefix`'s API and version; see [`bounded`].
pub fn check_request(
    api: ApiKey,
    prefix: RequestPrefix,
    frame: &[u8],
    limits: bounded::Limits,
) -> Result<Checked, ProtocolError> {
    match bounded::walk_request(prefix.api_key, prefix.api_version, frame, limits) {
        Ok((_, walked)) => Ok(Checked {
            decoded_bytes: walked.decoded_bytes,
        }),
        Err(source) => Err(ProtocolError::Bounded {
            api,
            version: prefix.api_version,
            source,
        }),
    }
}

/// Decodes the request header, leaving `frame` at the start of the request body.
pub fn decode_header(
    api_key: ApiKey,
    api_version: i16,
    frame: &mut Bytes,
    _checked: &Checked,
) -> Result<RequestHeader, ProtocolError> {
    let header_version = api_key.request_header_version(api_version);
    decode_guarded("request header", || {
        RequestHeader::decode(frame, header_version)
    })
}

/// Decodes a request body of the given version. Bytes after the message are ignored, as Kafka
/// ignores them (librdkafka sends a few after some Metadata requests).
pub fn decode_body<M: Decodable>(
    what: &'static str,
    mut body: Bytes,
    version: i16,
    _checked: &Checked,
) -> Result<M, ProtocolError> {
    let message = decode_guarded(what, || M::decode(&mut body, version))?;
    if !body.is_empty() {
        tracing::trace!(what, bytes = body.len(), "ignoring bytes after the request");
    }
    Ok(message)
}

/// Runs a decoder of the crate. After the bounded walk it cannot meet anything it does not
/// expect; should it panic all the same, that is this request's error, not the shard's end.
fn decode_guarded<M, E: std::fmt::Display>(
    what: &'static str,
    decode: impl FnOnce() -> Result<M, E>,
) -> Result<M, ProtocolError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(e)) => Err(ProtocolError::Malformed {
            what,
            reason: e.to_string(),
        }),
        Err(_) => Err(ProtocolError::Malformed {
            what,
            reason: "the decoder panicked".into(),
        }),
    }
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
