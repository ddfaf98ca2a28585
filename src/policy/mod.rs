//! The policy: one immutable snapshot of every list and rule, and the decision for one query.
//!
//! Precedence, highest first: an exempt client, an allowlisted name, a blocklisted name, and
//! otherwise forwarding. Among blocklists the most specific listed domain decides; when two
//! lists hold the same domain, the one earlier in the config decides.

pub mod index;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Action, BlocklistConfig, Config};
use crate::dns::name::QueryName;
use crate::lists::LoadedList;
use index::{DomainIndex, DomainIndexBuilder, IndexHit};

/// What the threat intel says about a list's indicators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IocMetadata {
    pub source: Option<String>,
    pub family: Option<String>,
    pub threat_type: Option<String>,
    pub confidence: Option<u8>,
    /// RFC 3339 time.
    pub first_seen: Option<String>,
}

/// A loaded blocklist and how it answers.
#[derive(Debug)]
pub struct Blocklist {
    pub name: String,
    pub path: PathBuf,
    pub action: Action,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub ttl: u32,
    pub metadata: IocMetadata,
    pub entries: usize,
    /// The Extended DNS Error text of its blocked answers.
    pub blocked_text: String,
}

impl Blocklist {
    fn new(list: &BlocklistConfig, loaded: &LoadedList, config: &Config) -> Self {
        let first_seen = list.first_seen.as_deref();
        Self {
            name: list.name.clone(),
            path: loaded.path.clone(),
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
            entries: loaded.parsed.block.len(),
            blocked_text: format!("blocked by list {}", list.name),
        }
    }
}

/// A loaded allowlist.
#[derive(Debug)]
pub struct Allowlist {
    pub name: String,
    pub path: PathBuf,
    pub entries: usize,
}

/// A group of clients that is never blocked.
#[derive(Debug)]
struct Exemption {
    name: String,
    networks: Vec<IpNet>,
}

/// A blocklist entry that matched a name.
#[derive(Debug, Clone, Copy)]
pub struct BlockMatch<'p> {
    pub list: &'p Arc<Blocklist>,
    /// The listed domain that matched.
    pub domain: &'p [u8],
    /// The label of the name where the listed domain starts.
    pub label: usize,
}

impl BlockMatch<'_> {
    pub fn domain_text(&self) -> String {
        String::from_utf8_lossy(self.domain).into_owned()
    }
}

/// Why a query that a blocklist matches is let through anyway.
#[derive(Debug, Clone, Copy)]
pub enum Exception<'p> {
    /// The client is exempt; the name of its `[[exempt]]` group.
    Client(&'p str),
    /// The name is allowlisted: the allowlist and its entry.
    Name {
        allowlist: &'p str,
        domain: &'p [u8],
    },
}

/// The policy's decision for one query.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'p> {
    /// No list has anything to say: forward, and check the answer's CNAME chain.
    Forward,
    /// Answer locally as the list says; nothing goes upstream.
    Block(BlockMatch<'p>),
    /// Forward unchanged, without CNAME checks. `blocked` is the blocklist entry that was
    /// overridden, if any, so the exception can be logged.
    Except {
        exception: Exception<'p>,
        blocked: Option<BlockMatch<'p>>,
    },
}

/// One immutable snapshot of the policy. The query path only ever reads it.
#[derive(Debug)]
pub struct Policy {
    /// Increases with every published policy.
    pub version: u64,
    pub blocklists: Vec<Arc<Blocklist>>,
    pub allowlists: Vec<Allowlist>,
    blocked: DomainIndex,
    allowed: DomainIndex,
    exemptions: Vec<Exemption>,
    clients: Vec<IpNet>,
}

