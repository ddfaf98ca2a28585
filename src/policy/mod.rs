//! The policy: one immutable snapshot of every list and rule, and the decision for one query.
//!
//! Precedence, highest first:
//! 1. an exempt client (`[[exempt]]`): nothing is blocked;
//! 2. an allowlisted name (`[[allowlist]]`, AdBlock `@@` and RPZ PASSTHRU entries): let through;
//! 3. a client-IP trigger (RPZ `rpz-client-ip`), most specific network first;
//! 4. a name trigger: the most specific listed domain (the name itself before a parent), then
//!    the list that comes first in the config;
//! 5. after the upstream answered: the names of the answer's CNAME chain in chain order, then
//!    response-IP triggers on its addresses, most specific network first.
//!
//! Lists with `action = "log-only"` are consulted only when no enforcing list matched, so a
//! feed in shadow mode never hides a match of an enforcing one; their matches change nothing
//! but are written as events.

pub mod blocklist;
pub mod conflicts;
pub mod index;
pub mod listing;
pub mod networks;

pub use blocklist::{
    BlockMatch, Blocklist, IocMetadata, MatchRecord, Response, Trigger, TriggerKind,
};
pub use conflicts::Conflict;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::Config;
use crate::dns::name::QueryName;
use crate::lists::{LoadedList, NameTriggers};
use index::{DomainIndex, DomainIndexBuilder};
use networks::NetworkIndex;

/// A loaded allowlist.
#[derive(Debug)]
pub struct Allowlist {
    pub name: String,
    pub path: PathBuf,
    /// Every name it protects, kept for `sinkhole check`.
    pub names: Vec<NameTriggers>,
}

/// A group of clients that is never blocked.
#[derive(Debug)]
struct Exemption {
    name: String,
    networks: Vec<IpNet>,
}

/// Why a query that a blocklist matches is let through anyway.
#[derive(Debug, Clone, Copy)]
pub enum Exception<'p> {
    /// The client is exempt; the name of its `[[exempt]]` group.
    Client(&'p str),
    /// The name is allowlisted: the list that protects it and its entry.
    Name {
        allowlist: &'p str,
        domain: &'p [u8],
    },
}

/// The policy's decision for one query.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'p> {
    /// No enforcing list matched: forward, and check the answer. `shadow` is a log-only
    /// list's match, to be written as an event once the answer is known.
    Forward { shadow: Option<BlockMatch<'p>> },
    /// Answer as the entry says; nothing goes upstream.
    Block(BlockMatch<'p>),
    /// Forward unchanged, without checking the answer. `blocked` is the blocklist entry that
    /// was overridden, if any, so the exception can be logged.
    Except {
        exception: Exception<'p>,
        blocked: Option<BlockMatch<'p>>,
    },
}

/// A match in an upstream's answer.
#[derive(Debug, Clone)]
pub struct AnswerMatch<'p> {
    pub found: BlockMatch<'p>,
    /// The CNAME chain link that matched; `None` for a response-IP trigger.
    pub link: Option<QueryName>,
}

/// The triggers of one group of blocklists (enforcing, or log-only).
#[derive(Debug)]
struct Triggers {
    names: DomainIndex,
    answers: NetworkIndex,
    clients: NetworkIndex,
    /// The position in `Policy::blocklists` of each list, by its number in the indexes.
    lists: Vec<usize>,
}

impl Triggers {
    fn build(blocklists: &[Arc<Blocklist>], lists: &[Arc<LoadedList>], log_only: bool) -> Self {
        let members: Vec<usize> = (0..blocklists.len())
            .filter(|&at| blocklists[at].is_log_only() == log_only)
            .collect();
        let names = members.iter().map(|&at| lists[at].parsed.block.len()).sum();
        let mut builder = DomainIndexBuilder::with_capacity(names);
        members
            .iter()
            .for_each(|&at| builder.add_list(&lists[at].parsed.block));
        let answers = members.iter().map(|&at| &lists[at].parsed.response_ips[..]);
        let clients = members.iter().map(|&at| &lists[at].parsed.client_ips[..]);
        Self {
            names: builder.build(),
            answers: NetworkIndex::build(answers),
            clients: NetworkIndex::build(clients),
            lists: members,
        }
    }

