//! Reads ThreatFox feeds: the CSV export, the JSON export (an object keyed by IOC id) and the
//! API's `query_status`/`data` response.
//!
//! Every IOC becomes an indicator rule carrying the feed's metadata, and a trigger: a `domain`
//! IOC blocks its name, a `url` IOC blocks its host (or, for an address host, answers holding
//! that address), an `ip:port` IOC blocks answers holding its address. File hashes and other
//! IOC types are counted as unsupported.
//!
//! A `url` IOC blocks its whole host with the list's reach, although the feed only names one
//! URL on it; a malicious URL on a shared host (a code-hosting or file-sharing site) therefore
//! blocks the site. Lists that carry such URLs should leave `url` IOCs out upstream.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::domain::normalize;
use super::rule::{Indicator, Text};
use super::{Attr, Broken, ListBuilder, Skipped, numbered_lines};
use crate::events::time::parse_date_or_time;

/// Reads a ThreatFox CSV export into `list`. Bad rows are skipped and reported; good rows all
/// apply.
pub fn parse_csv(bytes: &[u8], list: &mut ListBuilder<'_>) {
    let mut layout = Layout::new();
    let mut fields = Vec::new();
    let mut lines = 0;
    for (line, text) in numbered_lines(bytes) {
        lines = line;
        let text = match text {
            Ok(text) => text.trim(),
            Err(line) => {
                list.skip(line, "line is not valid UTF-8".to_owned());
                continue;
            }
        };
        if let Some(comment) = text.strip_prefix('#') {
            if let Some(columns) = header(comment) {
                layout.header = Some(columns);
            }
        } else if !text.is_empty() {
            read_row(text, line, &layout, &mut fields, list);
        }
    }
    list.set_lines(lines);
}

/// Reads a ThreatFox JSON export or API response into `list`. Bad entries are skipped and
/// reported; a syntax error or a failed query is an error.
pub fn parse_json(bytes: &[u8], list: &mut ListBuilder<'_>) -> Result<(), Broken> {
    list.set_lines(super::numbered_lines_raw(bytes).count());
    let feed: Feed = serde_json::from_slice(bytes).map_err(syntax_error)?;
    if !answered(feed.status.as_deref())? {
        return Ok(());
    }

    let mut locator = Locator {
        text: bytes,
        searches: 0,
    };
    for ioc in feed.iocs {
        read_json_ioc(ioc, list, &mut locator);
    }
    Ok(())
}

/// How sinkhole enforces an IOC type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Domain,
    Url,
    IpPort,
}

/// The kind of an IOC type, or `None` once it is counted as unsupported.
fn kind(ioc_type: Option<&str>, list: &mut ListBuilder<'_>) -> Option<Kind> {
    let kind = match ioc_type.map(str::trim) {
        Some("domain") => Kind::Domain,
        Some("url") => Kind::Url,
        Some("ip:port") => Kind::IpPort,
        // md5_hash, sha1_hash, sha256_hash, sha3_384_hash and any later digest.
        Some(other) if other.contains("hash") => {
            list.unsupported("file hash IOC");
            return None;
        }
        _ => {
            list.unsupported("unknown IOC type");
            return None;
        }
    };
    Some(kind)
}

/// One IOC of a supported kind, read from either format but not yet checked.
struct Ioc {
    kind: Kind,
    /// Everything but the confidence, which is only known good once checked.
    indicator: Indicator,
    confidence: Result<Option<u8>, String>,
}

/// What an IOC triggers on.
enum Target {
    /// A normalised domain.
    Name(String),
    /// An address in an answer.
    Address(IpAddr),
}

/// Checks an IOC and adds its rule and trigger. A bad IOC is skipped at the line `line_of`
/// finds, before any rule is made for it.
fn add_ioc(ioc: Ioc, list: &mut ListBuilder<'_>, line_of: impl FnOnce(&Indicator) -> usize) {
    let Ioc {
        kind,
        mut indicator,
        confidence,
    } = ioc;
    let (confidence, target) = match check(kind, &indicator, confidence) {
        Ok(checked) => checked,
        Err(reason) => {
            let line = line_of(&indicator);
            list.skip(line, reason);
            return;
        }
    };

    indicator.confidence = confidence;
    let Some(rule) = list.indicator(indicator, None) else {
        return;
    };
    match target {
        Target::Name(name) => {
            let scope = list.options().scope;
            // The name is normalised already, so the builder cannot reject it and never
            // reads the line.
            list.block_with(&name, 0, Attr { rule, scope });
        }
        Target::Address(address) => list.response_ip(IpNet::from(address), rule),
    }
}

/// The IOC's confidence and target, or why it cannot be used.
fn check(
    kind: Kind,
    indicator: &Indicator,
    confidence: Result<Option<u8>, String>,
) -> Result<(Option<u8>, Target), String> {
    let confidence = confidence?;
    let value = indicator.value.as_deref().ok_or("IOC has no value")?;
    let target = match kind {
        Kind::Domain => name_target(value)?,
        Kind::Url => url_target(value)?,
        Kind::IpPort => ip_port(value)
            .map(Target::Address)
            .ok_or_else(|| format!("ip:port IOC {value:?} holds no IP address"))?,
    };
    Ok((confidence, target))
}

