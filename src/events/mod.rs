//! Sinkhole events: built on the query path, written to a JSON-lines file by a thread of
//! their own.
//!
//! The query path hands each event to a bounded queue and never waits: when the queue is
//! full the event is dropped and counted. The writer thread wakes every few milliseconds,
//! drains the queue, writes one line per event, flushes, and reports drops and write failures
//! at most once a minute. A write failure (a full disk, say) loses the events of that write and
//! is counted; the writer keeps going with the next event.
//!
//! Besides the file, every event may also go to a syslog collector ([`syslog`], on a thread
//! of its own behind a bounded queue: [`relay`]) and to the
//! Logs Ingestion API ([`ingestion`], through an on-disk spool and a thread of its own). What
//! each sink delivered and lost is in [`EventSink::report`], which heartbeats carry.

pub mod dedup;
pub mod ingestion;
pub mod record;
pub mod relay;
pub mod rotate;
pub mod syslog;
pub mod time;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use record::{ConflictEvent, Device, ListReport, Outcome, PolicyEvent, QueryEvent, Transport};
pub use rotate::Rotation;

/// At most one report a minute, for warnings that would otherwise come once per event.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// True when no report was made in the last minute; then counts this one as made.
    pub(crate) fn due(&mut self) -> bool {
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(60));
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// The event log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot open event log: {source}")]
pub struct EventLogError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Counters of the event log, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct EventCounters {
    pub written: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Lost because the file could not be written.
    pub failed: AtomicU64,
}

/// Per sink, what it delivered and lost so far; heartbeats carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Dropped before any sink saw them: the queue was full.
    pub queue_dropped: u64,
    pub file_written: u64,
    pub file_failed: u64,
    /// When a syslog collector is configured.
    pub syslog: Option<RelayReport>,
    pub logs_ingestion: Option<IngestionReport>,
}

/// A relayed sink's part of a [`SinkReport`]: sent, not delivered, and dropped because it
/// fell behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// The Logs Ingestion sink's part of a [`SinkReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestionReport {
    pub sent: u64,
    pub dropped: u64,
    pub backlog_bytes: u64,
    pub backlog_batches: u64,
    pub last_error: Option<String>,
}

/// The sinks beside the file, and what the writer does before them.
#[derive(Default)]
pub struct Sinks {
    pub rotation: Rotation,
    /// The de-duplication window, when `events.dedup_window_s` is set.
    pub dedup: Option<Duration>,
    pub syslog: Option<syslog::SyslogConfig>,
    pub ingestion: Option<ingestion::Ingestion>,
}

/// Any event the log writes.
#[derive(Debug, Clone)]
pub enum Event {
    Query(QueryEvent),
    Conflict(ConflictEvent),
    Policy(PolicyEvent),
}

impl From<PolicyEvent> for Event {
    fn from(event: PolicyEvent) -> Self {
        Self::Policy(event)
    }
}

impl From<QueryEvent> for Event {
    fn from(event: QueryEvent) -> Self {
        Self::Query(event)
    }
}

impl From<ConflictEvent> for Event {
    fn from(event: ConflictEvent) -> Self {
        Self::Conflict(event)
    }
}

impl Event {
    fn write_json(&self, device: &Device, out: &mut String) {
        match self {
            Self::Query(event) => event.write_json(device, out),
            Self::Conflict(event) => event.write_json(device, out),
            Self::Policy(event) => event.write_json(device, out),
        }
    }
}

enum Message {
    Event(Box<Event>),
    Close,
}

/// The query path's handle on the event log. Cloning it is cheap.
#[derive(Clone)]
pub struct EventSink {
    queue: SyncSender<Message>,
    counters: Arc<EventCounters>,
    syslog: Option<Arc<relay::RelayCounters>>,
    ingestion: Option<Arc<ingestion::IngestionCounters>>,
}

