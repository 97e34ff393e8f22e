//! One client connection: a reader task that frames and dispatches requests (each runs as its own
//! task, so a connection may pipeline), and a writer that sends the answers strictly in request
//! order. At most `CONNECTION_IN_FLIGHT_MAX` requests per connection are outstanding, and their
//! frames (and what their requests take decoded) count against the shard's
//! `SHARD_REQUEST_MEMORY_BYTES`; the reader waits for room before it reads the next frame.
//! What a connection may cost before it sends a valid request is bounded too: a frame over
//! `socket.request.max.bytes` closes it, so does a frame that takes longer than
//! `socket.request.read.timeout.ms` to arrive, or a malformed one (the bounded walk,
//! `protocol::bounded`); a connection owed nothing that sends nothing for
//! `connections.max.idle.ms` is closed; `admission` caps how many there are.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use tracing::Instrument as _;

use super::admission::Admitted;
use super::apis::{self, Answer, Dispatch};
use super::auth::Conn;
use super::Shard;
use crate::io::net::{ReadHalf, WriteHalf};
use crate::io::Throttled;
use crate::io::{self, Task};
use crate::protocol::{self, Part};

/// Requests one connection may have outstanding (read but not yet answered).
pub const CONNECTION_IN_FLIGHT_MAX: usize = 16;
/// Header bytes below this are gathered into one write with their neighbours.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

/// Why a connection is closed without an answer: logged once, with the peer.
#[derive(Debug, thiserror::Error)]
pub enum Close {
    #[error("the peer closed the connection")]
    PeerClosed,
    #[error("read failed: {0}")]
    Io(std::io::Error),
    #[error("frame of {bytes} bytes is over socket.request.max.bytes {limit}")]
    FrameTooLarge { bytes: i64, limit: i64 },
    #[error("frame length {bytes} is negative")]
    NegativeLength { bytes: i64 },
    #[error("malformed request: {0}")]
    Protocol(protocol::ProtocolError),
    #[error("unknown API key {api_key}")]
    UnknownApi { api_key: i16 },
    #[error("API key {api_key} version {version} is not served (see ApiVersions)")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("the broker is stopping")]
    Stopping,
    #[error("API key {api_key} before authentication (only ApiVersions, SaslHandshake and SaslAuthenticate)")]
    Unauthenticated { api_key: i16 },
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("the SASL session expired (connections.max.reauth.ms) and was not renewed")]
    SessionExpired,
    #[error("not authenticated within sasl.handshake.timeout.ms ({ms} ms)")]
    AuthenticationTimeout { ms: u64 },
    #[error("idle for connections.max.idle.ms ({ms} ms) with nothing owed")]
    Idle { ms: u64 },
    #[error(
        "a frame of {bytes} bytes did not arrive within socket.request.read.timeout.ms ({ms} ms)"
    )]
    FrameTimeout { bytes: i64, ms: u64 },
}

