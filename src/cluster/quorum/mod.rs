//! The metadata quorum: the cluster's changes as the entries of a Raft log, replicated by TiKV's
//! `raft` crate. It is sans-IO (no runtime, no threads of its own: it hands back what to write,
//! what to send and what was committed), which fits a thread-per-core broker: the controller
//! shard drives it on its own event loop (`drive`), writes its log with the same io_uring files
//! as everything else, and ticks it from a timer. `openraft` was the alternative; its 0.10 with a
//! pluggable runtime is still an alpha, while `raft` is the library TiKV runs in production.
//!
//! A committed entry is a [`Change`], applied with the same pure [`apply`] on every voter, in log
//! order, so every copy of the image is the same. After each batch of committed entries the image
//! is stored with the position it was applied up to (`topics.toml`, see `store.rs`); that file is
//! also the snapshot, and the log (`log.rs`) keeps what came after it.
//!
//! A node with no other voters configured is a quorum of one: its own entries commit once they
//! are on its disk, so a single broker needs nothing external.

mod learners;
mod log;
mod net;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use raft::prelude::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, RawNode, Storage};

use super::store::{Applied, FileStore, StoreError, METADATA_DIR};
use super::{apply, Change, ChangeError, Image};
use crate::io;
use crate::model::NodeId;
pub use log::LogError;
use log::{LogFiles, LogStorage, SnapshotSource};
pub use net::{parse_voters, serve as serve_voters, TcpTransport, Voter};

/// How long a proposal may wait to be committed and applied (Kafka's
/// `controller.quorum.request.timeout.ms` default): past it the leader was lost or cut off.
const PROPOSE_TIMEOUT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(300)
} else {
    std::time::Duration::from_secs(2)
};

/// Where raft's messages to other voters go (the connections between controllers). A quorum
/// of one has none.
pub trait Transport {
    fn send(&self, message: Message);

    /// Since when connections to `peer` have been refused outright (its host answers, no process
    /// listens: it died), if they are now.
    fn refused_since(&self, _peer: NodeId) -> Option<std::time::Instant> {
        None
    }
}

/// The transport of a quorum of one.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, message: Message) {
        tracing::warn!(
            to = message.to,
            "a quorum of one has no one to send to: message dropped"
        );
    }
}

/// Entries kept in the log behind the stored image, for voters that lag a little; past twice
/// that the log is cut.
const LOG_KEPT_ENTRIES: u64 = if cfg!(test) { 10 } else { 1000 };

/// Why the quorum could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storing the applied image: {0}")]
    Apply(std::io::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("a committed entry is not a change: {0}")]
    BadEntry(String),
}

/// A change as an entry: who proposed it, so that the proposer can answer its caller once it is
/// applied.
#[derive(serde::Serialize, serde::Deserialize)]
struct Proposal {
    node: i32,
    /// Drawn at each start: an entry proposed before a restart has no caller left.
    incarnation: u64,
    seq: u64,
    change: Change,
}

type Answer = oneshot::Sender<Result<Arc<Image>, ChangeError>>;

pub struct Quorum {
    /// Itself, for the drive task (see `drive`).
    this: std::rc::Weak<Quorum>,
    me: NodeId,
    node: RefCell<RawNode<LogStorage>>,
    transport: Rc<dyn Transport>,
    files: LogFiles,
    store: FileStore,
    /// The image as applied, and the snapshot raft hands to a voter that needs one.
    image: RefCell<Arc<Image>>,
    snapshot: Rc<RefCell<SnapshotSource>>,
    incarnation: u64,
    next_seq: Cell<u64>,
    waiting: RefCell<HashMap<u64, Answer>>,
    /// One drive at a time: raft's ready and advance come in pairs.
    driving: io::Lock,
    /// When each other voter was last heard from (any message).
    heard: RefCell<HashMap<NodeId, std::time::Instant>>,
    /// Told each image as it is applied.
    watchers: RefCell<Vec<futures::channel::mpsc::UnboundedSender<Arc<Image>>>>,
    /// Snapshots taken from a leader (for metrics).
    snapshots_installed: Cell<u64>,
    /// Set when a write failed: the log on disk and raft's state may differ, so nothing more is
    /// proposed until a restart recovers from the disk.
    broken: RefCell<Option<String>>,
}