impl EventSink {
    /// What each sink delivered and lost so far.
    pub fn report(&self) -> SinkReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        SinkReport {
            queue_dropped: load(&counters.dropped),
            file_written: load(&counters.written),
            file_failed: load(&counters.failed),
            syslog: self.syslog.as_ref().map(|syslog| RelayReport {
                sent: load(&syslog.sent),
                failed: load(&syslog.failed),
                dropped: load(&syslog.dropped),
            }),
            logs_ingestion: self.ingestion.as_ref().map(|ingestion| IngestionReport {
                sent: load(&ingestion.sent),
                dropped: load(&ingestion.dropped),
                backlog_bytes: load(&ingestion.backlog_bytes),
                backlog_batches: load(&ingestion.backlog_batches),
                last_error: ingestion.last_error(),
            }),
        }
    }

    /// Queues an event without waiting; a full queue drops it and counts the drop.
    pub fn emit(&self, event: impl Into<Event>) {
        match self.queue.try_send(Message::Event(Box::new(event.into()))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread; [`EventLog::close`] flushes every queued event and stops it.
pub struct EventLog {
    sink: EventSink,
    thread: Option<JoinHandle<()>>,
}

impl EventLog {
    /// Opens (appends to) the log file, creating its folder, and starts the writer.
    pub fn open(
        path: &Path,
        queue: usize,
        device: Device,
        sinks: Sinks,
    ) -> Result<Self, EventLogError> {
        let error = |source| EventLogError {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;

        let bytes = file.metadata().map_or(0, |metadata| metadata.len());
        let (sender, receiver) = mpsc::sync_channel(queue);
        let counters = Arc::new(EventCounters::default());
        let Sinks {
            rotation,
            dedup,
            syslog,
            ingestion,
        } = sinks;
        let syslog = match syslog {
            Some(config) => Some(start_syslog(config, &device.hostname).map_err(error)?),
            None => None,
        };
        let sink = EventSink {
            queue: sender,
            counters: counters.clone(),
            syslog: syslog.as_ref().map(relay::Relay::counters),
            ingestion: ingestion.as_ref().map(ingestion::Ingestion::counters),
        };
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, file),
            rotation,
            bytes,
            since: Instant::now(),
            dedup: dedup.map(dedup::Dedup::new),
            syslog,
            ingestion,
            device,
            counters: counters.clone(),
            path: path.to_owned(),
            throttle: Throttle::default(),
            reported_dropped: 0,
            reported_failed: 0,
            line: String::with_capacity(2048),
        };
        let thread = std::thread::Builder::new()
            .name("sinkhole-events".into())
            .spawn(move || writer.run(receiver))
            .map_err(error)?;

        Ok(Self {
            sink,
            thread: Some(thread),
        })
    }

    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Writes every event queued so far, then stops the writer. Waits at most `grace`.
    pub fn close(mut self, grace: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let queue = self.sink.queue.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Blocks while the queue is full; the writer is draining it.
            let _ = queue.send(Message::Close);
            let _ = thread.join();
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(grace).is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "event log not flushed in time"
            );
        }
        let counters = &self.sink.counters;
        tracing::info!(
            written = counters.written.load(Ordering::Relaxed),
            dropped = counters.dropped.load(Ordering::Relaxed),
            failed = counters.failed.load(Ordering::Relaxed),
            "event log closed"
        );
    }
}

struct Writer {
    out: BufWriter<File>,
    rotation: Rotation,
    /// Open de-duplication windows, when `events.dedup_window_s` is set.
    dedup: Option<dedup::Dedup>,
    /// The syslog collector every event also goes to, if one is configured.
    syslog: Option<relay::Relay>,
    /// The Logs Ingestion sink's spool, if one is configured.
    ingestion: Option<ingestion::Ingestion>,
    /// Bytes in the active file, and since when it has been written.
    bytes: u64,
    since: Instant,
    device: Device,
    counters: Arc<EventCounters>,
    path: PathBuf,
    throttle: Throttle,
    reported_dropped: u64,
    reported_failed: u64,
    /// Reused for every line.
    line: String,
}

/// How long the writer sleeps between two drains of the queue. Sleeping instead of
/// blocking on the queue means the query path never pays for waking the writer up.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);
/// Events a relayed sink may have waiting before it drops them.
const RELAY_QUEUE: usize = 10_000;
/// How long a relayed sink gets at shutdown to send what it has waiting.
const SINK_GRACE: Duration = Duration::from_secs(2);

/// The syslog sink on a thread of its own, so a slow collector holds nothing else up.
fn start_syslog(config: syslog::SyslogConfig, hostname: &str) -> std::io::Result<relay::Relay> {
    let mut collector = syslog::Syslog::new(config, hostname);
    relay::Relay::start("syslog", RELAY_QUEUE, move |line| collector.send(line))
}

