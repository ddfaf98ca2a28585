//! The answer cache: whole responses as sent to clients, aged in place on every hit.
//!
//! A response is stored once, as bytes, with the offsets of its TTL fields. A hit copies the
//! bytes, writes the client's ID, flags and question (so its case survives), and lowers each
//! TTL by the entry's age (RFC 1035 §7.4: TTLs count down while cached). The cache is split
//! into shards, each a least-recently-used map behind its own lock, and bounded in entries.
//! Entries that reached a CNAME chain keep the chain's names, so every hit can be checked
//! against the policy in force at that moment.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use lru::LruCache;

use crate::dns::name::QueryName;
use crate::dns::query::{HEADER_LEN, Query, read_u32};
use crate::dns::records::TtlLayout;

const SHARDS: usize = 16;
const CACHE_SEED: u64 = 0x0cac_4e5e_ed00_0001;

/// Bits of the query that select a different cached response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    pub qtype: u16,
    pub edns: bool,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Variant {
    pub fn of(query: &Query<'_>) -> Self {
        Self {
            qtype: query.qtype,
            edns: query.edns.is_some(),
            dnssec_ok: query.dnssec_ok(),
            checking_disabled: query.checking_disabled(),
        }
    }
}

/// A cached response.
#[derive(Debug)]
pub struct Entry {
    name: Box<[u8]>,
    variant: Variant,
    packet: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    stored: Instant,
    expires: Instant,
    pub facts: Facts,
}

/// What the policy and the event log need to know about a response.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The response code in the packet.
    pub rcode: u16,
    /// The addresses in the answer section, for response-IP triggers and events.
    pub addresses: Box<[IpAddr]>,
    /// Names the answer's CNAME chain leads through, after the query name.
    pub chain: Box<[QueryName]>,
}

impl Entry {
    /// Writes this response for `query` into `out`; `now` ages the TTLs.
    pub fn write_for(&self, query: &Query<'_>, now: Instant, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.packet);
        out[0..2].copy_from_slice(&query.id.to_be_bytes());
        // Keep the stored response's flags but take RD and CD from this query.
        let copied = 0x0100 | 0x0010;
        let flags = u16::from_be_bytes([out[2], out[3]]) & !copied | (query.flags & copied);
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        // Names equal but for case have equal wire lengths, so the question always fits; the
        // check keeps a mistake elsewhere from becoming a panic on the query path.
        if let Some(question) = out.get_mut(HEADER_LEN..HEADER_LEN + query.question.len()) {
            question.copy_from_slice(query.question);
        }

        let age = now.saturating_duration_since(self.stored).as_secs() as u32;
        if age == 0 {
            return;
        }
        for &offset in self.ttl_offsets.iter() {
            let at = usize::from(offset);
            let ttl = read_u32(out, at).saturating_sub(age);
            out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
    }
}

/// Limits of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub max_entries: usize,
    pub max_ttl: u32,
    pub max_negative_ttl: u32,
}

/// A response to cache, as built for the client that asked first.
pub struct Fresh<'a> {
    pub packet: &'a [u8],
    pub layout: TtlLayout,
    pub negative: bool,
    pub facts: Facts,
}

type Shard = Mutex<LruCache<u64, Arc<Entry>>>;

/// The answer cache; see the module documentation.
pub struct AnswerCache {
    shards: Box<[Shard]>,
    limits: CacheLimits,
}

impl AnswerCache {
    pub fn new(limits: CacheLimits) -> Self {
        let per_shard =
            NonZeroUsize::new(limits.max_entries.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(LruCache::new(per_shard)))
            .collect();
        Self { shards, limits }
    }

    fn enabled(&self) -> bool {
        self.limits.max_entries > 0
    }

    /// The live entry for this name and variant, if any.
    pub fn get(&self, name: &QueryName, variant: Variant, now: Instant) -> Option<Arc<Entry>> {
        if !self.enabled() {
            return None;
        }
        let key = key(name, variant);
        let mut shard = self.shard(key).lock().ok()?;
        let entry = shard.get(&key)?;
        if entry.expires <= now || *entry.name != *name.as_bytes() || entry.variant != variant {
            return None;
        }
        Some(entry.clone())
    }

