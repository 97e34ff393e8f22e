//! A follower's side of replication, and the leader's ISR upkeep, per shard.
//!
//! Each shard runs one fetcher per leader node it follows partitions of: one Fetch (with this
//! node's replica id, sessionless) carries every partition the shard follows from that leader,
//! over one kept connection to the leader's client listener, so the leader serves it with the
//! same sendfile path as a consumer's. Before a partition's first fetch under a new leader epoch
//! the fetcher asks the leader where its own last epoch ends (OffsetForLeaderEpoch) and cuts any
//! tail past that (KIP-101, KIP-279). Records are appended with the leader's offsets and epochs;
//! the leader's high watermark comes back with each answer.
//!
//! The leader side: every fetch tells the partition how far that follower is (`read_local`); a
//! follower that rejoins, and (on a ticker) the followers that fell behind for longer than
//! `replica.lag.time.max.ms`, make an ISR change the controller commits (AlterPartition) before
//! it takes effect.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use super::apis::add_to_topic;
use super::peers::{Connection, PeerError};
use super::Shard;
use crate::cluster::{Change, ChangeError};
use crate::io;
use crate::model::{NodeId, Offset, TopicPartition};
use crate::protocol::ResponseError as E;
use crate::replication::{IsrChange, Partition, PartitionError, Transition};

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;
/// How often a leader looks for followers that fell behind.
const ISR_TICK: Duration = Duration::from_millis(250);
/// How long a leader waits to send an ISR change again after the controller could not be asked.
const ISR_RETRY: Duration = Duration::from_secs(1);

/// One followed partition: the leader epoch it follows under, and whether its log may hold a
/// tail to cut before it fetches.
#[derive(Clone, Copy, Debug)]
struct Follow {
    epoch: i32,
    truncate: bool,
}

struct FetcherState {
    partitions: RefCell<BTreeMap<TopicPartition, Follow>>,
    /// Set when the shard no longer follows anything from this leader: the task ends.
    stopped: Cell<bool>,
    /// Fired when a partition is added: the fetch waiting at the leader (up to
    /// `replica.fetch.wait.max.ms`) is given up so that the next one carries it at once.
    kick: RefCell<Option<futures::channel::oneshot::Sender<()>>>,
    /// The last answer brought at least `BUSY_BYTES`: the next fetch waits for more (see
    /// `BUSY_MIN_BYTES`).
    busy: Cell<bool>,
}

/// Under load a follower asks for fewer, larger answers: once an answer brought `BUSY_BYTES`,
/// the next fetch asks the leader to wait until it has `BUSY_MIN_BYTES` for it, or
/// `replica.fetch.busy.wait.ms` (Sluice's own key; Kafka's followers always take what is
/// there). A fetch round costs both sides about the same whatever it carries (the request, a
/// read of every partition, the wake-ups), so under load the rounds are most of replication's
/// CPU per GB (bench/RESULTS.md); a quiet partition's records still go at once (the answer
/// before was small). acks=all may wait up to that long more under load.
const BUSY_BYTES: usize = 64 << 10;
const BUSY_MIN_BYTES: i32 = 1 << 20;

/// The shard's fetchers, by leader node.
#[derive(Default)]
pub struct Fetchers {
    by_leader: RefCell<HashMap<NodeId, Rc<FetcherState>>>,
}

impl Shard {
    /// Starts or stops following the partitions whose role changed with the image.
    pub(super) fn follow(&self, moved: Vec<(Rc<Partition>, Transition)>) {
        if moved.is_empty() {
            return;
        }
        let mut by_leader = self.fetchers.by_leader.borrow_mut();
        for (partition, transition) in moved {
            let tp = &partition.tp;
            for state in by_leader.values() {
                state.partitions.borrow_mut().remove(tp);
            }
            let Transition::Follows { leader, epoch } = transition else {
                continue;
            };
            tracing::debug!(%tp, leader = leader.0, epoch = epoch.0, "following");
            let state = by_leader.entry(leader).or_insert_with(|| {
                let state = Rc::new(FetcherState {
                    partitions: RefCell::new(BTreeMap::new()),
                    stopped: Cell::new(false),
                    kick: RefCell::new(None),
                    busy: Cell::new(false),
                });
                let task = run(self.this.clone(), leader, state.clone());
                self.background.spawn(task).detach();
                state
            });
            let follow = Follow {
                epoch: epoch.0,
                truncate: true,
            };
            state.partitions.borrow_mut().insert(tp.clone(), follow);
            if let Some(kick) = state.kick.borrow_mut().take() {
                let _ = kick.send(());
            }
        }
        by_leader.retain(|_, state| {
            let keep = !state.partitions.borrow().is_empty();
            state.stopped.set(!keep);
            keep
        });
    }

