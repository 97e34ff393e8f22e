//! TCP for the Kafka listener: a per-shard listener on a shared port (SO_REUSEPORT, so the kernel
//! spreads connections over the shards), connections split into a read half and a write half (one
//! descriptor shared by both) so
//! that a connection can read its next request while earlier answers are still being written, and
//! `sendfile` from a segment file to the socket for the record bytes of a fetch. Outbound
//! connections (`connect`: a follower to its leader, a broker to the controller) are split the
//! same way.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

use super::Result;

#[path = "net_tls.rs"]
pub mod tls;

/// A listener bound on this shard. Every shard binds the same address; the kernel balances.
pub struct Listener {
    inner: glommio::net::TcpListener,
}

impl Listener {
    pub fn bind(addr: SocketAddr) -> Result<Listener> {
        let inner = glommio::net::TcpListener::bind(addr).map_err(std::io::Error::from)?;
        Ok(Listener { inner })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr().map_err(std::io::Error::from)
    }

    pub async fn accept(&self) -> Result<(ReadHalf, WriteHalf)> {
        let stream = self.inner.accept().await.map_err(std::io::Error::from)?;
        stream.set_nodelay(true).map_err(std::io::Error::from)?;
        split(stream)
    }
}

/// Opens a connection to `addr`, split like an accepted one; gives up after `within`.
pub async fn connect(addr: SocketAddr, within: Duration) -> Result<(ReadHalf, WriteHalf)> {
    let stream = glommio::net::TcpStream::connect_timeout(addr, within)
        .await
        .map_err(std::io::Error::from)?;
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    split(stream)
}

/// Reserves `addr`'s port for the shards without accepting on it: with port 0 the kernel picks
/// one port, which every shard then binds with SO_REUSEPORT. Drop it once the shards listen.
///
/// A fixed port another process listens on is refused (EADDRINUSE) even where that process
/// bound it with SO_REUSEPORT too (another `sluice serve` of the same user, which the kernel
/// would let join the port and split the connections with). The kernel's table of listening
/// sockets says so (`/proc/net/tcp`, `tcp6`); a test bind would also trip on the closing
/// connections a killed broker leaves on its port, which a restart must not.
///
/// A process killed a moment ago may still hold its listening socket: the kernel tears its
/// io_uring instance down after the process is gone (a pending accept keeps the socket), later
/// still on a busy machine. A port listened on is looked at again for up to
/// `LISTENER_GONE_WAIT` before it is refused, so that a restart right after `kill -9` binds.
pub fn reserve_port(addr: SocketAddr) -> Result<(OwnedFd, SocketAddr)> {
    if addr.port() != 0 {
        let deadline = std::time::Instant::now() + LISTENER_GONE_WAIT;
        while listened_on(addr) {
            if std::time::Instant::now() >= deadline {
                return Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    bind_socket(addr, libc::SO_REUSEPORT)
}

/// How long a listening socket of a process just killed may take to go (see [`reserve_port`]).
const LISTENER_GONE_WAIT: Duration = Duration::from_secs(3);

/// Whether a socket of this network namespace listens where `addr` would (its port, on its
/// address or on the wildcard).
fn listened_on(addr: SocketAddr) -> bool {
    const LISTEN: &str = "0A";
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((ip_hex, port_hex)) = local.split_once(':') else {
                continue;
            };
            if *state != LISTEN || u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
                continue;
            }
            let theirs = proc_ip(ip_hex);
            found |= match theirs {
                None => true,
                Some(ip) => {
                    ip.is_unspecified() || addr.ip().is_unspecified() || same_ip(ip, addr.ip())
                }
            };
        }
    }
    found
}

/// An address as `/proc/net/tcp*` prints it: each 32-bit word of the address as the host reads
/// it, in hex (`0100007F` is 127.0.0.1 on a little-endian host).
fn proc_ip(hex: &str) -> Option<std::net::IpAddr> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.into_iter().flat_map(u32::to_ne_bytes).collect();
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The same address, an IPv4 one and its IPv6-mapped form included.
fn same_ip(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    let canonical = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    canonical(a) == canonical(b)
}

