//! `serve`'s bootstrap, step by step: check the host and the configs, block the stop signals
//! (one thread takes them), resolve and lock the data directory, size the write groups for the
//! disk (`sluice iotune`), load the cluster id and the metadata image (creating
//! `__consumer_offsets` on first start), reserve the listener's port, size the descriptor budget,
//! then start one pinned shard per core and supervise them: report "serving" once every shard
//! listens, stop them all on a signal or on one shard's failure, and wait for a clean shutdown.
//!
//! Each shard (`run_shard`) joins the mesh, builds its `Shard`, opens the partitions it owns
//! (any it cannot open stops `serve`), loads its groups and transactions, then accepts
//! connections until the stop flag is set, and drains before closing its logs.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::addresses::{peer_security, Addresses};
use super::{
    admission, fds, fetch_sessions, groups, listener, transactions, Shard, CONTROLLER_SHARD,
    SHARD_REQUEST_MEMORY_BYTES,
};
use crate::cluster::{self, BrokerMeta, Change, Controller, Endpoint, Image, NoPeers, Quorum};
use crate::config::Values;
use crate::io;
use crate::model::{NodeId, ShardId};
use crate::replication::Partitions;
use crate::security::{self, ListenerSpec};
use crate::shard::MeshBuilder;

/// How long shutdown waits for in-flight requests before closing the logs anyway.
const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;
/// How often a shard looks at the process-wide stop flag.
const STOP_POLL_MS: u64 = 50;
/// How long the other shards wait for the controller shard's hand-over at shutdown, at most (the
/// controlled shutdown's 5 s and the controller's 1 s, and some).
const HAND_OVER_WAIT_MS_MAX: u64 = 7_500;
/// How long a node whose leaderships moved keeps serving its connections before it closes them.
const HAND_OVER_GRACE_MS: u64 = 300;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {shard} failed: {reason}")]
    Shard { shard: ShardId, reason: String },
}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// What every shard is started with.
#[derive(Clone)]
struct Common {
    /// `admin.listener`, and whether it was set (the default port taken by another process is
    /// not a reason to stop: the node serves without it and says so).
    admin: Option<(SocketAddr, bool)>,
    /// Where the admin listener was bound, for the start-up line.
    admin_bound: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    broker: Values,
    data_dir: PathBuf,
    cluster_id: String,
    /// The client listener; a controller-only node has none (`serves_clients` false: this is
    /// its controller listener, for the start-up line).
    listen: SocketAddr,
    serves_clients: bool,
    /// The client listeners, each with the address it is bound to.
    listeners: Vec<(ListenerSpec, SocketAddr)>,
    advertised_host: String,
    advertised_port: u16,
    endpoints: Vec<Endpoint>,
    image: Arc<Image>,
    shards: usize,
    stop: Arc<AtomicBool>,
    /// Set by the controller shard once a stopping node has handed its leaderships (and the
    /// controller's) over: until then every shard keeps serving its connections.
    handed_over: Arc<AtomicBool>,
    drained: Arc<AtomicUsize>,
    /// The background task queue's shares, from `sluice iotune`'s io-properties when present.
    background_shares: usize,
    admission: Arc<admission::Admission>,
    fds: fds::FdBudget,
    peer_security: Arc<crate::security::peer::PeerSecurity>,
    /// This node's part in a cluster's quorum (`None`: a node alone).
    quorum: Option<super::quorum::Setup>,
    /// The node id of the quorum's leader (-1 while none is known), kept by the controller shard.
    active_controller: Arc<AtomicI32>,
    /// Whether this node acts on the leaderships its image gives it (see `Shard::caught_up`).
    caught_up: Arc<std::sync::atomic::AtomicBool>,
}
/// Opens the metadata quorum and brings the image up to date with this start: this broker
/// registered with its endpoints, `__consumer_offsets` created on first start, and the producer
/// ids an older version handed out counted as handed out. Committed before any shard starts; the
/// controller shard opens the quorum again to serve.
fn load_image(
    broker: &Values,
    data_dir: &Path,
    addresses: &Addresses,
    capacity: cluster::Capacity,
) -> Result<Image, ServeError> {
    use crate::group::OFFSETS_TOPIC;
    let id = NodeId(broker.i32("node.id"));
    let me = BrokerMeta {
        host: addresses.advertised_host.clone(),
        port: addresses.advertised_port,
        rack: Some(broker.get("broker.rack").to_string()).filter(|rack| !rack.is_empty()),
        listeners: addresses.endpoints.clone(),
        capacity: Some(capacity),
    };
    let handed_out = cluster::legacy_producer_ids_end(data_dir).map_err(ServeError::Config)?;
    let offsets_partitions = broker.i32("offsets.topic.num.partitions");
    io::block_on(async {
        let quorum = Quorum::open(data_dir, id, &[id], io::Faults::default(), Rc::new(NoPeers))
            .await
            .map_err(|e| ServeError::Config(format!("the metadata quorum: {e}")))?;
        let image = quorum.image();
        let mut changes = Vec::new();
        if image.brokers.get(&id) != Some(&me) {
            changes.push(Change::RegisterBroker { id, broker: me });
        }
        if !image.topics.contains_key(OFFSETS_TOPIC) {
            changes.push(Change::create_internal_topic(
                OFFSETS_TOPIC,
                offsets_partitions,
                1,
            ));
        }
        if handed_out > image.producer_ids_end {
            let count = handed_out - image.producer_ids_end;
            changes.push(Change::AllocateProducerIds { count });
        }
        for change in &changes {
            quorum
                .propose(change)
                .await
                .map_err(|e| ServeError::Config(format!("metadata: {change:?}: {e}")))?;
        }
        Ok((*quorum.image()).clone())
    })
}

