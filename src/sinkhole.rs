//! The answer a blocked query gets, by the action of the list that blocked it.
//!
//! `sinkhole`: A and AAAA get the list's sinkhole address; any other type gets NOERROR with
//! no records and an SOA (RFC 2308 §2.2, NODATA). `nxdomain`: NXDOMAIN with an SOA.
//! `nodata`: NOERROR with no records and an SOA. The SOA is owned by the listed domain, so a
//! client caches the negative answer for the whole blocked subtree (RFC 8020). Every blocked
//! answer carries Extended DNS Error 15, Blocked, naming the list (RFC 8914 §4.16).

use std::net::IpAddr;

use crate::config::Action;
use crate::dns::answer::{ExtendedError, LocalAnswer, Rcode, ede, write_local};
use crate::dns::query::Query;
use crate::policy::BlockMatch;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// What was sent, for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub rcode: Rcode,
    pub address: Option<IpAddr>,
}

/// Writes the blocked answer for `query` into `out`.
///
/// `via_cname` names the link of the answer's CNAME chain that matched, when the query name
/// itself is not listed; the SOA then belongs to the query name.
pub fn write_blocked(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    found: &BlockMatch<'_>,
    via_cname: Option<&str>,
    serial: u32,
) -> Sent {
    let list = found.list;
    let address = match (list.action, query.qtype) {
        (Action::Sinkhole, TYPE_A) => Some(IpAddr::V4(list.ipv4)),
        (Action::Sinkhole, TYPE_AAAA) => Some(IpAddr::V6(list.ipv6)),
        _ => None,
    };
    let rcode = match list.action {
        Action::Nxdomain => Rcode::NxDomain,
        Action::Sinkhole | Action::Nodata => Rcode::NoError,
    };
    let soa_label = match (address, via_cname) {
        (Some(_), _) => None,
        (None, Some(_)) => Some(0),
        (None, None) => Some(found.label),
    };

    let text;
    let error_text = match via_cname {
        Some(link) => {
            text = format!("blocked by list {} (CNAME {link})", list.name);
            text.as_str()
        }
        None => list.blocked_text.as_str(),
    };
    let answer = LocalAnswer {
        rcode,
        address,
        soa_label,
        ttl: list.ttl,
        serial,
        error: Some(ExtendedError {
            code: ede::BLOCKED,
            text: error_text,
        }),
    };
    write_local(out, query, &answer);
    Sent { rcode, address }
}
