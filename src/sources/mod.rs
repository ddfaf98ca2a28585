//! Where lists come from besides local files: HTTP(S) downloads and RPZ zone transfers.
//!
//! A source writes each good copy to the list's `path`; the reloader picks it up from there
//! like any other change, so a download, a transfer and an edit take the same road into the
//! policy.

pub mod http;
pub mod tsig;
pub mod zone;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The last failure of each source (by list name) whose last download or transfer failed,
/// shared with the heartbeat.
#[derive(Debug, Clone, Default)]
pub struct SourceErrors(Arc<Mutex<HashMap<String, String>>>);

impl SourceErrors {
    pub fn failed(&self, list: &str, error: &str) {
        if let Ok(mut errors) = self.0.lock() {
            errors.insert(list.to_owned(), error.to_owned());
        }
    }

    pub fn succeeded(&self, list: &str) {
        if let Ok(mut errors) = self.0.lock() {
            errors.remove(list);
        }
    }

    pub fn get(&self, list: &str) -> Option<String> {
        self.0.lock().ok()?.get(list).cloned()
    }
}

/// Runs `task` for every source at once until each returns (at shutdown).
pub async fn run_each<S, F>(sources: Vec<S>, task: impl Fn(S) -> F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = sources
        .into_iter()
        .map(|source| tokio::spawn(task(source)))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// The file beside `path` whose name is `path`'s with `suffix` added: where a source keeps
/// what it knows about the copy, and where it writes a new copy before the rename.
fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`, so a reader sees
/// the old file or the new one, never half of one.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temp = beside(path, ".part");
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    std::fs::write(&temp, bytes).map_err(failed)?;
    std::fs::rename(&temp, path).map_err(failed)
}
