//! Loading the config and the lists, and reloading them when their files change.
//!
//! A reload reads the config file (when it changed) and every list that changed on a blocking
//! thread, builds a complete new [`Policy`], and publishes it with one atomic pointer swap: a
//! query sees the old policy or the new one, never a mix, and never waits. If any part fails
//! (a config that does not parse, a list that cannot be read, that yields only bad entries, or
//! that turns up empty where it held entries), the whole previous policy stays in force, the
//! errors are logged as `path:line: reason`, and the next change tries again.
//!
//! Policy settings of the config (lists, allowlists, exemptions, actions, sinkhole answers,
//! `server.allow_clients`) apply live; listener, upstream, cache and event settings are kept
//! as they are, with a warning that they need a restart.
//!
//! Every load, good or failed, writes a `PolicyReload` event: lists, entries added and
//! removed, SHA-256 of each file, duration, errors. A `Heartbeat` event repeats what is in
//! force at an interval. See [`watch`] for what triggers a reload.

pub mod report;
mod watch;

pub use watch::watch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::events::{ConflictEvent, EventSink, PolicyEvent};
use crate::lists::{self, FileStamp, ListError, ListOptions, LoadedList};
use crate::policy::Policy;
use crate::sources::SourceErrors;
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
    /// The file read; for a downloaded list, the last good download.
    pub path: PathBuf,
    pub options: ListOptions,
    /// Where the list is downloaded from, if it is.
    pub remote: Option<Remote>,
    /// The primary server it is transferred from, if it is an RPZ zone kept that way.
    pub transfer: Option<Transfer>,
}

/// An RPZ zone transferred from a primary server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub primary: std::net::SocketAddr,
    /// The zone, lower case without the trailing dot.
    pub zone: String,
    /// How often the SOA serial is checked.
    pub refresh: Duration,
    pub timeout: Duration,
    /// The TSIG key's name and the file of its secret.
    pub tsig: Option<(String, PathBuf)>,
}

/// A list downloaded over HTTP(S).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub url: String,
    pub refresh: Duration,
    pub timeout: Duration,
    pub max_bytes: u64,
}

impl Remote {
    fn of(
        url: Option<&String>,
        refresh: Option<crate::config::Age>,
        timeout_ms: Option<u64>,
        max_bytes: Option<u64>,
    ) -> Option<Self> {
        Some(Self {
            url: url?.clone(),
            refresh: refresh.map_or(DEFAULT_REFRESH, |age| age.0),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS)),
            max_bytes: max_bytes.unwrap_or(256 << 20),
        })
    }
}

/// A list's `refresh` and `fetch_timeout_ms` when not set.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const DEFAULT_FETCH_TIMEOUT_MS: u64 = 30_000;

/// Every list of a config, resolved: blocklists first, then allowlists, in order. `max_age`
/// counts back from `now`.
pub fn list_specs(config: &Config, now: SystemTime) -> Vec<ListSpec> {
    let blocklists = config.blocklists.iter().map(|list| {
        let options = config.blocklist_options(list, now);
        let transfer = list.primary.and_then(|primary| {
            Some(Transfer {
                primary: primary.0,
                zone: options.origin.clone()?,
                refresh: list.refresh.map_or(DEFAULT_REFRESH, |age| age.0),
                timeout: Duration::from_millis(
                    list.fetch_timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS),
                ),
                tsig: list.tsig_key.clone().zip(
                    list.tsig_secret_file
                        .as_ref()
                        .map(|path| config.resolve(path)),
                ),
            })
        });
        ListSpec {
            name: list.name.clone(),
            kind: ListKind::Blocklist,
            path: config.resolve(&list.path),
            options,
            remote: Remote::of(
                list.url.as_ref(),
                list.refresh,
                list.fetch_timeout_ms,
                list.max_bytes,
            ),
            transfer,
        }
    });
    let allowlists = config.allowlists.iter().map(|list| ListSpec {
        name: list.name.clone(),
        kind: ListKind::Allowlist,
        path: config.resolve(&list.path),
        options: config.allowlist_options(list, now),
        remote: Remote::of(
            list.url.as_ref(),
            list.refresh,
            list.fetch_timeout_ms,
            list.max_bytes,
        ),
        transfer: None,
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

/// Lists whose file is not there yet, by name, with the error that says so.
pub type Missing = Vec<(String, String)>;

/// Loads every list for `serve`: a list whose file is not there yet is empty until it
/// appears (it is watched like the others), so a site's DNS comes up while a feed is still
/// on its way; its error is returned to be reported. Any other failure is an error.
pub fn load_lists_for_serve(config: &Config) -> Result<(Vec<Arc<LoadedList>>, Missing), ListError> {
    let mut missing = Vec::new();
    let mut lists = Vec::new();
    for spec in list_specs(config, SystemTime::now()) {
        match lists::load(&spec.path, &spec.options) {
            Ok(list) => lists.push(Arc::new(list)),
            Err(error) if error.is_missing() => {
                tracing::error!(list = %spec.name, %error, "list file not there; enforced as soon as it appears");
                missing.push((spec.name.clone(), error.to_string()));
                lists.push(Arc::new(LoadedList::missing(&spec.path, &spec.options)));
            }
            Err(error) => return Err(error),
        }
    }
    Ok((lists, missing))
}

/// What started a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    FileChange,
    Hangup,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::FileChange => "file change",
            Self::Hangup => "SIGHUP",
        }
    }
}

