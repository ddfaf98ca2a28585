//! The syslog sink: every event as an RFC 5424 message over UDP or TCP, for sites that already
//! run a syslog forwarder with the Azure Monitor Agent.
//!
//! The message body is the event's JSON line, or CEF (`CEF:0|sinkhole|sinkhole|VERSION|...`)
//! for collectors that parse ArcSight's format. Over TCP, messages are framed by octet
//! counting (RFC 6587 §3.4.1); a lost connection is opened again at the next event, at most
//! once a second, and the events sent meanwhile are counted as failed. Runs on the event
//! writer's thread, never on the query path. TLS is not offered: send to a local forwarder.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::time::rfc3339_millis;

/// `[events.syslog]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The collector, `ADDR:PORT`.
    pub address: SocketAddr,
    /// `udp` (default) or `tcp`.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// `json` (default: the event's JSON line) or `cef`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// The syslog facility number (RFC 5424 §6.2.1); default 16, local0.
    #[serde(default = "default_facility")]
    pub facility: u8,
}

fn default_facility() -> u8 {
    16
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    #[default]
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Json,
    Cef,
}

/// A connection to the collector.
pub struct Syslog {
    config: SyslogConfig,
    hostname: String,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    last_connect: Option<Instant>,
    message: String,
}

impl Syslog {
    pub fn new(config: SyslogConfig, hostname: &str) -> Self {
        Self {
            config,
            hostname: hostname.to_owned(),
            udp: None,
            tcp: None,
            last_connect: None,
            message: String::with_capacity(2048),
        }
    }

