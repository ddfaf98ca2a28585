//! Puts the pieces together: policy, cache, upstreams, event log and listeners, and shuts
//! them down in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::ingestion::{Credentials, Ingestion, IngestionConfig, IngestionError};
use crate::events::{Device, EventLog, EventLogError, Rotation, Sinks};
use crate::handler::Handler;
use crate::listener::{self, BoundPair, tcp::TcpLimits};
use crate::lists::LoadedList;
use crate::reload::{self, ConfigSource, Reloader};
use crate::sources::zone::{NotifyRouter, ZoneSource};
use crate::sources::{self, SourceErrors, http::Source};
use crate::upstream::{AnswerCache, CacheLimits, Forwarder, Timeouts, UpstreamError};

/// How long in-flight queries and queued events get to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    #[error(transparent)]
    Ingestion(#[from] IngestionError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A server ready to serve: everything is set up but the sockets.
pub struct Server {
    handler: Arc<Handler>,
    sources: Vec<Source>,
    zones: Vec<ZoneSource>,
    reloader: Reloader,
    events: EventLog,
    limits: TcpLimits,
}

impl Server {
    /// Sets up upstreams, cache, event log and the first policy from lists loaded already.
    pub fn new(
        source: ConfigSource,
        config: Config,
        lists: Vec<Arc<LoadedList>>,
        missing: reload::Missing,
    ) -> Result<Self, ServeError> {
        let upstreams: Vec<SocketAddr> = config.upstream.servers.iter().map(|u| u.0).collect();
        let timeouts = Timeouts {
            total: Duration::from_millis(config.upstream.timeout_ms),
            attempt: Duration::from_millis(config.upstream.attempt_timeout_ms),
        };
        let resolv_conf = config.resolve(&config.upstream.resolv_conf);
        let forwarder = Forwarder::new(&upstreams, &resolv_conf, timeouts)?;
        tracing::info!(upstreams = ?forwarder.servers(), timeout_ms = config.upstream.timeout_ms, "upstreams");

        let events_path: PathBuf = config.resolve(&config.events.path);
        let device = Device::detect(
            config.events.device.as_deref(),
            config.events.site.as_deref(),
        );
        let rotation = Rotation {
            max_bytes: config.events.rotate_bytes,
            max_age: (config.events.rotate_age_s > 0)
                .then(|| Duration::from_secs(config.events.rotate_age_s)),
            keep: config.events.keep,
        };
        let sinks = Sinks {
            rotation,
            dedup: (config.events.dedup_window_s > 0)
                .then(|| Duration::from_secs(config.events.dedup_window_s)),
            syslog: (config.events.syslog.as_ref())
                .map(|syslog| syslog.resolved(|path| config.resolve(path))),
            ingestion: start_ingestion(&config, &events_path)?,
        };
        let events = EventLog::open(&events_path, config.events.queue, device, sinks)?;
        tracing::info!(path = %events_path.display(), queue = config.events.queue, "event log open");

        let cache = AnswerCache::new(CacheLimits {
            max_entries: config.cache.max_entries,
            max_ttl: config.cache.max_ttl,
            max_negative_ttl: config.cache.max_negative_ttl,
        });
        let limits = TcpLimits {
            idle_timeout: Duration::from_millis(config.server.tcp_idle_timeout_ms),
            max_connections: config.server.max_tcp_connections,
        };
        let log_all = config.events.queries == crate::config::QueryLog::All;
        let specs = reload::list_specs(&config, std::time::SystemTime::now());
        let source_errors = SourceErrors::default();
        let sources = Source::of(&specs, &source_errors);
        let zones = ZoneSource::of(&specs, &source_errors);
        let notifies = NotifyRouter::new(&zones);
        let reloader = Reloader::new(source, config, lists, missing, events.sink(), source_errors);
        let handler = Arc::new(Handler::new(
            reloader.store(),
            cache,
            forwarder,
            events.sink(),
            notifies,
            log_all,
        ));
        Ok(Self {
            handler,
            sources,
            zones,
            reloader,
            events,
            limits,
        })
    }

    /// Serves on already bound sockets until `shutdown` is cancelled, then drains in-flight
    /// queries and flushes the event log.
    pub async fn serve(self, sockets: Vec<BoundPair>, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let listeners = TaskTracker::new();
        for pair in sockets {
            if let Ok(addr) = pair.udp.local_addr() {
                tracing::info!("listening on udp {addr}");
            }
            if let Ok(addr) = pair.tcp.local_addr() {
                tracing::info!("listening on tcp {addr}");
            }
            let handler = self.handler.clone();
            let udp = listener::udp::serve(pair.udp, handler, tasks.clone(), shutdown.clone());
            listeners.spawn(udp);
            let handler = self.handler.clone();
            let tcp = listener::tcp::serve(
                pair.tcp,
                handler,
                self.limits,
                tasks.clone(),
                shutdown.clone(),
            );
            listeners.spawn(tcp);
        }
        listeners.spawn(reload::watch(self.reloader, shutdown.clone()));
        listeners.spawn(sources::http::run(self.sources, shutdown.clone()));
        listeners.spawn(sources::zone::run(self.zones, shutdown.clone()));
        listeners.close();

        shutdown.cancelled().await;
        tracing::info!("shutting down");
        listeners.wait().await;
        tasks.close();
        if tokio::time::timeout(GRACE, tasks.wait()).await.is_err() {
            tracing::warn!(
                grace_s = GRACE.as_secs(),
                "in-flight queries did not finish in time"
            );
        }
        let events = self.events;
        tokio::task::spawn_blocking(move || events.close(GRACE))
            .await
            .ok();
    }
}

/// Binds UDP and TCP on every address.
pub async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<BoundPair>, ServeError> {
    let mut pairs = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let pair = listener::bind_pair(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        pairs.push(pair);
    }
    Ok(pairs)
}

/// `[events.logs_ingestion]` with its paths resolved against the config file, and the
/// credentials it names; `None` when the sink is not configured.
pub fn ingestion_settings(
    config: &Config,
) -> Result<Option<(IngestionConfig, Credentials)>, IngestionError> {
    let Some(settings) = &config.events.logs_ingestion else {
        return Ok(None);
    };
    let mut settings = settings.clone();
    settings.client_secret_file = settings
        .client_secret_file
        .map(|path| config.resolve(&path));
    settings.spool = settings.spool.map(|path| config.resolve(&path));
    settings.ca_file = settings.ca_file.map(|path| config.resolve(&path));
    settings.tls()?;
    let credentials = Credentials::resolve(&settings, |name| std::env::var(name).ok())?;
    Ok(Some((settings, credentials)))
}

/// Starts the Logs Ingestion sink when it is configured: its credentials must be there and
/// its spool writable, or sinkhole does not start.
fn start_ingestion(config: &Config, events: &Path) -> Result<Option<Ingestion>, IngestionError> {
    let Some((settings, credentials)) = ingestion_settings(config)? else {
        return Ok(None);
    };
    let spool = settings.spool_dir(events);
    Ingestion::start(&settings, &spool, credentials).map(Some)
}