    /// Sends a leader's ISR change to the controller, once at a time per partition; the image
    /// that commits it brings it into effect.
    pub(super) fn send_isr_change(&self, partition: &Rc<Partition>, change: IsrChange) {
        partition.set_isr_change_pending(true);
        let tp = partition.tp.clone();
        let alter = Change::AlterPartition {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            leader: NodeId(self.node_id),
            leader_epoch: change.leader_epoch.0,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
        };
        let shard = self.this.clone();
        let partition = partition.clone();
        self.background
            .spawn(async move {
                let Some(shard) = shard.upgrade() else { return };
                let isr: Vec<i32> = change.isr.iter().map(|n| n.0).collect();
                match shard.change(alter, false).await {
                    Ok(_) => tracing::info!(%tp, ?isr, "ISR changed"),
                    Err(ChangeError::StaleEpoch) => {
                        tracing::debug!(%tp, "an ISR change from an epoch that moved on");
                    }
                    // A follower that fetched before the controller saw it back: asked again.
                    Err(ChangeError::IneligibleReplica(node)) => {
                        tracing::debug!(%tp, node, "an ISR change naming a fenced broker");
                        io::sleep(ISR_TICK).await;
                    }
                    // No controller reachable (this node cut off, or an election): every
                    // partition it leads tries, so one line a second says so, and each waits
                    // a second before it asks again.
                    Err(e) => {
                        crate::throttled!(|count| tracing::warn!(
                            %tp, ?isr, error = %e, count,
                            "the controller did not take an ISR change (count: failed \
                             changes in the last second, over all partitions)"
                        ));
                        io::sleep(ISR_RETRY).await;
                    }
                }
                // The image brought it (or it failed): another may be sent.
                partition.set_isr_change_pending(false);
            })
            .detach();
    }

    /// The leader's ticker: followers behind for longer than `replica.lag.time.max.ms` leave the
    /// ISR.
    pub(super) fn spawn_isr_ticker(self: &Rc<Self>) {
        let shard = Rc::downgrade(self);
        self.background
            .spawn(async move {
                loop {
                    io::sleep(ISR_TICK).await;
                    let Some(shard) = shard.upgrade() else { break };
                    if shard.is_stopping() {
                        break;
                    }
                    let lag_ms = shard.broker().i64("replica.lag.time.max.ms");
                    // Only topics with a follower in sync somewhere: a wide topic of one replica
                    // has nobody to drop, and visiting its thousands of partitions four times a
                    // second cost a shard more than an idle consumer's fetches of them.
                    let image = shard.image();
                    let followed = image
                        .topics
                        .iter()
                        .filter(|(_, meta)| meta.assignments.iter().any(|a| a.isr.len() > 1));
                    for partition in followed.flat_map(|(name, _)| shard.partitions.of_topic(name))
                    {
                        if let Some(change) = partition.isr_shrink(lag_ms) {
                            let tp = &partition.tp;
                            tracing::info!(%tp, isr = ?change.isr, lag_ms, "a follower fell behind: shrinking the ISR");
                            shard.send_isr_change(&partition, change);
                        }
                    }
                }
            })
            .detach();
    }
}

/// A fetcher: fetches from `leader` for every partition in `state` until stopped.
async fn run(shard: Weak<Shard>, leader: NodeId, state: Rc<FetcherState>) {
    let mut connection: Option<Connection> = None;
    loop {
        let Some(shard) = shard.upgrade() else { return };
        if shard.is_stopping() || state.stopped.get() {
            return;
        }
        let backoff = Duration::from_millis(
            shard
                .broker()
                .i64("replica.fetch.backoff.ms")
                .clamp(10, 10_000) as u64,
        );
        let image = shard.image();
        let endpoint = image
            .brokers
            .get(&leader)
            .filter(|_| !image.fenced.contains(&leader));
        let Some(endpoint) = endpoint else {
            io::sleep(backoff).await;
            continue;
        };
        let conn = match &mut connection {
            Some(c) if c.is_to(&endpoint.host, endpoint.port) => c,
            _ => connection.insert(Connection::new(
                &endpoint.host,
                endpoint.port,
                &shard.peer_security,
                &format!("sluice-replica-{}", shard.node_id),
            )),
        };
        let followed: Vec<(TopicPartition, Follow)> = state
            .partitions
            .borrow()
            .iter()
            .map(|(tp, f)| (tp.clone(), *f))
            .collect();
        let truncating: Vec<_> = followed
            .iter()
            .filter(|(_, f)| f.truncate)
            .cloned()
            .collect();
        let result = if truncating.is_empty() {
            let (kick, kicked) = futures::channel::oneshot::channel();
            *state.kick.borrow_mut() = Some(kick);
            let mut given_up = false;
            let fetched = fetch(&shard, conn, &state, followed, kicked, &mut given_up).await;
            if given_up {
                // The answer to the fetch given up would arrive on this connection.
                connection = None;
            }
            fetched
        } else {
            truncate(&shard, conn, &state, truncating).await
        };
        if let Err(e) = result {
            crate::throttled!(|count| {
                tracing::warn!(leader = leader.0, error = %e, count, "replica fetch failed; retrying")
            });
            io::sleep(backoff).await;
        }
    }
}

