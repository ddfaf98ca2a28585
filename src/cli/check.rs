//! `sinkhole check NAME`: what the policy decides for one query, without sending anything.
//!
//! Shows every list entry that matches the name, the one that decides and why, and the
//! indicator's metadata as events would carry it.

use std::net::IpAddr;
use std::path::Path;

use super::{Failure, load};
use crate::dns::name::QueryName;
use crate::lists::Indicator;
use crate::policy::listing::{Role, listings};
use crate::policy::{BlockMatch, Blocklist, Decision, Exception, Policy, Response, Trigger};

pub fn run(
    path: &Path,
    name: &str,
    qtype: &str,
    client: IpAddr,
    answers: &[IpAddr],
) -> Result<(), Failure> {
    let (config, lists) = load(path)?;
    let policy = Policy::build(&config, &lists, 1);
    let query = QueryName::from_text(name).ok_or_else(|| {
        Failure::config(std::io::Error::other(format!(
            "{name:?} is not a valid domain name"
        )))
    })?;
    let qtype = qtype
        .parse::<hickory_proto::rr::RecordType>()
        .map(u16::from)
        .map_err(|_| Failure::config(std::io::Error::other(format!("unknown type {qtype:?}"))))?;

    say!(
        "query: {query} {} from {client}",
        hickory_proto::rr::RecordType::from(qtype)
    );
    print_listings(&policy, &query);
    if !policy.admits(client) {
        say!("decision: refused (client not in server.allow_clients)");
        return Ok(());
    }
    match policy.decide(&query, client) {
        Decision::Block(found) => {
            say!("decision: {} by list {}", verdict(&found), found.list.name);
            print_match(&found, qtype);
        }
        Decision::Forward { shadow } => {
            print_forward(&policy, answers, qtype);
            if let Some(found) = shadow {
                say!("log-only match (the answer is not changed):");
                print_match(&found, qtype);
            }
        }
        Decision::Except { exception, blocked } => {
            print_exception(exception);
            if let Some(found) = blocked {
                say!("overrides a blocklist match:");
                print_match(&found, qtype);
            }
        }
    }
    Ok(())
}

/// Every entry of every list that covers the name.
fn print_listings(policy: &Policy, query: &QueryName) {
    let found = listings(policy, query);
    if found.is_empty() {
        say!("listed in: no list");
    }
    for listing in found {
        let role = match listing.role {
            Role::Block => "blocks",
            Role::Exception => "excepts",
            Role::Allow => "allows",
        };
        let response = listing
            .rule
            .as_ref()
            .map(|(list, rule)| format!(" ({})", list.response(*rule).name()))
            .unwrap_or_default();
        say!(
            "listed in: {} {role} {}{response}",
            listing.list,
            listing.entry
        );
    }
}

/// A query no enforcing list stops at the question: what the answer would meet.
fn print_forward(policy: &Policy, answers: &[IpAddr], qtype: u16) {
    match policy.answer_match(&[], answers, false) {
        Some(found) => {
            let found = found.found;
            say!(
                "decision: forward, then {} by list {} (answer address)",
                verdict(&found),
                found.list.name
            );
            print_match(&found, qtype);
        }
        None => say!("decision: forward (no list matches)"),
    }
}

fn print_exception(exception: Exception<'_>) {
    match exception {
        Exception::Client(group) => say!("decision: forward (client exempt by {group})"),
        Exception::Name { allowlist, domain } => say!(
            "decision: forward (allowlist {allowlist}, entry {})",
            String::from_utf8_lossy(domain)
        ),
    }
}

fn verdict(found: &BlockMatch<'_>) -> &'static str {
    match found.response() {
        Response::LogOnly => "logged",
        _ => "blocked",
    }
}

fn print_match(found: &BlockMatch<'_>, qtype: u16) {
    let list = found.list;
    say!("  list: {} ({})", list.name, list.path.display());
    let trigger = match found.trigger {
        Trigger::Name { .. } => "name",
        Trigger::Client { .. } => "client IP",
        Trigger::Answer { .. } => "response IP",
    };
    say!("  entry: {} ({trigger})", found.entry());
    say!(
        "  action: {} -> {} (ttl {})",
        found.response().name(),
        answer_text(list, found.response(), qtype),
        list.ttl
    );
    print_metadata(list, found.rule);
}

/// What the client would get back.
fn answer_text(list: &Blocklist, response: Response<'_>, qtype: u16) -> String {
    let addresses = |v4: Vec<String>, v6: Vec<String>| match qtype {
        1 if !v4.is_empty() => v4.join(", "),
        28 if !v6.is_empty() => v6.join(", "),
        _ => "NOERROR, no records".to_owned(),
    };
    match response {
        Response::Sinkhole => addresses(vec![list.ipv4.to_string()], vec![list.ipv6.to_string()]),
        Response::Nxdomain => "NXDOMAIN".to_owned(),
        Response::Nodata => "NOERROR, no records".to_owned(),
        Response::Refuse => "REFUSED".to_owned(),
        Response::Drop => "no answer".to_owned(),
        Response::TcpOnly => "TC over UDP, the real answer over TCP".to_owned(),
        Response::LogOnly => "the real answer".to_owned(),
        Response::Local(data) => match &data.cname {
            Some(target) => format!("CNAME {target}"),
            None => addresses(
                data.ipv4().iter().map(ToString::to_string).collect(),
                data.ipv6().iter().map(ToString::to_string).collect(),
            ),
        },
    }
}

/// The indicator's metadata, each field falling back to the list's config.
fn print_metadata(list: &Blocklist, rule: u32) {
    let ioc = list.indicator(rule);
    let threat = list.threat(rule);
    let config = &list.metadata;
    let show = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            say!("  {label}: {value}");
        }
    };
    let own = |field: fn(&Indicator) -> Option<&str>| ioc.and_then(field).map(str::to_owned);
    let text = |value: Option<&str>| value.map(str::to_owned);
    show("source", config.source.clone());
    show("ioc id", text(threat.id));
    show("ioc", own(|ioc| ioc.value.as_deref()));
    show("ioc type", own(|ioc| ioc.ioc_type.as_deref()));
    show("family", text(threat.family));
    show("malware", own(|ioc| ioc.malware.as_deref()));
    show("threat type", text(threat.category));
    show("confidence", threat.confidence.map(|c| c.to_string()));
    show("first seen", text(threat.first_seen));
    show("last seen", text(threat.last_seen));
    let tags = ioc
        .map(|ioc| ioc.tags.join(", "))
        .filter(|tags| !tags.is_empty());
    show("tags", tags);
    show("reference", own(|ioc| ioc.reference.as_deref()));
}
