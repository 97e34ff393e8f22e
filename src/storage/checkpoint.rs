//! The per-partition checkpoint file (`partition.checkpoint`), in the text shape of Kafka's
//! checkpoint files: a version line, an entry count, then `name value` lines. It holds the
//! recovery point (everything below it is durable and was checked) and the log start offset.

use std::path::{Path, PathBuf};

use super::StorageError;
use crate::io;
use crate::model::Offset;

pub const FILE_NAME: &str = "partition.checkpoint";
const VERSION: &str = "0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub recovery_point: Offset,
    pub log_start: Offset,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    format!(
        "{VERSION}\n2\nrecovery-point {}\nlog-start-offset {}\n",
        checkpoint.recovery_point, checkpoint.log_start
    )
    .into_bytes()
}

pub fn decode(text: &str) -> Option<Checkpoint> {
    let mut lines = text.lines();
    if lines.next()? != VERSION || lines.next()? != "2" {
        return None;
    }
    let mut value = |name: &str| -> Option<Offset> {
        let (key, value) = lines.next()?.split_once(' ')?;
        (key == name)
            .then(|| value.parse().ok().map(Offset))
            .flatten()
    };
    let recovery_point = value("recovery-point")?;
    let log_start = value("log-start-offset")?;
    (recovery_point.0 >= 0 && log_start.0 >= 0).then_some(Checkpoint {
        recovery_point,
        log_start,
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
        let checkpoint = Checkpoint {
            recovery_point: Offset(1234),
            log_start: Offset(7),
        };
        let text = String::from_utf8(encode(&checkpoint)).unwrap();
        assert_eq!(decode(&text), Some(checkpoint));
        assert_eq!(decode("0\n2\nrecovery-point x\nlog-start-offset 1\n"), None);
        assert_eq!(decode("1\n2\nrecovery-point 1\nlog-start-offset 1\n"), None);
        assert_eq!(decode(""), None);
    }
}