/// A socket bound (not listening) on `addr` with socket option `option` set.
fn bind_socket(addr: SocketAddr, option: libc::c_int) -> Result<(OwnedFd, SocketAddr)> {
    let domain = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let std_listener = std::net::TcpListener::from(owned);
    // std has no bind-without-listen; go through the raw address.
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let rc = unsafe {
        libc::bind(
            std_listener.as_raw_fd(),
            &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bound = std_listener.local_addr()?;
    Ok((OwnedFd::from(std_listener), bound))
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// Splits a connection into a read half and a write half over one descriptor: the halves share
/// the stream, each borrowing it only for the duration of one poll (glommio keeps separate read
/// and write readiness sources, so a read and a write may be pending at once). The reader and the
/// writer are separate tasks with no lock between them. The socket is made non-blocking so that
/// `sendfile` never parks the core; glommio's own reads and writes already use MSG_DONTWAIT and
/// wait for readiness.
fn split(stream: glommio::net::TcpStream) -> Result<(ReadHalf, WriteHalf)> {
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on the live socket owned by `stream`.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above; only the status flags change.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let peer = stream.peer_addr().ok();
    let stream = Rc::new(RefCell::new(stream));
    Ok((
        ReadHalf {
            stream: stream.clone(),
            peer,
            tls: None,
        },
        WriteHalf { stream, tls: None },
    ))
}

pub struct ReadHalf {
    stream: Rc<RefCell<glommio::net::TcpStream>>,
    peer: Option<SocketAddr>,
    /// The TLS session of a TLS listener's connection (`tls::accept`), and the ciphertext
    /// read but not yet taken by it.
    tls: Option<tls::Reading>,
}

impl ReadHalf {
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Reads what has arrived into `buf` (waiting for at least a byte): how much, 0 at the end.
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.read(buf).await
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        match &mut self.tls {
            None => read_raw(&self.stream, buf).await,
            Some(tls) => tls.read(&self.stream, buf).await,
        }
    }

    /// Fills `buf`; `Ok(false)` when the peer closed before the first byte.
    pub async fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read(&mut buf[filled..]).await?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
        }
        Ok(true)
    }

    /// Closes both directions: a writer blocked on this socket fails.
    pub async fn shutdown(&self) {
        shutdown(&self.stream);
    }
}

/// Reads what the socket has (ciphertext, on a TLS connection).
async fn read_raw(stream: &RefCell<glommio::net::TcpStream>, buf: &mut [u8]) -> Result<usize> {
    futures_lite::future::poll_fn(|cx| {
        Pin::new(&mut *stream.borrow_mut()).poll_read(cx, &mut buf[..])
    })
    .await
}

