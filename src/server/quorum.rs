//! The metadata quorum as `serve` runs it, on the controller shard. A node alone (no
//! `controller.quorum.voters`) is a quorum of one, opened and brought up to date before the
//! shards start (`bootstrap::load_image`). A node of a cluster opens its voter here: it listens
//! for the other controllers on the listener named in `controller.listener.names`, ticks raft's
//! clock, hands every image the quorum applies to all shards of the node, keeps the active
//! controller's id where Metadata reads it, and registers the broker (then, once every voter
//! has, creates `__consumer_offsets`) through the quorum, retrying until a leader commits it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use raft::prelude::Message;

use super::Shard;
use crate::cluster::{
    directory_id, parse_voters, serve_voters, BrokerMeta, Change, ChangeError, NoPeers, Quorum,
    TcpTransport, Transport, Voter,
};
use crate::config::{parse_listener, Values};
use crate::io;
use crate::model::NodeId;
use uuid::Uuid;

/// Raft's clock: elections after 10 to 20 ticks without a leader (1 to 2 s, Kafka's
/// `controller.quorum.election.timeout.ms`), heartbeats every 2.
const TICK: Duration = Duration::from_millis(100);
/// Between two tries of a start-up change that found no leader.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// A node's part in a cluster's quorum, from its configs.
#[derive(Clone, Debug)]
pub struct Setup {
    pub voters: Vec<Voter>,
    /// Where the other controllers and the learners connect: `None` on a broker that does not
    /// vote (`process.roles=broker`), which connects to the voters instead.
    pub listen: Option<SocketAddr>,
    /// The cluster id (`meta.properties`): controllers of another cluster are refused.
    pub cluster_id: String,
    /// Whether this node is a broker (registers, holds partitions, serves clients); a node with
    /// `process.roles=controller` only votes.
    pub broker: bool,
    /// TLS on the controller listener, when its protocol is SSL.
    pub tls: Option<crate::security::peer::QuorumTls>,
}

/// The listeners `listeners` names for the other controllers.
pub fn is_controller_listener(broker: &Values, name: &str) -> bool {
    broker
        .get("controller.listener.names")
        .split(',')
        .any(|n| n.trim() == name)
}

/// `process.roles`: whether this node is a broker, and whether a controller (empty: both).
fn roles(broker: &Values) -> Result<(bool, bool), String> {
    let text = broker.get("process.roles");
    if text.trim().is_empty() {
        return Ok((true, true));
    }
    let (mut is_broker, mut is_controller) = (false, false);
    for role in text.split(',').map(str::trim) {
        match role {
            "broker" => is_broker = true,
            "controller" => is_controller = true,
            _ => {
                return Err(format!(
                    "process.roles={text}: `{role}` is not a role (broker, controller)"
                ))
            }
        }
    }
    Ok((is_broker, is_controller))
}

