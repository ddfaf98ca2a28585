//! RPZ zones transferred from a primary server, the way DNS firewalls at many sites share one
//! policy: the zone's SOA serial is checked every `refresh` and whenever the primary sends a
//! NOTIFY (RFC 1996); when it changed, the whole zone is transferred (AXFR, RFC 5936) over TCP.
//!
//! The transferred records are written as a zone file (one record per line, absolute names)
//! and parsed with the list's settings before anything else; only a usable zone replaces the
//! copy on disk (a new file renamed over the old one, with the serial kept beside it), and the
//! file watcher reloads it like any other list. A failed transfer keeps the last good copy,
//! is logged and counted, and is tried again after [`RETRY`] (or the next NOTIFY); a restart
//! with the primary unreachable enforces the copy on disk at once.
//!
//! Only AXFR is used: an IXFR-capable primary still sends the whole zone. TSIG is not
//! supported: restrict transfers on the primary by address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::tsig::{Session, TsigKey};
use super::{SourceErrors, replace};
use crate::lists::{self, ListOptions};
use crate::reload::{ListSpec, Transfer};

/// Wait before trying again after a failed check or transfer, when `refresh` is longer.
pub const RETRY: Duration = Duration::from_secs(2);

/// One zone kept by transfer.
#[derive(Debug, Clone)]
pub struct ZoneSource {
    pub name: String,
    pub transfer: Transfer,
    pub path: PathBuf,
    pub options: ListOptions,
    /// Woken by a NOTIFY for the zone.
    pub wake: Arc<Notify>,
    pub errors: SourceErrors,
    /// The TSIG key, or why it could not be read: a zone with a key is never transferred
    /// without it.
    pub tsig: Option<Result<TsigKey, String>>,
}

impl ZoneSource {
    /// The transferred zones among `specs`.
    pub fn of(specs: &[ListSpec], errors: &SourceErrors) -> Vec<Self> {
        specs
            .iter()
            .filter_map(|spec| {
                Some(Self {
                    name: spec.name.clone(),
                    transfer: spec.transfer.clone()?,
                    path: spec.path.clone(),
                    options: spec.options.clone(),
                    wake: Arc::new(Notify::new()),
                    errors: errors.clone(),
                    tsig: spec.transfer.as_ref()?.tsig.as_ref().map(read_key),
                })
            })
            .collect()
    }
}

/// Reads a TSIG secret: base64 on the file's first line (or a `secret "…";` line as
/// `tsig-keygen` writes it).
fn read_key((name, path): &(String, PathBuf)) -> Result<TsigKey, String> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read TSIG secret: {error}", path.display()))?;
    let secret = text
        .lines()
        .find_map(|line| {
            let line = line.trim();
            let quoted = line
                .strip_prefix("secret")?
                .trim()
                .trim_end_matches(';')
                .trim();
            Some(quoted.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| text.trim().to_owned());
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret.as_bytes())
        .map_err(|_| format!("{}: the TSIG secret is not base64", path.display()))?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    Ok(TsigKey { name, secret })
}

/// Who may send a NOTIFY for which zone, and whom it wakes.
#[derive(Debug, Clone, Default)]
pub struct NotifyRouter {
    zones: HashMap<String, Vec<(std::net::IpAddr, Arc<Notify>)>>,
}

impl NotifyRouter {
    pub fn new(sources: &[ZoneSource]) -> Self {
        let mut zones: HashMap<String, Vec<_>> = HashMap::new();
        for source in sources {
            let primary = source.transfer.primary.ip();
            zones
                .entry(source.transfer.zone.clone())
                .or_default()
                .push((primary, source.wake.clone()));
        }
        Self { zones }
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Wakes the sources of `zone` whose primary is `from`; whether any was.
    pub fn notify(&self, zone: &str, from: std::net::IpAddr) -> bool {
        let Some(sources) = self.zones.get(zone) else {
            return false;
        };
        let mut woken = false;
        for (primary, wake) in sources {
            if crate::policy::canonical(from) == crate::policy::canonical(*primary) {
                wake.notify_one();
                woken = true;
            }
        }
        woken
    }
}

/// Keeps every zone fresh until `shutdown`.
pub async fn run(sources: Vec<ZoneSource>, shutdown: CancellationToken) {
    let tasks: Vec<_> = sources
        .into_iter()
        .map(|source| tokio::spawn(keep_fresh(source, shutdown.clone())))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

async fn keep_fresh(source: ZoneSource, shutdown: CancellationToken) {
    let mut failures = 0u64;
    loop {
        let checked = check(&source).await;
        match &checked {
            Ok(_) => source.errors.succeeded(&source.name),
            Err(error) => source
                .errors
                .failed(&source.name, &format!("transfer: {error}")),
        }
        let wait = match checked {
            Ok(Some(serial)) => {
                tracing::info!(list = %source.name, zone = %source.transfer.zone, serial, "zone transferred");
                source.transfer.refresh
            }
            Ok(None) => {
                tracing::debug!(list = %source.name, zone = %source.transfer.zone, "zone serial unchanged");
                source.transfer.refresh
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(list = %source.name, zone = %source.transfer.zone, primary = %source.transfer.primary, %error, failures, "zone transfer failed; the last good copy stays in force");
                source.transfer.refresh.min(RETRY)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = source.wake.notified() => {
                tracing::debug!(list = %source.name, zone = %source.transfer.zone, "NOTIFY received");
            }
        }
    }
}

/// What the copy on disk was transferred at.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    serial: Option<u32>,
}

fn stored_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".transfer.json");
    path.with_file_name(name)
}

