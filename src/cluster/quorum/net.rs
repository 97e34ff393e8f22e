//! Raft's messages between controllers over TCP: on each voter's controller listener, frames of
//! a length (4 bytes, big-endian) and one message in raft's protobuf form. Each peer has a queue
//! and a task that connects (again, after a failure, with a back-off) and writes the queue out;
//! raft tolerates a lost message, so what cannot be sent is dropped, and a queue that grows past
//! its bound drops its oldest. Received messages are stepped into the quorum, which then drives.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use protobuf::Message as _;
use raft::prelude::Message;
use uuid::Uuid;

use super::{node_of, raft_id, Quorum, Transport};
use crate::io;
use crate::model::NodeId;

/// A message larger than this is not a controller's: the connection is closed.
const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Messages queued for one peer before the oldest are dropped.
const QUEUE_MAX: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A voter of the quorum and where its controller listener is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
}

/// Reads `controller.quorum.voters` (Kafka's form: `1@host:9093,2@host:9093`).
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, String> {
    let mut voters: Vec<Voter> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("controller.quorum.voters: `{part}` is not id@host:port");
        let (id, address) = part.split_once('@').ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let id: i32 = id.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if id < 0 || host.is_empty() {
            return Err(bad());
        }
        if voters.iter().any(|v| v.id.0 == id) {
            return Err(format!(
                "controller.quorum.voters: node {id} is named twice"
            ));
        }
        voters.push(Voter {
            id: NodeId(id),
            host: host.to_string(),
            port,
        });
    }
    Ok(voters)
}

/// The sending side: one queue and one task per peer, on the controller's shard. A voter also
/// sends to the learners connected to it (brokers that do not vote) over their connections.
pub struct TcpTransport {
    peers: RefCell<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    /// Peers whose connections are refused now, and since when.
    refused: Refused,
    /// Learners connected to this voter, each with the number of its connection (a learner
    /// that reconnects replaces its route; the old connection's end must not remove the new).
    learners: RefCell<HashMap<NodeId, u64>>,
    connections: std::cell::Cell<u64>,
}

type Refused = Rc<RefCell<HashMap<NodeId, std::time::Instant>>>;

