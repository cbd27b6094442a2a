//! PAN guard (PCI DSS 3.5): finds plaintext primary account numbers in record bytes.
//!
//! A candidate is a run of 13-19 ASCII digits (single spaces or hyphens between groups are
//! allowed, as in `4111 1111 1111 1111`) that is not part of a longer digit run, passes the
//! Luhn check and starts with a known issuer prefix (Visa, Mastercard, American Express,
//! Discover, JCB, Diners Club, UnionPay, Maestro). JSON numbers and strings, Avro and Protobuf
//! strings, CSV and free text are all covered this way by [`scan`]. Integers in binary
//! encodings (an Avro `long`, a Protobuf `int64`) are covered by [`FieldGuard`], which checks
//! the decoded fields of records whose schema is known (string fields with [`scan`], integer
//! fields as their decimal digits), optionally only fields carrying given tags, never fields
//! on its field allowlist. A topic's allowlist names numbers that look like PANs but are not
//! (order ids). The number itself is never echoed: callers get a keyed hash to correlate
//! reports.

use std::collections::HashSet;

use gatehouse_registry::decode::path_matches;
use gatehouse_registry::validate::{FieldScanner, ScalarValue, ScannedField};

/// Shortest and longest PAN.
const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

/// A PAN found in some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The digits (kept only long enough to hash; never logged).
    digits: String,
}

impl Finding {
    /// A keyed hash of the number (first 8 bytes of HMAC-SHA-256, hex), safe to log.
    pub fn keyed_hash(&self, key: &[u8; 32]) -> String {
        let mac = gatehouse_policy::store::record_mac(key, "pan", self.digits.as_bytes(), None);
        mac[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the number is on the allowlist.
    pub fn allowed(&self, allowlist: &HashSet<String>) -> bool {
        allowlist.contains(&self.digits)
    }
}

/// The first PAN in `bytes` that is not allowlisted.
pub fn scan(bytes: &[u8], allowlist: &HashSet<String>) -> Option<Finding> {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run of digits with single separators between digits.
        let start = i;
        let mut digits = String::new();
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b as char);
                j += 1;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
                && j > start
            {
                j += 1;
            } else {
                break;
            }
            if digits.len() > MAX_DIGITS + 8 {
                // Far too long to be a card number; skip the whole run.
                while j < bytes.len()
                    && (bytes[j].is_ascii_digit() || bytes[j] == b' ' || bytes[j] == b'-')
                {
                    j += 1;
                }
                digits.clear();
                break;
            }
        }
        if (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) && is_pan(&digits) {
            let f = Finding { digits };
            if !f.allowed(allowlist) {
                return Some(f);
            }
        }
        i = j.max(i + 1);
    }
    None
}

/// An integer's decimal digits as a PAN, unless allowlisted.
pub fn check_number(n: u64, allowlist: &HashSet<String>) -> Option<Finding> {
    // Fewer than 13 digits cannot be a PAN: no allocation for ordinary numbers.
    if n < 1_000_000_000_000 {
        return None;
    }
    let digits = n.to_string();
    if digits.len() <= MAX_DIGITS && is_pan(&digits) {
        let f = Finding { digits };
        if !f.allowed(allowlist) {
            return Some(f);
        }
    }
    None
}

/// The PAN guard over decoded fields (a [`FieldScanner`] for the validator).
pub struct FieldGuard<'a> {
    /// Numbers that are not PANs.
    pub allowlist: &'a HashSet<String>,
    /// Only fields with one of these tags are checked (`None`: all).
    pub tags: Option<&'a HashSet<String>>,
    /// Field paths never checked (wildcards allowed).
    pub exempt: &'a [String],
    /// Key of the keyed hash.
    pub key: &'a [u8; 32],
}