fn name_target(name: &str) -> Result<Target, String> {
    normalize(name).map(|name| Target::Name(name.into_owned()))
}

fn url_target(url: &str) -> Result<Target, String> {
    let host = url_host(url).ok_or_else(|| format!("URL IOC {url:?} has no host"))?;
    match host.parse::<IpAddr>() {
        Ok(address) => Ok(Target::Address(address)),
        Err(_) => name_target(host),
    }
}

/// The host of `scheme://[userinfo@]host[:port][/path]`, without the brackets of an IPv6
/// address; `None` when there is none or the port is not a number.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.trim().split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?,
        None => host_port
            .split_once(':')
            .map_or((host_port, ""), |(host, port)| (host, port)),
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let port_ok = port.is_empty() || port.parse::<u16>().is_ok();
    (port_ok && !host.is_empty()).then_some(host)
}

/// The address of `1.2.3.4:443` or `[2001:db8::1]:443`, or of a bare address.
fn ip_port(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|text| text.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

/// Whether a feed's text stands for a value: ThreatFox writes `None` or nothing for null.
fn present(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty() && text != "None").then_some(text)
}

/// A value of this IOC's own (its id, its value).
fn own(text: Option<&str>) -> Option<Text> {
    text.and_then(present).map(Text::from)
}

/// A value that other IOCs repeat (a family, a threat type), kept once per list.
fn shared(list: &mut ListBuilder<'_>, text: Option<&str>) -> Option<Text> {
    text.and_then(present).map(|text| list.shared(text))
}

/// A ThreatFox time as RFC 3339; a time that cannot be read is left out, not an error.
fn time(list: &mut ListBuilder<'_>, text: Option<&str>) -> Option<Text> {
    let time = text.and_then(present).and_then(parse_date_or_time)?;
    Some(list.shared(&time))
}

fn confidence_text(text: &str) -> Result<u8, String> {
    text.parse::<i64>()
        .map_err(|_| format!("confidence level {text:?} is not a number"))
        .and_then(percent)
}

fn percent(number: i64) -> Result<u8, String> {
    u8::try_from(number)
        .ok()
        .filter(|&percent| percent <= 100)
        .ok_or_else(|| format!("confidence level {number} is outside 0 to 100"))
}

/// The CSV columns the parser reads.
#[derive(Debug, Clone, Copy)]
enum Column {
    FirstSeen,
    Id,
    Value,
    Type,
    ThreatType,
    Malware,
    Family,
    LastSeen,
    Confidence,
    Reference,
    Tags,
}

const COLUMNS: usize = Column::Tags as usize + 1;

/// The column a header name stands for; API field names are taken too.
fn column_of(name: &str) -> Option<Column> {
    let column = match name.trim() {
        "first_seen_utc" | "first_seen" => Column::FirstSeen,
        "ioc_id" | "id" => Column::Id,
        "ioc_value" | "ioc" => Column::Value,
        "ioc_type" => Column::Type,
        "threat_type" => Column::ThreatType,
        "fk_malware" | "malware" => Column::Malware,
        "malware_printable" => Column::Family,
        "last_seen_utc" | "last_seen" => Column::LastSeen,
        "confidence_level" => Column::Confidence,
        "reference" => Column::Reference,
        "tags" => Column::Tags,
        _ => return None,
    };
    Some(column)
}

/// ThreatFox's documented column order, for exports without a header.
const DOCUMENTED: [&str; 15] = [
    "first_seen_utc",
    "ioc_id",
    "ioc_value",
    "ioc_type",
    "threat_type",
    "fk_malware",
    "malware_alias",
    "malware_printable",
    "last_seen_utc",
    "confidence_level",
    "is_compromised",
    "reference",
    "tags",
    "anonymous",
    "reporter",
];

/// Where each column read sits in a row, and how many fields a row has.
#[derive(Debug, Clone)]
struct Columns {
    count: usize,
    at: [Option<usize>; COLUMNS],
}

impl Columns {
    fn from_names<'n>(names: impl Iterator<Item = &'n str>) -> Self {
        let mut columns = Self {
            count: 0,
            at: [None; COLUMNS],
        };
        for (position, name) in names.enumerate() {
            columns.count = position + 1;
            if let Some(column) = column_of(name) {
                columns.at[column as usize] = Some(position);
            }
        }
        columns
    }

    /// The documented order, or the older one that lacks `is_compromised`.
    fn documented(with_compromised: bool) -> Self {
        let names = DOCUMENTED.iter().copied();
        Self::from_names(names.filter(|&name| with_compromised || name != "is_compromised"))
    }

    /// A column's value in `row`, or `None` when it is absent or null.
    fn get<'r>(&self, row: &'r [Cow<'_, str>], column: Column) -> Option<&'r str> {
        let field = row.get(self.at[column as usize]?)?;
        present(field)
    }
}

