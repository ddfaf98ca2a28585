//! The life of one query, from packet to answer, shared by the UDP and TCP listeners.
//!
//! [`Handler::answer_locally`] does everything that needs no network: parse, access control,
//! the policy decision, the sinkhole answer and cache hits. Only a cache miss goes on to
//! [`Handler::forward`], which asks the upstreams, checks the answer's CNAME chain against the
//! policy, caches the response and writes it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::answer::{
    ADVERTISED_UDP_SIZE, ExtendedError, Rcode, ede, write_bad_version, write_bare_error,
    write_error, write_truncated,
};
use crate::dns::name::QueryName;
use crate::dns::query::{self, CLASS_IN, Query, Rejection, TYPE_OPT};
use crate::dns::records::ttl_layout;
use crate::events::{EventSink, Outcome, QueryEvent, Transport};
use crate::policy::{BlockMatch, Decision, Exception, Policy};
use crate::sinkhole::{Sent, write_blocked};
use crate::upstream::cache::{Facts, Fresh};
use crate::upstream::{AnswerCache, Forwarder, UpstreamQuery, Variant};

const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_CNAME: u16 = 5;

/// Who asked, and where.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    /// The listener's own address.
    pub server: SocketAddr,
    pub transport: Transport,
}

/// What a listener does next with a packet.
#[derive(Debug)]
pub enum Step {
    /// The answer is in the output buffer: send it.
    Reply,
    /// Send nothing.
    Drop,
    /// Needs the upstreams: pass this to [`Handler::forward`].
    Forward(Pending),
}

/// A query on its way upstream.
#[derive(Debug)]
pub struct Pending {
    packet: Vec<u8>,
    /// A blocklist match that an exception overrode: logged once the answer is known.
    exception: Option<ExceptionEvent>,
    /// Whether the answer's CNAME chain is checked (not for exceptions).
    check_chain: bool,
}

#[derive(Debug)]
struct ExceptionEvent {
    list: Arc<crate::policy::Blocklist>,
    domain: String,
    original_action: &'static str,
    reason: String,
}

/// Everything a query needs: the current policy, the cache, the upstreams and the event log.
pub struct Handler {
    policy: Arc<ArcSwap<Policy>>,
    cache: AnswerCache,
    forwarder: Forwarder,
    events: EventSink,
}

impl Handler {
    pub fn new(
        policy: Arc<ArcSwap<Policy>>,
        cache: AnswerCache,
        forwarder: Forwarder,
        events: EventSink,
    ) -> Self {
        Self {
            policy,
            cache,
            forwarder,
            events,
        }
    }

    /// Answers without the network when it can; see the module documentation.
    pub fn answer_locally(&self, packet: &[u8], client: &Client, out: &mut Vec<u8>) -> Step {
        let query = match query::parse(packet) {
            Ok(query) => query,
            Err(rejection) => return reject(rejection, packet, out),
        };
        let policy = self.policy.load();
        if !policy.admits(client.addr.ip()) {
            let error = ExtendedError {
                code: ede::PROHIBITED,
                text: "client not allowed",
            };
            write_error(out, &query, Rcode::Refused, Some(error));
            return Step::Reply;
        }
        if let Some(step) = unsupported(&query, out) {
            return step;
        }

        let (exception, check_chain) = match policy.decide(&query.name, client.addr.ip()) {
            Decision::Block(found) => {
                let sent = write_blocked(out, &query, &found, None, policy.version as u32);
                self.emit_blocked(&query, client, &found, Vec::new(), sent);
                return Step::Reply;
            }
            Decision::Forward => (None, true),
            Decision::Except { exception, blocked } => (
                blocked.map(|found| exception_event(exception, &found)),
                false,
            ),
        };

        let now = Instant::now();
        let variant = Variant::of(&query);
        if let Some(entry) = self.cache.get(&query.name, variant, now) {
            if check_chain && let Some((found, link)) = chain_match(&policy, &entry.facts.chain) {
                let link = link.to_text();
                let chain = vec![query.name.to_text(), link.clone()];
                let sent = write_blocked(out, &query, &found, Some(&link), policy.version as u32);
                self.emit_blocked(&query, client, &found, chain, sent);
                return Step::Reply;
            }
            entry.write_for(&query, now, out);
            fit_udp(out, &query, client.transport);
            if let Some(exception) = exception {
                self.emit_exception(&query, client, exception, &entry.facts, None);
            }
            return Step::Reply;
        }

        Step::Forward(Pending {
            packet: packet.to_vec(),
            exception,
            check_chain,
        })
    }

