//! IOC and allow lists: reading a list file, in any of the feed formats, into name triggers,
//! IP triggers, per-entry rules and indicator metadata.
//!
//! Reading the file and parsing its text are separate steps. A file that cannot be read, or
//! whose structure is broken (a JSON syntax error, a feed that reports a failed query), is an
//! error. A bad entry is counted, reported with its line number and skipped; an entry of a kind
//! sinkhole does not enforce (a file hash, a cosmetic AdBlock rule, an RPZ NSDNAME trigger) is
//! counted as unsupported.

pub mod adblock;
pub mod builder;
pub mod detect;
pub mod domain;
pub mod names;
pub mod plain;
pub mod rpz;
pub mod rule;
pub mod threatfox;

pub use builder::ListBuilder;
pub use names::Names;
pub use rule::{EntryAction, Indicator, LocalData, Rule, Scope};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use serde::Deserialize;

/// The formats a list may be written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detected from the content; see [`detect::detect`].
    #[default]
    Auto,
    Domains,
    Hosts,
    Adblock,
    Rpz,
    ThreatfoxCsv,
    ThreatfoxJson,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Domains => "domains",
            Self::Hosts => "hosts",
            Self::Adblock => "adblock",
            Self::Rpz => "rpz",
            Self::ThreatfoxCsv => "threatfox-csv",
            Self::ThreatfoxJson => "threatfox-json",
        }
    }
}

/// How a list is read, from its config.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub format: Format,
    /// Reach of entries whose format does not say (domains, hosts, ThreatFox).
    pub scope: Scope,
    /// RPZ: the zone's origin, lower case without the trailing dot; owners are read
    /// relative to it.
    pub origin: Option<String>,
    /// Indicators with a lower confidence are left out.
    pub min_confidence: Option<u8>,
    /// Indicators last (or else first) seen longer ago are left out.
    pub max_age: Option<Duration>,
    /// The list's configured confidence and first sighting, for indicators without their own.
    pub confidence: Option<u8>,
    pub first_seen: Option<String>,
    /// The time `max_age` counts back from.
    pub now: SystemTime,
}

impl ListOptions {
    /// The options as comparable text: two reads of the same file with the same key give the
    /// same list (but for `max_age`, which moves with `now`).
    pub fn key(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.format,
            self.scope,
            self.origin,
            self.min_confidence,
            self.max_age,
            self.confidence,
            self.first_seen
        )
    }
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            scope: Scope::NameAndSubdomains,
            origin: None,
            min_confidence: None,
            max_age: None,
            confidence: None,
            first_seen: None,
            now: SystemTime::now(),
        }
    }
}

/// An entry's rule and reach, for lists whose entries differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub rule: u32,
    pub scope: Scope,
}

/// Domain triggers of a list: names with their reach and rule.
#[derive(Debug, Clone, Default)]
pub struct NameTriggers {
    /// Shared with the policy's index, which points into it.
    pub names: Arc<Names>,
    /// One per name, or `None` when every name has `scope` and rule 0.
    pub attrs: Option<Arc<[Attr]>>,
    pub scope: Scope,
}

impl NameTriggers {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The rule and reach of the name at `index`.
    pub fn attr(&self, index: usize) -> Attr {
        match &self.attrs {
            Some(attrs) => attrs[index],
            None => Attr {
                rule: rule::LIST_RULE,
                scope: self.scope,
            },
        }
    }

    /// Every name with its rule and reach.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Attr)> {
        self.names
            .iter()
            .enumerate()
            .map(|(index, name)| (name, self.attr(index)))
    }
}

/// An IP network that triggers a rule: an address in an answer, or a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpTrigger {
    pub network: IpNet,
    pub rule: u32,
}

/// A line of a list that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line: usize,
    pub reason: String,
}

