//! Shards: one executor per core, pinned, each with its own io_uring; and the bounded, typed
//! channel mesh that is the only way between them (every shard has an SPSC channel to every other).

use std::future::Future;
use std::time::Duration;

use glommio::channels::channel_mesh::{self, Full};

use super::Result;

/// A running shard (an executor on its own thread).
pub struct ShardHandle<T: Send + 'static> {
    inner: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ShardHandle<T> {
    pub fn join(self) -> Result<T> {
        self.inner.join().map_err(std::io::Error::from)
    }
}

/// io_uring memory per shard: the broker uses buffered files and sockets, not DMA buffers, so a
/// small registered area keeps several shards inside a low RLIMIT_MEMLOCK.
const SHARD_IO_MEMORY_BYTES: usize = 512 * 1024;

/// Starts shard `id` on its own thread, pinned to `cpu` when given, running `make()`'s future.
pub fn spawn_shard<G, F, T>(id: usize, cpu: Option<usize>, make: G) -> Result<ShardHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match cpu {
        Some(cpu) => glommio::Placement::Fixed(cpu),
        None => glommio::Placement::Unbound,
    };
    let inner = glommio::LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{id}"))
        .io_memory(SHARD_IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_millis(10))
        .spawn(move || async move {
            // Before anything on the shard can wait on another.
            super::woken::start_pump();
            make().await
        })
        .map_err(std::io::Error::from)?;
    Ok(ShardHandle { inner })
}

/// The CPUs this process may run on, in order.
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Builds the mesh before the shards start; each shard joins it once.
pub struct MeshBuilder<T: Send + 'static> {
    inner: channel_mesh::MeshBuilder<T, Full>,
}

impl<T: Send + 'static> Clone for MeshBuilder<T> {
    fn clone(&self) -> Self {
        MeshBuilder {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static> MeshBuilder<T> {
    /// A full mesh of `peers` shards, `capacity` messages in flight per pair.
    pub fn new(peers: usize, capacity: usize) -> MeshBuilder<T> {
        MeshBuilder {
            inner: channel_mesh::MeshBuilder::full(peers, capacity),
        }
    }

    /// Joins from the calling shard; returns when every shard has joined.
    pub async fn join(self) -> Result<(MeshSenders<T>, Vec<MeshReceiver<T>>)> {
        let (senders, mut receivers) = self
            .inner
            .join()
            .await
            .map_err(|_| std::io::Error::other("the shard mesh could not be joined"))?;
        let receivers = receivers
            .streams()
            .into_iter()
            .map(|(peer, inner)| MeshReceiver { peer, inner })
            .collect();
        Ok((MeshSenders { inner: senders }, receivers))
    }
}

pub struct MeshSenders<T: Send + 'static> {
    inner: channel_mesh::Senders<T>,
}

impl<T: Send + 'static> MeshSenders<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.inner.peer_id()
    }

    pub fn peers(&self) -> usize {
        self.inner.nr_consumers()
    }

    /// Sends to another shard, waiting while its channel is full; gives the message back if that
    /// shard has gone.
    pub async fn send_to(&self, peer: usize, message: T) -> std::result::Result<(), T> {
        super::woken::Woken::new(self.inner.send_to(peer, message))
            .await
            .map_err(|e| match e {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel(m)) => m,
                other => panic!("mesh send failed: {other}"),
            })
    }
}

/// Messages from one other shard.
pub struct MeshReceiver<T: Send + 'static> {
    peer: usize,
    inner: glommio::channels::shared_channel::ConnectedReceiver<T>,
}

impl<T: Send + 'static> MeshReceiver<T> {
    pub fn peer(&self) -> usize {
        self.peer
    }

    /// The next message, or `None` once the sending shard has stopped.
    pub async fn recv(&self) -> Option<T> {
        super::woken::Woken::new(self.inner.recv()).await
    }
}
