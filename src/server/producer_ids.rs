//! Producer ids for idempotent producers, handed out by the controller (shard 0) in blocks whose
//! end is written to `<log.dirs>/__cluster_metadata/producer_ids` before any id of the block is
//! used: after a restart the next block starts past everything handed out, so ids never repeat.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::io;

/// Ids per block (Kafka's controller allocates 1000 at a time).
pub const BLOCK: i64 = 1000;

pub struct ProducerIds {
    path: PathBuf,
    next: Cell<i64>,
    /// The first id past the block written to disk.
    block_end: Cell<i64>,
    lock: io::Lock,
}

impl ProducerIds {
    pub fn new(metadata_dir: &Path) -> ProducerIds {
        ProducerIds {
            path: metadata_dir.join("producer_ids"),
            next: Cell::new(0),
            block_end: Cell::new(0),
            lock: io::Lock::default(),
        }
    }

    /// Reads where the last block ended; a file that is not a number stops the broker (handing
    /// out ids again could merge two producers' sequences).
    pub fn load(&self) -> Result<(), String> {
        let end = match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| {
                format!(
                    "{} does not hold a producer id ({:?}); restore it or remove it knowing \
                     that ids may repeat",
                    self.path.display(),
                    text.trim()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        self.next.set(end);
        self.block_end.set(end);
        Ok(())
    }

    /// A producer id never handed out before, on this node or before a restart.
    pub async fn allocate(&self) -> std::io::Result<i64> {
        let _guard = self.lock.lock().await;
        if self.next.get() >= self.block_end.get() {
            let end = self.block_end.get() + BLOCK;
            let text = format!("{end}\n").into_bytes();
            io::write_atomically(&self.path, text, &io::Faults::default()).await?;
            self.block_end.set(end);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        Ok(id)
    }
}
