//! A cluster of real `sluice serve` processes, for the tests of the metadata quorum, replication
//! and faults: node `i` runs with `node.id=i` (1..=N), its own data dir, a client port and a
//! controller port it keeps across restarts (so that a node killed and restarted comes back where
//! clients and peers expect it), and every node names all N as `controller.quorum.voters`
//! (with one node: none, a node alone). Faults are real signals: `kill9`, `pause` (SIGSTOP),
//! `resume` (SIGCONT). The invariant every fault schedule ends with is [`check_acknowledged`].

use std::time::{Duration, Instant};

use super::broker::Broker;
use super::client::consume;
use super::netns::Net;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse};
use rdkafka::Offset;

pub struct Cluster {
    nodes: Vec<Broker>,
    /// The nodes' network namespaces, when they have their own (dropped after the nodes).
    net: Option<Net>,
    /// Held while the cluster runs (dropped after its nodes stop): clusters run one at a time, so
    /// that three nodes' heartbeats are not starved by another test's three on a 2-core machine
    /// (a broker missing its session timeout is fenced, which such a test does not expect).
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The turn of a test that runs a cluster of its own (not through [`Cluster`]), held while it runs.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding it poisons it; the next still runs.
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A record acknowledged with acks=all: (partition, offset, value).
pub type Acked = (i32, i64, Vec<u8>);

/// What one node's Metadata says of the cluster.
#[derive(Debug)]
pub struct View {
    pub controller: i32,
    pub brokers: Vec<i32>,
    /// Each topic with its partitions' leaders.
    pub topics: Vec<(String, Vec<i32>)>,
    /// Each topic with its partitions' in-sync replicas.
    pub isr: Vec<(String, Vec<Vec<i32>>)>,
    /// Each topic with its partitions' replicas, in order.
    pub replicas: Vec<(String, Vec<Vec<i32>>)>,
}

impl View {
    /// The leader and ISR of `topic`'s `partition`, if listed.
    pub fn partition(&self, topic: &str, partition: usize) -> Option<(i32, Vec<i32>)> {
        let leader = self
            .topics
            .iter()
            .find(|(n, _)| n == topic)?
            .1
            .get(partition)?;
        let isr = self
            .isr
            .iter()
            .find(|(n, _)| n == topic)?
            .1
            .get(partition)?;
        let mut isr = isr.clone();
        isr.sort();
        Some((*leader, isr))
    }
}

fn free_port() -> u16 {
    super::broker::free_port()
}

impl Cluster {
    /// Starts `nodes` nodes with `--set` overrides (`key=value`) on each, every one a broker
    /// and a controller (one node alone: no quorum configured).
    pub fn start(nodes: usize, sets: &[&str]) -> Cluster {
        if nodes > 1 {
            return Cluster::start_with_roles(&vec!["broker,controller"; nodes], sets);
        }
        let serial = one_cluster_at_a_time();
        let sets: Vec<&str> = ["node.id=1"]
            .into_iter()
            .chain(sets.iter().copied())
            .collect();
        Cluster {
            nodes: vec![Broker::start_on(free_port(), &sets)],
            net: None,
            _serial: serial,
        }
    }

