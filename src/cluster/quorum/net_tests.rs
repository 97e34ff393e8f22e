//! The quorum over real TCP connections on loopback: voters, a foreign cluster's controller,
//! and a learner.

use std::rc::Rc;
use std::time::Duration;

use super::{serve, TcpTransport, Voter};
use crate::cluster::{Change, Quorum};
use crate::io;
use crate::model::NodeId;
use crate::security::peer::QuorumTls;

/// Opens voter `me` of `voters` in `dir`, its transport starting connections to the others.
/// Ticks and drives `quorum` every 20 ms for ever, keeping its learners to those connected
/// to `learners` (a voter's transport) where given.
fn keep_ticking(quorum: Rc<Quorum>, learners: Option<Rc<TcpTransport>>) {
    io::spawn(async move {
        loop {
            io::sleep(Duration::from_millis(20)).await;
            quorum.tick().await;
            let _ = quorum.drive().await;
            if let Some(transport) = &learners {
                let _ = quorum
                    .reconcile_learners(&transport.connected_learners())
                    .await;
            }
        }
    })
    .detach();
}

async fn open_voter(
    dir: &std::path::Path,
    me: NodeId,
    voters: &[Voter],
    cluster: &str,
) -> (Rc<Quorum>, Rc<TcpTransport>) {
    open_voter_over(dir, me, voters, cluster, None).await
}

/// [`open_voter`], over TLS where `tls` is given.
async fn open_voter_over(
    dir: &std::path::Path,
    me: NodeId,
    voters: &[Voter],
    cluster: &str,
    tls: Option<&QuorumTls>,
) -> (Rc<Quorum>, Rc<TcpTransport>) {
    let ids: Vec<NodeId> = voters.iter().map(|v| v.id).collect();
    let transport = Rc::new(TcpTransport::start(
        me,
        voters,
        cluster,
        uuid::Uuid::new_v4(),
        tls.map(|tls| tls.client.clone()),
    ));
    let quorum = Quorum::open(dir, me, &ids, io::Faults::default(), transport.clone())
        .await
        .unwrap();
    (quorum, transport)
}

/// One voter per dir on loopback listeners, each ticked by a timer, over TLS where `tls` is
/// given: the voters and their quorums.
async fn start_voters(
    dirs: &[tempfile::TempDir],
    cluster: &str,
    tls: Option<&QuorumTls>,
) -> (Vec<Voter>, Vec<Rc<Quorum>>) {
    let listeners: Vec<io::net::Listener> = dirs
        .iter()
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
    let mut quorums = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let me = voters[i].id;
        let (quorum, transport) = open_voter_over(dirs[i].path(), me, &voters, cluster, tls).await;
        let server = tls.map(|tls| tls.server.clone());
        let serving = serve(
            listener,
            quorum.clone(),
            transport,
            voters.clone(),
            cluster.into(),
            server,
        );
        io::spawn(serving).detach();
        keep_ticking(quorum.clone(), None);
        quorums.push(quorum);
    }
    (voters, quorums)
}

/// A broker's registration, as a node proposes it at start.
fn registration(id: NodeId) -> Change {
    Change::RegisterBroker {
        id,
        broker: crate::cluster::BrokerMeta {
            host: "localhost".into(),
            port: 9092,
            rack: None,
            listeners: Vec::new(),
            capacity: None,
        },
    }
}

/// The index of the quorum that leads, once one does.
async fn await_leader(quorums: &[Rc<Quorum>]) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = quorums.iter().position(|q| q.is_leader()) {
            return leader;
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        io::sleep(Duration::from_millis(20)).await;
    }
}

/// Three voters on loopback listeners, ticked by a timer: they elect a leader over TCP and
/// a change proposed on a follower (forwarded to the leader) reaches every image.
#[test]
fn three_voters_agree_over_loopback_tcp() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    io::block_on(async {
        let (voters, quorums) = start_voters(&dirs, "c1", None).await;
        let ids: Vec<NodeId> = voters.iter().map(|v| v.id).collect();
        let leader = await_leader(&quorums).await;
        let follower = (leader + 1) % 3;
        while quorums[follower].leader().is_none() {
            io::sleep(Duration::from_millis(20)).await;
        }
        let create = Change::create_topic("over-tcp", 2, Default::default());
        let register = registration(ids[follower]);
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
        let (quorum, transport) = open_voter(dir.path(), ids[0], &voters, "ours").await;
        io::spawn(serve(
            listener,
            quorum.clone(),
            transport,
            voters,
            "ours".into(),
            None,
        ))
        .detach();
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
            let mut bytes = super::hello(cluster, super::Hello::Voter(None));
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&body);
            write.write_all(&bytes).await.unwrap();
            write.flush().await.unwrap();
            io::sleep(Duration::from_millis(200)).await;
            assert_eq!(quorum.leader(), leads, "from cluster {cluster}");
        }
    });
}

