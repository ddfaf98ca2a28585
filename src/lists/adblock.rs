//! Reads AdBlock-style lists (the DNS subset).

use super::ListBuilder;

/// Reads the text of an AdBlock list into `list`.
pub fn parse(_bytes: &[u8], _list: &mut ListBuilder<'_>) {}
