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
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::answer::{
    ADVERTISED_UDP_SIZE, ExtendedError, Rcode, ede, write_bad_version, write_bare_error,
    write_error, write_truncated,
};
use crate::dns::name::QueryName;
use crate::dns::query::{self, CLASS_IN, Query, Rejection, TYPE_OPT};
use crate::dns::records::ttl_layout;
use crate::events::{EventSink, Outcome, QueryEvent, Transport};
use crate::policy::{
    AnswerMatch, BlockMatch, Decision, Exception, MatchRecord, Policy, Response, Trigger,
};
use crate::sinkhole::{Sent, write_blocked};
use crate::sources::zone::NotifyRouter;
use crate::upstream::cache::{Facts, Fresh};
use crate::upstream::{AnswerCache, Forwarder, UpstreamQuery, Variant};

const OPCODE_NOTIFY: u16 = 4;
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
    Forward(Box<Pending>),
}

/// A query on its way upstream.
#[derive(Debug)]
pub struct Pending {
    packet: Vec<u8>,
    /// A match to log once the answer is known: one an exception overrode, or a log-only
    /// list's.
    observed: Option<Observed>,
    /// Whether the answer is checked against the policy (not for exceptions).
    check_answer: bool,
    /// Local data that points elsewhere: ask for this name, and answer with a CNAME to it.
    rewrite: Option<Rewrite>,
}

/// A match that did not change the answer, and why.
#[derive(Debug)]
struct Observed {
    found: MatchRecord,
    original_action: &'static str,
    reason: String,
}

/// An RPZ local-data CNAME: the query name's answer is the target's, behind a CNAME.
#[derive(Debug)]
struct Rewrite {
    target: Name,
    ttl: u32,
}

/// What enforcing a match did.
enum Enforced {
    /// The answer (or the decision to send none) is made.
    Done(Step),
    /// The match sends the query elsewhere.
    Rewrite(Rewrite),
    /// The match does not apply here (`tcp-only` over TCP): go on as if unmatched.
    Pass,
}

/// Everything a query needs: the current policy, the cache, the upstreams and the event log.
pub struct Handler {
    policy: Arc<ArcSwap<Policy>>,
    cache: AnswerCache,
    forwarder: Forwarder,
    events: EventSink,
    /// The primaries whose NOTIFY messages are answered.
    notifies: NotifyRouter,
    /// Whether queries no list matched are logged too (`events.queries = "all"`).
    log_all: bool,
}

impl Handler {
    pub fn new(
        policy: Arc<ArcSwap<Policy>>,
        cache: AnswerCache,
        forwarder: Forwarder,
        events: EventSink,
        notifies: NotifyRouter,
        log_all: bool,
    ) -> Self {
        Self {
            policy,
            cache,
            forwarder,
            events,
            notifies,
            log_all,
        }
    }

