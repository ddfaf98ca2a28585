//! A sinkhole event and its JSON form in Microsoft Sentinel's ASIM DNS schema (0.1.7).
//!
//! The query path fills a [`QueryEvent`] with what it already has; turning it into JSON
//! happens on the event writer's thread.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use std::fmt::Write as _;

use super::time::rfc3339_millis;
use crate::policy::Blocklist;

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
}

/// What sinkhole did with a query that a blocklist matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the list's action.
    Blocked,
    /// Let through; the reason names the exempt client group or the allowlist and entry.
    Allowed {
        original_action: &'static str,
        reason: String,
    },
}

/// One query that a blocklist matched.
#[derive(Debug, Clone)]
pub struct QueryEvent {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
    pub id: u16,
    /// The query name, lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    /// The response code sent to the client.
    pub rcode: u16,
    /// The address in the answer, if any (the sinkhole address for a blocked A query).
    pub response: Option<IpAddr>,
    pub list: Arc<Blocklist>,
    /// The listed domain that matched.
    pub domain: String,
    /// For a CNAME hit: the chain from the query name to the name that matched.
    pub chain: Vec<String>,
    pub outcome: Outcome,
    /// Milliseconds spent upstream, for queries that were forwarded.
    pub upstream_ms: Option<u64>,
}

/// The device fields shared by every event.
#[derive(Debug, Clone)]
pub struct Device {
    /// `Dvc`: the configured device name or the host name.
    pub name: String,
    /// `DvcHostname`: the host name without its domain.
    pub hostname: String,
}

impl Device {
    pub fn detect(configured: Option<&str>) -> Self {
        let fqdn = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let name = configured.map_or_else(|| fqdn.clone(), str::to_owned);
        let hostname = name.split('.').next().unwrap_or(&name).to_owned();
        Self { name, hostname }
    }
}

impl QueryEvent {
    /// Appends the event as one line of JSON, without the newline, to `out`.
    ///
    /// Written by hand rather than through a serialiser: the event writer formats every
    /// sinkholed query, and this way no field needs an allocation of its own.
    pub fn write_json(&self, device: &Device, out: &mut String) {
        let mut json = JsonObject::open(out);
        self.write_event_fields(device, &mut json);
        self.write_network_fields(&mut json);
        self.write_dns_fields(&mut json);
        self.write_threat_fields(&mut json);
        json.close();
    }

    /// The common ASIM fields and the device's.
    fn write_event_fields(&self, device: &Device, json: &mut JsonObject<'_>) {
        let (action, original, severity) = match &self.outcome {
            Outcome::Blocked => (
                "Blocked",
                self.list.action.name(),
                severity(self.list.metadata.confidence),
            ),
            Outcome::Allowed {
                original_action, ..
            } => ("Allowed", *original_action, "Low"),
        };
        let time = rfc3339_millis(self.time);
        json.text("TimeGenerated", &time);
        json.number("EventCount", 1);
        json.text("EventStartTime", &time);
        json.text("EventEndTime", &time);
        json.text("EventType", "Query");
        json.text("EventSubType", "response");
        json.text(
            "EventResult",
            if self.rcode == 0 {
                "Success"
            } else {
                "Failure"
            },
        );
        json.display("EventResultDetails", RcodeName(self.rcode));
        json.text("EventSeverity", severity);
        json.text("EventProduct", "sinkhole");
        json.text("EventProductVersion", env!("CARGO_PKG_VERSION"));
        json.text("EventVendor", "sinkhole");
        json.text("EventSchema", "Dns");
        json.text("EventSchemaVersion", "0.1.7");
        json.text("Dvc", &device.name);
        json.text("DvcHostname", &device.hostname);
        json.text("DvcAction", action);
        json.text("DvcOriginalAction", original);
    }

    fn write_network_fields(&self, json: &mut JsonObject<'_>) {
        let client = plain_ip(self.client.ip());
        json.display("SrcIpAddr", client);
        json.number("SrcPortNumber", u64::from(self.client.port()));
        json.display("DstIpAddr", plain_ip(self.server.ip()));
        json.number("DstPortNumber", u64::from(self.server.port()));
        json.text("NetworkProtocol", self.transport.name());
        let version = if client.is_ipv4() { "IPv4" } else { "IPv6" };
        json.text("NetworkProtocolVersion", version);
    }

