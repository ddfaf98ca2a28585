//! Reads Response Policy Zones: RPZ policy (draft-vixie-dnsop-dns-rpz) written as a zone file
//! (RFC 1035 §5.1). This module owns the zone-file syntax sinkhole accepts and what each RPZ
//! trigger and action becomes in a list.
//!
//! An owner name is a trigger: `name` matches that name only and `*.name` the names below it;
//! `prefix.reversed-address.rpz-ip` and `….rpz-client-ip` owners are response-IP and client-IP
//! triggers. The record is the action: `CNAME .` (NXDOMAIN), `CNAME *.` (NODATA),
//! `CNAME rpz-drop.`, `CNAME rpz-tcp-only.`, `CNAME rpz-passthru.` (an exception), or local
//! data: A, AAAA and CNAME records, merged into one answer per trigger.
//!
//! The four blocking actions share one rule each, so a zone of a million `CNAME .` records adds
//! four rules, not a million, and such a record is read without a copy of its text.
//!
//! Only part of RPZ is enforced. NSDNAME and NSIP triggers, local data of types other than A,
//! AAAA and CNAME, PASSTHRU on an IP trigger, a wildcard at the zone apex and `$INCLUDE` are
//! skipped and counted as unsupported. SOA, NS and DNSSEC records are the zone's own data, not
//! policy, and are ignored. A name given PASSTHRU and also a blocking action lands in both the
//! exceptions and the block entries; the policy's order, not the zone's, decides between them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::SplitAsciiWhitespace;
use std::sync::Arc;

use ipnet::IpNet;

use super::domain::normalize;
use super::rule::{EntryAction, LocalData, Rule, Scope};
use super::{Attr, Broken, ListBuilder, numbered_lines};

/// Reads the text of an RPZ zone file into `list`. Bad records are skipped and reported; the
/// text is refused only when it cannot be read as a zone at all: a `(` that is never closed, or
/// an `$ORIGIN` that is not a usable name (every relative owner after it would be misread).
pub fn parse(bytes: &[u8], list: &mut ListBuilder<'_>) -> Result<(), Broken> {
    let mut reader = Reader::new(list.options().origin.clone());
    let mut lines = 0;
    // The raw lines run beside the decoded ones so that a line which is not UTF-8 can still be
    // looked at; both split at LF, and the zip ends where `numbered_lines` does.
    let raw_lines = bytes.split(|&byte| byte == b'\n');
    for ((line, text), raw) in numbered_lines(bytes).zip(raw_lines) {
        lines = line;
        match text {
            Ok(text) => reader.line(line, text, None, list)?,
            Err(line) => reader.undecodable_line(line, raw, list)?,
        }
    }
    list.set_lines(lines);
    reader.finish(list)
}

/// Record types that are the zone's own data, not policy: SOA and NS, and DNSSEC records
/// (RFC 4034 §2–4, RFC 5155 §3–4, RFC 8976 §2).
const ZONE_DATA: &[&str] = &[
    "SOA",
    "NS",
    "DNSKEY",
    "RRSIG",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "ZONEMD",
];

/// Local data types sinkhole cannot answer with, each with the kind it is counted under.
const OTHER_DATA: &[(&str, &str)] = &[
    ("TXT", "local data of type TXT"),
    ("MX", "local data of type MX"),
    ("SRV", "local data of type SRV"),
    ("PTR", "local data of type PTR"),
    ("NAPTR", "local data of type NAPTR"),
    ("CAA", "local data of type CAA"),
    ("HINFO", "local data of type HINFO"),
    ("DNAME", "local data of type DNAME"),
    ("SVCB", "local data of type SVCB"),
    ("HTTPS", "local data of type HTTPS"),
    ("SSHFP", "local data of type SSHFP"),
    ("TLSA", "local data of type TLSA"),
    ("LOC", "local data of type LOC"),
    ("SPF", "local data of type SPF"),
    ("URI", "local data of type URI"),
];

/// The classes a zone file may name (RFC 1035 §5.1); only IN records are policy.
const CLASSES: &[&str] = &["IN", "CS", "CH", "HS"];

const PASSTHRU_ON_IP: &str = "rpz-passthru on an IP trigger";

/// The state of reading a zone: where relative names point, the owner a blank owner field
/// repeats, a record still open across lines, and the policy read so far.
struct Reader {
    origins: Origins,
    /// The trigger of the last record that had an owner field; kept in one buffer so that
    /// records do not allocate.
    owner: String,
    /// Why the last stated owner cannot be used, when it cannot.
    owner_error: Option<String>,
    /// A record whose parentheses are still open; its text so far is in `buffer`.
    open: Option<OpenRecord>,
    buffer: String,
    policy: Policy,
}

impl Reader {
    fn new(origin: Option<String>) -> Self {
        Self {
            origins: Origins::new(origin),
            owner: String::new(),
            owner_error: Some("the record has no owner, and no record before it gave one".into()),
            open: None,
            buffer: String::new(),
            policy: Policy::default(),
        }
    }

    /// Reads one line: a whole record, or part of one in parentheses. `problem` says why the
    /// record this line belongs to cannot be used, if it cannot.
    fn line(
        &mut self,
        line: usize,
        text: &str,
        problem: Option<&str>,
        list: &mut ListBuilder<'_>,
    ) -> Result<(), Broken> {
        let content = strip_comment(text);
        let mut open = match self.open.take() {
            Some(open) => open,
            None if !content.bytes().any(|byte| byte == b'(' || byte == b')') => {
                return self.complete(line, content, problem, list);
            }
            None => OpenRecord::new(line),
        };

        open.add(content, problem, &mut self.buffer);
        if open.depth > 0 {
            self.open = Some(open);
            return Ok(());
        }

        let text = std::mem::take(&mut self.buffer);
        let result = self.complete(open.line, &text, open.problem.as_deref(), list);
        self.buffer = text;
        self.buffer.clear();
        result
    }

