//! IOC and allow lists: reading a list file into normalised names.
//!
//! Reading the file and parsing its text are separate steps: a file that cannot be read is an
//! error, while a bad line is counted, reported with its line number and skipped.

pub mod domain;
pub mod names;
pub mod plain;

pub use names::Names;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A line of a list that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line: usize,
    pub reason: String,
}

/// The names a list's text holds.
#[derive(Debug, Clone, Default)]
pub struct ParsedList {
    /// Shared with the policy's index, which points into it.
    pub names: Arc<Names>,
    pub skipped: Vec<SkippedLine>,
    /// Lines read, counting blank and comment lines.
    pub lines: usize,
}

/// A list read from disk.
#[derive(Debug, Clone)]
pub struct LoadedList {
    pub path: PathBuf,
    pub parsed: ParsedList,
    pub elapsed: Duration,
}

/// A list file that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read list: {source}")]
pub struct ListError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Reads and parses one list file.
pub fn load(path: &Path) -> Result<LoadedList, ListError> {
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|source| ListError {
        path: path.display().to_string(),
        source,
    })?;
    let parsed = plain::parse(&bytes);
    Ok(LoadedList {
        path: path.to_owned(),
        parsed,
        elapsed: started.elapsed(),
    })
}