    /// Starts one node per entry of `roles`, each entry its `process.roles` (`broker,controller`,
    /// `controller` or `broker`): the voters are the nodes with the controller role, a
    /// controller only has no client listener, a broker only no controller listener. In `sets`,
    /// `{node}`, `{client}` and `{controller}` stand for each node's id and ports.
    pub fn start_with_roles(roles: &[&str], sets: &[&str]) -> Cluster {
        let serial = one_cluster_at_a_time();
        let ports: Vec<(u16, u16)> = roles.iter().map(|_| (free_port(), free_port())).collect();
        let voters: Vec<String> = ports
            .iter()
            .zip(roles)
            .enumerate()
            .filter(|(_, (_, role))| role.contains("controller"))
            .map(|(i, ((_, controller), _))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect();
        let voters = format!("controller.quorum.voters={}", voters.join(","));
        let nodes = ports
            .iter()
            .zip(roles)
            .enumerate()
            .map(|(i, (&(client, controller), role))| {
                let listeners = match *role {
                    "controller" => format!("CONTROLLER://127.0.0.1:{controller}"),
                    "broker" => format!("PLAINTEXT://127.0.0.1:{client}"),
                    _ => format!(
                        "PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
                    ),
                };
                let own = [
                    format!("node.id={}", i + 1),
                    format!("process.roles={role}"),
                    voters.clone(),
                    format!("listeners={listeners}"),
                ];
                let theirs = sets.iter().map(|set| {
                    set.replace("{node}", &(i + 1).to_string())
                        .replace("{client}", &client.to_string())
                        .replace("{controller}", &controller.to_string())
                });
                let sets: Vec<String> = own.into_iter().chain(theirs).collect();
                let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
                Broker::start_on(client, &sets)
            })
            .collect();
        Cluster {
            nodes,
            net: None,
            _serial: serial,
        }
    }

    /// Starts `nodes` nodes each in a network namespace of its own (see [`Net`]), so that
    /// [`Cluster::cut`] can cut one off; or why that cannot be done here.
    pub fn start_apart(nodes: usize, sets: &[&str]) -> Result<Cluster, String> {
        let serial = one_cluster_at_a_time();
        let net = Net::create(nodes)?;
        let voters: Vec<String> = (1..=nodes)
            .map(|i| format!("{i}@{}:9093", net.ip(i)))
            .collect();
        let voters = format!("controller.quorum.voters={}", voters.join(","));
        let nodes = (1..=nodes)
            .map(|i| {
                let ip = net.ip(i);
                let own = [
                    format!("node.id={i}"),
                    voters.clone(),
                    format!("listeners=PLAINTEXT://{ip}:9092,CONTROLLER://{ip}:9093"),
                ];
                let sets: Vec<&str> = own
                    .iter()
                    .map(String::as_str)
                    .chain(sets.iter().copied())
                    .collect();
                Broker::start_wrapped(net.wrapper(i), &sets)
            })
            .collect();
        Ok(Cluster {
            nodes,
            net: Some(net),
            _serial: serial,
        })
    }

    /// Waits until every node names one controller and sees them all (see
    /// [`Cluster::await_controller`]); the cluster and its bootstrap list.
    pub fn formed(mut self) -> (Cluster, String) {
        let all: Vec<usize> = (1..=self.nodes.len()).collect();
        self.await_controller(&all, all.len());
        let bootstrap = self.bootstrap();
        (self, bootstrap)
    }

    /// Whether the nodes have network namespaces of their own (and so can be cut off).
    pub fn can_cut(&self) -> bool {
        self.net.is_some()
    }

    /// Cuts node `id` off from the other nodes and from the test's clients: its connections
    /// stall, as when a cable is pulled.
    pub fn cut(&mut self, id: usize) {
        self.net.as_ref().expect("nodes apart").cut(id);
    }

    /// Connects node `id` again.
    pub fn heal(&mut self, id: usize) {
        self.net.as_ref().expect("nodes apart").heal(id);
    }

    /// What node `id`'s Metadata (v1+, all topics) says now.
    pub fn view(&mut self, id: usize) -> View {
        let mut s = super::raw::connect(self.node(id));
        let mut request = MetadataRequest::default();
        request.topics = None;
        let response: MetadataResponse = super::raw::call(&mut s, ApiKey::Metadata, 9, 1, &request);
        let name = |t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic| {
            t.name.as_ref().map_or(String::new(), |n| n.0.to_string())
        };
        let lists = |list: fn(&MetadataResponsePartition) -> &Vec<BrokerId>| {
            response
                .topics
                .iter()
                .map(|t| {
                    let each = t
                        .partitions
                        .iter()
                        .map(|p| list(p).iter().map(|n| n.0).collect())
                        .collect();
                    (name(t), each)
                })
                .collect()
        };
        View {
            isr: lists(|p| &p.isr_nodes),
            replicas: lists(|p| &p.replica_nodes),
            controller: response.controller_id.0,
            brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
            topics: response
                .topics
                .iter()
                .map(|t| {
                    (
                        name(t),
                        t.partitions.iter().map(|p| p.leader_id.0).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Waits until every node of `among` names the same controller, one of `among`, and sees
    /// `brokers` brokers and `__consumer_offsets`; returns the controller's id.
    pub fn await_controller(&mut self, among: &[usize], brokers: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let views: Vec<View> = among.iter().map(|&id| self.view(id)).collect();
            let controller = views[0].controller;
            let agreed = views.iter().all(|v| {
                v.controller == controller
                    && v.brokers.len() == brokers
                    && v.topics
                        .iter()
                        .any(|(name, _)| name == "__consumer_offsets")
            });
            if agreed && among.contains(&(controller as usize)) {
                return controller as usize;
            }
            assert!(Instant::now() < deadline, "no agreed controller: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's address, comma-separated, as clients are given them.
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        addrs.join(",")
    }

    /// Node `id` (1..=N).
    pub fn node(&mut self, id: usize) -> &mut Broker {
        &mut self.nodes[id - 1]
    }

    pub fn kill9(&mut self, id: usize) {
        self.node(id).kill9();
    }

    /// Stops node `id` where it stands (SIGSTOP): its sockets stay open and nothing answers.
    pub fn pause(&mut self, id: usize) {
        signal(self.node(id).pid(), libc::SIGSTOP);
    }

    pub fn resume(&mut self, id: usize) {
        signal(self.node(id).pid(), libc::SIGCONT);
    }

    /// Waits until every node of `among` lists `topic`'s `partition` with a leader and the ISR
    /// `isr` (sorted); returns the leader.
    pub fn await_isr(
        &mut self,
        among: &[usize],
        topic: &str,
        partition: usize,
        isr: &[i32],
    ) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let views: Vec<Option<(i32, Vec<i32>)>> = among
                .iter()
                .map(|&id| self.view(id).partition(topic, partition))
                .collect();
            let first = views[0].clone();
            if let Some((leader, got)) = first.filter(|(l, got)| *l >= 0 && got == isr) {
                if views
                    .iter()
                    .all(|v| v.as_ref().is_some_and(|(l, g)| *l == leader && g == &got))
                {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{topic}-{partition}: never ISR {isr:?}: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts node `id` again on its data dir and port (after `kill9` or a stop).
    pub fn restart(&mut self, id: usize) {
        self.node(id).restart();
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a child's pid and a signal number; no memory is involved.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "signal {signal} to {pid}");
}

/// The invariant after any fault: every record acknowledged with acks=all is read back from
/// `topic` at its offset, once, in the order acknowledged.
pub fn check_acknowledged(bootstrap: &str, topic: &str, acked: &[Acked]) {
    let partitions: std::collections::BTreeSet<i32> = acked.iter().map(|a| a.0).collect();
    for partition in partitions {
        let mine: Vec<&Acked> = acked.iter().filter(|a| a.0 == partition).collect();
        let offsets: Vec<i64> = mine.iter().map(|a| a.1).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: offsets acknowledged out of order or twice"
        );
        let last = *offsets.last().expect("a record");
        let got = consume(
            bootstrap,
            topic,
            partition,
            Offset::Beginning,
            last as usize + 1,
        );
        for (_, offset, value) in mine {
            let g = &got[*offset as usize];
            assert_eq!(g.offset, *offset, "partition {partition}");
            assert_eq!(
                g.sent.value.as_ref(),
                Some(value),
                "partition {partition} offset {offset}"
            );
        }
    }
}