    /// Reads a line that is not UTF-8: harmless in a comment, a skipped record elsewhere, and
    /// fatal in `$ORIGIN`, since every relative owner after it would be misread.
    fn undecodable_line(
        &mut self,
        line: usize,
        raw: &[u8],
        list: &mut ListBuilder<'_>,
    ) -> Result<(), Broken> {
        let text = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw));
        if !strip_comment(&text).contains(char::REPLACEMENT_CHARACTER) {
            return self.line(line, &text, None, list);
        }
        if text
            .get(..7)
            .is_some_and(|start| start.eq_ignore_ascii_case("$ORIGIN"))
        {
            let reason = "$ORIGIN name is not valid UTF-8".to_owned();
            return Err(Broken { line, reason });
        }
        self.line(line, &text, Some("line is not valid UTF-8"), list)
    }

    /// Reads a record whose text is complete, or skips it when the text could not be read.
    fn complete(
        &mut self,
        line: usize,
        content: &str,
        problem: Option<&str>,
        list: &mut ListBuilder<'_>,
    ) -> Result<(), Broken> {
        if content.trim_ascii_start().is_empty() {
            return Ok(());
        }
        let Some(reason) = problem else {
            return self.record(line, content, list);
        };

        list.skip(line, reason.to_owned());
        // Records after it with a blank owner field would belong to the owner lost here.
        if !starts_blank(content) && !content.starts_with('$') {
            self.owner_error = Some(format!(
                "the record's owner is on line {line}, which was skipped"
            ));
        }
        Ok(())
    }

    /// Reads one record, or a `$` directive, from its text without comments or parentheses.
    fn record(
        &mut self,
        line: usize,
        content: &str,
        list: &mut ListBuilder<'_>,
    ) -> Result<(), Broken> {
        if let Some(directive) = content.strip_prefix('$') {
            return self.directive(line, directive, list);
        }
        let mut fields = content.split_ascii_whitespace();
        // A record that starts with white space repeats the last owner (RFC 1035 §5.1).
        if !starts_blank(content)
            && let Some(owner) = fields.next()
        {
            self.set_owner(owner);
        }

        let (ttl, rtype) = match columns(&mut fields) {
            Ok(columns) => columns,
            Err(reason) => {
                list.skip(line, reason);
                return Ok(());
            }
        };
        let Some(kind) = Kind::of(rtype) else {
            return Ok(());
        };
        if let Some(reason) = &self.owner_error {
            list.skip(line, reason.clone());
            return Ok(());
        }

        let owner = std::mem::take(&mut self.owner);
        let ttl = ttl.or(self.origins.ttl);
        self.policy_record(line, &owner, kind, fields, ttl, list);
        self.owner = owner;
        Ok(())
    }

    /// Makes `owner` the trigger of this record and of the blank-owner records after it.
    fn set_owner(&mut self, owner: &str) {
        match self.origins.trigger(owner) {
            Ok(trigger) => {
                self.owner.clear();
                self.owner.push_str(&trigger);
                self.owner_error = None;
            }
            Err(reason) => self.owner_error = Some(reason),
        }
    }

    /// Applies one record's action to its owner's trigger.
    fn policy_record(
        &mut self,
        line: usize,
        owner: &str,
        kind: Kind<'_>,
        rdata: SplitAsciiWhitespace<'_>,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) {
        let read = classify(owner).and_then(|trigger| {
            let action = action(&self.origins, owner, kind, rdata)?;
            Ok((trigger, action))
        });
        match read {
            Ok((trigger, action)) => self.policy.apply(line, trigger, action, ttl, list),
            Err(Refusal::Unsupported(kind)) => list.unsupported(kind),
            Err(Refusal::Invalid(reason)) => list.skip(line, reason),
        }
    }

    /// Reads `$ORIGIN`, `$TTL` and `$INCLUDE` (RFC 1035 §5.1, RFC 2308 §4).
    fn directive(
        &mut self,
        line: usize,
        directive: &str,
        list: &mut ListBuilder<'_>,
    ) -> Result<(), Broken> {
        let mut fields = directive.split_ascii_whitespace();
        let name = fields.next().unwrap_or_default();
        let argument = match (fields.next(), fields.next()) {
            (Some(argument), None) => Some(argument),
            _ => None,
        };

        if name.eq_ignore_ascii_case("ORIGIN") {
            let set = argument
                .ok_or_else(|| "$ORIGIN needs exactly one name".to_owned())
                .and_then(|origin| self.origins.set_origin(origin));
            return set.map_err(|reason| Broken { line, reason });
        }
        if name.eq_ignore_ascii_case("TTL") {
            match argument.and_then(parse_ttl) {
                Some(ttl) => self.origins.ttl = Some(ttl),
                None => list.skip(line, format!("invalid $TTL {directive:?}")),
            }
        } else if name.eq_ignore_ascii_case("INCLUDE") {
            list.unsupported("$INCLUDE");
        } else {
            list.skip(line, format!("unknown directive ${name}"));
        }
        Ok(())
    }

    fn finish(self, list: &mut ListBuilder<'_>) -> Result<(), Broken> {
        if let Some(open) = self.open {
            let reason = "'(' is never closed: the record runs to the end of the file".to_owned();
            return Err(Broken {
                line: open.line,
                reason,
            });
        }
        self.policy.finish(list);
        Ok(())
    }
}

/// Whether a record's text starts with white space, so it has no owner field
/// (RFC 1035 §5.1).
fn starts_blank(content: &str) -> bool {
    content.starts_with([' ', '\t'])
}

/// A record written over several lines in parentheses (RFC 1035 §5.1).
struct OpenRecord {
    /// The record's first line, which its line number is.
    line: usize,
    /// Parentheses opened and not yet closed.
    depth: usize,
    problem: Option<String>,
}

impl OpenRecord {
    fn new(line: usize) -> Self {
        Self {
            line,
            depth: 0,
            problem: None,
        }
    }

    /// Adds a line's content to the record's text in `buffer`.
    fn add(&mut self, content: &str, problem: Option<&str>, buffer: &mut String) {
        if !unwrap_parens(content, buffer, &mut self.depth) {
            self.problem
                .get_or_insert_with(|| "')' without a matching '('".to_owned());
        }
        if let Some(problem) = problem {
            self.problem.get_or_insert_with(|| problem.to_owned());
        }
    }
}

/// The part of a line before its comment: a `;` outside a quoted string starts one
/// (RFC 1035 §5.1).
fn strip_comment(text: &str) -> &str {
    let Some(semicolon) = text.find(';') else {
        return text;
    };
    // Only a quote or an escape before the `;` can make it part of the data.
    if !text[..semicolon].contains(['"', '\\']) {
        return &text[..semicolon];
    }
    let mut quoted = false;
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => return &text[..at],
            _ => {}
        }
    }
    text
}

/// Appends `content` to `buffer` with its parentheses (outside quotes) turned into spaces,
/// counting them in `depth`. Returns false when a `)` closes nothing.
fn unwrap_parens(content: &str, buffer: &mut String, depth: &mut usize) -> bool {
    let mut balanced = true;
    let mut quoted = false;
    let mut escaped = false;
    for ch in content.chars() {
        let kept = match ch {
            _ if escaped => {
                escaped = false;
                ch
            }
            '\\' => {
                escaped = true;
                ch
            }
            '"' => {
                quoted = !quoted;
                ch
            }
            '(' if !quoted => {
                *depth += 1;
                ' '
            }
            ')' if !quoted => {
                match depth.checked_sub(1) {
                    Some(less) => *depth = less,
                    None => balanced = false,
                }
                ' '
            }
            _ => ch,
        };
        buffer.push(kept);
    }
    buffer.push(' ');
    balanced
}

/// Reads the optional TTL and class, which come in either order before the type
/// (RFC 1035 §5.1); returns the TTL and the type.
fn columns<'f>(fields: &mut SplitAsciiWhitespace<'f>) -> Result<(Option<u32>, &'f str), String> {
    let mut ttl = None;
    let mut class = false;
    for field in fields.by_ref() {
        if !class && CLASSES.iter().any(|name| field.eq_ignore_ascii_case(name)) {
            if !field.eq_ignore_ascii_case("IN") {
                return Err(format!(
                    "class {field} is not IN; only IN records are policy"
                ));
            }
            class = true;
        } else if ttl.is_none() && field.starts_with(|ch: char| ch.is_ascii_digit()) {
            ttl = Some(parse_ttl(field).ok_or_else(|| format!("invalid TTL {field:?}"))?);
        } else {
            return Ok((ttl, field));
        }
    }
    Err("the record has no type".to_owned())
}

