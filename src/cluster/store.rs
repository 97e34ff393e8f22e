//! The state machine's file: the metadata image as last applied, with the position in the Raft
//! log it was applied up to, in `<log.dirs>/__cluster_metadata/topics.toml`, replaced atomically
//! (temporary file, fsync, rename, fsync of the directory) after each batch of committed changes.
//! It is also the quorum's snapshot: the log keeps only what came after it. A file written before
//! the quorum (no `[raft]` table) is an image at position 0.

use std::path::{Path, PathBuf};

use super::image::Image;
use crate::io::{self, Faults};

/// The metadata's directory under `log.dirs` (Kafka's name for it).
pub const METADATA_DIR: &str = "__cluster_metadata";
const TOPICS_FILE: &str = "topics.toml";

/// Why the stored image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// Where in the Raft log an image stands: the last entry applied to it, and the voters and the
/// learners (brokers that do not vote, `process.roles=broker`) then, by node id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    faults: Faults,
}

impl FileStore {
    /// The store under `data_dir` (`log.dirs`).
    pub fn new(data_dir: &Path) -> FileStore {
        FileStore::with_faults(data_dir, Faults::default())
    }

    pub fn with_faults(data_dir: &Path, faults: Faults) -> FileStore {
        FileStore {
            dir: data_dir.join(METADATA_DIR),
            faults,
        }
    }

    /// The file that holds the image.
    pub fn path(&self) -> PathBuf {
        self.dir.join(TOPICS_FILE)
    }

    /// The last image stored: an empty one when none was.
    pub fn load(&self) -> Result<Image, StoreError> {
        Ok(self.load_applied()?.0)
    }

    /// The last image stored and where it stands in the log.
    pub fn load_applied(&self) -> Result<(Image, Applied), StoreError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Image::default(), Applied::default()))
            }
            Err(source) => return Err(StoreError::Unreadable { path, source }),
        };
        let corrupt = |what: String| StoreError::Corrupt {
            path: path.clone(),
            what,
        };
        let image = Image::from_toml(&text).map_err(corrupt)?;
        let table: toml::Table = text.parse().map_err(|e| corrupt(format!("{e}")))?;
        let applied = match table.get("raft").and_then(toml::Value::as_table) {
            None => Applied::default(),
            Some(raft) => {
                let number = |key: &str| {
                    raft.get(key)
                        .and_then(toml::Value::as_integer)
                        .filter(|&n| n >= 0)
                        .map(|n| n as u64)
                        .ok_or_else(|| corrupt(format!("raft.{key} is not a log position")))
                };
                let ids = |key: &str, value: &toml::Value| {
                    value
                        .as_array()
                        .and_then(|ids| {
                            ids.iter()
                                .map(|id| id.as_integer().filter(|&n| n >= 0).map(|n| n as u64))
                                .collect::<Option<Vec<u64>>>()
                        })
                        .ok_or_else(|| corrupt(format!("raft.{key} is not a list of node ids")))
                };
                let voters = raft
                    .get("voters")
                    .ok_or_else(|| corrupt("raft.voters is missing".into()))?;
                // Written from the first version with learners on.
                let learners = match raft.get("learners") {
                    Some(list) => ids("learners", list)?,
                    None => Vec::new(),
                };
                Applied {
                    index: number("index")?,
                    term: number("term")?,
                    voters: ids("voters", voters)?,
                    learners,
                }
            }
        };
        Ok((image, applied))
    }

    /// Makes `image` durable as applied up to `applied`: once this returns, a restart loads it
    /// (or a later one). Returns the image's text (the quorum's snapshot data).
    pub async fn store_applied(&self, image: &Image, applied: &Applied) -> std::io::Result<String> {
        std::fs::create_dir_all(&self.dir)?;
        let text = image.to_toml();
        let list = |ids: &[u64]| {
            ids.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let file = format!(
            "{text}\n[raft]\nindex = {}\nterm = {}\nvoters = [{}]\nlearners = [{}]\n",
            applied.index,
            applied.term,
            list(&applied.voters),
            list(&applied.learners),
        );
        io::write_atomically(&self.path(), file.into_bytes(), &self.faults).await?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{apply, Change};

    #[test]
    fn stores_and_loads_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        assert_eq!(store.load().unwrap(), Image::default());
        let change = Change::AllocateProducerIds { count: 1000 };
        let image = apply(&Image::default(), &change).unwrap();
        let applied = Applied {
            index: 7,
            term: 2,
            voters: vec![1, 2, 3],
            learners: vec![4],
        };
        io::block_on(store.store_applied(&image, &applied)).unwrap();
        assert_eq!(store.load_applied().unwrap(), (image, applied));
        std::fs::write(store.path(), "revision = \"x\"").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    }
}
