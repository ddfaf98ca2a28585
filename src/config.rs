//! The configuration file: its schema, defaults, and errors that name the file, line and key.
//!
//! Relative paths in the file are taken relative to the folder the file is in, so a config and
//! its lists can move together.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::lists::{Format, ListOptions, Scope};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A configuration that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: String,
        key: String,
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub sinkhole: SinkholeConfig,
    #[serde(default)]
    pub events: EventsConfig,
    /// `[[blocklist]]` tables, in the order that breaks ties between lists.
    #[serde(default, rename = "blocklist")]
    pub blocklists: Vec<BlocklistConfig>,
    /// `[[allowlist]]` tables: names that are never blocked.
    #[serde(default, rename = "allowlist")]
    pub allowlists: Vec<AllowlistConfig>,
    /// `[[exempt]]` tables: clients whose queries are never blocked.
    #[serde(default, rename = "exempt")]
    pub exemptions: Vec<ExemptConfig>,
    /// The file this configuration was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[server]`: where sinkhole listens and whom it answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to serve on, UDP and TCP each. Default `["127.0.0.1:5335"]`.
    pub listen: Vec<SocketAddr>,
    /// Client networks that may query; others get REFUSED. Default: loopback, RFC 1918,
    /// RFC 4193 and link-local ranges.
    pub allow_clients: Vec<Network>,
    /// Milliseconds a TCP connection may stay idle between queries (RFC 7766 §6.2.3).
    /// Default 10000.
    pub tcp_idle_timeout_ms: u64,
    /// Most TCP connections served at once; further ones wait to be accepted. Default 1024.
    pub max_tcp_connections: usize,
    /// Worker threads; default: the number of CPUs this process may use.
    pub threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 5335))],
            allow_clients: default_allowed_clients(),
            tcp_idle_timeout_ms: 10_000,
            max_tcp_connections: 1024,
            threads: None,
        }
    }
}

fn default_allowed_clients() -> Vec<Network> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    .into_iter()
    .chain(["169.254.0.0/16", "fe80::/10"])
    .filter_map(|net| net.parse().ok())
    .map(Network)
    .collect()
}

/// `[upstream]`: the resolvers sinkhole forwards to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `ADDR` or `ADDR:PORT` of each upstream (port 53 by default). When empty, the
    /// nameservers of `resolv_conf` are used.
    pub servers: Vec<Upstream>,
    /// Where to read the system's resolvers. Default `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Milliseconds a query may take across all upstreams before SERVFAIL. Default 2500.
    pub timeout_ms: u64,
    /// Milliseconds one upstream gets before the next is tried. Default 1000.
    pub attempt_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            resolv_conf: "/etc/resolv.conf".into(),
            timeout_ms: 2500,
            attempt_timeout_ms: 1000,
        }
    }
}

/// `[cache]`: the answer cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most answers kept; the least recently used goes first. 0 disables. Default 100000.
    pub max_entries: usize,
    /// Seconds sinkhole keeps an answer at most, whatever its TTLs; clients still see the
    /// upstream's TTLs, counted down. Default 86400.
    pub max_ttl: u32,
    /// Seconds sinkhole keeps a negative answer (NXDOMAIN, NODATA) at most. Default 3600.
    pub max_negative_ttl: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_ttl: 86_400,
            max_negative_ttl: 3600,
        }
    }
}

/// `[sinkhole]`: the answer a blocked name gets, unless its list says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkholeConfig {
    /// Address for A queries. Default `0.0.0.0`.
    pub ipv4: Ipv4Addr,
    /// Address for AAAA queries. Default `::`.
    pub ipv6: Ipv6Addr,
    /// Seconds clients may cache a sinkhole answer. Default 60.
    pub ttl: u32,
}

impl Default for SinkholeConfig {
    fn default() -> Self {
        Self {
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6: Ipv6Addr::UNSPECIFIED,
            ttl: 60,
        }
    }
}