/// A TTL in seconds, plain or with BIND's units (`1h30m`, `2d`, `1w`).
fn parse_ttl(text: &str) -> Option<u32> {
    if let Some(seconds) = decimal(text) {
        return Some(seconds);
    }
    let mut total: u32 = 0;
    let mut number: Option<u32> = None;
    for byte in text.bytes() {
        if byte.is_ascii_digit() {
            let digit = u32::from(byte - b'0');
            number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            continue;
        }
        let unit = match byte.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3_600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    // Digits after the last unit have no unit of their own: `1h30` is refused, not guessed.
    number.is_none().then_some(total)
}

/// A number written in decimal digits only (`str::parse` also takes a leading `+`).
fn decimal(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// Where the zone's names are relative to.
struct Origins {
    /// The zone's apex, lower case without the trailing dot: owners are triggers relative to
    /// it. `None`: owners are the triggers as written (abuse.ch-style zones leave the origin to
    /// the resolver that loads them).
    zone: Option<String>,
    /// The origin that completes relative names (`$ORIGIN`); `None` is the root.
    current: Option<String>,
    /// Whether the file has set an origin; only its first `$ORIGIN` can name the zone.
    origin_seen: bool,
    /// The TTL of records that give none (`$TTL`, RFC 2308 §4).
    ttl: Option<u32>,
}

impl Origins {
    fn new(zone: Option<String>) -> Self {
        Self {
            current: zone.clone(),
            zone,
            origin_seen: false,
            ttl: None,
        }
    }

    /// Reads `$ORIGIN`: its name may itself be relative to the current origin.
    fn set_origin(&mut self, name: &str) -> Result<(), String> {
        let full = self.full_name(name);
        self.current = if full.is_empty() {
            None
        } else {
            let origin = normalize(&full).map_err(|why| format!("invalid $ORIGIN: {why}"))?;
            Some(origin.into_owned())
        };
        if !self.origin_seen && self.zone.is_none() {
            self.zone = self.current.clone();
        }
        self.origin_seen = true;
        Ok(())
    }

    /// A name as the zone file means it, without the trailing dot: `@` is the origin, a name
    /// ending in `.` is absolute, any other is relative to the origin (RFC 1035 §5.1).
    fn full_name<'n>(&self, name: &'n str) -> Cow<'n, str> {
        if name == "@" {
            return Cow::Owned(self.current.clone().unwrap_or_default());
        }
        if let Some(absolute) = name.strip_suffix('.') {
            return Cow::Borrowed(absolute);
        }
        match &self.current {
            Some(origin) => Cow::Owned(format!("{name}.{origin}")),
            None => Cow::Borrowed(name),
        }
    }

    /// The trigger an owner name stands for: the name relative to the zone origin, empty at
    /// the apex.
    fn trigger<'n>(&self, owner: &'n str) -> Result<Cow<'n, str>, String> {
        // The common case, a relative owner in a file that has not moved its origin, is the
        // trigger as it is written.
        let relative = owner != "@" && !owner.ends_with('.');
        if relative && self.current == self.zone {
            return Ok(Cow::Borrowed(owner));
        }
        match self.full_name(owner) {
            Cow::Borrowed(full) => self.strip_zone(full).map(Cow::Borrowed),
            Cow::Owned(full) => self
                .strip_zone(&full)
                .map(|trigger| trigger.to_owned().into()),
        }
    }

    /// A full name relative to the zone origin, or why it is not in the zone.
    fn strip_zone<'n>(&self, full: &'n str) -> Result<&'n str, String> {
        let Some(zone) = &self.zone else {
            return Ok(full);
        };
        if full.eq_ignore_ascii_case(zone) {
            return Ok("");
        }
        let cut = full.len().checked_sub(zone.len() + 1);
        let parts = cut.and_then(|cut| Some((full.get(..cut)?, full.get(cut..)?)));
        match parts {
            Some((trigger, rest))
                if rest.starts_with('.') && rest[1..].eq_ignore_ascii_case(zone) =>
            {
                Ok(trigger)
            }
            _ => Err(format!(
                "owner {full:?} is outside the zone origin {zone:?}"
            )),
        }
    }
}

