//! Raft's messages between controllers over TCP: on each voter's controller listener, frames of
//! a length (4 bytes, big-endian) and one message in raft's protobuf form. Each peer has a queue
//! and a task that connects (again, after a failure, with a back-off) and writes the queue out;
//! raft tolerates a lost message, so what cannot be sent is dropped, and a queue that grows past
//! its bound drops its oldest. Received messages are stepped into the quorum, which then drives.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use protobuf::Message as _;
use raft::prelude::Message;

use super::{raft_id, Quorum, Transport};
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

/// The sending side: one queue and one task per peer, on the controller's shard.
pub struct TcpTransport {
    peers: HashMap<u64, mpsc::UnboundedSender<Message>>,
    /// Peers whose connections are refused now, and since when.
    refused: Refused,
}

type Refused = Rc<RefCell<HashMap<NodeId, std::time::Instant>>>;

impl TcpTransport {
    /// Starts a sender task per voter other than `me`; each connection opens with `cluster`,
    /// the cluster id (see [`hello`]).
    pub fn start(me: NodeId, voters: &[Voter], cluster: &str) -> TcpTransport {
        let mut peers = HashMap::new();
        let refused = Refused::default();
        for voter in voters.iter().filter(|v| v.id != me) {
            let (tx, rx) = mpsc::unbounded();
            let target = format!("{}:{}", voter.host, voter.port);
            let hello = hello(cluster);
            io::spawn(send_loop(voter.id, target, hello, rx, refused.clone())).detach();
            peers.insert(raft_id(voter.id), tx);
        }
        TcpTransport { peers, refused }
    }
}

impl Transport for TcpTransport {
    fn send(&self, message: Message) {
        match self.peers.get(&message.to) {
            Some(peer) => {
                let _ = peer.unbounded_send(message);
            }
            None => tracing::warn!(to = message.to, "a message to a node that is not a voter"),
        }
    }

    fn refused_since(&self, peer: NodeId) -> Option<std::time::Instant> {
        self.refused.borrow().get(&peer).copied()
    }
}

/// The first bytes of every connection between controllers: a magic word and the cluster id.
/// A voter refuses a connection from another cluster's (Kafka's INCONSISTENT_CLUSTER_ID): raft
/// trusts its peers, and a message from another cluster's leader (a node of a cluster that
/// once had this address, say) would make it stop the process.
const HELLO_MAGIC: &[u8; 8] = b"SLUICEQ1";
/// The longest cluster id a hello carries.
const CLUSTER_ID_BYTES_MAX: usize = 255;

fn hello(cluster: &str) -> Vec<u8> {
    let id = &cluster.as_bytes()[..cluster.len().min(CLUSTER_ID_BYTES_MAX)];
    let mut hello = HELLO_MAGIC.to_vec();
    hello.push(id.len() as u8);
    hello.extend_from_slice(id);
    hello
}