/// Entries that were left out, by why.
#[derive(Debug, Clone, Default)]
pub struct Skipped {
    /// Invalid entries: the first [`Skipped::KEPT`], in order.
    pub lines: Vec<SkippedLine>,
    /// Invalid entries in all.
    pub invalid: usize,
    /// Entries of kinds sinkhole does not enforce, counted by kind.
    pub unsupported: Vec<(&'static str, usize)>,
    /// Indicators under the list's `min_confidence`.
    pub low_confidence: usize,
    /// Indicators older than the list's `max_age`.
    pub expired: usize,
}

impl Skipped {
    /// Invalid lines kept with their reason; the rest are only counted.
    pub const KEPT: usize = 100;

    pub fn unsupported_total(&self) -> usize {
        self.unsupported.iter().map(|(_, count)| count).sum()
    }
}

/// Everything a list's text holds.
#[derive(Debug, Clone, Default)]
pub struct ParsedList {
    /// The format the text was read as.
    pub format: Format,
    /// Names the list blocks (or, for an allowlist, protects).
    pub block: NameTriggers,
    /// Exceptions inside a blocklist (AdBlock `@@`, RPZ PASSTHRU).
    pub allow: NameTriggers,
    /// Response-IP triggers (RPZ `rpz-ip`, ThreatFox `ip:port`).
    pub response_ips: Vec<IpTrigger>,
    /// Client-IP triggers (RPZ `rpz-client-ip`).
    pub client_ips: Vec<IpTrigger>,
    /// Rules the entries point at; index 0 is [`Rule::default`], the list's own.
    pub rules: Arc<[Rule]>,
    pub skipped: Skipped,
    /// Lines read, counting blank and comment lines.
    pub lines: usize,
}

impl ParsedList {
    /// Triggers of every kind.
    pub fn entries(&self) -> usize {
        self.block.len() + self.allow.len() + self.response_ips.len() + self.client_ips.len()
    }
}

/// A list read from disk.
#[derive(Debug, Clone)]
pub struct LoadedList {
    pub path: PathBuf,
    pub parsed: ParsedList,
    pub elapsed: Duration,
    /// The file as it was just before it was read; `None` when that could not be seen.
    pub stamp: Option<FileStamp>,
    /// SHA-256 of the file's bytes, in hex: what `sha256sum` prints for it.
    pub sha256: String,
    /// [`ListOptions::key`] of the options it was read with.
    pub options_key: String,
}

/// What tells one version of a file from the next without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// When the file was last written, where the system tells.
    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    /// The file's stamp now; `None` when it cannot be seen (deleted, say).
    pub fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        })
    }
}

/// A list file that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{path}: cannot read list: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Broken {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Why a list's text cannot be used at all, at which line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub line: usize,
    pub reason: String,
}

impl ListError {
    /// Whether the file is simply not there (yet).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl LoadedList {
    /// An empty stand-in for a list whose file is not there yet.
    pub fn missing(path: &Path, options: &ListOptions) -> Self {
        Self {
            path: path.to_owned(),
            parsed: ParsedList {
                format: options.format,
                ..ParsedList::default()
            },
            elapsed: Duration::ZERO,
            stamp: None,
            sha256: String::new(),
            options_key: options.key(),
        }
    }
}

/// Reads and parses one list file.
pub fn load(path: &Path, options: &ListOptions) -> Result<LoadedList, ListError> {
    let started = Instant::now();
    // Taken before reading: a change in between makes the stamp stale, which costs one
    // needless reload, never a missed one.
    let stamp = FileStamp::of(path);
    let bytes = std::fs::read(path).map_err(|source| ListError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let parsed = parse(&bytes, options).map_err(|broken| ListError::Broken {
        path: path.display().to_string(),
        line: broken.line,
        reason: broken.reason,
    })?;
    Ok(LoadedList {
        path: path.to_owned(),
        parsed,
        elapsed: started.elapsed(),
        stamp,
        sha256: sha256_hex(&bytes),
        options_key: options.key(),
    })
}

/// The SHA-256 of `bytes` in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Whether `parsed` may replace the list in force, which holds `current()` entries (asked
/// only when needed): not when every entry is bad, nor when it is empty and the list in force
/// is not, since either would lift the blocks in force.
pub fn check_replacement(
    parsed: &ParsedList,
    current: impl FnOnce() -> usize,
) -> Result<(), String> {
    if parsed.entries() > 0 {
        return Ok(());
    }
    if let Some(first) = parsed.skipped.lines.first() {
        return Err(format!(
            "no valid entry; line {}: {}",
            first.line, first.reason
        ));
    }
    match current() {
        0 => Ok(()),
        count => Err(format!("empty list would replace {count} entries")),
    }
}

/// The entries of the list file at `path` as `options` read it; 0 when it cannot be read.
pub fn entries_on_disk(path: &Path, options: &ListOptions) -> usize {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| parse(&bytes, options).ok())
        .map_or(0, |parsed| parsed.entries())
}