impl Writer {
    fn run(mut self, queue: Receiver<Message>) {
        let mut pending = 0usize;
        loop {
            loop {
                match queue.try_recv() {
                    Ok(Message::Event(event)) => self.write(&event, &mut pending),
                    Ok(Message::Close) | Err(TryRecvError::Disconnected) => {
                        self.write_summaries(true, &mut pending);
                        self.flush(&mut pending);
                        if let Some(syslog) = self.syslog.take() {
                            syslog.finish(SINK_GRACE);
                        }
                        if let Some(ingestion) = self.ingestion.take() {
                            ingestion.finish();
                        }
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.write_summaries(false, &mut pending);
            self.flush(&mut pending);
            if let Some(ingestion) = &mut self.ingestion {
                ingestion.tick();
            }
            if self.rotation.due(self.bytes, self.since) {
                self.rotate();
            }
            self.report();
            std::thread::sleep(DRAIN_INTERVAL);
        }
    }

    fn write(&mut self, event: &Event, pending: &mut usize) {
        if let (Event::Query(query), Some(dedup)) = (event, &mut self.dedup)
            && !dedup.admit(query, Instant::now())
        {
            // Held as a repeat; its count is written when the window closes. It is not
            // lost, so it counts as written.
            self.counters.written.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.write_line(event, pending);
    }

    /// Writes the summaries of the de-duplication windows that closed (all with `everything`).
    fn write_summaries(&mut self, everything: bool, pending: &mut usize) {
        let Some(dedup) = &mut self.dedup else {
            return;
        };
        for summary in dedup.closed(Instant::now(), everything) {
            // The summary stands for repeats already counted as written.
            self.counters.written.fetch_sub(1, Ordering::Relaxed);
            self.write_line(&Event::Query(summary), pending);
        }
    }

    fn write_line(&mut self, event: &Event, pending: &mut usize) {
        self.line.clear();
        event.write_json(&self.device, &mut self.line);
        self.line.push('\n');
        match self.out.write_all(self.line.as_bytes()) {
            Ok(()) => {
                *pending += 1;
                self.bytes += self.line.len() as u64;
            }
            Err(error) => self.fail(&error, 1),
        }
        if let Some(syslog) = &mut self.syslog {
            syslog.push(&self.line);
        }
        if let Some(ingestion) = &mut self.ingestion {
            ingestion.append(&self.line);
        }
        if self.rotation.max_bytes > 0 && self.bytes >= self.rotation.max_bytes {
            self.flush(pending);
            self.rotate();
        }
    }

    /// Renames the active file aside, opens a new one, and deletes the oldest rotated files.
    fn rotate(&mut self) {
        let rotated = rotate::rotated_name(&self.path, std::time::SystemTime::now());
        let reopened = std::fs::rename(&self.path, &rotated).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        });
        match reopened {
            Ok(file) => {
                // Everything was flushed before the rename, so nothing is left to discard.
                let _old =
                    std::mem::replace(&mut self.out, BufWriter::with_capacity(64 * 1024, file));
                self.bytes = 0;
                self.since = Instant::now();
                match rotate::prune(&self.path, self.rotation.keep) {
                    Ok(deleted) => {
                        tracing::info!(rotated = %rotated.display(), deleted, "event file rotated");
                    }
                    Err(error) => {
                        tracing::warn!(path = %self.path.display(), %error, "cannot delete old event files");
                    }
                }
            }
            Err(error) => {
                // Keep writing to the file as it is; the next write tries again.
                self.since = Instant::now();
                tracing::error!(path = %self.path.display(), %error, "cannot rotate the event file");
            }
        }
    }

    fn flush(&mut self, pending: &mut usize) {
        if *pending == 0 {
            return;
        }
        match self.out.flush() {
            Ok(()) => {
                self.counters
                    .written
                    .fetch_add(*pending as u64, Ordering::Relaxed);
            }
            Err(error) => {
                // The buffered lines are counted as lost, so they must not be written
                // later: `into_parts` discards them where dropping the writer would retry.
                let lost = *pending;
                if let Ok(file) = self.out.get_ref().try_clone() {
                    let fresh = BufWriter::with_capacity(64 * 1024, file);
                    let _discarded = std::mem::replace(&mut self.out, fresh).into_parts();
                }
                self.fail(&error, lost);
            }
        }
        *pending = 0;
    }

    fn fail(&mut self, error: &std::io::Error, lost: usize) {
        self.counters
            .failed
            .fetch_add(lost as u64, Ordering::Relaxed);
        if self.throttle.due() {
            tracing::error!(path = %self.path.display(), %error, lost, "cannot write events");
        }
    }

    fn report(&mut self) {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let failed = self.counters.failed.load(Ordering::Relaxed);
        if (dropped == self.reported_dropped && failed == self.reported_failed)
            || !self.throttle.due()
        {
            return;
        }
        tracing::warn!(
            dropped_total = dropped,
            dropped_new = dropped - self.reported_dropped,
            failed_total = failed,
            "events were lost: queue full or log not writable"
        );
        self.reported_dropped = dropped;
        self.reported_failed = failed;
    }
}

#[cfg(test)]
mod tests {
    use super::record::tests::{device, event};
    use super::*;

    fn log_events(path: &Path, count: usize) -> Arc<EventCounters> {
        let log = EventLog::open(path, 16 * count, device(), Sinks::default()).unwrap();
        let sink = log.sink();
        (0..count).for_each(|_| sink.emit(event(Outcome::Blocked)));
        let counters = sink.counters.clone();
        log.close(Duration::from_secs(5));
        counters
    }

    #[test]
    fn close_writes_every_queued_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/events.ndjson");
        let counters = log_events(&path, 500);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 500);
        assert_eq!(counters.written.load(Ordering::Relaxed), 500);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let rotation = Rotation {
            max_bytes: 20_000,
            max_age: None,
            keep: 2,
        };
        let sinks = Sinks {
            rotation,
            ..Sinks::default()
        };
        let log = EventLog::open(&path, 10_000, device(), sinks).unwrap();
        let sink = log.sink();
        for round in 0..5 {
            (0..40).for_each(|_| sink.emit(event(Outcome::Blocked)));
            // Rotated names carry the second: keep them apart.
            std::thread::sleep(Duration::from_millis(if round < 4 { 1100 } else { 100 }));
        }
        log.close(Duration::from_secs(5));
        let rotated: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("events.ndjson."))
            .collect();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let active = std::fs::metadata(&path).unwrap().len();
        assert!(active < 20_000 + 2_000, "{active}");
        for name in &rotated {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(
                text.lines()
                    .all(|line| line.starts_with('{') && line.ends_with('}'))
            );
        }
    }

    /// `/dev/full` fails every write with ENOSPC, as a full disk does.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_loses_events_and_counts_them() {
        let counters = log_events(Path::new("/dev/full"), 300);
        assert_eq!(counters.written.load(Ordering::Relaxed), 0);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 300);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            EventLog::open(&dir.path().join("e.ndjson"), 1, device(), Sinks::default()).unwrap();
        let sink = log.sink();
        (0..10_000).for_each(|_| sink.emit(event(Outcome::Blocked)));
        let dropped = sink.counters.dropped.load(Ordering::Relaxed);
        let counters = sink.counters.clone();
        log.close(Duration::from_secs(5));
        assert!(dropped > 0, "a queue of one cannot hold 10,000 events");
        let written = counters.written.load(Ordering::Relaxed);
        assert_eq!(
            written + dropped,
            10_000,
            "every event is written or counted as dropped"
        );
    }

    /// A collector that takes the connection but never reads: once the socket buffers are
    /// full, every write to it waits for its timeout.
    #[test]
    fn a_stalled_syslog_collector_holds_up_neither_the_file_nor_the_queue() {
        let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config: syslog::SyslogConfig = toml::from_str(&format!(
            "address = \"{}\"\ntransport = \"tcp\"",
            collector.local_addr().unwrap()
        ))
        .unwrap();
        let held = std::thread::spawn(move || collector.accept().map(|(stream, _)| stream));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let sinks = Sinks {
            syslog: Some(config),
            ..Sinks::default()
        };
        let log = EventLog::open(&path, 100_000, device(), sinks).unwrap();
        let sink = log.sink();
        let started = Instant::now();
        (0..30_000).for_each(|_| sink.emit(event(Outcome::Blocked)));
        let report = loop {
            let report = sink.report();
            if report.file_written == 30_000 || started.elapsed() > Duration::from_secs(20) {
                break report;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        log.close(Duration::from_secs(5));

        assert_eq!(report.file_written, 30_000, "{report:?}");
        assert_eq!(report.queue_dropped, 0, "{report:?}");
        let syslog = report.syslog.unwrap();
        assert!(syslog.dropped > 0, "the collector fell behind: {syslog:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            30_000
        );
        drop(held);
    }
}
