//! A compact, immutable set of domains that answers "which listed domain is this name or one of
//! its parents?" in a few hash probes.
//!
//! The names stay where the lists keep them (see [`Names`]); the index adds one 16-byte slot
//! per name in a table about a quarter larger than the name count. A slot holds the top 32
//! bits of the name's hash (its tag), where the name is, and the entry's reach ([`Scope`]) and
//! rule, so per-entry data costs nothing extra. A name's home in the table is its tag scaled
//! to the table's size, and the slots are laid out in tag order, each at its home or just
//! after the slot before it. A probe therefore starts at the home and reads forward only past
//! smaller tags: usually one cache line, and a second memory read (the name's text) only when
//! the tag matches. A lookup probes each suffix of the query name (longest first), so its cost
//! depends on the query's label count, not on how many names or lists are loaded.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::dns::name::QueryName;
use crate::lists::{Attr, NameTriggers, Names, Scope};

/// Fixed seed: the index is rebuilt on every load, so only speed matters, not secrecy; a
/// query cannot steer a name into a slow path because a run of slots stays short.
const HASH_SEED: u64 = 0x5eed_51c4_a11d_0dd5;

/// Table slots per name, as a ratio: 5 slots for 4 names keeps runs short.
const SLOTS_PER_NAME: (usize, usize) = (5, 4);

fn hash(name: &[u8]) -> u64 {
    FixedState::with_seed(HASH_SEED).hash_one(name)
}

/// The part of a name's hash a slot keeps, which also places and orders it in the table.
fn tag(name: &[u8]) -> u32 {
    (hash(name) >> 32) as u32
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u32,
    /// Where the name starts in its list's text.
    offset: u32,
    /// The entry's rule in its list.
    rule: u32,
    /// Which of the index's name lists holds the name; `EMPTY` for a free slot.
    list: u16,
    len: u8,
    scope: u8,
}

const EMPTY: u16 = u16::MAX;
const FREE: Slot = Slot {
    tag: 0,
    offset: 0,
    rule: 0,
    list: EMPTY,
    len: 0,
    scope: 0,
};

/// Collects name lists, then builds a [`DomainIndex`].
#[derive(Debug, Default)]
pub struct DomainIndexBuilder {
    slots: Vec<Slot>,
    lists: Vec<Arc<Names>>,
}

impl DomainIndexBuilder {
    pub fn with_capacity(names: usize) -> Self {
        Self {
            slots: Vec::with_capacity(names),
            lists: Vec::new(),
        }
    }

    /// Adds every name of a list; lookups report the list by the order it was added in
    /// (0 for the first). When a name is in several lists with the same reach, the first list
    /// wins. Lists after the 65535th are not indexed.
    pub fn add_list(&mut self, triggers: &NameTriggers) {
        let list = match u16::try_from(self.lists.len()) {
            Ok(list) if list != EMPTY => list,
            _ => return,
        };
        let names = &triggers.names;
        let slots = names.spans().enumerate().map(|(index, (offset, name))| {
            let Attr { rule, scope } = triggers.attr(index);
            Slot {
                tag: tag(name.as_bytes()),
                offset,
                rule,
                list,
                len: name.len() as u8,
                scope: scope as u8,
            }
        });
        self.slots.extend(slots);
        self.lists.push(names.clone());
    }

    /// Sorts, de-duplicates and spreads the slots into the table, all in the slots' own
    /// buffer: building never holds two copies of the index at once.
    pub fn build(self) -> DomainIndex {
        let Self { mut slots, lists } = self;
        // Lists were added in order and each list's offsets grow with insertion, so this
        // order keeps the first insertion first among equal tags: the first list wins.
        slots.sort_unstable_by_key(|slot| (slot.tag, slot.list, slot.offset));
        let names = dedup(&mut slots, &lists);
        let homes = (names * SLOTS_PER_NAME.0 / SLOTS_PER_NAME.1).max(1);
        let table = spread(slots, homes);
        DomainIndex {
            table,
            homes,
            names,
            lists,
        }
    }
}