/// Reads `meta.properties` (Kafka's name for it) or writes a new one with a new cluster id: drawn
/// at random for a node alone, derived from `controller.quorum.voters` in a cluster (so that
/// every node of it starts with the same id).
fn cluster_id(data_dir: &Path, broker: &Values) -> Result<String, ServeError> {
    let node_id = broker.i32("node.id");
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text
            .lines()
            .find_map(|line| line.strip_prefix("cluster.id="))
            .map(str::trim)
            .filter(|id| !id.is_empty());
        return match id {
            Some(id) => Ok(id.to_string()),
            None => Err(ServeError::Config(format!(
                "{} has no cluster.id",
                path.display()
            ))),
        };
    }
    let voters = broker.get("controller.quorum.voters");
    let id = if voters.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()[..22].to_string()
    } else {
        let reversed: Vec<u8> = voters.bytes().rev().collect();
        format!(
            "sluice{:08x}{:08x}",
            crc32c::crc32c(voters.as_bytes()),
            crc32c::crc32c(&reversed)
        )
    };
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    std::fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))?;
    Ok(id)
}

/// Takes an exclusive lock on the data directory so that two brokers never share it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, ServeError> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(format!("opening {}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(ServeError::Config(format!(
            "{} is in use by another broker (locked {})",
            data_dir.display(),
            path.display()
        )));
    }
    Ok(file)
}

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread only. Threads
    // started afterwards inherit the mask, so only the signal thread receives SIGINT/SIGTERM.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Runs `start` (which starts a thread) with SIGINT and SIGTERM blocked on this thread, so the
/// thread it starts never takes them (the log writer): `serve` receives them on its signal thread
/// only. This thread's mask is restored after.
pub fn without_stop_signals<T>(start: impl FnOnce() -> T) -> T {
    // SAFETY: sigset manipulation on local sets; pthread_sigmask on this thread only, restored to
    // the mask saved here.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let started = start();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        started
    }
}

