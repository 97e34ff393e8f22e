//! The Raft log on disk and in memory. On disk, under `__cluster_metadata/raft/`: `entries`, a
//! sequence of records (length, CRC32C, the entry in Raft's protobuf form) appended and
//! fdatasync'd before anything that depends on them is sent or answered, and `hardstate` (term,
//! vote, commit), replaced atomically. The state machine's snapshot is the image file itself
//! (`topics.toml`, with the index and term it was applied up to): entries up to it are dropped
//! from the log once it is stored. In memory, raft's own `MemStorage` holds what the library
//! reads; only its `snapshot()` is ours (the image, not an empty payload).

use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

use crate::io;

const ENTRIES_FILE: &str = "entries";
const HARD_STATE_FILE: &str = "hardstate";
/// An entry larger than this is not ours: the tail of the log is corrupt from there.
const ENTRY_BYTES_MAX: usize = 64 << 20;

/// Why the Raft log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// The image as the state machine last stored it, for `Storage::snapshot`.
#[derive(Clone, Debug, Default)]
pub struct SnapshotSource {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// The image's stored text.
    pub data: bytes::Bytes,
}

/// What raft reads: its `MemStorage`, with the snapshot taken from the stored image.
#[derive(Clone)]
pub struct LogStorage {
    pub mem: MemStorage,
    pub snapshot: std::rc::Rc<std::cell::RefCell<SnapshotSource>>,
}

impl Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let source = self.snapshot.borrow();
        if source.index < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = source.index;
        meta.term = source.term;
        meta.set_conf_state(source.conf_state.clone());
        snapshot.data = source.data.clone();
        Ok(snapshot)
    }
}

/// The log's files.
pub struct LogFiles {
    dir: PathBuf,
    faults: io::Faults,
    /// Bytes of `entries` that hold whole records.
    end: std::cell::Cell<u64>,
}

/// What the files held at start.
pub struct Recovered {
    pub hard_state: HardState,
    /// In index order, without gaps.
    pub entries: Vec<Entry>,
}

