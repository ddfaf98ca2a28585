//! The uploader thread: sends the spool's batches, oldest first, and decides what a failed
//! request means.
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | the batch is deleted |
//! | 429, 5xx | retried after `Retry-After` (seconds), else after the backoff |
//! | 401 | the token is fetched again, then retried |
//! | 400, 413 | the service will never take this batch: it is deleted and its events dropped |
//! | other 4xx (403 no permission, 404 no such DCR or stream), no answer | retried after the backoff |
//!
//! The backoff doubles from 1 s to `max_backoff_ms` (default 60 s), with ±20 % jitter, and
//! resets after a success.
//! Between waits the spool is pruned to its bound, so an outage of any length fills it at most
//! to `spool_max_bytes`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::spool::{self, Batch};
use super::token::TokenSource;
use super::{Credentials, DRAIN_AT_STOP, IngestionConfig, IngestionCounters};
use crate::events::Throttle;

/// A stop request the uploader can wait on.
#[derive(Debug, Default)]
pub struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub fn request(&self) {
        if let Ok(mut requested) = self.requested.lock() {
            *requested = true;
        }
        self.wake.notify_all();
    }

    fn requested(&self) -> bool {
        self.requested.lock().map_or(true, |requested| *requested)
    }

    /// Sleeps for `time` or until a stop is requested; true when one is.
    fn wait(&self, time: Duration) -> bool {
        let Ok(requested) = self.requested.lock() else {
            return true;
        };
        self.wake
            .wait_timeout_while(requested, time, |requested| !*requested)
            .map_or(true, |(requested, _)| *requested)
    }
}

/// What to do after one attempt at a batch.
#[derive(Debug, PartialEq)]
enum Outcome {
    Sent(u64),
    Retry { after: Duration, reason: String },
    Drop { events: u64, reason: String },
}

/// How long the uploader looks again at an empty spool.
const IDLE: Duration = Duration::from_millis(200);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub struct Uploader {
    dir: PathBuf,
    max_bytes: u64,
    url: String,
    agent: ureq::Agent,
    tokens: TokenSource,
    counters: Arc<IngestionCounters>,
    backoff: Backoff,
    failing_since: Option<Instant>,
    /// When a failure, and a drop, were last logged.
    reported: Throttle,
    reported_drop: Throttle,
}