/// The partition a followed entry names, if this shard still holds it as a follower.
fn followed_partition(shard: &Shard, tp: &TopicPartition) -> Option<Rc<Partition>> {
    shard.partitions.get(tp).filter(|p| !p.is_leader())
}

/// Asks the leader where each partition's last epoch ends and cuts the tail past it.
async fn truncate(
    shard: &Rc<Shard>,
    conn: &mut Connection,
    state: &FetcherState,
    truncating: Vec<(TopicPartition, Follow)>,
) -> Result<(), PeerError> {
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(shard.node_id);
    let mut asked = Vec::new();
    for (tp, follow) in &truncating {
        let Some(partition) = followed_partition(shard, tp) else {
            state.partitions.borrow_mut().remove(tp);
            continue;
        };
        let Some(latest) = partition.log.latest_epoch() else {
            // An empty log has nothing to cut.
            done_truncating(state, tp, follow.epoch);
            continue;
        };
        let mut p = OffsetForLeaderPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = follow.epoch;
        p.leader_epoch = latest;
        let topics = &mut request.topics;
        add_to_topic(topics, &tp.topic, p, |t: &mut OffsetForLeaderTopic| {
            (&mut t.topic, &mut t.partitions)
        });
        asked.push((tp.clone(), partition, latest, follow.epoch));
    }
    if asked.is_empty() {
        return Ok(());
    }
    let within = Duration::from_secs(10);
    let answer: OffsetForLeaderEpochResponse = conn
        .call(
            ApiKey::OffsetForLeaderEpoch,
            EPOCH_VERSION,
            &request,
            within,
        )
        .await?;
    let mut ends = HashMap::new();
    for topic in answer.topics {
        let name: Arc<str> = Arc::from(topic.topic.0.as_str());
        for p in topic.partitions {
            ends.insert(TopicPartition::new(name.clone(), p.partition), p);
        }
    }
    for (tp, partition, latest, epoch) in asked {
        let Some(end) = ends.get(&tp) else {
            continue;
        };
        if end.error_code != 0 {
            tracing::debug!(%tp, code = end.error_code, "the leader did not say where our epoch ends yet");
            continue;
        }
        // KIP-279: the leader's largest epoch at or below ours, and where it ends there; cut at
        // that end or where that epoch ends here, whichever is first. No common epoch: keep
        // only what was committed.
        let cut = if end.leader_epoch < 0 || end.end_offset < 0 {
            partition.high_watermark()
        } else if end.leader_epoch == latest {
            Offset(end.end_offset)
        } else {
            let own = partition
                .log
                .epoch_end(end.leader_epoch)
                .map_or(partition.high_watermark(), |(_, own)| own);
            Offset(end.end_offset).min(own)
        };
        let log_end = partition.log.log_end();
        if cut < log_end {
            match partition.truncate(cut).await {
                Ok(new_end) => tracing::warn!(
                    %tp, from = log_end.0, to = new_end.0, epoch,
                    "cut a tail the leader does not have"
                ),
                Err(e) => {
                    tracing::error!(%tp, error = %e, "cannot truncate the follower's log");
                    continue;
                }
            }
        }
        done_truncating(state, &tp, epoch);
    }
    Ok(())
}

fn done_truncating(state: &FetcherState, tp: &TopicPartition, epoch: i32) {
    if let Some(follow) = state.partitions.borrow_mut().get_mut(tp) {
        if follow.epoch == epoch {
            follow.truncate = false;
        }
    }
}