    /// Sends one event, given as its JSON line; an error says why it was not sent.
    pub fn send(&mut self, json: &str) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|error| format!("event is not JSON: {error}"))?;
        self.message.clear();
        write_header(
            &mut self.message,
            &value,
            self.config.facility,
            &self.hostname,
        );
        match self.config.format {
            SyslogFormat::Json => self.message.push_str(json.trim_end()),
            SyslogFormat::Cef => write_cef(&mut self.message, &value),
        }
        match self.config.transport {
            SyslogTransport::Udp => self.send_udp(),
            SyslogTransport::Tcp => self.send_tcp(),
        }
    }

    fn send_udp(&mut self) -> Result<(), String> {
        if self.udp.is_none() {
            let local = if self.config.address.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            self.udp = Some(UdpSocket::bind(local).map_err(|error| error.to_string())?);
        }
        let socket = self.udp.as_ref().ok_or("no socket")?;
        socket
            .send_to(self.message.as_bytes(), self.config.address)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    fn send_tcp(&mut self) -> Result<(), String> {
        if self.tcp.is_none() {
            let due = self
                .last_connect
                .is_none_or(|last| last.elapsed() >= Duration::from_secs(1));
            if !due {
                return Err("collector not connected".to_owned());
            }
            self.last_connect = Some(Instant::now());
            let stream = TcpStream::connect_timeout(&self.config.address, Duration::from_secs(2))
                .map_err(|error| format!("{}: {error}", self.config.address))?;
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            self.tcp = Some(stream);
        }
        let frame = format!("{} {}", self.message.len(), self.message);
        let sent = self
            .tcp
            .as_mut()
            .ok_or("no connection")?
            .write_all(frame.as_bytes());
        sent.map_err(|error| {
            self.tcp = None;
            error.to_string()
        })
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME sinkhole PROCID MSGID - ` (RFC 5424 §6): severity 4 (warning)
/// for a blocked query, 6 (informational) for anything else; MSGID the event type.
fn write_header(out: &mut String, event: &serde_json::Value, facility: u8, hostname: &str) {
    let severity = if event["DvcAction"] == "Blocked" {
        4
    } else {
        6
    };
    let priority = u16::from(facility.min(23)) * 8 + severity;
    let time = event["TimeGenerated"].as_str().map_or_else(
        || rfc3339_millis(std::time::SystemTime::now()),
        str::to_owned,
    );
    let kind = event["EventType"].as_str().unwrap_or("Event");
    let host = if hostname.is_empty() { "-" } else { hostname };
    out.push_str(&format!(
        "<{priority}>1 {time} {host} sinkhole {} {kind} - ",
        std::process::id()
    ));
}

/// CEF: `CEF:0|sinkhole|sinkhole|VERSION|SIGNATURE|NAME|SEVERITY|EXTENSIONS`.
fn write_cef(out: &mut String, event: &serde_json::Value) {
    let text = |key: &str| match &event[key] {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let kind = text("EventType").unwrap_or_default();
    let action = text("DvcAction").unwrap_or_default();
    let (signature, name) = match (kind.as_str(), action.as_str()) {
        ("Query", "Blocked") => ("dns-blocked", "DNS query blocked"),
        ("Query", _) => ("dns-allowed", "DNS query allowed"),
        ("PolicyReload", _) => ("policy-reload", "Policy reloaded"),
        ("Heartbeat", _) => ("heartbeat", "Heartbeat"),
        _ => (
            "policy-conflict",
            "Blocklist entry protected by an allowlist",
        ),
    };
    let severity = event["ThreatConfidence"]
        .as_u64()
        .map_or(if action == "Blocked" { 5 } else { 3 }, |confidence| {
            (confidence / 10).min(10)
        });
    out.push_str(&format!(
        "CEF:0|sinkhole|sinkhole|{}|{signature}|{name}|{severity}|",
        env!("CARGO_PKG_VERSION")
    ));
    let mut first = true;
    let mut field = |key: &str, value: Option<String>| {
        let Some(value) = value else {
            return;
        };
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(key);
        out.push('=');
        for ch in value.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '=' => out.push_str("\\="),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                ch => out.push(ch),
            }
        }
    };
    field("rt", text("TimeGenerated"));
    field("src", text("SrcIpAddr"));
    field("spt", text("SrcPortNumber"));
    field("dst", text("DstIpAddr"));
    field("dpt", text("DstPortNumber"));
    field("proto", text("NetworkProtocol"));
    field("act", text("DvcAction"));
    field("destinationDnsDomain", text("DnsQuery"));
    field("dvchost", text("Dvc"));
    field("cs1Label", Some("type".to_owned()));
    field("cs1", text("DnsQueryTypeName"));
    field("cs2Label", Some("rcode".to_owned()));
    field("cs2", text("EventResultDetails"));
    field("cs3Label", Some("list".to_owned()));
    field("cs3", text("RuleName"));
    field("cs4Label", Some("family".to_owned()));
    field("cs4", text("ThreatName"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"TimeGenerated":"2026-06-06T09:30:11.412Z","EventType":"Query","DvcAction":"Blocked","SrcIpAddr":"10.20.14.37","SrcPortNumber":53012,"DstIpAddr":"10.20.0.2","DstPortNumber":53,"NetworkProtocol":"UDP","DnsQuery":"cdn.posdteu.shop","DnsQueryTypeName":"A","EventResultDetails":"NOERROR","RuleName":"threatfox=remus","ThreatName":"Remus","ThreatConfidence":100,"Dvc":"dns-01"}"#;

    #[test]
    fn header_follows_rfc_5424() {
        let mut out = String::new();
        write_header(
            &mut out,
            &serde_json::from_str(EVENT).unwrap(),
            16,
            "dns-01",
        );
        let pid = std::process::id();
        assert_eq!(
            out,
            format!("<132>1 2026-06-06T09:30:11.412Z dns-01 sinkhole {pid} Query - ")
        );
    }

    #[test]
    fn cef_carries_the_fields_and_escapes_values() {
        let mut out = String::new();
        write_cef(&mut out, &serde_json::from_str(EVENT).unwrap());
        assert!(out.starts_with(&format!(
            "CEF:0|sinkhole|sinkhole|{}|dns-blocked|DNS query blocked|10|",
            env!("CARGO_PKG_VERSION")
        )));
        for part in [
            "src=10.20.14.37",
            "spt=53012",
            "dst=10.20.0.2",
            "dpt=53",
            "proto=UDP",
            "act=Blocked",
            "destinationDnsDomain=cdn.posdteu.shop",
            "cs1Label=type cs1=A",
            "cs2Label=rcode cs2=NOERROR",
            "cs3Label=list cs3=threatfox\\=remus",
            "cs4Label=family cs4=Remus",
        ] {
            assert!(out.contains(part), "{part}: {out}");
        }
    }
}
