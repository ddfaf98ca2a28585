//! RPZ zones transferred from a primary server, the way DNS firewalls at many sites share one
//! policy: the zone's SOA serial is checked every `refresh` and whenever the primary sends a
//! NOTIFY (RFC 1996); when it changed, the changes are transferred over TCP: by IXFR (RFC 1995)
//! from the copy on disk when the primary keeps the zone's history, else the whole zone (AXFR,
//! RFC 5936).
//!
//! The transferred records are written as a zone file (one record per line, absolute names)
//! and parsed with the list's settings before anything else; only a usable zone replaces the
//! copy on disk (a new file renamed over the old one, with the serial kept beside it), and the
//! file watcher reloads it like any other list. A failed transfer keeps the last good copy,
//! is logged and counted, and is tried again after [`RETRY`] (or the next NOTIFY); a restart
//! with the primary unreachable enforces the copy on disk at once.
//!
//! Transfers may be signed with TSIG (HMAC-SHA256 only, [`super::tsig`]). IXFR goes over TCP
//! only, and NOTIFY is accepted by the sender's address, not by TSIG.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::tsig::{Session, TsigKey};
use super::{SourceErrors, beside, replace, run_each};
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
    run_each(sources, |source| keep_fresh(source, shutdown.clone())).await;
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
    beside(path, ".transfer.json")
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

    let (text, kind) = fetch_zone(source, &zone, key, stored.serial).await?;
    let parsed = lists::parse(text.as_bytes(), &source.options)
        .map_err(|broken| format!("transferred zone, line {}: {}", broken.line, broken.reason))?;
    lists::check_replacement(&parsed, || {
        lists::entries_on_disk(&source.path, &source.options)
    })
    .map_err(|why| format!("transferred zone: {why}"))?;
    let stored = serde_json::to_vec(&Stored {
        serial: Some(serial),
    })
    .map_err(|error| error.to_string())?;
    replace(&source.path, text.as_bytes())?;
    replace(&stored_path(&source.path), &stored)?;
    tracing::debug!(list = %source.name, kind, "zone copy written");
    Ok(Some(serial))
}

/// The new zone: by IXFR from the copy on disk when there is one (an IXFR the primary cannot
/// serve, or cannot be applied, falls back to AXFR), else by AXFR. Returns the zone file and
/// which transfer gave it.
async fn fetch_zone(
    source: &ZoneSource,
    zone: &Name,
    key: Option<&TsigKey>,
    serial: Option<u32>,
) -> Result<(String, &'static str), String> {
    let transfer = &source.transfer;
    let on_disk =
        serial.and_then(|serial| Some((serial, std::fs::read_to_string(&source.path).ok()?)));
    if let Some((serial, old)) = on_disk {
        let records = tokio::time::timeout(
            transfer.timeout,
            self::transfer(transfer.primary, zone, key, Some(serial)),
        )
        .await
        .map_err(|_| "transfer timed out".to_owned())
        .and_then(|records| records);
        let incremental = records.and_then(|records| match records.get(1).map(soa_serial_of) {
            Some(Some(_)) => apply_changes(&old, &records).map(|text| (text, "IXFR")),
            Some(None) => Ok((zone_text(&records), "IXFR (whole zone)")),
            None => Err("primary says the copy is current".to_owned()),
        });
        match incremental {
            Ok(zone) => return Ok(zone),
            Err(error) => {
                tracing::debug!(list = %source.name, %error, "IXFR not used; asking AXFR")
            }
        }
    }
    let records = tokio::time::timeout(
        transfer.timeout,
        self::transfer(transfer.primary, zone, key, None),
    )
    .await
    .map_err(|_| "transfer timed out".to_owned())??;
    Ok((zone_text(&records), "AXFR"))
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
            .find_map(soa_serial_of)
            .ok_or_else(|| "SOA query answered without an SOA".to_owned());
    }
}

/// The records of a transfer over TCP (RFC 5936 §2.2, RFC 1995 §4): messages until the
/// closing SOA. `serial` is the client's version for an IXFR request, `None` for AXFR.
async fn transfer(
    primary: SocketAddr,
    zone: &Name,
    key: Option<&TsigKey>,
    serial: Option<u32>,
) -> Result<Vec<Record>, String> {
    let mut stream = TcpStream::connect(primary)
        .await
        .map_err(|error| format!("{primary}: {error}"))?;
    let id = rand::random::<u16>();
    let mut query = match serial {
        Some(serial) => ixfr_request(id, zone, serial),
        None => message(id, zone, RecordType::AXFR),
    };
    let mut session = key.map(|key| Session::sign(key, &mut query));
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;

    let mut records: Vec<Record> = Vec::new();
    loop {
        let mut bytes = read_message(&mut stream).await?;
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
        records.extend(answer.answers);
        if complete(&records, serial) {
            return Ok(records);
        }
    }
}

async fn read_message(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
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
    Ok(bytes)
}