/// `[events]`: the sinkhole event log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// JSON-lines file that receives one ASIM DNS record per event. Default
    /// `sinkhole-events.ndjson` beside the config file.
    pub path: PathBuf,
    /// Events that may wait for the writer; beyond this they are dropped and counted.
    /// Default 65536.
    pub queue: usize,
    /// `Dvc` field of every event; default: this machine's host name.
    pub device: Option<String>,
    /// The site this resolver serves, in every event (`AdditionalFields.site`); default:
    /// this machine's host name.
    pub site: Option<String>,
    /// Seconds between two heartbeat events (the lists in force, their age and last error);
    /// 0 turns them off. Default 300.
    pub heartbeat_interval_s: u64,
    /// Rotate the event file once it holds this many bytes; 0: never by size. Default
    /// 104857600 (100 MiB).
    pub rotate_bytes: u64,
    /// Rotate the event file once it has been written for this many seconds; 0: never by
    /// age. Default 86400.
    pub rotate_age_s: u64,
    /// Rotated event files kept; the oldest beyond are deleted. Default 7.
    pub keep: usize,
    /// Which queries get an event: `blocked` (default: every query a list matched) or `all`.
    pub queries: QueryLog,
    /// Seconds of a de-duplication window: the first event per client, name and action is
    /// written at once, repeats are summed into one event when the window closes. 0 (the
    /// default) writes every event.
    pub dedup_window_s: u64,
    /// `[events.syslog]`: also send every event to a syslog collector.
    pub syslog: Option<crate::events::syslog::SyslogConfig>,
    /// `[events.logs_ingestion]`: also send every event to Azure Monitor's Logs Ingestion
    /// API.
    pub logs_ingestion: Option<crate::events::ingestion::IngestionConfig>,
}

/// `[events] queries`: which queries get an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryLog {
    /// Queries a list matched: blocked, allowed by an exception, or seen by a log-only list.
    #[default]
    Blocked,
    /// Every answered query.
    All,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            path: "sinkhole-events.ndjson".into(),
            queue: 65_536,
            device: None,
            site: None,
            heartbeat_interval_s: 300,
            rotate_bytes: 100 << 20,
            rotate_age_s: 86_400,
            keep: 7,
            queries: QueryLog::Blocked,
            dedup_window_s: 0,
            syslog: None,
            logs_ingestion: None,
        }
    }
}

/// What a blocklist does to a query it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A and AAAA get the sinkhole address; other types NOERROR with no records.
    #[default]
    Sinkhole,
    /// NXDOMAIN for every type.
    Nxdomain,
    /// NOERROR with no records for every type.
    Nodata,
    /// REFUSED.
    Refuse,
    /// No answer at all.
    Drop,
    /// The answer is left as it is; only an event is written (a feed in shadow mode).
    LogOnly,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sinkhole => "sinkhole",
            Self::Nxdomain => "nxdomain",
            Self::Nodata => "nodata",
            Self::Refuse => "refuse",
            Self::Drop => "drop",
            Self::LogOnly => "log-only",
        }
    }
}

/// Which names a plain list entry covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    /// The listed name and every name below it.
    #[default]
    Subdomains,
    /// The listed name only.
    Exact,
}

impl MatchMode {
    pub fn scope(self) -> Scope {
        match self {
            Self::Subdomains => Scope::NameAndSubdomains,
            Self::Exact => Scope::NameOnly,
        }
    }
}