impl Policy {
    /// Builds a policy from a config and the lists it names, loaded already; `lists` yields
    /// each `[[blocklist]]` then each `[[allowlist]]`, in config order.
    pub fn build(config: &Config, lists: &[Arc<LoadedList>], version: u64) -> Self {
        let (block_lists, allow_lists) = lists.split_at(config.blocklists.len().min(lists.len()));
        let blocklists: Vec<Arc<Blocklist>> = config
            .blocklists
            .iter()
            .zip(block_lists)
            .map(|(list, loaded)| Arc::new(Blocklist::new(list, loaded, config)))
            .collect();
        let allowlists = config
            .allowlists
            .iter()
            .zip(allow_lists)
            .map(|(list, loaded)| Allowlist {
                name: list.name.clone(),
                path: loaded.path.clone(),
                entries: loaded.parsed.block.len(),
            })
            .collect();
        let exemptions = config
            .exemptions
            .iter()
            .map(|exempt| Exemption {
                name: exempt.name.clone(),
                networks: exempt.clients.iter().map(|network| network.0).collect(),
            })
            .collect();
        let clients = config
            .server
            .allow_clients
            .iter()
            .map(|network| network.0)
            .collect();

        Self {
            version,
            blocklists,
            allowlists,
            blocked: index_of(block_lists),
            allowed: index_of(allow_lists),
            exemptions,
            clients,
        }
    }

    /// Whether this client may query at all.
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        self.clients.iter().any(|network| network.contains(&client))
    }

    /// The decision for a query for `name` from `client`.
    pub fn decide(&self, name: &QueryName, client: IpAddr) -> Decision<'_> {
        let exemption = self.exemption(client);
        let allowed = self.allowed.lookup(name);
        let blocked = self.blocklist_match(name);

        if let Some(group) = exemption {
            let exception = Exception::Client(group);
            return Decision::Except { exception, blocked };
        }
        if let Some(hit) = allowed {
            let allowlist = &self.allowlists[hit.list as usize].name;
            let exception = Exception::Name {
                allowlist,
                domain: hit.domain,
            };
            return Decision::Except { exception, blocked };
        }
        match blocked {
            Some(found) => Decision::Block(found),
            None => Decision::Forward,
        }
    }

    /// The blocklist entry for a name in an answer's CNAME chain, unless it is allowlisted.
    pub fn chain_link_blocked(&self, name: &QueryName) -> Option<BlockMatch<'_>> {
        if self.allowed.lookup(name).is_some() {
            return None;
        }
        self.blocklist_match(name)
    }

    fn blocklist_match(&self, name: &QueryName) -> Option<BlockMatch<'_>> {
        self.blocked
            .lookup(name)
            .map(|hit: IndexHit<'_>| BlockMatch {
                list: &self.blocklists[hit.list as usize],
                domain: hit.domain,
                label: hit.label,
            })
    }

    fn exemption(&self, client: IpAddr) -> Option<&str> {
        if self.exemptions.is_empty() {
            return None;
        }
        let client = canonical(client);
        self.exemptions
            .iter()
            .find(|group| {
                group
                    .networks
                    .iter()
                    .any(|network| network.contains(&client))
            })
            .map(|group| group.name.as_str())
    }

    /// Names held by all blocklists together, after de-duplication.
    pub fn blocked_names(&self) -> usize {
        self.blocked.len()
    }

    /// Heap bytes held by the two name indexes, the names included.
    pub fn index_bytes(&self) -> usize {
        self.blocked.heap_bytes() + self.allowed.heap_bytes()
    }
}

/// One index over the names of `lists`, reporting each list by its position.
fn index_of(lists: &[Arc<LoadedList>]) -> DomainIndex {
    let names = lists.iter().map(|list| list.parsed.block.len()).sum();
    let mut builder = DomainIndexBuilder::with_capacity(names);
    lists
        .iter()
        .for_each(|list| builder.add_list(list.parsed.block.names.clone()));
    builder.build()
}

