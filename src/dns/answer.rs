//! Writes the answers sinkhole makes itself: sinkhole addresses, negative answers and errors.
//!
//! Every answer carries the client's ID and question, copies RD and CD, sets RA (RFC 1035
//! §4.1.1), and includes an OPT record exactly when the query had one (RFC 6891 §7).

use std::net::IpAddr;

use super::query::{CLASS_IN, Edns, HEADER_LEN, Query, TYPE_OPT};

/// UDP payload size we advertise, the value of DNS Flag Day 2020.
pub const ADVERTISED_UDP_SIZE: u16 = 1232;

/// Response codes sinkhole writes itself (RFC 1035 §4.1.1, RFC 6891 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    BadVers = 16,
}

impl Rcode {
    pub fn name(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::ServFail => "SERVFAIL",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
            Self::BadVers => "BADVERS",
        }
    }
}

/// Extended DNS Error info codes we use (RFC 8914 §4).
pub mod ede {
    pub const BLOCKED: u16 = 15;
    pub const PROHIBITED: u16 = 18;
    pub const NOT_SUPPORTED: u16 = 21;
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
}

/// An Extended DNS Error to attach to an answer.
#[derive(Debug, Clone, Copy)]
pub struct ExtendedError<'a> {
    pub code: u16,
    pub text: &'a str,
}

/// What goes into an answer that sinkhole writes in place of the upstream's.
#[derive(Debug, Clone, Copy)]
pub struct LocalAnswer<'a> {
    pub rcode: Rcode,
    /// Address records for the question's name, when the question's type matches them.
    pub addresses: &'a [IpAddr],
    /// Writes an SOA in the authority section, owned by the question's suffix that starts
    /// at this label (the listed domain), so the negative answer can be cached (RFC 2308 §3).
    pub soa_label: Option<usize>,
    pub ttl: u32,
    pub serial: u32,
    pub error: Option<ExtendedError<'a>>,
}

const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RA: u16 = 0x0080;
/// Bits copied from the query: opcode, RD and CD.
const COPIED_FLAGS: u16 = 0x7800 | 0x0100 | 0x0010;

/// The header flags of a response to a query with `query_flags`.
pub fn response_flags(query_flags: u16, rcode: Rcode) -> u16 {
    FLAG_QR | (query_flags & COPIED_FLAGS) | FLAG_RA | (rcode as u16 & 0x0f)
}

/// Writes a complete local answer for `query` into `out` (cleared first).
pub fn write_local(out: &mut Vec<u8>, query: &Query<'_>, answer: &LocalAnswer<'_>) {
    write_question(out, query, answer.rcode);

    for &address in answer.addresses {
        write_address(out, address, answer.ttl);
    }
    set_count(out, 6, answer.addresses.len() as u16);
    if let Some(label) = answer.soa_label {
        let owner = HEADER_LEN + label_offset(query.question, label);
        write_soa(out, owner as u16, answer.ttl, answer.serial);
        set_count(out, 8, 1);
    }
    if let Some(edns) = query.edns {
        write_opt(out, &edns, answer.rcode, answer.error);
        set_count(out, 10, 1);
    }
}

/// Writes an error answer that repeats the question (REFUSED, SERVFAIL, BADVERS).
pub fn write_error(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    rcode: Rcode,
    error: Option<ExtendedError<'_>>,
) {
    let answer = LocalAnswer {
        rcode,
        addresses: &[],
        soa_label: None,
        ttl: 0,
        serial: 0,
        error,
    };
    write_local(out, query, &answer);
}

/// Writes a header-only error for a packet whose question could not be used (FORMERR,
/// NOTIMP): same ID, opcode and RD, no sections.
pub fn write_bare_error(out: &mut Vec<u8>, id: u16, query_flags: u16, rcode: Rcode) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&response_flags(query_flags, rcode).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// Writes BADVERS (RFC 6891 §6.1.3): the question and an OPT record of version 0.
pub fn write_bad_version(out: &mut Vec<u8>, packet: &[u8], question_end: usize) {
    out.clear();
    out.extend_from_slice(&packet[..2]);
    let query_flags = u16::from_be_bytes([packet[2], packet[3]]);
    out.extend_from_slice(&response_flags(query_flags, Rcode::BadVers).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    out.extend_from_slice(&packet[HEADER_LEN..question_end]);
    let edns = Edns {
        udp_size: ADVERTISED_UDP_SIZE,
        version: 0,
        dnssec_ok: false,
    };
    write_opt(out, &edns, Rcode::BadVers, None);
}

/// Replaces a response that does not fit the client's limit with an empty one with TC set
/// (RFC 1035 §4.2.1, RFC 7766 §8): the client retries over TCP.
pub fn write_truncated(out: &mut Vec<u8>, query: &Query<'_>, rcode_bits: u16) {
    write_question(out, query, Rcode::NoError);
    let flags = u16::from_be_bytes([out[2], out[3]]) | FLAG_TC | (rcode_bits & 0x0f);
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    if let Some(edns) = query.edns {
        write_opt(out, &edns, Rcode::NoError, None);
        set_count(out, 10, 1);
    }
}

/// Header plus the client's question as sent (its case too, RFC 1035 §7.3 and 0x20 clients).
fn write_question(out: &mut Vec<u8>, query: &Query<'_>, rcode: Rcode) {
    out.clear();
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&response_flags(query.flags, rcode).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.question);
}

