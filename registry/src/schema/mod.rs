//! Schema formats: Avro, Protobuf and JSON Schema.
//!
//! [`ParsedSchema::parse`] validates a schema text (resolving its references through a
//! caller-supplied [`ReferenceResolver`]), and computes the Confluent-style canonical string
//! used for storage, the normalised form used for `normalize=true`, and SHA-256 fingerprints
//! of both (for lookups and de-duplication).
//!
//! Limits: [`MAX_SCHEMA_BYTES`] per schema and in total with references, [`MAX_DEPTH`]
//! nesting levels, [`MAX_REFERENCES`] transitive references; cyclic references are rejected.

pub mod avro;
pub mod json;
pub mod proto_print;
pub mod protobuf;

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::error::SchemaError;

/// Largest accepted schema text (and schema plus all references), in bytes.
pub const MAX_SCHEMA_BYTES: usize = 1024 * 1024;
/// Deepest accepted nesting (JSON depth for Avro/JSON Schema, brace depth for Protobuf).
pub const MAX_DEPTH: usize = 64;
/// Most references accepted, counted transitively.
pub const MAX_REFERENCES: usize = 1000;

/// The three schema formats Confluent supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro (the default when `schemaType` is absent).
    #[default]
    Avro,
    /// Protocol Buffers (.proto text).
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    /// The wire name (`AVRO`, `PROTOBUF`, `JSON`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, SchemaError> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            "JSON" => Ok(SchemaType::Json),
            _ => Err(SchemaError::UnknownType(s.to_string())),
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A schema reference as Confluent models it: `name` is the import path (Protobuf), the
/// `$ref` URI (JSON Schema) or the full name of the referenced named type (Avro).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Reference {
    /// Name under which the referencing schema uses the referenced one.
    pub name: String,
    /// Subject of the referenced schema.
    pub subject: String,
    /// Version of the referenced schema.
    pub version: i32,
}

/// A referenced schema as returned by a [`ReferenceResolver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedReference {
    /// The referenced schema text.
    pub schema: String,
    /// The referenced schema's own references.
    pub references: Vec<Reference>,
}

/// Supplies the texts of referenced schemas.
pub trait ReferenceResolver {
    /// Returns the referenced schema, or `None` when it does not exist.
    fn resolve(&self, reference: &Reference) -> Option<ResolvedReference>;
}

impl<F> ReferenceResolver for F
where
    F: Fn(&Reference) -> Option<ResolvedReference>,
{
    fn resolve(&self, reference: &Reference) -> Option<ResolvedReference> {
        self(reference)
    }
}

/// A resolver that knows no references.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReferences;

impl ReferenceResolver for NoReferences {
    fn resolve(&self, _reference: &Reference) -> Option<ResolvedReference> {
        None
    }
}

/// One resolved dependency, in dependency order (dependencies before dependants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The reference as written by its referrer.
    pub reference: Reference,
    /// The referenced text.
    pub schema: String,
}

/// Resolves `references` transitively (depth first, dependencies first), detecting cycles and
/// enforcing the size and count limits.
pub fn resolve_references(
    references: &[Reference],
    resolver: &dyn ReferenceResolver,
) -> Result<Vec<Dependency>, SchemaError> {
    struct Walk<'a> {
        resolver: &'a dyn ReferenceResolver,
        out: Vec<Dependency>,
        done: HashSet<(String, i32)>,
        stack: Vec<(String, i32)>,
        bytes: usize,
    }
    impl Walk<'_> {
        fn visit(&mut self, r: &Reference) -> Result<(), SchemaError> {
            let key = (r.subject.clone(), r.version);
            if self.stack.contains(&key) {
                return Err(SchemaError::CyclicReference(format!(
                    "subject '{}' version {}",
                    r.subject, r.version
                )));
            }
            if self.done.contains(&key) {
                // Same subject-version under another name still needs to be visible by this name.
                if !self.out.iter().any(|d| d.reference.name == r.name)
                    && let Some(d) = self.out.iter().find(|d| {
                        d.reference.subject == r.subject && d.reference.version == r.version
                    })
                {
                    let schema = d.schema.clone();
                    self.out.push(Dependency {
                        reference: r.clone(),
                        schema,
                    });
                }
                return Ok(());
            }
            if self.out.len() >= MAX_REFERENCES || self.stack.len() >= MAX_DEPTH {
                return Err(SchemaError::TooManyReferences(MAX_REFERENCES));
            }
            let resolved =
                self.resolver
                    .resolve(r)
                    .ok_or_else(|| SchemaError::UnknownReference {
                        name: r.name.clone(),
                        subject: r.subject.clone(),
                        version: r.version,
                    })?;
            self.bytes = self.bytes.saturating_add(resolved.schema.len());
            if self.bytes > MAX_SCHEMA_BYTES {
                return Err(SchemaError::TooLarge {
                    size: self.bytes,
                    limit: MAX_SCHEMA_BYTES,
                });
            }
            self.stack.push(key.clone());
            for child in &resolved.references {
                self.visit(child)?;
            }
            self.stack.pop();
            self.done.insert(key);
            self.out.push(Dependency {
                reference: r.clone(),
                schema: resolved.schema,
            });
            Ok(())
        }
    }
    let mut walk = Walk {
        resolver,
        out: Vec::new(),
        done: HashSet::new(),
        stack: Vec::new(),
        bytes: 0,
    };
    for r in references {
        walk.visit(r)?;
    }
    Ok(walk.out)
}

