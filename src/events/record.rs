//! Sinkhole events and their JSON form in Microsoft Sentinel's ASIM DNS schema (0.1.7).
//!
//! The query path fills a [`QueryEvent`] with what it already has; turning it into JSON
//! happens on the event writer's thread. A [`ConflictEvent`] tells that a feed tried to block a
//! name an allowlist protects; it is written once per policy load.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use std::fmt::Write as _;

use super::time::rfc3339_millis;
use crate::policy::{Conflict, MatchRecord, TriggerKind};

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
    /// The response code sent to the client; `None` when no answer was sent (`drop`).
    pub rcode: Option<u16>,
    /// The address in the answer, if any (the sinkhole address for a blocked A query).
    pub response: Option<IpAddr>,
    /// The list entry that matched; `None` for a query no list matched (logged with
    /// `events.queries = "all"`).
    pub found: Option<MatchRecord>,
    /// The policy version that decided.
    pub version: u64,
    /// For a CNAME hit: the chain from the query name to the name that matched.
    pub chain: Vec<String>,
    pub outcome: Outcome,
    /// Milliseconds spent upstream, for queries that were forwarded.
    pub upstream_ms: Option<u64>,
    /// For a summary of repeated queries: how many, and when the first was.
    pub repeats: Option<Repeats>,
}

/// Repeats of one query folded into one event (`events.dedup_window_s`): `EventCount` is
/// `count`, `EventStartTime` the first repeat, `EventEndTime` the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    pub count: u64,
    pub first: SystemTime,
}

/// The device fields shared by every event.
#[derive(Debug, Clone)]
pub struct Device {
    /// `Dvc`: the configured device name or the host name.
    pub name: String,
    /// `DvcHostname`: the host name without its domain.
    pub hostname: String,
    /// The site this resolver serves (`AdditionalFields.site`), so events from many sites
    /// can be told apart.
    pub site: String,
}

impl Device {
    pub fn detect(configured: Option<&str>, site: Option<&str>) -> Self {
        let fqdn = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let name = configured.map_or_else(|| fqdn.clone(), str::to_owned);
        let hostname = name.split('.').next().unwrap_or(&name).to_owned();
        let site = site.map_or_else(|| fqdn.clone(), str::to_owned);
        Self {
            name,
            hostname,
            site,
        }
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
        self.write_threat_fields(device, &mut json);
        json.close();
    }

    /// The common ASIM fields and the device's.
    fn write_event_fields(&self, device: &Device, json: &mut JsonObject<'_>) {
        let (action, original, severity) = match (&self.outcome, &self.found) {
            (Outcome::Blocked, Some(found)) => (
                "Blocked",
                Some(found.response().name()),
                severity(found.list.threat(found.rule).confidence),
            ),
            (Outcome::Blocked, None) => ("Blocked", None, "Medium"),
            (
                Outcome::Allowed {
                    original_action, ..
                },
                Some(_),
            ) => ("Allowed", Some(*original_action), "Low"),
            (Outcome::Allowed { .. }, None) => ("Allowed", None, "Informational"),
        };
        let time = rfc3339_millis(self.time);
        let (count, start) = match self.repeats {
            Some(repeats) => (repeats.count, rfc3339_millis(repeats.first)),
            None => (1, time.clone()),
        };
        write_common(json, (&time, count, &start), "Query", severity, device);
        json.text("EventSubType", "response");
        match self.rcode {
            Some(rcode) => {
                json.text(
                    "EventResult",
                    if rcode == 0 { "Success" } else { "Failure" },
                );
                json.display("EventResultDetails", RcodeName(rcode));
            }
            None => {
                json.text("EventResult", "Failure");
                json.text("EventResultDetails", "NA");
            }
        }
        json.text("DvcAction", action);
        json.optional_text("DvcOriginalAction", original);
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
        if let Some(rcode) = self.rcode {
            json.number("DnsResponseCode", u64::from(rcode));
        }
        if let Some(address) = self.response {
            json.display("DnsResponseName", address);
        }
        json.display("TransactionIdHex", format_args!("{:04x}", self.id));
        if let Some(ms) = self.upstream_ms {
            json.number("DnsNetworkDuration", ms);
        }
    }

