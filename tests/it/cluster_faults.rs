//! Faults that cut nodes apart (issue 20): each node in a network namespace of its own, the
//! leader's link cut while an idempotent acks=all producer writes through the majority side; and
//! a seeded schedule of every fault (kill -9, SIGSTOP, SIGTERM, a cut). Where namespaces cannot
//! be made (no root, no iproute2) the cut test says so and skips, and the schedule runs on
//! loopback without cuts.

use std::time::Duration;

use crate::cluster_replication::{
    create_replicated, idempotent_writer, outlive_a_stalled_leader, send, three_nodes, THREE_NODES,
};
use crate::kit::cluster::{check_acknowledged, Acked, Cluster};

/// Three formed nodes apart, or why not (printed).
fn three_nodes_apart() -> Option<(Cluster, String)> {
    match Cluster::start_apart(3, &THREE_NODES) {
        Ok(cluster) => Some(cluster.formed()),
        Err(why) => {
            eprintln!("skipped: nodes in network namespaces need root and iproute2 ({why})");
            None
        }
    }
}

/// The leader cut off: its connections stall (nothing is refused, unlike a dead process), the
/// two others fence it when its session runs out, one of them leads, the producer carries on
/// through them; the cut node's unacknowledged tail is cut when it returns, it catches up and
/// rejoins the ISR, and every acknowledged record is read back once, in order.
#[test]
fn a_leader_cut_off_the_network_loses_the_lead_and_rejoins_when_healed() {
    let Some((cluster, bootstrap)) = three_nodes_apart() else {
        return;
    };
    outlive_a_stalled_leader(cluster, &bootstrap, "cut", Cluster::cut, Cluster::heal);
}

/// A seeded schedule of faults (kill -9, SIGSTOP for a while, SIGTERM, a cut network link where
/// the nodes can be put apart; each followed by the node's return) on three nodes while an idempotent acks=all producer writes between them; at
/// most one node is down at a time, so a majority and an ISR of two remain. The invariant: every
/// acknowledged record is read back once, in order, at its offset, and the ISR heals.
/// `SLUICE_SEED` replays a schedule (the seed is printed); `SLUICE_FAULT_STEPS` (default 4) sets
/// its length.
#[test]
fn a_seeded_fault_schedule_loses_no_acknowledged_record() {
    let seed: u64 = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let steps: usize = std::env::var("SLUICE_FAULT_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    println!("fault schedule: SLUICE_SEED={seed} SLUICE_FAULT_STEPS={steps}");
    let mut state = seed | 1;
    let mut next = move |bound: u64| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    };

    let (mut cluster, bootstrap) = three_nodes_apart().unwrap_or_else(three_nodes);
    let kinds = if cluster.can_cut() { 4 } else { 3 };
    create_replicated(&bootstrap, "chaos", &[("min.insync.replicas", "2")]);
    cluster.await_isr(&[1, 2, 3], "chaos", 0, &[1, 2, 3]);
    let writer = idempotent_writer(&bootstrap);
    let mut acked: Vec<Acked> = Vec::new();
    for step in 0..steps {
        let (leader, _) = cluster
            .view(1 + next(3) as usize)
            .partition("chaos", 0)
            .unwrap_or((1, vec![]));
        // The leader half the time, else any node.
        let victim = if next(2) == 0 && leader > 0 {
            leader as usize
        } else {
            1 + next(3) as usize
        };
        let fault = next(kinds);
        println!("step {step}: fault {fault} on node {victim} (leader {leader})");
        match fault {
            0 => cluster.kill9(victim),
            1 => cluster.pause(victim),
            2 => cluster.node(victim).stop(),
            _ => cluster.cut(victim),
        }
        let (ok, _) = send(&writer, "chaos", &format!("s{step}"), 30);
        acked.extend(ok);
        std::thread::sleep(Duration::from_millis(500 + next(2500)));
        match fault {
            1 => cluster.resume(victim),
            3 => cluster.heal(victim),
            _ => cluster.restart(victim),
        }
        cluster.await_isr(&[1, 2, 3], "chaos", 0, &[1, 2, 3]);
        let (ok, errors) = send(&writer, "chaos", &format!("h{step}"), 30);
        assert!(errors.is_empty(), "seed {seed} step {step}: {errors:?}");
        acked.extend(ok);
    }
    acked.sort_by_key(|a| a.1);
    check_acknowledged(&bootstrap, "chaos", &acked);
}
