//! Faults that cut nodes apart (issue 20): each node in a network namespace of its own, the
//! leader's link cut while an idempotent acks=all producer writes through the majority side; and
//! a seeded schedule of every fault (kill -9, SIGSTOP, SIGTERM, a cut). Where namespaces cannot
//! be made (no root, no iproute2) the cut test says so and skips, and the schedule runs on
//! loopback without cuts.

use std::time::{Duration, Instant};

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

/// Node `id`'s stored image: each voter's metadata directory as it records them.
fn recorded_dirs(cluster: &mut Cluster, id: usize) -> std::collections::BTreeMap<String, String> {
    let path = cluster
        .node(id)
        .data_dir()
        .join("__cluster_metadata/topics.toml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let table: toml::Table = text.parse().unwrap_or_default();
    let dirs = table.get("voter_dirs").and_then(toml::Value::as_table);
    dirs.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Waits until node `id` records `voter`'s directory as `dir`.
fn await_recorded(cluster: &mut Cluster, id: usize, voter: &str, dir: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded_dirs(cluster, id).get(voter).map(String::as_str) != Some(dir) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            recorded_dirs(cluster, id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A voter whose data is lost (its data dir replaced by an empty one, same `node.id`) forgot
/// whom it voted for and which entries it acknowledged, so its votes do not count until it has
/// caught up (Kafka's KIP-853 directory ids): with another voter down, the survivor and the
/// wiped voter elect no controller (before, the wiped voter's vote made the survivor leader,
/// although the lost copy may have been the one that made an entry committed). Once the third
/// returns, the wiped voter catches up and registers its new directory; from then on it counts:
/// with the third down again the two elect a controller and make changes.
#[test]
fn a_voter_that_lost_its_data_has_no_vote_until_it_caught_up() {
    let (mut cluster, _) = three_nodes();
    let dir_of = |cluster: &mut Cluster, id: usize| {
        let path = cluster
            .node(id)
            .data_dir()
            .join("__cluster_metadata/raft/directory.id");
        std::fs::read_to_string(path)
            .expect("directory.id")
            .trim()
            .to_string()
    };
    // The controller (L) is killed, another voter (W) wiped; the third (S) survives.
    let l = cluster.view(1).controller as usize;
    let (w, s) = match l {
        1 => (2, 3),
        2 => (3, 1),
        _ => (1, 2),
    };
    let old = dir_of(&mut cluster, w);
    await_recorded(&mut cluster, s, &w.to_string(), &old);
    cluster.kill9(w);
    std::fs::remove_dir_all(cluster.node(w).data_dir()).expect("wipe a node");
    cluster.kill9(l);
    cluster.restart(w);
    // Well past two election timeouts (1-2 s each): S never leads with W's vote.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let controller = cluster.view(s).controller as usize;
        assert!(
            controller != s && controller != w,
            "elected {controller} with a lost vote"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let new = dir_of(&mut cluster, w);
    assert_ne!(new, old);
    cluster.restart(l);
    cluster.await_controller(&[1, 2, 3], 3);
    await_recorded(&mut cluster, s, &w.to_string(), &new);
    // W counts again: with L down once more, S and W elect a controller.
    cluster.kill9(l);
    let controller = cluster.await_controller(&[s, w], 2);
    assert!(controller == s || controller == w);
    crate::kit::client::create_topic(&cluster.node(w).addr, "after-the-loss", 1, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .view(s)
        .topics
        .iter()
        .any(|t| t.0 == "after-the-loss")
    {
        assert!(
            Instant::now() < deadline,
            "the change never reached the survivor"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
