//! Reads AdBlock-style lists, the DNS subset that AdGuard Home reads: `||name^` (the name and
//! its subdomains), `|name^` (the name only), bare hostnames, `@@` exceptions, and the
//! `$important` and `$dnsrewrite` modifiers.
//!
//! Cosmetic rules, URL and wildcard patterns, regular expressions and every other modifier
//! are counted as unsupported and skipped. A rule's pattern must be a plain name: `||name`
//! without the closing `^` is read as `||name^`, narrower than AdBlock's prefix match.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::domain::normalize;
use super::rule::{EntryAction, LIST_RULE, LocalData, Rule, Scope};
use super::{Attr, ListBuilder, numbered_lines};

/// Markers of cosmetic (element hiding, CSS, scriptlet) rules, which act on pages, not names.
const COSMETIC: [&str; 8] = ["##", "#@#", "#?#", "#@?#", "#$#", "#@$#", "#%#", "#@%#"];

/// Reads the text of an AdBlock list into `list`. Bad lines are skipped and reported; good
/// lines all apply.
pub fn parse(bytes: &[u8], list: &mut ListBuilder<'_>) {
    // Rules with modifiers are read first: the index keeps the first entry of a name, and in
    // AdGuard Home a `$dnsrewrite` answer outranks a plain block of the same name, as an
    // `$important` rule outranks one without.
    if bytes.contains(&b'$') {
        read_modifier_rules(bytes, list);
    }

    let mut lines = 0;
    for (line, text) in numbered_lines(bytes) {
        lines = line;
        match text.map(str::trim) {
            Ok(text) if text.contains('$') => {}
            Ok(text) => {
                // Without a `$` there is no rewrite to merge.
                read_rule(text, line, list);
            }
            Err(line) => list.skip(line, "line is not valid UTF-8".to_owned()),
        }
    }
    list.set_lines(lines);
}

/// Reads the lines that hold a `$`, merging their rewrites.
fn read_modifier_rules(bytes: &[u8], list: &mut ListBuilder<'_>) {
    let mut rewrites = Rewrites::default();
    for (line, text) in lines_holding(bytes, b'$') {
        let Ok(text) = std::str::from_utf8(text) else {
            // Reported by the main pass, which reads every line.
            continue;
        };
        if let Some((name, scope, rewrite)) = read_rule(text.trim(), line, list) {
            rewrites.add(name, scope, rewrite, line, list);
        }
    }
    rewrites.finish(list);
}

/// The lines that hold `byte`, numbered as [`numbered_lines`] numbers them. Only those lines
/// are cut out, so a list with few of them is scanned at the speed of a byte search.
fn lines_holding(bytes: &[u8], byte: u8) -> impl Iterator<Item = (usize, &[u8])> {
    let newlines = |text: &[u8]| text.iter().filter(|&&b| b == b'\n').count();
    let mut line = 1;
    let mut counted = 0;
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + bytes[from..].iter().position(|&b| b == byte)?;
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |n| at + n);
        line += newlines(&bytes[counted..start]);
        counted = start;
        from = end;
        Some((line, &bytes[start..end]))
    })
}

/// Reads one line. A `$dnsrewrite` rule comes back to the caller, which merges rewrites of
/// one name; every other rule is added or counted here.
fn read_rule<'t>(
    text: &'t str,
    line: usize,
    list: &mut ListBuilder<'_>,
) -> Option<(&'t str, Scope, Rewrite)> {
    if is_comment(text) {
        return None;
    }
    if text.contains('#') && COSMETIC.iter().any(|marker| text.contains(marker)) {
        list.unsupported("cosmetic rule");
        return None;
    }

    let (exception, rule) = match text.strip_prefix("@@") {
        Some(rule) => (true, rule),
        None => (false, text),
    };
    let (pattern, modifiers) = rule.split_once('$').unwrap_or((rule, ""));
    let Some((scope, name)) = hostname(pattern) else {
        list.unsupported("URL or pattern rule");
        return None;
    };
    match (exception, read_modifiers(modifiers)) {
        (true, Modifiers::None) => list.allow(name, line, scope),
        (false, Modifiers::None) => list.block_with(name, line, plain(scope)),
        (false, Modifiers::Rewrite(rewrite)) => return Some((name, scope, rewrite)),
        (true, Modifiers::Rewrite(_)) | (_, Modifiers::Unsupported) => {
            list.unsupported("rule with modifier");
        }
    }
    None
}