/// IPv4 clients on a dual-stack socket arrive as `::ffff:a.b.c.d`; match them as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::{LoadedList, ParsedList};
    use std::path::Path;
    use std::time::Duration;

    fn list(names: &[&str]) -> Arc<LoadedList> {
        let parsed = ParsedList {
            block: crate::lists::NameTriggers {
                names: Arc::new(names.iter().copied().collect()),
                ..Default::default()
            },
            ..ParsedList::default()
        };
        Arc::new(LoadedList {
            path: "mem".into(),
            parsed,
            elapsed: Duration::ZERO,
        })
    }

    fn policy() -> Policy {
        let text = r#"
            [[blocklist]]
            name = "remus"
            path = "remus.txt"
            family = "Remus"
            [[blocklist]]
            name = "second"
            path = "second.txt"
            action = "nxdomain"
            [[allowlist]]
            name = "microsoft-update"
            path = "allow.txt"
            [[exempt]]
            name = "veeam"
            clients = ["10.0.5.20", "10.9.0.0/16"]
        "#;
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let lists = [
            list(&["posdteu.shop", "shared.test", "windowsupdate.com"]),
            list(&["shared.test", "deep.posdteu.shop"]),
            list(&["windowsupdate.com"]),
        ];
        Policy::build(&config, &lists, 1)
    }

    fn name(text: &str) -> QueryName {
        QueryName::from_text(text).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));

    #[test]
    fn blocks_names_and_subdomains() {
        let policy = policy();
        let Decision::Block(found) = policy.decide(&name("C2.PosdTeu.Shop."), CLIENT) else {
            panic!("not blocked");
        };
        assert_eq!(found.list.name, "remus");
        assert_eq!(found.domain, b"posdteu.shop");
        assert_eq!(found.label, 1);
        assert!(matches!(
            policy.decide(&name("example.com"), CLIENT),
            Decision::Forward
        ));
    }

    #[test]
    fn most_specific_entry_then_list_order_decides() {
        let policy = policy();
        let Decision::Block(found) = policy.decide(&name("x.deep.posdteu.shop"), CLIENT) else {
            panic!("not blocked");
        };
        assert_eq!(found.list.name, "second");
        let Decision::Block(found) = policy.decide(&name("shared.test"), CLIENT) else {
            panic!("not blocked");
        };
        assert_eq!(found.list.name, "remus");
    }

    #[test]
    fn allowlist_beats_blocklist_and_exemption_beats_both() {
        let policy = policy();
        let decision = policy.decide(&name("download.windowsupdate.com"), CLIENT);
        let Decision::Except {
            exception: Exception::Name { allowlist, .. },
            blocked,
        } = decision
        else {
            panic!("not allowlisted: {decision:?}");
        };
        assert_eq!(allowlist, "microsoft-update");
        assert_eq!(blocked.unwrap().list.name, "remus");

        for client in ["10.0.5.20", "10.9.3.4", "::ffff:10.0.5.20"] {
            let decision = policy.decide(&name("posdteu.shop"), client.parse().unwrap());
            assert!(
                matches!(
                    decision,
                    Decision::Except {
                        exception: Exception::Client("veeam"),
                        blocked: Some(_)
                    }
                ),
                "{client}: {decision:?}"
            );
        }
    }

    #[test]
    fn access_control_admits_private_ranges_only() {
        let policy = policy();
        for client in [
            "127.0.0.1",
            "10.1.1.1",
            "192.168.0.5",
            "::1",
            "fd00::1",
            "::ffff:172.16.0.1",
        ] {
            assert!(policy.admits(client.parse().unwrap()), "{client}");
        }
        for client in ["8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert!(!policy.admits(client.parse().unwrap()), "{client}");
        }
    }

    #[test]
    fn allowlisted_chain_links_are_not_blocked() {
        let policy = policy();
        assert!(
            policy
                .chain_link_blocked(&name("a.windowsupdate.com"))
                .is_none()
        );
        assert!(policy.chain_link_blocked(&name("a.posdteu.shop")).is_some());
    }
}