/// A record type, as far as policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'t> {
    Cname,
    A,
    Aaaa,
    /// Local data sinkhole cannot answer with, named by the kind it is counted under.
    Other(&'static str),
    Unknown(&'t str),
}

impl<'t> Kind<'t> {
    /// The kind of a record type; `None` for the zone's own data, which is not policy.
    fn of(rtype: &'t str) -> Option<Self> {
        let is = |name: &str| rtype.eq_ignore_ascii_case(name);
        let kind = if is("CNAME") {
            Self::Cname
        } else if is("A") {
            Self::A
        } else if is("AAAA") {
            Self::Aaaa
        } else if ZONE_DATA.iter().any(|name| is(name)) {
            return None;
        } else if let Some((_, kind)) = OTHER_DATA.iter().find(|(name, _)| is(name)) {
            Self::Other(kind)
        } else if is_generic_type(rtype) {
            Self::Other("local data of another type")
        } else {
            Self::Unknown(rtype)
        };
        Some(kind)
    }
}

/// A type written in the generic form `TYPE123` (RFC 3597 §5).
fn is_generic_type(rtype: &str) -> bool {
    let prefix = rtype
        .get(..4)
        .is_some_and(|start| start.eq_ignore_ascii_case("TYPE"));
    prefix && decimal(&rtype[4..]).is_some()
}

/// Why a record adds nothing to the list.
enum Refusal {
    /// RPZ allows it, sinkhole does not enforce it: counted by kind.
    Unsupported(&'static str),
    /// It is not valid: skipped with its line and this reason.
    Invalid(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self::Invalid(reason)
    }
}

/// What an owner name triggers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger<'t> {
    /// A query name (QNAME trigger).
    Name(&'t str, Scope),
    /// An address in the answer (`rpz-ip`) or the client's address (`rpz-client-ip`).
    Ip(Side, IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Response,
    Client,
}

/// The trigger an owner name encodes, from its last label (draft-vixie-dnsop-dns-rpz,
/// policy triggers).
fn classify(owner: &str) -> Result<Trigger<'_>, Refusal> {
    let (rest, last) = owner.rsplit_once('.').unwrap_or(("", owner));
    let is = |label: &str| last.eq_ignore_ascii_case(label);
    if is("rpz-ip") {
        return Ok(Trigger::Ip(Side::Response, ip_trigger(rest)?));
    }
    if is("rpz-client-ip") {
        return Ok(Trigger::Ip(Side::Client, ip_trigger(rest)?));
    }
    if is("rpz-nsdname") {
        return Err(Refusal::Unsupported("rpz-nsdname trigger"));
    }
    if is("rpz-nsip") {
        return Err(Refusal::Unsupported("rpz-nsip trigger"));
    }
    name_trigger(owner)
}

/// A QNAME trigger. A wildcard owner matches the names below it, never the name itself
/// (RFC 4592), which RPZ zones list separately.
fn name_trigger(owner: &str) -> Result<Trigger<'_>, Refusal> {
    match owner {
        "" => Err(Refusal::Invalid(
            "a policy record at the zone apex; triggers are names below the origin".into(),
        )),
        "*" => Err(Refusal::Unsupported("wildcard trigger at the zone apex")),
        _ => Ok(match owner.strip_prefix("*.") {
            Some(name) => Trigger::Name(name, Scope::SubdomainsOnly),
            None => Trigger::Name(owner, Scope::NameOnly),
        }),
    }
}

/// The network of an `rpz-ip` or `rpz-client-ip` owner: a prefix length, then the address
/// with its parts in reverse order, `zz` standing for the `::` of an IPv6 address.
fn ip_trigger(labels: &str) -> Result<IpNet, String> {
    let invalid = |why: &str| format!("invalid IP trigger {labels:?}: {why}");
    let Some((prefix, reversed)) = labels.split_once('.') else {
        return Err(invalid(
            "expected a prefix length, then the address reversed",
        ));
    };
    let prefix = decimal(prefix)
        .and_then(|prefix| u8::try_from(prefix).ok())
        .ok_or_else(|| invalid("the prefix length is not a number"))?;

    // Four parts, none of them `zz`, are an IPv4 address; an IPv6 address of four groups
    // needs `zz` for the other four.
    let ipv4 = reversed.split('.').count() == 4
        && !reversed
            .split('.')
            .any(|part| part.eq_ignore_ascii_case("zz"));
    let (address, longest) = if ipv4 {
        (reversed_ipv4(reversed).map(IpAddr::V4), 32)
    } else {
        (reversed_ipv6(reversed).map(IpAddr::V6), 128)
    };
    let address = address.map_err(invalid)?;
    if prefix == 0 || prefix > longest {
        return Err(invalid(&format!(
            "the prefix length must be 1 to {longest}"
        )));
    }
    IpNet::new(address, prefix).map_err(|_| invalid("bad prefix length"))
}

/// An IPv4 address from its four octets in reverse order.
fn reversed_ipv4(reversed: &str) -> Result<Ipv4Addr, &'static str> {
    let mut octets = [0u8; 4];
    for (slot, part) in octets.iter_mut().rev().zip(reversed.split('.')) {
        *slot = decimal(part)
            .and_then(|octet| u8::try_from(octet).ok())
            .ok_or("an IPv4 octet is not 0 to 255")?;
    }
    Ok(Ipv4Addr::from(octets))
}

/// An IPv6 address from its groups in reverse order, `zz` in place of a run of zero groups.
fn reversed_ipv6(reversed: &str) -> Result<Ipv6Addr, &'static str> {
    let mut groups = [0u16; 8];
    let mut count = 0;
    let mut gap = None;
    for part in reversed.rsplit('.') {
        if part.eq_ignore_ascii_case("zz") {
            if gap.replace(count).is_some() {
                return Err("more than one zz");
            }
            continue;
        }
        let group = hex_group(part).ok_or("an IPv6 group is not 1 to 4 hex digits")?;
        *groups.get_mut(count).ok_or("more than 8 IPv6 groups")? = group;
        count += 1;
    }

    match gap {
        None if count == 8 => {}
        Some(at) if count < 8 => {
            // The groups after `zz` move to the end; the run between them is zeros.
            let after = count - at;
            groups.copy_within(at..count, 8 - after);
            groups[at..8 - after].fill(0);
        }
        _ => return Err("an IPv6 address needs 8 groups, or zz for the missing ones"),
    }
    Ok(Ipv6Addr::from(groups))
}

fn hex_group(part: &str) -> Option<u16> {
    let hex = (1..=4).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_hexdigit());
    hex.then(|| u16::from_str_radix(part, 16).ok()).flatten()
}

/// The actions that block outright; each has one rule per zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simple {
    Nxdomain,
    Nodata,
    Drop,
    TcpOnly,
}

impl Simple {
    fn entry_action(self) -> EntryAction {
        match self {
            Self::Nxdomain => EntryAction::Nxdomain,
            Self::Nodata => EntryAction::Nodata,
            Self::Drop => EntryAction::Drop,
            Self::TcpOnly => EntryAction::TcpOnly,
        }
    }
}

/// What one record tells its trigger to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Block(Simple),
    Passthru,
    Local(LocalRecord),
}

/// One record of local data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalRecord {
    /// Lower case without the trailing dot; may start with `*.`.
    Cname(String),
    Address(IpAddr),
}

/// The action a record encodes.
fn action(
    origins: &Origins,
    owner: &str,
    kind: Kind<'_>,
    mut rdata: SplitAsciiWhitespace<'_>,
) -> Result<Action, Refusal> {
    let (rtype, parse): (&str, fn(&str) -> Option<IpAddr>) = match kind {
        Kind::Other(kind) => return Err(Refusal::Unsupported(kind)),
        Kind::Unknown(rtype) => return Err(format!("unknown record type {rtype:?}").into()),
        Kind::Cname => ("CNAME", |_| None),
        Kind::A => ("A", |text| text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)),
        Kind::Aaaa => ("AAAA", |text| text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)),
    };
    let (Some(value), None) = (rdata.next(), rdata.next()) else {
        return Err(format!("a {rtype} record needs exactly one data field").into());
    };

    if kind == Kind::Cname {
        return cname_action(origins, owner, value);
    }
    match parse(value) {
        Some(address) => Ok(Action::Local(LocalRecord::Address(address))),
        None => Err(format!("invalid address {value:?} in a {rtype} record").into()),
    }
}

/// The action a CNAME encodes: one of RPZ's special targets, PASSTHRU in its legacy form, or
/// a local CNAME answer.
fn cname_action(origins: &Origins, owner: &str, target: &str) -> Result<Action, Refusal> {
    let full = origins.full_name(target);
    if let Some(action) = special_target(&full) {
        return Ok(action);
    }
    // Legacy PASSTHRU is a CNAME to the owner itself, written in full or as the part of it
    // below the origin, as BIND reads it.
    let to_owner = origins
        .strip_zone(&full)
        .is_ok_and(|trigger| trigger.eq_ignore_ascii_case(owner));
    if to_owner || full.eq_ignore_ascii_case(owner) {
        return Ok(Action::Passthru);
    }
    Ok(Action::Local(LocalRecord::Cname(local_target(&full)?)))
}

