//! Producer ids for idempotent producers, handed out by the controller shard in blocks that the
//! metadata image records (`Change::AllocateProducerIds`, stored before any id of the block is
//! used): after a restart the next block starts past every block handed out, so ids never
//! repeat. Versions before the image held them kept the end of the last block in
//! `<log.dirs>/__cluster_metadata/producer_ids`; `legacy_end` reads it at start.

use std::cell::Cell;
use std::path::Path;

use crate::cluster::METADATA_DIR;
use crate::io;

/// Ids per block (Kafka's controller allocates 1000 at a time).
pub const BLOCK: i64 = 1000;

/// The controller's cursor in its current block.
#[derive(Default)]
pub struct ProducerIds {
    pub next: Cell<i64>,
    /// The first id past the current block (no block yet: equal to `next`).
    pub block_end: Cell<i64>,
    /// Held while a block is allocated.
    pub lock: io::Lock,
}

/// Where the last block ended when a version before the image handed out producer ids (0 when
/// it never did). A file that is not a number stops the broker: handing out ids again could
/// merge two producers' sequences.
pub fn legacy_end(data_dir: &Path) -> Result<i64, String> {
    let path = data_dir.join(METADATA_DIR).join("producer_ids");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| {
            format!(
                "{} does not hold a producer id ({:?}); restore it or remove it knowing that \
                 ids may repeat",
                path.display(),
                text.trim()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
