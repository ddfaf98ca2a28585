//! Loading the lists, and reloading them when their files change.
//!
//! A reload reads every list again on a blocking thread, builds a complete new [`Policy`],
//! and publishes it with one atomic pointer swap: a query sees the old policy or the new one,
//! never a mix, and never waits. A list that cannot be read, that yields no names but bad
//! lines, or that turns up empty where it held names, keeps its last good version and the
//! error is logged; the other lists still update.
//!
//! The folders of the list files are watched (not the files), so editors that write a new file
//! and rename it over the old one, and files deleted then created again, are all seen. Bursts
//! of changes are folded into one reload. SIGHUP reloads too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{ConflictEvent, EventSink};
use crate::lists::{self, ListError, ListOptions, LoadedList};
use crate::policy::Policy;

/// Quiet time after the last file event before a reload starts.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Bad lines logged per list and load; the rest are counted.
const SKIPPED_SHOWN: usize = 5;
/// Conflicts logged per load; the rest are counted, and written as events.
const CONFLICTS_SHOWN: usize = 10;

/// Whether a list blocks or protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Blocklist,
    Allowlist,
}

impl ListKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocklist => "blocklist",
            Self::Allowlist => "allowlist",
        }
    }
}

/// One list of a config: where it is and how to read it.
#[derive(Debug, Clone)]
pub struct ListSpec {
    pub name: String,
    pub kind: ListKind,
    pub path: PathBuf,
    pub options: ListOptions,
}

/// Every list of a config, resolved: blocklists first, then allowlists, in order. `max_age`
/// counts back from `now`.
pub fn list_specs(config: &Config, now: SystemTime) -> Vec<ListSpec> {
    let blocklists = config.blocklists.iter().map(|list| ListSpec {
        name: list.name.clone(),
        kind: ListKind::Blocklist,
        path: config.resolve(&list.path),
        options: config.blocklist_options(list, now),
    });
    let allowlists = config.allowlists.iter().map(|list| ListSpec {
        name: list.name.clone(),
        kind: ListKind::Allowlist,
        path: config.resolve(&list.path),
        options: config.allowlist_options(list, now),
    });
    blocklists.chain(allowlists).collect()
}

/// Loads every list; the first that cannot be used is an error.
pub fn load_lists(config: &Config) -> Result<Vec<Arc<LoadedList>>, ListError> {
    list_specs(config, SystemTime::now())
        .iter()
        .map(|spec| lists::load(&spec.path, &spec.options).map(Arc::new))
        .collect()
}

/// Owns the current policy and the lists it was built from, and rebuilds it on demand.
pub struct Reloader {
    config: Config,
    lists: Vec<Arc<LoadedList>>,
    version: u64,
    store: Arc<ArcSwap<Policy>>,
    events: Option<EventSink>,
}

impl Reloader {
    /// Builds the first policy from lists loaded already; conflicts go to `events`.
    pub fn new(config: Config, lists: Vec<Arc<LoadedList>>, events: Option<EventSink>) -> Self {
        let started = Instant::now();
        let policy = Policy::build(&config, &lists, 1);
        log_lists(&config, &lists, &vec![true; lists.len()]);
        log_policy(&policy, started.elapsed());
        report_conflicts(&policy, events.as_ref());
        let store = Arc::new(ArcSwap::from_pointee(policy));
        Self {
            config,
            lists,
            version: 1,
            store,
            events,
        }
    }

    /// The shared pointer the query path reads.
    pub fn store(&self) -> Arc<ArcSwap<Policy>> {
        self.store.clone()
    }

    /// Reads every list again and publishes a new policy. Returns how many lists failed.
    pub fn reload(&mut self) -> usize {
        let started = Instant::now();
        let specs = list_specs(&self.config, SystemTime::now());
        let mut fresh = vec![false; self.lists.len()];
        for ((slot, spec), fresh) in self.lists.iter_mut().zip(&specs).zip(&mut fresh) {
            let loaded = lists::load(&spec.path, &spec.options)
                .map_err(|error| error.to_string())
                .and_then(|list| {
                    acceptable(slot, list).map_err(|why| format!("{}: {why}", spec.path.display()))
                });
            match loaded {
                Ok(list) => {
                    *slot = Arc::new(list);
                    *fresh = true;
                }
                Err(error) => {
                    tracing::error!(list = %spec.name, %error, "list not reloaded; keeping its last good version");
                }
            }
        }
        let failed = fresh.iter().filter(|fresh| !**fresh).count();
        if failed == fresh.len() {
            tracing::error!(
                version = self.version,
                "no list could be reloaded; the policy stays as it is"
            );
            return failed;
        }

        self.version += 1;
        let policy = Policy::build(&self.config, &self.lists, self.version);
        log_lists(&self.config, &self.lists, &fresh);
        report_conflicts(&policy, self.events.as_ref());
        self.store.store(Arc::new(policy));
        log_policy(&self.store.load(), started.elapsed());
        failed
    }

    /// Whether a list file changed since it was loaded: a change made before the watcher
    /// started is not reported by it.
    fn changed_since_load(&self) -> bool {
        self.lists
            .iter()
            .any(|list| lists::FileStamp::of(&list.path) != list.stamp)
    }