/// Where the config comes from: its file, as last read, and the file's stamp then.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// The file's content as parsed, before command-line overrides.
    pub file: Config,
    pub stamp: Option<FileStamp>,
}

impl ConfigSource {
    /// Reads the config file; its stamp is taken first, so a change while reading is seen.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let stamp = FileStamp::of(path);
        let file = Config::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            stamp,
        })
    }
}

/// Owns the current policy, the config and the lists it was built from, and rebuilds it on
/// demand.
pub struct Reloader {
    source: ConfigSource,
    /// The config in force: the file's, with the command line's overrides.
    config: Config,
    lists: Vec<Arc<LoadedList>>,
    version: u64,
    store: Arc<ArcSwap<Policy>>,
    events: EventSink,
    /// The last error of each list (by name) whose last load failed.
    failures: HashMap<String, String>,
    /// The last error of each download or transfer that failed, for heartbeats.
    source_errors: SourceErrors,
}

impl Reloader {
    /// Builds the first policy from lists loaded already; its events go to `events`, and
    /// heartbeats report the last failure of downloads and transfers from `source_errors`.
    pub fn new(
        source: ConfigSource,
        config: Config,
        lists: Vec<Arc<LoadedList>>,
        missing: Missing,
        events: EventSink,
        source_errors: SourceErrors,
    ) -> Self {
        let started = Instant::now();
        let policy = Policy::build(&config, &lists, 1);
        log_lists(&config, &lists, &vec![true; lists.len()]);
        log_policy(&policy, started.elapsed());
        report_conflicts(&policy, &events);
        let store = Arc::new(ArcSwap::from_pointee(policy));
        let reloader = Self {
            source,
            config,
            lists,
            version: 1,
            store,
            events,
            failures: missing.into_iter().collect(),
            source_errors,
        };
        let changes = vec![report::Change::New; reloader.lists.len()];
        reloader.emit_loaded(Trigger::Start, started.elapsed(), &changes, Vec::new());
        reloader
    }

    /// The shared pointer the query path reads.
    pub fn store(&self) -> Arc<ArcSwap<Policy>> {
        self.store.clone()
    }

    /// Whether the config file or a list file changed since it was read.
    pub fn changed(&self) -> bool {
        FileStamp::of(&self.source.path) != self.source.stamp
            || self
                .lists
                .iter()
                .any(|list| FileStamp::of(&list.path) != list.stamp)
    }