    /// The rule and indicator fields, and the details ASIM has no field for.
    fn write_threat_fields(&self, device: &Device, json: &mut JsonObject<'_>) {
        let Some(found) = &self.found else {
            let mut additional = json.object("AdditionalFields");
            additional.text("site", &device.site);
            additional.number("policy_version", self.version);
            additional.close();
            return;
        };
        let threat_ip = match found.kind {
            TriggerKind::Domain => None,
            TriggerKind::ClientIp => Some(plain_ip(self.client.ip())),
            TriggerKind::ResponseIp => found.address,
        };
        let mut additional = write_threat(json, found, threat_ip, device);
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

/// One blocklist entry that a feed tried to use against a protected name.
#[derive(Debug, Clone)]
pub struct ConflictEvent {
    pub time: SystemTime,
    pub conflict: Conflict,
}

impl ConflictEvent {
    /// Appends the event as one line of JSON, without the newline, to `out`.
    pub fn write_json(&self, device: &Device, out: &mut String) {
        let conflict = &self.conflict;
        let found = MatchRecord {
            list: conflict.list.clone(),
            rule: conflict.rule,
            entry: conflict.entry.clone(),
            kind: TriggerKind::Domain,
            address: None,
        };
        let mut json = JsonObject::open(out);
        let time = rfc3339_millis(self.time);
        write_common(
            &mut json,
            (&time, 1, &time),
            "PolicyConflict",
            "Medium",
            device,
        );
        json.text("EventResult", "Success");
        json.text("DvcAction", "Allowed");
        json.text("DvcOriginalAction", found.response().name());
        let listed = conflict.entry.trim_start_matches(['*', '=']);
        json.text("DnsQuery", listed.trim_start_matches('.'));
        let mut additional = write_threat(&mut json, &found, None, device);
        additional.text("allowlist", &conflict.allowlist);
        additional.text("protected_by", &conflict.protected_by);
        additional.close();
        json.close();
    }
}

/// One list as a policy event or a heartbeat reports it.
#[derive(Debug, Clone, Default)]
pub struct ListReport {
    pub name: String,
    /// `blocklist` or `allowlist`.
    pub kind: &'static str,
    /// Where the list comes from: its path.
    pub source: String,
    pub format: &'static str,
    /// Entries of every kind (names, exceptions, IP triggers).
    pub entries: usize,
    /// Entries that are new, and gone, since the previous policy; `None` when not known.
    pub added: Option<usize>,
    pub removed: Option<usize>,
    /// SHA-256 of the file in force.
    pub sha256: String,
    /// Seconds since the copy in force was read (heartbeats).
    pub age_s: Option<u64>,
    /// The last error loading it, if the last attempt failed (heartbeats).
    pub last_error: Option<String>,
}

/// A policy load, good or failed, or a heartbeat: what the policy in force holds.
#[derive(Debug, Clone)]
pub struct PolicyEvent {
    pub time: SystemTime,
    /// `PolicyReload` or `Heartbeat`.
    pub kind: &'static str,
    /// Whether a new policy was published (always true for heartbeats).
    pub published: bool,
    /// The version in force after the event.
    pub version: u64,
    /// What started it: `start`, `file change`, `SIGHUP`, `interval`.
    pub trigger: &'static str,
    pub duration_ms: Option<f64>,
    pub lists: Vec<ListReport>,
    /// Each error as `path:line: reason` or `path: reason`.
    pub errors: Vec<String>,
    /// Config keys that changed but apply only after a restart.
    pub restart_needed: Vec<String>,
    /// What each event sink delivered and lost (heartbeats).
    pub sinks: Option<super::SinkReport>,
}

impl PolicyEvent {
    /// Appends the event as one line of JSON, without the newline, to `out`.
    pub fn write_json(&self, device: &Device, out: &mut String) {
        let mut json = JsonObject::open(out);
        let time = rfc3339_millis(self.time);
        let severity = if self.published && self.errors.is_empty() {
            "Informational"
        } else {
            "Medium"
        };
        write_common(&mut json, (&time, 1, &time), self.kind, severity, device);
        json.text(
            "EventResult",
            if self.published { "Success" } else { "Failure" },
        );
        let mut additional = json.object("AdditionalFields");
        additional.text("site", &device.site);
        additional.number("policy_version", self.version);
        additional.text("trigger", self.trigger);
        if let Some(ms) = self.duration_ms {
            additional.float("duration_ms", ms);
        }
        if let Some(sinks) = &self.sinks {
            let mut object = additional.object("sinks");
            write_sinks(&mut object, sinks);
            object.close();
        }
        additional.texts("errors", &self.errors);
        additional.texts("restart_needed", &self.restart_needed);
        let mut lists = additional.array("lists");
        for list in &self.lists {
            let mut item = lists.object();
            write_list(&mut item, list);
            item.close();
        }
        lists.close();
        additional.close();
        json.close();
    }
}

/// `sinks`: per sink, what it delivered and lost; only the sinks that are configured.
fn write_sinks(json: &mut JsonObject<'_>, sinks: &super::SinkReport) {
    let mut queue = json.object("queue");
    queue.number("dropped", sinks.queue_dropped);
    queue.close();
    let mut file = json.object("file");
    file.number("written", sinks.file_written);
    file.number("failed", sinks.file_failed);
    file.close();
    if let Some(relayed) = &sinks.syslog {
        let mut syslog = json.object("syslog");
        syslog.number("sent", relayed.sent);
        syslog.number("failed", relayed.failed);
        syslog.number("dropped", relayed.dropped);
        syslog.close();
    }
    if let Some(ingestion) = &sinks.logs_ingestion {
        let mut api = json.object("logs_ingestion");
        api.number("sent", ingestion.sent);
        api.number("dropped", ingestion.dropped);
        api.number("backlog_bytes", ingestion.backlog_bytes);
        api.number("backlog_batches", ingestion.backlog_batches);
        if let Some(error) = &ingestion.last_error {
            api.text("last_error", error);
        }
        api.close();
    }
}

fn write_list(json: &mut JsonObject<'_>, list: &ListReport) {
    json.text("name", &list.name);
    json.text("kind", list.kind);
    json.text("source", &list.source);
    json.text("format", list.format);
    json.number("entries", list.entries as u64);
    if let Some(added) = list.added {
        json.number("added", added as u64);
    }
    if let Some(removed) = list.removed {
        json.number("removed", removed as u64);
    }
    json.text("sha256", &list.sha256);
    if let Some(age) = list.age_s {
        json.number("age_s", age);
    }
    json.optional_text("last_error", list.last_error.as_deref());
}

/// The fields every event starts with.
/// `span` is the event's time, how many events it stands for, and when the first was.
fn write_common(
    json: &mut JsonObject<'_>,
    (time, count, start): (&str, u64, &str),
    event_type: &str,
    severity: &str,
    device: &Device,
) {
    json.text("TimeGenerated", time);
    json.number("EventCount", count);
    json.text("EventStartTime", start);
    json.text("EventEndTime", time);
    json.text("EventType", event_type);
    json.text("EventSeverity", severity);
    json.text("EventProduct", "sinkhole");
    json.text("EventProductVersion", env!("CARGO_PKG_VERSION"));
    json.text("EventVendor", "sinkhole");
    json.text("EventSchema", "Dns");
    json.text("EventSchemaVersion", "0.1.7");
    json.text("Dvc", &device.name);
    json.text("DvcHostname", &device.hostname);
}

/// Writes the rule and threat fields of a match and opens `AdditionalFields` with the
/// indicator's details; the caller adds its own and closes it.
fn write_threat<'j>(
    json: &'j mut JsonObject<'_>,
    found: &MatchRecord,
    threat_ip: Option<IpAddr>,
    device: &Device,
) -> JsonObject<'j> {
    let threat = found.list.threat(found.rule);
    let list = &found.list;
    json.text("RuleName", &list.name);
    let field = match found.kind {
        TriggerKind::Domain => "Domain",
        TriggerKind::ClientIp => "SrcIpAddr",
        TriggerKind::ResponseIp => "DnsResponseName",
    };
    json.text("ThreatField", field);
    if let Some(address) = threat_ip {
        json.display("ThreatIpAddr", plain_ip(address));
    }
    json.optional_text("ThreatId", threat.id);
    json.optional_text("ThreatName", threat.family);
    json.optional_text("ThreatCategory", threat.category);
    if let Some(confidence) = threat.confidence {
        json.number("ThreatConfidence", u64::from(confidence));
    }
    json.optional_text("ThreatFirstReportedTime", threat.first_seen);
    json.optional_text("ThreatLastReportedTime", threat.last_seen);

