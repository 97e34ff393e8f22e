//! One client connection: a reader task that frames and dispatches requests (each runs as its own
//! task, so a connection may pipeline), and a writer that sends the answers strictly in request
//! order. At most `CONNECTION_IN_FLIGHT_MAX` requests per connection are outstanding, and their
//! frames count against the shard's `SHARD_REQUEST_MEMORY_BYTES`; the reader waits for room
//! before it reads the next frame.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::apis::{self, Answer, Dispatch};
use super::Shard;
use crate::io::net::{ReadHalf, WriteHalf};
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
}

pub async fn serve(shard: Rc<Shard>, mut reader: ReadHalf, writer: WriteHalf) {
    let peer = reader.peer();
    let (tx, rx) = mpsc::channel::<Task<Answer>>(CONNECTION_IN_FLIGHT_MAX);
    let writer_task = shard.hot.spawn(write_loop(writer, rx));
    let close = read_loop(&shard, &mut reader, tx).await;
    // The writer finishes the answers already owed, then ends when the channel closes.
    let written = writer_task.join().await;
    match (&close, written) {
        (Close::PeerClosed | Close::Stopping, Ok(())) => {}
        (_, Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(?peer, error = %e, "closing the connection: the request has no answer");
        }
        (_, Err(e)) => {
            tracing::debug!(?peer, error = %e, "connection closed while writing");
        }
        (Close::Io(e), Ok(())) => tracing::debug!(?peer, error = %e, "connection read failed"),
        (reason, Ok(())) => {
            tracing::warn!(?peer, %reason, "closing the connection: the request has no answer")
        }
    }
    reader.shutdown().await;
}

async fn read_loop(
    shard: &Rc<Shard>,
    reader: &mut ReadHalf,
    mut tx: mpsc::Sender<Task<Answer>>,
) -> Close {
    let limit = shard.broker().i64("socket.request.max.bytes");
    loop {
        let mut prefix = [0u8; 4];
        let stopped = shard.stopped();
        let read = futures_lite::future::or(
            async { Some(reader.read_exact_or_eof(&mut prefix).await) },
            async {
                let _ = stopped.await;
                None
            },
        )
        .await;
        match read {
            None => return Close::Stopping,
            Some(Ok(true)) => {}
            Some(Ok(false)) => return Close::PeerClosed,
            Some(Err(e)) => return Close::Io(e),
        }
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
        match reader.read_exact_or_eof(&mut frame).await {
            Ok(true) => {}
            Ok(false) if len == 0 => {}
            Ok(false) => return Close::PeerClosed,
            Err(e) => return Close::Io(e),
        }
        let task = match apis::dispatch(shard, frame.freeze(), reader.peer()) {
            Dispatch::Run(future, decoded_bytes) => {
                // What the request takes decoded counts too, before it is decoded.
                let decoded = shard.request_memory.acquire(decoded_bytes as usize).await;
                let guard = shard.begin_request();
                shard.hot.spawn(async move {
                    let response = future.await;
                    drop((guard, grant, decoded));
                    response
                })
            }
            Dispatch::Close(close) => {
                drop(grant);
                return close;
            }
        };
        if tx.send(task).await.is_err() {
            return Close::Io(std::io::ErrorKind::BrokenPipe.into());
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