    fn write_dns_fields(&self, json: &mut JsonObject<'_>) {
        json.text("DnsQuery", &self.name);
        json.number("DnsQueryType", u64::from(self.qtype));
        json.display(
            "DnsQueryTypeName",
            hickory_proto::rr::RecordType::from(self.qtype),
        );
        json.number("DnsQueryClass", 1);
        json.text("DnsQueryClassName", "IN");
        json.number("DnsResponseCode", u64::from(self.rcode));
        if let Some(address) = self.response {
            json.display("DnsResponseName", address);
        }
        json.display("TransactionIdHex", format_args!("{:04x}", self.id));
        if let Some(ms) = self.upstream_ms {
            json.number("DnsNetworkDuration", ms);
        }
    }

    /// The rule and indicator fields, and the details ASIM has no field for.
    fn write_threat_fields(&self, json: &mut JsonObject<'_>) {
        let metadata = &self.list.metadata;
        json.text("RuleName", &self.list.name);
        json.text("ThreatField", "Domain");
        json.optional_text("ThreatName", metadata.family.as_deref());
        json.optional_text("ThreatCategory", metadata.threat_type.as_deref());
        if let Some(confidence) = metadata.confidence {
            json.number("ThreatConfidence", u64::from(confidence));
        }
        json.optional_text("ThreatFirstReportedTime", metadata.first_seen.as_deref());

        let mut additional = json.object("AdditionalFields");
        additional.text("matched_ioc", &self.domain);
        additional.text("ioc_type", "domain");
        additional.text("list", &self.list.name);
        additional.optional_text("source", metadata.source.as_deref());
        if let Some(matched) = self.chain.last() {
            additional.texts("cname_chain", &self.chain);
            additional.text("matched_name", matched);
        }
        if let Outcome::Allowed { reason, .. } = &self.outcome {
            additional.text("allow_reason", reason);
        }
        additional.close();
    }

    /// The event as one line of JSON.
    pub fn to_json(&self, device: &Device) -> String {
        let mut line = String::with_capacity(1024);
        self.write_json(device, &mut line);
        line
    }
}

/// Writes the members of one JSON object into a string.
struct JsonObject<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> JsonObject<'o> {
    fn open(out: &'o mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        push_escaped(self.out, value);
    }

    fn optional_text(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text(key, value);
        }
    }

    fn texts(&mut self, key: &str, values: &[String]) {
        self.key(key);
        self.out.push('[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            push_escaped(self.out, value);
        }
        self.out.push(']');
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    /// A string value from a `Display` type that never needs escaping (addresses, mnemonics).
    fn display(&mut self, key: &str, value: impl std::fmt::Display) {
        self.key(key);
        let _ = write!(self.out, "\"{value}\"");
    }

    fn object(&mut self, key: &str) -> JsonObject<'_> {
        self.key(key);
        JsonObject::open(self.out)
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// Appends `value` as a JSON string (RFC 8259 §7).
fn push_escaped(out: &mut String, value: &str) {
    out.push('"');
    if !value
        .bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        out.push_str(value);
    } else {
        for ch in value.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                ch if (ch as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", ch as u32);
                }
                ch => out.push(ch),
            }
        }
    }
    out.push('"');
}

fn plain_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

fn severity(confidence: Option<u8>) -> &'static str {
    match confidence {
        Some(75..) => "High",
        Some(..=49) => "Low",
        _ => "Medium",
    }
}

/// The mnemonic of a response code (RFC 1035 §4.1.1, RFC 2136 §2.2, RFC 6891 §9).
struct RcodeName(u16);