/// Reads a connection's hello: the cluster id it names.
async fn read_hello(read: &mut io::net::ReadHalf) -> std::io::Result<String> {
    let mut head = [0u8; 9];
    if !read.read_exact_or_eof(&mut head).await? || &head[..8] != HELLO_MAGIC {
        return Err(std::io::Error::other("no controller hello"));
    }
    let mut id = vec![0u8; head[8] as usize];
    if !read.read_exact_or_eof(&mut id).await? {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    String::from_utf8(id).map_err(|_| std::io::Error::other("a cluster id that is not UTF-8"))
}

async fn send_loop(
    peer: NodeId,
    target: String,
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
            match connect(&target).await {
                Ok(write) => {
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
        let mut frames = Vec::new();
        if fresh {
            frames.extend_from_slice(&hello);
            fresh = false;
        }
        for message in pending.drain(..) {
            let body = message.write_to_bytes().expect("a message always encodes");
            frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frames.extend_from_slice(&body);
        }
        let write = connection.as_mut().expect("connected");
        let sent = match write.write_all(&frames).await {
            Ok(()) => write.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(peer = peer.0, %target, error = %e, "lost the connection to the controller");
            connection = None;
        }
    }
}

async fn connect(target: &str) -> std::io::Result<io::net::WriteHalf> {
    let addr: SocketAddr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{target} has no address")))?;
    let (_read, write) = io::net::connect(addr, CONNECT_TIMEOUT).await?;
    Ok(write)
}

/// Accepts the other voters' connections on `listener` and steps what they send into `quorum`.
/// Only connections from the voters' addresses are taken, and only messages from a voter to this
/// one: raft trusts its peers (a forged message can make it stop the process), so nothing else
/// reaches it. (Authentication of the controllers comes with the security work.)
pub async fn serve(
    listener: io::net::Listener,
    quorum: Rc<Quorum>,
    voters: Vec<Voter>,
    cluster: String,
) {
    let cluster = Rc::new(cluster);
    let addresses: HashSet<IpAddr> = voters
        .iter()
        .filter_map(|v| (v.host.as_str(), v.port).to_socket_addrs().ok())
        .flatten()
        .map(|a| a.ip())
        .collect();
    let ids: Rc<HashSet<u64>> = Rc::new(voters.iter().map(|v| raft_id(v.id)).collect());
    loop {
        match listener.accept().await {
            Ok((read, _write)) => {
                let from_voter = read.peer().is_some_and(|p| addresses.contains(&p.ip()));
                if !from_voter {
                    let peer = read.peer();
                    crate::throttled!(|count| {
                        tracing::warn!(
                            ?peer,
                            count,
                            "a controller connection from outside the voters: closed"
                        )
                    });
                    continue;
                }
                let (quorum, ids, cluster) = (quorum.clone(), ids.clone(), cluster.clone());
                io::spawn(async move {
                    let peer = read.peer();
                    if let Err(e) = receive(read, &quorum, &ids, &cluster).await {
                        tracing::warn!(?peer, error = %e, "a controller connection failed");
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

async fn receive(
    mut read: io::net::ReadHalf,
    quorum: &Quorum,
    voters: &HashSet<u64>,
    cluster: &str,
) -> std::io::Result<()> {
    let me = raft_id(quorum.me());
    let theirs = read_hello(&mut read).await?;
    if theirs != cluster {
        return Err(std::io::Error::other(format!(
            "a controller of cluster {theirs}, not this one's ({cluster}): check \
             controller.quorum.voters and meta.properties"
        )));
    }
    loop {
        let mut len = [0u8; 4];
        if !read.read_exact_or_eof(&mut len).await? {
            return Ok(());
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
        let message = Message::parse_from_bytes(&body)
            .map_err(|e| std::io::Error::other(format!("not a raft message: {e}")))?;
        if message.to != me || message.from == me || !voters.contains(&message.from) {
            return Err(std::io::Error::other(format!(
                "a message from {} to {}: not from another voter to this one",
                message.from, message.to
            )));
        }
        if let Err(e) = quorum.step(message).await {
            tracing::debug!(error = %e, "a controller message was not taken");
            continue;
        }
        if let Err(e) = quorum.drive().await {
            return Err(std::io::Error::other(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
mod over_tcp {
    use std::rc::Rc;
    use std::time::Duration;

    use super::{serve, TcpTransport, Voter};
    use crate::cluster::{Change, Quorum};
    use crate::io;
    use crate::model::NodeId;

    /// Three voters on loopback listeners, ticked by a timer: they elect a leader over TCP and
    /// a change proposed on a follower (forwarded to the leader) reaches every image.
    #[test]
    fn three_voters_agree_over_loopback_tcp() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        io::block_on(async {
            let listeners: Vec<io::net::Listener> = (0..3)
                .map(|_| io::net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap())
                .collect();
            let voters: Vec<Voter> = listeners
                .iter()
                .enumerate()
                .map(|(i, l)| Voter {
                    id: NodeId(i as i32 + 1),
                    host: "127.0.0.1".into(),
                    port: l.local_addr().unwrap().port(),
                })
                .collect();
            let ids: Vec<NodeId> = voters.iter().map(|v| v.id).collect();
            let mut quorums = Vec::new();
            for (i, listener) in listeners.into_iter().enumerate() {
                let transport = Rc::new(TcpTransport::start(ids[i], &voters, "c1"));
                let quorum = Quorum::open(
                    dirs[i].path(),
                    ids[i],
                    &ids,
                    io::Faults::default(),
                    transport,
                )
                .await
                .unwrap();
                io::spawn(serve(listener, quorum.clone(), voters.clone(), "c1".into())).detach();
                let ticked = quorum.clone();
                io::spawn(async move {
                    loop {
                        io::sleep(Duration::from_millis(20)).await;
                        ticked.tick().await;
                        let _ = ticked.drive().await;
                    }
                })
                .detach();
                quorums.push(quorum);
            }
            let leader = loop {
                if let Some(leader) = quorums.iter().position(|q| q.is_leader()) {
                    break leader;
                }
                io::sleep(Duration::from_millis(20)).await;
            };
            let follower = (leader + 1) % 3;
            while quorums[follower].leader().is_none() {
                io::sleep(Duration::from_millis(20)).await;
            }
            let create = Change::create_topic("over-tcp", 2, Default::default());
            let register = Change::RegisterBroker {
                id: ids[follower],
                broker: crate::cluster::BrokerMeta {
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                },
            };
            quorums[follower].propose(&register).await.unwrap();
            let image = quorums[follower].propose(&create).await.unwrap();
            assert_eq!(image.topics["over-tcp"].partitions, 2);
            // A message that claims to come from a node that is no voter (a heartbeat committing
            // far past the log: raft would stop the process on it) is refused with the connection.
            let target = format!("127.0.0.1:{}", voters[follower].port)
                .parse()
                .unwrap();
            let (_, mut write) = io::net::connect(target, Duration::from_secs(1))
                .await
                .unwrap();
            let mut forged = raft::prelude::Message::default();
            forged.set_msg_type(raft::prelude::MessageType::MsgHeartbeat);
            forged.from = 99;
            forged.to = super::raft_id(ids[follower]);
            forged.term = 1_000;
            forged.commit = 1_000_000;
            let body = protobuf::Message::write_to_bytes(&forged).unwrap();
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            write.write_all(&frame).await.unwrap();
            write.flush().await.unwrap();
            io::sleep(Duration::from_millis(100)).await;
            let more = Change::create_topic("still-here", 1, Default::default());
            quorums[follower].propose(&more).await.unwrap();
            for _ in 0..100 {
                if quorums
                    .iter()
                    .all(|q| q.image().topics.contains_key("still-here"))
                {
                    return;
                }
                io::sleep(Duration::from_millis(20)).await;
            }
            panic!("not every voter applied the change");
        });
    }

    /// A controller of another cluster is refused before anything it sends reaches raft: its
    /// heartbeat (from voter 2, term 5) moves nothing; the same bytes under this cluster's id
    /// make voter 2 the leader here.
    #[test]
    fn a_controller_of_another_cluster_is_refused() {
        use protobuf::Message as _;
        use raft::prelude::{Message, MessageType};
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let listener = io::net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let voter = |id: i32, port| Voter {
                id: NodeId(id),
                host: "127.0.0.1".into(),
                port,
            };
            let voters = vec![voter(1, addr.port()), voter(2, 1)];
            let ids = [NodeId(1), NodeId(2)];
            let transport = Rc::new(TcpTransport::start(ids[0], &voters, "ours"));
            let quorum = Quorum::open(dir.path(), ids[0], &ids, io::Faults::default(), transport)
                .await
                .unwrap();
            io::spawn(serve(listener, quorum.clone(), voters, "ours".into())).detach();
            let mut heartbeat = Message::default();
            heartbeat.set_msg_type(MessageType::MsgHeartbeat);
            heartbeat.from = super::super::raft_id(NodeId(2));
            heartbeat.to = super::super::raft_id(NodeId(1));
            heartbeat.term = 5;
            let body = heartbeat.write_to_bytes().unwrap();
            for (cluster, leads) in [("theirs", None), ("ours", Some(NodeId(2)))] {
                let (_read, mut write) = io::net::connect(addr, Duration::from_secs(1))
                    .await
                    .unwrap();
                let mut bytes = super::hello(cluster);
                bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&body);
                write.write_all(&bytes).await.unwrap();
                write.flush().await.unwrap();
                io::sleep(Duration::from_millis(200)).await;
                assert_eq!(quorum.leader(), leads, "from cluster {cluster}");
            }
        });
    }
}