impl TcpTransport {
    /// Starts a sender task per voter other than `me`; each connection opens with `cluster`,
    /// the cluster id, and `directory`, this voter's metadata directory id (see [`hello`]).
    /// Over TLS where `tls` is given (the controller listener is SSL).
    pub fn start(
        me: NodeId,
        voters: &[Voter],
        cluster: &str,
        directory: Uuid,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> TcpTransport {
        let transport = TcpTransport::empty();
        for voter in voters.iter().filter(|v| v.id != me) {
            let (tx, rx) = mpsc::unbounded();
            let target = Target::new(voter, tls.clone());
            let hello = hello(cluster, Hello::Voter(Some(directory)));
            let refused = transport.refused.clone();
            io::spawn(send_loop(voter.id, target, hello, rx, refused)).detach();
            transport.peers.borrow_mut().insert(raft_id(voter.id), tx);
        }
        transport
    }

    /// A learner's transport (`process.roles=broker`): it keeps a connection to every voter,
    /// sends its answers on it, and receives the leader's log and heartbeats on it (the voters
    /// cannot connect to a broker). What the voters send comes out of the receiver.
    pub fn start_learner(
        me: NodeId,
        voters: &[Voter],
        cluster: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> (TcpTransport, mpsc::UnboundedReceiver<Message>) {
        let transport = TcpTransport::empty();
        let (inbound, received) = mpsc::unbounded();
        for voter in voters {
            let (tx, rx) = mpsc::unbounded();
            let target = Target::new(voter, tls.clone());
            let link = Link {
                me,
                peer: voter.id,
                target,
                hello: hello(cluster, Hello::Learner(me)),
            };
            io::spawn(link.keep(rx, inbound.clone())).detach();
            transport.peers.borrow_mut().insert(raft_id(voter.id), tx);
        }
        (transport, received)
    }

    fn empty() -> TcpTransport {
        TcpTransport {
            peers: RefCell::default(),
            refused: Refused::default(),
            learners: RefCell::default(),
            connections: std::cell::Cell::new(0),
        }
    }

    /// The learners connected to this voter now.
    pub fn connected_learners(&self) -> Vec<NodeId> {
        let mut learners: Vec<NodeId> = self.learners.borrow().keys().copied().collect();
        learners.sort();
        learners
    }

    /// Routes messages to `learner` over the connection it opened; the number to forget it by.
    fn learner_connected(&self, learner: NodeId, route: mpsc::UnboundedSender<Message>) -> u64 {
        let number = self.connections.get() + 1;
        self.connections.set(number);
        self.peers.borrow_mut().insert(raft_id(learner), route);
        self.learners.borrow_mut().insert(learner, number);
        number
    }

    fn learner_gone(&self, learner: NodeId, number: u64) {
        let mut learners = self.learners.borrow_mut();
        if learners.get(&learner) == Some(&number) {
            learners.remove(&learner);
            self.peers.borrow_mut().remove(&raft_id(learner));
        }
    }
}

impl Transport for TcpTransport {
    fn send(&self, message: Message) {
        match self.peers.borrow().get(&message.to) {
            Some(peer) => {
                let _ = peer.unbounded_send(message);
            }
            // A learner not connected now: raft sends again once it is.
            None => crate::throttled!(|count| tracing::debug!(
                to = message.to,
                count,
                "a message to a node not connected: dropped"
            )),
        }
    }

    fn refused_since(&self, peer: NodeId) -> Option<std::time::Instant> {
        self.refused.borrow().get(&peer).copied()
    }
}

/// The first bytes of every connection to a controller: a magic word, a voter's metadata
/// directory id or a learner's node id, and the cluster id. A voter refuses a connection from
/// another cluster's (Kafka's INCONSISTENT_CLUSTER_ID): raft trusts its peers, and a message
/// from another cluster's leader (a node of a cluster that once had this address, say) would
/// make it stop the process. (`SLUICEQ1`, a voter's hello without a directory, is the previous
/// version's.)
const HELLO_MAGIC_V1: &[u8; 8] = b"SLUICEQ1";
const HELLO_MAGIC: &[u8; 8] = b"SLUICEQ2";
const LEARNER_HELLO_MAGIC: &[u8; 8] = b"SLUICEL1";
/// The longest cluster id a hello carries.
const CLUSTER_ID_BYTES_MAX: usize = 255;

/// Who opened a connection to a controller.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hello {
    /// A voter, with its metadata directory id (unknown from the previous version).
    Voter(Option<Uuid>),
    /// A broker that does not vote.
    Learner(NodeId),
}

fn hello(cluster: &str, from: Hello) -> Vec<u8> {
    let id = &cluster.as_bytes()[..cluster.len().min(CLUSTER_ID_BYTES_MAX)];
    let mut hello = Vec::new();
    match from {
        Hello::Voter(directory) => {
            hello.extend_from_slice(HELLO_MAGIC);
            hello.extend_from_slice(directory.unwrap_or_default().as_bytes());
        }
        Hello::Learner(node) => {
            hello.extend_from_slice(LEARNER_HELLO_MAGIC);
            hello.extend_from_slice(&node.0.to_be_bytes());
        }
    }
    hello.push(id.len() as u8);
    hello.extend_from_slice(id);
    hello
}

/// Reads a connection's hello: the cluster id it names, and who sent it.
async fn read_hello(read: &mut io::net::ReadHalf) -> std::io::Result<(String, Hello)> {
    let mut magic = [0u8; 8];
    if !read.read_exact_or_eof(&mut magic).await? {
        return Err(std::io::Error::other("no controller hello"));
    }
    let from = match &magic {
        m if m == HELLO_MAGIC_V1 => Hello::Voter(None),
        m if m == HELLO_MAGIC => {
            let mut id = [0u8; 16];
            if !read.read_exact_or_eof(&mut id).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Hello::Voter(Some(Uuid::from_bytes(id)).filter(|d| !d.is_nil()))
        }
        m if m == LEARNER_HELLO_MAGIC => {
            let mut id = [0u8; 4];
            if !read.read_exact_or_eof(&mut id).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Hello::Learner(NodeId(i32::from_be_bytes(id)))
        }
        _ => return Err(std::io::Error::other("no controller hello")),
    };
    let mut len = [0u8; 1];
    if !read.read_exact_or_eof(&mut len).await? {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut id = vec![0u8; len[0] as usize];
    if !read.read_exact_or_eof(&mut id).await? {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let cluster = String::from_utf8(id)
        .map_err(|_| std::io::Error::other("a cluster id that is not UTF-8"))?;
    Ok((cluster, from))
}

/// Messages as frames: a length (4 bytes, big-endian) and the message.
fn frames(messages: impl IntoIterator<Item = Message>, into: &mut Vec<u8>) {
    for message in messages {
        let body = message.write_to_bytes().expect("a message always encodes");
        into.extend_from_slice(&(body.len() as u32).to_be_bytes());
        into.extend_from_slice(&body);
    }
}

/// `first` and every message queued behind it now, to go out in one write.
fn with_queued(first: Message, queue: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Message> {
    let mut batch = vec![first];
    while let Ok(message) = queue.try_recv() {
        batch.push(message);
    }
    batch
}

/// Reads the next message of a connection (`None` at its end).
async fn read_message(read: &mut io::net::ReadHalf) -> std::io::Result<Option<Message>> {
    let mut len = [0u8; 4];
    if !read.read_exact_or_eof(&mut len).await? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MESSAGE_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "a {len}-byte frame, over the {MESSAGE_BYTES_MAX}-byte bound"
        )));
    }
    let mut body = vec![0u8; len];
    if !read.read_exact_or_eof(&mut body).await? {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Message::parse_from_bytes(&body)
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("not a raft message: {e}")))
}