impl Quorum {
    /// Opens the quorum in `data_dir` as node `me` of `voters` (the first start of a data dir
    /// writes them into the log's first state; later starts take them from it), replays what was
    /// committed and not yet in the stored image, and, as the only voter, becomes the leader.
    pub async fn open(
        data_dir: &Path,
        me: NodeId,
        voters: &[NodeId],
        faults: io::Faults,
        transport: Rc<dyn Transport>,
    ) -> Result<Rc<Quorum>, QuorumError> {
        let store = FileStore::with_faults(data_dir, faults.clone());
        let (image, applied) = store.load_applied()?;
        let raft_dir = data_dir.join(METADATA_DIR).join("raft");
        let (files, recovered) = LogFiles::open(&raft_dir, faults)?;
        let mut configured: Vec<u64> = voters.iter().map(|v| v.0 as u64).collect();
        configured.sort_unstable();
        let mut stored = applied.voters.clone();
        stored.sort_unstable();
        if !stored.is_empty() && stored != configured {
            tracing::warn!(
                stored = ?applied.voters,
                ?configured,
                "the voters this data dir was started with are kept; changing them is not supported yet"
            );
        }
        let voters: Vec<u64> = if applied.voters.is_empty() {
            voters.iter().map(|&v| raft_id(v)).collect()
        } else {
            applied
                .voters
                .iter()
                .map(|&v| raft_id(NodeId(v as i32)))
                .collect()
        };
        let learners: Vec<u64> = applied
            .learners
            .iter()
            .map(|&l| raft_id(NodeId(l as i32)))
            .collect();
        let conf_state = ConfState::from((voters.clone(), learners));
        let mem = MemStorage::new();
        {
            let mut core = mem.wl();
            if applied.index > 0 {
                let mut snapshot = Snapshot::default();
                let meta = snapshot.mut_metadata();
                meta.index = applied.index;
                meta.term = applied.term;
                meta.set_conf_state(conf_state.clone());
                core.apply_snapshot(snapshot)?;
            } else {
                core.set_conf_state(conf_state.clone());
            }
            let after: Vec<Entry> = recovered
                .entries
                .into_iter()
                .filter(|e| e.index > applied.index)
                .collect();
            if after.first().is_some_and(|e| e.index != applied.index + 1) {
                return Err(LogError::Corrupt {
                    path: raft_dir,
                    what: format!(
                        "the log starts at {} but the image was applied up to {}",
                        after[0].index, applied.index
                    ),
                }
                .into());
            }
            core.append(&after)?;
            let last = after.last().map_or(applied.index, |e| e.index);
            let mut hard_state = recovered.hard_state;
            hard_state.term = hard_state.term.max(applied.term);
            hard_state.commit = hard_state.commit.clamp(applied.index, last);
            core.set_hardstate(hard_state);
        }
        let snapshot = Rc::new(RefCell::new(SnapshotSource {
            index: applied.index,
            term: applied.term,
            conf_state,
            data: image.to_toml().into(),
        }));
        let config = Config {
            id: raft_id(me),
            election_tick: 10,
            heartbeat_tick: 2,
            applied: applied.index,
            pre_vote: true,
            check_quorum: true,
            ..Config::default()
        };
        config.validate()?;
        let storage = LogStorage {
            mem,
            snapshot: snapshot.clone(),
        };
        let mut node = RawNode::new(&config, storage, &logger())?;
        if voters == [raft_id(me)] {
            node.campaign()?;
        }
        let quorum = Rc::new_cyclic(|this| Quorum {
            this: this.clone(),
            me,
            node: RefCell::new(node),
            transport,
            files,
            store,
            image: RefCell::new(Arc::new(image)),
            snapshot,
            incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
            next_seq: Cell::new(0),
            waiting: RefCell::new(HashMap::new()),
            driving: io::Lock::default(),
            broken: RefCell::new(None),
            snapshots_installed: Cell::new(0),
            watchers: RefCell::new(Vec::new()),
            heard: RefCell::new(HashMap::new()),
        });
        quorum.drive().await?;
        Ok(quorum)
    }

