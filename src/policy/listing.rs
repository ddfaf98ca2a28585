//! Every list entry that matches a name, for `sinkhole check`.
//!
//! The query path asks the indexes, which keep one entry per name; this walks the lists
//! themselves, so it also finds entries that an earlier list's duplicate hides. It reads
//! every entry once: milliseconds for a million names, fine for a command, not for a query.

use std::sync::Arc;

use super::{Blocklist, Policy};
use crate::dns::name::QueryName;
use crate::lists::NameTriggers;

/// What a list's matching entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A blocklist entry.
    Block,
    /// An exception inside a blocklist (AdBlock `@@`, RPZ PASSTHRU).
    Exception,
    /// An allowlist entry.
    Allow,
}

/// One list entry that matches the name.
#[derive(Debug, Clone)]
pub struct Listing {
    pub list: String,
    pub role: Role,
    /// The entry, as [`crate::lists::Scope::show`] writes it.
    pub entry: String,
    /// For blocklist entries: the list and the entry's rule.
    pub rule: Option<(Arc<Blocklist>, u32)>,
}

/// Every entry of every list that covers `name`, in config order.
pub fn listings(policy: &Policy, name: &QueryName) -> Vec<Listing> {
    let suffixes: Vec<(usize, &[u8])> = name.suffixes().collect();
    let mut found = Vec::new();
    for list in &policy.blocklists {
        for (entry, rule) in matches(&list.names, &suffixes) {
            found.push(Listing {
                list: list.name.clone(),
                role: Role::Block,
                entry,
                rule: Some((list.clone(), rule)),
            });
        }
        for (entry, _) in matches(&list.exceptions, &suffixes) {
            let list = list.name.clone();
            found.push(Listing {
                list,
                role: Role::Exception,
                entry,
                rule: None,
            });
        }
    }
    for list in &policy.allowlists {
        for names in &list.names {
            for (entry, _) in matches(names, &suffixes) {
                let list = list.name.clone();
                found.push(Listing {
                    list,
                    role: Role::Allow,
                    entry,
                    rule: None,
                });
            }
        }
    }
    found
}

/// The entries of `names` that cover a name with these suffixes, with their rules.
fn matches(names: &NameTriggers, suffixes: &[(usize, &[u8])]) -> Vec<(String, u32)> {
    names
        .iter()
        .filter_map(|(listed, attr)| {
            let covers = suffixes
                .iter()
                .any(|&(label, suffix)| suffix == listed.as_bytes() && attr.scope.covers(label));
            covers.then(|| (attr.scope.show(listed), attr.rule))
        })
        .collect()
}
