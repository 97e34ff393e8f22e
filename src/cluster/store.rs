//! Where the metadata image is kept durable. The controller calls a [`MetadataStore`] and nothing
//! else: on a single node, [`FileStore`] writes `<log.dirs>/__cluster_metadata/topics.toml`
//! atomically; a replicated log takes its place for a cluster.

use std::path::{Path, PathBuf};

use futures::future::LocalBoxFuture;
use futures::FutureExt;

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

pub trait MetadataStore {
    /// The last image stored: an empty one when none was.
    fn load(&self) -> Result<Image, StoreError>;

    /// Makes `image` durable: once this returns, a restart loads it (or a later one).
    fn store<'a>(&'a self, image: &'a Image) -> LocalBoxFuture<'a, std::io::Result<()>>;
}

/// The image in one file, replaced atomically (temporary file, fsync, rename, fsync of the
/// directory) on every change.
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
}

impl MetadataStore for FileStore {
    fn load(&self) -> Result<Image, StoreError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Image::default()),
            Err(source) => return Err(StoreError::Unreadable { path, source }),
        };
        Image::from_toml(&text).map_err(|what| StoreError::Corrupt { path, what })
    }

    fn store<'a>(&'a self, image: &'a Image) -> LocalBoxFuture<'a, std::io::Result<()>> {
        async move {
            std::fs::create_dir_all(&self.dir)?;
            let text = image.to_toml().into_bytes();
            io::write_atomically(&self.path(), text, &self.faults).await
        }
        .boxed_local()
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
        io::block_on(store.store(&image)).unwrap();
        assert_eq!(store.load().unwrap(), image);
        std::fs::write(store.path(), "revision = \"x\"").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    }
}