    /// Reads what changed and publishes a new policy. When any part fails, nothing changes.
    pub fn reload(&mut self, trigger: Trigger) {
        let started = Instant::now();
        // Filled again by this load: each list that fails now, or is still not there.
        self.failures.clear();
        let loaded = self.next_config().and_then(|(source, config, restart)| {
            let lists = self.next_lists(&config)?;
            Ok((source, config, restart, lists))
        });
        let (source, config, restart, lists) = match loaded {
            Ok(next) => next,
            Err(errors) => {
                for error in &errors {
                    tracing::error!(%error, "reload failed; the previous policy stays in force");
                }
                self.emit_failed(trigger, started.elapsed(), errors);
                return;
            }
        };
        for key in &restart {
            tracing::warn!(key = %key, "config change needs a restart to apply; running as before");
        }

        self.version += 1;
        let policy = Policy::build(&config, &lists, self.version);
        let changes = report::changes(&self.lists, &lists);
        let fresh: Vec<bool> = changes.iter().map(|c| *c != report::Change::Same).collect();
        log_lists(&config, &lists, &fresh);
        report_conflicts(&policy, &self.events);
        self.store.store(Arc::new(policy));
        log_policy(&self.store.load(), started.elapsed());

        let elapsed = started.elapsed();
        let diffs = report::diffs(&self.lists, &lists, &changes);
        self.source = source;
        self.config = config;
        self.lists = lists;
        self.emit_loaded(trigger, elapsed, &diffs, restart);
    }

    /// The config to load with: the file's new content when it changed, with the settings
    /// that need a restart kept as they run, and the keys of those that changed.
    fn next_config(&self) -> Result<(ConfigSource, Config, Vec<String>), Vec<String>> {
        if FileStamp::of(&self.source.path) == self.source.stamp {
            return Ok((self.source.clone(), self.config.clone(), Vec::new()));
        }
        let source =
            ConfigSource::read(&self.source.path).map_err(|error| vec![error.to_string()])?;
        let restart = restart_keys(&self.source.file, &source.file);
        let mut config = source.file.clone();
        config.server.listen = self.config.server.listen.clone();
        config.server.threads = self.config.server.threads;
        config.server.tcp_idle_timeout_ms = self.config.server.tcp_idle_timeout_ms;
        config.server.max_tcp_connections = self.config.server.max_tcp_connections;
        config.upstream = self.config.upstream.clone();
        config.cache = self.config.cache.clone();
        config.events = self.config.events.clone();
        Ok((source, config, restart))
    }

    /// Every list of `config`: the copy in force when its file and settings did not change,
    /// else the file read again. Collects every failure.
    fn next_lists(&mut self, config: &Config) -> Result<Vec<Arc<LoadedList>>, Vec<String>> {
        let specs = list_specs(config, SystemTime::now());
        let mut lists = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for spec in &specs {
            let current = self.current(spec).cloned();
            let current = current.as_ref();
            if let Some(current) = current.filter(|list| unchanged(list, spec)) {
                lists.push(current.clone());
                continue;
            }
            let loaded = lists::load(&spec.path, &spec.options);
            // A list that was not there and still is not does not hold the others back.
            if let (Err(error), Some(current)) = (&loaded, current)
                && error.is_missing()
                && current.stamp.is_none()
            {
                self.failures.insert(spec.name.clone(), error.to_string());
                lists.push(current.clone());
                continue;
            }
            let loaded = loaded
                .map_err(|error| error.to_string())
                .and_then(|list| match current {
                    Some(current) => acceptable(current, list)
                        .map_err(|why| format!("{}: {why}", spec.path.display())),
                    None => Ok(list),
                });
            match loaded {
                Ok(list) => lists.push(Arc::new(list)),
                Err(error) => {
                    self.failures.insert(spec.name.clone(), error.clone());
                    errors.push(error);
                }
            }
        }
        if errors.is_empty() {
            Ok(lists)
        } else {
            Err(errors)
        }
    }

    /// The list in force for a spec: same name, same kind.
    fn current(&self, spec: &ListSpec) -> Option<&Arc<LoadedList>> {
        // The lists in force are in `list_specs` order: blocklists, then allowlists.
        let blocklists = self
            .config
            .blocklists
            .iter()
            .map(|list| (&list.name, ListKind::Blocklist));
        let allowlists = self
            .config
            .allowlists
            .iter()
            .map(|list| (&list.name, ListKind::Allowlist));
        blocklists
            .chain(allowlists)
            .zip(&self.lists)
            .find(|((name, kind), _)| **name == spec.name && *kind == spec.kind)
            .map(|(_, list)| list)
    }

