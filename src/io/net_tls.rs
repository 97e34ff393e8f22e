//! TLS over a split connection (rustls, in user space): the handshake runs before the halves
//! are handed out, then the read half decrypts what it reads and the write half encrypts what
//! it writes, through one rustls session they share (each borrows it only between awaits, as
//! the halves share the socket). Record bytes of a fetch are read from the segment file and
//! encrypted here: no sendfile through TLS in user space (kTLS would keep it; not yet).

use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::{read_raw, write_raw, ReadHalf, WriteHalf};
use crate::io::Result;

/// The TLS session both halves of a connection use (a listener's, or a broker's own connection
/// to another broker).
pub type Session = Rc<RefCell<Connection>>;

/// Ciphertext read from the socket in one go, at most: large frames (a produce of a megabyte)
/// arrive in a few reads, as they do in plaintext straight into the frame.
const CIPHERTEXT_READ_BYTES: usize = 256 * 1024;
/// Bytes of a segment file read (then encrypted) at a time.
const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// The read half's side: the session, and ciphertext read but not yet taken by it
/// (`pending[start..end]`; the buffer is made once, on the first read after the handshake).
pub(super) struct Reading {
    session: Session,
    pending: Vec<u8>,
    start: usize,
    end: usize,
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl Reading {
    /// Reads plaintext into `buf`: what the session holds, else more ciphertext from the socket.
    /// `Ok(0)` at the end (the peer's close_notify, or the socket closed).
    pub(super) async fn read(
        &mut self,
        stream: &RefCell<glommio::net::TcpStream>,
        buf: &mut [u8],
    ) -> Result<usize> {
        loop {
            {
                let mut session = self.session.borrow_mut();
                match session.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.start < self.end {
                    let mut rest = &self.pending[self.start..self.end];
                    let taken = session.read_tls(&mut rest)?;
                    self.start += taken;
                    session.process_new_packets().map_err(invalid)?;
                    if taken > 0 {
                        continue;
                    }
                }
            }
            if self.pending.len() < CIPHERTEXT_READ_BYTES {
                self.pending.resize(CIPHERTEXT_READ_BYTES, 0);
            }
            let n = read_raw(stream, &mut self.pending).await?;
            (self.start, self.end) = (0, n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

/// Sends what the session has to send (handshake messages, alerts, encrypted records).
pub(super) async fn drain(
    session: &Session,
    stream: &RefCell<glommio::net::TcpStream>,
) -> Result<()> {
    loop {
        let mut out = Vec::new();
        {
            let mut session = session.borrow_mut();
            while session.wants_write() {
                session.write_tls(&mut out)?;
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        write_raw(stream, &out).await?;
    }
}

/// Encrypts and sends all of `buf`.
pub(super) async fn write_all(
    session: &Session,
    stream: &RefCell<glommio::net::TcpStream>,
    mut buf: &[u8],
) -> Result<()> {
    while !buf.is_empty() {
        let taken = session.borrow_mut().writer().write(buf)?;
        buf = &buf[taken..];
        drain(session, stream).await?;
        if taken == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `position`, read in chunks and encrypted.
pub(super) async fn send_file(
    session: &Session,
    stream: &RefCell<glommio::net::TcpStream>,
    file: RawFd,
    position: u64,
    len: u64,
) -> Result<()> {
    let mut chunk = vec![0u8; FILE_CHUNK_BYTES.min(len as usize)];
    let mut offset = position;
    let end = position + len;
    while offset < end {
        let want = ((end - offset) as usize).min(chunk.len());
        // SAFETY: `file` is open for the duration of the call (the caller keeps the segment);
        // the buffer is live and at least `want` bytes long.
        let read = unsafe {
            libc::pread(
                file,
                chunk.as_mut_ptr() as *mut libc::c_void,
                want,
                offset as libc::off_t,
            )
        };
        if read < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file shorter than the read range",
            ));
        }
        write_all(session, stream, &chunk[..read as usize]).await?;
        offset += read as u64;
    }
    Ok(())
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake: {0}")]
    Tls(rustls::Error),
    #[error("TLS handshake: {0}")]
    Io(std::io::Error),
    #[error("TLS handshake not done within {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection during the TLS handshake")]
    Closed,
    #[error("the peer closed the connection before the TLS handshake")]
    NotStarted,
}

/// Runs the server's side of the handshake on an accepted connection, within `within`, and
/// gives back the halves speaking TLS. A failed handshake sends the peer its alert first.
pub async fn accept(
    halves: (ReadHalf, WriteHalf),
    config: Arc<ServerConfig>,
    within: Duration,
) -> std::result::Result<(ReadHalf, WriteHalf), HandshakeError> {
    let session = ServerConnection::new(config).map_err(HandshakeError::Tls)?;
    handshake(halves, session.into(), within).await
}

/// Runs the client's side of the handshake with `server` (the name its certificate must have)
/// on a connection this node opened, within `within`.
pub async fn connect(
    halves: (ReadHalf, WriteHalf),
    config: Arc<ClientConfig>,
    server: ServerName<'static>,
    within: Duration,
) -> std::result::Result<(ReadHalf, WriteHalf), HandshakeError> {
    let session = ClientConnection::new(config, server).map_err(HandshakeError::Tls)?;
    handshake(halves, session.into(), within).await
}

async fn handshake(
    halves: (ReadHalf, WriteHalf),
    session: Connection,
    within: Duration,
) -> std::result::Result<(ReadHalf, WriteHalf), HandshakeError> {
    let (mut read, mut write) = halves;
    let session: Session = Rc::new(RefCell::new(session));
    let mut reading = Reading {
        session: session.clone(),
        pending: Vec::new(),
        start: 0,
        end: 0,
    };
    let stream = read.stream.clone();
    let mut received = 0usize;
    let handshake = async {
        while session.borrow().is_handshaking() {
            drain(&session, &stream).await.map_err(HandshakeError::Io)?;
            if !session.borrow().is_handshaking() {
                break;
            }
            // Handshake messages are small: a small buffer while they come.
            let mut chunk = [0u8; 4096];
            let n = read_raw(&stream, &mut chunk)
                .await
                .map_err(HandshakeError::Io)?;
            if n == 0 && received == 0 {
                return Err(HandshakeError::NotStarted);
            }
            if n == 0 {
                return Err(HandshakeError::Closed);
            }
            received += n;
            let mut rest = &chunk[..n];
            while !rest.is_empty() {
                let taken = session
                    .borrow_mut()
                    .read_tls(&mut rest)
                    .map_err(HandshakeError::Io)?;
                let processed = session.borrow_mut().process_new_packets();
                if let Err(e) = processed {
                    // The alert that tells the peer why.
                    let _ = drain(&session, &stream).await;
                    return Err(HandshakeError::Tls(e));
                }
                if taken == 0 {
                    break;
                }
            }
            // What came after the handshake (the first request, already): kept for the reader.
            let mut kept = reading.pending[reading.start..reading.end].to_vec();
            kept.extend_from_slice(rest);
            (reading.start, reading.end) = (0, kept.len());
            reading.pending = kept;
        }
        drain(&session, &stream).await.map_err(HandshakeError::Io)
    };
    match super::timeout(within, handshake).await {
        None => return Err(HandshakeError::Timeout(within)),
        Some(Err(e)) => return Err(e),
        Some(Ok(())) => {}
    }
    read.tls = Some(reading);
    write.tls = Some(session);
    Ok((read, write))
}

impl ReadHalf {
    /// The client's certificate (DER), on a TLS connection where it presented one.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let tls = self.tls.as_ref()?;
        let session = tls.session.borrow();
        let certs = session.peer_certificates()?;
        certs.first().map(|c| c.as_ref().to_vec())
    }
}
