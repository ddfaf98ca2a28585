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

/// The name a list line holds when the line is nothing but a name already in normal form
/// (lower case ASCII, valid labels), with at most a trailing dot and `\r`: the common case
/// of a large plain list, checked in one pass over the bytes and returned without a copy.
pub fn plain_name(line: &[u8]) -> Option<&str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let name = line.strip_suffix(b".").unwrap_or(line);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let mut label = 0usize;
    let mut digits = 0usize;
    for &byte in name {
        match byte {
            b'a'..=b'z' | b'-' | b'_' => label += 1,
            b'0'..=b'9' => {
                label += 1;
                digits += 1;
            }
            b'.' if label > 0 => {
                label = 0;
                digits = 0;
            }
            _ => return None,
        }
        if label > 63 {
            return None;
        }
    }
    // An all-digit last label is an address (a hosts line without a name), not a name.
    if label == 0 || digits == label {
        return None;
    }
    // Every byte is ASCII, so the bytes are UTF-8.
    std::str::from_utf8(name).ok()
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
    fn plain_names_pass_only_in_normal_form() {
        use super::plain_name;
        assert_eq!(plain_name(b"posdteu.shop"), Some("posdteu.shop"));
        assert_eq!(plain_name(b"a-b_c.x9.\r"), Some("a-b_c.x9"));
        let label = "x".repeat(64);
        for other in [
            &b"Posdteu.shop"[..],
            b"a..b",
            b".a",
            b"a b",
            b"# c",
            b"",
            b".",
            b"b\xc3\xbccher.example",
            b"0.0.0.0",
            label.as_bytes(),
        ] {
            assert_eq!(
                plain_name(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
            // Whatever the fast path refuses still gets the full treatment.
        }
        assert_eq!(plain_name(&label.as_bytes()[1..]), Some(&label[1..]));
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