/// Writes all of `buf` to the socket (ciphertext, on a TLS connection).
async fn write_raw(stream: &RefCell<glommio::net::TcpStream>, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        let written = futures_lite::future::poll_fn(|cx| {
            Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[written..];
    }
    Ok(())
}

fn shutdown(stream: &RefCell<glommio::net::TcpStream>) {
    let fd = stream.borrow().as_raw_fd();
    // SAFETY: shutdown(2) on the socket the shared stream owns (open while `stream` lives).
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

pub struct WriteHalf {
    stream: Rc<RefCell<glommio::net::TcpStream>>,
    /// The TLS session, shared with the read half.
    tls: Option<tls::Session>,
}

/// How long one wait for room in the socket's send buffer lasts before it is retried.
const WRITABLE_WAIT_MS: i32 = 200;

impl WriteHalf {
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        match &self.tls {
            None => write_raw(&self.stream, buf).await,
            Some(session) => tls::write_all(session, &self.stream, buf).await,
        }
    }

    pub async fn flush(&mut self) -> Result<()> {
        if let Some(session) = &self.tls {
            tls::drain(session, &self.stream).await?;
        }
        let stream = &self.stream;
        futures_lite::future::poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_flush(cx)).await
    }

    /// Closes both directions of the socket, so that a reader blocked on it wakes up.
    pub fn shutdown(&self) {
        shutdown(&self.stream);
    }

    /// Sends `len` bytes of `file` from `position` with sendfile(2): page cache to socket, no copy
    /// through user space. When the send buffer is full, waits for room off the core.
    pub async fn sendfile(&mut self, file: RawFd, position: u64, len: u64) -> Result<()> {
        if let Some(session) = &self.tls {
            // Encrypted in user space: the bytes pass through the TLS session.
            return tls::send_file(session, &self.stream, file, position, len).await;
        }
        let socket = self.stream.borrow().as_raw_fd();
        let mut offset = position as libc::off_t;
        let end = position + len;
        while (offset as u64) < end {
            let want = (end - offset as u64).min(1 << 30) as usize;
            // SAFETY: both descriptors are open for the duration of the call; `offset` is a
            // live off_t that sendfile advances.
            let sent = unsafe { libc::sendfile(socket, file, &mut offset, want) };
            if sent > 0 {
                continue;
            }
            if sent == 0 {
                // The file is shorter than the range: it was truncated under us.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the read range",
                ));
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => wait_writable(socket).await?,
                std::io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
        Ok(())
    }
}

/// Waits until `socket` can take more bytes. glommio has no public readiness wait, so the poll(2)
/// runs on its blocking thread pool; it is only reached when the send buffer is full.
async fn wait_writable(socket: RawFd) -> Result<()> {
    let ready = glommio::executor()
        .spawn_blocking(move || {
            let mut pollfd = libc::pollfd {
                fd: socket,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the descriptor stays open while the writer awaits this.
            let rc = unsafe { libc::poll(&mut pollfd, 1, WRITABLE_WAIT_MS) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        })
        .await;
    ready
}

/// A timeout for a future: `None` if `duration` passed first.
pub async fn timeout<T>(
    duration: Duration,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        super::sleep(duration).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode_and_a_listener_is_found() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_ip("0100007F"), Some("127.0.0.1".parse().unwrap()));
            assert_eq!(
                proc_ip("00000000000000000000000001000000"),
                Some("::1".parse().unwrap())
            );
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(listened_on(addr));
        assert!(listened_on(SocketAddr::new(
            [0, 0, 0, 0].into(),
            addr.port()
        )));
        drop(listener);
        assert!(!listened_on(addr));
    }

    #[test]
    fn a_shard_connects_out_and_both_sides_exchange_bytes() {
        crate::io::block_on(async {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let queue = crate::io::TaskQueue::new("test", 100);
            let server = queue.spawn(async move {
                let (mut read, mut write) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4];
                assert!(read.read_exact_or_eof(&mut buf).await.unwrap());
                write.write_all(&buf.map(|b| b + 1)).await.unwrap();
                write.flush().await.unwrap();
            });
            let (mut read, mut write) = connect(addr, Duration::from_secs(5)).await.unwrap();
            assert_eq!(read.peer(), Some(addr));
            write.write_all(b"abcd").await.unwrap();
            write.flush().await.unwrap();
            let mut answer = [0u8; 4];
            assert!(read.read_exact_or_eof(&mut answer).await.unwrap());
            assert_eq!(&answer, b"bcde");
            server.join().await;
        });
    }

    #[test]
    fn connecting_where_nobody_listens_fails() {
        crate::io::block_on(async {
            let (reserved, addr) = reserve_port("127.0.0.1:0".parse().unwrap()).unwrap();
            // Bound but never listening: the connection is refused.
            assert!(connect(addr, Duration::from_secs(5)).await.is_err());
            drop(reserved);
        });
    }
}