    let ioc = found.indicator();
    let mut additional = json.object("AdditionalFields");
    additional.text("site", &device.site);
    additional.number("policy_version", found.list.policy_version);
    additional.text("matched_ioc", &found.entry);
    let ioc_type = match found.kind {
        TriggerKind::Domain => "domain",
        TriggerKind::ClientIp | TriggerKind::ResponseIp => "ip",
    };
    let feed_type = ioc.and_then(|ioc| ioc.ioc_type.as_deref());
    additional.text("ioc_type", feed_type.unwrap_or(ioc_type));
    additional.optional_text("ioc_value", ioc.and_then(|ioc| ioc.value.as_deref()));
    additional.optional_text("malware", ioc.and_then(|ioc| ioc.malware.as_deref()));
    if let Some(ioc) = ioc.filter(|ioc| !ioc.tags.is_empty()) {
        additional.texts("tags", &ioc.tags);
    }
    additional.optional_text("reference", ioc.and_then(|ioc| ioc.reference.as_deref()));
    additional.text("list", &list.name);
    additional.text("list_format", list.format.name());
    additional.optional_text("source", list.metadata.source.as_deref());
    additional
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

    fn texts(&mut self, key: &str, values: &[impl AsRef<str>]) {
        self.key(key);
        self.out.push('[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            push_escaped(self.out, value.as_ref());
        }
        self.out.push(']');
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    /// A number with three decimals; not finite numbers are written as 0.
    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        let value = if value.is_finite() { value } else { 0.0 };
        let _ = write!(self.out, "{value:.3}");
    }