    /// This voter's node id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The image as applied on this node.
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.node.borrow().raft.state == raft::StateRole::Leader
    }

    /// Every image applied from now on, in order (a voter that does not lead learns the cluster's
    /// changes here).
    pub fn watch(&self) -> futures::channel::mpsc::UnboundedReceiver<Arc<Image>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.watchers.borrow_mut().push(tx);
        rx
    }

    fn set_image(&self, image: Arc<Image>) {
        *self.image.borrow_mut() = image.clone();
        self.watchers
            .borrow_mut()
            .retain(|w| w.unbounded_send(image.clone()).is_ok());
    }

    /// As the leader, hands the leadership to the voter whose log is furthest along (a clean
    /// shutdown: the others need not wait for an election timeout). Returns it, or `None` when
    /// this voter does not lead or has no other voter.
    pub async fn transfer_leadership(&self) -> Option<NodeId> {
        let to = {
            let _guard = self.driving.lock().await;
            let mut node = self.node.borrow_mut();
            if node.raft.state != raft::StateRole::Leader {
                return None;
            }
            let me = node.raft.id;
            let to = node
                .raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me)
                .max_by_key(|(_, progress)| progress.matched)
                .map(|(id, _)| *id)?;
            node.transfer_leader(to);
            to
        };
        if let Err(e) = self.drive().await {
            tracing::warn!(error = %e, "handing over the metadata quorum's leadership");
        }
        Some(node_of(to))
    }

    /// Whether this node is a voter of the quorum (not a learner, nor outside it).
    pub fn is_voter(&self) -> bool {
        self.node.borrow().raft.promotable()
    }

    /// When `node` was last heard from (`None`: not since this voter opened).
    pub fn last_heard(&self, node: NodeId) -> Option<std::time::Instant> {
        self.heard.borrow().get(&node).copied()
    }

    /// Since when connections to voter `node` have been refused outright, if they are now.
    pub fn refused_since(&self, node: NodeId) -> Option<std::time::Instant> {
        self.transport.refused_since(node)
    }

    /// How many snapshots this voter took from a leader since it opened.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.get()
    }

    /// The voter that leads now, as far as this one knows.
    pub fn leader(&self) -> Option<NodeId> {
        match self.node.borrow().raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(node_of(id)),
        }
    }

    /// A message from another voter; `drive` then does what it asks. Waits for a drive in
    /// progress: raft takes nothing between handing out a ready and its advance.
    pub async fn step(&self, message: Message) -> Result<(), QuorumError> {
        let _guard = self.driving.lock().await;
        if message.from != raft::INVALID_ID {
            let from = node_of(message.from);
            self.heard
                .borrow_mut()
                .insert(from, std::time::Instant::now());
        }
        let mut message = message;
        let mut node = self.node.borrow_mut();
        // The commit index the leader named, when it is past this voter's log.
        let mut lost: Option<u64> = None;
        if message.get_msg_type() == raft::prelude::MessageType::MsgHeartbeat {
            // A leader names the commit index up to what it believes this voter holds; a voter
            // that lost its data (a disk replaced) holds less, and raft panics on a commit past
            // its log. It commits what it has, and asks for a snapshot below.
            let last = node.raft.raft_log.last_index();
            if message.commit > last {
                crate::throttled!(|count| tracing::warn!(
                    commit = message.commit,
                    last,
                    count,
                    "the leader's heartbeat names a commit index past this voter's log (was its \
                     data lost?); taking what it has"
                ));
                lost = Some(message.commit);
                message.commit = last;
            }
        }
        let leader = message.from;
        node.step(message)?;
        if let Some(believed) = lost {
            // The leader believes this voter holds what it lost (its match index), so it would
            // send it nothing; a rejection at that index asking for a snapshot (raft's request
            // for a follower that lost data) makes it send one.
            let mut ask = raft::prelude::Message::default();
            ask.set_msg_type(raft::prelude::MessageType::MsgAppendResponse);
            ask.to = leader;
            ask.from = node.raft.id;
            ask.term = node.raft.term;
            ask.reject = true;
            ask.index = believed;
            ask.reject_hint = node.raft.raft_log.last_index();
            ask.request_snapshot = node.raft.raft_log.last_index().max(1);
            drop(node);
            self.transport.send(ask);
        }
        Ok(())
    }

    /// A message from another node, stepped and then acted on (`step`, `drive`): one raft
    /// refuses is logged and dropped; the error is the quorum's own (it cannot go on).
    pub async fn deliver(&self, message: Message) -> Result<(), QuorumError> {
        if let Err(e) = self.step(message).await {
            tracing::debug!(error = %e, "a controller message was not taken");
            return Ok(());
        }
        self.drive().await
    }

    /// Proposes `change` and waits until it is committed and applied here: the image after it,
    /// or why it was refused (a change that no longer applies is refused by every voter alike).
    pub async fn propose(&self, change: &Change) -> Result<Arc<Image>, ChangeError> {
        if let Some(why) = self.broken.borrow().clone() {
            return Err(ChangeError::NotStored(why));
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let proposal = Proposal {
            node: self.me.0,
            incarnation: self.incarnation,
            seq,
            change: change.clone(),
        };
        let data = serde_json::to_vec(&proposal).expect("a change always encodes");
        let (answer, answered) = oneshot::channel();
        self.waiting.borrow_mut().insert(seq, answer);
        let proposed = {
            let _guard = self.driving.lock().await;
            self.node.borrow_mut().propose(Vec::new(), data)
        };
        if let Err(e) = proposed {
            self.waiting.borrow_mut().remove(&seq);
            return Err(ChangeError::NoController(format!(
                "node {} cannot propose: {e}",
                self.me.0
            )));
        }
        if let Err(e) = self.drive().await {
            self.waiting.borrow_mut().remove(&seq);
            return Err(ChangeError::NotStored(e.to_string()));
        }
        let timeout = io::sleep(PROPOSE_TIMEOUT);
        futures::pin_mut!(timeout);
        match futures::future::select(answered, timeout).await {
            futures::future::Either::Left((answer, _)) => answer.unwrap_or_else(|_| {
                Err(ChangeError::NotStored(
                    "the quorum stopped before the change was applied".into(),
                ))
            }),
            futures::future::Either::Right(_) => {
                self.waiting.borrow_mut().remove(&seq);
                Err(ChangeError::NoController(format!(
                    "not committed within {PROPOSE_TIMEOUT:?}: no leader reachable"
                )))
            }
        }
    }

    /// Moves raft's clock one tick (elections and heartbeats count in ticks); `drive` then
    /// does what came of it.
    pub async fn tick(&self) -> bool {
        let _guard = self.driving.lock().await;
        self.node.borrow_mut().tick()
    }

    /// Does what raft asks until it asks nothing more: writes entries and state, sends
    /// messages, applies what was committed. A failed write breaks the quorum (see `broken`).
    ///
    /// The work runs in a task of its own, which the caller only waits for: a ready taken from
    /// raft must be handled to the end and advanced, so a caller that goes away half-way (a
    /// request whose connection closed) must not take the work with it.
    pub async fn drive(&self) -> Result<(), QuorumError> {
        let Some(this) = self.this.upgrade() else {
            return Ok(());
        };
        let (done, finished) = oneshot::channel();
        io::spawn(async move {
            let _ = done.send(this.drive_now().await);
        })
        .detach();
        finished.await.unwrap_or_else(|_| {
            Err(QuorumError::Apply(std::io::Error::other(
                "the metadata quorum's drive task ended early",
            )))
        })
    }

    async fn drive_now(&self) -> Result<(), QuorumError> {
        let _guard = self.driving.lock().await;
        if let Some(why) = self.broken.borrow().clone() {
            return Err(QuorumError::Apply(std::io::Error::other(why)));
        }
        let driven = self.drive_locked().await;
        if let Err(e) = &driven {
            tracing::error!(error = %e, "the metadata quorum cannot go on; restart the broker");
            *self.broken.borrow_mut() = Some(e.to_string());
            for (_, answer) in self.waiting.borrow_mut().drain() {
                let _ = answer.send(Err(ChangeError::NotStored(e.to_string())));
            }
        }
        driven
    }

    async fn drive_locked(&self) -> Result<(), QuorumError> {
        loop {
            let mut ready = {
                let mut node = self.node.borrow_mut();
                if !node.has_ready() {
                    return Ok(());
                }
                node.ready()
            };
            self.send(ready.take_messages());
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot()).await?;
            }
            self.apply(ready.take_committed_entries()).await?;
            if !ready.entries().is_empty() {
                self.persist_entries(ready.entries()).await?;
            }
            if let Some(hard_state) = ready.hs() {
                // Term and vote must be on disk before anything is sent; the commit index need
                // not be (it is learnt again from the leader, and what was applied is in the
                // stored image), so a change of the commit index alone costs no write.
                let stored = self.node.borrow().store().mem.rl().hard_state().clone();
                if (stored.term, stored.vote) != (hard_state.term, hard_state.vote) {
                    self.files.store_hard_state(hard_state).await?;
                }
                let node = self.node.borrow();
                node.store().mem.wl().set_hardstate(hard_state.clone());
            }
            self.send(ready.take_persisted_messages());
            let mut light = self.node.borrow_mut().advance(ready);
            if let Some(commit) = light.commit_index() {
                let node = self.node.borrow();
                node.store().mem.wl().mut_hard_state().commit = commit;
            }
            self.send(light.take_messages());
            self.apply(light.take_committed_entries()).await?;
            self.node.borrow_mut().advance_apply();
        }
    }

    /// Writes new entries (a new leader's may replace a suffix: then the log is rewritten) and
    /// hands them to raft's storage.
    async fn persist_entries(&self, entries: &[Entry]) -> Result<(), QuorumError> {
        let first = entries[0].index;
        let rewrite = {
            let node = self.node.borrow();
            let store = node.store();
            if first <= store.last_index()? {
                let start = store.first_index()?;
                let mut all = if first > start {
                    let context = raft::GetEntriesContext::empty(false);
                    store.entries(start, first, None, context)?
                } else {
                    Vec::new()
                };
                all.extend_from_slice(entries);
                Some(all)
            } else {
                None
            }
        };
        self.files.append(entries, rewrite.as_deref()).await?;
        let node = self.node.borrow();
        node.store().mem.wl().append(entries)?;
        Ok(())
    }

    /// Applies committed entries to the image, stores it with its position, answers the callers
    /// of this node's proposals among them, and cuts the log behind the stored image.
    async fn apply(&self, entries: Vec<Entry>) -> Result<(), QuorumError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        // `apply` makes each next image from the last: the current one is not copied first.
        let mut image = self.image();
        let mut answers = Vec::new();
        for entry in &entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let proposal: Proposal = serde_json::from_slice(&entry.data)
                        .map_err(|e| QuorumError::BadEntry(format!("{}: {e}", entry.index)))?;
                    let result = apply(&image, &proposal.change).map(|next| {
                        image = Arc::new(next);
                        tracing::info!(change = ?proposal.change, "metadata changed");
                    });
                    let ours =
                        proposal.node == self.me.0 && proposal.incarnation == self.incarnation;
                    if ours {
                        answers.push((proposal.seq, result));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(entry)?;
                }
            }
        }
        let voters = self.node.borrow().store().initial_state()?;
        let applied = Applied {
            index: last_index,
            term: last_term,
            voters: stored_ids(&voters.conf_state.voters),
            learners: stored_ids(&voters.conf_state.learners),
        };
        let text = self
            .store
            .store_applied(&image, &applied)
            .await
            .map_err(QuorumError::Apply)?;
        *self.snapshot.borrow_mut() = SnapshotSource {
            index: last_index,
            term: last_term,
            conf_state: voters.conf_state,
            data: text.into(),
        };
        self.set_image(image.clone());
        for (seq, result) in answers {
            if let Some(answer) = self.waiting.borrow_mut().remove(&seq) {
                let _ = answer.send(result.map(|()| image.clone()));
            }
        }
        self.cut_log(last_index).await
    }

    fn apply_conf_change(&self, entry: &Entry) -> Result<(), QuorumError> {
        use protobuf::Message as _;
        let bad = |e: protobuf::ProtobufError| QuorumError::BadEntry(e.to_string());
        let mut node = self.node.borrow_mut();
        let conf_state = if entry.get_entry_type() == EntryType::EntryConfChange {
            let change = ConfChange::parse_from_bytes(&entry.data).map_err(bad)?;
            node.apply_conf_change(&change)?
        } else {
            let change = ConfChangeV2::parse_from_bytes(&entry.data).map_err(bad)?;
            node.apply_conf_change(&change)?
        };
        node.store().mem.wl().set_conf_state(conf_state);
        Ok(())
    }

    /// Once the log holds twice `LOG_KEPT_ENTRIES` behind the stored image, drops all but the
    /// last `LOG_KEPT_ENTRIES` of those (from memory and from the file).
    async fn cut_log(&self, applied: u64) -> Result<(), QuorumError> {
        let kept = {
            let node = self.node.borrow();
            let store = node.store();
            let first = store.first_index()?;
            if applied < first + 2 * LOG_KEPT_ENTRIES {
                return Ok(());
            }
            store.mem.wl().compact(applied - LOG_KEPT_ENTRIES)?;
            let (start, end) = (store.first_index()?, store.last_index()? + 1);
            store.entries(start, end, None, raft::GetEntriesContext::empty(false))?
        };
        self.files.rewrite(&kept).await?;
        Ok(())
    }

    /// A voter too far behind the leader's log gets its image instead: stored as applied at the
    /// snapshot's position, the log emptied, raft's storage reset to it.
    async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), QuorumError> {
        let meta = snapshot.get_metadata();
        let text = std::str::from_utf8(&snapshot.data)
            .map_err(|e| QuorumError::BadEntry(format!("snapshot {}: {e}", meta.index)))?;
        let image = Image::from_toml(text)
            .map_err(|e| QuorumError::BadEntry(format!("snapshot {}: {e}", meta.index)))?;
        let conf_state = meta.get_conf_state().clone();
        let applied = Applied {
            index: meta.index,
            term: meta.term,
            voters: stored_ids(&conf_state.voters),
            learners: stored_ids(&conf_state.learners),
        };
        self.store
            .store_applied(&image, &applied)
            .await
            .map_err(QuorumError::Apply)?;
        self.files.rewrite(&[]).await?;
        {
            let node = self.node.borrow();
            node.store().mem.wl().apply_snapshot(snapshot.clone())?;
        }
        *self.snapshot.borrow_mut() = SnapshotSource {
            index: meta.index,
            term: meta.term,
            conf_state,
            data: snapshot.data.clone(),
        };
        tracing::info!(index = meta.index, "took the leader's metadata snapshot");
        self.snapshots_installed
            .set(self.snapshots_installed.get() + 1);
        self.set_image(Arc::new(image));
        Ok(())
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }
}