/// How rows are laid out: as the header says, or as ThreatFox documents.
struct Layout {
    header: Option<Columns>,
    documented: Columns,
    /// Older exports lack `is_compromised`.
    older: Columns,
}

impl Layout {
    fn new() -> Self {
        Self {
            header: None,
            documented: Columns::documented(true),
            older: Columns::documented(false),
        }
    }

    /// The columns of a row of `fields` fields, or why the row does not fit.
    fn pick(&self, fields: usize) -> Result<&Columns, String> {
        if let Some(header) = &self.header {
            return (header.count == fields).then_some(header).ok_or_else(|| {
                format!(
                    "expected {} fields as the header says, found {fields}",
                    header.count
                )
            });
        }
        [&self.documented, &self.older]
            .into_iter()
            .find(|columns| columns.count == fields)
            .ok_or_else(|| {
                format!(
                    "expected {} fields (or {} without is_compromised), found {fields}",
                    self.documented.count, self.older.count
                )
            })
    }
}

/// The columns of a comment line that holds the header, which names at least the value and
/// type columns.
fn header(comment: &str) -> Option<Columns> {
    let comment = comment.trim();
    if !comment.starts_with('"') {
        return None;
    }
    let mut names = Vec::new();
    split_row(comment, &mut names).ok()?;
    let columns = Columns::from_names(names.iter().map(|name| name.as_ref()));
    let names_ioc = |column: Column| columns.at[column as usize].is_some();
    (names_ioc(Column::Value) && names_ioc(Column::Type)).then_some(columns)
}

fn read_row<'a>(
    text: &'a str,
    line: usize,
    layout: &Layout,
    fields: &mut Vec<Cow<'a, str>>,
    list: &mut ListBuilder<'_>,
) {
    let columns = split_row(text, fields).and_then(|()| layout.pick(fields.len()));
    let columns = match columns {
        Ok(columns) => columns,
        Err(reason) => {
            list.skip(line, reason);
            return;
        }
    };

    let get = |column| columns.get(fields, column);
    let Some(kind) = kind(get(Column::Type), list) else {
        return;
    };
    let tags = get(Column::Tags).map_or(Default::default(), |text| {
        list.shared_tags(text.split(',').filter_map(present))
    });
    let indicator = Indicator {
        id: own(get(Column::Id)),
        value: own(get(Column::Value)),
        ioc_type: shared(list, get(Column::Type)),
        family: shared(list, get(Column::Family)),
        malware: shared(list, get(Column::Malware)),
        threat_type: shared(list, get(Column::ThreatType)),
        confidence: None,
        first_seen: time(list, get(Column::FirstSeen)),
        last_seen: time(list, get(Column::LastSeen)),
        tags,
        reference: shared(list, get(Column::Reference)),
    };
    let confidence = get(Column::Confidence).map(confidence_text).transpose();
    let ioc = Ioc {
        kind,
        indicator,
        confidence,
    };
    add_ioc(ioc, list, |_| line);
}

/// Splits a CSV row into `fields`. Fields are quoted, with `""` for a quote inside, and
/// separated by a comma with optional spaces; an unquoted field is taken trimmed.
fn split_row<'a>(row: &'a str, fields: &mut Vec<Cow<'a, str>>) -> Result<(), String> {
    fields.clear();
    let mut rest = row.trim_start();
    loop {
        let (field, after) = match rest.strip_prefix('"') {
            Some(quoted) => quoted_field(quoted)?,
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                (Cow::Borrowed(rest[..end].trim()), &rest[end..])
            }
        };
        fields.push(field);

        let after = after.trim_start();
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None if after.is_empty() => return Ok(()),
            None => return Err(format!("text after a closing quote: {after:?}")),
        }
    }
}

/// A quoted field, from the text after its opening quote; returns the field and the text
/// after its closing quote.
fn quoted_field(text: &str) -> Result<(Cow<'_, str>, &str), String> {
    let mut escaped = false;
    let mut from = 0;
    loop {
        let Some(at) = text[from..].find('"').map(|at| from + at) else {
            return Err("unterminated quote".to_owned());
        };
        if text[at + 1..].starts_with('"') {
            escaped = true;
            from = at + 2;
            continue;
        }
        let body = &text[..at];
        let field = if escaped {
            Cow::Owned(body.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(body)
        };
        return Ok((field, &text[at + 1..]));
    }
}

/// A JSON document of either shape, read in one pass so the export keeps its file order.
#[derive(Default)]
struct Feed {
    /// The API's `query_status`; an export has none.
    status: Option<String>,
    /// The IOCs of the API's `data` or of every export key, in file order.
    iocs: Vec<JsonIoc>,
}

/// One IOC as the export or the API writes it; the API's names are aliases. Fields whose
/// type differs between feeds are kept as JSON values.
#[derive(Deserialize)]
struct JsonIoc {
    /// The API's id; an export IOC takes its key.
    #[serde(default)]
    id: Value,
    #[serde(alias = "ioc")]
    ioc_value: Option<String>,
    ioc_type: Option<String>,
    threat_type: Option<String>,
    malware: Option<String>,
    malware_printable: Option<String>,
    #[serde(alias = "first_seen")]
    first_seen_utc: Option<String>,
    #[serde(alias = "last_seen")]
    last_seen_utc: Option<String>,
    #[serde(default)]
    confidence_level: Value,
    reference: Option<String>,
    #[serde(default)]
    tags: Value,
}

impl<'de> Deserialize<'de> for Feed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FeedVisitor)
    }
}