    fn list<'p>(&self, blocklists: &'p [Arc<Blocklist>], number: u32) -> &'p Arc<Blocklist> {
        // Every number in the indexes was made from `lists`, which holds positions of
        // `blocklists`.
        &blocklists[self.lists[number as usize]]
    }
}

/// One immutable snapshot of the policy. The query path only ever reads it.
#[derive(Debug)]
pub struct Policy {
    /// Increases with every published policy.
    pub version: u64,
    pub blocklists: Vec<Arc<Blocklist>>,
    pub allowlists: Vec<Allowlist>,
    enforced: Triggers,
    shadow: Triggers,
    allowed: DomainIndex,
    /// The list behind each number of `allowed`.
    allow_sources: Vec<String>,
    exemptions: Vec<Exemption>,
    clients: Vec<IpNet>,
    /// Blocklist entries that an allowlist protects, found while building.
    pub conflicts: conflicts::Conflicts,
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
            .map(|(list, loaded)| Arc::new(Blocklist::new(list, loaded, config, version)))
            .collect();
        let allowlists: Vec<Allowlist> = config
            .allowlists
            .iter()
            .zip(allow_lists)
            .map(|(list, loaded)| Allowlist {
                name: list.name.clone(),
                path: loaded.path.clone(),
                names: vec![loaded.parsed.block.clone(), loaded.parsed.allow.clone()],
            })
            .collect();
        let (allowed, allow_sources) = allowed_index(&blocklists, &allowlists);