/// Request frames and write chunks are often over glibc's default mmap threshold (128 KiB), so
/// each one would be a fresh mmap: page faults, zeroed pages and an munmap per request (a fifth
/// of the broker's CPU in `perf` during the ingest bench). Serving them from the heap, and keeping
/// up to 64 MiB of freed heap per arena, lets the shards reuse the same memory.
fn keep_large_buffers_in_the_heap() {
    const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;
    // SAFETY: mallopt only changes allocator tuning; called before any shard thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

/// The heap [`keep_large_buffers_in_the_heap`] keeps can fragment: with 10,000 partitions at
/// 5 MB/s glibc held 686 MB taken from the system with 71 MB in use (`malloc_stats`), freed
/// pages it neither reused nor gave back, and the process's RSS grew by about 12 MiB/s. A thread
/// gives free pages back every [`TRIM_EVERY`] (`malloc_trim` returns whole free pages from the
/// middle of every arena too, not only a heap's top).
fn give_free_heap_back() {
    let trimmer = std::thread::Builder::new().name("malloc-trim".into());
    let _ = trimmer.spawn(|| loop {
        std::thread::sleep(TRIM_EVERY);
        // SAFETY: malloc_trim only releases free memory; glibc locks each arena while it walks.
        unsafe { libc::malloc_trim(TRIM_PAD_BYTES) };
    });
}

/// How often free heap pages go back to the system (see `give_free_heap_back`).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Free bytes kept at the top of each heap when trimming.
const TRIM_PAD_BYTES: usize = 16 << 20;

enum Event {
    Listening,
    Signal(i32),
    Failed(ShardId, String),
    Exited,
}

/// Runs the broker until SIGINT or SIGTERM; returns after a clean shutdown.
pub fn serve(mut broker: Values, cores: Vec<Option<usize>>) -> Result<(), ServeError> {
    io::probe_io_uring().map_err(ServeError::Config)?;
    report_host_and_configs(&broker);
    let signals = block_stop_signals();
    keep_large_buffers_in_the_heap();
    give_free_heap_back();
    let data_dir = resolve_data_dir(&broker)?;
    let _lock = lock_data_dir(&data_dir)?;
    let background_shares = io_properties(&mut broker, &data_dir)?;
    let mut quorum = super::quorum::setup(&broker).map_err(ServeError::Config)?;
    let cluster_id = cluster_id(&data_dir, &broker)?;
    if let Some(setup) = &mut quorum {
        setup.cluster_id = cluster_id.clone();
    }
    let addresses = match quorum.as_ref().filter(|q| !q.broker) {
        // A controller only (`process.roles=controller`): no listener for clients.
        Some(setup) => Addresses::controller_only(setup),
        None => Addresses::of(&broker)?,
    };
    for (spec, _) in &addresses.listeners {
        // TLS files and SASL mechanisms checked before any shard starts.
        super::auth::Listener::new(spec, &broker).map_err(ServeError::Config)?;
    }
    let peer_security = Arc::new(peer_security(&broker, &addresses, quorum.is_some())?);
    let shards = cores.len();
    let descriptor_limit =
        io::raise_descriptor_limit().map_err(io_error("reading the descriptor limit"))?;
    let max_connections = broker
        .is_set("max.connections")
        .then(|| broker.i64("max.connections").max(0) as usize);
    let fds = fds::FdBudget::new(descriptor_limit, shards, max_connections)
        .map_err(ServeError::Config)?;
    let image = match &quorum {
        None => load_image(&broker, &data_dir, &addresses, fds.capacity(shards))?,
        // A cluster's changes wait for its leader: the shards start from the image as stored,
        // and the controller shard's voter registers this broker (`server::quorum`).
        Some(_) => cluster::FileStore::new(&data_dir)
            .load()
            .map_err(|e| ServeError::Config(e.to_string()))?,
    };
    let admission = admission::Admission::new(
        fds.connections,
        broker.i64("max.connections.per.ip") as usize,
    );
    let broker_node_id = broker.i32("node.id");
    let admin = admin_address(&broker)?;
    let common = Common {
        admin,
        admin_bound: Default::default(),
        admission,
        fds,
        peer_security,
        broker,
        data_dir,
        cluster_id,
        listen: addresses.listen,
        serves_clients: !addresses.listeners.is_empty(),
        listeners: addresses.listeners.clone(),
        advertised_host: addresses.advertised_host,
        advertised_port: addresses.advertised_port,
        endpoints: addresses.endpoints,
        image: Arc::new(image),
        shards,
        active_controller: Arc::new(AtomicI32::new(if quorum.is_some() {
            -1
        } else {
            broker_node_id
        })),
        // A node alone is caught up from the start; one of a cluster once it registered.
        caught_up: Arc::new(AtomicBool::new(quorum.is_none())),
        quorum,
        stop: Arc::new(AtomicBool::new(false)),
        handed_over: Arc::new(AtomicBool::new(false)),
        drained: Arc::new(AtomicUsize::new(0)),
        background_shares,
    };
    let (events_tx, events) = mpsc::channel::<Event>();
    let handles = start_shards(cores, &common, &events_tx)?;
    start_signal_thread(signals, events_tx.clone())?;
    drop(events_tx);
    let outcome = supervise(&events, &common, addresses.reserved);
    for handle in handles {
        let _ = handle.join();
    }
    outcome
}

/// Warns about a host off the production profile (`mode=production`), and names the Kafka
/// broker configs that were set but have no effect here.
fn report_host_and_configs(broker: &Values) {
    if broker.get("mode") == "production" {
        let warnings = crate::tune::production_warnings(Path::new("/"));
        for warning in &warnings {
            tracing::warn!("host off the production profile: {warning}");
        }
        if !warnings.is_empty() {
            tracing::warn!(
                settings = warnings.len(),
                "`sluice tune check --profile os/production` shows them; `sluice tune apply` sets them"
            );
        }
    }
    let unused: Vec<&str> = broker.without_effect().collect();
    if !unused.is_empty() {
        tracing::info!(
            keys = %unused.join(", "),
            "Kafka broker configs accepted with no effect in Sluice (README: Broker config keys)"
        );
    }
}

/// The first of `log.dirs`, created if missing and resolved once: a relative `log.dirs` (the
/// default `./sluice-data`) must mean the same directory to every file the shards open, whatever
/// they open it relative to.
fn resolve_data_dir(broker: &Values) -> Result<PathBuf, ServeError> {
    let first = broker
        .get("log.dirs")
        .split(',')
        .next()
        .unwrap_or("")
        .trim();
    let data_dir = PathBuf::from(first);
    std::fs::create_dir_all(&data_dir)
        .map_err(io_error(format!("creating {}", data_dir.display())))?;
    data_dir
        .canonicalize()
        .map_err(io_error(format!("resolving {}", data_dir.display())))
}

/// The background task queue's shares, and the write-group size unless set, from the disk's
/// io-properties (`sluice iotune`) when present.
fn io_properties(broker: &mut Values, data_dir: &Path) -> Result<usize, ServeError> {
    match crate::tune::iotune::IoProperties::load(data_dir) {
        Ok(Some(props)) => {
            const GROUP: &str = "log.write.group.max.bytes";
            if !broker.is_set(GROUP) {
                broker
                    .set(GROUP, &props.write_group_bytes().to_string())
                    .map_err(|e| ServeError::Config(format!("io-properties: {e}")))?;
            }
            tracing::info!(
                disk = %props.disk_profile,
                fdatasync_p50_us = props.fdatasync_p50_us,
                shares = props.background_shares(),
                write_group_max_bytes = broker.get(GROUP),
                "io-properties from sluice iotune: background I/O share and write groups sized for the disk"
            );
            Ok(props.background_shares())
        }
        Ok(None) => Ok(crate::storage::BACKGROUND_SHARES),
        Err(e) => Err(ServeError::Config(format!("io-properties: {e}"))),
    }
}

/// `admin.listener` resolved (`None`: empty, no admin listener).
fn admin_address(broker: &Values) -> Result<Option<(SocketAddr, bool)>, ServeError> {
    let text = broker.get("admin.listener").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let address = text
        .to_socket_addrs()
        .map_err(|e| ServeError::Config(format!("admin.listener `{text}`: {e}")))?
        .next()
        .ok_or_else(|| ServeError::Config(format!("admin.listener `{text}` has no address")))?;
    Ok(Some((address, broker.is_set("admin.listener"))))
}

/// Binds the admin listener on the controller shard: an error stops `serve` where the operator
/// set the address; the default one taken is logged and left out.
fn bind_admin(common: &Common) -> Result<Option<io::net::Listener>, String> {
    let Some((address, set)) = common.admin else {
        return Ok(None);
    };
    match io::net::Listener::bind(address) {
        Ok(listener) => {
            let bound = listener.local_addr().ok();
            *common.admin_bound.lock().expect("not poisoned") = bound;
            Ok(Some(listener))
        }
        Err(e) if set => Err(format!("binding admin.listener {address}: {e}")),
        Err(e) => {
            tracing::warn!(%address, error = %e, "the admin listener's default address is taken: serving without it (set admin.listener)");
            Ok(None)
        }
    }
}

/// One pinned executor per entry of `cores`, each running `run_shard`.
fn start_shards(
    cores: Vec<Option<usize>>,
    common: &Common,
    events: &mpsc::Sender<Event>,
) -> Result<Vec<io::shard::ShardHandle<()>>, ServeError> {
    let (common, events) = (common.clone(), events.clone());
    crate::shard::start(cores, move |id, mesh| async move {
        // Every line this shard's thread logs names the node and the shard (an error-level
        // span: enabled whenever logging is). The shard's tasks all run on this thread.
        let node = common.broker.i32("node.id");
        let _span = tracing::error_span!("shard", node, shard = id.0).entered();
        // Sent however the shard ends, a panic included: the others stop and `serve` exits
        // with an error instead of waiting for ever on a shard that is gone.
        let _exit = ExitNotice {
            id,
            events: events.clone(),
        };
        if let Err(reason) = run_shard(id, common, mesh, events.clone()).await {
            let _ = events.send(Event::Failed(id, reason));
        }
    })
    .map_err(|(id, source)| ServeError::Io {
        what: format!("starting shard {id}"),
        source,
    })
}

/// Tells the supervisor a shard ended (as failed if it panicked) when dropped.
struct ExitNotice {
    id: ShardId,
    events: mpsc::Sender<Event>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let reason = "panicked (see the message above)".to_string();
            let _ = self.events.send(Event::Failed(self.id, reason));
        }
        let _ = self.events.send(Event::Exited);
    }
}

