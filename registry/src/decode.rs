//! Decoding a validated payload into a format-neutral value ([`Datum`]) for the data guard's
//! data-quality rules and per-field checks.
//!
//! Only used when a schema has rules to run or a topic asks for field checks: the plain
//! validation path never builds values. Avro binary datums are walked over the registry's Avro
//! model (records keep their field names and `confluent:tags`), Protobuf payloads arrive as a
//! `prost-reflect` `DynamicMessage`, JSON as a `serde_json::Value` walked alongside its JSON
//! Schema (property keyword `confluent:tags`). [`visit_fields`] walks the scalar leaves with
//! each field's dotted path, Confluent-style full name and tags (inline ones plus the schema
//! version's `metadata.tags`, whose keys are paths with `*` / `**` wildcards).

use std::collections::BTreeMap;

use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value as PValue};
use serde_json::Value as Json;

use crate::schema::avro::{AvroSchema, AvroType, NamedKind, Prim};

/// Deepest nesting decoded.
const MAX_DEPTH: usize = 128;
/// Most `$ref` hops followed while looking up a JSON property's schema.
const MAX_REF_HOPS: usize = 8;

/// A decoded record value.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// `null` (Avro null, JSON null, an unset Protobuf message field).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (Avro int/long, Protobuf int32/int64/sint/sfixed/uint32, JSON integer).
    Int(i64),
    /// An unsigned integer that does not fit `i64` (Protobuf uint64, JSON).
    UInt(u64),
    /// A floating-point number.
    Double(f64),
    /// A string (also Avro enum symbols and Protobuf enum value names).
    Str(String),
    /// Bytes (Avro bytes and fixed, Protobuf bytes).
    Bytes(Vec<u8>),
    /// An array / repeated field.
    List(Vec<Datum>),
    /// A map (string keys).
    Map(Vec<(String, Datum)>),
    /// A record / message / JSON object, with its fields in order.
    Record(Vec<FieldDatum>),
}

/// One field of a [`Datum::Record`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDatum {
    /// Field name.
    pub name: String,
    /// Tags declared on the field in the schema (`confluent:tags`).
    pub tags: Vec<String>,
    /// The value.
    pub value: Datum,
}

/// A scalar leaf of a decoded record, as seen by [`visit_fields`].
#[derive(Debug, Clone, Copy)]
pub struct FieldVisit<'a> {
    /// The field name (empty at the root).
    pub name: &'a str,
    /// Dotted path from the root (`customer.card`), without array indexes.
    pub path: &'a str,
    /// Confluent-style full name: the root type's name, a dot, the path (`shop.Order.customer.card`).
    pub full_name: &'a str,
    /// Inline tags and the `metadata.tags` that match the field.
    pub tags: &'a [String],
    /// The value.
    pub value: &'a Datum,
    /// True when the value is an item of a list or map field rather than the field itself.
    pub in_collection: bool,
}

/// Decodes an Avro binary datum.
pub fn avro(schema: &AvroSchema, payload: &[u8]) -> Result<Datum, String> {
    let mut d = AvroDecoder {
        schema,
        buf: payload,
        pos: 0,
        budget: payload.len().saturating_mul(4).saturating_add(1024),
    };
    let v = d.value(&schema.root, 0)?;
    if d.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after the Avro datum",
            payload.len() - d.pos
        ));
    }
    Ok(v)
}

struct AvroDecoder<'a> {
    schema: &'a AvroSchema,
    buf: &'a [u8],
    pos: usize,
    budget: usize,
}