/// This node's metadata directory id (see `Image::voter_dirs`): made once, with the raft state
/// it names, so that a data dir replaced (or a raft log lost) comes back with another.
pub async fn directory_id(data_dir: &Path) -> std::io::Result<uuid::Uuid> {
    let raft_dir = data_dir.join(METADATA_DIR).join("raft");
    let path = raft_dir.join("directory.id");
    match std::fs::read_to_string(&path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim()).map_err(|e| {
            std::io::Error::other(format!("{}: not a directory id: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&raft_dir)?;
            let id = uuid::Uuid::new_v4();
            let text = format!("{id}\n").into_bytes();
            io::write_atomically(&path, text, &io::Faults::default()).await?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// A node's id in raft, which keeps 0 for "none": Kafka's node id plus one.
fn raft_id(node: NodeId) -> u64 {
    node.0 as u64 + 1
}

/// The node whose raft id is `id`.
fn node_of(id: u64) -> NodeId {
    NodeId((id - 1) as i32)
}

/// Raft ids (a conf state's voters or learners) as the stored image names them (node ids).
fn stored_ids(ids: &[u64]) -> Vec<u64> {
    ids.iter().map(|&v| node_of(v).0 as u64).collect()
}

/// raft logs through `slog`: its lines go to `tracing` (its info lines, elections mostly, at
/// debug).
fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing, slog::o!())
}

struct ToTracing;

impl slog::Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{message}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}"),
            slog::Level::Info | slog::Level::Debug => tracing::debug!(target: "raft", "{message}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod voters_tests;
