//! Reads plain domain lists and hosts files: one name per line, or an address followed by
//! names, with `#` comments.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::domain::plain_name;
use super::rule::{EntryAction, LocalData, Rule};
use super::{Attr, ListBuilder, numbered_lines_raw};

/// Names that hosts files carry for the machine itself, never as indicators.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads the text of a domain list or hosts file into `list`. Bad lines are skipped and
/// reported; good lines all apply.
pub fn parse(bytes: &[u8], list: &mut ListBuilder<'_>) {
    let mut local = LocalNames::default();
    let mut lines = 0;
    for (line, text) in numbered_lines_raw(bytes) {
        lines = line;
        if let Some(name) = plain_name(text) {
            list.block_normalized(name);
            continue;
        }
        let text = std::str::from_utf8(text.strip_suffix(b"\r").unwrap_or(text)).map_err(|_| line);
        match text {
            Ok(text) => parse_line(text, line, list, &mut local),
            Err(line) => list.skip(line, "line is not valid UTF-8".to_owned()),
        }
    }
    list.set_lines(lines);
    local.finish(list);
}

fn parse_line(text: &str, line: usize, list: &mut ListBuilder<'_>, local: &mut LocalNames) {
    let content = text.split('#').next().unwrap_or("").trim();
    if content.is_empty() {
        return;
    }
    let mut fields = content.split_whitespace();
    let Some(first) = fields.next() else {
        return;
    };

    if let Ok(address) = first.parse::<IpAddr>() {
        let mut any = false;
        for name in fields {
            any = true;
            if HOSTS_BOILERPLATE.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            if means_block(address) {
                list.block(name, line);
            } else {
                local.add(name, address, line);
            }
        }
        if !any {
            list.skip(
                line,
                format!("hosts line has an address but no name: {content:?}"),
            );
        }
        return;
    }

    if fields.next().is_some() {
        list.skip(
            line,
            format!("expected one domain per line, found {content:?}"),
        );
        return;
    }
    list.block(first, line);
}

/// The addresses hosts files use to say "no such host": unspecified and loopback.
fn means_block(address: IpAddr) -> bool {
    address.is_unspecified() || address.is_loopback()
}

/// Names that a hosts file answers with an address of its own, in the order first seen.
#[derive(Default)]
struct LocalNames {
    order: Vec<(String, usize)>,
    data: HashMap<String, LocalData>,
}

impl LocalNames {
    fn add(&mut self, name: &str, address: IpAddr, line: usize) {
        let key = name.to_ascii_lowercase();
        let data = self.data.entry(key.clone()).or_insert_with(|| {
            self.order.push((key, line));
            LocalData::default()
        });
        data.add_address(address);
    }

    /// Adds each name with a rule that answers its addresses.
    fn finish(mut self, list: &mut ListBuilder<'_>) {
        for (name, line) in self.order {
            let Some(data) = self.data.remove(&name) else {
                continue;
            };
            let rule = list.rule(Rule {
                action: Some(EntryAction::Local(Arc::new(data))),
                indicator: None,
            });
            let scope = list.options().scope;
            list.block_with(&name, line, Attr { rule, scope });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lists::{EntryAction, Format, ListOptions, ParsedList};

    fn parse(text: &[u8]) -> ParsedList {
        let options = ListOptions {
            format: Format::Hosts,
            ..ListOptions::default()
        };
        crate::lists::parse(text, &options).unwrap()
    }

    fn names(list: &ParsedList) -> Vec<&str> {
        list.block.names.iter().collect()
    }

    #[test]
    fn reads_domains_and_comments() {
        let list = parse(b"# Remus C2\nPosdTeu.shop\n\n  mathlah.com.  # trailing\r\n");
        assert_eq!(names(&list), ["posdteu.shop", "mathlah.com"]);
        assert_eq!(list.skipped.invalid, 0);
        assert_eq!(list.lines, 4);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let list = parse(b"\xef\xbb\xbf0.0.0.0 a.test\n0.0.0.0 b.test\n");
        assert_eq!(names(&list), ["a.test", "b.test"]);
        let list = parse(b"\xef\xbb\xbf# title\nc.test\n");
        assert_eq!(names(&list), ["c.test"]);
        assert_eq!(list.skipped.invalid, 0);
    }

    #[test]
    fn reads_hosts_lines_with_tabs_and_aliases() {
        let text = b"127.0.0.1\tlocalhost\n0.0.0.0 a.test b.test\n::1 c.test\n127.0.0.1\tD.test\n";
        let list = parse(text);
        assert_eq!(names(&list), ["a.test", "b.test", "c.test", "d.test"]);
        assert_eq!(list.skipped.invalid, 0);
        assert!(list.block.attrs.is_none());
    }

    #[test]
    fn other_addresses_are_local_answers() {
        let text =
            b"192.0.2.53 Sink.test www.sink.test # alias\n2001:db8::53 sink.test\n0.0.0.0 x.test\n";
        let list = parse(text);
        assert_eq!(names(&list), ["x.test", "sink.test", "www.sink.test"]);
        let attr = list.block.attr(1);
        let Some(EntryAction::Local(data)) = &list.rules[attr.rule as usize].action else {
            panic!("no local data");
        };
        let both: [std::net::IpAddr; 2] = [
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        assert_eq!(data.addresses, both);
        assert_eq!(list.block.attr(0).rule, 0);
    }

    #[test]
    fn bad_lines_are_skipped_with_line_and_reason() {
        let list = parse(b"good.test\nbad name here\n0.0.0.0\nx..y\n\xff\xfe\nok.test\n");
        assert_eq!(names(&list), ["good.test", "ok.test"]);
        let lines: Vec<usize> = list.skipped.lines.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(list.skipped.lines[0].reason.contains("one domain per line"));
        assert!(list.skipped.lines[3].reason.contains("UTF-8"));
    }
}