/// A UTF-8 byte order mark, which exports from Windows tools often start with.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Parses a list's text in the configured format, or the one its content shows. A byte
/// order mark is dropped here, for every format.
pub fn parse(bytes: &[u8], options: &ListOptions) -> Result<ParsedList, Broken> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let format = match options.format {
        Format::Auto => detect::detect(bytes),
        format => format,
    };
    let mut list = ListBuilder::new(options, bytes.len());
    match format {
        Format::Auto | Format::Domains | Format::Hosts => plain::parse(bytes, &mut list),
        Format::Adblock => adblock::parse(bytes, &mut list),
        Format::Rpz => rpz::parse(bytes, &mut list)?,
        Format::ThreatfoxCsv => threatfox::parse_csv(bytes, &mut list),
        Format::ThreatfoxJson => threatfox::parse_json(bytes, &mut list)?,
    }
    Ok(list.finish(format))
}

/// The lines of a text, numbered from 1, without their line ends (LF or CRLF). A line that is
/// not UTF-8 comes as `Err` with its number.
pub fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&str, usize>)> {
    numbered_lines_raw(bytes).map(|(line, raw)| {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        (line, std::str::from_utf8(raw).map_err(|_| line))
    })
}

/// The lines of a text as bytes, numbered from 1, without the LF (a CR stays).
pub fn numbered_lines_raw(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    // A final newline ends the last line; it does not start another.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = if bytes.is_empty() { None } else { Some(bytes) };
    bytes
        .into_iter()
        .flat_map(|bytes| bytes.split(|&byte| byte == b'\n'))
        .enumerate()
        .map(|(index, raw)| (index + 1, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_that_would_lift_blocks_does_not_replace_one() {
        let read = |text: &str| parse(text.as_bytes(), &ListOptions::default()).unwrap();
        assert_eq!(check_replacement(&read("a.test\n"), || 5), Ok(()));
        assert_eq!(check_replacement(&read("# nothing yet\n"), || 0), Ok(()));
        assert_eq!(
            check_replacement(&read("# emptied\n"), || 5),
            Err("empty list would replace 5 entries".to_owned())
        );
        let error = check_replacement(&read("bad..name\n"), || 0).unwrap_err();
        assert!(error.starts_with("no valid entry; line 1: "), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.txt");
        assert_eq!(entries_on_disk(&path, &ListOptions::default()), 0);
        std::fs::write(&path, "a.test\nb.test\n").unwrap();
        assert_eq!(entries_on_disk(&path, &ListOptions::default()), 2);
    }

    #[test]
    fn a_file_stamp_changes_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "a.test\n").unwrap();
        let loaded = load(&path, &ListOptions::default()).unwrap();
        assert_eq!(FileStamp::of(&path), loaded.stamp);
        // `printf 'a.test\n' | sha256sum`
        assert_eq!(
            loaded.sha256,
            "5f0f8175e59f623c3016f1ab6162b8a1118702ee5b1bb773b1dad2969ddd7857"
        );

        std::fs::write(&path, "a.test\nb.test\n").unwrap();
        assert_ne!(FileStamp::of(&path), loaded.stamp, "rewritten");
        let renamed = dir.path().join("new.txt");
        std::fs::write(&renamed, "c.test\n").unwrap();
        std::fs::rename(&renamed, &path).unwrap();
        assert_ne!(FileStamp::of(&path), loaded.stamp, "replaced by rename");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(FileStamp::of(&path), None, "deleted");
    }
}