    /// Answers without the network when it can; see the module documentation.
    pub fn answer_locally(&self, packet: &[u8], client: &Client, out: &mut Vec<u8>) -> Step {
        let query = match query::parse(packet) {
            Ok(query) => query,
            // A NOTIFY is a request of another opcode, which the parser turns away.
            Err(query::Rejection::NotImp { flags, .. })
                if (flags >> 11) & 0x0f == OPCODE_NOTIFY && !self.notifies.is_empty() =>
            {
                return self.notify(packet, client, out);
            }
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

        let (observed, check_answer) = match policy.decide(&query.name, client.addr.ip()) {
            Decision::Block(found) => {
                match self.enforce(&query, client, &found, None, &policy, out) {
                    Enforced::Done(step) => return step,
                    Enforced::Rewrite(rewrite) => {
                        return pending(packet, None, false, Some(rewrite));
                    }
                    Enforced::Pass => (None, true),
                }
            }
            Decision::Forward { shadow } => (shadow.map(|found| log_only(&found)), true),
            Decision::Except { exception, blocked } => (
                blocked.map(|found| exception_event(exception, &found)),
                false,
            ),
        };

        let now = Instant::now();
        let variant = Variant::of(&query);
        let Some(entry) = self.cache.get(&query.name, variant, now) else {
            return pending(packet, observed, check_answer, None);
        };
        let facts = &entry.facts;
        if check_answer
            && let Some(found) = policy.answer_match(&facts.chain, &facts.addresses, false)
        {
            match self.enforce_answer(&query, client, &found, &policy, out) {
                Enforced::Done(step) => return step,
                Enforced::Rewrite(rewrite) => return pending(packet, None, false, Some(rewrite)),
                Enforced::Pass => {}
            }
        }
        entry.write_for(&query, now, out);
        fit_udp(out, &query, client.transport);
        let observed = observed.or_else(|| shadow_answer(&policy, check_answer, facts));
        self.emit_allowed(&query, client, observed, facts, None, policy.version);
        Step::Reply
    }

    /// Answers a NOTIFY (RFC 1996 §4.7): NOERROR and a serial check for a zone kept by
    /// transfer from the sender, REFUSED for any other.
    fn notify(&self, packet: &[u8], client: &Client, out: &mut Vec<u8>) -> Step {
        let Ok(message) = Message::from_vec(packet) else {
            return Step::Drop;
        };
        if message.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        let zone = message.queries.first().map(|query| {
            let name = query.name().to_ascii().to_ascii_lowercase();
            name.trim_end_matches('.').to_owned()
        });
        let known = zone
            .as_deref()
            .is_some_and(|zone| self.notifies.notify(zone, client.addr.ip()));
        tracing::debug!(zone = ?zone, client.addr = %client.addr, known, "NOTIFY");
        let mut response = Message::new(message.metadata.id, MessageType::Response, OpCode::Notify);
        response.metadata.authoritative = known;
        response.metadata.response_code = if known {
            hickory_proto::op::ResponseCode::NoError
        } else {
            hickory_proto::op::ResponseCode::Refused
        };
        response.queries = message.queries;
        match encode(&response, out) {
            Ok(()) => Step::Reply,
            Err(_) => Step::Drop,
        }
    }

    /// Forwards a query that [`Handler::answer_locally`] could not answer and writes the
    /// answer into `out`. Always produces an answer: SERVFAIL when no upstream gives one.
    pub async fn forward(&self, pending: Box<Pending>, client: &Client, out: &mut Vec<u8>) {
        // The packet parsed once already, so it parses again.
        let Ok(query) = query::parse(&pending.packet) else {
            return;
        };
        if let Some(rewrite) = pending.rewrite {
            self.forward_rewritten(&query, rewrite, client, out).await;
            return;
        }
        let upstream_query = upstream_query(&query, wire_name(query.question).to_lowercase());

        let started = Instant::now();
        let result = self.forwarder.forward(&upstream_query).await;
        let upstream_ms = started.elapsed().as_millis() as u64;
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(query.name = %query.name, %error, "forwarding failed");
                write_unreachable(out, &query);
                let facts = Facts {
                    rcode: Rcode::ServFail as u16,
                    ..Facts::default()
                };
                let version = self.policy.load().version;
                let observed = pending.observed;
                self.emit_allowed(&query, client, observed, &facts, Some(upstream_ms), version);
                return;
            }
        };