/// `!` comments, `#` comments (AdGuard Home takes them too) and `[Adblock Plus 2.0]` headers.
fn is_comment(text: &str) -> bool {
    text.is_empty()
        || text.starts_with(['!', '#'])
        || (text.starts_with('[') && text.ends_with(']'))
}

fn plain(scope: Scope) -> Attr {
    Attr {
        rule: LIST_RULE,
        scope,
    }
}

/// The reach and name of a rule's pattern, or `None` when the pattern is a URL, a wildcard
/// or a regular expression rather than a name.
fn hostname(pattern: &str) -> Option<(Scope, &str)> {
    let (scope, rest) = if let Some(rest) = pattern.strip_prefix("||") {
        (Scope::NameAndSubdomains, rest)
    } else if let Some(rest) = pattern.strip_prefix('|') {
        (Scope::NameOnly, rest)
    } else {
        // A bare hostname rule, which AdGuard Home reads as `||name^`.
        (Scope::NameAndSubdomains, pattern)
    };
    let rest = rest.strip_suffix('|').unwrap_or(rest);
    let name = rest.strip_suffix('^').unwrap_or(rest);
    let pattern_byte = |byte: u8| matches!(byte, b'/' | b'*' | b'^' | b'|' | b':' | b'?' | b'=');
    (!name.bytes().any(pattern_byte)).then_some((scope, name))
}

/// What a rule's modifiers ask for.
enum Modifiers {
    /// None, or only `$important`, which sinkhole has no lower priority to raise above.
    None,
    Rewrite(Rewrite),
    /// A modifier sinkhole does not enforce: the rule is left out rather than widened.
    Unsupported,
}

fn read_modifiers(text: &str) -> Modifiers {
    let mut read = Modifiers::None;
    for modifier in text.split(',').map(str::trim) {
        if modifier.is_empty() || modifier == "important" {
            continue;
        }
        let rewrite = modifier.strip_prefix("dnsrewrite=").and_then(dnsrewrite);
        match (rewrite, &read) {
            (Some(rewrite), Modifiers::None) => read = Modifiers::Rewrite(rewrite),
            _ => return Modifiers::Unsupported,
        }
    }
    read
}

/// A `$dnsrewrite` answer sinkhole can give.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rewrite {
    Nxdomain,
    Address(IpAddr),
    /// A normalised CNAME target.
    Cname(String),
}

/// `$dnsrewrite=RCODE;RRTYPE;VALUE` or its short form (an address, a name or an RCODE).
/// `None` for answers other than NXDOMAIN and NOERROR with an A, AAAA or CNAME record.
fn dnsrewrite(value: &str) -> Option<Rewrite> {
    let mut parts = value.splitn(3, ';');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(short), None, None) => short_rewrite(short.trim()),
        (Some(rcode), Some(rrtype), Some(value)) => full_rewrite(rcode, rrtype, value.trim()),
        _ => None,
    }
}

fn short_rewrite(value: &str) -> Option<Rewrite> {
    if value.eq_ignore_ascii_case("NXDOMAIN") {
        return Some(Rewrite::Nxdomain);
    }
    // Other keywords are RCODEs (REFUSED, SERVFAIL) that sinkhole does not answer with.
    if value.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return None;
    }
    match value.parse() {
        Ok(address) => Some(Rewrite::Address(address)),
        Err(_) => cname(value),
    }
}

fn full_rewrite(rcode: &str, rrtype: &str, value: &str) -> Option<Rewrite> {
    let is = |text: &str, keyword: &str| text.trim().eq_ignore_ascii_case(keyword);
    if is(rcode, "NXDOMAIN") {
        return (rrtype.trim().is_empty() && value.is_empty()).then_some(Rewrite::Nxdomain);
    }
    if !is(rcode, "NOERROR") {
        return None;
    }
    match rrtype.trim().to_ascii_uppercase().as_str() {
        "A" => value
            .parse()
            .ok()
            .map(|v4| Rewrite::Address(IpAddr::V4(v4))),
        "AAAA" => value
            .parse()
            .ok()
            .map(|v6| Rewrite::Address(IpAddr::V6(v6))),
        "CNAME" => cname(value),
        _ => None,
    }
}

fn cname(target: &str) -> Option<Rewrite> {
    let target = normalize(target).ok()?;
    Some(Rewrite::Cname(target.into_owned()))
}