impl Uploader {
    pub fn new(
        config: &IngestionConfig,
        dir: &Path,
        credentials: Credentials,
        tls: Arc<rustls::ClientConfig>,
        counters: Arc<IngestionCounters>,
    ) -> Self {
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls)
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirects(0)
            .build();
        Self {
            dir: dir.to_owned(),
            max_bytes: config.spool_max_bytes,
            url: config.url(),
            agent,
            tokens: TokenSource::new(credentials, config),
            counters,
            backoff: Backoff::new(Duration::from_millis(config.max_backoff_ms)),
            failing_since: None,
            reported: Throttle::default(),
            reported_drop: Throttle::default(),
        }
    }

    pub fn run(mut self, stop: &Stop) {
        let mut deadline = None;
        loop {
            if stop.requested() {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_AT_STOP);
                if Instant::now() >= deadline {
                    return;
                }
            }
            let Some(batch) = self.oldest() else {
                if stop.requested() {
                    return;
                }
                // Until the writer seals a batch, or a stop comes: the next look then finds
                // the batch sealed at the stop.
                stop.wait(IDLE);
                continue;
            };
            match self.send(&batch) {
                Outcome::Sent(events) => self.sent(&batch, events),
                Outcome::Drop { events, reason } => self.drop_batch(&batch, events, &reason),
                Outcome::Retry { after, reason } => {
                    self.failed(reason);
                    if stop.requested() {
                        // No point in waiting: the batch stays spooled for the next start.
                        return;
                    }
                    self.wait(stop, after);
                }
            }
        }
    }

    /// The oldest batch after pruning the spool to its bound; records the backlog.
    fn oldest(&mut self) -> Option<Batch> {
        let mut batches = match spool::batches(&self.dir) {
            Ok(batches) => batches,
            Err(error) => {
                self.failed(format!("spool {}: {error}", self.dir.display()));
                return None;
            }
        };
        match spool::prune(&mut batches, self.max_bytes) {
            Ok(0) => {}
            Ok(dropped) => {
                self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
                self.warn_dropped(dropped, "spool full: oldest events deleted");
            }
            Err(error) => self.failed(format!("spool {}: {error}", self.dir.display())),
        }
        let bytes = batches.iter().map(|batch| batch.bytes).sum();
        self.counters.backlog_bytes.store(bytes, Ordering::Relaxed);
        self.counters
            .backlog_batches
            .store(batches.len() as u64, Ordering::Relaxed);
        batches.into_iter().next()
    }

    /// Waits out a retry delay, pruning the spool every second meanwhile.
    fn wait(&mut self, stop: &Stop, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.wait(left.min(Duration::from_secs(1))) {
                return;
            }
            self.oldest();
        }
    }

    fn send(&mut self, batch: &Batch) -> Outcome {
        let body = match spool::read(batch) {
            Ok(body) => body,
            Err(error) => {
                return Outcome::Retry {
                    after: self.backoff.next(),
                    reason: format!("spool {}: {error}", batch.path.display()),
                };
            }
        };
        if body.skipped > 0 {
            self.counters
                .dropped
                .fetch_add(body.skipped, Ordering::Relaxed);
            self.warn_dropped(body.skipped, "spooled lines that are not JSON skipped");
        }
        if body.events == 0 {
            return Outcome::Drop {
                events: 0,
                reason: String::new(),
            };
        }
        let token = match self.tokens.get(&self.agent) {
            Ok(token) => token,
            Err(reason) => {
                return Outcome::Retry {
                    after: self.backoff.next(),
                    reason,
                };
            }
        };
        let compressed = gzip(&body.json);
        let answer = self
            .agent
            .post(&self.url)
            .set("Authorization", &format!("Bearer {}", token.expose()))
            .set("Content-Type", "application/json")
            .set("Content-Encoding", "gzip")
            .set("x-ms-client-request-id", &request_id())
            .send_bytes(&compressed);
        self.judge(answer, body.events)
    }

    fn judge(&mut self, answer: Result<ureq::Response, ureq::Error>, events: u64) -> Outcome {
        let (status, response) = match answer {
            Ok(_) => return Outcome::Sent(events),
            Err(ureq::Error::Status(status, response)) => (status, response),
            Err(ureq::Error::Transport(transport)) => {
                return Outcome::Retry {
                    after: self.backoff.next(),
                    reason: transport.to_string(),
                };
            }
        };
        let retry_after = response.header("Retry-After").and_then(parse_retry_after);
        let reason = format!("HTTP {status}{}", service_message(response));
        match status {
            400 | 413 => Outcome::Drop { events, reason },
            401 => {
                self.tokens.invalidate();
                Outcome::Retry {
                    after: self.backoff.next(),
                    reason,
                }
            }
            429 | 500.. => Outcome::Retry {
                after: retry_after.unwrap_or_else(|| self.backoff.next()),
                reason,
            },
            _ => Outcome::Retry {
                after: self.backoff.next(),
                reason,
            },
        }
    }

    fn sent(&mut self, batch: &Batch, events: u64) {
        if let Err(error) = spool::remove(batch) {
            // Sent again at the next look: better twice than never.
            self.failed(format!("spool {}: {error}", batch.path.display()));
            return;
        }
        self.counters.sent.fetch_add(events, Ordering::Relaxed);
        self.counters.set_error(None);
        self.backoff.reset();
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                failing_s = since.elapsed().as_secs(),
                "Logs Ingestion API takes events again"
            );
        }
        tracing::debug!(events, batch = batch.sequence, "events sent");
    }

    fn drop_batch(&mut self, batch: &Batch, events: u64, reason: &str) {
        if let Err(error) = spool::remove(batch) {
            self.failed(format!("spool {}: {error}", batch.path.display()));
            return;
        }
        if events > 0 {
            self.counters.dropped.fetch_add(events, Ordering::Relaxed);
            tracing::error!(
                events,
                reason,
                "the Logs Ingestion API refused a batch; dropped"
            );
            self.counters.set_error(Some(reason.to_owned()));
        }
    }

    /// Records a failed attempt; logs at most once a minute.
    fn failed(&mut self, reason: String) {
        self.failing_since.get_or_insert_with(Instant::now);
        if self.reported.due() {
            tracing::warn!(
                reason,
                backlog_batches = self.counters.backlog_batches.load(Ordering::Relaxed),
                "events not sent to the Logs Ingestion API; kept in the spool"
            );
        }
        self.counters.set_error(Some(reason));
    }

    fn warn_dropped(&mut self, dropped: u64, what: &'static str) {
        if self.reported_drop.due() {
            tracing::warn!(
                dropped,
                dropped_total = self.counters.dropped.load(Ordering::Relaxed),
                "{what}"
            );
        }
    }
}

/// Exponential backoff from 1 s to a maximum with ±20 % jitter, so many sites that lost Azure
/// at the same moment do not come back in step.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { failures: 0, max }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    fn next(&mut self) -> Duration {
        let base = Duration::from_secs(1 << self.failures.min(16)).min(self.max);
        self.failures += 1;
        base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
    }
}

/// `Retry-After` in seconds (the form the service sends); an HTTP date is left to the backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `: MESSAGE` from the service's error answer (`{"error":{"code":..,"message":..}}`).
fn service_message(response: ureq::Response) -> String {
    let mut text = String::new();
    let _ = response.into_reader().take(4096).read_to_string(&mut text);
    let parsed = serde_json::from_str::<serde_json::Value>(&text).ok();
    let message = parsed.as_ref().and_then(|value| {
        let error = &value["error"];
        let code = error["code"].as_str()?;
        Some(format!(
            "{code}: {}",
            error["message"].as_str().unwrap_or("")
        ))
    });
    let message = message.unwrap_or_else(|| text.lines().next().unwrap_or("").to_owned());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// The request body as the service takes it with `Content-Encoding: gzip`. The fastest
/// level: on a batch of events it takes a quarter of the time of the default level for
/// about twice the bytes (`cargo bench --bench ingestion`), and the CPU is the resolver's.
pub fn gzip(json: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

/// A random UUID (version 4) for `x-ms-client-request-id`, which Azure support can trace.
fn request_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(60));
        let delays: Vec<f64> = (0..9).map(|_| backoff.next().as_secs_f64()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
        for (delay, base) in delays.iter().zip(bases) {
            assert!(*delay >= base * 0.8 && *delay <= base * 1.2, "{delays:?}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }

    #[test]
    fn gzip_round_trips() {
        let json = br#"[{"EventType":"Query"}]"#.repeat(100);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(gzip(&json).as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, json);
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, request_id());
    }

    #[test]
    fn a_stop_wakes_a_waiting_uploader() {
        let stop = Arc::new(Stop::default());
        let waiter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (stop.wait(Duration::from_secs(30)), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.request();
        let (stopped, waited) = waiter.join().unwrap();
        assert!(stopped);
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
