//! Reads ThreatFox exports.

use super::{Broken, ListBuilder};

/// Reads a ThreatFox CSV export into `list`.
pub fn parse_csv(_bytes: &[u8], _list: &mut ListBuilder<'_>) {}

/// Reads a ThreatFox JSON export or API response into `list`.
pub fn parse_json(_bytes: &[u8], _list: &mut ListBuilder<'_>) -> Result<(), Broken> {
    Ok(())
}