impl AvroDecoder<'_> {
    fn fail(&self, what: &str) -> String {
        format!(
            "the Avro datum does not decode: {what} at byte {}",
            self.pos
        )
    }

    fn long(&mut self) -> Result<i64, String> {
        crate::validate::read_zigzag(self.buf, &mut self.pos).ok_or_else(|| self.fail("varint"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.fail("truncated value")),
        }
    }

    fn length(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| self.fail("negative length"))
    }

    fn tick(&mut self) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| self.fail("too many items for the payload size"))?;
        Ok(())
    }

    /// The next block's item count (0 ends the list or map).
    fn block(&mut self) -> Result<u64, String> {
        let count = self.long()?;
        if count < 0 {
            self.length()?;
        }
        Ok(count.unsigned_abs())
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.length()?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(self.fail("string not UTF-8")),
        }
    }

    fn value(&mut self, t: &AvroType, depth: usize) -> Result<Datum, String> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nesting too deep"));
        }
        self.tick()?;
        match t {
            AvroType::Primitive { prim, .. } => self.prim(*prim),
            AvroType::Array { items, .. } => {
                let mut out = Vec::new();
                loop {
                    let n = self.block()?;
                    if n == 0 {
                        return Ok(Datum::List(out));
                    }
                    for _ in 0..n {
                        self.tick()?;
                        out.push(self.value(items, depth + 1)?);
                    }
                }
            }
            AvroType::Map { values, .. } => {
                let mut out = Vec::new();
                loop {
                    let n = self.block()?;
                    if n == 0 {
                        return Ok(Datum::Map(out));
                    }
                    for _ in 0..n {
                        self.tick()?;
                        let k = self.string()?;
                        out.push((k, self.value(values, depth + 1)?));
                    }
                }
            }
            AvroType::Union(branches) => {
                let i = self.long()?;
                let b = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| self.fail("union branch index out of range"))?;
                self.value(b, depth + 1)
            }
            AvroType::Named(ix) => {
                let Some(named) = self.schema.names.get(*ix) else {
                    return Err(self.fail("unknown named type"));
                };
                match &named.kind {
                    NamedKind::Record { fields, .. } => {
                        let mut out = Vec::with_capacity(fields.len());
                        for f in fields {
                            let value = self.value(&f.ty, depth + 1)?;
                            out.push(FieldDatum {
                                name: f.name.clone(),
                                tags: string_list(f.props.get("confluent:tags")),
                                value,
                            });
                        }
                        Ok(Datum::Record(out))
                    }
                    NamedKind::Enum { symbols, .. } => {
                        let i = self.long()?;
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| symbols.get(i))
                            .map(|s| Datum::Str(s.clone()))
                            .ok_or_else(|| self.fail("enum symbol index out of range"))
                    }
                    NamedKind::Fixed { size } => {
                        let n = usize::try_from(*size).unwrap_or(usize::MAX);
                        Ok(Datum::Bytes(self.take(n)?.to_vec()))
                    }
                }
            }
        }
    }

    fn prim(&mut self, p: Prim) -> Result<Datum, String> {
        Ok(match p {
            Prim::Null => Datum::Null,
            Prim::Boolean => match self.take(1)? {
                [0] => Datum::Bool(false),
                [1] => Datum::Bool(true),
                _ => return Err(self.fail("boolean byte")),
            },
            Prim::Int | Prim::Long => Datum::Int(self.long()?),
            Prim::Float => {
                let b: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| "float: 4 bytes expected".to_string())?;
                Datum::Double(f64::from(f32::from_le_bytes(b)))
            }
            Prim::Double => {
                let b: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| "double: 8 bytes expected".to_string())?;
                Datum::Double(f64::from_le_bytes(b))
            }
            Prim::Bytes => {
                let n = self.length()?;
                Datum::Bytes(self.take(n)?.to_vec())
            }
            Prim::String => Datum::Str(self.string()?),
        })
    }
}