async fn send_loop(
    peer: NodeId,
    target: Target,
    hello: Vec<u8>,
    mut queue: mpsc::UnboundedReceiver<Message>,
    refused: Refused,
) {
    let mut pending: VecDeque<Message> = VecDeque::new();
    let mut connection: Option<io::net::WriteHalf> = None;
    let mut logged_down = false;
    // A new connection: its hello goes first.
    let mut fresh = false;
    loop {
        if pending.is_empty() {
            match queue.next().await {
                Some(message) => pending.push_back(message),
                None => return,
            }
        }
        while let Ok(message) = queue.try_recv() {
            pending.push_back(message);
        }
        while pending.len() > QUEUE_MAX {
            pending.pop_front();
        }
        if connection.is_none() {
            match target.connect().await {
                Ok((_read, write)) => {
                    tracing::info!(peer = peer.0, %target, "connected to the controller");
                    logged_down = false;
                    refused.borrow_mut().remove(&peer);
                    connection = Some(write);
                    fresh = true;
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        let now = std::time::Instant::now();
                        refused.borrow_mut().entry(peer).or_insert(now);
                    }
                    if !logged_down {
                        tracing::warn!(peer = peer.0, %target, error = %e, "cannot reach the controller; retrying");
                        logged_down = true;
                    }
                    // What was queued is stale by the next try: raft sends again.
                    pending.clear();
                    io::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
        }
        let mut bytes = Vec::new();
        if fresh {
            bytes.extend_from_slice(&hello);
            fresh = false;
        }
        frames(pending.drain(..), &mut bytes);
        let write = connection.as_mut().expect("connected");
        let sent = match write.write_all(&bytes).await {
            Ok(()) => write.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(peer = peer.0, %target, error = %e, "lost the connection to the controller");
            connection = None;
        }
    }
}

/// A learner's connection to one voter, kept open: what the learner sends goes out on it, and
/// what the voter sends back (the leader's entries and heartbeats) comes in on it.
struct Link {
    me: NodeId,
    peer: NodeId,
    target: Target,
    hello: Vec<u8>,
}

impl Link {
    async fn keep(
        self,
        mut queue: mpsc::UnboundedReceiver<Message>,
        inbound: mpsc::UnboundedSender<Message>,
    ) {
        let mut logged_down = false;
        loop {
            let (mut read, mut write) = match self.target.connect().await {
                Ok(halves) => halves,
                Err(e) => {
                    if !logged_down {
                        tracing::warn!(peer = self.peer.0, target = %self.target, error = %e, "cannot reach the controller; retrying");
                        logged_down = true;
                    }
                    while queue.try_recv().is_ok() {}
                    io::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
            tracing::info!(peer = self.peer.0, target = %self.target, "connected to the controller as a learner");
            logged_down = false;
            let receiving = async {
                loop {
                    match read_message(&mut read).await {
                        Ok(Some(m)) if m.from == raft_id(self.peer) && m.to == raft_id(self.me) => {
                            if inbound.unbounded_send(m).is_err() {
                                return Ok(());
                            }
                        }
                        Ok(Some(m)) => {
                            return Err(std::io::Error::other(format!(
                                "a message from {} to {} on the link to voter {}",
                                m.from, m.to, self.peer.0
                            )))
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            };
            let sending = async {
                let mut bytes = self.hello.clone();
                loop {
                    write.write_all(&bytes).await?;
                    write.flush().await?;
                    bytes.clear();
                    let Some(first) = queue.next().await else {
                        return Ok(());
                    };
                    frames(with_queued(first, &mut queue), &mut bytes);
                }
            };
            futures::pin_mut!(receiving, sending);
            let ended: std::io::Result<()> = match futures::future::select(receiving, sending).await
            {
                futures::future::Either::Left((ended, _))
                | futures::future::Either::Right((ended, _)) => ended,
            };
            if let Err(e) = ended {
                tracing::warn!(peer = self.peer.0, target = %self.target, error = %e, "lost the connection to the controller");
            }
            if inbound.is_closed() {
                return;
            }
            io::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// A voter's controller listener, and the TLS to speak there (`None`: plaintext).
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    fn new(voter: &Voter, tls: Option<Arc<rustls::ClientConfig>>) -> Target {
        Target {
            host: voter.host.clone(),
            port: voter.port,
            tls,
        }
    }

    async fn connect(&self) -> std::io::Result<(io::net::ReadHalf, io::net::WriteHalf)> {
        let addr: SocketAddr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{self} has no address")))?;
        let halves = io::net::connect(addr, CONNECT_TIMEOUT).await?;
        let Some(config) = &self.tls else {
            return Ok(halves);
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| std::io::Error::other(format!("{self}: not a TLS server name: {e}")))?;
        io::net::tls::connect(halves, config.clone(), name, HELLO_TIMEOUT)
            .await
            .map_err(std::io::Error::other)
    }
}

/// Accepts the other voters' connections on `listener`, and the learners', and steps what they
/// send into `quorum`. A voter's connection is taken only from a voter's address, and only
/// messages from that voter to this one: raft trusts its peers (a forged message can make it
/// stop the process), so nothing else reaches it. A learner (a broker that does not vote) may
/// connect from anywhere but only answers: its acknowledgements of the log and heartbeats, and
/// the changes it proposes. Over TLS (`tls`, the listener is SSL) the peer must present a
/// certificate the truststore trusts before it is heard at all.
pub async fn serve(
    listener: io::net::Listener,
    quorum: Rc<Quorum>,
    transport: Rc<TcpTransport>,
    voters: Vec<Voter>,
    cluster: String,
    mut tls: Option<crate::security::tls::Tls>,
) {
    let accepting = Rc::new(Accepting {
        addresses: voters
            .iter()
            .filter_map(|v| (v.host.as_str(), v.port).to_socket_addrs().ok())
            .flatten()
            .map(|a| a.ip())
            .collect(),
        voters: voters.iter().map(|v| raft_id(v.id)).collect(),
        quorum,
        transport,
        cluster,
    });
    loop {
        match listener.accept().await {
            Ok((read, write)) => {
                let accepting = accepting.clone();
                let config = tls.as_mut().map(|tls| tls.current());
                io::spawn(async move {
                    let peer = read.peer();
                    let halves = match config {
                        None => Ok((read, write)),
                        Some(config) => io::net::tls::accept((read, write), config, HELLO_TIMEOUT)
                            .await
                            .map_err(std::io::Error::other),
                    };
                    let taken = match halves {
                        Ok((read, write)) => accepting.take(read, write).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = taken {
                        crate::throttled!(|count| tracing::warn!(
                            ?peer,
                            error = %e,
                            count,
                            "a controller connection failed"
                        ));
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a controller connection failed");
                io::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

/// How long a new connection may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

struct Accepting {
    addresses: HashSet<IpAddr>,
    /// The voters' raft ids.
    voters: HashSet<u64>,
    quorum: Rc<Quorum>,
    transport: Rc<TcpTransport>,
    cluster: String,
}

impl Accepting {
    async fn take(
        &self,
        mut read: io::net::ReadHalf,
        write: io::net::WriteHalf,
    ) -> std::io::Result<()> {
        let (theirs, from) = io::net::timeout(HELLO_TIMEOUT, read_hello(&mut read))
            .await
            .ok_or_else(|| std::io::Error::other("no hello in time"))??;
        if theirs != self.cluster {
            return Err(std::io::Error::other(format!(
                "a controller of cluster {theirs}, not this one's ({}): check \
                 controller.quorum.voters and meta.properties",
                self.cluster
            )));
        }
        let learner = match from {
            Hello::Learner(learner) => learner,
            Hello::Voter(directory) => {
                if !read
                    .peer()
                    .is_some_and(|p| self.addresses.contains(&p.ip()))
                {
                    return Err(std::io::Error::other(
                        "a controller connection from outside the voters: closed",
                    ));
                }
                let voters = |from| self.voters.contains(&from);
                return self.receive(read, voters, directory).await;
            }
        };
        if self.voters.contains(&raft_id(learner)) {
            return Err(std::io::Error::other(format!(
                "node {} connected as a learner but is a voter",
                learner.0
            )));
        }
        let (route, mut queue) = mpsc::unbounded::<Message>();
        let number = self.transport.learner_connected(learner, route);
        let mut write = write;
        io::spawn(async move {
            let mut bytes = Vec::new();
            while let Some(first) = queue.next().await {
                bytes.clear();
                frames(with_queued(first, &mut queue), &mut bytes);
                if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                    return;
                }
            }
        })
        .detach();
        let received = self
            .receive(read, |from| from == raft_id(learner), None)
            .await;
        self.transport.learner_gone(learner, number);
        received
    }

    /// Steps each message of the connection into the quorum while `from_ok` takes its sender
    /// (one sender per connection); a learner's (not a voter) only answers and proposes. A
    /// voter's votes are dropped while its metadata `directory` is not the one the image
    /// records for it (see [`counts_in_elections`]).
    async fn receive(
        &self,
        mut read: io::net::ReadHalf,
        from_ok: impl Fn(u64) -> bool,
        directory: Option<Uuid>,
    ) -> std::io::Result<()> {
        use raft::prelude::MessageType as T;
        let me = raft_id(self.quorum.me());
        let mut sender = None;
        while let Some(message) = read_message(&mut read).await? {
            let voter = self.voters.contains(&message.from);
            let answer = matches!(
                message.get_msg_type(),
                T::MsgAppendResponse | T::MsgHeartbeatResponse | T::MsgPropose
            );
            let same = *sender.get_or_insert(message.from) == message.from;
            if message.to != me
                || message.from == me
                || !same
                || !from_ok(message.from)
                || !(voter || answer)
            {
                return Err(std::io::Error::other(format!(
                    "a {:?} from {} to {}: not one this connection may carry",
                    message.get_msg_type(),
                    message.from,
                    message.to
                )));
            }
            let image = self.quorum.image();
            let from = node_of(message.from);
            if !counts_in_elections(&image, from, directory, message.get_msg_type()) {
                crate::throttled!(|count| tracing::warn!(
                    node = from.0,
                    directory = ?directory,
                    known = ?image.voter_dirs.get(&from),
                    count,
                    "a vote from a voter whose metadata directory is not the one the quorum \
                     knows (its data was lost?) is not counted until it has caught up"
                ));
                continue;
            }
            if let Err(e) = self.quorum.deliver(message).await {
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        Ok(())
    }
}

/// Whether a message of type `kind` from voter `from`, whose metadata directory is `directory`,
/// takes part in elections: not a vote (asked or given, pre-vote too) from a voter that came
/// back with another directory than `image` records, since it forgot whom it voted for and what
/// it acknowledged (Raft counts on both). Once its `RegisterVoter` is committed (it then holds
/// the log up to there, as a majority does) its votes count again. Other messages always pass.
fn counts_in_elections(
    image: &crate::cluster::Image,
    from: NodeId,
    directory: Option<Uuid>,
    kind: raft::prelude::MessageType,
) -> bool {
    use raft::prelude::MessageType as T;
    let vote = matches!(
        kind,
        T::MsgRequestVote
            | T::MsgRequestVoteResponse
            | T::MsgRequestPreVote
            | T::MsgRequestPreVoteResponse
    );
    match (image.voter_dirs.get(&from), directory) {
        (Some(known), Some(theirs)) if vote => *known == theirs,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voter_back_with_another_directory_has_no_vote_until_registered() {
        use raft::prelude::MessageType as T;
        let (old, new) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut image = crate::cluster::Image::default();
        let (w, kinds) = (NodeId(3), [T::MsgRequestPreVote, T::MsgRequestVoteResponse]);
        // Nothing recorded (a new cluster) or a voter of the previous version: counted.
        assert!(counts_in_elections(&image, w, Some(new), T::MsgRequestVote));
        image.voter_dirs.insert(w, old);
        assert!(counts_in_elections(&image, w, None, T::MsgRequestVote));
        for kind in kinds {
            assert!(counts_in_elections(&image, w, Some(old), kind));
            assert!(!counts_in_elections(&image, w, Some(new), kind), "{kind:?}");
        }
        // Its acknowledgements of the log are true of what it holds now: they pass.
        assert!(counts_in_elections(
            &image,
            w,
            Some(new),
            T::MsgAppendResponse
        ));
        let image = crate::cluster::apply(
            &image,
            &crate::cluster::Change::RegisterVoter {
                id: w,
                directory: new,
            },
        )
        .unwrap();
        assert!(counts_in_elections(&image, w, Some(new), T::MsgRequestVote));
        assert_eq!(
            crate::cluster::Image::from_toml(&image.to_toml()).unwrap(),
            image
        );
    }

    #[test]
    fn hellos_read_back() {
        io::block_on(async {
            let listener = io::net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let sent = [
                Hello::Voter(Some(Uuid::from_u128(9))),
                Hello::Voter(None),
                Hello::Learner(NodeId(11)),
            ];
            for from in sent {
                let (_, mut write) = io::net::connect(addr, std::time::Duration::from_secs(1))
                    .await
                    .unwrap();
                write.write_all(&hello("c-1", from)).await.unwrap();
                write.flush().await.unwrap();
                let (mut read, _) = listener.accept().await.unwrap();
                assert_eq!(read_hello(&mut read).await.unwrap(), ("c-1".into(), from));
            }
        });
    }

    #[test]
    fn voters_read_as_kafka_writes_them() {
        let voters = parse_voters("1@127.0.0.1:9093, 2@[::1]:19093,3@host-c:29093").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(
            voters[1],
            Voter {
                id: NodeId(2),
                host: "::1".into(),
                port: 19093
            }
        );
        assert!(parse_voters("").unwrap().is_empty());
        for bad in ["1@host", "x@host:1", "1@:9093", "1@h:1,1@h:2", "-1@h:1"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod over_tcp;
