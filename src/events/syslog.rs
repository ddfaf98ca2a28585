//! The syslog sink: every event as an RFC 5424 message over UDP, TCP or TLS, for sites that
//! already run a syslog forwarder with the Azure Monitor Agent.
//!
//! The message body is the event's JSON line, or CEF (`CEF:0|sinkhole|sinkhole|VERSION|...`)
//! for collectors that parse ArcSight's format. Over TCP, messages are framed by octet
//! counting (RFC 6587 §3.4.1); TLS (RFC 5425) carries the same frames (§4.3) after checking
//! the collector's certificate against the configured CAs, and can present a client
//! certificate. A lost connection is opened again at the next event, at most once a second,
//! and the events sent meanwhile are counted as failed. Runs on a thread of its own
//! ([`super::relay`]), so a slow collector holds up neither queries nor the event file.
//!
//! The certificate files are read when the config is loaded, so a bad one stops the start, and
//! again when the sink is built; a renewed certificate is used after a restart. Nothing the
//! collector sends after the TLS handshake is read, so a collector that closes the connection,
//! or refuses sinkhole's client certificate (TLS 1.3 does that after the handshake), shows up
//! as a failed write at the next event, as over TCP; the event written into the closed
//! connection is lost without being counted.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use serde::Deserialize;

use super::time::rfc3339_millis;
use crate::tls;

/// How long connecting, the TLS handshake and each write may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `[events.syslog]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The collector, `ADDR:PORT`.
    pub address: SocketAddr,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// `json` (default: the event's JSON line) or `cef`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// The syslog facility number (RFC 5424 §6.2.1); default 16, local0.
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// With `tls`: a PEM file of the CA certificates that sign the collector's certificate,
    /// relative to the config file's folder. Required for `tls`; no default.
    pub ca_file: Option<PathBuf>,
    /// With `tls`: the DNS name or IP address the collector's certificate must be issued for.
    /// Default: the IP address of `address`.
    pub server_name: Option<String>,
    /// With `tls`: a PEM file of the certificate chain sinkhole presents to the collector
    /// (mutual TLS), relative to the config file's folder. Goes with `key_file`; default none.
    pub cert_file: Option<PathBuf>,
    /// With `tls`: a PEM file of the private key of `cert_file`. Default none.
    pub key_file: Option<PathBuf>,
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
    /// TCP with TLS, RFC 5425.
    Tls,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Json,
    Cef,
}

/// A key of `[events.syslog]` that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingError {
    /// The key within `[events.syslog]`, such as `ca_file`.
    pub key: &'static str,
    pub reason: String,
}

impl SettingError {
    fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

impl SyslogConfig {
    /// Checks the keys that go together and, with `tls`, reads the certificate files, their
    /// paths taken through `resolve`. Runs when the config is loaded.
    pub fn check(&self, resolve: impl Fn(&Path) -> PathBuf) -> Result<(), SettingError> {
        self.resolved(resolve).tls_client().map(drop)
    }

    /// The same settings with every file path passed through `resolve`.
    pub fn resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> Self {
        let path = |path: &Option<PathBuf>| path.as_deref().map(&resolve);
        Self {
            ca_file: path(&self.ca_file),
            cert_file: path(&self.cert_file),
            key_file: path(&self.key_file),
            ..self.clone()
        }
    }

    fn check_keys(&self) -> Result<(), SettingError> {
        let tls_keys = [
            ("ca_file", self.ca_file.is_some()),
            ("server_name", self.server_name.is_some()),
            ("cert_file", self.cert_file.is_some()),
            ("key_file", self.key_file.is_some()),
        ];
        if self.transport != SyslogTransport::Tls {
            if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return Err(SettingError::new(key, "needs transport = \"tls\""));
            }
            return Ok(());
        }
        if self.ca_file.is_none() {
            return Err(SettingError::new(
                "ca_file",
                "needed with transport = \"tls\"",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(SettingError::new("key_file", "needed with cert_file")),
            (None, Some(_)) => Err(SettingError::new("cert_file", "needed with key_file")),
            _ => Ok(()),
        }
    }

    /// The TLS client of `transport = "tls"`, from the files as named; `None` for the others.
    fn tls_client(&self) -> Result<Option<TlsClient>, SettingError> {
        self.check_keys()?;
        let (SyslogTransport::Tls, Some(ca_file)) = (self.transport, self.ca_file.as_deref())
        else {
            return Ok(None);
        };
        let builder = tls::builder(root_store(ca_file)?)
            .map_err(|reason| SettingError::new("transport", reason))?;
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = read_pem("cert_file", cert_file, tls::parse_certificates)?;
                let key = read_pem("key_file", key_file, tls::parse_key)?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    let reason =
                        format!("{}: cannot go with cert_file: {error}", key_file.display());
                    SettingError::new("key_file", reason)
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(TlsClient {
            config: Arc::new(config),
            name: self.server_name()?,
        }))
    }

