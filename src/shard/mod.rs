//! Shards: one executor per core, pinned, each with its own io_uring; the table of which shard
//! owns a partition; and the mesh, the only way from one shard to another. Generic over the
//! state a shard holds (the server's `Shard`), so nothing here knows a request or a partition's
//! log.

mod cores;
mod mesh;
mod table;

use std::future::Future;

use crate::io;
pub use crate::io::shard::{available_cpus, ShardHandle};
use crate::model::ShardId;
pub use cores::{avoiding, parse_cores};
pub use mesh::{Inbox, Job, Mesh, MeshBuilder, Senders, Unreachable, MESH_CHANNEL_CAPACITY};
pub use table::owner;

/// Starts one executor per entry of `cores` (pinned to that CPU, or unbound for `None`), all on
/// one mesh: shard `i` runs `run(ShardId(i), mesh)` on its own thread. On failure, the shard
/// that could not start (those before it are running).
pub fn start<S, G, F>(
    cores: Vec<Option<usize>>,
    run: G,
) -> Result<Vec<ShardHandle<()>>, (ShardId, std::io::Error)>
where
    S: 'static,
    G: FnOnce(ShardId, MeshBuilder<S>) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let mesh = MeshBuilder::new(cores.len());
    let mut handles = Vec::with_capacity(cores.len());
    for (index, cpu) in cores.into_iter().enumerate() {
        let id = ShardId(index as u32);
        let (run, mesh) = (run.clone(), mesh.clone());
        let handle = io::shard::spawn_shard(index, cpu, move || async move {
            // No shard sleeps without a timer pending (see io::keep_waking).
            io::keep_waking();
            run(id, mesh).await
        })
        .map_err(|e| (id, e))?;
        handles.push(handle);
    }
    Ok(handles)
}