pub async fn serve(
    shard: Rc<Shard>,
    mut reader: ReadHalf,
    writer: WriteHalf,
    admitted: Admitted,
    conn: Rc<Conn>,
) {
    let peer = reader.peer();
    let (tx, rx) = mpsc::channel::<Task<Answer>>(CONNECTION_IN_FLIGHT_MAX);
    let writer_task = shard.hot.spawn(write_loop(writer, rx));
    let close = read_loop(&shard, &mut reader, tx, &conn).await;
    // The writer finishes the answers already owed, then ends when the channel closes.
    let written = writer_task.join().await;
    // Warnings about a client's input are throttled per shard: a flood of bad requests must
    // not become a flood of log lines.
    let warn = |error: &dyn std::fmt::Display| {
        CLOSE_WARNINGS.with(|throttle| {
            throttle.borrow_mut().note(|count| {
                tracing::warn!(?peer, %error, count, "closing the connection: the request has no answer")
            })
        })
    };
    match (&close, written) {
        (Close::PeerClosed | Close::Stopping, Ok(())) => {}
        (_, Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => warn(&e),
        (_, Err(e)) => {
            tracing::debug!(?peer, error = %e, "connection closed while writing");
        }
        (Close::Io(e), Ok(())) => tracing::debug!(?peer, error = %e, "connection read failed"),
        (Close::Idle { .. } | Close::SessionExpired, Ok(())) => {
            tracing::debug!(?peer, %close, "closing the connection")
        }
        // Logged where it failed, with the mechanism and the user.
        (Close::AuthenticationFailed, Ok(())) => {}
        (reason, Ok(())) => warn(reason),
    }
    reader.shutdown().await;
    drop(admitted);
}

thread_local! {
    /// This shard's closes for bad input, logged at most once a second.
    static CLOSE_WARNINGS: RefCell<Throttled> = RefCell::new(Throttled::default());
}

/// How a wait for the next frame ended.
enum Next {
    Prefix([u8; 4]),
    Closed(Close),
}

/// Waits for the next frame's length prefix. While requests are outstanding the connection is
/// not idle; once nothing is owed and nothing arrives for `idle`, it is closed. The read is
/// never dropped half-way (a partial prefix would be lost): the same read future is awaited
/// again after each idle check.
async fn next_prefix(
    shard: &Shard,
    reader: &mut ReadHalf,
    outstanding: &Cell<usize>,
    idle: Duration,
) -> Next {
    let mut prefix = [0u8; 4];
    let outcome = {
        let stopped = shard.stopped();
        let read = reader.read_exact_or_eof(&mut prefix);
        futures::pin_mut!(read, stopped);
        loop {
            let woke = futures_lite::future::or(
                async { Some(Some(read.as_mut().await)) },
                futures_lite::future::or(
                    async {
                        let _ = stopped.as_mut().await;
                        Some(None)
                    },
                    async {
                        io::sleep(idle).await;
                        None
                    },
                ),
            )
            .await;
            match woke {
                Some(read) => break read,
                None if outstanding.get() == 0 => {
                    return Next::Closed(Close::Idle {
                        ms: idle.as_millis() as u64,
                    })
                }
                None => {}
            }
        }
    };
    match outcome {
        Some(Ok(true)) => Next::Prefix(prefix),
        Some(Ok(false)) => Next::Closed(Close::PeerClosed),
        Some(Err(e)) => Next::Closed(Close::Io(e)),
        None => Next::Closed(Close::Stopping),
    }
}

async fn read_loop(
    shard: &Rc<Shard>,
    reader: &mut ReadHalf,
    mut tx: mpsc::Sender<Task<Answer>>,
    conn: &Rc<Conn>,
) -> Close {
    let broker = shard.broker();
    let limit = broker.i64("socket.request.max.bytes");
    let idle = Duration::from_millis(broker.i64("connections.max.idle.ms") as u64);
    let frame_timeout = Duration::from_millis(broker.i64("socket.request.read.timeout.ms") as u64);
    drop(broker);
    let outstanding = Rc::new(Cell::new(0usize));
    let mut client_named = false;
    // A connection that must (re-)authenticate has `sasl.handshake.timeout.ms` to do it.
    let handshake = conn.listener.handshake;
    loop {
        let authenticating = conn.authenticating();
        let wait = match authenticating {
            true => {
                let deadline = conn.began() + handshake;
                idle.min(deadline.saturating_duration_since(std::time::Instant::now()))
            }
            false => idle,
        };
        let prefix = match next_prefix(shard, reader, &outstanding, wait).await {
            Next::Prefix(prefix) => prefix,
            Next::Closed(Close::Idle { .. }) if authenticating => {
                return Close::AuthenticationTimeout {
                    ms: handshake.as_millis() as u64,
                }
            }
            Next::Closed(close) => return close,
        };
        let len = i32::from_be_bytes(prefix) as i64;
        if len < 0 {
            return Close::NegativeLength { bytes: len };
        }
        if len > limit {
            return Close::FrameTooLarge { bytes: len, limit };
        }
        // Reserve the frame's memory on this shard first: many connections sending large requests
        // wait here instead of exhausting memory.
        let grant = shard.request_memory.acquire(len as usize).await;
        let mut frame = BytesMut::zeroed(len as usize);
        // The frame must arrive in time: a peer trickling a large frame holds its memory.
        match io::net::timeout(frame_timeout, reader.read_exact_or_eof(&mut frame)).await {
            None => {
                return Close::FrameTimeout {
                    bytes: len,
                    ms: frame_timeout.as_millis() as u64,
                }
            }
            Some(Ok(true)) => {}
            Some(Ok(false)) if len == 0 => {}
            Some(Ok(false)) => return Close::PeerClosed,
            Some(Err(e)) => return Close::Io(e),
        }
        // The first request names the client in the connection's span (recorded once: a
        // record re-formats the span's fields).
        let name_client = (!client_named).then(tracing::Span::current);
        client_named = true;
        let mut answered_now = None;
        let task = match apis::dispatch(shard, frame.freeze(), conn, name_client) {
            Dispatch::Run(future, decoded_bytes, api) => {
                let started = std::time::Instant::now();
                // What the request takes decoded counts too, before it is decoded.
                let decoded = shard.request_memory.acquire(decoded_bytes as usize).await;
                let guard = shard.begin_request();
                let outstanding = outstanding.clone();
                outstanding.set(outstanding.get() + 1);
                let counted = shard.clone();
                // Until it has authenticated, a connection's requests are served one at a
                // time: each may change what the next may do. So are the SASL requests of a
                // re-authentication.
                let serial = authenticating
                    || matches!(
                        api,
                        kafka_protocol::messages::ApiKey::SaslHandshake
                            | kafka_protocol::messages::ApiKey::SaslAuthenticate
                    );
                let done = serial.then(|| {
                    let (done, answered) = futures::channel::oneshot::channel::<()>();
                    answered_now = Some(answered);
                    done
                });
                let answered = async move {
                    let queued = started.elapsed();
                    let response = future.await;
                    counted.metrics.request(api, queued, started.elapsed());
                    drop((guard, grant, decoded));
                    outstanding.set(outstanding.get() - 1);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    response
                };
                // The request's own lines carry the connection's peer and client id.
                shard
                    .hot
                    .spawn(answered.instrument(tracing::Span::current()))
            }
            Dispatch::Close(close) => {
                drop(grant);
                return close;
            }
        };
        if tx.send(task).await.is_err() {
            return Close::Io(std::io::ErrorKind::BrokenPipe.into());
        }
        if let Some(answered) = answered_now {
            let _ = answered.await;
            if conn.failed() {
                return Close::AuthenticationFailed;
            }
        }
    }
}

async fn write_loop(
    mut writer: WriteHalf,
    rx: mpsc::Receiver<Task<Answer>>,
) -> std::io::Result<()> {
    let result = write_answers(&mut writer, rx).await;
    if result.is_err() {
        // Nothing more can be answered in order: end the reader too.
        writer.shutdown();
    }
    result
}

async fn write_answers(
    writer: &mut WriteHalf,
    mut rx: mpsc::Receiver<Task<Answer>>,
) -> std::io::Result<()> {
    let writer = &mut *writer;
    let mut pending = BytesMut::new();
    while let Some(task) = rx.next().await {
        let response = match task.join().await {
            Ok(Some(response)) => response,
            Ok(None) => continue, // acks=0 produce: no answer
            Err(e) => {
                flush(writer, &mut pending).await?;
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        };
        for part in response.parts {
            match part {
                Part::Bytes(bytes) if bytes.len() < COALESCE_BYTES_MAX => {
                    pending.extend_from_slice(&bytes)
                }
                Part::Bytes(bytes) => {
                    flush(writer, &mut pending).await?;
                    writer.write_all(&bytes).await?;
                }
                Part::File(slice) => {
                    flush(writer, &mut pending).await?;
                    writer.sendfile(slice.fd, slice.position, slice.len).await?;
                    drop(slice.keep);
                }
            }
        }
        // Answer now unless the next answer is already done and can share the write.
        flush(writer, &mut pending).await?;
        io::yield_if_needed().await;
    }
    flush(writer, &mut pending).await?;
    writer.flush().await
}

async fn flush(writer: &mut WriteHalf, pending: &mut BytesMut) -> std::io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let bytes: Bytes = pending.split().freeze();
    writer.write_all(&bytes).await
}
