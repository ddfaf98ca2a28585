//! Rotating the event file by size and age, with a retention count.
//!
//! The active file keeps its name (what a log shipper is pointed at); a rotated file is
//! renamed to `NAME.YYYYMMDDTHHMMSSZ`, which no longer ends like the active file, so a
//! shipper's `*.ndjson` pattern never reads it twice. Beyond `keep` rotated files, the oldest
//! are deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::time::rfc3339_millis;

/// When the event file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes; 0: never by size.
    pub max_bytes: u64,
    /// Rotate once the file has been written for this long; `None`: never by age.
    pub max_age: Option<Duration>,
    /// Rotated files kept; the oldest beyond are deleted.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Self::NEVER
    }
}

impl Rotation {
    pub const NEVER: Self = Self {
        max_bytes: 0,
        max_age: None,
        keep: 0,
    };

    /// Whether a file of `bytes`, written since `since`, is due.
    pub fn due(&self, bytes: u64, since: Instant) -> bool {
        let by_size = self.max_bytes > 0 && bytes >= self.max_bytes;
        let by_age = self.max_age.is_some_and(|age| since.elapsed() >= age);
        by_size || (by_age && bytes > 0)
    }
}

/// The name a rotated file gets: the active name and the time, made unique when needed.
pub fn rotated_name(active: &Path, now: SystemTime) -> PathBuf {
    let stamp: String = rfc3339_millis(now)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    let base = format!("{}.{stamp}Z", active.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Deletes the oldest rotated files of `active` beyond `keep`; returns how many it deleted.
pub fn prune(active: &Path, keep: usize) -> std::io::Result<usize> {
    let (Some(dir), Some(name)) = (active.parent(), active.file_name()) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .map(|file| file.to_string_lossy())
                .and_then(|file| {
                    file.strip_prefix(&prefix)
                        .map(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
                .unwrap_or(false)
        })
        .collect();
    // The stamps sort as the times they name.
    rotated.sort();
    let excess = rotated.len().saturating_sub(keep);
    for path in &rotated[..excess] {
        std::fs::remove_file(path)?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_leave_the_active_pattern_and_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("sinkhole-events.ndjson");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_738_211);
        let first = rotated_name(&active, time);
        assert!(
            first
                .to_string_lossy()
                .ends_with("sinkhole-events.ndjson.20260606T093011Z")
        );
        std::fs::write(&first, "x").unwrap();
        let second = rotated_name(&active, time);
        assert!(second.to_string_lossy().ends_with(".20260606T093011Z.1"));
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("events.ndjson");
        std::fs::write(&active, "").unwrap();
        for stamp in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"] {
            std::fs::write(dir.path().join(format!("events.ndjson.{stamp}")), "").unwrap();
        }
        std::fs::write(dir.path().join("events.ndjson.part"), "").unwrap();
        assert_eq!(prune(&active, 2).unwrap(), 1);
        assert!(!dir.path().join("events.ndjson.20260101T000000Z").exists());
        assert!(dir.path().join("events.ndjson.20260103T000000Z").exists());
        assert!(
            dir.path().join("events.ndjson.part").exists(),
            "not a rotated file"
        );
        assert!(active.exists());
    }

    #[test]
    fn due_by_size_or_age() {
        let rotation = Rotation {
            max_bytes: 100,
            max_age: Some(Duration::ZERO),
            keep: 1,
        };
        assert!(rotation.due(100, Instant::now()));
        assert!(rotation.due(1, Instant::now()), "age zero");
        assert!(
            !rotation.due(0, Instant::now()),
            "an empty file is not rotated"
        );
        assert!(!Rotation::NEVER.due(u64::MAX, Instant::now()));
    }
}
