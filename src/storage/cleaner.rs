//! Compaction (placeholder filled in below).
use super::StorageError;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanerStep {
    None,
}
#[derive(Debug, Clone, Default)]
pub struct CleanReport;

pub fn finish_interrupted_swap(_dir: &Path) -> Result<(), StorageError> {
    Ok(())
}
