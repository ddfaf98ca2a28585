//! A compact, immutable set of domains that answers "which listed domain is this name or one of
//! its parents?" in a few hash probes.
//!
//! Every listed name lives once in a byte arena. A table of slots sorted by the name's 64-bit
//! hash points into it, and a directory indexed by the hash's top bits finds a name's slots in
//! one step. A lookup hashes each suffix of the query name (longest first) and compares bytes
//! only on a hash hit, so its cost depends on the query's label count, not on how many names
//! or lists are loaded.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::dns::name::QueryName;

/// Fixed seed: the index is rebuilt on every load, so only speed matters, not secrecy; a
/// query cannot steer a name into a slow path because each directory bucket is short.
const HASH_SEED: u64 = 0x5eed_51c4_a11d_0dd5;

fn hash(name: &[u8]) -> u64 {
    FixedState::with_seed(HASH_SEED).hash_one(name)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    /// Start of the name in the arena; the byte before it holds the name's length.
    start: u32,
    value: u32,
}

/// Collects names, then builds a [`DomainIndex`].
#[derive(Debug, Default)]
pub struct DomainIndexBuilder {
    slots: Vec<Slot>,
    arena: Vec<u8>,
}

impl DomainIndexBuilder {
    pub fn with_capacity(names: usize) -> Self {
        Self {
            slots: Vec::with_capacity(names),
            arena: Vec::with_capacity(names * 20),
        }
    }

    /// Adds a normalised name (lower case, no trailing dot) with its value. When a name is
    /// added twice, the first value wins.
    pub fn insert(&mut self, name: &str, value: u32) {
        let bytes = name.as_bytes();
        let Ok(len) = u8::try_from(bytes.len()) else {
            return;
        };
        self.arena.push(len);
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.slots.push(Slot {
            hash: hash(bytes),
            start,
            value,
        });
    }

    pub fn build(mut self) -> DomainIndex {
        // A stable sort keeps insertion order among equal hashes, so the first value wins.
        self.slots.sort_by_key(|slot| slot.hash);
        let arena = self.arena;
        let name_of = |slot: &Slot| name_at(&arena, slot.start);
        let mut slots: Vec<Slot> = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            let duplicate = slots
                .iter()
                .rev()
                .take_while(|kept| kept.hash == slot.hash)
                .any(|kept| name_of(kept) == name_of(&slot));
            if !duplicate {
                slots.push(slot);
            }
        }
        slots.shrink_to_fit();

        let bits = directory_bits(slots.len());
        let shift = 64 - bits;
        let mut directory = vec![0u32; (1usize << bits) + 1];
        let mut next = 0usize;
        for (bucket, entry) in directory.iter_mut().enumerate() {
            while next < slots.len() && ((slots[next].hash >> shift) as usize) < bucket {
                next += 1;
            }
            *entry = next as u32;
        }

        DomainIndex {
            directory,
            shift,
            slots,
            arena,
        }
    }
}

/// A directory of about one bucket per name, between 16 and 2^26 buckets.
fn directory_bits(names: usize) -> u32 {
    let wanted = names.max(16).next_power_of_two().trailing_zeros();
    wanted.clamp(4, 26)
}

fn name_at(arena: &[u8], start: u32) -> &[u8] {
    let start = start as usize;
    let len = usize::from(arena[start - 1]);
    &arena[start..start + len]
}

/// A listed domain that matched a query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHit<'a> {
    /// The listed domain, as stored.
    pub domain: &'a [u8],
    /// The value stored with it.
    pub value: u32,
    /// The label of the query name where the listed domain starts (0: the name itself).
    pub label: usize,
}

/// An immutable set of domains; see the module documentation.
#[derive(Debug)]
pub struct DomainIndex {
    directory: Vec<u32>,
    shift: u32,
    slots: Vec<Slot>,
    arena: Vec<u8>,
}

impl DomainIndex {
    pub fn empty() -> Self {
        DomainIndexBuilder::default().build()
    }

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
        name.suffixes().find_map(|(label, suffix)| {
            self.get(suffix).map(|(domain, value)| IndexHit {
                domain,
                value,
                label,
            })
        })
    }

    /// The exact name, if it is listed.
    pub fn get(&self, name: &[u8]) -> Option<(&[u8], u32)> {
        let hash = hash(name);
        let bucket = (hash >> self.shift) as usize;
        let first = self.directory[bucket] as usize;
        let last = self.directory[bucket + 1] as usize;
        self.slots[first..last]
            .iter()
            .filter(|slot| slot.hash == hash)
            .map(|slot| (name_at(&self.arena, slot.start), slot.value))
            .find(|(listed, _)| *listed == name)
    }

    /// Heap bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        self.directory.capacity() * 4
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.arena.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> DomainIndex {
        let mut builder = DomainIndexBuilder::default();
        for (value, name) in names.iter().enumerate() {
            builder.insert(name, value as u32);
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
            (hit.domain, hit.value, hit.label),
            (&b"mathlah.com"[..], 1, 2)
        );
        assert!(lookup(&index, "notmathlah.com").is_none());
        assert!(lookup(&index, "com").is_none());
        assert!(lookup(&index, "shop").is_none());
    }

    #[test]
    fn most_specific_domain_wins() {
        let index = index(&["example.com", "ads.example.com"]);
        assert_eq!(lookup(&index, "x.ads.example.com").unwrap().value, 1);
        assert_eq!(lookup(&index, "www.example.com").unwrap().value, 0);
    }

    #[test]
    fn first_insert_of_a_duplicate_wins() {
        let index = index(&["dup.test", "other.test", "dup.test"]);
        assert_eq!(index.len(), 2);
        assert_eq!(lookup(&index, "dup.test").unwrap().value, 0);
    }

    #[test]
    fn large_index_finds_every_name() {
        let names: Vec<String> = (0..50_000)
            .map(|i| format!("n{i}.example{}.net", i % 97))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let index = index(&refs);
        assert_eq!(index.len(), names.len());
        for (value, name) in names.iter().enumerate().step_by(997) {
            assert_eq!(lookup(&index, name).unwrap().value, value as u32);
        }
        assert!(lookup(&index, "n1.example2.net").is_none());
    }

    #[test]
    fn empty_index_matches_nothing() {
        assert!(lookup(&DomainIndex::empty(), "a.b").is_none());
    }
}