/// The one thread that receives SIGINT and SIGTERM (blocked everywhere else).
fn start_signal_thread(
    signals: libc::sigset_t,
    events: mpsc::Sender<Event>,
) -> Result<(), ServeError> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `signals` is the set blocked by `block_stop_signals`; sigwait writes one int.
            if unsafe { libc::sigwait(&signals, &mut signal) } == 0
                && events.send(Event::Signal(signal)).is_err()
            {
                break;
            }
        })
        .map_err(io_error("starting the signal thread"))?;
    Ok(())
}

/// Follows the shards until all have exited: says "serving" once every one listens (and lets
/// the port's reservation go), sets the stop flag on a signal or on a shard's failure.
fn supervise(
    events: &mpsc::Receiver<Event>,
    common: &Common,
    mut reserved: Vec<OwnedFd>,
) -> Result<(), ServeError> {
    let shards = common.shards;
    let listen = common.listen;
    let role = if common.serves_clients {
        ""
    } else {
        " as a controller only (no client listener)"
    };
    let mut listening = 0;
    let mut exited = 0;
    let mut failure: Option<ServeError> = None;
    while let Ok(event) = events.recv() {
        match event {
            Event::Listening => {
                listening += 1;
                if listening == shards {
                    // Every shard listens now; the reservation (never listening) can go.
                    reserved.clear();
                    tracing::info!(
                        %listen, shards, cluster_id = %common.cluster_id,
                        data_dir = %common.data_dir.display(),
                        "serving; {}", common.fds.describe()
                    );
                    let admin = match *common.admin_bound.lock().expect("not poisoned") {
                        Some(admin) => format!("; admin on http://{admin}"),
                        None => String::new(),
                    };
                    // Every listener, where there are several or one speaks more than plaintext.
                    let mut all = String::new();
                    let plain = |(spec, _): &(ListenerSpec, SocketAddr)| {
                        spec.protocol == security::Protocol::Plaintext
                    };
                    if common.listeners.len() > 1 || !common.listeners.iter().all(plain) {
                        let named: Vec<String> = common
                            .listeners
                            .iter()
                            .map(|(spec, address)| format!("{}://{address}", spec.name))
                            .collect();
                        all = format!(" (listeners {})", named.join(","));
                    }
                    println!(
                        "sluice: serving on {listen}{all}{role} with {shards} shards; data in {}; {}{admin}",
                        common.data_dir.display(),
                        common.fds.describe()
                    );
                }
            }
            Event::Signal(signal) => {
                tracing::info!(signal, "stopping: finishing in-flight requests");
                common.stop.store(true, Ordering::SeqCst);
            }
            Event::Failed(shard, reason) => {
                tracing::error!(%shard, %reason, "shard failed; stopping");
                failure.get_or_insert(ServeError::Shard { shard, reason });
                common.stop.store(true, Ordering::SeqCst);
            }
            Event::Exited => {
                exited += 1;
                if exited == shards {
                    break;
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

async fn run_shard(
    id: ShardId,
    common: Common,
    mesh: MeshBuilder<Shard>,
    events: mpsc::Sender<Event>,
) -> Result<(), String> {
    let (senders, inboxes) = mesh.join().await.map_err(|e| e.to_string())?;
    let group_config = groups::group_config(&common.image.broker_values(&common.broker));
    let txn_config = transactions::txn_config(&common.image.broker_values(&common.broker));
    let background = io::TaskQueue::new("background", common.background_shares);
    let (controller, voter) = if id == CONTROLLER_SHARD {
        let node = NodeId(common.broker.i32("node.id"));
        let (quorum, serving) =
            super::quorum::open(&common.data_dir, node, common.quorum.as_ref()).await?;
        (
            Some(Controller::new(quorum.clone())),
            Some((quorum, serving)),
        )
    } else {
        (None, None)
    };
    let shard = Rc::new_cyclic(|weak| Shard {
        id,
        shards: common.shards,
        node_id: common.broker.i32("node.id"),
        static_broker: common.broker.clone(),
        broker: RefCell::new(Rc::new(common.image.broker_values(&common.broker))),
        data_dir: common.data_dir.clone(),
        cluster_id: common.cluster_id.clone(),
        advertised_host: common.advertised_host.clone(),
        advertised_port: common.advertised_port,
        endpoints: common.endpoints.clone(),
        authorizer: Rc::new(security::authorizer(&common.broker)),
        peer_security: common.peer_security.clone(),
        image: RefCell::new(common.image.clone()),
        partitions: Partitions::new(
            common.data_dir.clone(),
            background,
            Rc::new(io::SystemClock),
            crate::model::NodeId(common.broker.i32("node.id")),
        ),
        controller,
        mesh: senders.bind(weak.clone()),
        hot: io::TaskQueue::new("hot", crate::storage::HOT_PATH_SHARES),
        background,
        fetch_sessions: RefCell::new(fetch_sessions::Sessions::new(id.index(), common.shards)),
        request_memory: io::Budget::new(SHARD_REQUEST_MEMORY_BYTES),
        groups: groups::coordinator(weak.clone(), group_config),
        txns: transactions::coordinator(weak.clone(), txn_config),
        stopping: Cell::new(false),
        stop_waiters: RefCell::new(Vec::new()),
        in_flight: Cell::new(0),
        fds: common.fds,
        active_controller: common.active_controller.clone(),
        caught_up: common.caught_up.clone(),
        this: weak.clone(),
        fetchers: Default::default(),
        metrics: super::metrics::Metrics::new(common.broker.bool("metrics.enabled")),
    });
    if let Some((quorum, serving)) = voter {
        super::quorum::run(&shard, quorum, serving);
    }
    crate::storage::set_loaded_segments_capacity(common.fds.loaded_segments);
    for inbox in inboxes {
        shard.hot.spawn(receive(shard.clone(), inbox)).detach();
    }
    if let Err((count, first)) = shard.reconcile_partitions().await {
        // A broker serving half its partitions is worse than one that does not start.
        return Err(format!(
            "cannot open {count} of the partitions this shard owns (the first, {first}); \
             nothing was served"
        ));
    }
    shard.spawn_isr_ticker();
    shard.load_groups().await;
    shard.spawn_group_ticker();
    shard.spawn_stall_ticker();
    shard.load_txns().await;
    shard.spawn_txn_ticker();
    let mut listeners = Vec::new();
    for (spec, address) in &common.listeners {
        let bound =
            io::net::Listener::bind(*address).map_err(|e| format!("binding {address}: {e}"))?;
        let named = super::auth::Listener::new(spec, &common.broker)?;
        listeners.push((bound, Rc::new(named)));
    }
    if id == CONTROLLER_SHARD {
        if let Some(listener) = bind_admin(&common)? {
            let serving = super::admin::serve(shard.clone(), listener, common.admission.clone());
            io::spawn(serving).detach();
        }
    }
    let _ = events.send(Event::Listening);

    // The accept loop runs in a task of its own, aborted at stop. Raced in one task with the
    // stop watch (as it once was), every tick of the watch polled the pending accept again, and
    // glommio keeps every waker an accept is polled with (`Source::collect_rw`): 20 a second
    // overflowed the task's 16-bit reference count after about 27 minutes, and both shards
    // panicked and stopped accepting.
    let (accepting, stop_accepting) = futures::future::abortable({
        let (shard, admission) = (shard.clone(), common.admission.clone());
        async move {
            let loops = listeners.into_iter().map(|(bound, named)| {
                listener::accept_loop(shard.clone(), bound, admission.clone(), named)
            });
            futures::future::join_all(loops).await;
        }
    });
    shard
        .hot
        .spawn(async move {
            let _ = accepting.await;
        })
        .detach();
    while !common.stop.load(Ordering::SeqCst) {
        io::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
    stop_accepting.abort();

    // The controller shard hands this node's leaderships (and the controller's) over first,
    // while its voter still ticks and talks; every shard serves its connections until then.
    if shard.id == CONTROLLER_SHARD {
        if super::quorum::hand_over(&shard).await {
            // Clients sending now are answered NOT_LEADER_OR_FOLLOWER with the new leaders. A
            // connection closed before a client heard that races its own handling of the
            // closed connection: librdkafka then forgets the new leader and asks again only
            // after its leader query interval (0.3 to 1.5 s were seen).
            io::sleep(Duration::from_millis(HAND_OVER_GRACE_MS)).await;
        }
        common.handed_over.store(true, Ordering::SeqCst);
    }
    let until = std::time::Instant::now() + Duration::from_millis(HAND_OVER_WAIT_MS_MAX);
    while !common.handed_over.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        io::sleep(Duration::from_millis(5)).await;
    }
    // Stop: no new connections or requests; let in-flight requests finish everywhere before any
    // shard closes its logs (they may be appending to partitions owned here).
    shard.stopping.set(true);
    for waiter in shard.stop_waiters.borrow_mut().drain(..) {
        let _ = waiter.send(());
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX);
    while shard.in_flight.get() > 0 && std::time::Instant::now() < deadline {
        io::sleep(Duration::from_millis(5)).await;
    }
    common.drained.fetch_add(1, Ordering::SeqCst);
    while common.drained.load(Ordering::SeqCst) < common.shards
        && std::time::Instant::now() < deadline
    {
        io::sleep(Duration::from_millis(5)).await;
    }
    shard.close_partitions().await;
    Ok(())
}

/// Runs the jobs arriving from one other shard, each in its own task on the hot queue.
async fn receive(shard: Rc<Shard>, inbox: crate::shard::Inbox<Shard>) {
    while let Some(job) = inbox.next().await {
        shard.hot.spawn(job.start(shard.clone())).detach();
    }
}
