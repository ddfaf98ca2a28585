//! A loaded blocklist, what its entries do, and the match that the policy reports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Action, BlocklistConfig, Config};
use crate::lists::{
    EntryAction, Format, Indicator, LoadedList, LocalData, NameTriggers, Rule, Scope,
};

/// What the list's config says about its indicators; each indicator's own data comes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IocMetadata {
    pub source: Option<String>,
    pub family: Option<String>,
    pub threat_type: Option<String>,
    pub confidence: Option<u8>,
    /// RFC 3339 time.
    pub first_seen: Option<String>,
}

/// The threat behind a match, as [`Blocklist::threat`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threat<'a> {
    pub id: Option<&'a str>,
    /// The malware family (`ThreatName`).
    pub family: Option<&'a str>,
    /// The threat type (`ThreatCategory`), such as `botnet_cc`.
    pub category: Option<&'a str>,
    pub confidence: Option<u8>,
    pub first_seen: Option<&'a str>,
    pub last_seen: Option<&'a str>,
}

/// A loaded blocklist and how it answers.
#[derive(Debug)]
pub struct Blocklist {
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
    pub action: Action,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub ttl: u32,
    pub metadata: IocMetadata,
    /// The rules its entries point at; rule 0 is the list's own.
    pub rules: Arc<[Rule]>,
    /// Its name triggers and exceptions, kept for `sinkhole check`.
    pub names: NameTriggers,
    pub exceptions: NameTriggers,
    /// The Extended DNS Error text of its blocked answers.
    pub blocked_text: String,
    /// The version of the policy this list belongs to, for events.
    pub policy_version: u64,
}

impl Blocklist {
    pub fn new(list: &BlocklistConfig, loaded: &LoadedList, config: &Config, version: u64) -> Self {
        let parsed = &loaded.parsed;
        let first_seen = list.first_seen.as_deref();
        Self {
            name: list.name.clone(),
            path: loaded.path.clone(),
            format: parsed.format,
            action: list.action,
            ipv4: list.ipv4.unwrap_or(config.sinkhole.ipv4),
            ipv6: list.ipv6.unwrap_or(config.sinkhole.ipv6),
            ttl: list.ttl.unwrap_or(config.sinkhole.ttl),
            metadata: IocMetadata {
                source: list.source.clone(),
                family: list.family.clone(),
                threat_type: list.threat_type.clone(),
                confidence: list.confidence,
                first_seen: first_seen.and_then(crate::events::time::parse_date_or_time),
            },
            rules: parsed.rules.clone(),
            names: parsed.block.clone(),
            exceptions: parsed.allow.clone(),
            blocked_text: format!("blocked by list {}", list.name),
            policy_version: version,
        }
    }

    pub fn is_log_only(&self) -> bool {
        self.action == Action::LogOnly
    }

    pub fn rule(&self, rule: u32) -> Option<&Rule> {
        self.rules.get(rule as usize)
    }

    /// The indicator behind an entry, when the feed described it.
    pub fn indicator(&self, rule: u32) -> Option<&Indicator> {
        self.rule(rule)?.indicator.as_deref()
    }

    /// What is known of the threat behind an entry with this rule: the indicator's own data,
    /// each field falling back to the list's config.
    pub fn threat(&self, rule: u32) -> Threat<'_> {
        let ioc = self.indicator(rule);
        let own = |field: fn(&Indicator) -> Option<&str>| ioc.and_then(field);
        let config = &self.metadata;
        Threat {
            id: own(|ioc| ioc.id.as_deref()),
            family: own(|ioc| ioc.family.as_deref()).or(config.family.as_deref()),
            category: own(|ioc| ioc.threat_type.as_deref()).or(config.threat_type.as_deref()),
            confidence: ioc.and_then(|ioc| ioc.confidence).or(config.confidence),
            first_seen: own(|ioc| ioc.first_seen.as_deref()).or(config.first_seen.as_deref()),
            last_seen: own(|ioc| ioc.last_seen.as_deref()),
        }
    }

    /// What an entry with this rule does to a query: its own action, else the list's.
    pub fn response(&self, rule: u32) -> Response<'_> {
        let own = self.rule(rule).and_then(|rule| rule.action.as_ref());
        match (self.action, own) {
            (Action::LogOnly, _) => Response::LogOnly,
            (_, Some(EntryAction::Nxdomain)) => Response::Nxdomain,
            (_, Some(EntryAction::Nodata)) => Response::Nodata,
            (_, Some(EntryAction::Drop)) => Response::Drop,
            (_, Some(EntryAction::TcpOnly)) => Response::TcpOnly,
            (_, Some(EntryAction::Local(data))) => Response::Local(data),
            (Action::Sinkhole, None) => Response::Sinkhole,
            (Action::Nxdomain, None) => Response::Nxdomain,
            (Action::Nodata, None) => Response::Nodata,
            (Action::Refuse, None) => Response::Refuse,
            (Action::Drop, None) => Response::Drop,
        }
    }
}