/// Checks the serial and transfers the zone when it changed; returns the new serial, or
/// `None` when the copy on disk is current.
pub async fn check(source: &ZoneSource) -> Result<Option<u32>, String> {
    let transfer = &source.transfer;
    let zone = Name::from_ascii(format!("{}.", transfer.zone)).map_err(|e| e.to_string())?;
    let stored: Stored = std::fs::read(stored_path(&source.path))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let key = match &source.tsig {
        Some(Ok(key)) => Some(key),
        Some(Err(error)) => return Err(error.clone()),
        None => None,
    };
    let serial = tokio::time::timeout(transfer.timeout, soa_serial(transfer.primary, &zone, key))
        .await
        .map_err(|_| "SOA query timed out".to_owned())??;
    if stored.serial == Some(serial) && source.path.exists() {
        return Ok(None);
    }

    let text = tokio::time::timeout(transfer.timeout, axfr(transfer.primary, &zone, key))
        .await
        .map_err(|_| "transfer timed out".to_owned())??;
    let parsed = lists::parse(text.as_bytes(), &source.options)
        .map_err(|broken| format!("transferred zone, line {}: {}", broken.line, broken.reason))?;
    if parsed.entries() == 0 && parsed.skipped.invalid > 0 {
        return Err("transferred zone holds no valid trigger".to_owned());
    }
    let stored = serde_json::to_vec(&Stored {
        serial: Some(serial),
    })
    .map_err(|error| error.to_string())?;
    replace(&source.path, text.as_bytes())?;
    replace(&stored_path(&source.path), &stored)?;
    Ok(Some(serial))
}

/// The zone's SOA serial, asked over UDP.
async fn soa_serial(
    primary: SocketAddr,
    zone: &Name,
    key: Option<&TsigKey>,
) -> Result<u32, String> {
    let local = if primary.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    let id = rand::random::<u16>();
    let mut query = message(id, zone, RecordType::SOA);
    let mut session = key.map(|key| Session::sign(key, &mut query));
    socket
        .send_to(&query, primary)
        .await
        .map_err(|error| format!("{primary}: {error}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if from != primary || len < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        let bytes = match &mut session {
            Some(session) => session.verify(&buf[..len])?,
            None => buf[..len].to_vec(),
        };
        let answer = Message::from_vec(&bytes).map_err(|error| format!("bad answer: {error}"))?;
        if answer.metadata.response_code != ResponseCode::NoError {
            return Err(format!(
                "SOA query answered {}",
                answer.metadata.response_code
            ));
        }
        return answer
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
            .ok_or_else(|| "SOA query answered without an SOA".to_owned());
    }
}

/// The whole zone by AXFR over TCP (RFC 5936 §2.2): messages until the closing SOA, as zone
/// file text.
async fn axfr(primary: SocketAddr, zone: &Name, key: Option<&TsigKey>) -> Result<String, String> {
    let mut stream = TcpStream::connect(primary)
        .await
        .map_err(|error| format!("{primary}: {error}"))?;
    let id = rand::random::<u16>();
    let mut query = message(id, zone, RecordType::AXFR);
    let mut session = key.map(|key| Session::sign(key, &mut query));
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;

    let mut text = String::new();
    let mut soas = 0;
    while soas < 2 {
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|error| format!("transfer ended early: {error}"))?;
        let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream
            .read_exact(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(session) = &mut session {
            bytes = session.verify(&bytes)?;
        }
        let answer = Message::from_vec(&bytes).map_err(|error| format!("bad message: {error}"))?;
        if answer.metadata.id != id {
            return Err("transfer answered with another ID".to_owned());
        }
        if answer.metadata.response_code != ResponseCode::NoError {
            return Err(format!(
                "transfer refused: {}",
                answer.metadata.response_code
            ));
        }
        if answer.answers.is_empty() {
            return Err("transfer message without records".to_owned());
        }
        for record in &answer.answers {
            if record.record_type() == RecordType::SOA {
                soas += 1;
                if soas == 2 {
                    break;
                }
            }
            text.push_str(&record.to_string());
            text.push('\n');
        }
        if soas == 0 {
            return Err("transfer does not start with the SOA".to_owned());
        }
    }
    Ok(text)
}

fn message(id: u16, zone: &Name, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(zone.clone(), qtype));
    message.to_vec().unwrap_or_default()
}