        let policy = self.policy.load();
        let chain = cname_chain(&message, &upstream_query.name);
        let facts = self.store(&query, message, chain, out);
        if pending.check_answer
            && let Some(found) = policy.answer_match(&facts.chain, &facts.addresses, false)
        {
            match self.enforce_answer(&query, client, &found, &policy, out) {
                Enforced::Done(_) => return,
                Enforced::Rewrite(rewrite) => {
                    self.forward_rewritten(&query, rewrite, client, out).await;
                    return;
                }
                Enforced::Pass => {}
            }
        }
        fit_udp(out, &query, client.transport);
        let observed = pending
            .observed
            .or_else(|| shadow_answer(&policy, pending.check_answer, &facts));
        let version = policy.version;
        self.emit_allowed(&query, client, observed, &facts, Some(upstream_ms), version);
    }

    /// Answers with a CNAME from the query name to the rewrite's target, followed by the
    /// target's answer from upstream (RPZ local data, draft-vixie-dnsop-dns-rpz §5.1). The
    /// result is not cached: it is the policy's, not the name's.
    async fn forward_rewritten(
        &self,
        query: &Query<'_>,
        rewrite: Rewrite,
        client: &Client,
        out: &mut Vec<u8>,
    ) {
        let upstream_query = upstream_query(query, rewrite.target.clone());
        let mut message = match self.forwarder.forward(&upstream_query).await {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(query.name = %query.name, %error, "forwarding a rewrite failed");
                write_unreachable(out, query);
                return;
            }
        };
        let owner = wire_name(query.question);
        let cname = Record::from_rdata(owner, rewrite.ttl, RData::CNAME(CNAME(rewrite.target)));
        message.answers.insert(0, cname);
        let response = client_response(query, message);
        if encode(&response, out).is_err() {
            write_error(out, query, Rcode::ServFail, None);
        }
        fit_udp(out, query, client.transport);
    }

    /// Answers a query as a match says, and writes its event.
    fn enforce(
        &self,
        query: &Query<'_>,
        client: &Client,
        found: &BlockMatch<'_>,
        link: Option<&QueryName>,
        policy: &Policy,
        out: &mut Vec<u8>,
    ) -> Enforced {
        let response = found.response();
        if response == Response::TcpOnly && client.transport == Transport::Tcp {
            return Enforced::Pass;
        }
        let chain = link.map_or_else(Vec::new, |link| vec![query.name.to_text(), link.to_text()]);
        if let Response::Local(data) = response
            && let Some(target) = &data.cname
        {
            let Some(target) = rewrite_target(target, &query.name) else {
                return Enforced::Pass;
            };
            let ttl = data.ttl.unwrap_or(found.list.ttl);
            self.emit_blocked(query, client, found, chain, None);
            return Enforced::Rewrite(Rewrite { target, ttl });
        }

        let note = match (link, found.trigger) {
            (Some(link), _) => Some(format!("CNAME {link}")),
            (None, Trigger::Answer { address, .. }) => Some(format!("answer {address}")),
            (None, Trigger::Client { network }) => Some(format!("client {network}")),
            (None, Trigger::Name { .. }) => None,
        };
        let sent = write_blocked(out, query, found, note.as_deref(), policy.version as u32);
        match sent {
            Some(_) => fit_udp(out, query, client.transport),
            // No answer: on the forward path `out` already holds the upstream's, and the
            // listener sends whatever `out` holds.
            None => out.clear(),
        }
        self.emit_blocked(query, client, found, chain, sent);
        Enforced::Done(if sent.is_some() {
            Step::Reply
        } else {
            Step::Drop
        })
    }

    fn enforce_answer(
        &self,
        query: &Query<'_>,
        client: &Client,
        found: &AnswerMatch<'_>,
        policy: &Policy,
        out: &mut Vec<u8>,
    ) -> Enforced {
        self.enforce(
            query,
            client,
            &found.found,
            found.link.as_ref(),
            policy,
            out,
        )
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
        if let Err(error) = encode(&response, out) {
            tracing::debug!(query.name = %query.name, %error, "cannot encode upstream answer");
            write_error(out, query, Rcode::ServFail, None);
            return Facts {
                rcode: Rcode::ServFail as u16,
                ..Facts::default()
            };
        }

        let rcode = u16::from(response.metadata.response_code.low());
        let addresses = response
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        let facts = Facts {
            rcode,
            addresses,
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
        sent: Option<Sent>,
    ) {
        let mut event = query_event(query, client, found.record());
        event.rcode = sent.map(|sent| sent.rcode as u16);
        event.response = sent.and_then(|sent| sent.address);
        event.chain = chain;
        self.events.emit(event);
    }

    /// The event of a query answered as asked: the list that saw it (log-only, or held back
    /// by an exception), else, with `events.queries = "all"`, a plain one.
    fn emit_allowed(
        &self,
        query: &Query<'_>,
        client: &Client,
        observed: Option<Observed>,
        facts: &Facts,
        upstream_ms: Option<u64>,
        version: u64,
    ) {
        let mut event = match observed {
            Some(observed) => {
                let mut event = query_event(query, client, observed.found);
                event.outcome = Outcome::Allowed {
                    original_action: observed.original_action,
                    reason: observed.reason,
                };
                event
            }
            None if self.log_all => answered_event(query, client, version),
            None => return,
        };
        event.rcode = Some(facts.rcode);
        event.response = facts.addresses.first().copied();
        event.upstream_ms = upstream_ms;
        self.events.emit(event);
    }
}