    fn emit_loaded(
        &self,
        trigger: Trigger,
        took: Duration,
        diffs: &[report::Change],
        restart: Vec<String>,
    ) {
        let lists = report::lists(&self.config, &self.lists, diffs, &self.failures);
        self.emit(report::event(
            trigger,
            self.version,
            true,
            took,
            lists,
            Vec::new(),
            restart,
        ));
    }

    fn emit_failed(&self, trigger: Trigger, took: Duration, errors: Vec<String>) {
        let changes = vec![report::Change::Same; self.lists.len()];
        let lists = report::lists(&self.config, &self.lists, &changes, &self.failures);
        self.emit(report::event(
            trigger,
            self.version,
            false,
            took,
            lists,
            errors,
            Vec::new(),
        ));
    }

    /// A heartbeat: the lists in force, their age and last error, and lost events.
    pub fn heartbeat(&self) {
        let changes = vec![report::Change::Same; self.lists.len()];
        let mut lists = report::lists(&self.config, &self.lists, &changes, &self.failures);
        for list in &mut lists {
            if list.last_error.is_none() {
                list.last_error = self.source_errors.get(&list.name);
            }
        }
        let mut event = report::heartbeat(self.version, lists);
        event.sinks = Some(self.events.report());
        self.emit(event);
    }

    fn emit(&self, event: PolicyEvent) {
        self.events.emit(event);
    }

    /// How often to send a heartbeat; `None` when turned off.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        let seconds = self.config.events.heartbeat_interval_s;
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    /// The folders to watch and the file paths that matter in them: every list and the config.
    fn watched(&self) -> (HashSet<PathBuf>, HashSet<PathBuf>) {
        let mut files: HashSet<PathBuf> = list_specs(&self.config, SystemTime::now())
            .into_iter()
            .map(|spec| absolute(&spec.path))
            .collect();
        files.insert(absolute(&self.source.path));
        let dirs = files
            .iter()
            .filter_map(|path| path.parent().map(Path::to_owned))
            .collect();
        (dirs, files)
    }
}

/// Whether the list in force can stand for a fresh read: same file, same settings, and no
/// age filter that moves with the clock.
fn unchanged(list: &LoadedList, spec: &ListSpec) -> bool {
    list.path == spec.path
        && list.options_key == spec.options.key()
        && spec.options.max_age.is_none()
        && FileStamp::of(&spec.path) == list.stamp
}

/// The config keys that differ between two versions of the file and need a restart.
fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            keys.push(key.to_owned());
        }
    };
    check("server.listen", old.server.listen != new.server.listen);
    check("server.threads", old.server.threads != new.server.threads);
    check(
        "server.tcp_idle_timeout_ms",
        old.server.tcp_idle_timeout_ms != new.server.tcp_idle_timeout_ms,
    );
    check(
        "server.max_tcp_connections",
        old.server.max_tcp_connections != new.server.max_tcp_connections,
    );
    check("upstream", old.upstream != new.upstream);
    check("cache", old.cache != new.cache);
    check("events", old.events != new.events);
    type Sources = Vec<(String, Option<Remote>, Option<Transfer>)>;
    let remotes = |config: &Config| -> Sources {
        list_specs(config, SystemTime::UNIX_EPOCH)
            .into_iter()
            .map(|spec| (spec.name, spec.remote, spec.transfer))
            .collect()
    };
    check(
        "url, primary, refresh, fetch_timeout_ms or max_bytes of a list",
        remotes(old) != remotes(new),
    );
    keys
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Whether a freshly read list may replace the one in force. A list with no usable entry but
/// bad ones is broken, and so is an empty file where entries were before (a truncated
/// download, or an editor caught halfway): either fails the reload.
fn acceptable(current: &LoadedList, list: LoadedList) -> Result<LoadedList, String> {
    lists::check_replacement(&list.parsed, || current.parsed.entries()).map(|()| list)
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
fn report_conflicts(policy: &Policy, events: &EventSink) {
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
    let time = SystemTime::now();
    for conflict in &conflicts.found {
        events.emit(ConflictEvent {
            time,
            conflict: conflict.clone(),
        });
    }
}