/// Drops later duplicates (same text and reach) from sorted slots, in place; returns how many
/// are left.
fn dedup(slots: &mut Vec<Slot>, lists: &[Arc<Names>]) -> usize {
    let same = |a: &Slot, b: &Slot| a.scope == b.scope && text_of(lists, a) == text_of(lists, b);
    let mut kept = 0;
    let mut run = 0;
    for at in 0..slots.len() {
        let slot = slots[at];
        if kept > 0 && slots[kept - 1].tag != slot.tag {
            run = kept;
        }
        if !slots[run..kept].iter().any(|earlier| same(earlier, &slot)) {
            slots[kept] = slot;
            kept += 1;
        }
    }
    slots.truncate(kept);
    kept
}

/// Moves each sorted slot to its place in a table of `homes` home positions: its home, or
/// just after the slot before it. A slot's place is never before its index in the sorted
/// order, so moving them from the last to the first never overwrites one still to move.
fn spread(mut slots: Vec<Slot>, homes: usize) -> Vec<Slot> {
    // Places fit in 32 bits: the table holds at most 5/4 of the names, and a list's text is
    // limited to 4 GiB, so no index comes near 2^32 slots.
    let mut places: Vec<u32> = Vec::with_capacity(slots.len());
    let mut next = 0usize;
    for slot in &slots {
        let at = home(slot.tag, homes).max(next);
        places.push(at as u32);
        next = at + 1;
    }
    let len = homes.max(next);
    let names = slots.len();
    slots.resize(len, FREE);
    for from in (0..names).rev() {
        let to = places[from] as usize;
        if to != from {
            slots[to] = slots[from];
            slots[from] = FREE;
        }
    }
    slots.shrink_to_fit();
    slots
}

/// The tag scaled to `0..homes`; it grows with the tag, so the table stays in tag order.
fn home(tag: u32, homes: usize) -> usize {
    ((u64::from(tag) * homes as u64) >> 32) as usize
}

fn text_of<'a>(lists: &'a [Arc<Names>], slot: &Slot) -> &'a [u8] {
    lists[usize::from(slot.list)]
        .span(slot.offset, usize::from(slot.len))
        .as_bytes()
}

/// A listed domain that matched a query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHit<'a> {
    /// The listed domain, as stored.
    pub domain: &'a [u8],
    /// The list that holds it, by the order lists were added.
    pub list: u32,
    /// The label of the query name where the listed domain starts (0: the name itself).
    pub label: usize,
    /// The entry's rule in its list, and its reach.
    pub rule: u32,
    pub scope: Scope,
}

/// An immutable set of domains; see the module documentation.
#[derive(Debug)]
pub struct DomainIndex {
    table: Vec<Slot>,
    /// Home positions: the table's length before any run spilled past its end.
    homes: usize,
    /// Distinct names held.
    names: usize,
    lists: Vec<Arc<Names>>,
}

impl DomainIndex {
    /// Distinct names held.
    pub fn len(&self) -> usize {
        self.names
    }

    pub fn is_empty(&self) -> bool {
        self.names == 0
    }