/// Writes `message` into `out`; on an error `out` is left as it was.
fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), hickory_proto::ProtoError> {
    let bytes = message.to_vec()?;
    out.clear();
    out.extend_from_slice(&bytes);
    Ok(())
}

/// A query for upstream: `name` with the client's type and DNSSEC bits.
fn upstream_query(query: &Query<'_>, name: Name) -> UpstreamQuery {
    UpstreamQuery {
        name,
        qtype: query.qtype,
        dnssec_ok: query.dnssec_ok(),
        checking_disabled: query.checking_disabled(),
    }
}

fn pending(
    packet: &[u8],
    observed: Option<Observed>,
    check_answer: bool,
    rewrite: Option<Rewrite>,
) -> Step {
    Step::Forward(Box::new(Pending {
        packet: packet.to_vec(),
        observed,
        check_answer,
        rewrite,
    }))
}

fn write_unreachable(out: &mut Vec<u8>, query: &Query<'_>) {
    let error = ExtendedError {
        code: ede::NO_REACHABLE_AUTHORITY,
        text: "no upstream resolver answered",
    };
    write_error(out, query, Rcode::ServFail, Some(error));
}

/// The target of a local-data CNAME for `name`: `*.rest` puts the query name in place of `*`.
/// `None` when the result is not a valid name (too long).
fn rewrite_target(target: &str, name: &QueryName) -> Option<Name> {
    let text = match target.strip_prefix("*.") {
        Some(rest) => format!("{name}.{rest}."),
        None => format!("{target}."),
    };
    Name::from_ascii(text).ok()
}

/// A log-only list's match in an answer, when nothing else is logged for the query.
fn shadow_answer(policy: &Policy, check_answer: bool, facts: &Facts) -> Option<Observed> {
    if !check_answer {
        return None;
    }
    let found = policy.answer_match(&facts.chain, &facts.addresses, true)?;
    Some(log_only(&found.found))
}

fn log_only(found: &BlockMatch<'_>) -> Observed {
    Observed {
        found: found.record(),
        original_action: "log-only",
        reason: format!("list {} is log-only", found.list.name),
    }
}

/// An event for `query` and the entry it matched, as a block that sent NOERROR; callers set
/// what differs.
fn query_event(query: &Query<'_>, client: &Client, found: MatchRecord) -> QueryEvent {
    let version = found.list.policy_version;
    let mut event = answered_event(query, client, version);
    event.found = Some(found);
    event.outcome = Outcome::Blocked;
    event
}

/// An event for a query no list matched, answered as `facts` say.
fn answered_event(query: &Query<'_>, client: &Client, version: u64) -> QueryEvent {
    QueryEvent {
        time: SystemTime::now(),
        client: client.addr,
        server: client.server,
        transport: client.transport,
        id: query.id,
        name: query.name.to_text(),
        qtype: query.qtype,
        rcode: Some(0),
        response: None,
        found: None,
        version,
        chain: Vec::new(),
        outcome: Outcome::Allowed {
            original_action: "",
            reason: String::new(),
        },
        upstream_ms: None,
        repeats: None,
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

fn exception_event(exception: Exception<'_>, found: &BlockMatch<'_>) -> Observed {
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
    Observed {
        found: found.record(),
        original_action,
        reason,
    }
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