    /// `server_name`, or the IP address of `address`.
    fn server_name(&self) -> Result<ServerName<'static>, SettingError> {
        let Some(name) = &self.server_name else {
            return Ok(ServerName::from(self.address.ip()));
        };
        ServerName::try_from(name.clone()).map_err(|_| {
            SettingError::new(
                "server_name",
                format!("{name:?} is not a DNS name or IP address"),
            )
        })
    }
}

/// The trust anchors for the collector's certificate: every certificate in `path`.
fn root_store(path: &Path) -> Result<RootCertStore, SettingError> {
    let mut roots = RootCertStore::empty();
    tls::add_ca_file(&mut roots, path).map_err(|reason| SettingError::new("ca_file", reason))?;
    Ok(roots)
}

/// Reads the PEM file of `key` and parses it; errors name the key and the path.
fn read_pem<T>(
    key: &'static str,
    path: &Path,
    parse: fn(&[u8]) -> Result<T, String>,
) -> Result<T, SettingError> {
    tls::read_pem(path, parse).map_err(|reason| SettingError::new(key, reason))
}

/// What a TLS connection to the collector is made with.
#[derive(Clone)]
struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS session over TCP that is only written to.
struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
}

impl TlsStream {
    fn handshake(client: &TlsClient, mut tcp: TcpStream) -> std::io::Result<Self> {
        let mut tls = ClientConnection::new(client.config.clone(), client.name.clone())
            .map_err(std::io::Error::other)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)?;
        }
        Ok(Self { tcp, tls })
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.writer().write_all(bytes)?;
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

impl Drop for TlsStream {
    /// Says goodbye with close_notify (RFC 5425 §4.4), if the connection takes it at once: a
    /// stalled collector must not hold the event writer up again.
    fn drop(&mut self) {
        self.tls.send_close_notify();
        let _ = self.tcp.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = self.tls.write_tls(&mut self.tcp);
    }
}

/// An open connection to the collector.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(tcp) => tcp.write_all(bytes),
            Self::Tls(tls) => tls.send(bytes),
        }
    }
}

/// A connection to the collector.
pub struct Syslog {
    config: SyslogConfig,
    hostname: String,
    udp: Option<UdpSocket>,
    stream: Option<Stream>,
    /// The TLS client of `transport = "tls"`, or why it could not be built: the files were
    /// checked with the config, so this fails only if they changed since.
    tls: Result<Option<TlsClient>, String>,
    last_connect: Option<Instant>,
    message: String,
}

