//! The Logs Ingestion API sink: events sent to Azure Monitor through a data collection rule
//! (DCR), for Microsoft Sentinel without an agent on the host.
//!
//! Every event the writer thread writes is also appended to an on-disk spool
//! ([`spool`]); an uploader thread of its own ([`upload`]) sends the spooled batches in order:
//! `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`, a JSON
//! array of at most 1 MB, gzip-compressed, with a bearer token from the client-credentials
//! grant ([`token`]). A batch is deleted once the service accepted it; 429 and 5xx answers and
//! network failures are retried with backoff (honouring `Retry-After`), so events wait in the
//! spool while Azure is unreachable and survive a restart. The spool is bounded: past
//! `spool_max_bytes` the oldest batches are deleted and their events counted as dropped.
//!
//! Delivery is at least once: a batch the service took whose answer was lost (a timeout, or
//! sinkhole stopped mid-request) is sent again, and then appears twice in the workspace.

pub mod spool;
pub mod token;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use crate::events::Throttle;

pub use token::Credentials;

/// `[events.logs_ingestion]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestionConfig {
    /// The logs ingestion endpoint of the DCR or of its data collection endpoint (DCE),
    /// `https://NAME.REGION-1.ingest.monitor.azure.com`.
    pub endpoint: String,
    /// The DCR's immutable id, `dcr-` and 32 hex digits.
    pub dcr_immutable_id: String,
    /// The input stream the DCR declares. Default `Custom-SinkholeEvents`, the stream of
    /// `sentinel/dcr-sinkhole.json`, which sends query events to the built-in
    /// `ASimDnsActivityLogs` table.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Microsoft Entra tenant of the app registration; default: `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// The app registration's client id; default: `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// A file whose first line is the client secret; default: `AZURE_CLIENT_SECRET`.
    pub client_secret_file: Option<PathBuf>,
    /// A PEM file of CAs trusted besides the public ones (Mozilla's list), for a
    /// TLS-inspecting proxy or a private endpoint; default none.
    pub ca_file: Option<PathBuf>,
    /// The token service. Default `https://login.microsoftonline.com`.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The scope asked for. Default `https://monitor.azure.com//.default`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Folder of the spool; default: the event file's path with `.spool` added.
    pub spool: Option<PathBuf>,
    /// Most bytes the spool holds; the oldest batches beyond are dropped. Default 268435456
    /// (256 MiB).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Milliseconds an event may wait for its batch to fill before it is sent. Default 2000.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Milliseconds one request (token or upload) may take. Default 30000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait, in milliseconds, between two tries after failures; the wait doubles
    /// from 1 s up to it. Default 60000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_stream() -> String {
    "Custom-SinkholeEvents".to_owned()
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_scope() -> String {
    "https://monitor.azure.com//.default".to_owned()
}

fn default_spool_max_bytes() -> u64 {
    256 << 20
}

fn default_flush_interval_ms() -> u64 {
    2000
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_max_backoff_ms() -> u64 {
    60_000
}

impl IngestionConfig {
    /// What is wrong with the settings, as `(key, reason)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let web = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if !web(&self.endpoint) {
            return Some(("endpoint", "must be an https:// URL".to_owned()));
        }
        if !web(&self.authority) {
            return Some(("authority", "must be an https:// URL".to_owned()));
        }
        let id_chars = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !id_chars(&self.dcr_immutable_id) {
            return Some((
                "dcr_immutable_id",
                "must be the DCR's id, dcr-...".to_owned(),
            ));
        }
        if !id_chars(&self.stream) {
            return Some((
                "stream",
                "must be a stream name such as Custom-X".to_owned(),
            ));
        }
        if self.spool_max_bytes < spool::MAX_BODY {
            return Some(("spool_max_bytes", "must be at least 1000000".to_owned()));
        }
        if self.timeout_ms == 0 || self.flush_interval_ms == 0 {
            return Some((
                "timeout_ms",
                "timeouts and intervals must be more than 0".to_owned(),
            ));
        }
        None
    }

    /// The upload URL.
    pub fn url(&self) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
            self.endpoint.trim_end_matches('/'),
            self.dcr_immutable_id,
            self.stream
        )
    }

    /// The TLS settings of both services: the public CAs and those of `ca_file`.
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>, IngestionError> {
        crate::tls::public_client(self.ca_file.as_deref()).map_err(IngestionError::CaFile)
    }

    /// The spool folder for an event file at `events`.
    pub fn spool_dir(&self, events: &Path) -> PathBuf {
        self.spool.clone().unwrap_or_else(|| {
            let mut name = events.as_os_str().to_owned();
            name.push(".spool");
            PathBuf::from(name)
        })
    }
}

/// The sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IngestionError {
    #[error("events.logs_ingestion.{key}: not set, nor is {variable}")]
    Missing {
        key: &'static str,
        variable: &'static str,
    },
    #[error("events.logs_ingestion.client_secret_file: {path}: {reason}")]
    SecretFile { path: String, reason: String },
    #[error("events.logs_ingestion.ca_file: {0}")]
    CaFile(String),
    #[error("events.logs_ingestion.spool: {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl IngestionError {
    /// A failure of the machine (the spool cannot be written), not of the configuration.
    pub fn is_runtime(&self) -> bool {
        matches!(self, Self::Spool { .. })
    }
}

