//! Normalises a domain taken from a list: lower case, no trailing dot, IDNs as punycode.

use std::borrow::Cow;

/// Why a listed name was rejected.
pub type Reason = String;

/// Longest presentation name without its trailing dot (RFC 1035 §2.3.4: 255 wire octets).
const MAX_NAME: usize = 253;

/// Returns the name in the form the index stores, or why it is not a usable domain. A name
/// already in that form comes back as it is, without a copy.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, Reason> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err(format!("empty name {raw:?}"));
    }
    let ascii: Cow<'_, str> = if !trimmed.is_ascii() {
        let converted = idna::domain_to_ascii(trimmed)
            .map_err(|_| format!("invalid internationalised name {raw:?}"))?;
        Cow::Owned(converted)
    } else if trimmed.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    };

    if ascii.len() > MAX_NAME {
        return Err(format!("name longer than {MAX_NAME} characters"));
    }
    for label in ascii.split('.') {
        check_label(label).map_err(|why| format!("{why} in {raw:?}"))?;
    }
    Ok(ascii)
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 63 {
        return Err("label longer than 63 characters");
    }
    // Underscores appear in real names (_dmarc, SRV owners); anything else is not a host name.
    let valid = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
    if !label.bytes().all(valid) {
        return Err("character not allowed in a domain");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn lowercases_and_strips_the_root_dot() {
        assert_eq!(normalize("PosdTeu.SHOP.").unwrap(), "posdteu.shop");
    }

    #[test]
    fn converts_idns_to_punycode() {
        assert_eq!(
            normalize("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        assert!(normalize("").is_err());
        assert!(normalize("a..b").unwrap_err().contains("empty label"));
        assert!(
            normalize("bad name.com")
                .unwrap_err()
                .contains("not allowed")
        );
        assert!(
            normalize(&format!("{}.com", "x".repeat(64)))
                .unwrap_err()
                .contains("63")
        );
        assert!(normalize("http://x.com/").is_err());
    }
}