/// A length of time written with a unit: `90s`, `30m`, `12h`, `30d`, `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a number followed by s, m, h, d or w");
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        Ok(Self(Duration::from_secs(number.saturating_mul(seconds))))
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `[[blocklist]]`: one IOC list and the metadata its indicators share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistConfig {
    /// Unique name; events call it `RuleName`.
    pub name: String,
    /// The list file.
    pub path: PathBuf,
    /// Download the list from this `http://` or `https://` URL; `path` is then where the
    /// last good download is kept.
    pub url: Option<String>,
    /// How often to download it again, e.g. `1h` (the default).
    pub refresh: Option<Age>,
    /// Milliseconds one download may take. Default 30000.
    pub fetch_timeout_ms: Option<u64>,
    /// Largest download accepted, in bytes. Default 268435456 (256 MiB).
    pub max_bytes: Option<u64>,
    /// `auto` (default: told from the content), `domains`, `hosts`, `adblock`, `rpz`,
    /// `threatfox-csv` or `threatfox-json`.
    #[serde(default)]
    pub format: Format,
    /// `sinkhole` (default), `nxdomain`, `nodata`, `refuse`, `drop` or `log-only`. RPZ and
    /// hosts entries with an action of their own keep it, unless the list is `log-only`.
    #[serde(default)]
    pub action: Action,
    /// What a domain, hosts or ThreatFox entry covers: `subdomains` (default: the name and
    /// every name below it) or `exact`. AdBlock and RPZ entries say it themselves.
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    /// RPZ: the zone's origin; owner names are read relative to it. Default: the file's
    /// first `$ORIGIN`, else owner names are the triggers as written.
    pub origin: Option<String>,
    /// RPZ: transfer the zone `origin` from this primary server (`ADDR` or `ADDR:PORT`);
    /// `path` is then where the last good copy is kept, and `refresh` how often its SOA
    /// serial is checked (also on NOTIFY from the primary).
    pub primary: Option<Upstream>,
    /// RPZ transfers: the name of the TSIG key (HMAC-SHA256) shared with the primary.
    pub tsig_key: Option<String>,
    /// The file holding that key's secret, base64 as `tsig-keygen` prints it; read at start.
    pub tsig_secret_file: Option<PathBuf>,
    /// Indicators with a lower confidence (0 to 100) are left out.
    pub min_confidence: Option<u8>,
    /// Indicators whose last sighting (else first) is older are left out, e.g. `90d`.
    pub max_age: Option<Age>,
    /// Overrides `[sinkhole] ipv4` for this list.
    pub ipv4: Option<Ipv4Addr>,
    /// Overrides `[sinkhole] ipv6` for this list.
    pub ipv6: Option<Ipv6Addr>,
    /// Overrides `[sinkhole] ttl` for this list, in seconds.
    pub ttl: Option<u32>,
    /// Where the indicators come from, e.g. `ThreatFox`.
    pub source: Option<String>,
    /// Malware family, e.g. `Remus` (`ThreatName` in events).
    pub family: Option<String>,
    /// Threat type, e.g. `botnet_cc` (`ThreatCategory`).
    pub threat_type: Option<String>,
    /// 0 to 100 (`ThreatConfidence`).
    pub confidence: Option<u8>,
    /// When the indicators were first reported: `YYYY-MM-DD` or an RFC 3339 time.
    pub first_seen: Option<String>,
}

/// `[[allowlist]]`: legitimate names that no blocklist may block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistConfig {
    pub name: String,
    pub path: PathBuf,
    /// Download the list from this `http://` or `https://` URL; `path` is then where the
    /// last good download is kept.
    pub url: Option<String>,
    /// How often to download it again, e.g. `1h` (the default).
    pub refresh: Option<Age>,
    /// Milliseconds one download may take. Default 30000.
    pub fetch_timeout_ms: Option<u64>,
    /// Largest download accepted, in bytes. Default 268435456 (256 MiB).
    pub max_bytes: Option<u64>,

    /// As for blocklists; every entry of any kind protects its name.
    #[serde(default)]
    pub format: Format,
    /// As for blocklists.
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
}

/// `[[exempt]]`: clients whose queries are never blocked, e.g. a backup server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptConfig {
    pub name: String,
    /// Addresses or CIDR networks.
    pub clients: Vec<Network>,
}

/// An IP network written as a CIDR (`10.0.0.0/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub IpNet);

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|addr| Self(IpNet::from(addr)))
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network"))
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An upstream resolver: `ADDR` or `ADDR:PORT`, IPv6 as `[::1]:53`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream(pub SocketAddr);