/// `$dnsrewrite` answers by name and reach, in the order first seen. Rewrites of one name
/// are merged, as AdGuard Home answers them together: an A and an AAAA rewrite make one
/// answer with both. Where they conflict (NXDOMAIN against records) the first one stands.
#[derive(Default)]
struct Rewrites {
    answers: Vec<(String, Scope, usize, EntryAction)>,
    index: HashMap<(String, Scope), usize>,
}

impl Rewrites {
    fn add(
        &mut self,
        name: &str,
        scope: Scope,
        rewrite: Rewrite,
        line: usize,
        list: &mut ListBuilder<'_>,
    ) {
        let name = match normalize(name) {
            Ok(name) => name.into_owned(),
            Err(reason) => {
                list.skip(line, reason);
                return;
            }
        };
        match self.index.get(&(name.clone(), scope)) {
            Some(&at) => merge(&mut self.answers[at].3, rewrite),
            None => {
                self.index.insert((name.clone(), scope), self.answers.len());
                self.answers.push((name, scope, line, action(rewrite)));
            }
        }
    }

    /// Adds each name with a rule that gives its answer.
    fn finish(self, list: &mut ListBuilder<'_>) {
        for (name, scope, line, action) in self.answers {
            let rule = list.rule(Rule {
                action: Some(action),
                indicator: None,
            });
            list.block_with(&name, line, Attr { rule, scope });
        }
    }
}

fn action(rewrite: Rewrite) -> EntryAction {
    let mut data = LocalData::default();
    match rewrite {
        Rewrite::Nxdomain => return EntryAction::Nxdomain,
        Rewrite::Address(address) => data.add_address(address),
        Rewrite::Cname(target) => data.cname = Some(target),
    }
    EntryAction::Local(Arc::new(data))
}

