//! Reads a client's query straight from the wire (RFC 1035 §4.1, RFC 6891 §6).
//!
//! Only what sinkhole needs to decide is decoded: the header, the one question and the OPT
//! record. Nothing is allocated; the result borrows the packet.

use super::name::QueryName;

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Record type of the EDNS OPT pseudo-record (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 41;
/// Class IN.
pub const CLASS_IN: u16 = 1;

const FLAG_QR: u16 = 0x8000;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;

/// The EDNS parameters a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Largest UDP response the client accepts (values under 512 count as 512).
    pub udp_size: u16,
    /// EDNS version; only 0 exists.
    pub version: u8,
    /// The DO bit: the client wants DNSSEC records (RFC 3225).
    pub dnssec_ok: bool,
}

/// A parsed query that borrows the packet it came from.
#[derive(Debug)]
pub struct Query<'a> {
    pub id: u16,
    /// The second header word: QR, opcode, AA, TC, RD, RA, Z, AD, CD and rcode bits.
    pub flags: u16,
    /// The question entry exactly as sent: name, type and class.
    pub question: &'a [u8],
    pub name: QueryName,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }

    pub fn recursion_desired(&self) -> bool {
        self.flags & FLAG_RD != 0
    }

    pub fn checking_disabled(&self) -> bool {
        self.flags & FLAG_CD != 0
    }

    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    /// The largest response this client accepts over UDP (RFC 6891 §6.2.5).
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(edns) => usize::from(edns.udp_size.max(512)),
            None => 512,
        }
    }
}

/// Why a packet could not be taken as a query. Each kind maps to one way of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Too short for a header, or a response (QR set): dropped without an answer.
    Ignore,
    /// Not a well-formed query: FORMERR.
    FormErr { id: u16, flags: u16 },
    /// An opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1).
    NotImp { id: u16, flags: u16 },
    /// An EDNS version we do not speak: BADVERS (RFC 6891 §6.1.3).
    BadVersion {
        id: u16,
        flags: u16,
        question_end: usize,
    },
}

/// Reads a query packet.
pub fn parse(packet: &[u8]) -> Result<Query<'_>, Rejection> {
    if packet.len() < HEADER_LEN {
        return Err(Rejection::Ignore);
    }
    let id = read_u16(packet, 0);
    let flags = read_u16(packet, 2);
    if flags & FLAG_QR != 0 {
        return Err(Rejection::Ignore);
    }
    if (flags >> 11) & 0x0f != 0 {
        return Err(Rejection::NotImp { id, flags });
    }

    let formerr = Rejection::FormErr { id, flags };
    let counts = [4, 6, 8, 10].map(|at| read_u16(packet, at));
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 {
        return Err(formerr);
    }

    let (name, name_end) = read_question_name(packet, HEADER_LEN).ok_or(formerr)?;
    let question_end = name_end + 4;
    if packet.len() < question_end {
        return Err(formerr);
    }
    let qtype = read_u16(packet, name_end);
    let qclass = read_u16(packet, name_end + 2);

    let edns = read_additionals(packet, question_end, counts[3]).ok_or(formerr)?;
    if edns.is_some_and(|edns| edns.version != 0) {
        return Err(Rejection::BadVersion {
            id,
            flags,
            question_end,
        });
    }

    Ok(Query {
        id,
        flags,
        question: &packet[HEADER_LEN..question_end],
        name,
        qtype,
        qclass,
        edns,
    })
}

/// Reads the question name, which must be uncompressed. Returns the name and where it ends.
fn read_question_name(packet: &[u8], mut at: usize) -> Option<(QueryName, usize)> {
    let mut name = QueryName::root();
    let mut wire_len = 1;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            return Some((name, at));
        }
        // Compression pointers and extended label types have no place in a lone question.
        if len > 63 {
            return None;
        }
        wire_len += len + 1;
        if wire_len > 255 {
            return None;
        }
        let label = packet.get(at..at + len)?;
        if !name.push_label(label) {
            return None;
        }
        at += len;
    }
}

