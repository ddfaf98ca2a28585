//! The answer a blocked query gets, by the response of the entry that matched.
//!
//! `sinkhole`: A and AAAA get the list's sinkhole address; any other type gets NOERROR with
//! no records and an SOA (RFC 2308 §2.2, NODATA). `nxdomain`: NXDOMAIN with an SOA.
//! `nodata`: NOERROR with no records and an SOA. `refuse`: REFUSED. `drop`: nothing at all.
//! `tcp-only`: an empty answer with TC set (RFC 1035 §4.2.1), so the client asks again over
//! TCP. Local data: the entry's own A or AAAA records, NODATA for other types. The SOA is
//! owned by the listed domain, so a client caches the negative answer for the whole blocked
//! subtree (RFC 8020); when the query name itself is not what matched (a CNAME link, an
//! answer's address, the client), it is owned by the query name. Every answer but the
//! truncated one carries Extended DNS Error 15, Blocked, naming the list (RFC 8914 §4.16).

use std::net::IpAddr;

use crate::dns::answer::{
    ExtendedError, LocalAnswer, Rcode, ede, write_error, write_local, write_truncated,
};
use crate::dns::query::Query;
use crate::policy::{BlockMatch, Response, Trigger};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;

/// What was sent, for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub rcode: Rcode,
    /// The first address of the answer, if it has one.
    pub address: Option<IpAddr>,
}

/// Writes the blocked answer for `query` into `out`; `None` when nothing is to be sent
/// (`drop`, and `log-only`, which never changes an answer).
///
/// `note` says what matched when it is not the query name (a CNAME link, an address); it
/// goes into the Extended DNS Error text.
pub fn write_blocked(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    found: &BlockMatch<'_>,
    note: Option<&str>,
    serial: u32,
) -> Option<Sent> {
    let list = found.list;
    let text;
    let error_text = match note {
        Some(note) => {
            text = format!("{} ({note})", list.blocked_text);
            text.as_str()
        }
        None => list.blocked_text.as_str(),
    };
    let error = Some(ExtendedError {
        code: ede::BLOCKED,
        text: error_text,
    });
    let soa_label = match (found.trigger, note) {
        (Trigger::Name { label, .. }, None) => label,
        _ => 0,
    };

    let sinkhole = [IpAddr::V4(list.ipv4), IpAddr::V6(list.ipv6)];
    let (rcode, addresses, ttl): (Rcode, &[IpAddr], u32) = match found.response() {
        Response::LogOnly | Response::Drop => return None,
        Response::TcpOnly => {
            write_truncated(out, query, 0);
            let sent = Sent {
                rcode: Rcode::NoError,
                address: None,
            };
            return Some(sent);
        }
        Response::Refuse => {
            write_error(out, query, Rcode::Refused, error);
            let sent = Sent {
                rcode: Rcode::Refused,
                address: None,
            };
            return Some(sent);
        }
        Response::Nxdomain => (Rcode::NxDomain, &[], list.ttl),
        Response::Nodata => (Rcode::NoError, &[], list.ttl),
        Response::Sinkhole => (Rcode::NoError, pick(&sinkhole, query.qtype), list.ttl),
        Response::Local(data) => {
            let ttl = data.ttl.unwrap_or(list.ttl);
            (Rcode::NoError, pick(&data.addresses, query.qtype), ttl)
        }
    };

    let answer = LocalAnswer {
        rcode,
        addresses,
        soa_label: addresses.is_empty().then_some(soa_label),
        ttl,
        serial,
        error,
    };
    write_local(out, query, &answer);
    let address = addresses.first().copied();
    Some(Sent { rcode, address })
}

/// The addresses of `all` that answer a question of type `qtype`: its family, or every
/// address for ANY.
fn pick(all: &[IpAddr], qtype: u16) -> &[IpAddr] {
    let v4 = all.iter().take_while(|address| address.is_ipv4()).count();
    match qtype {
        TYPE_A => &all[..v4],
        TYPE_AAAA => &all[v4..],
        TYPE_ANY => all,
        _ => &[],
    }
}
