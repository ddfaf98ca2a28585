//! Lists downloaded over HTTP(S): fetched at start and every `refresh`, kept on disk.
//!
//! A download is conditional (`If-None-Match` with the last ETag, `If-Modified-Since` with the
//! last `Last-Modified`, both kept in a file beside the list, so a restart asks the same), is
//! bounded in time (`fetch_timeout_ms`) and in size (`max_bytes`), and goes over TLS with
//! rustls and the Mozilla roots for `https://`. A body is parsed with the list's settings
//! before it goes anywhere: only a usable list replaces the copy on disk (a new file renamed
//! over the old one), and the file watcher then reloads it like any other list. A failed or
//! unusable download leaves the last good copy in force; it is logged and counted. Because
//! the good copy is on disk, a restart with the feed unreachable enforces it at once.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{SourceErrors, beside, replace, run_each};
use crate::lists::{self, ListOptions};
use crate::reload::{ListSpec, Remote};

/// One downloaded list.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub remote: Remote,
    /// Where the last good download is kept.
    pub path: PathBuf,
    pub options: ListOptions,
    pub errors: SourceErrors,
}

impl Source {
    /// The downloaded lists among `specs`.
    pub fn of(specs: &[ListSpec], errors: &SourceErrors) -> Vec<Self> {
        specs
            .iter()
            .filter_map(|spec| {
                Some(Self {
                    name: spec.name.clone(),
                    remote: spec.remote.clone()?,
                    path: spec.path.clone(),
                    options: spec.options.clone(),
                    errors: errors.clone(),
                })
            })
            .collect()
    }
}

/// What one download did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A new version is on disk.
    Updated { entries: usize, bytes: usize },
    /// The server said the copy on disk is current.
    Unchanged,
}

/// Downloads every source at once, then each at its own interval, until `shutdown`.
pub async fn run(sources: Vec<Source>, shutdown: CancellationToken) {
    run_each(sources, |source| keep_fresh(source, shutdown.clone())).await;
}

async fn keep_fresh(source: Source, shutdown: CancellationToken) {
    // Failed downloads in a row, for the log.
    let mut failed = 0u64;
    loop {
        let job = source.clone();
        let fetched = tokio::task::spawn_blocking(move || fetch(&job)).await;
        if matches!(fetched, Ok(Ok(_))) {
            failed = 0;
        }
        match fetched {
            Ok(Ok(Fetched::Updated { entries, bytes })) => {
                source.errors.succeeded(&source.name);
                tracing::info!(list = %source.name, url = %source.remote.url, entries, bytes, "list downloaded");
            }
            Ok(Ok(Fetched::Unchanged)) => {
                source.errors.succeeded(&source.name);
                tracing::debug!(list = %source.name, url = %source.remote.url, "list not modified");
            }
            Ok(Err(error)) => {
                failed += 1;
                source
                    .errors
                    .failed(&source.name, &format!("download: {error}"));
                tracing::warn!(list = %source.name, url = %source.remote.url, %error, failed, "download failed; the last good copy stays in force");
            }
            Err(error) => tracing::error!(list = %source.name, %error, "download task failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(source.remote.refresh) => {}
        }
    }
}

/// What was learnt from the server about the copy on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// The file beside a list that keeps its download's validators.
fn validators_path(path: &Path) -> PathBuf {
    beside(path, ".download.json")
}

/// Downloads a source once; see the module documentation.
pub fn fetch(source: &Source) -> Result<Fetched, String> {
    let known = if source.path.exists() {
        read_validators(&source.path)
    } else {
        Validators::default()
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(source.remote.timeout)
        .redirects(5)
        .build();
    let mut request = agent.get(&source.remote.url);
    if let Some(etag) = &known.etag {
        request = request.set("If-None-Match", etag);
    }
    if let Some(modified) = &known.last_modified {
        request = request.set("If-Modified-Since", modified);
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, _)) => return Err(format!("HTTP status {code}")),
        Err(error) => return Err(error.to_string()),
    };
    if response.status() == 304 {
        return Ok(Fetched::Unchanged);
    }
    let validators = Validators {
        etag: response.header("ETag").map(str::to_owned),
        last_modified: response.header("Last-Modified").map(str::to_owned),
    };
    let body = read_body(response, source.remote.max_bytes)?;
    let entries = check_body(&body, source)?;
    store(&source.path, &body, &validators)?;
    Ok(Fetched::Updated {
        entries,
        bytes: body.len(),
    })
}

/// The body, unless it is larger than `max_bytes`.
fn read_body(response: ureq::Response, max_bytes: u64) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|error| format!("reading the body: {error}"))?;
    if body.len() as u64 > max_bytes {
        return Err(format!("larger than max_bytes ({max_bytes})"));
    }
    Ok(body)
}

/// Parses a download with the list's settings; returns its entries, or why it is not used:
/// it does not parse, it has bad entries and no good one, or it is empty where the copy on
/// disk is not.
fn check_body(body: &[u8], source: &Source) -> Result<usize, String> {
    let parsed = lists::parse(body, &source.options)
        .map_err(|broken| format!("line {}: {}", broken.line, broken.reason))?;
    lists::check_replacement(&parsed, || {
        lists::entries_on_disk(&source.path, &source.options)
    })?;
    Ok(parsed.entries())
}

/// Writes the list and its validators, each to a new file renamed over the old one.
fn store(path: &Path, body: &[u8], validators: &Validators) -> Result<(), String> {
    let text = serde_json::to_vec(validators).map_err(|error| error.to_string())?;
    replace(&validators_path(path), &text)?;
    replace(path, body)
}

fn read_validators(path: &Path) -> Validators {
    std::fs::read(validators_path(path))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}
