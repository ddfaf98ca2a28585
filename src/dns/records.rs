//! Finds where the TTLs of a response sit, so a cached response can be aged in place.

use super::query::{HEADER_LEN, TYPE_OPT, read_u16, read_u32, skip_name};

const TYPE_SOA: u16 = 6;

/// The TTL positions of a response and how long it may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlLayout {
    /// Offsets of the TTL field of every record except OPT.
    pub offsets: Vec<u16>,
    /// The smallest TTL, or for a negative answer the SOA's negative TTL (RFC 2308 §5).
    pub lifetime: u32,
}

/// Reads a response and returns its TTL layout; `None` if it is malformed or holds no record
/// that gives it a lifetime (a negative answer without SOA is not cached, RFC 2308 §5).
pub fn ttl_layout(packet: &[u8]) -> Option<TtlLayout> {
    if packet.len() < HEADER_LEN {
        return None;
    }
    let counts = [4, 6, 8, 10].map(|at| usize::from(read_u16(packet, at)));
    let mut at = HEADER_LEN;
    for _ in 0..counts[0] {
        at = skip_name(packet, at)? + 4;
    }

    let answers = counts[1];
    let records = counts[1] + counts[2] + counts[3];
    let mut offsets = Vec::new();
    let mut lifetime = u32::MAX;
    for index in 0..records {
        at = skip_name(packet, at)?;
        let fixed = packet.get(at..at + 10)?;
        let rtype = read_u16(fixed, 0);
        let ttl = read_u32(fixed, 4);
        let rdlen = usize::from(read_u16(fixed, 8));
        let rdata_at = at + 10;
        if rdata_at + rdlen > packet.len() {
            return None;
        }
        if rtype != TYPE_OPT {
            offsets.push(u16::try_from(at + 4).ok()?);
            lifetime = lifetime.min(ttl);
            if answers == 0 && index < counts[2] && rtype == TYPE_SOA && rdlen >= 20 {
                lifetime = lifetime.min(read_u32(packet, rdata_at + rdlen - 4));
            }
        }
        at = rdata_at + rdlen;
    }

    (!offsets.is_empty()).then_some(TtlLayout { offsets, lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn finds_every_ttl_and_the_smallest() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("a.test."), RecordType::A));
        message.add_answer(Record::from_rdata(
            name("a.test."),
            300,
            RData::A(A::new(1, 2, 3, 4)),
        ));
        message.add_answer(Record::from_rdata(
            name("a.test."),
            120,
            RData::A(A::new(1, 2, 3, 5)),
        ));
        let packet = message.to_vec().unwrap();

        let layout = ttl_layout(&packet).unwrap();
        assert_eq!(layout.lifetime, 120);
        assert_eq!(layout.offsets.len(), 2);
        for offset in layout.offsets {
            assert!(matches!(read_u32(&packet, usize::from(offset)), 300 | 120));
        }
    }

    #[test]
    fn negative_answer_lives_for_the_soa_minimum() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("x.test."), RecordType::A));
        let soa = SOA::new(name("ns.test."), name("h.test."), 1, 2, 3, 4, 45);
        message.add_authority(Record::from_rdata(name("test."), 900, RData::SOA(soa)));
        let packet = message.to_vec().unwrap();
        assert_eq!(ttl_layout(&packet).unwrap().lifetime, 45);
    }

    #[test]
    fn empty_and_broken_responses_are_not_cached() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("x.test."), RecordType::A));
        let packet = message.to_vec().unwrap();
        assert!(ttl_layout(&packet).is_none());
        assert!(ttl_layout(&packet[..packet.len() - 2]).is_none());
    }
}