/// Whether a transfer's records are all there: the opening SOA names the newest serial; an
/// AXFR ends with it again, and so does an IXFR, after pairs of (old, new) SOAs around each
/// change (RFC 1995 §4), so the SOAs are then even in number. A lone SOA no newer than the
/// client's version says it is current.
fn complete(records: &[Record], client: Option<u32>) -> bool {
    let Some(newest) = records.first().and_then(soa_serial_of) else {
        return true;
    };
    if records.len() == 1 {
        return client.is_some_and(|client| newest == client);
    }
    let soas = records
        .iter()
        .filter(|record| soa_serial_of(record).is_some())
        .count();
    records.last().and_then(soa_serial_of) == Some(newest) && soas % 2 == 0
}

fn soa_serial_of(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// An IXFR request: the client's version as an SOA in the authority section (RFC 1995 §3).
fn ixfr_request(id: u16, zone: &Name, serial: u32) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(zone.clone(), RecordType::IXFR));
    let soa = SOA::new(zone.clone(), zone.clone(), serial, 0, 0, 0, 0);
    message
        .authorities
        .push(Record::from_rdata(zone.clone(), 0, RData::SOA(soa)));
    message.to_vec().unwrap_or_default()
}

/// The zone file of a whole zone's records (an AXFR, or an IXFR answered in full).
fn zone_text(records: &[Record]) -> String {
    let body = &records[..records.len().saturating_sub(1)];
    body.iter().fold(String::new(), |mut text, record| {
        text.push_str(&record.to_string());
        text.push('\n');
        text
    })
}

/// A record's line without its TTL, which deletions need not repeat (RFC 1995 §4).
fn line_key(line: &str) -> String {
    let mut fields = line.split_whitespace();
    let name = fields.next().unwrap_or_default();
    fields.next();
    let rest: Vec<&str> = fields.collect();
    format!("{name} {}", rest.join(" "))
}

/// The zone after an IXFR's changes are applied to `old` (a zone file this module wrote).
fn apply_changes(old: &str, records: &[Record]) -> Result<String, String> {
    let mut lines: Vec<String> = old.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return Err("no copy to apply changes to".to_owned());
    }
    let newest = records.first().and_then(soa_serial_of);
    let mut at = 1;
    loop {
        // An old SOA opens a change; the newest serial at this place closes the transfer.
        let Some(old_serial) = records.get(at).and_then(soa_serial_of) else {
            return Err("malformed incremental transfer".to_owned());
        };
        if Some(old_serial) == newest && at == records.len() - 1 {
            break;
        }
        at += 1;
        while let Some(record) = records.get(at).filter(|r| soa_serial_of(r).is_none()) {
            let key = line_key(&record.to_string());
            let found = lines.iter().position(|line| line_key(line) == key);
            let found = found.ok_or_else(|| format!("deleted record not in the copy: {key}"))?;
            lines.remove(found);
            at += 1;
        }
        at += 1;
        while let Some(record) = records.get(at).filter(|r| soa_serial_of(r).is_none()) {
            lines.push(record.to_string());
            at += 1;
        }
    }
    lines[0] = records[0].to_string();
    Ok(lines.iter().fold(String::new(), |mut text, line| {
        text.push_str(line);
        text.push('\n');
        text
    }))
}

fn message(id: u16, zone: &Name, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(zone.clone(), qtype));
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soa(serial: u32) -> Record {
        let zone = Name::from_ascii("rpz.example.").unwrap();
        let soa = SOA::new(zone.clone(), zone.clone(), serial, 3600, 600, 86400, 60);
        Record::from_rdata(zone, 60, RData::SOA(soa))
    }

    fn cname(owner: &str, target: &str) -> Record {
        let owner = Name::from_ascii(format!("{owner}.rpz.example.")).unwrap();
        let target = Name::from_ascii(target).unwrap();
        Record::from_rdata(
            owner,
            60,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(target)),
        )
    }

    #[test]
    fn transfers_end_at_the_closing_soa() {
        let axfr = [soa(2), cname("a.test", "."), soa(2)];
        assert!(!complete(&axfr[..2], None));
        assert!(complete(&axfr, None));
        let ixfr = [
            soa(3),
            soa(1),
            cname("a.test", "."),
            soa(2),
            soa(2),
            soa(3),
            cname("b.test", "."),
            soa(3),
        ];
        for end in 1..ixfr.len() {
            assert!(!complete(&ixfr[..end], Some(1)), "{end}");
        }
        assert!(complete(&ixfr, Some(1)));
        assert!(complete(&[soa(1)], Some(1)), "current");
    }

    #[test]
    fn incremental_changes_apply_to_the_copy() {
        let old = zone_text(&[
            soa(1),
            cname("a.test", "."),
            cname("keep.test", "."),
            soa(1),
        ]);
        let ixfr = [
            soa(2),
            soa(1),
            cname("a.test", "."),
            soa(2),
            cname("b.test", "*."),
            soa(2),
        ];
        let new = apply_changes(&old, &ixfr).unwrap();
        let lines: Vec<&str> = new.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains(" 2 3600 600 86400 60"), "{}", lines[0]);
        assert!(lines[1].starts_with("keep.test.rpz.example."));
        assert!(lines[2].starts_with("b.test.rpz.example."));

        let missing = [soa(2), soa(1), cname("gone.test", "."), soa(2), soa(2)];
        assert!(
            apply_changes(&old, &missing)
                .unwrap_err()
                .contains("not in the copy")
        );
    }
}