impl FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>()
            .map(|ip| Self(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{text:?} is not ADDR or ADDR:PORT"))
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: path.display().to_string(),
            line: error.span().map_or(1, |span| line_of(text, span.start)),
            reason: error.message().trim().to_owned(),
        })?;
        config.path = path.to_owned();
        config.check()?;
        Ok(config)
    }

    /// Resolves a path from the file against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// How to read a `[[blocklist]]`; `max_age` counts back from `now`.
    pub fn blocklist_options(&self, list: &BlocklistConfig, now: SystemTime) -> ListOptions {
        ListOptions {
            format: list.format,
            scope: list.match_mode.scope(),
            origin: list
                .origin
                .as_deref()
                .and_then(|origin| crate::lists::domain::normalize(origin).ok())
                .map(|origin| origin.into_owned()),
            min_confidence: list.min_confidence,
            max_age: list.max_age.map(|age| age.0),
            confidence: list.confidence,
            first_seen: list
                .first_seen
                .as_deref()
                .and_then(crate::events::time::parse_date_or_time),
            now,
        }
    }

    /// How to read an `[[allowlist]]`.
    pub fn allowlist_options(&self, list: &AllowlistConfig, now: SystemTime) -> ListOptions {
        ListOptions {
            format: list.format,
            scope: list.match_mode.scope(),
            now,
            ..ListOptions::default()
        }
    }

    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.server.listen.is_empty() {
            return Err(self.invalid("server.listen", "needs at least one address"));
        }
        if self.upstream.timeout_ms == 0 {
            return Err(self.invalid("upstream.timeout_ms", "must be more than 0"));
        }
        if self.upstream.attempt_timeout_ms == 0 {
            return Err(self.invalid("upstream.attempt_timeout_ms", "must be more than 0"));
        }
        if self.events.queue == 0 {
            return Err(self.invalid("events.queue", "must be more than 0"));
        }
        if let Some((key, reason)) = self
            .events
            .logs_ingestion
            .as_ref()
            .and_then(|ingestion| ingestion.problem())
        {
            return Err(self.invalid(format!("events.logs_ingestion.{key}"), reason));
        }
        if self.server.threads == Some(0) {
            return Err(self.invalid("server.threads", "must be more than 0"));
        }
        self.check_names()?;
        if let Some(syslog) = &self.events.syslog {
            syslog.check(|path| self.resolve(path)).map_err(|error| {
                self.invalid(format!("events.syslog.{}", error.key), error.reason)
            })?;
        }
        for (index, list) in self.allowlists.iter().enumerate() {
            let key = format!("allowlist[{index}] ({}).url", list.name);
            check_url(list.url.as_deref()).map_err(|why| self.invalid(key, why))?;
        }
        self.blocklists
            .iter()
            .enumerate()
            .try_for_each(|(i, list)| self.check_blocklist(i, list))
    }

    fn check_names(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        let names = self.blocklists.iter().map(|list| ("blocklist", &list.name));
        let names = names.chain(self.allowlists.iter().map(|list| ("allowlist", &list.name)));
        let names = names.chain(
            self.exemptions
                .iter()
                .map(|exempt| ("exempt", &exempt.name)),
        );
        for (table, name) in names {
            if name.trim().is_empty() {
                return Err(self.invalid(format!("{table}.name"), "must not be empty"));
            }
            if !seen.insert(name.as_str()) {
                return Err(
                    self.invalid(format!("{table}.name"), format!("{name:?} is used twice"))
                );
            }
        }
        Ok(())
    }

    fn check_blocklist(&self, index: usize, list: &BlocklistConfig) -> Result<(), ConfigError> {
        let key = |field: &str| format!("blocklist[{index}] ({}).{field}", list.name);
        check_url(list.url.as_deref()).map_err(|why| self.invalid(key("url"), why))?;
        if list.primary.is_some() && list.origin.is_none() {
            return Err(self.invalid(key("primary"), "needs origin, the zone to transfer"));
        }
        if list.tsig_key.is_some() != list.tsig_secret_file.is_some() {
            return Err(self.invalid(key("tsig_key"), "tsig_key and tsig_secret_file go together"));
        }
        if list.primary.is_some() && list.url.is_some() {
            return Err(self.invalid(key("primary"), "a list has a url or a primary, not both"));
        }
        if list.confidence.is_some_and(|confidence| confidence > 100) {
            return Err(self.invalid(key("confidence"), "must be between 0 and 100"));
        }
        if list
            .min_confidence
            .is_some_and(|confidence| confidence > 100)
        {
            return Err(self.invalid(key("min_confidence"), "must be between 0 and 100"));
        }
        if let Some(origin) = &list.origin
            && crate::lists::domain::normalize(origin).is_err()
        {
            return Err(self.invalid(key("origin"), "must be a domain name"));
        }
        if let Some(first_seen) = &list.first_seen
            && crate::events::time::parse_date_or_time(first_seen).is_none()
        {
            return Err(self.invalid(key("first_seen"), "expected YYYY-MM-DD or an RFC 3339 time"));
        }
        Ok(())
    }
}