fn merge(action: &mut EntryAction, rewrite: Rewrite) {
    let EntryAction::Local(data) = action else {
        return;
    };
    let data = Arc::make_mut(data);
    match rewrite {
        Rewrite::Address(address) => data.add_address(address),
        Rewrite::Cname(target) if data.cname.is_none() => data.cname = Some(target),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::lists::{EntryAction, Format, ListOptions, LocalData, ParsedList, Scope};

    fn parse(text: &str) -> ParsedList {
        let options = ListOptions {
            format: Format::Adblock,
            ..ListOptions::default()
        };
        crate::lists::parse(text.as_bytes(), &options).unwrap()
    }

    fn blocked(list: &ParsedList) -> Vec<(&str, Scope)> {
        list.block
            .iter()
            .map(|(name, attr)| (name, attr.scope))
            .collect()
    }

    fn unsupported(list: &ParsedList, kind: &str) -> usize {
        let found = list.skipped.unsupported.iter().find(|(k, _)| *k == kind);
        found.map_or(0, |(_, count)| *count)
    }

    /// The action of the blocked name at `index`.
    fn action(list: &ParsedList, index: usize) -> Option<&EntryAction> {
        list.rules[list.block.attr(index).rule as usize]
            .action
            .as_ref()
    }

    fn local(list: &ParsedList, index: usize) -> &LocalData {
        match action(list, index) {
            Some(EntryAction::Local(data)) => data,
            other => panic!("no local data: {other:?}"),
        }
    }

    #[test]
    fn reads_each_rule_form() {
        let text = "||PosdTeu.shop^\n|exact.test^\nbare.test\nanchored.test^\n||piped.test^|\n\
                    ||open.test\n||kept.test^$important\n";
        let list = parse(text);
        let both = Scope::NameAndSubdomains;
        // Rules with modifiers are read first.
        assert_eq!(
            blocked(&list),
            [
                ("kept.test", both),
                ("posdteu.shop", both),
                ("exact.test", Scope::NameOnly),
                ("bare.test", both),
                ("anchored.test", both),
                ("piped.test", both),
                ("open.test", both),
            ]
        );
        assert!(list.block.iter().all(|(_, attr)| attr.rule == 0));
        assert_eq!(list.skipped.invalid, 0);
        assert_eq!(list.skipped.unsupported_total(), 0);
    }

    #[test]
    fn exceptions_are_allowed_names() {
        let list = parse("||a.test^\n@@||safe.a.test^\n@@|only.a.test^\n@@||b.test^$important\n");
        let allowed: Vec<_> = list.allow.iter().map(|(n, a)| (n, a.scope)).collect();
        assert_eq!(
            allowed,
            [
                ("b.test", Scope::NameAndSubdomains),
                ("safe.a.test", Scope::NameAndSubdomains),
                ("only.a.test", Scope::NameOnly),
            ]
        );
        assert_eq!(blocked(&list), [("a.test", Scope::NameAndSubdomains)]);
    }

    #[test]
    fn dnsrewrite_rules_answer_with_local_data() {
        let text = "||sink.test^\n\
                    ||sink.test^$dnsrewrite=NOERROR;A;192.0.2.53\n\
                    ||sink.test^$dnsrewrite=NOERROR;AAAA;2001:db8::53\n\
                    |short.test^$dnsrewrite=192.0.2.54,important\n\
                    ||gone.test^$dnsrewrite=NXDOMAIN;;\n\
                    ||alias.test^$dnsrewrite=noerror;cname;Sink.Example.\n";
        let list = parse(text);
        let both = Scope::NameAndSubdomains;
        // Rewrites come first, so they outrank the plain block of sink.test.
        assert_eq!(
            blocked(&list),
            [
                ("sink.test", both),
                ("short.test", Scope::NameOnly),
                ("gone.test", both),
                ("alias.test", both),
                ("sink.test", both),
            ]
        );
        let sink = local(&list, 0);
        let sinkhole: [IpAddr; 2] = [
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        assert_eq!(sink.addresses, sinkhole);
        assert_eq!(
            local(&list, 1).addresses,
            ["192.0.2.54".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(action(&list, 2), Some(&EntryAction::Nxdomain));
        assert_eq!(local(&list, 3).cname.as_deref(), Some("sink.example"));
        assert_eq!(action(&list, 4), None);
        assert_eq!(list.skipped.unsupported_total(), 0);
    }

    #[test]
    fn finds_the_lines_that_hold_a_byte() {
        let lines: Vec<_> = super::lines_holding(b"$a\r\nb\nc$d$\n\n$", b'$').collect();
        let expected: [(usize, &[u8]); 3] = [(1, b"$a\r"), (3, b"c$d$"), (5, b"$")];
        assert_eq!(lines, expected);
        assert_eq!(super::lines_holding(b"none\n", b'$').count(), 0);
    }

    #[test]
    fn other_modifiers_are_counted_and_skipped() {
        let text = "||a.test^$client=192.168.1.1\n||b.test^$denyallow=x.test\n\
                    ||c.test^$dnstype=AAAA\n||d.test^$ctag=kids\n||e.test^$badfilter\n\
                    ||f.test^$third-party\n||g.test^$dnsrewrite=REFUSED;;\n\
                    ||h.test^$dnsrewrite=NOERROR;MX;10 mail.test\n\
                    @@||i.test^$dnsrewrite\n||j.test^$dnsrewrite=1.2.3.4,dnsrewrite=::1\n";
        let list = parse(text);
        assert_eq!(list.entries(), 0);
        assert_eq!(unsupported(&list, "rule with modifier"), 10);
        assert_eq!(list.rules.len(), 1);
    }

    #[test]
    fn cosmetic_and_pattern_rules_are_counted_and_skipped() {
        let text = "example.test##.banner\nexample.test#@#.ad\nexample.test#?#div:has(a)\n\
                    example.test#$#body { color: red }\n||ads.test/banner.png\n||ads*.test^\n\
                    /^ad[0-9]+\\.test$/\n|https://ads.test^\n";
        let list = parse(text);
        assert_eq!(list.entries(), 0);
        assert_eq!(unsupported(&list, "cosmetic rule"), 4);
        assert_eq!(unsupported(&list, "URL or pattern rule"), 4);
        assert_eq!(list.skipped.invalid, 0);
    }

    #[test]
    fn comments_and_headers_are_ignored_and_bad_names_reported() {
        let bytes = b"[Adblock Plus 2.0]\r\n! Title: Remus C2\r\n# AdGuard Home comment\r\n\r\n\
                      ||posdteu.shop^\r\n||bad_name!.test^\r\n||^\r\n||\xff.test^\r\n";
        let options = ListOptions {
            format: Format::Adblock,
            ..ListOptions::default()
        };
        let list = crate::lists::parse(bytes, &options).unwrap();
        assert_eq!(blocked(&list), [("posdteu.shop", Scope::NameAndSubdomains)]);
        assert_eq!(list.lines, 8);
        let lines: Vec<usize> = list.skipped.lines.iter().map(|s| s.line).collect();
        assert_eq!(lines, [6, 7, 8]);
    }
}
