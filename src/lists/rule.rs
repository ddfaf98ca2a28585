//! What a list says about one of its entries: how far the entry reaches, what a match does, and
//! the indicator's metadata.
//!
//! Entries of a plain list all share rule 0, "the list's action and metadata", so a million
//! names cost nothing here. Feeds that carry per-entry data (ThreatFox, RPZ, hosts addresses)
//! add a rule per indicator and point their entries at it.

use std::net::IpAddr;
use std::sync::Arc;

/// Which names a listed domain covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Scope {
    /// The name and every name below it (`||name^`, plain lists by default).
    #[default]
    NameAndSubdomains = 0,
    /// The name only (`|name^`, an RPZ owner name, `match = "exact"`).
    NameOnly = 1,
    /// Names below it, not the name itself (an RPZ `*.name` owner, RFC 4592 wildcard reach).
    SubdomainsOnly = 2,
}

impl Scope {
    /// Whether an entry of this scope matches a query name whose suffix starting at `label`
    /// is the entry (label 0: the query name itself).
    pub fn covers(self, label: usize) -> bool {
        match self {
            Self::NameAndSubdomains => true,
            Self::NameOnly => label == 0,
            Self::SubdomainsOnly => label > 0,
        }
    }

    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::NameOnly,
            2 => Self::SubdomainsOnly,
            _ => Self::NameAndSubdomains,
        }
    }

    /// How `check` and events show an entry: `*.name` for subdomains only, `=name` for the name
    /// only.
    pub fn show(self, domain: &str) -> String {
        match self {
            Self::NameAndSubdomains => domain.to_owned(),
            Self::NameOnly => format!("={domain}"),
            Self::SubdomainsOnly => format!("*.{domain}"),
        }
    }
}

/// What one entry does in place of its list's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAction {
    /// NXDOMAIN (RPZ `CNAME .`).
    Nxdomain,
    /// NOERROR with no records (RPZ `CNAME *.`).
    Nodata,
    /// No answer at all (RPZ `rpz-drop.`).
    Drop,
    /// A truncated answer over UDP, so the client retries over TCP, where the query is
    /// answered normally (RPZ `rpz-tcp-only.`).
    TcpOnly,
    /// Records of the list's own (RPZ local data, a hosts-file address).
    Local(Arc<LocalData>),
}

impl EntryAction {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nxdomain => "nxdomain",
            Self::Nodata => "nodata",
            Self::Drop => "drop",
            Self::TcpOnly => "tcp-only",
            Self::Local(_) => "local-data",
        }
    }
}

/// Local data: the answer a matched name gets instead of the real one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalData {
    /// The addresses answered, each once, IPv4 before IPv6: a blocked query answers with a
    /// slice of them, without building anything.
    pub addresses: Vec<IpAddr>,
    /// A CNAME target, lower case without the trailing dot. A target that starts with `*.`
    /// has the `*` replaced by the query name (RPZ wildcard local data).
    pub cname: Option<String>,
    /// The records' TTL; the list's TTL when absent.
    pub ttl: Option<u32>,
}

impl LocalData {
    /// Adds an address unless it is there already, keeping IPv4 before IPv6.
    pub fn add_address(&mut self, address: IpAddr) {
        if self.addresses.contains(&address) {
            return;
        }
        let at = match address {
            IpAddr::V4(_) => self.ipv4().len(),
            IpAddr::V6(_) => self.addresses.len(),
        };
        self.addresses.insert(at, address);
    }

    pub fn ipv4(&self) -> &[IpAddr] {
        let count = self.addresses.iter().take_while(|a| a.is_ipv4()).count();
        &self.addresses[..count]
    }

    pub fn ipv6(&self) -> &[IpAddr] {
        &self.addresses[self.ipv4().len()..]
    }
}

/// Text of an indicator. Values that many indicators repeat (family, threat type, tags,
/// times) are shared: a feed of a million indicators keeps each such value once.
pub type Text = Arc<str>;

/// What a feed says about one indicator. Absent fields fall back to the list's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indicator {
    /// The feed's IOC id (ThreatFox `ioc_id`).
    pub id: Option<Text>,
    /// The IOC as the feed wrote it (a URL, `ip:port`, a domain).
    pub value: Option<Text>,
    /// The feed's IOC type (`domain`, `url`, `ip:port`).
    pub ioc_type: Option<Text>,
    /// Malware family as people write it (`Remus`).
    pub family: Option<Text>,
    /// The feed's malware key (`win.remus`).
    pub malware: Option<Text>,
    pub threat_type: Option<Text>,
    /// 0 to 100.
    pub confidence: Option<u8>,
    /// RFC 3339 times.
    pub first_seen: Option<Text>,
    pub last_seen: Option<Text>,
    pub tags: Arc<[Text]>,
    pub reference: Option<Text>,
}

/// An entry's rule: its own action and metadata, each falling back to the list's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub action: Option<EntryAction>,
    pub indicator: Option<Arc<Indicator>>,
}

/// The rule every list has at index 0: the list's action and metadata.
pub const LIST_RULE: u32 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_kept_once_ipv4_first() {
        let mut data = LocalData::default();
        for address in [
            "2001:db8::1",
            "192.0.2.1",
            "2001:db8::1",
            "192.0.2.2",
            "192.0.2.1",
        ] {
            data.add_address(address.parse().unwrap());
        }
        let text: Vec<String> = data.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
        assert_eq!(data.ipv4().len(), 2);
        assert_eq!(data.ipv6().len(), 1);
    }
}