impl std::fmt::Display for RcodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 11] = [
            "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
            "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE",
        ];
        match NAMES.get(usize::from(self.0)) {
            Some(name) => f.write_str(name),
            None if self.0 == 16 => f.write_str("BADVERS"),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Action;
    use crate::policy::IocMetadata;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn event(outcome: Outcome) -> QueryEvent {
        let list = Arc::new(Blocklist {
            name: "threatfox-remus".into(),
            path: "remus.txt".into(),
            action: Action::Sinkhole,
            ipv4: "0.0.0.0".parse().unwrap(),
            ipv6: "::".parse().unwrap(),
            ttl: 60,
            metadata: IocMetadata {
                source: Some("ThreatFox".into()),
                family: Some("Remus".into()),
                threat_type: Some("botnet_cc".into()),
                confidence: Some(100),
                first_seen: Some("2026-06-06T00:00:00Z".into()),
            },
            entries: 4,
            blocked_text: "blocked by list threatfox-remus".into(),
        });
        QueryEvent {
            time: UNIX_EPOCH + Duration::from_millis(1_780_738_211_412),
            client: "[::ffff:10.20.14.37]:53012".parse().unwrap(),
            server: "10.20.0.2:53".parse().unwrap(),
            transport: Transport::Udp,
            id: 0x3fa1,
            name: "www.posdteu.shop".into(),
            qtype: 28,
            rcode: 0,
            response: Some("::".parse().unwrap()),
            list,
            domain: "posdteu.shop".into(),
            chain: Vec::new(),
            outcome,
            upstream_ms: None,
        }
    }

    pub(crate) fn device() -> Device {
        Device {
            name: "dns-01.example".into(),
            hostname: "dns-01".into(),
        }
    }

    #[test]
    fn blocked_event_has_the_asim_fields() {
        let json: serde_json::Value =
            serde_json::from_str(&event(Outcome::Blocked).to_json(&device())).unwrap();
        let expect = [
            ("TimeGenerated", "2026-06-06T09:30:11.412Z"),
            ("EventType", "Query"),
            ("EventSubType", "response"),
            ("EventResult", "Success"),
            ("EventResultDetails", "NOERROR"),
            ("EventSeverity", "High"),
            ("EventSchema", "Dns"),
            ("EventSchemaVersion", "0.1.7"),
            ("Dvc", "dns-01.example"),
            ("DvcHostname", "dns-01"),
            ("DvcAction", "Blocked"),
            ("DvcOriginalAction", "sinkhole"),
            ("SrcIpAddr", "10.20.14.37"),
            ("NetworkProtocol", "UDP"),
            ("DnsQuery", "www.posdteu.shop"),
            ("DnsQueryTypeName", "AAAA"),
            ("DnsResponseName", "::"),
            ("TransactionIdHex", "3fa1"),
            ("RuleName", "threatfox-remus"),
            ("ThreatField", "Domain"),
            ("ThreatName", "Remus"),
            ("ThreatCategory", "botnet_cc"),
            ("ThreatFirstReportedTime", "2026-06-06T00:00:00Z"),
        ];
        for (field, value) in expect {
            assert_eq!(json[field], value, "{field}");
        }
        assert_eq!(json["ThreatConfidence"], 100);
        assert_eq!(json["SrcPortNumber"], 53012);
        assert_eq!(json["DnsResponseCode"], 0);
        assert_eq!(json["AdditionalFields"]["matched_ioc"], "posdteu.shop");
    }

    #[test]
    fn strings_are_escaped() {
        let mut event = event(Outcome::Blocked);
        event.name = "we\"ird\\name\u{1}".into();
        event.chain = vec!["a.test".into(), "b\"c.test".into()];
        let json: serde_json::Value = serde_json::from_str(&event.to_json(&device())).unwrap();
        assert_eq!(json["DnsQuery"], "we\"ird\\name\u{1}");
        assert_eq!(json["AdditionalFields"]["cname_chain"][1], "b\"c.test");
        assert_eq!(json["AdditionalFields"]["matched_name"], "b\"c.test");
    }

    #[test]
    fn allowed_event_names_the_reason() {
        let outcome = Outcome::Allowed {
            original_action: "allowlist",
            reason: "allowlist microsoft-update entry windowsupdate.com".into(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&event(outcome).to_json(&device())).unwrap();
        assert_eq!(json["DvcAction"], "Allowed");
        assert_eq!(json["DvcOriginalAction"], "allowlist");
        assert!(
            json["AdditionalFields"]["allow_reason"]
                .as_str()
                .unwrap()
                .contains("microsoft")
        );
    }
}
