//! The query name as the policy sees it: lower case, dotted, with its label boundaries.
//!
//! The name is decoded once from the wire into a fixed buffer on the stack, so the hot path can
//! test every suffix of the name against the lists without allocating.

use std::fmt;

/// Longest presentation form we keep: 255 wire octets, with room for escaped octets.
const MAX_TEXT: usize = 512;
/// A wire name of 255 octets has at most 127 labels.
const MAX_LABELS: usize = 128;

/// A query name in lower case presentation form without the trailing dot.
///
/// A `.` or `\` inside a label is escaped with `\`, so a label can never pass for two labels
/// and a listed domain can only match at a real label boundary.
#[derive(Clone)]
pub struct QueryName {
    text: [u8; MAX_TEXT],
    len: u16,
    starts: [u16; MAX_LABELS],
    labels: u8,
}

impl QueryName {
    /// An empty name (the root).
    pub fn root() -> Self {
        Self {
            text: [0; MAX_TEXT],
            len: 0,
            starts: [0; MAX_LABELS],
            labels: 0,
        }
    }

    /// Appends one wire label (1 to 63 octets). Returns `false` when the name is too long.
    pub(crate) fn push_label(&mut self, label: &[u8]) -> bool {
        let labels = usize::from(self.labels);
        if labels >= MAX_LABELS {
            return false;
        }
        let mut at = usize::from(self.len);
        if labels > 0 {
            if at >= MAX_TEXT {
                return false;
            }
            self.text[at] = b'.';
            at += 1;
        }
        self.starts[labels] = at as u16;

        for &octet in label {
            let escaped = matches!(octet, b'.' | b'\\');
            if at + 1 + usize::from(escaped) > MAX_TEXT {
                return false;
            }
            if escaped {
                self.text[at] = b'\\';
                at += 1;
            }
            self.text[at] = octet.to_ascii_lowercase();
            at += 1;
        }

        self.len = at as u16;
        self.labels += 1;
        true
    }

    /// Parses a presentation name (`www.Example.com.`), as typed on the command line.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut name = Self::root();
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Some(name);
        }
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 || !name.push_label(label.as_bytes()) {
                return None;
            }
        }
        Some(name)
    }

    /// The whole name, for example `www.posdteu.shop` (empty for the root).
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    /// The whole name as text; names with non-UTF-8 octets are shown lossily.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// Number of labels (0 for the root).
    pub fn label_count(&self) -> usize {
        usize::from(self.labels)
    }

    /// The name without its first `label` labels: suffix 0 is the whole name.
    pub fn suffix(&self, label: usize) -> &[u8] {
        let start = usize::from(self.starts[label]);
        &self.text[start..usize::from(self.len)]
    }

    /// Every suffix from the whole name down to the top-level label, longest first.
    pub fn suffixes(&self) -> impl Iterator<Item = (usize, &[u8])> {
        (0..self.label_count()).map(|label| (label, self.suffix(label)))
    }
}

impl fmt::Debug for QueryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryName({:?})", self.to_text())
    }
}

impl fmt::Display for QueryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_lists_suffixes() {
        let name = QueryName::from_text("WWW.PosdTeu.Shop.").unwrap();
        assert_eq!(name.as_bytes(), b"www.posdteu.shop");
        let suffixes: Vec<_> = name.suffixes().map(|(_, s)| s.to_vec()).collect();
        assert_eq!(
            suffixes,
            vec![
                b"www.posdteu.shop".to_vec(),
                b"posdteu.shop".to_vec(),
                b"shop".to_vec()
            ]
        );
    }

    #[test]
    fn root_has_no_labels() {
        let name = QueryName::from_text(".").unwrap();
        assert_eq!(name.label_count(), 0);
        assert_eq!(name.as_bytes(), b"");
    }

    #[test]
    fn dot_inside_a_label_is_escaped() {
        let mut name = QueryName::root();
        assert!(name.push_label(b"evil.posdteu"));
        assert!(name.push_label(b"shop"));
        assert_eq!(name.as_bytes(), b"evil\\.posdteu.shop");
        assert_eq!(name.suffix(1), b"shop");
    }

    #[test]
    fn rejects_empty_and_long_labels() {
        assert!(QueryName::from_text("a..b").is_none());
        assert!(QueryName::from_text(&"x".repeat(64)).is_none());
    }
}