/// The answer a matched query gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response<'a> {
    /// The list's sinkhole address for A and AAAA, NODATA for other types.
    Sinkhole,
    Nxdomain,
    Nodata,
    Refuse,
    /// No answer.
    Drop,
    /// TC over UDP; over TCP the query goes on as if unmatched.
    TcpOnly,
    /// The entry's own records.
    Local(&'a LocalData),
    /// The answer is not changed; an event is written.
    LogOnly,
}

impl Response<'_> {
    /// `DvcOriginalAction` of events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sinkhole => "sinkhole",
            Self::Nxdomain => "nxdomain",
            Self::Nodata => "nodata",
            Self::Refuse => "refuse",
            Self::Drop => "drop",
            Self::TcpOnly => "tcp-only",
            Self::Local(_) => "local-data",
            Self::LogOnly => "log-only",
        }
    }
}

/// What matched: a name, the client's address, or an address in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger<'p> {
    Name {
        /// The listed domain.
        domain: &'p [u8],
        /// The label of the matched name where the listed domain starts.
        label: usize,
        scope: Scope,
    },
    Client {
        network: IpNet,
    },
    Answer {
        address: IpAddr,
        network: IpNet,
    },
}

/// A blocklist entry that matched.
#[derive(Debug, Clone, Copy)]
pub struct BlockMatch<'p> {
    pub list: &'p Arc<Blocklist>,
    pub rule: u32,
    pub trigger: Trigger<'p>,
}

impl<'p> BlockMatch<'p> {
    pub fn response(&self) -> Response<'p> {
        self.list.response(self.rule)
    }

    /// The entry as the list wrote it: `domain`, `*.domain`, `=domain` or a network.
    pub fn entry(&self) -> String {
        match self.trigger {
            Trigger::Name { domain, scope, .. } => scope.show(&String::from_utf8_lossy(domain)),
            Trigger::Client { network } | Trigger::Answer { network, .. } => network.to_string(),
        }
    }

    /// An owned copy for an event.
    pub fn record(&self) -> MatchRecord {
        let (kind, address) = match self.trigger {
            Trigger::Name { .. } => (TriggerKind::Domain, None),
            Trigger::Client { .. } => (TriggerKind::ClientIp, None),
            Trigger::Answer { address, .. } => (TriggerKind::ResponseIp, Some(address)),
        };
        MatchRecord {
            list: self.list.clone(),
            rule: self.rule,
            entry: self.entry(),
            kind,
            address,
        }
    }
}

/// The kind of trigger that matched, as events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Domain,
    ClientIp,
    ResponseIp,
}

/// A match that outlives the policy snapshot, for events.
#[derive(Debug, Clone)]
pub struct MatchRecord {
    pub list: Arc<Blocklist>,
    pub rule: u32,
    /// The entry as [`BlockMatch::entry`] shows it.
    pub entry: String,
    pub kind: TriggerKind,
    /// For a response-IP trigger: the address of the answer that matched.
    pub address: Option<IpAddr>,
}

impl MatchRecord {
    pub fn indicator(&self) -> Option<&Indicator> {
        self.list.indicator(self.rule)
    }

    pub fn response(&self) -> Response<'_> {
        self.list.response(self.rule)
    }
}
