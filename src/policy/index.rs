//! A compact, immutable set of domains that answers "which listed domain is this name or one of
//! its parents?" in a few hash probes.
//!
//! The names stay where the lists keep them (see [`Names`]); the index adds one 16-byte slot
//! per name, sorted by the name's 64-bit hash, and a directory indexed by the hash's top bits
//! that finds a name's slots in one step. A lookup hashes each suffix of the query name
//! (longest first) and compares bytes only on a hash hit, so its cost depends on the query's
//! label count, not on how many names or lists are loaded.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::dns::name::QueryName;
use crate::lists::Names;

/// Fixed seed: the index is rebuilt on every load, so only speed matters, not secrecy; a
/// query cannot steer a name into a slow path because each directory bucket is short.
const HASH_SEED: u64 = 0x5eed_51c4_a11d_0dd5;

fn hash(name: &[u8]) -> u64 {
    FixedState::with_seed(HASH_SEED).hash_one(name)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    /// Which of the index's name lists holds the name.
    list: u32,
    /// The name's position in that list.
    entry: u32,
}

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
    /// (0 for the first). When a name is in several lists, the first list wins.
    pub fn add_list(&mut self, names: Arc<Names>) {
        let list = self.lists.len() as u32;
        let slots = names.iter().enumerate().map(|(entry, name)| Slot {
            hash: hash(name.as_bytes()),
            list,
            entry: entry as u32,
        });
        self.slots.extend(slots);
        self.lists.push(names);
    }

    pub fn build(self) -> DomainIndex {
        let Self { mut slots, lists } = self;
        // A stable sort keeps insertion order among equal hashes, so the first list wins.
        slots.sort_by_key(|slot| slot.hash);
        let name_of = |slot: &Slot| lists[slot.list as usize].get(slot.entry as usize);
        let mut kept: Vec<Slot> = Vec::with_capacity(slots.len());
        for slot in slots {
            let duplicate = kept
                .iter()
                .rev()
                .take_while(|earlier| earlier.hash == slot.hash)
                .any(|earlier| name_of(earlier) == name_of(&slot));
            if !duplicate {
                kept.push(slot);
            }
        }
        kept.shrink_to_fit();

        let bits = directory_bits(kept.len());
        let shift = 64 - bits;
        let mut directory = vec![0u32; (1usize << bits) + 1];
        let mut next = 0usize;
        for (bucket, entry) in directory.iter_mut().enumerate() {
            while next < kept.len() && ((kept[next].hash >> shift) as usize) < bucket {
                next += 1;
            }
            *entry = next as u32;
        }

        DomainIndex {
            directory,
            shift,
            slots: kept,
            lists,
        }
    }
}

/// A directory of about one bucket per name, between 16 and 2^26 buckets.
fn directory_bits(names: usize) -> u32 {
    let wanted = names.max(16).next_power_of_two().trailing_zeros();
    wanted.clamp(4, 26)
}

/// A listed domain that matched a query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHit<'a> {
    /// The listed domain, as stored.
    pub domain: &'a [u8],
    /// The list that holds it, by the order lists were added.
    pub list: u32,
    /// Its position in that list.
    pub entry: u32,
    /// The label of the query name where the listed domain starts (0: the name itself).
    pub label: usize,
}

/// An immutable set of domains; see the module documentation.
#[derive(Debug)]
pub struct DomainIndex {
    directory: Vec<u32>,
    shift: u32,
    slots: Vec<Slot>,
    lists: Vec<Arc<Names>>,
}

impl DomainIndex {
    pub fn empty() -> Self {
        DomainIndexBuilder::default().build()
    }

    /// Distinct names held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most specific listed domain that is `name` or one of its parents.
    pub fn lookup(&self, name: &QueryName) -> Option<IndexHit<'_>> {
        if self.slots.is_empty() {
            return None;
        }
        name.suffixes()
            .find_map(|(label, suffix)| self.get(suffix).map(|hit| IndexHit { label, ..hit }))
    }

    /// The exact name, if it is listed (`label` of the hit is 0).
    pub fn get(&self, name: &[u8]) -> Option<IndexHit<'_>> {
        let hash = hash(name);
        let bucket = (hash >> self.shift) as usize;
        let first = self.directory[bucket] as usize;
        let last = self.directory[bucket + 1] as usize;
        self.slots[first..last]
            .iter()
            .filter(|slot| slot.hash == hash)
            .find_map(|slot| {
                let listed = self.lists[slot.list as usize]
                    .get(slot.entry as usize)
                    .as_bytes();
                (listed == name).then_some(IndexHit {
                    domain: listed,
                    list: slot.list,
                    entry: slot.entry,
                    label: 0,
                })
            })
    }

    /// Heap bytes held by the index and the name lists it points into.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self.lists.iter().map(|names| names.heap_bytes()).sum();
        self.directory.capacity() * 4 + self.slots.capacity() * std::mem::size_of::<Slot>() + names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One list per name, so a hit's list number is the name's position.
    fn index(names: &[&str]) -> DomainIndex {
        let mut builder = DomainIndexBuilder::default();
        for name in names {
            builder.add_list(Arc::new(std::iter::once(*name).collect()));
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
        builder.add_list(Arc::new(names));
        let index = builder.build();
        assert_eq!(index.len(), text.len());
        for (entry, name) in text.iter().enumerate().step_by(997) {
            let hit = lookup(&index, name).unwrap();
            assert_eq!((hit.list, hit.entry), (0, entry as u32));
        }
        assert!(lookup(&index, "n1.example2.net").is_none());
    }

    #[test]
    fn empty_index_matches_nothing() {
        assert!(lookup(&DomainIndex::empty(), "a.b").is_none());
    }
}