impl Syslog {
    /// A sink for `config`, whose file paths are resolved already.
    pub fn new(config: SyslogConfig, hostname: &str) -> Self {
        let tls = config.tls_client().map_err(|error| error.to_string());
        Self {
            config,
            hostname: hostname.to_owned(),
            udp: None,
            stream: None,
            tls,
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
            SyslogTransport::Tcp | SyslogTransport::Tls => self.send_stream(),
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

    /// Sends the message as one octet-counted frame over TCP or TLS.
    fn send_stream(&mut self) -> Result<(), String> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        let frame = format!("{} {}", self.message.len(), self.message);
        let sent = self
            .stream
            .as_mut()
            .ok_or("no connection")?
            .send(frame.as_bytes());
        sent.map_err(|error| {
            self.stream = None;
            error.to_string()
        })
    }

    /// Opens a connection, unless the last attempt was less than a second ago.
    fn connect(&mut self) -> Result<Stream, String> {
        let tls = self.tls.clone()?;
        let due = self
            .last_connect
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(1));
        if !due {
            return Err("collector not connected".to_owned());
        }
        self.last_connect = Some(Instant::now());

        let address = self.config.address;
        let tcp = TcpStream::connect_timeout(&address, TIMEOUT)
            .map_err(|error| format!("{address}: {error}"))?;
        let _ = tcp.set_write_timeout(Some(TIMEOUT));
        let Some(tls) = tls else {
            return Ok(Stream::Tcp(tcp));
        };
        let stream = TlsStream::handshake(&tls, tcp)
            .map_err(|error| format!("{address}: TLS handshake: {error}"))?;
        Ok(Stream::Tls(Box::new(stream)))
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

    /// Parses `table` as the config file `sinkhole.toml` in `dir`; the error as text.
    fn parse_in(dir: &Path, table: &str) -> Result<crate::config::Config, String> {
        let text = format!("[events.syslog]\naddress = \"127.0.0.1:6514\"\n{table}");
        crate::config::Config::parse(&text, &dir.join("sinkhole.toml"))
            .map_err(|error| error.to_string())
    }

    /// Writes a CA certificate, and a client certificate it signs with its key, to `dir`.
    fn write_certificates(dir: &Path) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["sinkhole.test".to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), certificate.pem()).unwrap();
        std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
    }

    #[test]
    fn tls_needs_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = parse_in(dir.path(), "transport = \"tls\"\n").unwrap_err();
        assert!(
            error.ends_with("events.syslog.ca_file: needed with transport = \"tls\""),
            "{error}"
        );
    }

    #[test]
    fn a_client_certificate_and_its_key_go_together() {
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        let tls = "transport = \"tls\"\nca_file = \"ca.pem\"\n";
        let error =
            parse_in(dir.path(), &format!("{tls}cert_file = \"client.pem\"\n")).unwrap_err();
        assert!(
            error.ends_with("events.syslog.key_file: needed with cert_file"),
            "{error}"
        );
        let error = parse_in(dir.path(), &format!("{tls}key_file = \"client.key\"\n")).unwrap_err();
        assert!(
            error.ends_with("events.syslog.cert_file: needed with key_file"),
            "{error}"
        );
    }

    #[test]
    fn tls_keys_need_transport_tls() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            parse_in(dir.path(), "transport = \"tcp\"\nca_file = \"ca.pem\"\n").unwrap_err();
        assert!(
            error.ends_with("events.syslog.ca_file: needs transport = \"tls\""),
            "{error}"
        );
    }

    #[test]
    fn unknown_key_in_the_syslog_table_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = parse_in(dir.path(), "ca_fil = \"ca.pem\"\n").unwrap_err();
        assert!(error.contains("ca_fil"), "{error}");
        assert!(error.contains(":3:"), "the line of the key: {error}");
    }

    #[test]
    fn tls_files_are_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        let table = r#"transport = "tls"
ca_file = "ca.pem"
server_name = "logs.example"
cert_file = "client.pem"
key_file = "client.key"
"#;
        let config = parse_in(dir.path(), table).unwrap();
        let syslog = config.events.syslog.as_ref().unwrap();
        let resolved = syslog.resolved(|path| config.resolve(path));
        assert_eq!(resolved.ca_file, Some(dir.path().join("ca.pem")));
        let client = resolved.tls_client().unwrap().unwrap();
        assert_eq!(client.name, ServerName::try_from("logs.example").unwrap());
        assert!(client.config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn the_server_name_defaults_to_the_address() {
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        let config = parse_in(dir.path(), "transport = \"tls\"\nca_file = \"ca.pem\"\n").unwrap();
        let syslog = config.events.syslog.as_ref().unwrap();
        let client = syslog
            .resolved(|path| config.resolve(path))
            .tls_client()
            .unwrap()
            .unwrap();
        assert_eq!(client.name, ServerName::from(std::net::Ipv4Addr::LOCALHOST));
        let error = parse_in(
            dir.path(),
            "transport = \"tls\"\nca_file = \"ca.pem\"\nserver_name = \"not a name\"\n",
        )
        .unwrap_err();
        assert!(
            error.contains("events.syslog.server_name: \"not a name\""),
            "{error}"
        );
    }

    #[test]
    fn a_bad_certificate_file_is_an_error_that_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        std::fs::write(dir.path().join("notes.txt"), "not a certificate\n").unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(dir.path().join("other.key"), other_key).unwrap();
        let tls = "transport = \"tls\"\n";
        let cases = [
            (
                "ca_file = \"missing.pem\"\n",
                "ca_file",
                "missing.pem: cannot read",
            ),
            (
                "ca_file = \"notes.txt\"\n",
                "ca_file",
                "notes.txt: holds no PEM certificate",
            ),
            (
                "ca_file = \"client.key\"\n",
                "ca_file",
                "client.key: holds no PEM certificate",
            ),
            (
                "ca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"ca.pem\"\n",
                "key_file",
                "ca.pem: holds no PEM private key",
            ),
            (
                "ca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"other.key\"\n",
                "key_file",
                "other.key: cannot go with cert_file",
            ),
        ];
        for (table, key, reason) in cases {
            let error = parse_in(dir.path(), &format!("{tls}{table}")).unwrap_err();
            let path = dir.path().display();
            assert!(
                error.contains(&format!("events.syslog.{key}: {path}/{reason}")),
                "{error}"
            );
        }
    }
}
