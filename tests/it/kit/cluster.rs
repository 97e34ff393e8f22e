//! A cluster of real `sluice serve` processes, for the tests of replication and faults: node
//! `i` runs with `node.id=i` (1..=N), its own data dir and a port it keeps across restarts, so
//! that a node killed and restarted comes back where clients and peers expect it. Faults are
//! real signals: `kill9`, `pause` (SIGSTOP), `resume` (SIGCONT).
//!
//! One node for now: nodes do not form a quorum until the metadata quorum exists (the cluster
//! issue), so `start` refuses more. The invariant every fault schedule ends with is
//! [`check_acknowledged`].

use super::broker::Broker;
use super::client::consume;
use rdkafka::Offset;

pub struct Cluster {
    nodes: Vec<Broker>,
}

/// A record acknowledged with acks=all: (partition, offset, value).
pub type Acked = (i32, i64, Vec<u8>);

impl Cluster {
    /// Starts `nodes` nodes with `--set` overrides (`key=value`) on each.
    pub fn start(nodes: usize, sets: &[&str]) -> Cluster {
        assert_eq!(
            nodes, 1,
            "nodes join one cluster once the metadata quorum exists; one node until then"
        );
        let nodes = (1..=nodes)
            .map(|id| {
                let node_id = format!("node.id={id}");
                let sets: Vec<&str> = std::iter::once(node_id.as_str())
                    .chain(sets.iter().copied())
                    .collect();
                Broker::start_on_fixed_port(&sets)
            })
            .collect();
        Cluster { nodes }
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
