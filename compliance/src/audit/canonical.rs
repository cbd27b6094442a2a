//! Canonical JSON as used for every hashed or signed byte string of the audit trail.
//!
//! The encoding is the I-JSON subset of RFC 8785 (JCS) that the trail needs: object members
//! sorted by their keys' UTF-16 code units, no insignificant whitespace, strings escaped
//! minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`,
//! everything else literal). Numbers are restricted to integers within ±2^53 so that every
//! JSON implementation reads them exactly; 64-bit counters are therefore carried as decimal
//! strings by the types that use this module.

use serde::Serialize;
use serde_json::Value;

/// A value that has no canonical encoding here (a float, or an integer beyond ±2^53).
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The value did not serialise to JSON.
    #[error("not serialisable to JSON: {0}")]
    Serde(#[from] serde_json::Error),
    /// Non-integral or too large number.
    #[error("number {0} has no canonical form (use an integer within ±2^53 or a string)")]
    Number(String),
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const MAX_SAFE: u64 = (1 << 53) - 1;

/// Bytes that must be escaped in a JSON string: control characters, `"` and `\\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a quoted, minimally escaped JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a `u64` as a quoted decimal string.
pub(crate) fn write_u64_str(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    write_u64(out, v);
    out.push(b'"');
}

/// Appends a `u64` in decimal.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Compares two object keys by UTF-16 code units, as RFC 8785 orders members.
pub(crate) fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Appends the canonical encoding of `v`.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE) {
                write_u64(out, u);
            } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_SAFE) {
                out.push(b'-');
                write_u64(out, i.unsigned_abs());
            } else {
                return Err(CanonicalError::Number(n.to_string()));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| key_order(a.0, b.0));
            out.push(b'{');
            for (i, (k, val)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, val)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The canonical encoding of any serialisable value.
pub(crate) fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let v = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, &v)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sorts_and_strips_whitespace() {
        let v =
            json!({"b": [1, true, null], "a": {"z": "x", "y": -5}, "\u{ff01}": 0, "\u{1f600}": 1});
        // By code point (and UTF-8) U+FF01 < U+1F600, but U+1F600 is the surrogate pair
        // 0xD83D 0xDE00 and 0xD83D < 0xFF01, so RFC 8785 puts it first.
        assert_eq!(
            canon(&v),
            "{\"a\":{\"y\":-5,\"z\":\"x\"},\"b\":[1,true,null],\"\u{1f600}\":1,\"\u{ff01}\":0}"
        );
    }

    #[test]
    fn escapes_minimally() {
        let v = json!("q\"b\\n\nt\tc\u{1}\u{1f}/\u{7f}\u{e9}");
        assert_eq!(
            canon(&v),
            "\"q\\\"b\\\\n\\nt\\tc\\u0001\\u001f/\u{7f}\u{e9}\""
        );
        // serde_json reads the canonical form back to the same value.
        let back: Value = serde_json::from_str(&canon(&v)).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn rejects_unsafe_numbers() {
        let mut out = Vec::new();
        assert!(write_value(&mut out, &json!(1.5)).is_err());
        assert!(write_value(&mut out, &json!(u64::MAX)).is_err());
        assert!(write_value(&mut out, &json!(MAX_SAFE)).is_ok());
    }

    #[test]
    fn writes_u64() {
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64_str(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{v}\""));
        }
    }
}

/// Serde adapters for the string-encoded values of the trail's JSON files.
pub(crate) mod serde_str {
    /// `u64` as a canonical decimal string.
    pub(crate) mod u64_string {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
            let s = String::deserialize(d)?;
            crate::audit::event::parse_u64_str(&s)
                .ok_or_else(|| D::Error::custom("expected a decimal u64 string"))
        }
    }

    /// A 32-byte hash as lowercase hex.
    pub(crate) mod hex32 {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
            let s = String::deserialize(d)?;
            super::parse_hex32(&s)
                .ok_or_else(|| D::Error::custom("expected 64 lowercase hex digits"))
        }
    }

    /// A list of 32-byte hashes as lowercase hex.
    pub(crate) mod hex32_vec {
        use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

        pub(crate) fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for h in v {
                seq.serialize_element(&hex::encode(h))?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<[u8; 32]>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.iter()
                .map(|s| {
                    super::parse_hex32(s)
                        .ok_or_else(|| D::Error::custom("expected 64 lowercase hex digits"))
                })
                .collect()
        }
    }

    /// A 64-byte signature as lowercase hex.
    pub(crate) mod hex64 {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub(crate) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 64];
            if s.len() != 128 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(D::Error::custom("expected 128 lowercase hex digits"));
            }
            hex::decode_to_slice(&s, &mut out)
                .map_err(|_| D::Error::custom("expected 128 lowercase hex digits"))?;
            Ok(out)
        }
    }

    /// Optional 64-byte signature as lowercase hex.
    pub(crate) mod opt_hex64 {
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<[u8; 64]>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(sig) => super::hex64::serialize(sig, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<[u8; 64]>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super::hex64")] [u8; 64]);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }

    /// Parses exactly 64 lowercase hex digits.
    pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(out)
    }
}