struct FeedVisitor;

impl<'de> Visitor<'de> for FeedVisitor {
    type Value = Feed;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a ThreatFox export object or API response")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Feed, M::Error> {
        let mut feed = Feed::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "query_status" => feed.status = Some(map.next_value()?),
                "data" => feed.iocs.extend(map.next_value::<Iocs>()?.0),
                _ => {
                    let iocs = map.next_value::<Iocs>()?.0;
                    feed.iocs
                        .extend(iocs.into_iter().map(|ioc| keyed(ioc, &key)));
                }
            }
        }
        Ok(feed)
    }
}

/// An export IOC with its key as its id.
fn keyed(mut ioc: JsonIoc, key: &str) -> JsonIoc {
    if ioc.id.is_null() {
        ioc.id = Value::String(key.to_owned());
    }
    ioc
}

/// A JSON value that holds IOCs when it is an array; any other value (the API's "no result"
/// message in `data`) holds none.
struct Iocs(Vec<JsonIoc>);

impl<'de> Deserialize<'de> for Iocs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IocsVisitor)
    }
}

struct IocsVisitor;

impl<'de> Visitor<'de> for IocsVisitor {
    type Value = Iocs;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of IOCs")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Iocs, S::Error> {
        let mut iocs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(ioc) = seq.next_element()? {
            iocs.push(ioc);
        }
        Ok(Iocs(iocs))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Iocs, M::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Iocs(Vec::new()))
    }

    fn visit_str<E>(self, _: &str) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }

    fn visit_unit<E>(self) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Iocs, E> {
        Ok(Iocs(Vec::new()))
    }
}

/// Whether the feed's entries are to be read: an export, or an API answer of `ok`. An API
/// answer of `no_result` is an empty list; any other status means the query failed.
fn answered(status: Option<&str>) -> Result<bool, Broken> {
    match status {
        None | Some("ok") => Ok(true),
        Some("no_result") => Ok(false),
        Some(status) => Err(Broken {
            line: 1,
            reason: format!("feed answered query_status {status:?}"),
        }),
    }
}

/// A JSON syntax or type error at serde_json's line, without the position in the reason.
fn syntax_error(error: serde_json::Error) -> Broken {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    Broken {
        line: error.line().max(1),
        reason: format!("invalid JSON: {message} (column {})", error.column()),
    }
}

fn read_json_ioc(ioc: JsonIoc, list: &mut ListBuilder<'_>, locator: &mut Locator<'_>) {
    let Some(kind) = kind(ioc.ioc_type.as_deref(), list) else {
        return;
    };
    let indicator = Indicator {
        id: json_id(&ioc.id),
        value: own(ioc.ioc_value.as_deref()),
        ioc_type: shared(list, ioc.ioc_type.as_deref()),
        family: shared(list, ioc.malware_printable.as_deref()),
        malware: shared(list, ioc.malware.as_deref()),
        threat_type: shared(list, ioc.threat_type.as_deref()),
        confidence: None,
        first_seen: time(list, ioc.first_seen_utc.as_deref()),
        last_seen: time(list, ioc.last_seen_utc.as_deref()),
        tags: json_tags(&ioc.tags, list),
        reference: shared(list, ioc.reference.as_deref()),
    };
    let ioc = Ioc {
        kind,
        indicator,
        confidence: json_confidence(&ioc.confidence_level),
    };
    add_ioc(ioc, list, |indicator| locator.line(indicator.id.as_deref()));
}

fn json_id(id: &Value) -> Option<Text> {
    match id {
        Value::String(id) => own(Some(id.as_str())),
        Value::Number(id) => Some(Text::from(id.to_string())),
        _ => None,
    }
}

fn json_confidence(confidence: &Value) -> Result<Option<u8>, String> {
    match confidence {
        Value::Null => Ok(None),
        Value::String(text) => present(text).map(confidence_text).transpose(),
        Value::Number(number) => match number.as_i64() {
            Some(number) => percent(number).map(Some),
            None => Err(format!("confidence level {number} is not a whole number")),
        },
        other => Err(format!("confidence level {other} is not a number")),
    }
}

/// Tags as a comma-separated string or an array of strings.
fn json_tags(value: &Value, list: &mut ListBuilder<'_>) -> Arc<[Text]> {
    match value {
        Value::String(text) => list.shared_tags(text.split(',').filter_map(present)),
        Value::Array(items) => {
            let tags = items.iter().filter_map(Value::as_str).filter_map(present);
            list.shared_tags(tags)
        }
        _ => Arc::default(),
    }
}

