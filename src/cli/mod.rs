//! The command line: `serve`, `validate` and `check`.
//!
//! `validate` and `check` live in modules of their own; this one parses the arguments, runs
//! the server, and maps failures to exit codes.
//!
//! A configuration or list that cannot be used exits with 64 (EX_USAGE); a failure while
//! running exits with 1. The error is printed once, with its causes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Prints a line of a report to stdout. A closed stdout (`sinkhole check … | head`) ends
/// the report quietly instead of panicking the way `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `say!`, to stderr.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod check;
mod kql;
mod validate;

use crate::config::{Config, Upstream};
use crate::lists::LoadedList;
use crate::reload::{ConfigSource, load_lists, load_lists_for_serve};
use crate::server::{self, ServeError, Server};

/// A forwarding DNS resolver that sinkholes IOC domains.
#[derive(Debug, Parser)]
#[command(name = "sinkhole", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the resolver.
    Serve {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Listen on ADDR:PORT, UDP and TCP (repeatable; replaces `server.listen`).
        #[arg(long = "listen", value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        /// Forward to ADDR[:PORT] (repeatable; replaces `upstream.servers`).
        #[arg(long = "upstream", value_name = "ADDR[:PORT]")]
        upstreams: Vec<Upstream>,
        /// Write events to this file (replaces `events.path`).
        #[arg(long, value_name = "PATH")]
        events: Option<PathBuf>,
    },
    /// Load the config and every list without serving; print per-list counts.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the Sentinel hunting query for the indicators the config loads.
    Kql {
        #[arg(long)]
        config: PathBuf,
        /// The table to hunt in: `DnsEvents`, `_Im_Dns` or `SinkholeDnsEvents`.
        #[arg(long, default_value = "DnsEvents")]
        table: String,
    },
    /// Show what the policy decides for one query, without sending anything.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// The query name.
        name: String,
        /// The query type.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The client address.
        #[arg(long, default_value = "127.0.0.1")]
        client: IpAddr,
        /// An address the upstream's answer would hold, to test response-IP triggers
        /// (repeatable).
        #[arg(long = "answer", value_name = "ADDR")]
        answers: Vec<IpAddr>,
    },
}

/// A failure, by who has to act on it.
#[derive(Debug)]
pub enum Failure {
    /// The configuration or a list is wrong: exit 64.
    Config(Box<dyn std::error::Error>),
    /// Something failed while running: exit 1.
    Runtime(Box<dyn std::error::Error>),
}

impl Failure {
    pub(crate) fn config(error: impl std::error::Error + 'static) -> Self {
        Self::Config(Box::new(error))
    }

    fn runtime(error: impl std::error::Error + 'static) -> Self {
        Self::Runtime(Box::new(error))
    }
}

/// Parses the arguments, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            let (error, code) = match &failure {
                Failure::Config(error) => (error, 64),
                Failure::Runtime(error) => (error, 1),
            };
            esay!("sinkhole: {}", chain(error.as_ref()));
            ExitCode::from(code)
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstreams,
            events,
        } => serve(&config, listen, upstreams, events).map(|()| ExitCode::SUCCESS),
        Command::Validate { config } => validate::run(&config),
        Command::Kql { config, table } => kql::run(&config, &table).map(|()| ExitCode::SUCCESS),
        Command::Check {
            config,
            name,
            qtype,
            client,
            answers,
        } => check::run(&config, &name, &qtype, client, &answers).map(|()| ExitCode::SUCCESS),
    }
}

pub(crate) fn load(path: &Path) -> Result<(Config, Vec<Arc<LoadedList>>), Failure> {
    let config = Config::load(path).map_err(Failure::config)?;
    let lists = load_lists(&config).map_err(Failure::config)?;
    Ok((config, lists))
}

fn serve(
    path: &Path,
    listen: Vec<SocketAddr>,
    upstreams: Vec<Upstream>,
    events: Option<PathBuf>,
) -> Result<(), Failure> {
    init_logging();
    crate::memory::release_large_buffers_on_free();
    let source = ConfigSource::read(path).map_err(Failure::config)?;
    let mut config = source.file.clone();
    let (lists, missing) = load_lists_for_serve(&config).map_err(Failure::config)?;
    if !listen.is_empty() {
        config.server.listen = listen;
    }
    if !upstreams.is_empty() {
        config.upstream.servers = upstreams;
    }
    if let Some(events) = events {
        config.events.path = std::path::absolute(&events).unwrap_or(events);
    }

    let threads = config.server.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(Failure::runtime)?;
    runtime.block_on(async move {
        let listen = config.server.listen.clone();
        let server = Server::new(source, config, lists, missing).map_err(|error| match error {
            ServeError::Upstream(_) => Failure::config(error),
            ServeError::Ingestion(ref ingestion) if !ingestion.is_runtime() => {
                Failure::config(error)
            }
            _ => Failure::runtime(error),
        })?;
        let sockets = server::bind_all(&listen).await.map_err(Failure::runtime)?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        server.serve(sockets, shutdown).await;
        Ok(())
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,hickory_proto=warn,hickory_net=warn,hickory_resolver=warn",
        )
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