/// A JSON array of strings (`confluent:tags`), empty otherwise.
fn string_list(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Converts a decoded Protobuf message. Unset message fields are `null`; unset scalars carry
/// their default, as Protobuf readers see them.
pub fn protobuf(msg: &DynamicMessage) -> Datum {
    proto_message(msg, 0)
}

fn proto_message(msg: &DynamicMessage, depth: usize) -> Datum {
    let desc = msg.descriptor();
    let mut out = Vec::new();
    for f in desc.fields() {
        let is_message = matches!(f.kind(), Kind::Message(_)) && !f.is_list() && !f.is_map();
        let unset = (is_message || f.containing_oneof().is_some()) && !msg.has_field(&f);
        let value = if unset || depth >= MAX_DEPTH {
            Datum::Null
        } else {
            proto_value(&msg.get_field(&f), &f.kind(), depth + 1)
        };
        out.push(FieldDatum {
            name: f.name().to_string(),
            tags: Vec::new(),
            value,
        });
    }
    Datum::Record(out)
}

fn proto_value(v: &PValue, kind: &Kind, depth: usize) -> Datum {
    match v {
        PValue::Bool(b) => Datum::Bool(*b),
        PValue::I32(i) => Datum::Int(i64::from(*i)),
        PValue::I64(i) => Datum::Int(*i),
        PValue::U32(u) => Datum::Int(i64::from(*u)),
        PValue::U64(u) => i64::try_from(*u).map_or(Datum::UInt(*u), Datum::Int),
        PValue::F32(f) => Datum::Double(f64::from(*f)),
        PValue::F64(f) => Datum::Double(*f),
        PValue::String(s) => Datum::Str(s.clone()),
        PValue::Bytes(b) => Datum::Bytes(b.to_vec()),
        PValue::EnumNumber(n) => match kind {
            Kind::Enum(e) => e.get_value(*n).map_or(Datum::Int(i64::from(*n)), |ev| {
                Datum::Str(ev.name().to_string())
            }),
            _ => Datum::Int(i64::from(*n)),
        },
        PValue::Message(m) => proto_message(m, depth),
        PValue::List(items) => Datum::List(
            items
                .iter()
                .map(|i| proto_value(i, kind, depth + 1))
                .collect(),
        ),
        PValue::Map(m) => {
            let value_kind = match kind {
                Kind::Message(entry) if entry.is_map_entry() => {
                    entry.map_entry_value_field().kind()
                }
                other => other.clone(),
            };
            let mut entries: Vec<(String, Datum)> = m
                .iter()
                .map(|(k, v)| (map_key(k), proto_value(v, &value_kind, depth + 1)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Datum::Map(entries)
        }
    }
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(u) => u.to_string(),
        MapKey::U64(u) => u.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// Converts a JSON instance, reading `confluent:tags` from the matching property schemas.
pub fn json(schema: &Json, instance: &Json) -> Datum {
    json_value(schema, Some(schema), instance, 0)
}

/// Follows local `$ref`s (`#/definitions/...`) of a JSON Schema node.
fn resolve<'a>(root: &'a Json, mut node: &'a Json) -> &'a Json {
    for _ in 0..MAX_REF_HOPS {
        match node.get("$ref").and_then(Json::as_str) {
            Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
                Some(n) => node = n,
                None => break,
            },
            _ => break,
        }
    }
    node
}

fn json_value(root: &Json, schema: Option<&Json>, v: &Json, depth: usize) -> Datum {
    let schema = schema.map(|s| resolve(root, s));
    if depth > MAX_DEPTH {
        return Datum::Null;
    }
    match v {
        Json::Null => Datum::Null,
        Json::Bool(b) => Datum::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Datum::Int(i),
            (None, Some(u), _) => Datum::UInt(u),
            (_, _, Some(f)) => Datum::Double(f),
            _ => Datum::Null,
        },
        Json::String(s) => Datum::Str(s.clone()),
        Json::Array(items) => {
            let item_schema = schema
                .and_then(|s| s.get("items"))
                .filter(|s| s.is_object());
            Datum::List(
                items
                    .iter()
                    .map(|i| json_value(root, item_schema, i, depth + 1))
                    .collect(),
            )
        }
        Json::Object(map) => {
            let props = schema.and_then(|s| s.get("properties"));
            Datum::Record(
                map.iter()
                    .map(|(k, val)| {
                        let sub = props.and_then(|p| p.get(k)).map(|s| resolve(root, s));
                        FieldDatum {
                            name: k.clone(),
                            tags: string_list(sub.and_then(|s| s.get("confluent:tags"))),
                            value: json_value(root, sub, val, depth + 1),
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// Field tags by path pattern (a schema version's `metadata.tags`).
pub type TagPatterns = Vec<(String, Vec<String>)>;

/// Builds [`TagPatterns`] from `metadata.tags`.
pub fn tag_patterns(
    tags: Option<&BTreeMap<String, std::collections::BTreeSet<String>>>,
) -> TagPatterns {
    tags.map(|t| {
        t.iter()
            .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
            .collect()
    })
    .unwrap_or_default()
}

/// Whether a path pattern names a field: the pattern is matched against the field's full name
/// (`shop.Order.card`), the full name with the root's namespace dropped (`Order.card`) and the
/// dotted path (`card`). `*` matches within one dotted segment, `**` across segments, `?` one
/// character (Confluent's wildcard rules).
pub fn path_matches(pattern: &str, path: &str, full_name: &str, root: &str) -> bool {
    if glob(pattern, full_name) || glob(pattern, path) {
        return true;
    }
    match root.rsplit_once('.') {
        Some((_, short)) if !path.is_empty() => {
            let mut s = String::with_capacity(short.len() + 1 + path.len());
            s.push_str(short);
            s.push('.');
            s.push_str(path);
            glob(pattern, &s)
        }
        _ => false,
    }
}

/// Wildcard match (`**` any characters, `*` any but `.`, `?` one character but `.`).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    // dp[j]: pattern[..i] matches name[..j]
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; n.len() + 1];
        let (double, step) = if p[i] == b'*' && p.get(i + 1) == Some(&b'*') {
            (true, 2)
        } else {
            (false, 1)
        };
        match p[i] {
            b'*' => {
                // Star: prefix of matches extended over the allowed characters.
                let mut carry = false;
                for j in 0..=n.len() {
                    carry = dp[j] || (carry && j > 0 && (double || n[j - 1] != b'.'));
                    next[j] = carry;
                }
            }
            c => {
                for j in 1..=n.len() {
                    let ok = if c == b'?' {
                        n[j - 1] != b'.'
                    } else {
                        n[j - 1] == c
                    };
                    next[j] = dp[j - 1] && ok;
                }
            }
        }
        dp = next;
        i += step;
    }
    dp[n.len()]
}

/// Walks the scalar leaves of `root` (items of lists and map values included), calling `f`
/// with each one's field context. `root_name` is the root type's name used in full names.
pub fn visit_fields<E>(
    root: &Datum,
    root_name: &str,
    patterns: &TagPatterns,
    f: &mut dyn FnMut(&FieldVisit<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut w = Walker {
        root_name,
        patterns,
        path: String::new(),
        full: String::new(),
    };
    w.walk(root, "", &[], false, f, 0)
}

struct Walker<'a> {
    root_name: &'a str,
    patterns: &'a TagPatterns,
    path: String,
    full: String,
}

impl Walker<'_> {
    fn walk<E>(
        &mut self,
        d: &Datum,
        name: &str,
        tags: &[String],
        in_collection: bool,
        f: &mut dyn FnMut(&FieldVisit<'_>) -> Result<(), E>,
        depth: usize,
    ) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        match d {
            Datum::Record(fields) => {
                for fd in fields {
                    let path_len = self.path.len();
                    if !self.path.is_empty() {
                        self.path.push('.');
                    }
                    self.path.push_str(&fd.name);
                    self.full.clear();
                    self.full.push_str(self.root_name);
                    self.full.push('.');
                    self.full.push_str(&self.path);
                    let mut field_tags = fd.tags.clone();
                    for (pattern, t) in self.patterns {
                        if path_matches(pattern, &self.path, &self.full, self.root_name) {
                            for tag in t {
                                if !field_tags.contains(tag) {
                                    field_tags.push(tag.clone());
                                }
                            }
                        }
                    }
                    let r = self.walk(&fd.value, &fd.name, &field_tags, false, f, depth + 1);
                    self.path.truncate(path_len);
                    r?;
                }
                Ok(())
            }
            Datum::List(items) => {
                for i in items {
                    self.walk(i, name, tags, true, f, depth + 1)?;
                }
                Ok(())
            }
            Datum::Map(entries) => {
                for (_, v) in entries {
                    self.walk(v, name, tags, true, f, depth + 1)?;
                }
                Ok(())
            }
            scalar => {
                self.full.clear();
                self.full.push_str(self.root_name);
                if !self.path.is_empty() {
                    self.full.push('.');
                    self.full.push_str(&self.path);
                }
                f(&FieldVisit {
                    name,
                    path: &self.path,
                    full_name: &self.full,
                    tags,
                    value: scalar,
                    in_collection,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("shop.Order.card", "shop.Order.card"));
        assert!(glob("*.Order.card", "shop.Order.card"));
        assert!(!glob("*.card", "shop.Order.card"));
        assert!(glob("**.card", "shop.Order.card"));
        assert!(glob("**", "a.b.c"));
        assert!(glob("Order.ca?d", "Order.card"));
        assert!(!glob("Order.card", "Order.cards"));
        assert!(path_matches(
            "Order.card",
            "card",
            "shop.Order.card",
            "shop.Order"
        ));
        assert!(path_matches(
            "card",
            "card",
            "shop.Order.card",
            "shop.Order"
        ));
        assert!(!path_matches(
            "Refund.card",
            "card",
            "shop.Order.card",
            "shop.Order"
        ));
    }

    #[test]
    fn visits_leaves_with_paths_and_tags() {
        let d = Datum::Record(vec![
            FieldDatum {
                name: "id".into(),
                tags: vec![],
                value: Datum::Int(1),
            },
            FieldDatum {
                name: "customer".into(),
                tags: vec![],
                value: Datum::Record(vec![FieldDatum {
                    name: "cards".into(),
                    tags: vec!["PAN".into()],
                    value: Datum::List(vec![Datum::Str("x".into())]),
                }]),
            },
        ]);
        let patterns = vec![("**.id".to_string(), vec!["KEY".to_string()])];
        let mut seen = Vec::new();
        visit_fields::<()>(&d, "shop.Order", &patterns, &mut |v| {
            seen.push((
                v.path.to_string(),
                v.full_name.to_string(),
                v.tags.to_vec(),
                v.in_collection,
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (
                    "id".into(),
                    "shop.Order.id".into(),
                    vec!["KEY".to_string()],
                    false
                ),
                (
                    "customer.cards".into(),
                    "shop.Order.customer.cards".into(),
                    vec!["PAN".to_string()],
                    true
                ),
            ]
        );
    }
}