/// The format-specific parsed model.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An Avro schema.
    Avro(avro::AvroSchema),
    /// A Protobuf file.
    Protobuf(protobuf::ProtobufSchema),
    /// A JSON Schema document.
    Json(json::JsonSchema),
}

/// A validated schema with its canonical and normalised forms.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    schema_type: SchemaType,
    references: Vec<Reference>,
    parsed: Parsed,
    canonical: String,
    normalized: String,
}

impl ParsedSchema {
    /// Parses and validates `text` as `schema_type`, resolving `references` through `resolver`.
    pub fn parse(
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
        resolver: &dyn ReferenceResolver,
    ) -> Result<Self, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge {
                size: text.len(),
                limit: MAX_SCHEMA_BYTES,
            });
        }
        if text.trim().is_empty() {
            return Err(SchemaError::Invalid("empty schema".into()));
        }
        let deps = resolve_references(references, resolver)?;
        let total = deps.iter().map(|d| d.schema.len()).sum::<usize>() + text.len();
        if total > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge {
                size: total,
                limit: MAX_SCHEMA_BYTES,
            });
        }
        let (parsed, canonical, normalized) = match schema_type {
            SchemaType::Avro => {
                let s = avro::AvroSchema::parse(text, &deps)?;
                let c = s.canonical_string();
                let n = s.normalized_string();
                (Parsed::Avro(s), c, n)
            }
            SchemaType::Protobuf => {
                let s = protobuf::ProtobufSchema::parse(text, &deps)?;
                let c = s.canonical_string();
                let n = s.normalized_string();
                (Parsed::Protobuf(s), c, n)
            }
            SchemaType::Json => {
                let s = json::JsonSchema::parse(text, &deps)?;
                let c = s.canonical_string();
                let n = s.normalized_string();
                (Parsed::Json(s), c, n)
            }
        };
        Ok(ParsedSchema {
            schema_type,
            references: references.to_vec(),
            parsed,
            canonical,
            normalized,
        })
    }

    /// The schema format.
    pub fn schema_type(&self) -> SchemaType {
        self.schema_type
    }

    /// The references this schema declared.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// The format-specific model.
    pub fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    /// True for a Protobuf schema submitted as a base64 `FileDescriptorProto` (such a schema
    /// also matches stored versions by its normalised form: a descriptor has no layout).
    pub fn from_descriptor(&self) -> bool {
        matches!(&self.parsed, Parsed::Protobuf(p) if p.from_descriptor())
    }

    /// The schema in a requested `format`: `serialized` gives the base64 `FileDescriptorProto`
    /// of a Protobuf schema; other formats (and other types) give the stored text.
    pub fn formatted(&self, format: Option<&str>, stored: &str) -> String {
        match (&self.parsed, format) {
            (Parsed::Protobuf(p), Some(f)) if f.eq_ignore_ascii_case("serialized") => {
                p.serialized()
            }
            (Parsed::Avro(a), Some(f)) if f.eq_ignore_ascii_case("resolved") => a.resolved_string(),
            _ => stored.to_string(),
        }
    }

    /// The canonical string stored by the registry (Confluent's `canonicalString`).
    pub fn canonical_string(&self) -> &str {
        &self.canonical
    }

    /// The normalised form (`normalize=true`).
    pub fn normalized_string(&self) -> &str {
        &self.normalized
    }

    /// The string to store: the normalised form when `normalize`, else the canonical string.
    pub fn stored_string(&self, normalize: bool) -> &str {
        if normalize {
            &self.normalized
        } else {
            &self.canonical
        }
    }

    /// SHA-256 (hex) over type, text and references: of the normalised form when `normalized`,
    /// else of the canonical string.
    pub fn fingerprint(&self, normalized: bool) -> String {
        fingerprint_of(
            self.schema_type,
            self.stored_string(normalized),
            &self.references,
        )
    }
}

/// SHA-256 (hex) of a schema identity: type, text and the references in declared order.
pub fn fingerprint_of(schema_type: SchemaType, text: &str, references: &[Reference]) -> String {
    let mut h = Sha256::new();
    h.update(schema_type.as_str().as_bytes());
    h.update([0u8]);
    h.update((text.len() as u64).to_be_bytes());
    h.update(text.as_bytes());
    for r in references {
        for part in [r.name.as_bytes(), r.subject.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(r.version.to_be_bytes());
    }
    hex::encode(h.finalize())
}

/// Nesting depth of a JSON value (scalars have depth 0).
pub(crate) fn json_depth_exceeds(v: &serde_json::Value, limit: usize) -> bool {
    fn walk(v: &serde_json::Value, depth: usize, limit: usize) -> bool {
        if depth > limit {
            return true;
        }
        match v {
            serde_json::Value::Array(a) => a.iter().any(|x| walk(x, depth + 1, limit)),
            serde_json::Value::Object(o) => o.values().any(|x| walk(x, depth + 1, limit)),
            _ => false,
        }
    }
    walk(v, 0, limit)
}

/// Parses JSON text with a friendly error and the depth limit (serde_json itself stops at 128).
pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, SchemaError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            SchemaError::TooDeep(MAX_DEPTH)
        } else {
            SchemaError::Invalid(format!("not valid JSON: {e}"))
        }
    })?;
    if json_depth_exceeds(&v, MAX_DEPTH) {
        return Err(SchemaError::TooDeep(MAX_DEPTH));
    }
    Ok(v)
}