    /// The most specific listed domain that covers `name`: the name itself, or a parent
    /// whose entry reaches its subdomains.
    pub fn lookup(&self, name: &QueryName) -> Option<IndexHit<'_>> {
        if self.is_empty() {
            return None;
        }
        name.suffixes()
            .find_map(|(label, suffix)| self.get(suffix, label))
    }

    /// Like [`DomainIndex::lookup`], for a name already in the index's form (a listed name).
    pub fn lookup_text(&self, name: &str) -> Option<IndexHit<'_>> {
        if self.is_empty() {
            return None;
        }
        let dots = name.bytes().enumerate().filter(|&(_, byte)| byte == b'.');
        let starts = std::iter::once(0).chain(dots.map(|(at, _)| at + 1));
        starts
            .enumerate()
            .find_map(|(label, start)| self.get(&name.as_bytes()[start..], label))
    }

    /// The first entry for exactly `name` whose reach covers a query name where `name`
    /// starts at label `label` (0: the query name itself).
    pub fn get(&self, name: &[u8], label: usize) -> Option<IndexHit<'_>> {
        let tag = tag(name);
        for slot in &self.table[home(tag, self.homes)..] {
            if slot.list == EMPTY || slot.tag > tag {
                return None;
            }
            let scope = Scope::from_u8(slot.scope);
            if slot.tag != tag || usize::from(slot.len) != name.len() || !scope.covers(label) {
                continue;
            }
            let listed = text_of(&self.lists, slot);
            if listed == name {
                return Some(IndexHit {
                    domain: listed,
                    list: u32::from(slot.list),
                    label,
                    rule: slot.rule,
                    scope,
                });
            }
        }
        None
    }

    /// Heap bytes held by the index and the name lists it points into.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self.lists.iter().map(|names| names.heap_bytes()).sum();
        self.table.capacity() * std::mem::size_of::<Slot>() + names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triggers(names: Names) -> NameTriggers {
        NameTriggers {
            names: Arc::new(names),
            ..NameTriggers::default()
        }
    }

    /// One list per name, so a hit's list number is the name's position.
    fn index(names: &[&str]) -> DomainIndex {
        let mut builder = DomainIndexBuilder::default();
        for name in names {
            builder.add_list(&triggers(std::iter::once(*name).collect()));
        }
        builder.build()
    }

    fn lookup<'a>(index: &'a DomainIndex, name: &str) -> Option<IndexHit<'a>> {
        index.lookup(&QueryName::from_text(name).unwrap())
    }

    #[test]
    fn matches_the_name_and_its_subdomains_only() {
        let index = index(&["posdteu.shop", "mathlah.com"]);
        assert_eq!(lookup(&index, "posdteu.shop").unwrap().label, 0);
        let hit = lookup(&index, "A.B.Mathlah.COM.").unwrap();
        assert_eq!(
            (hit.domain, hit.list, hit.label),
            (&b"mathlah.com"[..], 1, 2)
        );
        assert!(lookup(&index, "notmathlah.com").is_none());
        assert!(lookup(&index, "com").is_none());
        assert!(lookup(&index, "shop").is_none());
    }

    #[test]
    fn most_specific_domain_wins() {
        let index = index(&["example.com", "ads.example.com"]);
        assert_eq!(lookup(&index, "x.ads.example.com").unwrap().list, 1);
        assert_eq!(lookup(&index, "www.example.com").unwrap().list, 0);
    }

    #[test]
    fn first_insert_of_a_duplicate_wins() {
        let index = index(&["dup.test", "other.test", "dup.test"]);
        assert_eq!(index.len(), 2);
        assert_eq!(lookup(&index, "dup.test").unwrap().list, 0);
    }

    #[test]
    fn large_index_finds_every_name() {
        let text: Vec<String> = (0..50_000)
            .map(|i| format!("n{i}.example{}.net", i % 97))
            .collect();
        let names: Names = text.iter().map(String::as_str).collect();
        let mut builder = DomainIndexBuilder::default();
        builder.add_list(&triggers(names));
        let index = builder.build();
        assert_eq!(index.len(), text.len());
        for name in text.iter().step_by(997) {
            let hit = lookup(&index, name).unwrap();
            assert_eq!((hit.list, hit.domain), (0, name.as_bytes()));
        }
        assert!(lookup(&index, "n1.example2.net").is_none());
    }

    #[test]
    fn each_entry_reaches_as_far_as_its_scope() {
        let names: Names = ["exact.test", "wild.test", "wild.test", "all.test"]
            .into_iter()
            .collect();
        let attr = |rule, scope| Attr { rule, scope };
        let attrs = [
            attr(1, Scope::NameOnly),
            attr(2, Scope::SubdomainsOnly),
            attr(3, Scope::NameOnly),
            attr(4, Scope::NameAndSubdomains),
        ];
        let triggers = NameTriggers {
            names: Arc::new(names),
            attrs: Some(attrs.into()),
            scope: Scope::NameAndSubdomains,
        };
        let mut builder = DomainIndexBuilder::default();
        builder.add_list(&triggers);
        let index = builder.build();
        let rule = |name| lookup(&index, name).map(|hit| hit.rule);

        assert_eq!(rule("exact.test"), Some(1));
        assert_eq!(rule("a.exact.test"), None);
        assert_eq!(rule("wild.test"), Some(3));
        assert_eq!(rule("a.b.wild.test"), Some(2));
        assert_eq!(rule("all.test"), Some(4));
        assert_eq!(rule("x.all.test"), Some(4));
        assert_eq!(index.lookup_text("x.all.test").unwrap().label, 1);
    }

    #[test]
    fn empty_index_matches_nothing() {
        assert!(lookup(&DomainIndexBuilder::default().build(), "a.b").is_none());
    }
}
