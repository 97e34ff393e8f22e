//! The leader-epoch checkpoint (`leader-epoch-checkpoint`, Kafka's file and text shape): for each
//! leader epoch the log holds batches of, the offset of its first batch. A follower or a returning
//! leader asks the leader where its last epoch ends (OffsetForLeaderEpoch, KIP-101/KIP-279) and
//! cuts its log there, so that a tail written under a leader that lost its place is not kept.
//!
//! Appends add an entry when a batch carries an epoch newer than the last; truncation drops the
//! entries at or past the new end. The file is rewritten (atomically) only when entries change:
//! once per leader change, not per append. A log with batches and no file (written before there
//! was one, on a single node) had only epoch 0, from its start.

use std::path::{Path, PathBuf};

use crate::model::Offset;

pub const FILE_NAME: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";

/// Epochs and their start offsets, both ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    entries: Vec<(i32, Offset)>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

impl Epochs {
    /// Reads the file of a log running `log_start..log_end`; entries at or past the end (written
    /// before a crash cut the log) are dropped. `None` with `changed`: the caller rewrites it.
    pub fn load(dir: &Path, log_start: Offset, log_end: Offset) -> (Epochs, bool) {
        let text = std::fs::read_to_string(path(dir)).ok();
        let mut epochs = match text.as_deref().map(decode) {
            Some(Some(epochs)) => epochs,
            Some(None) => {
                tracing::warn!(dir = %dir.display(), "an unreadable leader-epoch checkpoint: taken as epoch 0 from the log start");
                Epochs::legacy(log_start, log_end)
            }
            None => Epochs::legacy(log_start, log_end),
        };
        let changed = text.is_none() || epochs.truncate(log_end);
        (epochs, changed)
    }

    fn legacy(log_start: Offset, log_end: Offset) -> Epochs {
        let entries = if log_end > log_start {
            vec![(0, log_start)]
        } else {
            Vec::new()
        };
        Epochs { entries }
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[(i32, Offset)] {
        &self.entries
    }

    /// The newest epoch the log holds batches of.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|(epoch, _)| *epoch)
    }

    /// A batch of `epoch` starts at `offset`: a new entry if the epoch is newer than the last.
    /// Returns whether the entries changed.
    pub fn note(&mut self, epoch: i32, offset: Offset) -> bool {
        if epoch < 0 || self.latest().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|(_, start)| *start <= offset));
        self.entries.push((epoch, offset));
        true
    }

    /// The log now ends at `end`: entries starting at or past it go. Returns whether any did.
    pub fn truncate(&mut self, end: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < end);
        self.entries.len() != before
    }

    /// The log was emptied and starts again at `offset`.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Where `epoch` ends in a log ending at `log_end`: the largest epoch at or below it that the
    /// log holds and the start of the next one (the log end for the newest). `None` when the log
    /// holds no epoch at or below `epoch`.
    pub fn end_of(&self, epoch: i32, log_end: Offset) -> Option<(i32, Offset)> {
        let at = self.entries.partition_point(|(e, _)| *e <= epoch);
        if at == 0 {
            return None;
        }
        let found = self.entries[at - 1].0;
        let end = self.entries.get(at).map_or(log_end, |(_, start)| *start);
        Some((found, end))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {}\n", start.0));
        }
        text.into_bytes()
    }
}

fn decode(text: &str) -> Option<Epochs> {
    let mut lines = text.lines();
    if lines.next()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let (epoch, start) = lines.next()?.split_once(' ')?;
        let epoch: i32 = epoch.parse().ok().filter(|e| *e >= 0)?;
        let start: i64 = start.parse().ok().filter(|s| *s >= 0)?;
        entries.push((epoch, Offset(start)));
    }
    let ascending = entries
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
    ascending.then_some(Epochs { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_epochs_as_kafka_answers_them() {
        let mut epochs = Epochs::default();
        assert_eq!(epochs.end_of(3, Offset(0)), None);
        assert!(epochs.note(0, Offset(0)));
        assert!(!epochs.note(0, Offset(5)));
        assert!(epochs.note(2, Offset(10)));
        assert!(epochs.note(5, Offset(20)));
        let end = Offset(30);
        assert_eq!(epochs.end_of(0, end), Some((0, Offset(10))));
        // Epoch 1 was never written here: it ends where epoch 0 does.
        assert_eq!(epochs.end_of(1, end), Some((0, Offset(10))));
        assert_eq!(epochs.end_of(4, end), Some((2, Offset(20))));
        assert_eq!(epochs.end_of(5, end), Some((5, end)));
        assert_eq!(epochs.end_of(9, end), Some((5, end)));
        assert_eq!(
            decode(std::str::from_utf8(&epochs.encode()).unwrap()),
            Some(epochs.clone())
        );
        assert!(epochs.truncate(Offset(20)));
        assert_eq!(epochs.latest(), Some(2));
        assert!(!epochs.truncate(Offset(20)));
        assert!(decode("0\n2\n3 10\n2 20\n").is_none(), "epochs go up");
        assert!(decode("0\n2\n3 10\n").is_none(), "the count is kept");
    }

    #[test]
    fn a_log_without_the_file_had_epoch_zero_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let (epochs, changed) = Epochs::load(dir.path(), Offset(4), Offset(9));
        assert!(changed);
        assert_eq!(epochs.entries(), &[(0, Offset(4))]);
        let (empty, _) = Epochs::load(dir.path(), Offset(4), Offset(4));
        assert_eq!(empty.latest(), None);
        std::fs::write(path(dir.path()), "0\n2\n0 0\n3 50\n").unwrap();
        let (cut, changed) = Epochs::load(dir.path(), Offset(0), Offset(40));
        assert!(changed, "the entry past the end is dropped");
        assert_eq!(cut.entries(), &[(0, Offset(0))]);
    }
}