/// The quorum this node takes part in: `None` for a node alone. Refuses what it cannot serve.
pub fn setup(broker: &Values) -> Result<Option<Setup>, String> {
    let voters = parse_voters(broker.get("controller.quorum.voters"))?;
    let (is_broker, is_controller) = roles(broker)?;
    if voters.is_empty() {
        if !(is_broker && is_controller) {
            return Err(format!(
                "process.roles={}: a node that is not both broker and controller needs \
                 controller.quorum.voters",
                broker.get("process.roles")
            ));
        }
        return Ok(None);
    }
    let me = broker.i32("node.id");
    let listeners: Vec<(&str, &str, u16)> = broker
        .get("listeners")
        .split(',')
        .filter_map(parse_listener)
        .collect();
    let controller_listener = listeners
        .iter()
        .find(|(name, _, _)| is_controller_listener(broker, name));
    let voter = voters.iter().find(|v| v.id.0 == me);
    if !is_controller {
        // Kafka's rules for a broker that does not vote.
        if voter.is_some() {
            return Err(format!(
                "node.id={me} is one of controller.quorum.voters but process.roles=broker: a \
                 voter needs the controller role"
            ));
        }
        if controller_listener.is_some() {
            return Err(format!(
                "process.roles=broker: `listeners` names a controller listener ({}); a broker \
                 that does not vote connects to the voters instead",
                broker.get("controller.listener.names")
            ));
        }
        return Ok(Some(Setup {
            voters,
            listen: None,
            cluster_id: String::new(),
            broker: true,
            tls: quorum_tls(broker)?,
        }));
    }
    let Some(mine) = voter else {
        return Err(format!(
            "node.id={me} is not one of controller.quorum.voters ({})",
            broker.get("controller.quorum.voters")
        ));
    };
    if !is_broker && listeners.len() != usize::from(controller_listener.is_some()) {
        return Err(format!(
            "process.roles=controller: `listeners` may name only the controller listener ({})",
            broker.get("controller.listener.names")
        ));
    }
    let &(_, host, port) = controller_listener.ok_or_else(|| {
        format!(
            "controller.quorum.voters is set but `listeners` has no {} listener for the other \
             controllers",
            broker.get("controller.listener.names")
        )
    })?;
    // Another node's entry: two nodes with one node.id would each take the other's messages as
    // their own, and raft trusts its peers.
    if port != 0 && mine.port != port {
        return Err(format!(
            "controller.quorum.voters names node {me} at {}:{} but its controller listener is \
             port {port}: is node.id right?",
            mine.host, mine.port
        ));
    }
    let listen = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` has no address"))?;
    Ok(Some(Setup {
        voters,
        listen: Some(listen),
        cluster_id: String::new(),
        broker: is_broker,
        tls: quorum_tls(broker)?,
    }))
}

/// TLS on the controller listener (the first of `controller.listener.names`), by its protocol.
fn quorum_tls(broker: &Values) -> Result<Option<crate::security::peer::QuorumTls>, String> {
    let name = broker
        .get("controller.listener.names")
        .split(',')
        .map(str::trim)
        .next()
        .unwrap_or_default()
        .to_string();
    let map = crate::security::protocol_map(broker)?;
    let protocol = map
        .get(&name)
        .copied()
        .unwrap_or(crate::security::Protocol::Plaintext);
    crate::security::peer::QuorumTls::of(broker, &name, protocol)
}

/// What a node of a cluster serves with: its bound controller listener (a voter's), its
/// transport, and what the voters send a learner.
pub struct Serving {
    /// A voter's controller listener and metadata directory id.
    listener: Option<(io::net::Listener, uuid::Uuid)>,
    transport: Rc<TcpTransport>,
    received: Option<UnboundedReceiver<Message>>,
    voters: Vec<Voter>,
    cluster_id: String,
    broker: bool,
    /// The controller listener's TLS (SSL), loaded at start.
    tls: Option<crate::security::tls::Tls>,
}

/// Opens this node's voter or learner (a quorum of one without `setup`) and, for a voter of a
/// cluster, binds its controller listener.
pub async fn open(
    data_dir: &std::path::Path,
    node: NodeId,
    setup: Option<&Setup>,
) -> Result<(Rc<Quorum>, Option<Serving>), String> {
    let (voters, transport, serving): (Vec<NodeId>, Rc<dyn Transport>, _) = match setup {
        None => (vec![node], Rc::new(NoPeers), None),
        Some(setup) => {
            let ids = setup.voters.iter().map(|v| v.id).collect();
            let (listener, transport, received) = match setup.listen {
                Some(listen) => {
                    let listener = io::net::Listener::bind(listen)
                        .map_err(|e| format!("binding the controller listener {listen}: {e}"))?;
                    let dir = directory_id(data_dir)
                        .await
                        .map_err(|e| format!("the metadata directory id: {e}"))?;
                    let client = setup.tls.as_ref().map(|tls| tls.client.clone());
                    let transport =
                        TcpTransport::start(node, &setup.voters, &setup.cluster_id, dir, client);
                    (Some((listener, dir)), transport, None)
                }
                None => {
                    let client = setup.tls.as_ref().map(|tls| tls.client.clone());
                    let (transport, received) =
                        TcpTransport::start_learner(node, &setup.voters, &setup.cluster_id, client);
                    (None, transport, Some(received))
                }
            };
            let transport = Rc::new(transport);
            let serving = Serving {
                listener,
                transport: transport.clone(),
                received,
                voters: setup.voters.clone(),
                cluster_id: setup.cluster_id.clone(),
                broker: setup.broker,
                tls: setup.tls.as_ref().map(|tls| tls.server.clone()),
            };
            (ids, transport as Rc<dyn Transport>, Some(serving))
        }
    };
    let quorum = Quorum::open(data_dir, node, &voters, io::Faults::default(), transport)
        .await
        .map_err(|e| format!("the metadata quorum: {e}"))?;
    Ok((quorum, serving))
}

/// Starts the node's quorum tasks on the controller shard (a cluster's only: a quorum of one
/// needs none).
pub fn run(shard: &Rc<Shard>, quorum: Rc<Quorum>, serving: Option<Serving>) {
    let Some(serving) = serving else {
        return;
    };
    let ids: Vec<NodeId> = serving.voters.iter().map(|v| v.id).collect();
    if let Some((listener, directory)) = serving.listener {
        let me = NodeId(shard.node_id);
        io::spawn(register_directory(
            Rc::downgrade(shard),
            quorum.clone(),
            me,
            directory,
        ))
        .detach();
        let serve = serve_voters(
            listener,
            quorum.clone(),
            serving.transport.clone(),
            serving.voters,
            serving.cluster_id,
            serving.tls,
        );
        io::spawn(serve).detach();
    }
    if let Some(mut received) = serving.received {
        let quorum = quorum.clone();
        io::spawn(async move {
            while let Some(message) = received.next().await {
                if let Err(e) = quorum.deliver(message).await {
                    tracing::error!(error = %e, "the metadata quorum stopped");
                }
            }
        })
        .detach();
    }
    let weak = Rc::downgrade(shard);
    {
        let (quorum, weak, transport) = (quorum.clone(), weak.clone(), serving.transport);
        io::spawn(async move {
            let liveness = Rc::new(Liveness::default());
            loop {
                io::sleep(TICK).await;
                let Some(shard) = weak.upgrade() else { return };
                if shard.is_stopping() {
                    return;
                }
                quorum.tick().await;
                if let Err(e) = quorum.drive().await {
                    tracing::error!(error = %e, "the metadata quorum stopped");
                }
                if let Err(e) = quorum
                    .reconcile_learners(&transport.connected_learners())
                    .await
                {
                    tracing::error!(error = %e, "the metadata quorum stopped");
                }
                let leader = quorum.leader().map_or(-1, |n| n.0);
                shard.active_controller.store(leader, Ordering::Relaxed);
                liveness.check(&shard, &quorum);
            }
        })
        .detach();
    }
    {
        let mut images = quorum.watch();
        let weak = weak.clone();
        io::spawn(async move {
            while let Some(image) = images.next().await {
                let Some(shard) = weak.upgrade() else { return };
                shard.publish(image).await;
            }
        })
        .detach();
    }
    if serving.broker {
        io::spawn(join(weak, quorum, ids)).detach();
    }
}

/// A clean shutdown of the active controller hands its leadership over first, and waits (a
/// second at most) until another voter leads, so that the cluster's changes hardly pause.
/// Whether this node's partition leaderships moved (a controlled shutdown took place).
pub async fn hand_over(shard: &Shard) -> bool {
    let Some(controller) = &shard.controller else {
        return false;
    };
    let moved = controlled_shutdown(shard).await;
    let quorum = controller.quorum();
    let Some(to) = quorum.transfer_leadership().await else {
        return moved;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while quorum.is_leader() && std::time::Instant::now() < deadline {
        io::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(
        to = to.0,
        handed = !quorum.is_leader(),
        "handed the controller's leadership over"
    );
    moved
}

/// Kafka's controlled shutdown: before a node of a cluster stops, the controller fences it and
/// hands the partitions it leads to their ISR, so clients move at once rather than after the
/// session timeout. Bounded: a cluster without a quorum lets it stop anyway.
async fn controlled_shutdown(shard: &Shard) -> bool {
    let me = NodeId(shard.node_id);
    let image = shard.image();
    // (A controller that is no broker has nothing to hand over.)
    if image.brokers.len() < 2 || image.fenced.contains(&me) || !image.brokers.contains_key(&me) {
        return false;
    }
    let started = std::time::Instant::now();
    let change = shard.change(Change::ShutdownBroker { id: me }, false);
    match io::net::timeout(Duration::from_secs(5), change).await {
        Some(Ok(_)) => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown: this node's leaderships moved to the other replicas in sync"
            );
            true
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "controlled shutdown refused; stopping anyway");
            false
        }
        None => {
            tracing::warn!("controlled shutdown took too long; stopping anyway");
            false
        }
    }
}

/// How long a voter's port must have refused connections (and nothing heard from it since)
/// before the active controller takes it for dead.
const REFUSED_FOR: Duration = Duration::from_millis(300);

/// The active controller's watch over the brokers: one not heard from within
/// `broker.session.timeout.ms` is fenced (not listed, no new replicas, its partitions without a
/// leader); one heard again is unfenced. Every broker is a voter here, so raft's own messages
/// (heartbeats every 200 ms) say who is alive.
#[derive(Default)]
struct Liveness {
    /// Since when this node leads (silence is counted from then at the earliest).
    leading_since: std::cell::Cell<Option<std::time::Instant>>,
    /// A fencing change in flight.
    busy: std::cell::Cell<bool>,
    /// When leaders were last looked at for a preferred-leader election.
    rebalanced: std::cell::Cell<Option<std::time::Instant>>,
}

impl Liveness {
    fn check(self: &Rc<Self>, shard: &Rc<Shard>, quorum: &Rc<Quorum>) {
        if !quorum.is_leader() {
            self.leading_since.set(None);
            return;
        }
        let now = std::time::Instant::now();
        let since = *self.leading_since.get().get_or_insert(now);
        self.leading_since.set(Some(since));
        if self.busy.get() {
            return;
        }
        let session = Duration::from_millis(shard.broker().i64("broker.session.timeout.ms") as u64);
        let image = quorum.image();
        let me = NodeId(shard.node_id);
        let change = image
            .brokers
            .keys()
            .filter(|&&id| id != me)
            .find_map(|&id| {
                let heard = quorum.last_heard(id).map_or(since, |at| at.max(since));
                // A process that died leaves its port refusing connections: fenced at once,
                // without waiting out the session (a pause or a cut network still does).
                // (Against when it was last heard, not when this node began to lead: a controller
                // elected because the last one died found its port refused while campaigning.)
                let dead = quorum.refused_since(id).is_some_and(|refused| {
                    quorum.last_heard(id).is_none_or(|at| refused > at)
                        && now.saturating_duration_since(refused) >= REFUSED_FOR
                });
                let silent = dead || now.saturating_duration_since(heard) > session;
                match (silent, image.fenced.contains(&id)) {
                    (true, false) => Some(Change::FenceBroker {
                        id,
                        unclean: shard.broker().bool("unclean.leader.election.enable"),
                    }),
                    (false, true)
                        if !image.shut_down.contains(&id)
                            && quorum.last_heard(id).is_some_and(|at| at > since) =>
                    {
                        Some(Change::UnfenceBroker { id })
                    }
                    _ => None,
                }
            });
        let Some(change) = change.or_else(|| self.rebalance(shard, &image, now)) else {
            return;
        };
        self.busy.set(true);
        let (liveness, quorum) = (self.clone(), quorum.clone());
        io::spawn(async move {
            match quorum.propose(&change).await {
                Ok(_) => tracing::warn!(?change, "the active controller changed the metadata"),
                Err(e) => tracing::debug!(?change, error = %e, "a liveness change was not made"),
            }
            liveness.busy.set(false);
        })
        .detach();
    }
}

impl Liveness {
    /// Every `leader.imbalance.check.interval.seconds` with `auto.leader.rebalance.enable`: a
    /// preferred-leader election if some partition's preferred replica is live, in sync and not
    /// leading (Kafka waits for 10% of a broker's partitions, `leader.imbalance.per.broker.
    /// percentage`; here one is enough).
    fn rebalance(
        &self,
        shard: &Shard,
        image: &crate::cluster::Image,
        now: std::time::Instant,
    ) -> Option<Change> {
        let broker = shard.broker();
        if !broker.bool("auto.leader.rebalance.enable") {
            return None;
        }
        let every =
            Duration::from_secs(broker.i64("leader.imbalance.check.interval.seconds") as u64);
        let last = *self.rebalanced.get().get_or_insert(now);
        self.rebalanced.set(Some(last));
        if now.saturating_duration_since(last) < every {
            return None;
        }
        self.rebalanced.set(Some(now));
        let moves = crate::cluster::preferred_elections(image);
        (moves > 0).then(|| {
            tracing::info!(partitions = moves, "electing preferred leaders");
            Change::ElectPreferredLeaders
        })
    }
}

