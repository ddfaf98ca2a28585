//! Reads plain domain lists and hosts files: one name per line, or an address followed by
//! names, with `#` comments.

use super::domain::normalize;
use std::sync::Arc;

use super::{Names, ParsedList, SkippedLine};

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

/// Parses the text of a list. Bad lines are skipped and reported; good lines all apply.
pub fn parse(bytes: &[u8]) -> ParsedList {
    let mut list = Collector {
        names: Names::with_capacity(bytes.len()),
        ..Collector::default()
    };
    // A final newline ends the last line; it does not start another.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (index, raw) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line = index + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            list.skip(line, "line is not valid UTF-8".to_owned());
            continue;
        };
        list.lines = line;
        parse_line(text, line, &mut list);
    }
    list.names.shrink_to_fit();
    ParsedList {
        names: Arc::new(list.names),
        skipped: list.skipped,
        lines: list.lines,
    }
}

/// A list while it is being read.
#[derive(Default)]
struct Collector {
    names: Names,
    skipped: Vec<SkippedLine>,
    lines: usize,
}

fn parse_line(text: &str, line: usize, list: &mut Collector) {
    let content = text.split('#').next().unwrap_or("").trim();
    if content.is_empty() {
        return;
    }
    let mut fields = content.split_whitespace();
    let Some(first) = fields.next() else {
        return;
    };

    if first.parse::<std::net::IpAddr>().is_ok() {
        let mut any = false;
        for name in fields {
            any = true;
            if !HOSTS_BOILERPLATE.contains(&name.to_ascii_lowercase().as_str()) {
                list.add(name, line);
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
    list.add(first, line);
}

impl Collector {
    fn add(&mut self, raw: &str, line: usize) {
        match normalize(raw) {
            Ok(name) => self.names.push(&name),
            Err(reason) => self.skip(line, reason),
        }
    }

    fn skip(&mut self, line: usize, reason: String) {
        self.skipped.push(SkippedLine { line, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::lists::ParsedList;

    fn names(list: &ParsedList) -> Vec<&str> {
        list.names.iter().collect()
    }

    #[test]
    fn reads_domains_and_comments() {
        let list = parse(b"# Remus C2\nPosdTeu.shop\n\n  mathlah.com.  # trailing\r\n");
        assert_eq!(names(&list), ["posdteu.shop", "mathlah.com"]);
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 4);
    }

    #[test]
    fn reads_hosts_lines_with_tabs_and_aliases() {
        let text = b"127.0.0.1\tlocalhost\n0.0.0.0 a.test b.test\n::1 c.test\n127.0.0.1\tD.test\n";
        let list = parse(text);
        assert_eq!(names(&list), ["a.test", "b.test", "c.test", "d.test"]);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn bad_lines_are_skipped_with_line_and_reason() {
        let list = parse(b"good.test\nbad name here\n0.0.0.0\nx..y\n\xff\xfe\nok.test\n");
        assert_eq!(names(&list), ["good.test", "ok.test"]);
        let lines: Vec<usize> = list.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(list.skipped[0].reason.contains("one domain per line"));
        assert!(list.skipped[3].reason.contains("UTF-8"));
    }
}
