//! Reads RPZ policy zone files.

use super::{Broken, ListBuilder};

/// Reads the text of an RPZ zone file into `list`.
pub fn parse(_bytes: &[u8], _list: &mut ListBuilder<'_>) -> Result<(), Broken> {
    Ok(())
}