/// Records this voter's metadata directory in the image (`Change::RegisterVoter`) unless it is
/// there: at the first start, and after its data was lost (until then its votes do not count).
/// Retried until a leader commits it.
async fn register_directory(weak: Weak<Shard>, quorum: Rc<Quorum>, me: NodeId, directory: Uuid) {
    let mut logged = false;
    loop {
        if weak.upgrade().is_none_or(|shard| shard.is_stopping()) {
            return;
        }
        let known = quorum.image().voter_dirs.get(&me).copied();
        if known == Some(directory) {
            return;
        }
        if known.is_some() && !logged {
            tracing::warn!(
                node = me.0,
                %directory,
                "this voter's metadata directory is new (its data was lost?): its votes count \
                 once it has caught up with the quorum's leader"
            );
            logged = true;
        }
        let change = Change::RegisterVoter { id: me, directory };
        match quorum.propose(&change).await {
            Ok(_) => tracing::info!(node = me.0, %directory, "metadata directory registered"),
            Err(_) => io::sleep(JOIN_RETRY).await,
        }
    }
}

/// Registers this broker (its endpoints, its rack) and, once as many brokers as there are
/// voters have registered (or as many as `offsets.topic.replication.factor`, if fewer), creates
/// `__consumer_offsets` so that its partitions spread over them; each change retried until a
/// leader commits it.
async fn join(weak: Weak<Shard>, quorum: Rc<Quorum>, voters: Vec<NodeId>) {
    use crate::group::OFFSETS_TOPIC;
    let me = {
        let Some(shard) = weak.upgrade() else { return };
        let broker = shard.broker();
        let meta = BrokerMeta {
            host: shard.advertised_host.clone(),
            port: shard.advertised_port,
            rack: Some(broker.get("broker.rack").to_string()).filter(|r| !r.is_empty()),
            listeners: shard.endpoints.clone(),
            capacity: Some(shard.capacity()),
        };
        (NodeId(shard.node_id), meta)
    };
    let mut logged = false;
    loop {
        let Some(shard) = weak.upgrade() else { return };
        if shard.is_stopping() {
            return;
        }
        let image = quorum.image();
        let caught_up = shard.caught_up.load(Ordering::Acquire);
        let registered = image.brokers.get(&me.0) == Some(&me.1) && !image.fenced.contains(&me.0);
        // Registered again at every start, whatever the stored image says: once that is
        // committed, the image holds every change before it and the node may lead.
        let change = if !registered || !caught_up {
            Change::RegisterBroker {
                id: me.0,
                broker: me.1.clone(),
            }
        } else if image.topics.contains_key(OFFSETS_TOPIC) {
            tracing::info!(node = me.0 .0, "joined the cluster");
            return;
        } else if image.live_brokers().count() >= offsets_factor(&shard, voters.len()) {
            let partitions = shard.broker().i32("offsets.topic.num.partitions");
            let factor = offsets_factor(&shard, voters.len()) as u16;
            Change::create_internal_topic(OFFSETS_TOPIC, partitions, factor)
        } else {
            drop(shard);
            io::sleep(JOIN_RETRY).await;
            continue;
        };
        drop(shard);
        let registering = matches!(change, Change::RegisterBroker { .. });
        match quorum.propose(&change).await {
            Ok(image) if registering && !caught_up => {
                let Some(shard) = weak.upgrade() else { return };
                // Every shard holds that image before any acts as leader.
                shard.publish(image).await;
                shard.caught_up.store(true, Ordering::Release);
                tracing::info!(
                    node = me.0 .0,
                    "registered: serving the partitions this node leads"
                );
            }
            Ok(_) | Err(ChangeError::TopicExists(_)) => {}
            Err(e) => {
                if !logged {
                    tracing::info!(error = %e, "waiting for the metadata quorum to register this broker");
                    logged = true;
                }
                io::sleep(JOIN_RETRY).await;
            }
        }
    }
}