/// One fetch for every followed partition; appends what comes back.
async fn fetch(
    shard: &Rc<Shard>,
    conn: &mut Connection,
    state: &FetcherState,
    followed: Vec<(TopicPartition, Follow)>,
    kicked: futures::channel::oneshot::Receiver<()>,
    given_up: &mut bool,
) -> Result<(), PeerError> {
    let broker = shard.broker();
    let mut wait_ms = broker.i64("replica.fetch.wait.max.ms").clamp(0, 30_000) as i32;
    let mut min_bytes = broker
        .i64("replica.fetch.min.bytes")
        .clamp(1, i32::MAX as i64) as i32;
    let busy_wait = broker.i64("replica.fetch.busy.wait.ms").clamp(0, 30_000) as i32;
    if state.busy.get() && busy_wait > 0 && min_bytes < BUSY_MIN_BYTES {
        min_bytes = BUSY_MIN_BYTES;
        wait_ms = wait_ms.min(busy_wait);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(shard.node_id);
    request.max_wait_ms = wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = broker
        .i64("replica.fetch.response.max.bytes")
        .clamp(1024, 32 << 20) as i32;
    request.session_id = 0;
    request.session_epoch = -1;
    let partition_max = broker.i64("replica.fetch.max.bytes").clamp(1024, 32 << 20) as i32;
    let mut fetching = HashMap::new();
    for (tp, follow) in followed {
        let Some(partition) = followed_partition(shard, &tp) else {
            state.partitions.borrow_mut().remove(&tp);
            continue;
        };
        let mut p = FetchPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = follow.epoch;
        p.fetch_offset = partition.log.log_end().0;
        p.log_start_offset = partition.log.log_start().0;
        p.partition_max_bytes = partition_max;
        p.last_fetched_epoch = partition.log.latest_epoch().unwrap_or(-1);
        add_to_topic(&mut request.topics, &tp.topic, p, |t: &mut FetchTopic| {
            (&mut t.topic, &mut t.partitions)
        });
        fetching.insert(tp.clone(), (tp, partition, follow));
    }
    if fetching.is_empty() {
        io::sleep(Duration::from_millis(wait_ms as u64)).await;
        return Ok(());
    }
    let within = Duration::from_millis(wait_ms as u64) + Duration::from_secs(10);
    // Only the wait for the answer is given up when a partition is added, never an append.
    let call = conn.call(ApiKey::Fetch, FETCH_VERSION, &request, within);
    futures::pin_mut!(call);
    let answer: FetchResponse = match futures::future::select(call, kicked).await {
        futures::future::Either::Left((answer, _)) => answer?,
        futures::future::Either::Right(_) => {
            *given_up = true;
            return Ok(());
        }
    };
    let mut backoff = answer.error_code != 0;
    let brought: usize = answer
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    state.busy.set(brought >= BUSY_BYTES);
    for topic in answer.responses {
        let name: Arc<str> = Arc::from(topic.topic.0.as_str());
        for p in topic.partitions {
            let key = TopicPartition::new(name.clone(), p.partition_index);
            let Some((tp, partition, follow)) = fetching.remove(&key) else {
                continue;
            };
            let high_watermark = Offset(p.high_watermark);
            match p.error_code {
                0 => {
                    let appended = match p.records {
                        Some(records) if !records.is_empty() => {
                            partition.append_replicated(records, high_watermark).await
                        }
                        _ => {
                            partition.follow_high_watermark(high_watermark);
                            Ok(())
                        }
                    };
                    match appended {
                        Ok(()) => {}
                        Err(PartitionError::Diverged) => mark_truncate(state, &tp, follow.epoch),
                        Err(e) => {
                            crate::throttled!(|count| {
                                tracing::error!(%tp, error = %e, count, "cannot append the leader's records")
                            });
                            backoff = true;
                        }
                    }
                }
                code if code == E::OffsetOutOfRange.code() => {
                    let log_end = partition.log.log_end();
                    if log_end < Offset(p.log_start_offset) {
                        // Behind the leader's log start: start again there.
                        let start = Offset(p.log_start_offset);
                        tracing::warn!(%tp, from = log_end.0, to = start.0, "behind the leader's log start");
                        if let Err(e) = partition.truncate(start).await {
                            tracing::error!(%tp, error = %e, "cannot restart the follower's log");
                        }
                    } else {
                        mark_truncate(state, &tp, follow.epoch);
                    }
                }
                code => {
                    // Not the leader (yet, or any more), or an epoch this side has not seen: the
                    // image will say.
                    tracing::debug!(%tp, code, "the leader refused a replica fetch");
                    backoff = true;
                }
            }
        }
    }
    if backoff {
        io::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn mark_truncate(state: &FetcherState, tp: &TopicPartition, epoch: i32) {
    if let Some(follow) = state.partitions.borrow_mut().get_mut(tp) {
        if follow.epoch == epoch {
            follow.truncate = true;
        }
    }
}