/// What the sink has done, for heartbeats.
#[derive(Debug, Default)]
pub struct IngestionCounters {
    /// Events the service accepted.
    pub sent: AtomicU64,
    /// Events lost: spool full, not writable, torn by a crash, or refused by the service as
    /// malformed.
    pub dropped: AtomicU64,
    /// What waits in the spool, as of the uploader's last look.
    pub backlog_bytes: AtomicU64,
    pub backlog_batches: AtomicU64,
    /// The last failure, cleared by the next accepted batch.
    pub last_error: Mutex<Option<String>>,
}

impl IngestionCounters {
    pub fn set_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }
}

/// How long a stopping sinkhole keeps sending spooled batches; what is left is sent at the
/// next start.
const DRAIN_AT_STOP: Duration = Duration::from_secs(2);

/// The writer thread's side of the sink: the spool it appends to, and the uploader.
pub struct Ingestion {
    spool: spool::SpoolWriter,
    counters: Arc<IngestionCounters>,
    stop: Arc<upload::Stop>,
    uploader: Option<JoinHandle<()>>,
    reported: Throttle,
}

impl Ingestion {
    /// Opens the spool (sending what an earlier run left in it) and starts the uploader.
    pub fn start(
        config: &IngestionConfig,
        spool_dir: &Path,
        credentials: Credentials,
    ) -> Result<Self, IngestionError> {
        let error = |source| IngestionError::Spool {
            path: spool_dir.display().to_string(),
            source,
        };
        let flush = Duration::from_millis(config.flush_interval_ms);
        let spool = spool::SpoolWriter::open(spool_dir, flush).map_err(error)?;
        let counters = Arc::new(IngestionCounters::default());
        let stop = Arc::new(upload::Stop::default());
        let tls = config.tls()?;
        let uploader = upload::Uploader::new(config, spool_dir, credentials, tls, counters.clone());
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sinkhole-ingest".into())
                .spawn(move || uploader.run(&stop))
                .map_err(error)?
        };
        tracing::info!(
            url = %config.url(),
            spool = %spool_dir.display(),
            "sending events to the Logs Ingestion API"
        );
        Ok(Self {
            spool,
            counters,
            stop,
            uploader: Some(thread),
            reported: Throttle::default(),
        })
    }

    pub fn counters(&self) -> Arc<IngestionCounters> {
        self.counters.clone()
    }

    /// Spools one event's JSON line (with its newline); a failure drops it and is counted.
    pub fn append(&mut self, line: &str) {
        if let Err(error) = self.spool.append(line) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.report(&error.to_string());
        }
    }

    /// Called on every round of the writer: hands the lines to the OS, seals a due batch.
    pub fn tick(&mut self) {
        if let Err(error) = self.spool.flush().and_then(|()| self.spool.tick()) {
            self.report(&error.to_string());
        }
    }

    /// Seals the open batch and stops the uploader, after it has sent what it can in
    /// [`DRAIN_AT_STOP`].
    pub fn finish(mut self) {
        if let Err(error) = self.spool.seal() {
            tracing::error!(%error, "cannot write the last events to the spool");
        }
        self.stop.request();
        let Some(thread) = self.uploader.take() else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = done_tx.send(());
        });
        // An upload in flight may outlast the drain; its batch stays spooled.
        let _ = done_rx.recv_timeout(DRAIN_AT_STOP + Duration::from_millis(500));
        let backlog = self.counters.backlog_batches.load(Ordering::Relaxed);
        tracing::info!(
            sent = self.counters.sent.load(Ordering::Relaxed),
            dropped = self.counters.dropped.load(Ordering::Relaxed),
            backlog_batches = backlog,
            "logs ingestion stopped; what is left in the spool is sent at the next start"
        );
    }

    /// Spool failures are logged at most once a minute.
    fn report(&mut self, error: &str) {
        if self.reported.due() {
            tracing::error!(
                %error,
                dropped_total = self.counters.dropped.load(Ordering::Relaxed),
                "events not spooled for the Logs Ingestion API"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> IngestionConfig {
        toml::from_str(&format!(
            "endpoint = \"https://dce-1.westeurope-1.ingest.monitor.azure.com/\"\n\
             dcr_immutable_id = \"dcr-0123456789abcdef0123456789abcdef\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_url_is_the_documented_one() {
        assert_eq!(
            config("").url(),
            "https://dce-1.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/\
             dcr-0123456789abcdef0123456789abcdef/streams/Custom-SinkholeEvents\
             ?api-version=2023-01-01"
        );
    }

    #[test]
    fn the_spool_sits_beside_the_event_file() {
        let path = config("").spool_dir(Path::new("/var/lib/sinkhole/events.ndjson"));
        assert_eq!(path, Path::new("/var/lib/sinkhole/events.ndjson.spool"));
        let path = config("spool = \"/spool\"").spool_dir(Path::new("/x"));
        assert_eq!(path, Path::new("/spool"));
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(config("").problem(), None);
        let bad = |extra: &str| config(extra).problem().map(|(key, _)| key);
        assert_eq!(bad("stream = \"Custom X\""), Some("stream"));
        assert_eq!(bad("spool_max_bytes = 10"), Some("spool_max_bytes"));
        assert_eq!(bad("authority = \"login\""), Some("authority"));
        let error =
            toml::from_str::<IngestionConfig>("endpoint = \"https://x\"\nsecret = 1").unwrap_err();
        assert!(error.to_string().contains("secret"), "{error}");
    }
}
