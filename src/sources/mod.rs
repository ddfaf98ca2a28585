//! Where lists come from besides local files: HTTP(S) downloads and RPZ zone transfers.
//!
//! A source writes each good copy to the list's `path`; the reloader picks it up from there
//! like any other change, so a download, a transfer and an edit take the same road into the
//! policy.

pub mod http;
pub mod zone;

use std::path::Path;

/// Writes `bytes` to a new file beside `path` and renames it over `path`, so a reader sees
/// the old file or the new one, never half of one.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    let temp = path.with_file_name(name);
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    std::fs::write(&temp, bytes).map_err(failed)?;
    std::fs::rename(&temp, path).map_err(failed)
}