        // Looking every listed name up among the protected ones takes as long as building
        // the name index, and needs nothing from it: do both at once.
        let (enforced, conflicts) = std::thread::scope(|scope| {
            let conflicts = scope.spawn(|| conflicts::find(&blocklists, &allowed, &allow_sources));
            let enforced = Triggers::build(&blocklists, block_lists, false);
            let conflicts = conflicts
                .join()
                .unwrap_or_else(|_| conflicts::Conflicts::default());
            (enforced, conflicts)
        });
        Self {
            version,
            enforced,
            shadow: Triggers::build(&blocklists, block_lists, true),
            blocklists,
            allowlists,
            allowed,
            allow_sources,
            exemptions: exemptions(config),
            clients: config.server.allow_clients.iter().map(|n| n.0).collect(),
            conflicts,
        }
    }

    /// Whether this client may query at all.
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        self.clients.iter().any(|network| network.contains(&client))
    }

    /// The decision for a query for `name` from `client`.
    pub fn decide(&self, name: &QueryName, client: IpAddr) -> Decision<'_> {
        if let Some(group) = self.exemption(client) {
            let blocked = self.query_match(&self.enforced, name, client);
            let exception = Exception::Client(group);
            return Decision::Except { exception, blocked };
        }
        if let Some(hit) = self.allowed.lookup(name) {
            let blocked = self.query_match(&self.enforced, name, client);
            let exception = Exception::Name {
                allowlist: &self.allow_sources[hit.list as usize],
                domain: hit.domain,
            };
            return Decision::Except { exception, blocked };
        }
        match self.query_match(&self.enforced, name, client) {
            Some(found) => Decision::Block(found),
            None => Decision::Forward {
                shadow: self.query_match(&self.shadow, name, client),
            },
        }
    }

    /// The first match in an upstream's answer: its CNAME chain (allowlisted links excepted),
    /// then its addresses. `log_only` asks the log-only lists instead of the enforcing ones.
    pub fn answer_match(
        &self,
        chain: &[QueryName],
        addresses: &[IpAddr],
        log_only: bool,
    ) -> Option<AnswerMatch<'_>> {
        let triggers = if log_only {
            &self.shadow
        } else {
            &self.enforced
        };
        if triggers.lists.is_empty() {
            return None;
        }
        // The allowlist is asked only about a link some list matches: most answers match none.
        let link = chain.iter().find_map(|link| {
            let found = self.name_match(triggers, link)?;
            self.allowed
                .lookup(link)
                .is_none()
                .then(|| (found, link.clone()))
        });
        if let Some((found, link)) = link {
            let link = Some(link);
            return Some(AnswerMatch { found, link });
        }
        if triggers.answers.is_empty() {
            return None;
        }
        addresses.iter().find_map(|&address| {
            let hit = triggers.answers.lookup(address)?;
            let found = BlockMatch {
                list: triggers.list(&self.blocklists, hit.list),
                rule: hit.rule,
                trigger: Trigger::Answer {
                    address,
                    network: hit.network,
                },
            };
            Some(AnswerMatch { found, link: None })
        })
    }

    /// A client-IP trigger, else a name trigger.
    fn query_match<'p>(
        &'p self,
        triggers: &'p Triggers,
        name: &QueryName,
        client: IpAddr,
    ) -> Option<BlockMatch<'p>> {
        if !triggers.clients.is_empty()
            && let Some(hit) = triggers.clients.lookup(client)
        {
            return Some(BlockMatch {
                list: triggers.list(&self.blocklists, hit.list),
                rule: hit.rule,
                trigger: Trigger::Client {
                    network: hit.network,
                },
            });
        }
        self.name_match(triggers, name)
    }

    fn name_match<'p>(
        &'p self,
        triggers: &'p Triggers,
        name: &QueryName,
    ) -> Option<BlockMatch<'p>> {
        let hit = triggers.names.lookup(name)?;
        Some(BlockMatch {
            list: triggers.list(&self.blocklists, hit.list),
            rule: hit.rule,
            trigger: Trigger::Name {
                domain: hit.domain,
                label: hit.label,
                scope: hit.scope,
            },
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

    /// Names held by the enforcing and log-only blocklists, after de-duplication.
    pub fn blocked_names(&self) -> usize {
        self.enforced.names.len() + self.shadow.names.len()
    }

    /// IP triggers held, after de-duplication.
    pub fn ip_triggers(&self) -> usize {
        let count = |t: &Triggers| t.answers.len() + t.clients.len();
        count(&self.enforced) + count(&self.shadow)
    }

    /// Names the allowlists and exceptions protect.
    pub fn allowed_names(&self) -> usize {
        self.allowed.len()
    }

    /// Heap bytes held by the name indexes, the names included.
    pub fn index_bytes(&self) -> usize {
        self.enforced.names.heap_bytes()
            + self.shadow.names.heap_bytes()
            + self.allowed.heap_bytes()
    }
}

/// One index of every protected name: each allowlist's entries, then the exceptions of the
/// enforcing blocklists (a log-only list changes no answer, its exceptions neither). Returns
/// the list name behind each of its list numbers too.
fn allowed_index(
    blocklists: &[Arc<Blocklist>],
    allowlists: &[Allowlist],
) -> (DomainIndex, Vec<String>) {
    let mut builder = DomainIndexBuilder::default();
    let mut sources = Vec::new();
    for list in allowlists {
        for names in &list.names {
            builder.add_list(names);
            sources.push(list.name.clone());
        }
    }
    for list in blocklists.iter().filter(|list| !list.is_log_only()) {
        builder.add_list(&list.exceptions);
        sources.push(list.name.clone());
    }
    (builder.build(), sources)
}

fn exemptions(config: &Config) -> Vec<Exemption> {
    config
        .exemptions
        .iter()
        .map(|exempt| Exemption {
            name: exempt.name.clone(),
            networks: exempt.clients.iter().map(|network| network.0).collect(),
        })
        .collect()
}

/// IPv4 clients on a dual-stack socket arrive as `::ffff:a.b.c.d`; match them as IPv4.
pub(crate) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::{Attr, EntryAction, Format, ListBuilder, ListOptions, Rule, Scope};
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::time::Duration;

    fn loaded(build: impl FnOnce(&mut ListBuilder<'_>)) -> Arc<LoadedList> {
        let options = ListOptions::default();
        let mut builder = ListBuilder::new(&options, 0);
        build(&mut builder);
        Arc::new(LoadedList {
            path: "mem".into(),
            parsed: builder.finish(Format::Domains),
            elapsed: Duration::ZERO,
            stamp: None,
            sha256: String::new(),
            options_key: String::new(),
        })
    }

    fn list(names: &[&str]) -> Arc<LoadedList> {
        loaded(|list| names.iter().for_each(|name| list.block(name, 1)))
    }

    const CONFIG: &str = r#"
        [[blocklist]]
        name = "remus"
        path = "remus.txt"
        family = "Remus"
        [[blocklist]]
        name = "second"
        path = "second.txt"
        action = "nxdomain"
        [[blocklist]]
        name = "shadow"
        path = "shadow.txt"
        action = "log-only"
        [[allowlist]]
        name = "microsoft-update"
        path = "allow.txt"
        [[exempt]]
        name = "veeam"
        clients = ["10.0.5.20", "10.9.0.0/16"]
    "#;

    fn policy() -> Policy {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let lists = [
            list(&["posdteu.shop", "shared.test", "windowsupdate.com"]),
            loaded(|list| {
                list.block("shared.test", 1);
                list.block("deep.posdteu.shop", 2);
                let nodata = list.rule(Rule {
                    action: Some(EntryAction::Nodata),
                    indicator: None,
                });
                let exact = Attr {
                    rule: nodata,
                    scope: Scope::NameOnly,
                };
                list.block_with("exact.test", 3, exact);
                list.allow("safe.posdteu.shop", 4, Scope::NameAndSubdomains);
                list.response_ip("198.51.100.0/24".parse().unwrap(), 0);
                list.client_ip("192.168.66.0/24".parse().unwrap(), nodata);
            }),
            loaded(|list| {
                list.block("posdteu.shop", 1);
                list.block("newfeed.test", 2);
                list.response_ip("203.0.113.9/32".parse().unwrap(), 0);
            }),
            list(&["windowsupdate.com"]),
        ];
        Policy::build(&config, &lists, 1)
    }

    fn name(text: &str) -> QueryName {
        QueryName::from_text(text).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));

    fn blocked<'p>(policy: &'p Policy, text: &str) -> BlockMatch<'p> {
        match policy.decide(&name(text), CLIENT) {
            Decision::Block(found) => found,
            other => panic!("{text} not blocked: {other:?}"),
        }
    }

    #[test]
    fn blocks_names_and_subdomains() {
        let policy = policy();
        let found = blocked(&policy, "C2.PosdTeu.Shop.");
        assert_eq!(found.list.name, "remus");
        assert_eq!(found.entry(), "posdteu.shop");
        assert!(matches!(found.trigger, Trigger::Name { label: 1, .. }));
        assert_eq!(found.response(), Response::Sinkhole);
        assert!(matches!(
            policy.decide(&name("example.com"), CLIENT),
            Decision::Forward { shadow: None }
        ));
    }

    #[test]
    fn most_specific_entry_then_list_order_decides() {
        let policy = policy();
        assert_eq!(blocked(&policy, "x.deep.posdteu.shop").list.name, "second");
        assert_eq!(blocked(&policy, "shared.test").list.name, "remus");
        assert_eq!(
            blocked(&policy, "shared.test").response(),
            Response::Sinkhole
        );
        assert_eq!(
            blocked(&policy, "deep.posdteu.shop").response(),
            Response::Nxdomain
        );
    }

    #[test]
    fn entries_keep_their_own_reach_and_action() {
        let policy = policy();
        let found = blocked(&policy, "exact.test");
        assert_eq!(found.response(), Response::Nodata);
        assert_eq!(found.entry(), "=exact.test");
        assert!(matches!(
            policy.decide(&name("a.exact.test"), CLIENT),
            Decision::Forward { .. }
        ));
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
    fn a_blocklists_own_exceptions_protect_names() {
        let policy = policy();
        let decision = policy.decide(&name("www.safe.posdteu.shop"), CLIENT);
        let Decision::Except {
            exception: Exception::Name { allowlist, domain },
            ..
        } = decision
        else {
            panic!("not excepted: {decision:?}");
        };
        assert_eq!((allowlist, domain), ("second", &b"safe.posdteu.shop"[..]));
    }

    #[test]
    fn log_only_lists_match_only_where_no_enforcing_list_does() {
        let policy = policy();
        let Decision::Forward {
            shadow: Some(found),
        } = policy.decide(&name("newfeed.test"), CLIENT)
        else {
            panic!("no log-only match");
        };
        assert_eq!(found.list.name, "shadow");
        assert_eq!(found.response(), Response::LogOnly);
        // The shadow list holds posdteu.shop too; the enforcing list still decides.
        assert_eq!(blocked(&policy, "posdteu.shop").list.name, "remus");
    }

    #[test]
    fn client_ip_triggers_apply_before_names() {
        let policy = policy();
        let found = match policy.decide(&name("example.com"), "192.168.66.7".parse().unwrap()) {
            Decision::Block(found) => found,
            other => panic!("{other:?}"),
        };
        assert_eq!(found.list.name, "second");
        assert_eq!(found.response(), Response::Nodata);
        assert_eq!(found.entry(), "192.168.66.0/24");
    }

    #[test]
    fn answers_are_checked_by_chain_then_address() {
        let policy = policy();
        let chain = [name("cdn.example"), name("edge.posdteu.shop")];
        let found = policy.answer_match(&chain, &[], false).unwrap();
        assert_eq!(found.link.unwrap().to_text(), "edge.posdteu.shop");

        let addresses = [
            "192.0.2.1".parse().unwrap(),
            "198.51.100.20".parse().unwrap(),
        ];
        let found = policy.answer_match(&chain[..1], &addresses, false).unwrap();
        assert!(found.link.is_none());
        assert!(
            matches!(found.found.trigger, Trigger::Answer { address, .. }
            if address == addresses[1])
        );
        assert_eq!(found.found.entry(), "198.51.100.0/24");

        let shadow = ["203.0.113.9".parse().unwrap()];
        assert!(policy.answer_match(&[], &shadow, false).is_none());
        let found = policy.answer_match(&[], &shadow, true).unwrap();
        assert_eq!(found.found.list.name, "shadow");
    }

    #[test]
    fn allowlisted_chain_links_are_not_blocked() {
        let policy = policy();
        let allowed = [name("a.windowsupdate.com")];
        assert!(policy.answer_match(&allowed, &[], false).is_none());
    }

    #[test]
    fn conflicts_are_found_once_per_entry() {
        let policy = policy();
        let conflicts = &policy.conflicts;
        assert_eq!(conflicts.total, 1, "{:?}", conflicts.found);
        let conflict = &conflicts.found[0];
        assert_eq!(conflict.list.name, "remus");
        assert_eq!(conflict.entry, "windowsupdate.com");
        assert_eq!(conflict.allowlist, "microsoft-update");
    }

    #[test]
    fn listings_show_every_list_that_matches() {
        let policy = policy();
        let found = listing::listings(&policy, &name("a.posdteu.shop"));
        let lists: Vec<&str> = found.iter().map(|l| l.list.as_str()).collect();
        assert_eq!(lists, ["remus", "shadow"]);
        let found = listing::listings(&policy, &name("safe.posdteu.shop"));
        assert!(found.iter().any(|l| l.role == listing::Role::Exception));
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
}