impl LogFiles {
    /// Reads the log in `dir` (nothing there: an empty log). A torn or corrupt tail of `entries`
    /// (a crash in the middle of an append that was never acknowledged) is cut off.
    pub fn open(dir: &Path, faults: io::Faults) -> Result<(LogFiles, Recovered), LogError> {
        let fail = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(fail(dir))?;
        let hs_path = dir.join(HARD_STATE_FILE);
        let hard_state = match std::fs::read(&hs_path) {
            Ok(bytes) => {
                let body = checked(&bytes).ok_or_else(|| LogError::Corrupt {
                    path: hs_path.clone(),
                    what: "checksum mismatch".into(),
                })?;
                HardState::parse_from_bytes(body).map_err(|e| LogError::Corrupt {
                    path: hs_path.clone(),
                    what: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(fail(&hs_path)(e)),
        };
        let entries_path = dir.join(ENTRIES_FILE);
        let bytes = match std::fs::read(&entries_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(fail(&entries_path)(e)),
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut at = 0usize;
        while let Some((entry, next)) = record_at(&bytes, at) {
            // A rewrite after a conflict keeps indexes consecutive; anything else ends the log.
            if entries
                .last()
                .is_some_and(|last| entry.index != last.index + 1)
            {
                break;
            }
            entries.push(entry);
            at = next;
        }
        if at < bytes.len() {
            let file = std::fs::OpenOptions::new().write(true).open(&entries_path);
            file.and_then(|f| f.set_len(at as u64).and_then(|()| f.sync_all()))
                .map_err(fail(&entries_path))?;
            tracing::warn!(
                path = %entries_path.display(),
                kept = at,
                dropped = bytes.len() - at,
                "the metadata log's tail was torn or corrupt: cut at the last whole entry"
            );
        }
        let files = LogFiles {
            dir: dir.to_path_buf(),
            faults,
            end: std::cell::Cell::new(at as u64),
        };
        Ok((
            files,
            Recovered {
                hard_state,
                entries,
            },
        ))
    }

    fn entries_path(&self) -> PathBuf {
        self.dir.join(ENTRIES_FILE)
    }

    fn error(&self, path: PathBuf) -> impl FnOnce(std::io::Error) -> LogError {
        move |source| LogError::Io { path, source }
    }

    /// Appends `entries` and syncs them. `rewrite`: the entries replace a suffix of the log (a
    /// new leader's), so the whole log (`all`, the entries kept plus these) is rewritten.
    pub async fn append(&self, entries: &[Entry], all: Option<&[Entry]>) -> Result<(), LogError> {
        if let Some(all) = all {
            return self.rewrite(all).await;
        }
        let mut buf = Vec::new();
        for entry in entries {
            put_record(&mut buf, entry);
        }
        let path = self.entries_path();
        let file = io::File::open(&path, true, &self.faults)
            .await
            .map_err(self.error(path.clone()))?;
        let len = buf.len() as u64;
        file.write_at(buf, self.end.get())
            .await
            .map_err(self.error(path.clone()))?;
        file.fdatasync().await.map_err(self.error(path.clone()))?;
        let _ = file.close().await;
        self.end.set(self.end.get() + len);
        Ok(())
    }

    /// Replaces the log with `entries` (after a conflict, or after a snapshot dropped a prefix).
    pub async fn rewrite(&self, entries: &[Entry]) -> Result<(), LogError> {
        let mut buf = Vec::new();
        for entry in entries {
            put_record(&mut buf, entry);
        }
        let len = buf.len() as u64;
        let path = self.entries_path();
        io::write_atomically(&path, buf, &self.faults)
            .await
            .map_err(self.error(path))?;
        self.end.set(len);
        Ok(())
    }

    pub async fn store_hard_state(&self, hard_state: &HardState) -> Result<(), LogError> {
        let body = hard_state
            .write_to_bytes()
            .expect("a hard state always encodes");
        let path = self.dir.join(HARD_STATE_FILE);
        io::write_atomically(&path, with_checksum(&body), &self.faults)
            .await
            .map_err(self.error(path))
    }
}

/// `body` preceded by its length and CRC32C.
fn with_checksum(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a `with_checksum` record that is whole and intact.
fn checked(bytes: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..8usize.checked_add(len)?)?;
    (len <= ENTRY_BYTES_MAX && crc32c::crc32c(body) == crc).then_some(body)
}

fn put_record(buf: &mut Vec<u8>, entry: &Entry) {
    let body = entry.write_to_bytes().expect("an entry always encodes");
    buf.extend_from_slice(&with_checksum(&body));
}

/// The entry whose record starts at `at`, and where the next one starts.
fn record_at(bytes: &[u8], at: usize) -> Option<(Entry, usize)> {
    let rest = bytes.get(at..)?;
    let body = checked(rest)?;
    let entry = Entry::parse_from_bytes(body).ok()?;
    Some((entry, at + 8 + body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from_static(data),
            ..Default::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let (files, recovered) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
            assert!(recovered.entries.is_empty());
            files
                .append(&[entry(1, 1, b"a"), entry(2, 1, b"b")], None)
                .await
                .unwrap();
            files.append(&[entry(3, 2, b"c")], None).await.unwrap();
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 3,
                ..Default::default()
            };
            files.store_hard_state(&hs).await.unwrap();
        });
        let (_, recovered) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
        let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        assert_eq!(recovered.entries[2].data.as_ref(), b"c");
        assert_eq!(
            (recovered.hard_state.term, recovered.hard_state.commit),
            (2, 3)
        );
        // A crash in the middle of the last append: its record is cut, the others stay.
        let path = dir.path().join(ENTRIES_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let (files, recovered) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
        assert_eq!(recovered.entries.len(), 2);
        // The next append goes where the whole records end.
        io::block_on(files.append(&[entry(3, 3, b"d")], None)).unwrap();
        let (_, recovered) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
        assert_eq!(recovered.entries.len(), 3);
        assert_eq!(recovered.entries[2].data.as_ref(), b"d");
    }

    #[test]
    fn a_rewrite_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        io::block_on(async {
            let (files, _) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
            files
                .append(&[entry(1, 1, b"a"), entry(2, 1, b"b")], None)
                .await
                .unwrap();
            let all = [entry(1, 1, b"a"), entry(2, 2, b"x")];
            files.append(&all[1..], Some(&all)).await.unwrap();
        });
        let (_, recovered) = LogFiles::open(dir.path(), io::Faults::default()).unwrap();
        let terms: Vec<u64> = recovered.entries.iter().map(|e| e.term).collect();
        assert_eq!(terms, [1, 2]);
    }
}