    fn array(&mut self, key: &str) -> JsonArray<'_> {
        self.key(key);
        self.out.push('[');
        JsonArray {
            out: self.out,
            empty: true,
        }
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

/// Writes the items of one JSON array into a string.
struct JsonArray<'o> {
    out: &'o mut String,
    empty: bool,
}

impl JsonArray<'_> {
    fn object(&mut self) -> JsonObject<'_> {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        JsonObject::open(self.out)
    }

    fn close(self) {
        self.out.push(']');
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
    use crate::config::Config;
    use crate::lists::{Format, Indicator, ListBuilder, ListOptions, LoadedList};
    use crate::policy::Blocklist;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    /// The Remus list of the default config; rule 1 is an indicator of the feed's own.
    pub(crate) fn remus_list() -> Arc<Blocklist> {
        let text = r#"
            [[blocklist]]
            name = "threatfox-remus"
            path = "remus.txt"
            source = "ThreatFox"
            family = "Remus"
            threat_type = "botnet_cc"
            confidence = 100
            first_seen = "2026-06-06"
        "#;
        let config = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let options = ListOptions::default();
        let mut builder = ListBuilder::new(&options, 0);
        builder.block("posdteu.shop", 1);
        let indicator = Indicator {
            id: Some("9000102".into()),
            value: Some("https://mathlah.com/gate.php".into()),
            ioc_type: Some("url".into()),
            family: Some("Remus Loader".into()),
            confidence: Some(50),
            last_seen: Some("2026-06-07T10:00:00Z".into()),
            tags: ["Remus".into(), "loader".into()].into(),
            ..Indicator::default()
        };
        builder.indicator(indicator, None).unwrap();
        let loaded = LoadedList {
            path: "remus.txt".into(),
            parsed: builder.finish(Format::Domains),
            elapsed: Duration::ZERO,
            stamp: None,
            sha256: String::new(),
            options_key: String::new(),
        };
        Arc::new(Blocklist::new(&config.blocklists[0], &loaded, &config, 1))
    }

    pub(crate) fn event(outcome: Outcome) -> QueryEvent {
        let found = MatchRecord {
            list: remus_list(),
            rule: 0,
            entry: "posdteu.shop".into(),
            kind: TriggerKind::Domain,
            address: None,
        };
        QueryEvent {
            version: 1,
            time: UNIX_EPOCH + Duration::from_millis(1_780_738_211_412),
            client: "[::ffff:10.20.14.37]:53012".parse().unwrap(),
            server: "10.20.0.2:53".parse().unwrap(),
            transport: Transport::Udp,
            id: 0x3fa1,
            name: "www.posdteu.shop".into(),
            qtype: 28,
            rcode: Some(0),
            response: Some("::".parse().unwrap()),
            found: Some(found),
            chain: Vec::new(),
            outcome,
            upstream_ms: None,
            repeats: None,
        }
    }

    pub(crate) fn device() -> Device {
        Device {
            name: "dns-01.example".into(),
            hostname: "dns-01".into(),
            site: "branch-01".into(),
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
        assert_eq!(json["AdditionalFields"]["site"], "branch-01");
        assert_eq!(json["AdditionalFields"]["policy_version"], 1);
    }

    #[test]
    fn indicator_metadata_comes_before_the_lists() {
        let mut event = event(Outcome::Blocked);
        event.found = Some(MatchRecord {
            rule: 1,
            entry: "198.51.100.7/32".into(),
            kind: TriggerKind::ResponseIp,
            address: Some("198.51.100.7".parse().unwrap()),
            ..event.found.unwrap()
        });
        let json: serde_json::Value = serde_json::from_str(&event.to_json(&device())).unwrap();
        assert_eq!(json["ThreatField"], "DnsResponseName");
        assert_eq!(json["ThreatIpAddr"], "198.51.100.7");
        assert_eq!(json["ThreatId"], "9000102");
        assert_eq!(json["ThreatName"], "Remus Loader");
        assert_eq!(json["ThreatCategory"], "botnet_cc");
        assert_eq!(json["ThreatConfidence"], 50);
        assert_eq!(json["EventSeverity"], "Medium");
        assert_eq!(json["ThreatFirstReportedTime"], "2026-06-06T00:00:00Z");
        assert_eq!(json["ThreatLastReportedTime"], "2026-06-07T10:00:00Z");
        let additional = &json["AdditionalFields"];
        assert_eq!(additional["ioc_type"], "url");
        assert_eq!(additional["ioc_value"], "https://mathlah.com/gate.php");
        assert_eq!(additional["tags"][1], "loader");
        assert_eq!(additional["matched_ioc"], "198.51.100.7/32");
    }

    #[test]
    fn a_query_no_list_matched_has_no_threat_fields() {
        let mut event = event(Outcome::Allowed {
            original_action: "",
            reason: String::new(),
        });
        event.found = None;
        event.version = 9;
        let json: serde_json::Value = serde_json::from_str(&event.to_json(&device())).unwrap();
        assert_eq!(json["DvcAction"], "Allowed");
        assert_eq!(json["EventSeverity"], "Informational");
        assert!(json.get("DvcOriginalAction").is_none());
        assert!(json.get("RuleName").is_none());
        assert_eq!(json["AdditionalFields"]["policy_version"], 9);
        assert_eq!(json["AdditionalFields"]["site"], "branch-01");
    }

    #[test]
    fn dropped_query_has_no_response_code() {
        let mut event = event(Outcome::Blocked);
        event.rcode = None;
        let json: serde_json::Value = serde_json::from_str(&event.to_json(&device())).unwrap();
        assert_eq!(json["EventResult"], "Failure");
        assert_eq!(json["EventResultDetails"], "NA");
        assert!(json.get("DnsResponseCode").is_none());
    }

    #[test]
    fn conflict_event_names_both_lists() {
        let conflict = Conflict {
            list: remus_list(),
            rule: 0,
            entry: "*.windowsupdate.com".into(),
            allowlist: "microsoft-update".into(),
            protected_by: "windowsupdate.com".into(),
        };
        let event = ConflictEvent {
            time: UNIX_EPOCH,
            conflict,
        };
        let mut line = String::new();
        event.write_json(&device(), &mut line);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["EventType"], "PolicyConflict");
        assert_eq!(json["DvcAction"], "Allowed");
        assert_eq!(json["DnsQuery"], "windowsupdate.com");
        assert_eq!(json["RuleName"], "threatfox-remus");
        assert_eq!(json["ThreatName"], "Remus");
        assert_eq!(json["AdditionalFields"]["allowlist"], "microsoft-update");
        assert_eq!(json["AdditionalFields"]["policy_version"], 1);
    }

    #[test]
    fn policy_event_lists_every_list_and_error() {
        let list = ListReport {
            name: "threatfox-remus".into(),
            kind: "blocklist",
            source: "/etc/sinkhole/remus.txt".into(),
            format: "domains",
            entries: 4,
            added: Some(1),
            removed: Some(2),
            sha256: "ab".repeat(32),
            ..ListReport::default()
        };
        let event = PolicyEvent {
            time: UNIX_EPOCH,
            kind: "PolicyReload",
            published: false,
            version: 7,
            trigger: "file change",
            duration_ms: Some(12.5),
            lists: vec![list],
            errors: vec!["remus.txt:3: bad \"name\"".into()],
            restart_needed: vec!["upstream.servers".into()],
            sinks: None,
        };
        let mut line = String::new();
        event.write_json(&device(), &mut line);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["EventType"], "PolicyReload");
        assert_eq!(json["EventResult"], "Failure");
        let additional = &json["AdditionalFields"];
        assert_eq!(additional["policy_version"], 7);
        assert_eq!(additional["site"], "branch-01");
        assert_eq!(additional["duration_ms"], 12.5);
        assert_eq!(additional["errors"][0], "remus.txt:3: bad \"name\"");
        assert_eq!(additional["restart_needed"][0], "upstream.servers");
        assert_eq!(additional["lists"][0]["added"], 1);
        assert_eq!(additional["lists"][0]["removed"], 2);
        assert_eq!(additional["lists"][0]["sha256"].as_str().unwrap().len(), 64);
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

/// The Sentinel content in `sentinel/` against the records this module writes: a field
/// renamed here, or a column misspelt there, fails this test.
#[cfg(test)]
mod sentinel_content {
    use super::tests::{device, event, remus_list};
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    /// Every top-level key, every `AdditionalFields` key, and every key of a policy event's
    /// `lists[]`, over events that fill every optional field.
    /// Every name sinkhole writes: top-level columns, `AdditionalFields` members, members of
    /// a heartbeat's `lists[]`, and `sink.counter` paths under `AdditionalFields.sinks`.
    #[derive(Default)]
    struct Written {
        top: BTreeSet<String>,
        additional: BTreeSet<String>,
        list_keys: BTreeSet<String>,
        sink_paths: BTreeSet<String>,
    }

    fn written() -> Written {
        let mut lines = Vec::new();
        let mut blocked = event(Outcome::Blocked);
        blocked.chain = vec!["a.test".into(), "b.posdteu.shop".into()];
        blocked.upstream_ms = Some(3);
        blocked.found = Some(MatchRecord {
            rule: 1,
            entry: "192.0.2.10/32".into(),
            kind: TriggerKind::ResponseIp,
            address: Some("192.0.2.10".parse().unwrap()),
            ..blocked.found.clone().unwrap()
        });
        let allowed = event(Outcome::Allowed {
            original_action: "allowlist",
            reason: "allowlist x entry y".into(),
        });
        let mut plain = allowed.clone();
        plain.found = None;
        for query in [blocked, allowed, plain] {
            lines.push(query.to_json(&device()));
        }
        let conflict = ConflictEvent {
            time: UNIX_EPOCH,
            conflict: crate::policy::Conflict {
                list: remus_list(),
                rule: 0,
                entry: "x.test".into(),
                allowlist: "a".into(),
                protected_by: "x.test".into(),
            },
        };
        let mut line = String::new();
        conflict.write_json(&device(), &mut line);
        lines.push(line);
        let report = ListReport {
            name: "l".into(),
            kind: "blocklist",
            source: "s".into(),
            format: "domains",
            entries: 1,
            added: Some(1),
            removed: Some(0),
            sha256: String::new(),
            age_s: Some(1),
            last_error: Some("e".into()),
        };
        let policy = PolicyEvent {
            time: UNIX_EPOCH,
            kind: "Heartbeat",
            published: true,
            version: 1,
            trigger: "interval",
            duration_ms: Some(1.0),
            lists: vec![report],
            errors: vec!["e".into()],
            restart_needed: vec!["k".into()],
            sinks: Some(every_sink()),
        };
        let mut line = String::new();
        policy.write_json(&device(), &mut line);
        lines.push(line);

        let mut written = Written::default();
        for line in &lines {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            collect(&json, &mut written);
        }
        written
    }

    fn collect(json: &serde_json::Value, written: &mut Written) {
        let object = json.as_object().unwrap();
        written.top.extend(object.keys().cloned());
        if let Some(fields) = object.get("AdditionalFields").and_then(|v| v.as_object()) {
            written.additional.extend(fields.keys().cloned());
            let sinks = fields.get("sinks").and_then(|v| v.as_object());
            for (sink, counters) in sinks.into_iter().flatten() {
                for counter in counters.as_object().unwrap().keys() {
                    written.sink_paths.insert(format!("{sink}.{counter}"));
                }
            }
            for list in fields
                .get("lists")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                written
                    .list_keys
                    .extend(list.as_object().unwrap().keys().cloned());
            }
        }
    }

    fn sentinel(path: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sentinel");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The `name`s of every `columns` array in a JSON document.
    fn columns(json: &serde_json::Value, out: &mut BTreeSet<String>) {
        match json {
            serde_json::Value::Object(object) => {
                for (key, value) in object {
                    if key == "columns" {
                        for column in value.as_array().into_iter().flatten() {
                            out.insert(column["name"].as_str().unwrap().to_owned());
                        }
                    } else {
                        columns(value, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| columns(item, out)),
            _ => {}
        }
    }

    /// Every KQL text in a JSON document (`query`, `queryBody`, `transformKql` values).
    fn queries(json: &serde_json::Value, out: &mut Vec<String>) {
        match json {
            serde_json::Value::Object(object) => {
                for (key, value) in object {
                    match value.as_str() {
                        Some(text)
                            if matches!(key.as_str(), "query" | "queryBody" | "transformKql") =>
                        {
                            out.push(text.to_owned());
                        }
                        _ => queries(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| queries(item, out)),
            _ => {}
        }
    }

    /// Identifiers of a KQL text outside string literals and comments, each with whether a
    /// `.` comes before it and whether an assignment `=` follows it.
    fn identifiers(kql: &str) -> Vec<(String, bool, bool)> {
        let bytes = kql.as_bytes();
        let mut found = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            if byte == b'"' {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            } else if byte == b'/' && bytes.get(at + 1) == Some(&b'/') {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            } else if byte.is_ascii_alphabetic() || byte == b'_' {
                let start = at;
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                let dotted = start > 0 && bytes[start - 1] == b'.';
                let rest = kql[at..].trim_start();
                let assigned = rest.starts_with('=') && !rest.starts_with("==");
                found.push((kql[start..at].to_owned(), dotted, assigned));
            } else {
                at += 1;
            }
        }
        found
    }

    const FIELD_PREFIXES: &[&str] = &[
        "Event",
        "Dvc",
        "Src",
        "Dst",
        "Dns",
        "Threat",
        "Rule",
        "Network",
        "Transaction",
    ];

    fn check_query(kql: &str, written: &Written, file: &str) {
        let tokens = identifiers(kql);
        for (index, (name, dotted, assigned)) in tokens.iter().enumerate() {
            let before = index.checked_sub(1).map(|i| tokens[i].0.as_str());
            if *dotted {
                match before {
                    Some("AdditionalFields") => {
                        assert!(
                            written.additional.contains(name),
                            "{file}: AdditionalFields.{name} is not written"
                        )
                    }
                    Some("List") => assert!(
                        written.list_keys.contains(name),
                        "{file}: lists[].{name} is not written"
                    ),
                    Some("sinks") => {
                        let counter = tokens.get(index + 1).filter(|token| token.1);
                        let path = format!("{name}.{}", counter.map_or("", |token| &token.0));
                        assert!(
                            written.sink_paths.contains(&path),
                            "{file}: AdditionalFields.sinks.{path} is not written"
                        )
                    }
                    _ => {}
                }
                continue;
            }
            let field_like = FIELD_PREFIXES.iter().any(|prefix| name.starts_with(prefix));
            if field_like && !assigned && !name.ends_with("_d") {
                assert!(
                    written.top.contains(name),
                    "{file}: column {name} is not written by sinkhole"
                );
            }
        }
    }

    #[test]
    fn sentinel_files_use_only_fields_the_code_writes() {
        let written = written();

        for file in ["table-SinkholeEvents_CL.json", "dcr-sinkhole.json"] {
            let json: serde_json::Value = serde_json::from_str(&sentinel(file)).unwrap();
            let mut declared = BTreeSet::new();
            columns(&json, &mut declared);
            let missing: Vec<_> = written.top.difference(&declared).collect();
            assert!(missing.is_empty(), "{file} lacks columns {missing:?}");
            let unknown: Vec<_> = declared
                .difference(&written.top)
                .filter(|c| !c.ends_with("_d"))
                .collect();
            assert!(
                unknown.is_empty(),
                "{file} declares columns sinkhole never writes: {unknown:?}"
            );
        }

        let mut texts: Vec<(String, String)> = Vec::new();
        for file in [
            "functions/SinkholeDnsEvents.kql",
            "hunting/remus-dnsevents.kql",
            "hunting/remus-imdns.kql",
        ] {
            texts.push((file.to_owned(), sentinel(file)));
        }
        for file in [
            "dcr-sinkhole.json",
            "analytics/sinkhole-hits.json",
            "analytics/stale-feed.json",
        ] {
            let json: serde_json::Value = serde_json::from_str(&sentinel(file)).unwrap();
            let mut found = Vec::new();
            queries(&json, &mut found);
            assert!(!found.is_empty(), "{file} holds no query");
            texts.extend(found.into_iter().map(|kql| (file.to_owned(), kql)));
        }
        for (file, kql) in &texts {
            check_query(kql, &written, file);
        }
    }

    #[test]
    fn a_misspelt_column_is_caught() {
        let written = written();
        let result =
            std::panic::catch_unwind(|| check_query("T | where DnsQeury == 1", &written, "t"));
        assert!(result.is_err());
        let result = std::panic::catch_unwind(|| {
            check_query(
                "T | extend S = tostring(AdditionalFields.sight)",
                &written,
                "t",
            )
        });
        assert!(result.is_err());
        let result = std::panic::catch_unwind(|| {
            check_query(
                "T | extend D = AdditionalFields.sinks.syslog.droped",
                &written,
                "t",
            )
        });
        assert!(result.is_err());
        check_query(
            "T | project Name = DnsQuery, Site = tostring(AdditionalFields.site), \
             Lost = AdditionalFields.sinks.logs_ingestion.dropped",
            &written,
            "t",
        );
    }

    #[test]
    fn heartbeats_report_each_configured_sink() {
        let sinks = every_sink();
        let mut beat = crate::reload::report::heartbeat(3, Vec::new());
        beat.sinks = Some(sinks.clone());
        let json: serde_json::Value = serde_json::from_str(&beat_json(&beat)).unwrap();
        let reported = &json["AdditionalFields"]["sinks"];
        assert_eq!(reported["queue"]["dropped"], 2);
        assert_eq!(
            reported["file"],
            serde_json::json!({"written": 40, "failed": 1})
        );
        assert_eq!(
            reported["syslog"],
            serde_json::json!({"sent": 39, "failed": 1, "dropped": 5})
        );
        assert_eq!(
            reported["logs_ingestion"],
            serde_json::json!({"sent": 30, "dropped": 3, "backlog_bytes": 4096,
                "backlog_batches": 1, "last_error": "HTTP 503"})
        );

        beat.sinks = Some(super::super::SinkReport {
            syslog: None,
            logs_ingestion: None,
            ..sinks
        });
        let json: serde_json::Value = serde_json::from_str(&beat_json(&beat)).unwrap();
        let reported = json["AdditionalFields"]["sinks"].as_object().unwrap();
        assert_eq!(reported.keys().collect::<Vec<_>>(), ["file", "queue"]);
    }

    /// A report with every sink configured and every counter different.
    fn every_sink() -> super::super::SinkReport {
        super::super::SinkReport {
            queue_dropped: 2,
            file_written: 40,
            file_failed: 1,
            syslog: Some(super::super::RelayReport {
                sent: 39,
                failed: 1,
                dropped: 5,
            }),
            logs_ingestion: Some(super::super::IngestionReport {
                sent: 30,
                dropped: 3,
                backlog_bytes: 4096,
                backlog_batches: 1,
                last_error: Some("HTTP 503".to_owned()),
            }),
        }
    }

    fn beat_json(event: &PolicyEvent) -> String {
        let mut line = String::new();
        event.write_json(&device(), &mut line);
        line
    }
}
