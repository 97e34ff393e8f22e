//! The per-partition checkpoint file (`partition.checkpoint`), in the text shape of Kafka's
//! checkpoint files: a version line, an entry count, then `name value` lines. It holds the
//! recovery point (everything below it is durable and was checked), the log start offset, the
//! offset below which compaction has cleaned, and —
//! written only by a clean shutdown — the list of segment base offsets, so that the next open
//! neither lists the directory nor scans anything: start-up does not grow with the log.

use std::path::{Path, PathBuf};

use super::StorageError;
use crate::io;
use crate::model::Offset;

pub const FILE_NAME: &str = "partition.checkpoint";
const VERSION: &str = "0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub recovery_point: Offset,
    pub log_start: Offset,
    /// Compaction has cleaned everything below this offset.
    pub cleaner_offset: Offset,
    /// The segments' base offsets, ascending; present only after a clean shutdown.
    pub clean_segments: Option<Vec<Offset>>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    let entries = 3 + usize::from(checkpoint.clean_segments.is_some());
    let mut text = format!(
        "{VERSION}\n{entries}\nrecovery-point {}\nlog-start-offset {}\ncleaner-offset {}\n",
        checkpoint.recovery_point, checkpoint.log_start, checkpoint.cleaner_offset
    );
    if let Some(bases) = &checkpoint.clean_segments {
        text.push_str("clean-segments");
        for base in bases {
            text.push(' ');
            text.push_str(&base.0.to_string());
        }
        text.push('\n');
    }
    text.into_bytes()
}

pub fn decode(text: &str) -> Option<Checkpoint> {
    let mut lines = text.lines();
    if lines.next()? != VERSION {
        return None;
    }
    let entries: usize = lines.next()?.parse().ok()?;
    if !(3..=4).contains(&entries) {
        return None;
    }
    let mut entry = |name: &str| -> Option<&str> {
        let (key, value) = lines.next()?.split_once(' ').unwrap_or((name, ""));
        (key == name).then_some(value)
    };
    let offset = |value: &str| value.parse().ok().filter(|o| *o >= 0).map(Offset);
    let recovery_point = offset(entry("recovery-point")?)?;
    let log_start = offset(entry("log-start-offset")?)?;
    let cleaner_offset = offset(entry("cleaner-offset")?)?;
    let clean_segments = if entries == 4 {
        let bases: Option<Vec<Offset>> = entry("clean-segments")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(offset)
            .collect();
        let bases = bases?;
        let ascending = bases.windows(2).all(|w| w[0] < w[1]);
        (ascending && !bases.is_empty()).then_some(bases)
    } else {
        None
    };
    if entries == 4 && clean_segments.is_none() {
        return None;
    }
    Some(Checkpoint {
        recovery_point,
        log_start,
        cleaner_offset,
        clean_segments,
    })
}

/// Reads the checkpoint; a missing one is `None`, an unreadable one is `None` and logged (the
/// log is then scanned whole, which is safe).
pub fn read(dir: &Path) -> Option<Checkpoint> {
    let path = path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the checkpoint; recovering the whole log");
            return None;
        }
    };
    let checkpoint = decode(&text);
    if checkpoint.is_none() {
        tracing::warn!(path = %path.display(), "corrupt checkpoint; recovering the whole log");
    }
    checkpoint
}

pub async fn write(
    dir: &Path,
    checkpoint: &Checkpoint,
    faults: &io::Faults,
) -> Result<(), StorageError> {
    io::write_atomically(&path(dir), encode(checkpoint), faults).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut checkpoint = Checkpoint {
            recovery_point: Offset(1234),
            log_start: Offset(7),
            cleaner_offset: Offset(900),
            clean_segments: None,
        };
        let text = String::from_utf8(encode(&checkpoint)).unwrap();
        assert_eq!(
            text,
            "0\n3\nrecovery-point 1234\nlog-start-offset 7\ncleaner-offset 900\n"
        );
        assert_eq!(decode(&text), Some(checkpoint.clone()));
        checkpoint.clean_segments = Some(vec![Offset(0), Offset(500), Offset(1000)]);
        let text = String::from_utf8(encode(&checkpoint)).unwrap();
        assert_eq!(decode(&text), Some(checkpoint));
        assert_eq!(
            decode("0\n4\nrecovery-point 1\nlog-start-offset 1\ncleaner-offset 0\nclean-segments 5 2\n"),
            None
        );
        assert_eq!(
            decode(
                "0\n4\nrecovery-point 1\nlog-start-offset 1\ncleaner-offset 0\nclean-segments\n"
            ),
            None
        );
        assert_eq!(decode("0\n2\nrecovery-point x\nlog-start-offset 1\n"), None);
        assert_eq!(decode("1\n2\nrecovery-point 1\nlog-start-offset 1\n"), None);
        assert_eq!(decode(""), None);
    }
}