    /// The folders to watch and the file paths that matter in them.
    fn watched(&self) -> (HashSet<PathBuf>, HashSet<PathBuf>) {
        let files: HashSet<PathBuf> = list_specs(&self.config, SystemTime::now())
            .into_iter()
            .map(|spec| absolute(&spec.path))
            .collect();
        let dirs = files
            .iter()
            .filter_map(|path| path.parent().map(Path::to_owned))
            .collect();
        (dirs, files)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Whether a freshly read list may replace the one in force. A list with no usable entry but
/// bad ones is broken, and so is an empty file where entries were before (a truncated
/// download, or an editor caught halfway): both keep the last good version.
fn acceptable(current: &LoadedList, list: LoadedList) -> Result<LoadedList, String> {
    if list.parsed.entries() > 0 {
        return Ok(list);
    }
    if let Some(first) = list.parsed.skipped.lines.first() {
        return Err(format!(
            "no valid entry; line {}: {}",
            first.line, first.reason
        ));
    }
    let count = current.parsed.entries();
    if count > 0 {
        return Err(format!("empty list would replace {count} entries"));
    }
    Ok(list)
}

fn log_lists(config: &Config, lists: &[Arc<LoadedList>], fresh: &[bool]) {
    let specs = list_specs(config, SystemTime::now());
    let loaded = specs.iter().zip(lists).zip(fresh);
    for ((spec, list), _) in loaded.filter(|(_, fresh)| **fresh) {
        let parsed = &list.parsed;
        tracing::info!(
            list = %spec.name,
            path = %list.path.display(),
            format = parsed.format.name(),
            names = parsed.block.len(),
            exceptions = parsed.allow.len(),
            response_ips = parsed.response_ips.len(),
            client_ips = parsed.client_ips.len(),
            invalid = parsed.skipped.invalid,
            unsupported = parsed.skipped.unsupported_total(),
            low_confidence = parsed.skipped.low_confidence,
            expired = parsed.skipped.expired,
            took_ms = list.elapsed.as_secs_f64() * 1000.0,
            "list loaded"
        );
        for skipped in parsed.skipped.lines.iter().take(SKIPPED_SHOWN) {
            tracing::warn!(
                "{}:{}: {} (entry skipped)",
                list.path.display(),
                skipped.line,
                skipped.reason
            );
        }
    }
}

fn log_policy(policy: &Policy, took: Duration) {
    let memory = crate::memory::Memory::read();
    tracing::info!(
        version = policy.version,
        blocked_names = policy.blocked_names(),
        ip_triggers = policy.ip_triggers(),
        allowed_names = policy.allowed_names(),
        conflicts = policy.conflicts.total,
        index_mib = policy.index_bytes() as f64 / (1024.0 * 1024.0),
        rss_mib = memory.rss_mib,
        peak_rss_mib = memory.peak_mib,
        took_ms = took.as_secs_f64() * 1000.0,
        "policy published"
    );
}

/// Tells of blocklist entries that allowlists protect: a log line for each of the first few,
/// one for the count, and an event for each one kept.
fn report_conflicts(policy: &Policy, events: Option<&EventSink>) {
    let conflicts = &policy.conflicts;
    for conflict in conflicts.found.iter().take(CONFLICTS_SHOWN) {
        tracing::warn!(
            list = %conflict.list.name,
            entry = %conflict.entry,
            allowlist = %conflict.allowlist,
            protected_by = %conflict.protected_by,
            "blocklist entry overridden by an allowlist"
        );
    }
    if conflicts.total > CONFLICTS_SHOWN {
        tracing::warn!(
            conflicts = conflicts.total,
            events = conflicts.found.len(),
            "more blocklist entries are overridden by allowlists than are logged"
        );
    }
    let Some(events) = events else {
        return;
    };
    let time = SystemTime::now();
    for conflict in &conflicts.found {
        events.emit(ConflictEvent {
            time,
            version: policy.version,
            conflict: conflict.clone(),
        });
    }
}

/// Watches the list folders and SIGHUP, and reloads until `shutdown` is cancelled.
pub async fn watch(reloader: Reloader, shutdown: CancellationToken) {
    let (dirs, files) = reloader.watched();
    let (changes, mut changed) = mpsc::channel::<()>(1);
    let watcher = start_watcher(&dirs, files, changes.clone());
    let mut hangup = hangup_signal();
    tracing::info!(folders = dirs.len(), "watching list files");
    if reloader.changed_since_load() {
        let _ = changes.try_send(());
    }

    let reloader = Arc::new(std::sync::Mutex::new(reloader));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = changed.recv() => {
                // Fold a burst of events (write, rename, chmod) into one reload.
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
            }
            Some(()) = recv_signal(&mut hangup) => tracing::info!("SIGHUP: reloading lists"),
        }
        let reloader = reloader.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            reloader
                .lock()
                .map(|mut reloader| reloader.reload())
                .unwrap_or(0)
        });
        if let Err(error) = reloaded.await {
            tracing::error!(%error, "reload task failed; the previous policy stays");
        }
    }
    drop(watcher);
}

fn start_watcher(
    dirs: &HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    changes: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|path| files.contains(path)) {
            // A full channel already holds a pending change.
            let _ = changes.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "cannot watch list files; only SIGHUP reloads them");
            return None;
        }
    };
    for dir in dirs {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %dir.display(), %error, "cannot watch folder; SIGHUP still reloads");
        }
    }
    Some(watcher)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv_signal(signal: &mut Hangup) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_signal(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}