    /// Stores a response; responses with no lifetime are not stored.
    pub fn insert(&self, name: &QueryName, variant: Variant, fresh: Fresh<'_>, now: Instant) {
        let cap = if fresh.negative {
            self.limits.max_negative_ttl
        } else {
            self.limits.max_ttl
        };
        let lifetime = fresh.layout.lifetime.min(cap);
        if !self.enabled() || lifetime == 0 {
            return;
        }
        let entry = Entry {
            name: name.as_bytes().into(),
            variant,
            packet: fresh.packet.into(),
            ttl_offsets: fresh.layout.offsets.into(),
            stored: now,
            expires: now + Duration::from_secs(u64::from(lifetime)),
            facts: fresh.facts,
        };
        let key = key(name, variant);
        if let Ok(mut shard) = self.shard(key).lock() {
            shard.put(key, Arc::new(entry));
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|shard| shard.lock().ok())
            .map(|shard| shard.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: u64) -> &Shard {
        &self.shards[(key as usize) % SHARDS]
    }
}

fn key(name: &QueryName, variant: Variant) -> u64 {
    FixedState::with_seed(CACHE_SEED).hash_one((name.as_bytes(), variant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::{parse, tests::query_packet};
    use crate::dns::records::ttl_layout;
    use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn response(ttl: u32) -> Vec<u8> {
        let name = Name::from_ascii("www.test.").unwrap();
        let mut message = Message::new(0x1234, MessageType::Response, OpCode::Query);
        message.add_query(HQuery::query(name.clone(), RecordType::A));
        message.add_answer(Record::from_rdata(
            name,
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        message.to_vec().unwrap()
    }

    fn cache(max_entries: usize) -> AnswerCache {
        AnswerCache::new(CacheLimits {
            max_entries,
            max_ttl: 3600,
            max_negative_ttl: 60,
        })
    }

    fn store(cache: &AnswerCache, packet: &[u8], now: Instant) {
        let query_bytes = query_packet("www.test", 1, None);
        let query = parse(&query_bytes).unwrap();
        let fresh = Fresh {
            packet,
            layout: ttl_layout(packet).unwrap(),
            negative: false,
            facts: Facts::default(),
        };
        cache.insert(&query.name, Variant::of(&query), fresh, now);
    }

    #[test]
    fn hit_ages_ttls_and_takes_the_clients_id_and_case() {
        let cache = cache(100);
        let start = Instant::now();
        store(&cache, &response(300), start);

        let mut query_bytes = query_packet("WWW.Test", 1, None);
        query_bytes[0..2].copy_from_slice(&[0xab, 0xcd]);
        let query = parse(&query_bytes).unwrap();
        let later = start + Duration::from_secs(100);
        let entry = cache.get(&query.name, Variant::of(&query), later).unwrap();
        let mut out = Vec::new();
        entry.write_for(&query, later, &mut out);

        let message = Message::from_vec(&out).unwrap();
        assert_eq!(message.metadata.id, 0xabcd);
        assert_eq!(message.queries[0].name().to_string(), "WWW.Test.");
        assert_eq!(message.answers[0].ttl, 200);
    }

    #[test]
    fn entries_expire_with_their_ttl() {
        let cache = cache(100);
        let start = Instant::now();
        store(&cache, &response(30), start);
        let query_bytes = query_packet("www.test", 1, None);
        let query = parse(&query_bytes).unwrap();
        let variant = Variant::of(&query);
        assert!(
            cache
                .get(&query.name, variant, start + Duration::from_secs(29))
                .is_some()
        );
        assert!(
            cache
                .get(&query.name, variant, start + Duration::from_secs(30))
                .is_none()
        );
        let other = Variant {
            qtype: 28,
            ..variant
        };
        assert!(cache.get(&query.name, other, start).is_none());
    }

    #[test]
    fn size_is_bounded_and_zero_disables() {
        let cache = cache(SHARDS);
        for i in 0..200 {
            let text = format!("n{i}.test");
            let query_bytes = query_packet(&text, 1, None);
            let query = parse(&query_bytes).unwrap();
            let packet = response(60);
            let fresh = Fresh {
                packet: &packet,
                layout: ttl_layout(&packet).unwrap(),
                negative: false,
                facts: Facts::default(),
            };
            cache.insert(&query.name, Variant::of(&query), fresh, Instant::now());
        }
        assert!(cache.len() <= SHARDS);

        let disabled = self::cache(0);
        store(&disabled, &response(60), Instant::now());
        assert!(disabled.is_empty());
    }
}
