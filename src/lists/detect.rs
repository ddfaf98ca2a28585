//! Tells a list's format from its first lines, for lists with `format = "auto"`.
//!
//! The signs, strongest first: a JSON document is a ThreatFox export or API response; quoted,
//! comma-separated lines (or ThreatFox's commented CSV header) are the ThreatFox CSV export;
//! `$ORIGIN`/`$TTL` directives or SOA/CNAME records are an RPZ zone; `||`, `|` or `@@` rules
//! are AdBlock; lines that start with an address are a hosts file; anything else is a plain
//! domain list. Only the first [`LINES_READ`] lines that carry an entry are looked at.

use super::Format;

/// Entry lines looked at before deciding.
const LINES_READ: usize = 200;

/// The format a list's text is most likely in.
pub fn detect(bytes: &[u8]) -> Format {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    if text.trim_start().starts_with(['{', '[']) {
        return Format::ThreatfoxJson;
    }

    let mut signs = Signs::default();
    for line in text.lines() {
        if signs.entries >= LINES_READ {
            break;
        }
        signs.read(line.trim());
    }
    signs.verdict()
}

#[derive(Debug, Default)]
struct Signs {
    entries: usize,
    csv: usize,
    rpz: usize,
    adblock: usize,
    hosts: usize,
    domains: usize,
}

impl Signs {
    fn read(&mut self, line: &str) {
        if line.starts_with("# \"first_seen") || line.starts_with("#\"first_seen") {
            self.csv += 1;
        }
        if line.is_empty() || line.starts_with(['#', '!', ';']) {
            return;
        }
        self.entries += 1;
        if line.starts_with('"') && (line.contains("\",\"") || line.contains("\", \"")) {
            self.csv += 1;
        } else if line.starts_with('$') || is_zone_record(line) {
            self.rpz += 1;
        } else if line.starts_with("||") || line.starts_with("@@") || line.starts_with('|') {
            self.adblock += 1;
        } else if starts_with_address(line) {
            self.hosts += 1;
        } else {
            self.domains += 1;
        }
    }

    fn verdict(&self) -> Format {
        if self.csv > 0 {
            Format::ThreatfoxCsv
        } else if self.rpz > 0 {
            Format::Rpz
        } else if self.adblock > 0 {
            Format::Adblock
        } else if self.hosts > self.domains {
            Format::Hosts
        } else {
            Format::Domains
        }
    }
}

/// A resource record line: a record type among its first few fields.
fn is_zone_record(line: &str) -> bool {
    line.split_whitespace()
        .take(5)
        .skip(1)
        .any(|field| matches!(field, "SOA" | "CNAME" | "NS" | "A" | "AAAA" | "TXT" | "IN"))
}

fn starts_with_address(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|first| first.parse::<std::net::IpAddr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_every_format_apart() {
        let cases: [(&[u8], Format); 9] = [
            (b"{\"9000101\": []}", Format::ThreatfoxJson),
            (b"\n  {\"query_status\": \"ok\"}", Format::ThreatfoxJson),
            (
                b"# \"first_seen_utc\",\"ioc_id\"\r\n\"2026-06-06\", \"1\"\r\n",
                Format::ThreatfoxCsv,
            ),
            (b"$TTL 30\n@ SOA a. b. 1 2 3 4 5\n", Format::Rpz),
            (b"; zone\nbad.test CNAME .\n", Format::Rpz),
            (b"! title\n||bad.test^\n", Format::Adblock),
            (
                b"# hosts\n0.0.0.0 bad.test\n127.0.0.1\tworse.test\n",
                Format::Hosts,
            ),
            (b"# plain\nbad.test\nworse.test\n", Format::Domains),
            (b"", Format::Domains),
        ];
        for (text, format) in cases {
            assert_eq!(detect(text), format, "{}", String::from_utf8_lossy(text));
        }
    }
}