fn write_address(out: &mut Vec<u8>, address: IpAddr, ttl: u32) {
    // Owner: a pointer to the question name, which always starts right after the header.
    out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
    match address {
        IpAddr::V4(v4) => {
            write_rr_fixed(out, 1, ttl, 4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            write_rr_fixed(out, 28, ttl, 16);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Names in our synthetic SOA. `.invalid` can never resolve (RFC 6761 §6.4).
const SOA_MNAME: &[u8] = b"\x08sinkhole\x07invalid\x00";
const SOA_RNAME: &[u8] = b"\x0ahostmaster\x08sinkhole\x07invalid\x00";

fn write_soa(out: &mut Vec<u8>, owner: u16, ttl: u32, serial: u32) {
    out.extend_from_slice(&(0xc000 | owner).to_be_bytes());
    let rdlen = SOA_MNAME.len() + SOA_RNAME.len() + 20;
    write_rr_fixed(out, 6, ttl, rdlen as u16);
    out.extend_from_slice(SOA_MNAME);
    out.extend_from_slice(SOA_RNAME);
    // serial, refresh, retry, expire, minimum (the negative-caching TTL, RFC 2308 §4).
    for value in [serial, 3600, 600, 86400, ttl] {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn write_rr_fixed(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// Writes our OPT record: root owner, our payload size, the high rcode bits, DO echoed
/// (RFC 3225 §3), and an Extended DNS Error option when there is one (RFC 8914 §2).
pub fn write_opt(out: &mut Vec<u8>, edns: &Edns, rcode: Rcode, error: Option<ExtendedError<'_>>) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
    out.push((rcode as u16 >> 4) as u8);
    out.push(0);
    out.push(if edns.dnssec_ok { 0x80 } else { 0 });
    out.push(0);
    match error {
        Some(error) => {
            let text = &error.text.as_bytes()[..error.text.len().min(400)];
            let option_len = 2 + text.len() as u16;
            out.extend_from_slice(&(4 + option_len).to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes());
            out.extend_from_slice(&option_len.to_be_bytes());
            out.extend_from_slice(&error.code.to_be_bytes());
            out.extend_from_slice(text);
        }
        None => out.extend_from_slice(&[0, 0]),
    }
}

/// Offset inside the question of the label `label` (0 is the first).
fn label_offset(question: &[u8], label: usize) -> usize {
    let mut at = 0;
    for _ in 0..label {
        at += 1 + usize::from(question[at]);
    }
    at
}

/// Sets one of the four section counts; `at` is its offset in the header.
fn set_count(out: &mut [u8], at: usize, count: u16) {
    out[at..at + 2].copy_from_slice(&count.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::{parse, tests::query_packet};
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;

    #[test]
    fn sinkhole_address_answer_is_a_valid_message() {
        let packet = query_packet("www.PosdTeu.shop", 1, Some((4096, 0, true)));
        let query = parse(&packet).unwrap();
        let mut out = Vec::new();
        let answer = LocalAnswer {
            rcode: Rcode::NoError,
            addresses: &["0.0.0.0".parse().unwrap()],
            soa_label: None,
            ttl: 60,
            serial: 7,
            error: Some(ExtendedError {
                code: ede::BLOCKED,
                text: "blocked by remus",
            }),
        };
        write_local(&mut out, &query, &answer);

        let message = Message::from_vec(&out).unwrap();
        assert_eq!(message.metadata.id, 0x1234);
        assert!(message.metadata.recursion_desired && message.metadata.recursion_available);
        assert_eq!(message.queries[0].name().to_string(), "www.PosdTeu.shop.");
        assert_eq!(message.answers.len(), 1);
        assert_eq!(message.answers[0].ttl, 60);
        assert!(matches!(message.answers[0].data, RData::A(a) if a.0.is_unspecified()));
        let edns = message.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
    }

    #[test]
    fn nodata_answer_carries_soa_for_the_listed_domain() {
        let packet = query_packet("a.b.mathlah.com", 16, None);
        let query = parse(&packet).unwrap();
        let mut out = Vec::new();
        let answer = LocalAnswer {
            rcode: Rcode::NxDomain,
            addresses: &[],
            soa_label: Some(2),
            ttl: 30,
            serial: 3,
            error: None,
        };
        write_local(&mut out, &query, &answer);

        let message = Message::from_vec(&out).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        assert!(message.edns.is_none());
        assert_eq!(message.authorities[0].name.to_string(), "mathlah.com.");
        assert!(matches!(&message.authorities[0].data, RData::SOA(soa) if soa.minimum == 30));
    }

    #[test]
    fn bad_version_answer_has_extended_rcode() {
        let packet = query_packet("a.b", 1, Some((1232, 3, false)));
        let mut out = Vec::new();
        write_bad_version(&mut out, &packet, packet.len() - 11);
        let message = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(message.metadata.response_code), 16);
    }
}