/// The actions RPZ writes as CNAMEs to reserved targets: the root, the wildcard `*.` and the
/// `rpz-` names at the root.
fn special_target(full: &str) -> Option<Action> {
    let is = |name: &str| full.eq_ignore_ascii_case(name);
    if full.is_empty() {
        Some(Action::Block(Simple::Nxdomain))
    } else if full == "*" {
        Some(Action::Block(Simple::Nodata))
    } else if is("rpz-passthru") {
        Some(Action::Passthru)
    } else if is("rpz-drop") {
        Some(Action::Block(Simple::Drop))
    } else if is("rpz-tcp-only") {
        Some(Action::Block(Simple::TcpOnly))
    } else {
        None
    }
}

/// A local CNAME target as the resolver uses it. A target `*.name` keeps its `*`, which the
/// resolver replaces with the query name.
fn local_target(full: &str) -> Result<String, String> {
    let target = match full.strip_prefix("*.") {
        Some(rest) => normalize(rest).map(|rest| format!("*.{rest}")),
        None => normalize(full).map(Cow::into_owned),
    };
    target.map_err(|why| format!("invalid CNAME target: {why}"))
}

/// What the zone says, kept while it is read: one rule per blocking action, local data merged
/// per trigger until the end, and the first action of every IP trigger.
#[derive(Default)]
struct Policy {
    /// The rule of each [`Simple`] action, made when first needed.
    rules: [Option<u32>; 4],
    /// Triggers with local data, in the order first seen.
    local: Vec<Local>,
    /// Name triggers with local data, by scope, to their place in `local`.
    local_names: [HashMap<String, usize>; 3],
    /// Every IP trigger's first action, so that a different one later is skipped.
    ips: HashMap<(Side, IpNet), Seen>,
}

/// Local data of one trigger, merged from its records.
struct Local {
    trigger: LocalTrigger,
    /// The first record's line.
    line: usize,
    data: LocalData,
}

enum LocalTrigger {
    Name(String, Scope),
    Ip(Side, IpNet),
}

/// The first action an IP trigger had, and where.
#[derive(Debug, Clone, Copy)]
struct Seen {
    line: usize,
    action: SeenAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeenAction {
    Block(Simple),
    Passthru,
    /// Index into [`Policy::local`].
    Local(usize),
}

impl Policy {
    fn apply(
        &mut self,
        line: usize,
        trigger: Trigger<'_>,
        action: Action,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) {
        match (trigger, action) {
            (Trigger::Name(name, scope), Action::Local(record)) => {
                self.local_name(line, name, scope, record, ttl, list);
            }
            (Trigger::Name(name, scope), Action::Block(simple)) => {
                self.name_action(line, name, scope, Some(simple), list);
            }
            (Trigger::Name(name, scope), Action::Passthru) => {
                self.name_action(line, name, scope, None, list);
            }
            (Trigger::Ip(side, network), action) => {
                self.ip(line, (side, network.trunc()), action, ttl, list);
            }
        }
    }

    /// The shared rule of a blocking action.
    fn rule(&mut self, simple: Simple, list: &mut ListBuilder<'_>) -> u32 {
        *self.rules[simple as usize].get_or_insert_with(|| {
            list.rule(Rule {
                action: Some(simple.entry_action()),
                indicator: None,
            })
        })
    }

    /// Adds a name trigger that blocks (`Some`) or is an exception (`None`, PASSTHRU), unless
    /// the name already has local data: a trigger's first action wins.
    fn name_action(
        &mut self,
        line: usize,
        name: &str,
        scope: Scope,
        block: Option<Simple>,
        list: &mut ListBuilder<'_>,
    ) {
        if let Some(first) = self.local_line(name, scope) {
            return list.skip(line, already(first));
        }
        match block {
            Some(simple) => {
                let rule = self.rule(simple, list);
                list.block_with(name, line, Attr { rule, scope });
            }
            None => list.allow(name, line, scope),
        }
    }

    /// The line of a name trigger's local data, if it has any.
    fn local_line(&self, name: &str, scope: Scope) -> Option<usize> {
        let names = &self.local_names[scope as usize];
        // Most zones have no local data; their names are not normalised twice.
        if names.is_empty() {
            return None;
        }
        let index = *names.get(normalize(name).ok()?.as_ref())?;
        self.local.get(index).map(|local| local.line)
    }

    /// Adds a record of local data to a name trigger's.
    fn local_name(
        &mut self,
        line: usize,
        name: &str,
        scope: Scope,
        record: LocalRecord,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) {
        let name = match normalize(name) {
            Ok(name) => name,
            Err(reason) => return list.skip(line, reason),
        };
        let names = &mut self.local_names[scope as usize];
        let known = names.get(name.as_ref()).copied();
        let index = known.unwrap_or_else(|| {
            let index = self.local.len();
            names.insert(name.clone().into_owned(), index);
            let trigger = LocalTrigger::Name(name.into_owned(), scope);
            self.local.push(Local::new(trigger, line));
            index
        });
        self.merge(index, line, record, ttl, list);
    }

    /// Adds an IP trigger's action: the first one for a network wins, later records of local
    /// data merge into it.
    fn ip(
        &mut self,
        line: usize,
        key: (Side, IpNet),
        action: Action,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) {
        let Some(seen) = self.ips.get(&key).copied() else {
            let seen = self.first_ip(line, key, action, ttl, list);
            self.ips.insert(key, seen);
            return;
        };
        match (seen.action, action) {
            (SeenAction::Local(index), Action::Local(record)) => {
                self.merge(index, line, record, ttl, list);
            }
            (SeenAction::Block(first), Action::Block(again)) if first == again => {}
            (SeenAction::Passthru, Action::Passthru) => list.unsupported(PASSTHRU_ON_IP),
            _ => list.skip(line, already(seen.line)),
        }
    }

    fn first_ip(
        &mut self,
        line: usize,
        (side, network): (Side, IpNet),
        action: Action,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) -> Seen {
        let action = match action {
            // Only QNAME triggers have exceptions; an IP exception is counted, not enforced.
            Action::Passthru => {
                list.unsupported(PASSTHRU_ON_IP);
                SeenAction::Passthru
            }
            Action::Block(simple) => {
                let rule = self.rule(simple, list);
                push_ip(list, side, network, rule);
                SeenAction::Block(simple)
            }
            Action::Local(record) => {
                let index = self.local.len();
                let trigger = LocalTrigger::Ip(side, network);
                self.local.push(Local::new(trigger, line));
                self.merge(index, line, record, ttl, list);
                SeenAction::Local(index)
            }
        };
        Seen { line, action }
    }

    fn merge(
        &mut self,
        index: usize,
        line: usize,
        record: LocalRecord,
        ttl: Option<u32>,
        list: &mut ListBuilder<'_>,
    ) {
        let merged = match self.local.get_mut(index) {
            Some(local) => local.add(record, ttl),
            None => Ok(()),
        };
        if let Err(reason) = merged {
            list.skip(line, reason);
        }
    }

    /// Adds the triggers with local data, each with one rule for all its records.
    fn finish(self, list: &mut ListBuilder<'_>) {
        for local in self.local {
            let rule = list.rule(Rule {
                action: Some(EntryAction::Local(Arc::new(local.data))),
                indicator: None,
            });
            match local.trigger {
                LocalTrigger::Name(name, scope) => {
                    list.block_with(&name, local.line, Attr { rule, scope });
                }
                LocalTrigger::Ip(side, network) => push_ip(list, side, network, rule),
            }
        }
    }
}

impl Local {
    fn new(trigger: LocalTrigger, line: usize) -> Self {
        Self {
            trigger,
            line,
            data: LocalData::default(),
        }
    }