    /// Forwards a query that [`Handler::answer_locally`] could not answer and writes the
    /// answer into `out`. Always produces an answer: SERVFAIL when no upstream gives one.
    pub async fn forward(&self, pending: Pending, client: &Client, out: &mut Vec<u8>) {
        // The packet parsed once already, so it parses again.
        let Ok(query) = query::parse(&pending.packet) else {
            return;
        };
        let upstream_query = UpstreamQuery {
            name: wire_name(query.question).to_lowercase(),
            qtype: query.qtype,
            dnssec_ok: query.dnssec_ok(),
            checking_disabled: query.checking_disabled(),
        };

        let started = Instant::now();
        let result = self.forwarder.forward(&upstream_query).await;
        let upstream_ms = started.elapsed().as_millis() as u64;
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(query.name = %query.name, %error, "forwarding failed");
                let error = ExtendedError {
                    code: ede::NO_REACHABLE_AUTHORITY,
                    text: "no upstream resolver answered",
                };
                write_error(out, &query, Rcode::ServFail, Some(error));
                if let Some(exception) = pending.exception {
                    let facts = Facts {
                        rcode: Rcode::ServFail as u16,
                        ..Facts::default()
                    };
                    self.emit_exception(&query, client, exception, &facts, Some(upstream_ms));
                }
                return;
            }
        };

        let policy = self.policy.load();
        let chain = cname_chain(&message, &upstream_query.name);
        let facts = self.store(&query, message, chain, out);
        if pending.check_chain
            && let Some((found, link)) = chain_match(&policy, &facts.chain)
        {
            let link = link.to_text();
            let chain = vec![query.name.to_text(), link.clone()];
            let sent = write_blocked(out, &query, &found, Some(&link), policy.version as u32);
            self.emit_blocked(&query, client, &found, chain, sent);
            return;
        }
        fit_udp(out, &query, client.transport);
        if let Some(exception) = pending.exception {
            self.emit_exception(&query, client, exception, &facts, Some(upstream_ms));
        }
    }

    /// Builds the client's response from the upstream's message into `out`, caches it when
    /// it may be cached, and returns what the policy and events need to know about it.
    fn store(
        &self,
        query: &Query<'_>,
        upstream: Message,
        chain: Vec<QueryName>,
        out: &mut Vec<u8>,
    ) -> Facts {
        let response = client_response(query, upstream);
        out.clear();
        match response.to_vec() {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(error) => {
                tracing::debug!(query.name = %query.name, %error, "cannot encode upstream answer");
                write_error(out, query, Rcode::ServFail, None);
                return Facts {
                    rcode: Rcode::ServFail as u16,
                    ..Facts::default()
                };
            }
        }

        let rcode = u16::from(response.metadata.response_code.low());
        let first_address = response
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            });
        let facts = Facts {
            rcode,
            first_address,
            chain: chain.into(),
        };
        let cacheable = matches!(rcode, 0 | 3);
        if let (true, Some(layout)) = (cacheable, ttl_layout(out)) {
            let negative = rcode == 3 || response.answers.is_empty();
            let fresh = Fresh {
                packet: out,
                layout,
                negative,
                facts: facts.clone(),
            };
            self.cache
                .insert(&query.name, Variant::of(query), fresh, Instant::now());
        }
        facts
    }

    fn emit_blocked(
        &self,
        query: &Query<'_>,
        client: &Client,
        found: &BlockMatch<'_>,
        chain: Vec<String>,
        sent: Sent,
    ) {
        let mut event = query_event(query, client, found.list.clone(), found.domain_text());
        event.rcode = sent.rcode as u16;
        event.response = sent.address;
        event.chain = chain;
        self.events.emit(event);
    }

    fn emit_exception(
        &self,
        query: &Query<'_>,
        client: &Client,
        exception: ExceptionEvent,
        facts: &Facts,
        upstream_ms: Option<u64>,
    ) {
        let mut event = query_event(query, client, exception.list, exception.domain);
        event.rcode = facts.rcode;
        event.response = facts.first_address;
        event.outcome = Outcome::Allowed {
            original_action: exception.original_action,
            reason: exception.reason,
        };
        event.upstream_ms = upstream_ms;
        self.events.emit(event);
    }
}

/// An event for `query` and the blocklist entry it matched, as a block that answered
/// NOERROR; callers set what differs.
fn query_event(
    query: &Query<'_>,
    client: &Client,
    list: Arc<crate::policy::Blocklist>,
    domain: String,
) -> QueryEvent {
    QueryEvent {
        time: SystemTime::now(),
        client: client.addr,
        server: client.server,
        transport: client.transport,
        id: query.id,
        name: query.name.to_text(),
        qtype: query.qtype,
        rcode: 0,
        response: None,
        list,
        domain,
        chain: Vec::new(),
        outcome: Outcome::Blocked,
        upstream_ms: None,
    }
}

/// The answer to a packet that is not a usable query.
fn reject(rejection: Rejection, packet: &[u8], out: &mut Vec<u8>) -> Step {
    match rejection {
        Rejection::Ignore => return Step::Drop,
        Rejection::FormErr { id, flags } => write_bare_error(out, id, flags, Rcode::FormErr),
        Rejection::NotImp { id, flags } => write_bare_error(out, id, flags, Rcode::NotImp),
        Rejection::BadVersion { question_end, .. } => write_bad_version(out, packet, question_end),
    }
    Step::Reply
}

