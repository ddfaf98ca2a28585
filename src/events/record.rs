//! A sinkhole event and its JSON form in Microsoft Sentinel's ASIM DNS schema (0.1.7).
//!
//! The query path fills a [`QueryEvent`] with what it already has; turning it into JSON
//! happens on the event writer's thread.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

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

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AsimDns<'a> {
    time_generated: &'a str,
    event_count: u32,
    event_start_time: &'a str,
    event_end_time: &'a str,
    event_type: &'static str,
    event_sub_type: &'static str,
    event_result: &'static str,
    event_result_details: &'a str,
    event_severity: &'static str,
    event_product: &'static str,
    event_product_version: &'static str,
    event_vendor: &'static str,
    event_schema: &'static str,
    event_schema_version: &'static str,
    dvc: &'a str,
    dvc_hostname: &'a str,
    dvc_action: &'static str,
    dvc_original_action: &'a str,
    src_ip_addr: String,
    src_port_number: u16,
    dst_ip_addr: String,
    dst_port_number: u16,
    network_protocol: &'static str,
    network_protocol_version: &'static str,
    dns_query: &'a str,
    dns_query_type: u16,
    dns_query_type_name: String,
    dns_query_class: u16,
    dns_query_class_name: &'static str,
    dns_response_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_response_name: Option<String>,
    transaction_id_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_network_duration: Option<u64>,
    rule_name: &'a str,
    threat_field: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_confidence: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_first_reported_time: Option<&'a str>,
    additional_fields: Additional<'a>,
}

#[derive(Serialize)]
struct Additional<'a> {
    matched_ioc: &'a str,
    ioc_type: &'static str,
    list: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cname_chain: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_reason: Option<&'a str>,
}

impl QueryEvent {
    /// The event as one line of JSON (no trailing newline).
    pub fn to_json(&self, device: &Device) -> String {
        let time = rfc3339_millis(self.time);
        let rcode_name = rcode_name(self.rcode);
        let metadata = &self.list.metadata;
        let (action, original, severity, reason) = match &self.outcome {
            Outcome::Blocked => (
                "Blocked",
                self.list.action.name(),
                severity(metadata.confidence),
                None,
            ),
            Outcome::Allowed {
                original_action,
                reason,
            } => ("Allowed", *original_action, "Low", Some(reason.as_str())),
        };

        let record = AsimDns {
            time_generated: &time,
            event_count: 1,
            event_start_time: &time,
            event_end_time: &time,
            event_type: "Query",
            event_sub_type: "response",
            event_result: if self.rcode == 0 {
                "Success"
            } else {
                "Failure"
            },
            event_result_details: &rcode_name,
            event_severity: severity,
            event_product: "sinkhole",
            event_product_version: env!("CARGO_PKG_VERSION"),
            event_vendor: "sinkhole",
            event_schema: "Dns",
            event_schema_version: "0.1.7",
            dvc: &device.name,
            dvc_hostname: &device.hostname,
            dvc_action: action,
            dvc_original_action: original,
            src_ip_addr: plain_ip(self.client.ip()).to_string(),
            src_port_number: self.client.port(),
            dst_ip_addr: plain_ip(self.server.ip()).to_string(),
            dst_port_number: self.server.port(),
            network_protocol: self.transport.name(),
            network_protocol_version: if plain_ip(self.client.ip()).is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            },
            dns_query: &self.name,
            dns_query_type: self.qtype,
            dns_query_type_name: type_name(self.qtype),
            dns_query_class: 1,
            dns_query_class_name: "IN",
            dns_response_code: self.rcode,
            dns_response_name: self.response.map(|address| address.to_string()),
            transaction_id_hex: format!("{:04x}", self.id),
            dns_network_duration: self.upstream_ms,
            rule_name: &self.list.name,
            threat_field: "Domain",
            threat_name: metadata.family.as_deref(),
            threat_category: metadata.threat_type.as_deref(),
            threat_confidence: metadata.confidence,
            threat_first_reported_time: metadata.first_seen.as_deref(),
            additional_fields: Additional {
                matched_ioc: &self.domain,
                ioc_type: "domain",
                list: &self.list.name,
                source: metadata.source.as_deref(),
                cname_chain: &self.chain,
                matched_name: self.chain.last().map(String::as_str),
                allow_reason: reason,
            },
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }
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

fn type_name(qtype: u16) -> String {
    hickory_proto::rr::RecordType::from(qtype).to_string()
}

/// The mnemonic of a response code (RFC 1035 §4.1.1, RFC 2136 §2.2, RFC 6891 §9).
fn rcode_name(rcode: u16) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    match NAMES.get(usize::from(rcode)) {
        Some(name) => (*name).to_owned(),
        None if rcode == 16 => "BADVERS".to_owned(),
        None => format!("RCODE{rcode}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Action;
    use crate::policy::IocMetadata;
    use std::time::{Duration, UNIX_EPOCH};

    fn event(outcome: Outcome) -> QueryEvent {
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

    fn device() -> Device {
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