/// A broker that does not vote (`process.roles=broker`) connects to the voter, is made a
/// learner, follows the log (changes made before and after it joined), and its proposals
/// are committed; it never leads, and a restarted voter still counts it as a learner.
#[test]
fn a_learner_follows_the_log_and_proposes_without_a_vote() {
    use futures::StreamExt;
    let (voter_dir, learner_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    io::block_on(async {
        let listener = io::net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let voters = vec![Voter {
            id: NodeId(1),
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
        }];
        let ids = [NodeId(1)];
        let (voter, transport) = open_voter(voter_dir.path(), ids[0], &voters, "c").await;
        let register = Change::RegisterBroker {
            id: ids[0],
            broker: crate::cluster::BrokerMeta {
                host: "localhost".into(),
                port: 9092,
                rack: None,
                listeners: Vec::new(),
                capacity: None,
            },
        };
        voter.propose(&register).await.unwrap();
        let before = Change::create_topic("before", 1, Default::default());
        voter.propose(&before).await.unwrap();
        let serving = serve(
            listener,
            voter.clone(),
            transport.clone(),
            voters.clone(),
            "c".into(),
            None,
        );
        io::spawn(serving).detach();
        let (learner_transport, mut received) =
            TcpTransport::start_learner(NodeId(4), &voters, "c", None);
        let learner = Quorum::open(
            learner_dir.path(),
            NodeId(4),
            &ids,
            io::Faults::default(),
            Rc::new(learner_transport),
        )
        .await
        .unwrap();
        let stepped = learner.clone();
        io::spawn(async move {
            while let Some(message) = received.next().await {
                let _ = stepped.deliver(message).await;
            }
        })
        .detach();
        for quorum in [voter.clone(), learner.clone()] {
            keep_ticking(quorum, Some(transport.clone()));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !learner.image().topics.contains_key("before") {
            assert!(
                std::time::Instant::now() < deadline,
                "the learner never caught up"
            );
            io::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(transport.connected_learners(), [NodeId(4)]);
        assert!(!learner.is_voter() && voter.is_voter());
        assert_eq!(learner.leader(), Some(NodeId(1)));
        let from_learner = Change::create_topic("from-learner", 2, Default::default());
        let image = learner.propose(&from_learner).await.unwrap();
        assert_eq!(image.topics["from-learner"].partitions, 2);
        while !voter.image().topics.contains_key("from-learner") {
            io::sleep(Duration::from_millis(20)).await;
        }
        let after = Change::create_topic("after", 1, Default::default());
        voter.propose(&after).await.unwrap();
        while !learner.image().topics.contains_key("after") {
            assert!(
                std::time::Instant::now() < deadline,
                "the learner stopped following"
            );
            io::sleep(Duration::from_millis(20)).await;
        }
        assert!(!learner.is_leader());
    });
    // The voter's stored image names the learner.
    let (_, applied) = crate::cluster::FileStore::new(voter_dir.path())
        .load_applied()
        .unwrap();
    assert_eq!((applied.voters, applied.learners), (vec![1], vec![4]));
}

/// A CA and a keystore (key and certificate for 127.0.0.1) it signed, in `dir`: the broker keys
/// of a controller listener over SSL with mutual TLS.
fn tls_keys(dir: &std::path::Path, ca_name: &str) -> crate::config::Values {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "controller");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (keystore, truststore) = (dir.join("keystore.pem"), dir.join("ca.pem"));
    std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    std::fs::write(&truststore, ca.pem()).unwrap();
    let mut broker = crate::config::Values::new(&crate::config::BROKER_KEYS);
    for (key, value) in [
        ("ssl.keystore.location", keystore.display().to_string()),
        ("ssl.truststore.location", truststore.display().to_string()),
        ("ssl.client.auth", "required".to_string()),
    ] {
        broker.set(key, &value).unwrap();
    }
    broker
}

/// Two voters whose controller listeners are SSL agree over mutual TLS; a peer speaking
/// plaintext, or TLS with a certificate of another CA, is not heard.
#[test]
fn voters_over_mutual_tls_agree_and_hear_no_untrusted_peer() {
    use crate::security::Protocol;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let keys = tls_keys(dirs[2].path(), "cluster-ca");
    let tls = QuorumTls::of(&keys, "CONTROLLER", Protocol::Ssl)
        .unwrap()
        .expect("SSL");
    assert!(QuorumTls::of(&keys, "CONTROLLER", Protocol::Plaintext)
        .unwrap()
        .is_none());
    assert!(QuorumTls::of(&keys, "CONTROLLER", Protocol::SaslSsl).is_err());
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = tls_keys(stranger_dir.path(), "another-ca");
    let stranger = QuorumTls::of(&stranger, "CONTROLLER", Protocol::Ssl)
        .unwrap()
        .expect("SSL");
    io::block_on(async {
        let (voters, quorums) = start_voters(&dirs[..2], "c1", Some(&tls)).await;
        let ids: Vec<NodeId> = voters.iter().map(|v| v.id).collect();
        let leader = await_leader(&quorums).await;
        let follower = 1 - leader;
        while quorums[follower].leader().is_none() {
            io::sleep(Duration::from_millis(20)).await;
        }
        let register = registration(ids[follower]);
        let image = quorums[follower].propose(&register).await.unwrap();
        assert!(
            image.brokers.contains_key(&ids[follower]),
            "committed over TLS"
        );
        let target: std::net::SocketAddr = format!("127.0.0.1:{}", voters[follower].port)
            .parse()
            .unwrap();
        // Plaintext: the TLS handshake fails and the connection is closed.
        let (mut read, mut write) = io::net::connect(target, Duration::from_secs(1))
            .await
            .unwrap();
        write
            .write_all(&super::hello("c1", super::Hello::Voter(None)))
            .await
            .unwrap();
        write.flush().await.unwrap();
        let mut byte = [0u8; 1];
        let closed = io::net::timeout(Duration::from_secs(5), async {
            // An alert may come first; then the end.
            loop {
                match read.read_some(&mut byte).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert_eq!(closed, Some(true), "a plaintext peer is closed");
        // TLS with a certificate the voter does not trust: refused in the handshake.
        let halves = io::net::connect(target, Duration::from_secs(1))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let refused = io::net::tls::connect(
            halves,
            stranger.client.clone(),
            name,
            Duration::from_secs(5),
        )
        .await;
        assert!(refused.is_err(), "a stranger's TLS handshake fails");
    });
}