    /// Adds one record. A CNAME cannot share its owner with any other record
    /// (RFC 1034 §3.6.2, RFC 2181 §10.1), so the kind seen first is kept.
    fn add(&mut self, record: LocalRecord, ttl: Option<u32>) -> Result<(), String> {
        let data = &mut self.data;
        let empty = data.cname.is_none() && data.addresses.is_empty();
        match record {
            LocalRecord::Cname(target) if empty => data.cname = Some(target),
            LocalRecord::Address(address) if data.cname.is_none() => data.add_address(address),
            _ => {
                return Err(format!(
                    "a CNAME cannot share its owner with other records; \
                     the local data from line {} is kept",
                    self.line
                ));
            }
        }
        // Records of one set should share a TTL; when they differ, the lowest is used
        // (RFC 2181 §5.2).
        data.ttl = match (data.ttl, ttl) {
            (Some(kept), Some(new)) => Some(kept.min(new)),
            (kept, new) => kept.or(new),
        };
        Ok(())
    }
}

fn push_ip(list: &mut ListBuilder<'_>, side: Side, network: IpNet, rule: u32) {
    match side {
        Side::Response => list.response_ip(network, rule),
        Side::Client => list.client_ip(network, rule),
    }
}

fn already(first: usize) -> String {
    format!("the trigger already has an action, from line {first}; the first one wins")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::lists::{Broken, EntryAction, Format, ListOptions, LocalData, ParsedList, Scope};

    fn options(origin: Option<&str>) -> ListOptions {
        ListOptions {
            format: Format::Rpz,
            origin: origin.map(str::to_owned),
            ..ListOptions::default()
        }
    }

    fn read(text: &str, origin: Option<&str>) -> Result<ParsedList, Broken> {
        crate::lists::parse(text.as_bytes(), &options(origin))
    }

    fn parse(text: &str) -> ParsedList {
        read(text, None).unwrap()
    }

    fn parse_in(origin: &str, text: &str) -> ParsedList {
        read(text, Some(origin)).unwrap()
    }

    /// Block entries as `check` shows them (`=name`, `*.name`), with their action's name.
    fn blocked(list: &ParsedList) -> Vec<(String, &'static str)> {
        list.block
            .iter()
            .map(|(name, attr)| (attr.scope.show(name), action(list, attr.rule).name()))
            .collect()
    }

    fn allowed(list: &ParsedList) -> Vec<String> {
        list.allow
            .iter()
            .map(|(name, attr)| attr.scope.show(name))
            .collect()
    }

    fn action(list: &ParsedList, rule: u32) -> &EntryAction {
        list.rules[rule as usize].action.as_ref().unwrap()
    }

    fn local(list: &ParsedList, rule: u32) -> &LocalData {
        match action(list, rule) {
            EntryAction::Local(data) => data,
            other => panic!("expected local data, got {other:?}"),
        }
    }

    fn rule_of(list: &ParsedList, shown: &str) -> u32 {
        let found = list
            .block
            .iter()
            .find(|(name, attr)| attr.scope.show(name) == shown);
        found.unwrap().1.rule
    }

    fn skipped(list: &ParsedList) -> Vec<usize> {
        list.skipped.lines.iter().map(|skip| skip.line).collect()
    }

    fn unsupported(list: &ParsedList, kind: &str) -> usize {
        let found = list.skipped.unsupported.iter().find(|(k, _)| *k == kind);
        found.map_or(0, |(_, count)| *count)
    }

    fn pairs(entries: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        entries
            .iter()
            .map(|(name, action)| (name.to_string(), *action))
            .collect()
    }

    #[test]
    fn reads_an_origin_less_zone_like_abuse_ch() {
        let text = "; feed header\n\
            $TTL 30\n\
            @ SOA rpz.feed.example. hostmaster.feed.example. (\n\
            \t2606061800 ; serial\n\
            \t300 1800 604800 30 )\n\
            \x20NS localhost.\n\
            ;\n\
            PosdTeu.shop CNAME . ; Remus botnet_cc\n\
            *.posdteu.shop CNAME .\n\
            onesevenapps.com CNAME *.\n\
            *.onesevenapps.com CNAME *.\n";
        let list = parse(text);
        let expected = [
            ("=posdteu.shop", "nxdomain"),
            ("*.posdteu.shop", "nxdomain"),
            ("=onesevenapps.com", "nodata"),
            ("*.onesevenapps.com", "nodata"),
        ];
        assert_eq!(blocked(&list), pairs(&expected));
        assert_eq!(list.skipped.invalid, 0, "{:?}", list.skipped.lines);
        assert!(list.skipped.unsupported.is_empty());
        assert_eq!(list.lines, 11);
    }

    #[test]
    fn blocking_actions_share_one_rule_each() {
        let text = "a.test CNAME .\nb.test CNAME .\nc.test CNAME *.\n\
            d.test CNAME rpz-drop.\ne.test CNAME RPZ-TCP-ONLY.\nf.test CNAME rpz-drop.\n";
        let list = parse(text);
        let expected = [
            ("=a.test", "nxdomain"),
            ("=b.test", "nxdomain"),
            ("=c.test", "nodata"),
            ("=d.test", "drop"),
            ("=e.test", "tcp-only"),
            ("=f.test", "drop"),
        ];
        assert_eq!(blocked(&list), pairs(&expected));
        assert_eq!(rule_of(&list, "=a.test"), rule_of(&list, "=b.test"));
        assert_eq!(rule_of(&list, "=d.test"), rule_of(&list, "=f.test"));
        assert_eq!(list.rules.len(), 5);
    }

    #[test]
    fn a_large_zone_makes_a_handful_of_rules() {
        let mut text = String::from("$TTL 60\n@ SOA a. b. 1 2 3 4 5\n");
        for index in 0..100_000 {
            text.push_str(&format!("n{index}.test CNAME .\n*.n{index}.test CNAME .\n"));
        }
        let list = parse(&text);
        assert_eq!(list.block.len(), 200_000);
        assert!(list.rules.len() <= 5, "{} rules", list.rules.len());
        assert_eq!(list.skipped.invalid, 0);
    }

    #[test]
    fn passthru_in_either_form_is_an_exception() {
        let text = "good.test CNAME rpz-passthru.\n\
            *.good.test CNAME rpz-passthru.\n\
            old.test CNAME old.test.\n\
            bad.test CNAME .\n";
        let list = parse(text);
        assert_eq!(allowed(&list), ["=good.test", "*.good.test", "=old.test"]);
        assert_eq!(blocked(&list), pairs(&[("=bad.test", "nxdomain")]));

        let text = "a.test CNAME a.test.rpz.example.\nb.test CNAME b.test.\nc.test CNAME c.test\n";
        let list = parse_in("rpz.example", text);
        assert_eq!(allowed(&list), ["=a.test", "=b.test", "=c.test"]);
        assert!(list.block.is_empty());
    }

    #[test]
    fn addresses_of_one_trigger_merge_into_one_rule() {
        let text = "$TTL 300\n\
            sink.test A 192.0.2.53\n\
            sink.test 60 AAAA 2001:db8::53\n\
            \x20 A 192.0.2.54\n\
            SINK.test A 192.0.2.53\n\
            *.sink.test A 192.0.2.53\n";
        let list = parse(text);
        assert_eq!(
            blocked(&list),
            pairs(&[("=sink.test", "local-data"), ("*.sink.test", "local-data")])
        );
        let data = local(&list, rule_of(&list, "=sink.test"));
        let all: Vec<IpAddr> = ["192.0.2.53", "192.0.2.54", "2001:db8::53"]
            .iter()
            .map(|address| address.parse().unwrap())
            .collect();
        assert_eq!(data.addresses, all);
        assert_eq!(data.ttl, Some(60));
        assert_eq!(local(&list, rule_of(&list, "*.sink.test")).ttl, Some(300));
        assert_eq!(list.rules.len(), 3);
        assert_eq!(list.skipped.invalid, 0, "{:?}", list.skipped.lines);
    }

    #[test]
    fn local_cnames_are_absolute_and_may_be_wildcards() {
        let text = "$ORIGIN rpz.example.\n\
            a.test CNAME Walled.Garden.example.\n\
            *.a.test CNAME *.sinkhole.example.\n\
            b.test CNAME garden\n\
            c.test CNAME bad..name.\n";
        let list = parse(text);
        let cname = |shown| local(&list, rule_of(&list, shown)).cname.clone().unwrap();
        assert_eq!(cname("=a.test"), "walled.garden.example");
        assert_eq!(cname("*.a.test"), "*.sinkhole.example");
        assert_eq!(cname("=b.test"), "garden.rpz.example");
        assert_eq!(skipped(&list), [5]);
        assert!(list.skipped.lines[0].reason.contains("CNAME target"));
    }

    #[test]
    fn a_trigger_keeps_its_first_action() {
        let text = "a.test A 192.0.2.1\n\
            a.test CNAME other.example.\n\
            a.test CNAME .\n\
            b.test CNAME other.example.\n\
            b.test A 192.0.2.1\n\
            c.test CNAME .\n\
            c.test A 192.0.2.1\n";
        let list = parse(text);
        assert_eq!(skipped(&list), [2, 3, 5]);
        assert!(list.skipped.lines[0].reason.contains("line 1"));
        let a = local(&list, rule_of(&list, "=a.test"));
        assert!(a.cname.is_none() && a.ipv4().len() == 1);
        assert_eq!(
            local(&list, rule_of(&list, "=b.test")).cname.as_deref(),
            Some("other.example")
        );
        // The blocking action comes first in the list, so the index keeps it for c.test.
        let first_c = list
            .block
            .iter()
            .find(|(name, _)| *name == "c.test")
            .unwrap();
        assert_eq!(action(&list, first_c.1.rule), &EntryAction::Nxdomain);
    }

    #[test]
    fn ip_triggers_decode_ipv4_and_ipv6() {
        let text = "32.53.2.0.192.rpz-ip CNAME .\n\
            128.1.zz.db8.2001.rpz-ip CNAME *.\n\
            48.zz.1.db8.2001.RPZ-IP CNAME rpz-drop.\n\
            24.0.2.0.192.rpz-client-ip CNAME rpz-drop.\n\
            128.53.zz.rpz-client-ip CNAME rpz-tcp-only.\n\
            32.1.2.0.192.rpz-ip A 198.51.100.1\n\
            32.1.2.0.192.rpz-ip A 198.51.100.2\n\
            32.53.2.0.192.rpz-ip CNAME .\n\
            32.53.2.0.192.rpz-ip CNAME *.\n";
        let list = parse(text);
        let networks = |triggers: &[crate::lists::IpTrigger]| -> Vec<String> {
            triggers.iter().map(|t| t.network.to_string()).collect()
        };
        assert_eq!(
            networks(&list.response_ips),
            [
                "192.0.2.53/32",
                "2001:db8::1/128",
                "2001:db8:1::/48",
                "192.0.2.1/32"
            ]
        );
        assert_eq!(networks(&list.client_ips), ["192.0.2.0/24", "::53/128"]);
        let kinds: Vec<_> = list
            .response_ips
            .iter()
            .map(|t| action(&list, t.rule).name())
            .collect();
        assert_eq!(kinds, ["nxdomain", "nodata", "drop", "local-data"]);
        assert_eq!(local(&list, list.response_ips[3].rule).ipv4().len(), 2);
        assert_eq!(skipped(&list), [9]);
    }

    #[test]
    fn malformed_ip_triggers_are_skipped() {
        let text = "33.53.2.0.192.rpz-ip CNAME .\n\
            32.53.2.0.192.1.rpz-ip CNAME .\n\
            0.53.2.0.192.rpz-ip CNAME .\n\
            128.1.zz.zz.2001.rpz-ip CNAME .\n\
            128.1.g.db8.2001.rpz-ip CNAME .\n\
            128.1.2.3.4.5.6.7.db8.2001.rpz-ip CNAME .\n\
            32.256.2.0.192.rpz-client-ip CNAME .\n\
            rpz-ip CNAME .\n\
            x.53.2.0.192.rpz-ip CNAME .\n\
            24.0.2.0.192.rpz-ip CNAME .\n";
        let list = parse(text);
        assert_eq!(skipped(&list), (1..=9).collect::<Vec<_>>());
        assert!(list.skipped.lines[0].reason.contains("1 to 32"));
        assert!(list.skipped.lines[3].reason.contains("zz"));
        assert_eq!(list.response_ips.len(), 1);
    }

    #[test]
    fn unenforced_kinds_are_counted_as_unsupported() {
        let text = "ns1.evil.example.rpz-nsdname CNAME .\n\
            128.1.zz.db8.2001.rpz-nsip CNAME .\n\
            info.test TXT \"remus ; (botnet\"\n\
            mail.test MX 10 mx.example.\n\
            odd.test TYPE65280 \\# 0\n\
            32.53.2.0.192.rpz-ip CNAME rpz-passthru.\n\
            * CNAME .\n\
            $INCLUDE other.zone\n\
            after.test CNAME .\n";
        let list = parse(text);
        assert_eq!(unsupported(&list, "rpz-nsdname trigger"), 1);
        assert_eq!(unsupported(&list, "rpz-nsip trigger"), 1);
        assert_eq!(unsupported(&list, "local data of type TXT"), 1);
        assert_eq!(unsupported(&list, "local data of type MX"), 1);
        assert_eq!(unsupported(&list, "local data of another type"), 1);
        assert_eq!(unsupported(&list, "rpz-passthru on an IP trigger"), 1);
        assert_eq!(unsupported(&list, "wildcard trigger at the zone apex"), 1);
        assert_eq!(unsupported(&list, "$INCLUDE"), 1);
        assert_eq!(list.skipped.invalid, 0, "{:?}", list.skipped.lines);
        assert_eq!(blocked(&list), pairs(&[("=after.test", "nxdomain")]));
        assert!(list.response_ips.is_empty());
    }

    #[test]
    fn a_configured_origin_is_removed_from_owners() {
        let text = "$TTL 1h\n\
            @ IN SOA ns.rpz.example. admin.rpz.example. 1 3600 600 86400 60\n\
            @ NS ns.rpz.example.\n\
            x.test.rpz.example. CNAME .\n\
            *.X.Test.RPZ.Example. CNAME .\n\
            y.test CNAME *.\n\
            evil.other.example. CNAME .\n\
            32.53.2.0.192.rpz-ip.rpz.example. CNAME .\n\
            $ORIGIN sub.rpz.example.\n\
            w CNAME rpz-drop.\n\
            @ CNAME rpz-drop.\n";
        let list = parse_in("rpz.example", text);
        let expected = [
            ("=x.test", "nxdomain"),
            ("*.x.test", "nxdomain"),
            ("=y.test", "nodata"),
            ("=w.sub", "drop"),
            ("=sub", "drop"),
        ];
        assert_eq!(blocked(&list), pairs(&expected));
        assert_eq!(list.response_ips.len(), 1);
        assert_eq!(skipped(&list), [7]);
        assert!(list.skipped.lines[0].reason.contains("\"rpz.example\""));
    }

    #[test]
    fn the_first_origin_in_the_file_is_the_zone() {
        let text = "a.test CNAME .\n\
            $ORIGIN RPZ.Example.\n\
            @ SOA ns hostmaster 1 2 3 4 5\n\
            b.test CNAME .\n\
            c.test.rpz.example. CNAME .\n\
            $ORIGIN more\n\
            d CNAME .\n\
            x.elsewhere. CNAME .\n\
            @ CNAME .\n";
        let list = parse(text);
        let expected = [
            ("=a.test", "nxdomain"),
            ("=b.test", "nxdomain"),
            ("=c.test", "nxdomain"),
            ("=d.more", "nxdomain"),
            ("=more", "nxdomain"),
        ];
        assert_eq!(blocked(&list), pairs(&expected));
        assert_eq!(skipped(&list), [8]);
    }

    #[test]
    fn ttl_and_class_come_in_either_order() {
        let text = "a.test 300 IN A 192.0.2.1\n\
            b.test IN 300 A 192.0.2.1\n\
            c.test in a 192.0.2.1\n\
            d.test 1h A 192.0.2.1\n\
            e.test 1H30m IN A 192.0.2.1\n\
            f.test CH A 192.0.2.1\n\
            g.test 5x A 192.0.2.1\n\
            h.test 1h30 A 192.0.2.1\n";
        let list = parse(text);
        let ttl = |shown| local(&list, rule_of(&list, shown)).ttl;
        assert_eq!(ttl("=a.test"), Some(300));
        assert_eq!(ttl("=b.test"), Some(300));
        assert_eq!(ttl("=c.test"), None);
        assert_eq!(ttl("=d.test"), Some(3_600));
        assert_eq!(ttl("=e.test"), Some(5_400));
        assert_eq!(skipped(&list), [6, 7, 8]);
        assert!(list.skipped.lines[0].reason.contains("class CH"));
        assert!(list.skipped.lines[1].reason.contains("TTL"));
    }

    #[test]
    fn bad_records_are_skipped_with_their_line() {
        let text = "\u{feff}; zone\r\n\
            \x20A 192.0.2.1\r\n\
            good.test CNAME .\r\n\
            bad..name CNAME .\r\n\
            nodata.test CNAME\r\n\
            two.test CNAME a. b.\r\n\
            typo.test CNAMEE .\r\n\
            addr.test A 2001:db8::1\r\n\
            $TTL soon\r\n\
            $GENERATE 1-10 x$ CNAME .\r\n\
            close.test CNAME . )\r\n\
            onlyname.test\r\n\
            also.good CNAME .\r\n";
        let list = parse(text);
        assert_eq!(
            blocked(&list),
            pairs(&[("=good.test", "nxdomain"), ("=also.good", "nxdomain")])
        );
        assert_eq!(
            skipped(&list),
            (2..=12).filter(|&line| line != 3).collect::<Vec<_>>()
        );
        let reasons: Vec<&str> = list
            .skipped
            .lines
            .iter()
            .map(|skip| skip.reason.as_str())
            .collect();
        assert!(reasons[0].contains("no owner"));
        assert!(reasons[2].contains("exactly one data field"));
        assert!(reasons[4].contains("unknown record type"));
        assert!(reasons[5].contains("invalid address"));
        assert!(reasons[7].contains("$GENERATE"));
        assert!(reasons[8].contains("')'"));
        assert_eq!(list.lines, 13);
    }

    #[test]
    fn parentheses_join_lines_and_must_close() {
        let text = "@ SOA ns. admin. (\n 1 ; serial\n 2 3 4 5 )\nmulti.test (\n CNAME . )\n";
        let list = parse(text);
        assert_eq!(blocked(&list), pairs(&[("=multi.test", "nxdomain")]));

        let broken = read("ok.test CNAME .\n@ SOA ns. admin. (\n 1 2 3 4 5\n", None);
        assert_eq!(broken.unwrap_err().line, 2);
    }

    #[test]
    fn an_unusable_origin_refuses_the_zone() {
        let text = b"a.test CNAME .\n$ORIGIN caf\xe9.example.\nb.test CNAME .\n";
        let broken = crate::lists::parse(text, &options(None)).unwrap_err();
        assert_eq!(broken.line, 2);
        assert!(broken.reason.contains("UTF-8"));

        let broken = read("$ORIGIN bad..name.\n", None).unwrap_err();
        assert_eq!(broken.line, 1);
        assert!(read("$ORIGIN\n", None).is_err());
    }

    #[test]
    fn lines_that_are_not_utf8_are_skipped_with_their_owner() {
        let lines: [&[u8]; 5] = [
            b"; caf\xe9 comment\n",
            b"ok.test CNAME . ; caf\xe9\n",
            b"bad\xff.test CNAME .\n",
            b" A 192.0.2.1\n",
            b"next.test CNAME .\n",
        ];
        let list = crate::lists::parse(&lines.concat(), &options(None)).unwrap();
        let expected = [("=ok.test", "nxdomain"), ("=next.test", "nxdomain")];
        assert_eq!(blocked(&list), pairs(&expected));
        assert_eq!(skipped(&list), [3, 4]);
        assert!(list.skipped.lines[0].reason.contains("UTF-8"));
        assert!(list.skipped.lines[1].reason.contains("line 3"));
    }

    #[test]
    fn rules_point_at_the_right_scope() {
        let list = parse("x.test CNAME .\n*.x.test A 192.0.2.1\n");
        let scopes: Vec<Scope> = list.block.iter().map(|(_, attr)| attr.scope).collect();
        assert_eq!(scopes, [Scope::NameOnly, Scope::SubdomainsOnly]);
    }
}