/// A list URL must be `http://` or `https://` with a host.
fn check_url(url: Option<&str>) -> Result<(), String> {
    let Some(url) = url else {
        return Ok(());
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.split(['/', '?']).next().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/sinkhole/sinkhole.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(
            config.server.listen,
            [SocketAddr::from(([127, 0, 0, 1], 5335))]
        );
        assert!(
            config
                .server
                .allow_clients
                .contains(&"192.168.0.0/16".parse().unwrap())
        );
        assert_eq!(config.sinkhole.ttl, 60);
        assert_eq!(
            config.resolve(Path::new("lists/a.txt")),
            Path::new("/etc/sinkhole/lists/a.txt")
        );
    }

    #[test]
    fn unknown_key_in_every_table_is_named_with_its_line() {
        let tables = [
            "[server]",
            "[upstream]",
            "[cache]",
            "[sinkhole]",
            "[events]",
            "[[blocklist]]\nname = \"a\"\npath = \"a\"",
            "[[allowlist]]\nname = \"a\"\npath = \"a\"",
            "[[exempt]]\nname = \"a\"\nclients = []",
        ];
        for table in tables {
            let text = format!("# comment\n{table}\nbogus_key = 1\n");
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains("bogus_key"), "{table}: {error}");
            let line = text.lines().position(|l| l.starts_with("bogus")).unwrap() + 1;
            assert!(
                error.starts_with(&format!("/etc/sinkhole/sinkhole.toml:{line}:")),
                "{error}"
            );
        }
    }

    #[test]
    fn wrong_types_and_bad_values_are_reported() {
        let error = parse("[sinkhole]\nttl = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains(":2:"), "{error}");

        let error = parse("[upstream]\nservers = [\"not-an-ip\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not-an-ip"), "{error}");

        let text = "[[blocklist]]\nname = \"x\"\npath = \"x\"\nconfidence = 101\n";
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains("confidence"), "{error}");

        let text = "[[exempt]]\nname = \"veeam\"\nclients = [\"10.0.0.300\"]\n";
        assert!(parse(text).unwrap_err().to_string().contains("10.0.0.300"));

        for (key, value, expected) in [
            ("format", "\"csv\"", "unknown variant"),
            ("action", "\"block\"", "unknown variant"),
            ("match", "\"suffix\"", "unknown variant"),
            ("max_age", "\"30 days\"", "followed by s, m, h, d or w"),
            ("min_confidence", "120", "min_confidence"),
            ("origin", "\"bad origin\"", "origin"),
            (
                "url",
                "\"ftp://feed.example/x\"",
                "not an http:// or https:// URL",
            ),
            ("url", "\"https:///x\"", "has no host"),
        ] {
            let text = format!("[[blocklist]]\nname = \"x\"\npath = \"x\"\n{key} = {value}\n");
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{key}: {error}");
        }
    }

    #[test]
    fn feed_settings_become_list_options() {
        let text = r#"
            [[blocklist]]
            name = "threatfox"
            path = "tf.csv"
            format = "threatfox-csv"
            action = "log-only"
            match = "exact"
            origin = "RPZ.Example."
            min_confidence = 75
            max_age = "90d"
            confidence = 80
            first_seen = "2026-06-06"
        "#;
        let config = parse(text).unwrap();
        let list = &config.blocklists[0];
        assert_eq!(list.action, Action::LogOnly);
        let options = config.blocklist_options(list, SystemTime::UNIX_EPOCH);
        assert_eq!(options.format, Format::ThreatfoxCsv);
        assert_eq!(options.scope, Scope::NameOnly);
        assert_eq!(options.origin.as_deref(), Some("rpz.example"));
        assert_eq!(options.min_confidence, Some(75));
        assert_eq!(options.max_age, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(options.confidence, Some(80));
        assert_eq!(options.first_seen.as_deref(), Some("2026-06-06T00:00:00Z"));
        assert_eq!(
            "2w".parse::<Age>().unwrap().0,
            Duration::from_secs(14 * 86_400)
        );
    }

    #[test]
    fn duplicate_list_names_are_rejected() {
        let text = "[[blocklist]]\nname = \"a\"\npath = \"x\"\n[[allowlist]]\nname = \"a\"\npath = \"y\"\n";
        assert!(parse(text).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn upstreams_and_networks_parse_in_every_form() {
        assert_eq!("192.0.2.1".parse::<Upstream>().unwrap().0.port(), 53);
        assert_eq!("192.0.2.1:5353".parse::<Upstream>().unwrap().0.port(), 5353);
        assert_eq!("[2001:db8::1]:54".parse::<Upstream>().unwrap().0.port(), 54);
        assert_eq!("2001:db8::1".parse::<Upstream>().unwrap().0.port(), 53);
        assert_eq!("10.1.2.3".parse::<Network>().unwrap().0.prefix_len(), 32);
        assert_eq!(
            "10.1.2.3/8".parse::<Network>().unwrap().0.to_string(),
            "10.0.0.0/8"
        );
    }
}