/// Answers questions a forwarder does not serve: other classes, zone transfers, meta types.
fn unsupported(query: &Query<'_>, out: &mut Vec<u8>) -> Option<Step> {
    let refuse = |out: &mut Vec<u8>, text| {
        let error = ExtendedError {
            code: ede::NOT_SUPPORTED,
            text,
        };
        write_error(out, query, Rcode::Refused, Some(error));
        Some(Step::Reply)
    };
    match (query.qclass, query.qtype) {
        (_, TYPE_OPT) => {
            write_bare_error(out, query.id, query.flags, Rcode::FormErr);
            Some(Step::Reply)
        }
        (_, TYPE_AXFR | TYPE_IXFR) => refuse(out, "zone transfers are not served"),
        (CLASS_IN, _) => None,
        _ => refuse(out, "only class IN is served"),
    }
}

fn exception_event(exception: Exception<'_>, found: &BlockMatch<'_>) -> ExceptionEvent {
    let (original_action, reason) = match exception {
        Exception::Client(group) => ("exempt-client", format!("client exempt by {group}")),
        Exception::Name { allowlist, domain } => (
            "allowlist",
            format!(
                "allowlist {allowlist} entry {}",
                String::from_utf8_lossy(domain)
            ),
        ),
    };
    ExceptionEvent {
        list: found.list.clone(),
        domain: found.domain_text(),
        original_action,
        reason,
    }
}

/// The first name of a CNAME chain that a blocklist matches.
fn chain_match<'p>(policy: &'p Policy, chain: &[QueryName]) -> Option<(BlockMatch<'p>, QueryName)> {
    chain.iter().find_map(|link| {
        policy
            .chain_link_blocked(link)
            .map(|found| (found, link.clone()))
    })
}

/// Follows the CNAME records of an answer from the query name; returns the names it leads to.
fn cname_chain(message: &Message, qname: &Name) -> Vec<QueryName> {
    let mut chain = Vec::new();
    let mut current = qname.clone();
    // A chain longer than the answer section would be a loop.
    for _ in 0..message.answers.len() {
        let next = message
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(target) if record.name == current => Some(target.0.clone()),
                _ => None,
            });
        let Some(next) = next else {
            break;
        };
        if let Some(name) = QueryName::from_text(&next.to_ascii()) {
            chain.push(name);
        }
        current = next;
    }
    // Names that only appear as CNAME owners (an answer out of order) are checked too.
    for record in &message.answers {
        if record.record_type() == RecordType::from(TYPE_CNAME) && record.name != *qname {
            if let Some(name) = QueryName::from_text(&record.name.to_ascii()) {
                if !chain
                    .iter()
                    .any(|known| known.as_bytes() == name.as_bytes())
                {
                    chain.push(name);
                }
            }
        }
    }
    chain
}

/// The response to the client: its ID, question and flags, the upstream's records and rcode.
fn client_response(query: &Query<'_>, mut upstream: Message) -> Message {
    let mut response = Message::new(query.id, MessageType::Response, OpCode::Query);
    let metadata = &mut response.metadata;
    metadata.recursion_desired = query.recursion_desired();
    metadata.recursion_available = true;
    metadata.checking_disabled = query.checking_disabled();
    // AD only for clients that show they understand it (RFC 6840 §5.7).
    let ad_wanted = query.dnssec_ok() || query.flags & 0x0020 != 0;
    metadata.authentic_data = ad_wanted && upstream.metadata.authentic_data;
    metadata.response_code = upstream.metadata.response_code;

    response.add_query(HQuery::query(
        wire_name(query.question),
        RecordType::from(query.qtype),
    ));
    response.answers = std::mem::take(&mut upstream.answers);
    response.authorities = std::mem::take(&mut upstream.authorities);
    response.additionals = std::mem::take(&mut upstream.additionals);
    if let Some(edns) = query.edns {
        let mut ours = hickory_proto::op::Edns::new();
        ours.set_max_payload(ADVERTISED_UDP_SIZE)
            .set_dnssec_ok(edns.dnssec_ok);
        response.edns = Some(ours);
    }
    response
}

/// Replaces a UDP response that exceeds the client's limit with a truncated one.
fn fit_udp(out: &mut Vec<u8>, query: &Query<'_>, transport: Transport) {
    if transport == Transport::Udp && out.len() > query.udp_limit() {
        let rcode = u16::from_be_bytes([out[2], out[3]]);
        write_truncated(out, query, rcode);
    }
}

/// The question's name as hickory's type, with the client's case.
fn wire_name(question: &[u8]) -> Name {
    // The question was validated by the parser, so it decodes.
    Name::read(&mut BinDecoder::new(question)).unwrap_or_else(|_| Name::root())
}