/// Walks the additional section and returns the OPT record's parameters, if any.
///
/// More than one OPT record, or one whose owner is not the root, is a format error
/// (RFC 6891 §6.1.1). Other records (TSIG, say) are skipped.
fn read_additionals(packet: &[u8], mut at: usize, count: u16) -> Option<Option<Edns>> {
    let mut edns = None;
    for _ in 0..count {
        let owner_is_root = packet.get(at) == Some(&0);
        at = skip_name(packet, at)?;
        let fixed = packet.get(at..at + 10)?;
        let rtype = read_u16(fixed, 0);
        let rdlen = usize::from(read_u16(fixed, 8));
        if rtype == TYPE_OPT {
            if edns.is_some() || !owner_is_root {
                return None;
            }
            edns = Some(Edns {
                udp_size: read_u16(fixed, 2),
                version: fixed[5],
                dnssec_ok: fixed[6] & 0x80 != 0,
            });
        }
        at += 10 + rdlen;
        if at > packet.len() {
            return None;
        }
    }
    Some(edns)
}

/// Skips a possibly compressed name and returns the offset just past it.
pub fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(len),
            0xc0..=0xff => {
                packet.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

pub fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a query packet for tests: one question, optional OPT record.
    pub fn query_packet(name: &str, qtype: u16, edns: Option<(u16, u8, bool)>) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|label| !label.is_empty()) {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label.as_bytes());
        }
        packet.push(0);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some((size, version, dnssec_ok)) = edns {
            packet[11] = 1;
            packet.push(0);
            packet.extend_from_slice(&TYPE_OPT.to_be_bytes());
            packet.extend_from_slice(&size.to_be_bytes());
            packet.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        packet
    }

    #[test]
    fn reads_question_and_edns() {
        let packet = query_packet("WWW.Mathlah.COM", 28, Some((1232, 0, true)));
        let query = parse(&packet).unwrap();
        assert_eq!(query.id, 0x1234);
        assert_eq!(query.name.as_bytes(), b"www.mathlah.com");
        assert_eq!(query.qtype, 28);
        assert_eq!(
            query.edns,
            Some(Edns {
                udp_size: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
        assert!(query.recursion_desired());
        assert_eq!(query.udp_limit(), 1232);
        assert_eq!(&query.question[1..4], b"WWW");
    }

    #[test]
    fn short_packets_and_responses_are_ignored() {
        assert_eq!(parse(&[0; 11]).unwrap_err(), Rejection::Ignore);
        let mut packet = query_packet("a.b", 1, None);
        packet[2] |= 0x80;
        assert_eq!(parse(&packet).unwrap_err(), Rejection::Ignore);
    }

    #[test]
    fn bad_counts_and_truncated_names_are_format_errors() {
        let mut packet = query_packet("a.b", 1, None);
        packet[5] = 2;
        assert!(matches!(parse(&packet), Err(Rejection::FormErr { .. })));

        let packet = query_packet("a.b", 1, None);
        assert!(matches!(
            parse(&packet[..15]),
            Err(Rejection::FormErr { .. })
        ));

        let mut packet = query_packet("a.b", 1, None);
        packet[12] = 0xc0;
        assert!(matches!(parse(&packet), Err(Rejection::FormErr { .. })));
    }

    #[test]
    fn other_opcodes_and_edns_versions_are_flagged() {
        let mut packet = query_packet("a.b", 1, None);
        packet[2] |= 4 << 3;
        assert!(matches!(parse(&packet), Err(Rejection::NotImp { .. })));

        let packet = query_packet("a.b", 1, Some((1232, 1, false)));
        assert!(matches!(parse(&packet), Err(Rejection::BadVersion { .. })));
    }

    /// Mutated and truncated packets never panic the parser, and whatever it accepts gets a
    /// local answer that decodes as a DNS message.
    #[test]
    fn mutated_packets_never_panic() {
        use crate::dns::answer::{Rcode, write_error};
        let seeds = [
            query_packet("www.posdteu.shop", 1, Some((1232, 0, true))),
            query_packet("a.b.c", 28, None),
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for round in 0..20_000 {
            let mut packet = seeds[round % 2].clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % packet.len();
                packet[at] = next() as u8;
            }
            packet.truncate((next() as usize) % (packet.len() + 1));
            if let Ok(query) = parse(&packet) {
                write_error(&mut out, &query, Rcode::Refused, None);
                hickory_proto::op::Message::from_vec(&out).expect("answer decodes");
            }
        }
    }

    #[test]
    fn two_opt_records_are_a_format_error() {
        let mut packet = query_packet("a.b", 1, Some((1232, 0, false)));
        let opt = packet[packet.len() - 11..].to_vec();
        packet.extend_from_slice(&opt);
        packet[11] = 2;
        assert!(matches!(parse(&packet), Err(Rejection::FormErr { .. })));
    }
}