/// The replicas of `__consumer_offsets` in a cluster of `voters` voters: the config, at most
/// one per voter (a cluster of three combined nodes waits for all three; one that starts with
/// fewer nodes than the config asks does not wait for ever).
fn offsets_factor(shard: &Shard, voters: usize) -> usize {
    let configured = shard
        .broker()
        .i64("offsets.topic.replication.factor")
        .max(1) as usize;
    configured.min(voters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BROKER_KEYS;

    fn values(pairs: &[(&str, &str)]) -> Values {
        let mut values = Values::new(&BROKER_KEYS);
        for (k, v) in pairs {
            values.set(k, v).unwrap();
        }
        values
    }

    #[test]
    fn a_cluster_node_needs_its_id_among_the_voters_and_a_controller_listener() {
        assert!(setup(&values(&[])).unwrap().is_none(), "a node alone");
        let voters = "1@127.0.0.1:9093,2@127.0.0.1:19093";
        let listeners = "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093";
        let ok = setup(&values(&[
            ("node.id", "1"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(ok.voters.len(), 2);
        assert_eq!(ok.listen.unwrap().port(), 9093);
        assert!(ok.broker);
        let not_a_voter = setup(&values(&[
            ("node.id", "3"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
        ]));
        assert!(not_a_voter.unwrap_err().contains("node.id=3"));
        let no_listener = setup(&values(&[
            ("node.id", "1"),
            ("controller.quorum.voters", voters),
        ]));
        assert!(no_listener.unwrap_err().contains("CONTROLLER listener"));
        // A voter must have the controller role; a broker that does not vote has no controller
        // listener and no controller.quorum.voters entry, and connects to the voters.
        let voter_as_broker = setup(&values(&[
            ("node.id", "1"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
            ("process.roles", "broker"),
        ]));
        assert!(voter_as_broker.unwrap_err().contains("controller role"));
        let learner = setup(&values(&[
            ("node.id", "4"),
            ("controller.quorum.voters", voters),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("process.roles", "broker"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((learner.listen, learner.broker), (None, true));
        let learner_listening = setup(&values(&[
            ("node.id", "4"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
            ("process.roles", "broker"),
        ]));
        assert!(learner_listening
            .unwrap_err()
            .contains("controller listener"));
        // A controller only: its listener and nothing for clients.
        let controller = setup(&values(&[
            ("node.id", "2"),
            ("controller.quorum.voters", voters),
            ("listeners", "CONTROLLER://127.0.0.1:19093"),
            ("process.roles", "controller"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(controller.listen.unwrap().port(), 19093);
        assert!(!controller.broker);
        let controller_with_clients = setup(&values(&[
            ("node.id", "1"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
            ("process.roles", "controller"),
        ]));
        assert!(controller_with_clients
            .unwrap_err()
            .contains("only the controller"));
        for (roles, voters) in [("broker", ""), ("controller", ""), ("both", voters)] {
            let refused = setup(&values(&[
                ("node.id", "1"),
                ("controller.quorum.voters", voters),
                ("listeners", listeners),
                ("process.roles", roles),
            ]));
            assert!(refused.unwrap_err().contains("process.roles"), "{roles}");
        }
        // Node 2's id on node 1's listener: two nodes would share an identity.
        let someone_else = setup(&values(&[
            ("node.id", "2"),
            ("controller.quorum.voters", voters),
            ("listeners", listeners),
        ]));
        assert!(someone_else.unwrap_err().contains("is node.id right?"));
    }
}
