//! The command line: `serve`, `validate` and `check`.
//!
//! A configuration or list that cannot be used exits with 64 (EX_USAGE); a failure while
//! running exits with 1. The error is printed once, with its causes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Upstream};
use crate::dns::name::QueryName;
use crate::lists::LoadedList;
use crate::policy::{BlockMatch, Decision, Exception, Policy};
use crate::reload::{list_paths, load_lists};
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
    fn config(error: impl std::error::Error + 'static) -> Self {
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
            eprintln!("sinkhole: {}", chain(error.as_ref()));
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
        Command::Validate { config } => validate(&config),
        Command::Check {
            config,
            name,
            qtype,
            client,
        } => check(&config, &name, &qtype, client).map(|()| ExitCode::SUCCESS),
    }
}

fn load(path: &Path) -> Result<(Config, Vec<Arc<LoadedList>>), Failure> {
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
    let (mut config, lists) = load(path)?;
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
        let server = Server::new(config, lists).map_err(|error| match error {
            ServeError::Upstream(_) => Failure::config(error),
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

fn validate(path: &Path) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let (config, lists) = load(path)?;
    let policy = Policy::build(&config, &lists, 1);
    let took = started.elapsed();

    println!("{}: config ok", path.display());
    let mut bad_lines = 0;
    for ((name, _), list) in list_paths(&config).iter().zip(&lists) {
        let kind = if config.blocklists.iter().any(|b| &b.name == name) {
            "blocklist"
        } else {
            "allowlist"
        };
        println!(
            "{kind} {name}: {}: {} names, {} skipped lines, {} lines, {:.1} ms",
            list.path.display(),
            list.parsed.block.len(),
            list.parsed.skipped.invalid,
            list.parsed.lines,
            list.elapsed.as_secs_f64() * 1000.0
        );
        for skipped in list.parsed.skipped.lines.iter().take(10) {
            eprintln!(
                "{}:{}: {}",
                list.path.display(),
                skipped.line,
                skipped.reason
            );
        }
        bad_lines += list.parsed.skipped.invalid;
    }
    let (rss, peak) = memory();
    println!(
        "policy: {} blocked names, index {:.1} MiB, loaded in {:.1} ms, RSS {rss:.1} MiB, peak RSS {peak:.1} MiB",
        policy.blocked_names(),
        policy.index_bytes() as f64 / (1024.0 * 1024.0),
        took.as_secs_f64() * 1000.0,
    );
    if bad_lines > 0 {
        eprintln!("sinkhole: {bad_lines} list lines are not valid (shown above)");
        return Ok(ExitCode::from(64));
    }
    Ok(ExitCode::SUCCESS)
}

/// VmRSS and VmHWM of this process in MiB (0 where /proc is not available).
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn check(path: &Path, name: &str, qtype: &str, client: IpAddr) -> Result<(), Failure> {
    let (config, lists) = load(path)?;
    let policy = Policy::build(&config, &lists, 1);
    let query = QueryName::from_text(name).ok_or_else(|| {
        Failure::config(std::io::Error::other(format!(
            "{name:?} is not a valid domain name"
        )))
    })?;
    let qtype_code = qtype
        .parse::<hickory_proto::rr::RecordType>()
        .map(u16::from)
        .map_err(|_| Failure::config(std::io::Error::other(format!("unknown type {qtype:?}"))))?;

    println!(
        "query: {query} {} from {client}",
        hickory_proto::rr::RecordType::from(qtype_code)
    );
    if !policy.admits(client) {
        println!("decision: refused (client not in server.allow_clients)");
        return Ok(());
    }
    match policy.decide(&query, client) {
        Decision::Forward => println!("decision: forward (no list matches)"),
        Decision::Block(found) => {
            println!("decision: blocked");
            print_match(&found, qtype_code);
        }
        Decision::Except { exception, blocked } => {
            match exception {
                Exception::Client(group) => {
                    println!("decision: forward (client exempt by {group})")
                }
                Exception::Name { allowlist, domain } => println!(
                    "decision: forward (allowlist {allowlist}, entry {})",
                    String::from_utf8_lossy(domain)
                ),
            }
            if let Some(found) = blocked {
                println!("overrides a blocklist match:");
                print_match(&found, qtype_code);
            }
        }
    }
    Ok(())
}

fn print_match(found: &BlockMatch<'_>, qtype: u16) {
    let list = found.list;
    println!("  list: {} ({})", list.name, list.path.display());
    println!("  entry: {}", found.domain_text());
    let answer = match (list.action, qtype) {
        (crate::config::Action::Sinkhole, 1) => list.ipv4.to_string(),
        (crate::config::Action::Sinkhole, 28) => list.ipv6.to_string(),
        (crate::config::Action::Nxdomain, _) => "NXDOMAIN".to_owned(),
        _ => "NOERROR, no records".to_owned(),
    };
    println!(
        "  action: {} -> {answer} (ttl {})",
        list.action.name(),
        list.ttl
    );
    let metadata = &list.metadata;
    let show = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            println!("  {label}: {value}");
        }
    };
    show("source", metadata.source.clone());
    show("family", metadata.family.clone());
    show("threat type", metadata.threat_type.clone());
    show("confidence", metadata.confidence.map(|c| c.to_string()));
    show("first seen", metadata.first_seen.clone());
}