impl FieldScanner for FieldGuard<'_> {
    fn check(&self, field: &ScannedField<'_>) -> Option<String> {
        if let Some(tags) = self.tags
            && !field.tags.iter().any(|t| tags.contains(t))
        {
            return None;
        }
        if !self.exempt.is_empty() {
            let root = field
                .full_name
                .strip_suffix(field.path)
                .map(|r| r.trim_end_matches('.'))
                .unwrap_or(field.full_name);
            if self
                .exempt
                .iter()
                .any(|p| path_matches(p, field.path, field.full_name, root))
            {
                return None;
            }
        }
        let found = match field.value {
            ScalarValue::Str(s) => scan(s.as_bytes(), self.allowlist),
            ScalarValue::Int(i) => u64::try_from(i)
                .ok()
                .and_then(|n| check_number(n, self.allowlist)),
            ScalarValue::UInt(n) => check_number(n, self.allowlist),
        }?;
        Some(format!(
            "contains what looks like a plaintext card number (PAN, keyed hash {}); \
             tokenize or encrypt it before producing",
            found.keyed_hash(self.key)
        ))
    }
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

fn known_issuer(d: &str) -> bool {
    let p = |n: usize| d.get(..n).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let len = d.len();
    match d.as_bytes().first() {
        Some(b'4') => matches!(len, 13 | 16 | 19),
        // Mastercard 51-55, Maestro 50 and 56-59.
        Some(b'5') => (50..=59).contains(&p(2)),
        Some(b'2') => (2221..=2720).contains(&p(4)) && len == 16,
        Some(b'3') => {
            matches!(p(2), 34 | 37) && len == 15
                || (3528..=3589).contains(&p(4))
                || (300..=305).contains(&p(3))
                || matches!(p(2), 36 | 38 | 39)
        }
        // Discover 6011/644-649/65, UnionPay 62, Maestro 6x: every 6 is an issuer prefix.
        Some(b'6') => true,
        _ => false,
    }
}

fn is_pan(digits: &str) -> bool {
    known_issuer(digits) && luhn(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn finds_card_numbers_in_text_and_json() {
        for text in [
            "4111111111111111",
            "card 4111 1111 1111 1111 ok",
            r#"{"pan":"5500-0000-0000-0004"}"#,
            r#"{"n":378282246310005}"#,
            "6011111111111117",
            "3530111333300000",
        ] {
            assert!(scan(text.as_bytes(), &none()).is_some(), "{text}");
        }
    }

    #[test]
    fn ignores_what_is_not_a_card_number() {
        for text in [
            "4111111111111112",     // Luhn fails
            "1234567812345670",     // passes Luhn, no issuer
            "41111111111111110000", // part of a longer run
            "411111111111",         // too short
            "order 2024-11-25 12:00",
        ] {
            assert!(scan(text.as_bytes(), &none()).is_none(), "{text}");
        }
    }

    #[test]
    fn allowlist_and_keyed_hash() {
        let f = scan(b"x 4111111111111111 y", &none()).expect("found");
        let mut allow = HashSet::new();
        allow.insert("4111111111111111".to_string());
        assert!(scan(b"x 4111111111111111 y", &allow).is_none());
        let h = f.keyed_hash(&[7; 32]);
        assert_eq!(h.len(), 16);
        assert!(!h.contains("4111"));
    }

    #[test]
    fn numbers_and_field_guard() {
        assert!(check_number(4111111111111111, &none()).is_some());
        assert!(check_number(4111111111111112, &none()).is_none());
        assert!(check_number(1732550400000, &none()).is_none());
        let tags: HashSet<String> = ["PAN".to_string()].into_iter().collect();
        let exempt = vec!["order_ref".to_string()];
        let allow = none();
        let g = FieldGuard {
            allowlist: &allow,
            tags: None,
            exempt: &exempt,
            key: &[1; 32],
        };
        let field = |path: &'static str, tags: &'static [String], value| ScannedField {
            path,
            full_name: "shop.Pay.x",
            tags,
            value,
        };
        let why = g
            .check(&field("card", &[], ScalarValue::Int(4111111111111111)))
            .expect("found");
        assert!(why.contains("keyed hash") && !why.contains("4111"), "{why}");
        assert!(
            g.check(&field("card", &[], ScalarValue::Str("5500-0000-0000-0004")))
                .is_some()
        );
        assert!(
            g.check(&field("order_ref", &[], ScalarValue::Int(4111111111111111)))
                .is_none()
        );
        let tagged = FieldGuard {
            tags: Some(&tags),
            ..g
        };
        assert!(
            tagged
                .check(&field("card", &[], ScalarValue::Int(4111111111111111)))
                .is_none()
        );
    }
}
