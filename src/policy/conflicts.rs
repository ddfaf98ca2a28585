//! Blocklist entries that an allowlist protects: the allowlist wins, and the analyst is told.
//!
//! Found once per policy build by looking up every blocklist name in the protected-name index,
//! so the cost is one lookup per listed name, and nothing when no name is protected.

use std::sync::Arc;

use super::Blocklist;
use super::index::DomainIndex;

/// Conflicts kept with their details per build; the rest are only counted.
pub const KEPT: usize = 1000;

/// A blocklist entry that an allowlist entry protects.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub list: Arc<Blocklist>,
    pub rule: u32,
    /// The blocklist entry, as `sinkhole check` shows it.
    pub entry: String,
    /// The list that protects it, and its entry.
    pub allowlist: String,
    pub protected_by: String,
}

/// The conflicts of one policy.
#[derive(Debug, Clone, Default)]
pub struct Conflicts {
    /// The first [`KEPT`], in list order.
    pub found: Vec<Conflict>,
    pub total: usize,
}

/// Every entry of `blocklists` that `allowed` protects; `sources` names the list behind each
/// list number of `allowed`.
pub fn find(blocklists: &[Arc<Blocklist>], allowed: &DomainIndex, sources: &[String]) -> Conflicts {
    let mut conflicts = Conflicts::default();
    if allowed.is_empty() {
        return conflicts;
    }
    for list in blocklists {
        for (name, attr) in list.names.iter() {
            let Some(hit) = allowed.lookup_text(name) else {
                continue;
            };
            conflicts.total += 1;
            if conflicts.found.len() < KEPT {
                conflicts.found.push(Conflict {
                    list: list.clone(),
                    rule: attr.rule,
                    entry: attr.scope.show(name),
                    allowlist: sources[hit.list as usize].clone(),
                    protected_by: String::from_utf8_lossy(hit.domain).into_owned(),
                });
            }
        }
    }
    conflicts
}
