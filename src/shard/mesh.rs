//! The mesh: the only way from one shard to another. A message is a job: an operation to run on
//! the shard that owns the work, with the state of that shard, whose typed answer comes back on a
//! one-shot channel. `route` runs the operation in place when this shard is the owner, so a call
//! site says once what it wants done and not how to get there (the pattern of Seastar's
//! `invoke_on`). Each pair of shards has its own bounded channel: a sender waits while the
//! receiver is `MESH_CHANNEL_CAPACITY` messages behind.

use std::future::Future;
use std::rc::{Rc, Weak};

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::io;
use crate::model::ShardId;

/// How many messages may wait in each shard-to-shard channel.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// An operation sent to another shard: run there, with that shard's state `S`.
pub struct Job<S> {
    run: Box<dyn FnOnce(Rc<S>) -> LocalBoxFuture<'static, ()> + Send>,
}

impl<S> Job<S> {
    /// The future that runs the operation on the receiving shard and sends its answer back.
    pub fn start(self, state: Rc<S>) -> LocalBoxFuture<'static, ()> {
        (self.run)(state)
    }
}

/// The shard that owns the work is not running (the broker is stopping), or it dropped the
/// operation without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shard {} is not running", .0 .0)]
pub struct Unreachable(pub ShardId);

/// Sets up the mesh before the shards start; each shard joins it once, from its own thread.
pub struct MeshBuilder<S: 'static> {
    inner: io::shard::MeshBuilder<Job<S>>,
}

impl<S> Clone for MeshBuilder<S> {
    fn clone(&self) -> Self {
        MeshBuilder {
            inner: self.inner.clone(),
        }
    }
}

impl<S> MeshBuilder<S> {
    pub fn new(shards: usize) -> MeshBuilder<S> {
        MeshBuilder {
            inner: io::shard::MeshBuilder::new(shards, MESH_CHANNEL_CAPACITY),
        }
    }

    /// Joins from the calling shard; returns when every shard has joined. The senders become a
    /// [`Mesh`] once the shard's state exists ([`Senders::bind`]); each inbox is one other
    /// shard's messages.
    pub async fn join(self) -> io::Result<(Senders<S>, Vec<Inbox<S>>)> {
        let (senders, receivers) = self.inner.join().await?;
        let inboxes = receivers.into_iter().map(|inner| Inbox { inner }).collect();
        Ok((Senders { inner: senders }, inboxes))
    }
}

/// A joined shard's senders, before its state exists.
pub struct Senders<S: 'static> {
    inner: io::shard::MeshSenders<Job<S>>,
}

impl<S> Senders<S> {
    /// Binds the senders to this shard's own state, for the operations `route` runs in place.
    pub fn bind(self, here: Weak<S>) -> Mesh<S> {
        Mesh {
            senders: self.inner,
            here,
        }
    }
}

/// One shard's side of the mesh.
pub struct Mesh<S: 'static> {
    senders: io::shard::MeshSenders<Job<S>>,
    here: Weak<S>,
}

impl<S> Mesh<S> {
    /// This shard.
    pub fn me(&self) -> ShardId {
        ShardId(self.senders.me() as u32)
    }

    /// How many shards there are.
    pub fn shards(&self) -> usize {
        self.senders.peers()
    }

    /// Every other shard.
    pub fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.shards() as u32)
            .map(ShardId)
            .filter(move |&peer| peer != self.me())
    }

    /// Runs `op` on `owner`'s state: in place when `owner` is this shard, otherwise there, with
    /// the answer sent back.
    pub async fn route<T, F, Fut>(&self, owner: ShardId, op: F) -> Result<T, Unreachable>
    where
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if owner != self.me() {
            return self.remote(owner, op).await;
        }
        match self.here.upgrade() {
            Some(here) => Ok(op(here).await),
            None => Err(Unreachable(owner)),
        }
    }

    /// Runs `op` on another shard's state and waits for its answer (for work whose answer takes
    /// another form when it crosses, such as open files).
    pub async fn remote<T, F, Fut>(&self, owner: ShardId, op: F) -> Result<T, Unreachable>
    where
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        debug_assert_ne!(owner, self.me(), "a remote call to this shard");
        let (answer, answered) = io::answer_channel();
        let job = Job {
            run: Box::new(move |state| {
                async move {
                    let _ = answer.send(op(state).await);
                }
                .boxed_local()
            }),
        };
        if self.senders.send_to(owner.0 as usize, job).await.is_err() {
            return Err(Unreachable(owner));
        }
        answered.await.map_err(|_| Unreachable(owner))
    }
}

/// The messages from one other shard.
pub struct Inbox<S: 'static> {
    inner: io::shard::MeshReceiver<Job<S>>,
}

impl<S> Inbox<S> {
    /// The next job, or `None` once the sending shard has stopped.
    pub async fn next(&self) -> Option<Job<S>> {
        self.inner.recv().await
    }
}