/// Finds the line of a JSON entry that is reported, from the first `"<id>"` in the text.
struct Locator<'t> {
    text: &'t [u8],
    searches: usize,
}

impl Locator<'_> {
    /// The entry's line, or 1 when its id is not found. Entries reported after the first
    /// [`Skipped::KEPT`] are only counted, so their line is not looked for.
    fn line(&mut self, id: Option<&str>) -> usize {
        if self.searches >= Skipped::KEPT {
            return 1;
        }
        self.searches += 1;
        let Some(id) = id else {
            return 1;
        };
        let needle = format!("\"{id}\"");
        let found = self
            .text
            .windows(needle.len())
            .position(|window| window == needle.as_bytes());
        let newlines = |at: usize| self.text[..at].iter().filter(|&&b| b == b'\n').count();
        found.map_or(1, |at| 1 + newlines(at))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use crate::lists::rule::Text;
    use crate::lists::{Broken, Format, Indicator, ListOptions, ParsedList};

    fn tag_texts(tags: &[Text]) -> Vec<&str> {
        tags.iter().map(|tag| &**tag).collect()
    }

    /// 2026-06-06T00:00:00Z.
    const NOW: u64 = 1_780_704_000;

    fn options(format: Format) -> ListOptions {
        ListOptions {
            format,
            now: UNIX_EPOCH + Duration::from_secs(NOW),
            ..ListOptions::default()
        }
    }

    fn csv(text: &str) -> ParsedList {
        crate::lists::parse(text.as_bytes(), &options(Format::ThreatfoxCsv)).unwrap()
    }

    fn json(text: &str) -> Result<ParsedList, Broken> {
        crate::lists::parse(text.as_bytes(), &options(Format::ThreatfoxJson))
    }

    fn names(list: &ParsedList) -> Vec<&str> {
        list.block.iter().map(|(name, _)| name).collect()
    }

    /// The indicator behind a blocked name.
    fn indicator<'l>(list: &'l ParsedList, name: &str) -> &'l Indicator {
        let (_, attr) = list.block.iter().find(|(n, _)| *n == name).unwrap();
        list.rules[attr.rule as usize].indicator.as_deref().unwrap()
    }

    fn response_ips(list: &ParsedList) -> Vec<String> {
        list.response_ips
            .iter()
            .map(|ip| ip.network.to_string())
            .collect()
    }

    fn skipped_lines(list: &ParsedList) -> Vec<usize> {
        list.skipped
            .lines
            .iter()
            .map(|skipped| skipped.line)
            .collect()
    }

    fn unsupported(list: &ParsedList, kind: &str) -> usize {
        let found = list.skipped.unsupported.iter().find(|(k, _)| *k == kind);
        found.map_or(0, |(_, count)| *count)
    }

    /// A row in ThreatFox's documented column order, `", "` separated.
    fn row(first_seen: &str, id: &str, value: &str, ioc_type: &str, confidence: &str) -> String {
        format!(
            "\"{first_seen}\", \"{id}\", \"{value}\", \"{ioc_type}\", \"botnet_cc\", \
             \"win.remus\", \"None\", \"Remus\", \"\", \"{confidence}\", \"False\", \"None\", \
             \"Remus\", \"0\", \"someone\"\n"
        )
    }

    const EXPORT_CSV: &str = "\
################################################################\r\n\
# ThreatFox IOCs: CSV export                                    #\r\n\
# Last updated: 2026-06-06 18:00:00 UTC                         #\r\n\
################################################################\r\n\
#\r\n\
# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\
\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\
\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\r\n\
\"2026-06-06 08:14:02\", \"9000101\", \"PosdTeu.shop\", \"domain\", \"botnet_cc\", \
\"win.remus\", \"None\", \"Remus\", \"\", \"100\", \"False\", \"None\", \
\"Remus, RemusStealer,\", \"0\", \"someone\"\r\n\
\"2026-06-06 08:14:03\",\"9000102\",\"https://user@mathlah.com:8443/gate.php?a=1,b=2\",\
\"url\",\"payload_delivery\",\"win.remus\",\"None\",\"Remus \"\"Stealer\"\"\",\
\"2026-06-06 09:00:00\",\"75\",\"False\",\"https://example.test/a,b\",\"None\",\"0\",\
\"someone\"\r\n\
#\r\n\
# Number of entries: 2\r\n";

    #[test]
    fn reads_the_csv_export_with_its_banner_and_header() {
        let list = csv(EXPORT_CSV);
        assert_eq!(names(&list), ["posdteu.shop", "mathlah.com"]);
        assert_eq!(list.lines, 10);
        assert_eq!(list.skipped.invalid, 0, "{:?}", list.skipped.lines);

        let domain = indicator(&list, "posdteu.shop");
        assert_eq!(domain.id.as_deref(), Some("9000101"));
        assert_eq!(domain.value.as_deref(), Some("PosdTeu.shop"));
        assert_eq!(domain.ioc_type.as_deref(), Some("domain"));
        assert_eq!(domain.family.as_deref(), Some("Remus"));
        assert_eq!(domain.malware.as_deref(), Some("win.remus"));
        assert_eq!(domain.threat_type.as_deref(), Some("botnet_cc"));
        assert_eq!(domain.confidence, Some(100));
        assert_eq!(domain.first_seen.as_deref(), Some("2026-06-06T08:14:02Z"));
        assert_eq!(domain.last_seen, None);
        assert_eq!(tag_texts(&domain.tags), ["Remus", "RemusStealer"]);
        assert_eq!(domain.reference, None);

        let url = indicator(&list, "mathlah.com");
        let raw = "https://user@mathlah.com:8443/gate.php?a=1,b=2";
        assert_eq!(url.value.as_deref(), Some(raw));
        assert_eq!(url.family.as_deref(), Some("Remus \"Stealer\""));
        assert_eq!(url.last_seen.as_deref(), Some("2026-06-06T09:00:00Z"));
        assert_eq!(url.confidence, Some(75));
        assert_eq!(url.reference.as_deref(), Some("https://example.test/a,b"));
        assert!(url.tags.is_empty());
    }

    #[test]
    fn maps_csv_columns_by_the_header_names() {
        let text = "# \"ioc_type\",\"ioc_value\",\"confidence_level\",\"ioc_id\",\"tags\"\n\
                    \"domain\",\"a.test\",\"60\",\"7\",\"x,y\"\n";
        let list = csv(text);
        assert_eq!(names(&list), ["a.test"]);
        let found = indicator(&list, "a.test");
        assert_eq!(found.id.as_deref(), Some("7"));
        assert_eq!(found.confidence, Some(60));
        assert_eq!(tag_texts(&found.tags), ["x", "y"]);
        assert_eq!(found.family, None);
    }

    #[test]
    fn csv_without_a_header_takes_the_documented_order() {
        let current = row("2026-06-06 08:14:02", "1", "a.test", "domain", "100");
        // Older exports have no is_compromised column.
        let older = "\"2026-06-06\", \"2\", \"b.test\", \"domain\", \"botnet_cc\", \"win.remus\", \
                     \"None\", \"Remus\", \"None\", \"50\", \"None\", \"Remus\", \"0\", \"someone\"\n";
        let list = csv(&format!("{current}{older}"));
        assert_eq!(names(&list), ["a.test", "b.test"]);
        let old = indicator(&list, "b.test");
        assert_eq!(old.confidence, Some(50));
        assert_eq!(old.first_seen.as_deref(), Some("2026-06-06T00:00:00Z"));
        assert_eq!(tag_texts(&old.tags), ["Remus"]);
    }

    #[test]
    fn url_and_ip_port_iocs_become_name_or_address_triggers() {
        let seen = "2026-06-06 08:14:02";
        let text = [
            row(seen, "1", "http://Evil.test/path", "url", "100"),
            row(seen, "2", "http://198.51.100.7:8080/x", "url", "100"),
            row(seen, "3", "https://[2001:db8::7]/x", "url", "100"),
            row(seen, "4", "198.51.100.8:443", "ip:port", "100"),
            row(seen, "5", "[2001:db8::8]:8443", "ip:port", "100"),
            row(seen, "6", "203.0.113.9", "ip:port", "100"),
            row(
                seen,
                "7",
                "d41d8cd98f00b204e9800998ecf8427e",
                "md5_hash",
                "100",
            ),
            row(
                seen,
                "8",
                "e3b0c44298fc1c149afbf4c8996fb924",
                "sha256_hash",
                "100",
            ),
            row(seen, "9", "someone@evil.test", "email", "100"),
        ]
        .concat();
        let list = csv(&text);
        assert_eq!(names(&list), ["evil.test"]);
        let expected = [
            "198.51.100.7/32",
            "2001:db8::7/128",
            "198.51.100.8/32",
            "2001:db8::8/128",
            "203.0.113.9/32",
        ];
        assert_eq!(response_ips(&list), expected);
        let rule = list.response_ips[3].rule as usize;
        let found = list.rules[rule].indicator.as_deref().unwrap();
        assert_eq!(found.value.as_deref(), Some("[2001:db8::8]:8443"));

        assert_eq!(unsupported(&list, "file hash IOC"), 2);
        assert_eq!(unsupported(&list, "unknown IOC type"), 1);
        // Rule 0 and one per used IOC: hashes make none.
        assert_eq!(list.rules.len(), 7);
    }

    #[test]
    fn bad_csv_rows_are_skipped_with_their_line() {
        let seen = "2026-06-06";
        let text = [
            "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\
             \"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\
             \"confidence_level\",\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\
             \"reporter\"\n"
                .to_owned(),
            row(seen, "1", "good.test", "domain", "100"),
            "\"2026-06-06\", \"2\", \"short.test\", \"domain\"\n".to_owned(),
            "\"2026-06-06\", \"3\", \"open.test\n".to_owned(),
            row(seen, "4", "bad name.test", "domain", "100"),
            row(seen, "5", "over.test", "domain", "150"),
            row(seen, "6", "nonsense:80", "ip:port", "100"),
            row(seen, "7", "http:///nohost", "url", "100"),
            row(seen, "8", "http://evil.test:port/", "url", "100"),
            row(seen, "9", "also-good.test", "domain", "None"),
        ]
        .concat();
        let list = csv(&text);
        assert_eq!(names(&list), ["good.test", "also-good.test"]);
        assert_eq!(skipped_lines(&list), [3, 4, 5, 6, 7, 8, 9]);
        let reasons: Vec<&str> = list.skipped.lines.iter().map(|s| &*s.reason).collect();
        assert!(reasons[0].contains("expected 15 fields"), "{}", reasons[0]);
        assert!(reasons[1].contains("unterminated quote"), "{}", reasons[1]);
        assert!(reasons[2].contains("not allowed"), "{}", reasons[2]);
        assert!(reasons[3].contains("outside 0 to 100"), "{}", reasons[3]);
        assert!(reasons[4].contains("no IP address"), "{}", reasons[4]);
        assert!(reasons[5].contains("no host"), "{}", reasons[5]);
        // Skipped IOCs make no rule.
        assert_eq!(list.rules.len(), 3);
        assert_eq!(indicator(&list, "also-good.test").confidence, None);
    }

    #[test]
    fn min_confidence_and_max_age_leave_indicators_out() {
        let text = [
            row("2026-06-01 00:00:00", "1", "fresh.test", "domain", "90"),
            row("2026-06-01 00:00:00", "2", "weak.test", "domain", "50"),
            row("2025-01-01 00:00:00", "3", "old.test", "domain", "90"),
            row(
                "2026-06-01 00:00:00",
                "4",
                "198.51.100.1:80",
                "ip:port",
                "10",
            ),
        ]
        .concat();
        let options = ListOptions {
            min_confidence: Some(75),
            max_age: Some(Duration::from_secs(30 * 86_400)),
            ..options(Format::ThreatfoxCsv)
        };
        let list = crate::lists::parse(text.as_bytes(), &options).unwrap();
        assert_eq!(names(&list), ["fresh.test"]);
        assert!(list.response_ips.is_empty());
        assert_eq!(list.skipped.low_confidence, 2);
        assert_eq!(list.skipped.expired, 1);
        assert_eq!(list.skipped.invalid, 0);
        assert_eq!(list.rules.len(), 2);
    }

    #[test]
    fn splits_quoted_fields() {
        let mut fields = Vec::new();
        super::split_row(r#""a", "b,c","d""e""" , "", plain "#, &mut fields).unwrap();
        assert_eq!(fields, ["a", "b,c", "d\"e\"", "", "plain"]);
        assert!(super::split_row(r#""a" x, "b""#, &mut fields).is_err());
        assert!(super::split_row(r#""a", "b"#, &mut fields).is_err());
    }

    #[test]
    fn finds_url_hosts() {
        let host = super::url_host;
        assert_eq!(host("https://a.test/x"), Some("a.test"));
        assert_eq!(host("http://u:p@a.test:81?q=1"), Some("a.test"));
        assert_eq!(host("http://[2001:db8::1]:81/"), Some("2001:db8::1"));
        assert_eq!(host("a.test/x#y"), Some("a.test"));
        assert_eq!(host("http://a.test:99999/"), None);
        assert_eq!(host("http:///x"), None);
    }

    const EXPORT_JSON: &str = r#"{
  "9000104": [
    {
      "ioc_value": "onesevenapps.com",
      "ioc_type": "domain",
      "threat_type": "botnet_cc",
      "malware": "win.remus",
      "malware_alias": null,
      "malware_printable": "Remus",
      "first_seen_utc": "2026-06-06 08:14:03",
      "last_seen_utc": null,
      "confidence_level": 100,
      "is_compromised": false,
      "reference": "https://example.test/remus",
      "tags": "Remus,RemusStealer",
      "anonymous": "0",
      "reporter": "someone"
    }
  ],
  "9000101": [
    {
      "ioc_value": "posdteu.shop",
      "ioc_type": "domain",
      "threat_type": "botnet_cc",
      "malware": "win.remus",
      "malware_printable": "Remus",
      "first_seen_utc": "2026-06-06 08:14:02",
      "last_seen_utc": "2026-06-06 10:00:00",
      "confidence_level": "80",
      "reference": null,
      "tags": null
    }
  ],
  "9000105": [
    {
      "ioc_value": "0123456789abcdef0123456789abcdef",
      "ioc_type": "md5_hash",
      "confidence_level": 100,
      "tags": null
    }
  ]
}
"#;

    #[test]
    fn reads_the_json_export_in_file_order() {
        let list = json(EXPORT_JSON).unwrap();
        assert_eq!(names(&list), ["onesevenapps.com", "posdteu.shop"]);
        assert_eq!(list.lines, 42);
        assert_eq!(unsupported(&list, "file hash IOC"), 1);
        assert_eq!(list.rules.len(), 3);

        let first = indicator(&list, "onesevenapps.com");
        assert_eq!(first.id.as_deref(), Some("9000104"));
        assert_eq!(first.value.as_deref(), Some("onesevenapps.com"));
        assert_eq!(first.ioc_type.as_deref(), Some("domain"));
        assert_eq!(first.family.as_deref(), Some("Remus"));
        assert_eq!(first.malware.as_deref(), Some("win.remus"));
        assert_eq!(first.threat_type.as_deref(), Some("botnet_cc"));
        assert_eq!(first.confidence, Some(100));
        assert_eq!(first.first_seen.as_deref(), Some("2026-06-06T08:14:03Z"));
        assert_eq!(first.last_seen, None);
        assert_eq!(tag_texts(&first.tags), ["Remus", "RemusStealer"]);
        assert_eq!(
            first.reference.as_deref(),
            Some("https://example.test/remus")
        );

        let second = indicator(&list, "posdteu.shop");
        assert_eq!(second.confidence, Some(80));
        assert_eq!(second.last_seen.as_deref(), Some("2026-06-06T10:00:00Z"));
        assert!(second.tags.is_empty());
    }

    const API_JSON: &str = r#"{
  "query_status": "ok",
  "data": [
    {
      "id": "9000101",
      "ioc": "posdteu.shop",
      "threat_type": "botnet_cc",
      "threat_type_desc": "Indicator that identifies a botnet command&control server (C&C)",
      "ioc_type": "domain",
      "malware": "win.remus",
      "malware_printable": "Remus",
      "malware_alias": null,
      "confidence_level": 100,
      "first_seen": "2026-06-06 08:14:02 UTC",
      "last_seen": null,
      "reference": null,
      "tags": ["Remus", " RemusStealer ", ""]
    },
    {
      "id": 9000102,
      "ioc": "198.51.100.20:443",
      "ioc_type": "ip:port",
      "threat_type": "botnet_cc",
      "malware": "win.remus",
      "malware_printable": "Remus",
      "confidence_level": "90",
      "first_seen": "2026-06-06 08:14:03 UTC",
      "last_seen": "not a time",
      "tags": null
    }
  ]
}"#;

    #[test]
    fn reads_the_api_response() {
        let list = json(API_JSON).unwrap();
        assert_eq!(names(&list), ["posdteu.shop"]);
        let domain = indicator(&list, "posdteu.shop");
        assert_eq!(domain.id.as_deref(), Some("9000101"));
        assert_eq!(domain.confidence, Some(100));
        assert_eq!(domain.first_seen.as_deref(), Some("2026-06-06T08:14:02Z"));
        assert_eq!(tag_texts(&domain.tags), ["Remus", "RemusStealer"]);

        assert_eq!(response_ips(&list), ["198.51.100.20/32"]);
        let rule = list.response_ips[0].rule as usize;
        let address = list.rules[rule].indicator.as_deref().unwrap();
        assert_eq!(address.id.as_deref(), Some("9000102"));
        assert_eq!(address.confidence, Some(90));
        assert_eq!(address.last_seen, None);
        assert!(address.tags.is_empty());
    }

    #[test]
    fn no_result_is_an_empty_list() {
        let text =
            r#"{"query_status": "no_result", "data": "Your search did not yield any results"}"#;
        let list = json(text).unwrap();
        assert_eq!(list.entries(), 0);
        assert_eq!(list.skipped.invalid, 0);
    }

    #[test]
    fn a_failed_query_is_an_error() {
        let text = "{\n  \"query_status\": \"illegal_search_term\",\n  \"data\": \"x\"\n}\n";
        let broken = json(text).unwrap_err();
        assert_eq!(broken.line, 1);
        assert_eq!(
            broken.reason,
            "feed answered query_status \"illegal_search_term\""
        );
    }

    #[test]
    fn a_json_syntax_error_names_its_line() {
        let text = "{\n  \"query_status\": \"ok\",\n  \"data\": [\n    {\"id\": 1,,}\n  ]\n}\n";
        let broken = json(text).unwrap_err();
        assert_eq!(broken.line, 4);
        assert!(
            broken.reason.starts_with("invalid JSON: "),
            "{}",
            broken.reason
        );
        assert!(!broken.reason.contains("at line"), "{}", broken.reason);
    }

    #[test]
    fn bad_json_entries_are_skipped_at_their_id() {
        let text = r#"{
  "1": [{"ioc_value": "good.test", "ioc_type": "domain"}],
  "2": [{"ioc_value": "bad name.test", "ioc_type": "domain"}],
  "3": [{"ioc_value": "x.test", "ioc_type": "domain", "confidence_level": 101}],
  "4": [{"ioc_value": "nowhere", "ioc_type": "ip:port"}]
}"#;
        let list = json(text).unwrap();
        assert_eq!(names(&list), ["good.test"]);
        assert_eq!(skipped_lines(&list), [3, 4, 5]);
        assert_eq!(list.rules.len(), 2);
    }
}
