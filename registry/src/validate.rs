//! Record validation for the gateway's produce path.
//!
//! [`Validator::validate`] takes a topic, whether the bytes are the record key or value, the
//! bytes and the record headers, and answers which registered schema the record uses — or a
//! typed [`ValidationError`] that names the schema, the subject and the reason, never the
//! payload bytes.
//!
//! * Schema id sources: the `__key_schema_id` / `__value_schema_id` header (checked first, like
//!   Confluent's `DualSchemaIdDeserializer`; `0x00`+id, `0x01`+GUID or a bare 4-byte id), then
//!   the payload prefix: Confluent classic (`0x00` + 4-byte big-endian id) or `0x01` + 16-byte
//!   GUID (only with a [`GuidLookup`]; the store has no GUIDs yet, so otherwise a clear error).
//! * [`ValidationMode::SchemaId`]: the id exists and is registered (live) under the subject the
//!   [`SubjectNameStrategy`] gives. [`ValidationMode::Full`] also decodes the payload: Avro
//!   binary datum (walked over the registry's Avro model, so errors carry the field path),
//!   Protobuf (message-index array, then a `prost-reflect` `DynamicMessage` decode of the chosen
//!   message), JSON (parsed, then the compiled `jsonschema` validator, values masked).
//! * Compiled schemas are cached by id together with the stored schema's fingerprint, so a
//!   hard-deleted id that comes back with other content (IMPORT mode) is recompiled.
//!
//! * Data contracts ([`Validator::validate_with`]): when the schema version has enabled
//!   write-path `CONDITION` rules of type `CEL` / `CEL_FIELD` (`crate::rules`), or the caller
//!   passes a [`FieldScanner`] (the gateway's PAN guard), the payload is decoded into a value
//!   (`crate::decode`) and the rules run on it (in `schema-id` mode too: rules need the data).
//!   Without rules or a scanner nothing is decoded beyond what the mode asks for. Rules are
//!   compiled once per cached schema; a rule that fails refuses the record with
//!   [`ValidationError::RuleFailed`], an expression that does not compile with
//!   [`ValidationError::RuleInvalid`].
//!
//! Tombstones (null values) carry no schema and always pass: callers skip them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::Value;

use crate::api::{RegistryError, SchemaById, SchemaStore, StoreResult, VersionSpec};
use crate::decode::{self, Datum, FieldVisit, TagPatterns};
use crate::rules::{self, CompiledRule, RuleFailure};
use crate::schema::avro::{AvroSchema, AvroType, NamedKind, Prim};
use crate::schema::{
    MAX_REFERENCES, Parsed, ParsedSchema, Reference, ResolvedReference, SchemaType, fingerprint_of,
};

/// Header that carries the value's schema id (Confluent's `HeaderSchemaIdSerializer`).
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
/// Header that carries the key's schema id.
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";
/// Most compiled schemas kept; the cache is cleared when it would grow past this.
pub const CACHE_CAPACITY: usize = 10_000;
/// Deepest Avro/Protobuf nesting walked in a payload.
const MAX_PAYLOAD_DEPTH: usize = 128;
/// Longest Protobuf message-index array accepted.
const MAX_MESSAGE_INDEXES: usize = 64;

/// Whether the bytes are the record's key or its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOrValue {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl KeyOrValue {
    /// `key` or `value`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrValue::Key => "key",
            KeyOrValue::Value => "value",
        }
    }

    /// The header that may carry this part's schema id.
    pub fn header(self) -> &'static str {
        match self {
            KeyOrValue::Key => KEY_SCHEMA_ID_HEADER,
            KeyOrValue::Value => VALUE_SCHEMA_ID_HEADER,
        }
    }
}

impl fmt::Display for KeyOrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ValidationMode {
    /// Wire format present, id exists and is registered under the strategy's subject.
    #[default]
    SchemaId,
    /// `SchemaId`, plus the payload decodes against the schema.
    Full,
}

/// Which subject a record's schema must be registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubjectNameStrategy {
    /// `{topic}-key` / `{topic}-value`.
    #[default]
    TopicName,
    /// The fully qualified record name (Avro named type, Protobuf message, JSON `title`).
    RecordName,
    /// `{topic}-{fully qualified record name}`.
    TopicRecordName,
}

/// What [`Validator::validate`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ValidationPolicy {
    /// Id-only or full payload decoding.
    pub mode: ValidationMode,
    /// Subject name strategy.
    pub strategy: SubjectNameStrategy,
}

/// Where the schema id was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaIdSource {
    /// `0x00` + 4-byte id prefix.
    Prefix,
    /// `0x01` + 16-byte GUID prefix.
    GuidPrefix,
    /// The `__key_schema_id` / `__value_schema_id` header.
    Header,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedSchema {
    /// Global schema id.
    pub id: i32,
    /// The subject it is registered under (from the strategy).
    pub subject: String,
    /// Schema format.
    pub schema_type: SchemaType,
    /// Fully qualified record name, when the schema has one.
    pub record_name: Option<String>,
    /// Where the id came from.
    pub source: SchemaIdSource,
    /// Offset of the serialized payload within the bytes (after the prefix).
    pub payload_offset: usize,
}

/// Why a record was refused. Messages name the schema, subject and reason, never payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No recognizable schema id.
    #[error("no schema id: {0}")]
    NoSchemaId(String),
    /// The GUID wire format is used but GUIDs cannot be resolved.
    #[error(
        "schema GUID {0} in the {1}: this registry does not assign GUIDs (use the classic 0x00 + 4-byte id wire format)"
    )]
    GuidUnsupported(String, KeyOrValue),
    /// No schema has that GUID.
    #[error("schema GUID {0} is not registered")]
    UnknownGuid(String),
    /// No schema has that id.
    #[error("schema id {0} is not registered")]
    UnknownSchemaId(i32),
    /// The id is registered, but not under the expected subject.
    #[error("schema id {id} is registered under {}, not {subject}", registered_list(.registered))]
    WrongSubject {
        /// Schema id.
        id: i32,
        /// Subject the strategy expects.
        subject: String,
        /// Live subjects using the id.
        registered: Vec<String>,
    },
    /// A record-name strategy on a schema without a record name.
    #[error("schema {id} ({schema_type}) has no record name for the {strategy:?} strategy: {why}")]
    NoRecordName {
        /// Schema id.
        id: i32,
        /// Format.
        schema_type: SchemaType,
        /// Strategy asked for.
        strategy: SubjectNameStrategy,
        /// Why.
        why: String,
    },
    /// The stored schema does not compile (e.g. a reference was hard-deleted).
    #[error("schema {id} cannot be compiled for validation: {why}")]
    SchemaUnusable {
        /// Schema id.
        id: i32,
        /// Why.
        why: String,
    },
    /// The payload does not decode against the schema.
    #[error("payload does not match schema {id} ({schema_type}) of subject {subject}: {why}")]
    PayloadMismatch {
        /// Schema id.
        id: i32,
        /// Subject.
        subject: String,
        /// Format.
        schema_type: SchemaType,
        /// Why (paths and expected types; no payload values).
        why: String,
    },
    /// The record fails a data-quality rule of its schema.
    #[error(
        "record fails data-quality rule '{}' ({}: {}){} of schema {id} ({subject}){}",
        .failure.rule,
        .failure.executor,
        .failure.expr,
        on_field(&.failure.field),
        reason(&.failure.why)
    )]
    RuleFailed {
        /// Schema id.
        id: i32,
        /// Subject.
        subject: String,
        /// The rule, the field (`CEL_FIELD`), why (`None`: the expression answered false) and
        /// the rule's `onFailure: DLQ` topic.
        failure: Box<RuleFailure>,
    },
    /// A data-quality rule of the schema does not compile, so no record can pass it.
    #[error(
        "data-quality rule '{}' ({}: {}) of schema {id} ({subject}) does not compile{}",
        .failure.rule,
        .failure.executor,
        .failure.expr,
        reason(&.failure.why)
    )]
    RuleInvalid {
        /// Schema id.
        id: i32,
        /// Subject.
        subject: String,
        /// The rule and the compiler's message.
        failure: Box<RuleFailure>,
    },
    /// A field check of the caller ([`FieldScanner`]) refused a field.
    #[error("field '{field}' of schema {id} ({subject}) {why}")]
    FieldRefused {
        /// The field's dotted path.
        field: String,
        /// Schema id.
        id: i32,
        /// Subject.
        subject: String,
        /// The scanner's reason (never the value).
        why: String,
    },
    /// The store failed.
    #[error("schema store: {0}")]
    Store(String),
}

impl ValidationError {
    /// The schema id the error is about, when known.
    pub fn schema_id(&self) -> Option<i32> {
        match self {
            ValidationError::UnknownSchemaId(id)
            | ValidationError::WrongSubject { id, .. }
            | ValidationError::NoRecordName { id, .. }
            | ValidationError::SchemaUnusable { id, .. }
            | ValidationError::PayloadMismatch { id, .. }
            | ValidationError::RuleFailed { id, .. }
            | ValidationError::RuleInvalid { id, .. }
            | ValidationError::FieldRefused { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The dead-letter topic a failed rule names (`onFailure: DLQ`, `params["dlq.topic"]`).
    pub fn rule_dlq_topic(&self) -> Option<&str> {
        match self {
            ValidationError::RuleFailed { failure, .. } => failure.dlq_topic.as_deref(),
            _ => None,
        }
    }
}

fn on_field(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(" on field '{f}'"))
        .unwrap_or_default()
}

fn reason(why: &Option<String>) -> String {
    why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
}

/// A scalar field of a decoded record, handed to a [`FieldScanner`].
#[derive(Debug, Clone, Copy)]
pub struct ScannedField<'a> {
    /// Dotted path from the record root (`customer.card`), no array indexes.
    pub path: &'a str,
    /// Confluent-style full name (`shop.Order.customer.card`).
    pub full_name: &'a str,
    /// Inline `confluent:tags` and matching `metadata.tags`.
    pub tags: &'a [String],
    /// The value.
    pub value: ScalarValue<'a>,
}

/// The scalar values a [`FieldScanner`] sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarValue<'a> {
    /// A string.
    Str(&'a str),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
}

/// A per-field check on decoded records (the gateway's PAN guard). `check` answers the reason
/// to refuse the record (naming no value), or `None`.
pub trait FieldScanner: Send + Sync {
    /// Checks one string or integer field.
    fn check(&self, field: &ScannedField<'_>) -> Option<String>;
}

/// The outcome of [`Validator::validate_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The schema the record uses.
    pub schema: ValidatedSchema,
    /// The scanner saw every field of the decoded record (false when none was given or the
    /// payload did not decode in `schema-id` mode; the caller may fall back to a raw scan).
    pub fields_scanned: bool,
    /// The answer depends on the record's bytes beyond its schema id (rules ran or fields were
    /// scanned): callers must not reuse it for other records with the same id.
    pub content_checked: bool,
}

fn registered_list(subjects: &[String]) -> String {
    if subjects.is_empty() {
        "no live subject".to_string()
    } else {
        subjects.join(", ")
    }
}

/// Resolves GUIDs of the `0x01` wire format to schema ids (for stores that assign GUIDs).
#[async_trait]
pub trait GuidLookup: Send + Sync {
    /// The schema id for a GUID, `None` when unknown.
    async fn id_for_guid(&self, guid: [u8; 16]) -> StoreResult<Option<i32>>;
}

/// A schema compiled for payload validation.
struct Compiled {
    schema_type: SchemaType,
    parsed: ParsedSchema,
    json: Option<jsonschema::Validator>,
    /// Write-path data-quality rules (empty: none).
    rules: Vec<CompiledRule>,
    /// `metadata.tags` of the schema version.
    tag_patterns: TagPatterns,
}

/// Compiled schemas by id, with the fingerprint of the stored schema they were built from.
type Cache = HashMap<i32, (String, Arc<Compiled>)>;

/// What one id resolved to at one store generation: the compiled schema and the live subjects
/// that use it. Valid while [`SchemaStore::generation`] still answers `generation`, so the hot
/// path does no store lookup, no copy of the schema text and no fingerprint per record.
#[derive(Clone)]
struct Resolved {
    generation: u64,
    compiled: Arc<Compiled>,
    subjects: Arc<[String]>,
}

/// The record validation API (cheap to clone; clones share the cache).
#[derive(Clone)]
pub struct Validator {
    store: Arc<dyn SchemaStore>,
    guids: Option<Arc<dyn GuidLookup>>,
    cache: Arc<RwLock<Cache>>,
    resolved: Arc<RwLock<HashMap<i32, Resolved>>>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("guids", &self.guids.is_some())
            .field("cached", &self.cached())
            .finish()
    }
}

fn guid_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

enum IdRef {
    Id(i32),
    Guid([u8; 16]),
}

fn id_from(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.try_into().ok()?))
}

fn guid_from(b: &[u8]) -> Option<[u8; 16]> {
    b.try_into().ok()
}

fn store_err(e: RegistryError) -> ValidationError {
    ValidationError::Store(e.to_string())
}

impl Validator {
    /// A validator over `store`, without GUID support.
    pub fn new(store: Arc<dyn SchemaStore>) -> Self {
        Validator {
            store,
            guids: None,
            cache: Arc::new(RwLock::new(HashMap::new())),
            resolved: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Adds GUID resolution for the `0x01` wire format.
    pub fn with_guid_lookup(mut self, guids: Arc<dyn GuidLookup>) -> Self {
        self.guids = Some(guids);
        self
    }

    /// Number of compiled schemas cached.
    pub fn cached(&self) -> usize {
        self.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Validates one record key or value (see the module docs); data-quality rules of the
    /// schema run too.
    pub async fn validate<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        kind: KeyOrValue,
        bytes: &[u8],
        headers: &[(K, V)],
        policy: &ValidationPolicy,
    ) -> Result<ValidatedSchema, ValidationError> {
        self.validate_with(topic, kind, bytes, headers, policy, None)
            .await
            .map(|c| c.schema)
    }

    /// [`Validator::validate`], with the decoded record's string and integer fields handed to
    /// `scanner` when one is given.
    pub async fn validate_with<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        kind: KeyOrValue,
        bytes: &[u8],
        headers: &[(K, V)],
        policy: &ValidationPolicy,
        scanner: Option<&dyn FieldScanner>,
    ) -> Result<Checked, ValidationError> {
        let (idref, source, offset) = locate_id(kind, bytes, headers)?;
        let id = match idref {
            IdRef::Id(id) => id,
            IdRef::Guid(g) => match &self.guids {
                None => return Err(ValidationError::GuidUnsupported(guid_string(&g), kind)),
                Some(l) => l
                    .id_for_guid(g)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| ValidationError::UnknownGuid(guid_string(&g)))?,
            },
        };
        let (compiled, registered) = self.resolve(id).await?;
        let payload = bytes.get(offset..).unwrap_or_default();

        // The Protobuf message (from the index array) is needed for record names and decoding.
        let needs_data = !compiled.rules.is_empty() || scanner.is_some();
        let needs_message = compiled.schema_type == SchemaType::Protobuf
            && (policy.mode == ValidationMode::Full
                || policy.strategy != SubjectNameStrategy::TopicName
                || needs_data);
        let mut message: Option<(MessageDescriptor, usize)> = None;
        if needs_message {
            match protobuf_message(&compiled, payload) {
                Ok(m) => message = Some(m),
                // Only decoding for a field scan: fall back (the caller scans the raw bytes).
                Err(_)
                    if compiled.rules.is_empty()
                        && policy.mode == ValidationMode::SchemaId
                        && policy.strategy == SubjectNameStrategy::TopicName => {}
                Err(why) => {
                    return Err(ValidationError::PayloadMismatch {
                        id,
                        subject: expected_subject_hint(topic, kind, policy.strategy),
                        schema_type: SchemaType::Protobuf,
                        why,
                    });
                }
            }
        }
        let record_name = match (&message, compiled.parsed.parsed()) {
            (Some((d, _)), _) => Some(d.full_name().to_string()),
            (None, Parsed::Avro(a)) => avro_record_name(a),
            (None, Parsed::Json(j)) => j
                .root
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_string),
            (None, Parsed::Protobuf(p)) => p.file().messages().next().map(|m| m.full_name().into()),
        };
        let subject = match policy.strategy {
            SubjectNameStrategy::TopicName => format!("{topic}-{kind}"),
            s => {
                let name = record_name
                    .clone()
                    .ok_or_else(|| ValidationError::NoRecordName {
                        id,
                        schema_type: compiled.schema_type,
                        strategy: s,
                        why: match compiled.schema_type {
                            SchemaType::Avro => "the root type is not a named type".into(),
                            SchemaType::Json => "the schema has no \"title\"".into(),
                            SchemaType::Protobuf => "the schema defines no message".into(),
                        },
                    })?;
                if s == SubjectNameStrategy::RecordName {
                    name
                } else {
                    format!("{topic}-{name}")
                }
            }
        };
        if !registered.contains(&subject) {
            return Err(ValidationError::WrongSubject {
                id,
                subject,
                registered: registered.to_vec(),
            });
        }
        let mismatch = |why: String| ValidationError::PayloadMismatch {
            id,
            subject: subject.clone(),
            schema_type: compiled.schema_type,
            why,
        };
        let mut data: Option<Result<Datum, String>> = None;
        if policy.mode == ValidationMode::Full {
            match (compiled.parsed.parsed(), &message, &compiled.json) {
                (Parsed::Avro(a), _, _) => {
                    check_avro(a, payload).map_err(mismatch)?;
                    if needs_data {
                        data = Some(decode::avro(a, payload));
                    }
                }
                (Parsed::Protobuf(_), Some((desc, used)), _) => {
                    let body = payload.get(*used..).unwrap_or_default();
                    let m = DynamicMessage::decode(desc.clone(), body).map_err(|e| {
                        mismatch(format!("not a valid {} message: {e}", desc.full_name()))
                    })?;
                    if needs_data {
                        data = Some(Ok(decode::protobuf(&m)));
                    }
                }
                (Parsed::Json(j), _, Some(v)) => {
                    let instance = check_json(v, payload).map_err(mismatch)?;
                    if needs_data {
                        data = Some(Ok(decode::json(&j.root, &instance)));
                    }
                }
                _ => return Err(mismatch("the schema was not compiled for decoding".into())),
            }
        } else if needs_data {
            data = Some(decode_payload(&compiled, payload, message.as_ref()));
        }
        let schema = ValidatedSchema {
            id,
            subject,
            schema_type: compiled.schema_type,
            record_name,
            source,
            payload_offset: offset,
        };
        let Some(data) = data else {
            return Ok(Checked {
                schema,
                fields_scanned: false,
                content_checked: false,
            });
        };
        let datum = match data {
            Ok(d) => d,
            Err(why) if !compiled.rules.is_empty() => {
                return Err(ValidationError::PayloadMismatch {
                    id,
                    subject: schema.subject,
                    schema_type: compiled.schema_type,
                    why: format!("{why} (decoding is needed for the schema's data-quality rules)"),
                });
            }
            // Schema-id mode and only a field scan: the caller falls back to a raw scan.
            Err(_) => {
                return Ok(Checked {
                    schema,
                    fields_scanned: false,
                    content_checked: true,
                });
            }
        };
        let root_name = schema
            .record_name
            .as_deref()
            .unwrap_or(match compiled.schema_type {
                SchemaType::Json => "$",
                _ => "",
            });
        if let Err(f) = rules::run(&compiled.rules, &datum, root_name, &compiled.tag_patterns) {
            return Err(rule_error(f, id, &schema.subject));
        }
        let mut fields_scanned = false;
        if let Some(scanner) = scanner {
            decode::visit_fields(
                &datum,
                root_name,
                &compiled.tag_patterns,
                &mut |f: &FieldVisit<'_>| {
                    let value = match f.value {
                        Datum::Str(s) => ScalarValue::Str(s),
                        Datum::Int(i) => ScalarValue::Int(*i),
                        Datum::UInt(u) => ScalarValue::UInt(*u),
                        _ => return Ok(()),
                    };
                    let field = ScannedField {
                        path: f.path,
                        full_name: f.full_name,
                        tags: f.tags,
                        value,
                    };
                    match scanner.check(&field) {
                        None => Ok(()),
                        Some(why) => Err(ValidationError::FieldRefused {
                            field: if f.path.is_empty() {
                                "(root)".to_string()
                            } else {
                                f.path.to_string()
                            },
                            id,
                            subject: schema.subject.clone(),
                            why,
                        }),
                    }
                },
            )?;
            fields_scanned = true;
        }
        Ok(Checked {
            schema,
            fields_scanned,
            content_checked: true,
        })
    }

    /// The compiled schema for `id`, from the cache when its fingerprint is unchanged.
    /// The compiled schema of `id` and the live subjects using it: from [`Self::resolved`]
    /// while the store's generation is unchanged, else looked up (and remembered).
    async fn resolve(&self, id: i32) -> Result<(Arc<Compiled>, Arc<[String]>), ValidationError> {
        let generation = self.store.generation();
        if let Some(g) = generation
            && let Ok(r) = self.resolved.read()
            && let Some(hit) = r.get(&id)
            && hit.generation == g
        {
            return Ok((hit.compiled.clone(), hit.subjects.clone()));
        }
        let compiled = self.compiled(id).await?;
        let subjects: Arc<[String]> = match self.store.subjects_by_id(id, false).await {
            Ok(s) => s.into(),
            Err(RegistryError::SchemaNotFound(_)) => Vec::new().into(),
            Err(e) => return Err(store_err(e)),
        };
        // The generation read *before* the lookups: a change during them leaves an entry that
        // the next call sees as stale.
        if let Some(generation) = generation
            && let Ok(mut r) = self.resolved.write()
        {
            if r.len() >= CACHE_CAPACITY && !r.contains_key(&id) {
                r.clear();
            }
            r.insert(
                id,
                Resolved {
                    generation,
                    compiled: compiled.clone(),
                    subjects: subjects.clone(),
                },
            );
        }
        Ok((compiled, subjects))
    }

    async fn compiled(&self, id: i32) -> Result<Arc<Compiled>, ValidationError> {
        let stored = match self.store.schema_by_id(id).await {
            Ok(s) => s,
            Err(RegistryError::SchemaNotFound(_)) => {
                if let Ok(mut c) = self.cache.write() {
                    c.remove(&id);
                }
                return Err(ValidationError::UnknownSchemaId(id));
            }
            Err(e) => return Err(store_err(e)),
        };
        let mut fp = fingerprint_of(stored.schema_type, &stored.schema, &stored.references);
        if stored.rule_set.is_some() || stored.metadata.is_some() {
            // Rules and tags are compiled with the schema: a change recompiles.
            use std::fmt::Write as _;
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&stored.rule_set, &stored.metadata).hash(&mut h);
            let _ = write!(fp, ":{:016x}", h.finish());
        }
        if let Ok(c) = self.cache.read()
            && let Some((f, compiled)) = c.get(&id)
            && *f == fp
        {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(self.compile(id, &stored).await?);
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_CAPACITY && !c.contains_key(&id) {
                c.clear();
            }
            c.insert(id, (fp, compiled.clone()));
        }
        Ok(compiled)
    }

    async fn compile(&self, id: i32, stored: &SchemaById) -> Result<Compiled, ValidationError> {
        let unusable = |why: String| ValidationError::SchemaUnusable { id, why };
        // Fetch the transitive references (the parser's resolver is synchronous).
        let mut refs: HashMap<(String, i32), ResolvedReference> = HashMap::new();
        let mut todo: VecDeque<Reference> = stored.references.iter().cloned().collect();
        while let Some(r) = todo.pop_front() {
            let key = (r.subject.clone(), r.version);
            if refs.contains_key(&key) {
                continue;
            }
            if refs.len() >= MAX_REFERENCES {
                return Err(unusable(format!("more than {MAX_REFERENCES} references")));
            }
            match self
                .store
                .version(&r.subject, VersionSpec::Number(r.version), true)
                .await
            {
                Ok(v) => {
                    todo.extend(v.references.iter().cloned());
                    refs.insert(
                        key,
                        ResolvedReference {
                            schema: v.schema,
                            references: v.references,
                        },
                    );
                }
                // Missing: the parser reports the unknown reference.
                Err(
                    RegistryError::SubjectNotFound(_)
                    | RegistryError::VersionNotFound(_)
                    | RegistryError::SchemaNotFound(_),
                ) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        let resolver = move |r: &Reference| refs.get(&(r.subject.clone(), r.version)).cloned();
        let parsed = ParsedSchema::parse(
            stored.schema_type,
            &stored.schema,
            &stored.references,
            &resolver,
        )
        .map_err(|e| unusable(e.to_string()))?;
        let json = match parsed.parsed() {
            Parsed::Json(j) => {
                let mut options = jsonschema::options().with_retriever(JsonRefs {
                    docs: j.resources.clone(),
                });
                if j.root.get("$schema").is_none() {
                    options = options.with_draft(jsonschema::Draft::Draft7);
                }
                Some(
                    options
                        .build(&j.root)
                        .map_err(|e| unusable(e.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(Compiled {
            schema_type: stored.schema_type,
            parsed,
            json,
            rules: rules::compile(stored.rule_set.as_ref()),
            tag_patterns: decode::tag_patterns(
                stored.metadata.as_ref().and_then(|m| m.tags.as_ref()),
            ),
        })
    }
}

fn rule_error(failure: Box<RuleFailure>, id: i32, subject: &str) -> ValidationError {
    let subject = subject.to_string();
    if failure.invalid {
        ValidationError::RuleInvalid {
            id,
            subject,
            failure,
        }
    } else {
        ValidationError::RuleFailed {
            id,
            subject,
            failure,
        }
    }
}

/// Decodes the payload (schema-id mode) into a value for rules and field checks.
fn decode_payload(
    c: &Compiled,
    payload: &[u8],
    message: Option<&(MessageDescriptor, usize)>,
) -> Result<Datum, String> {
    match c.parsed.parsed() {
        Parsed::Avro(a) => decode::avro(a, payload),
        Parsed::Protobuf(_) => {
            let (desc, used) = message.ok_or("the Protobuf message index does not decode")?;
            let body = payload.get(*used..).unwrap_or_default();
            DynamicMessage::decode(desc.clone(), body)
                .map(|m| decode::protobuf(&m))
                .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))
        }
        Parsed::Json(j) => {
            let instance: Value =
                serde_json::from_slice(payload).map_err(|e| format!("not valid JSON: {e}"))?;
            Ok(decode::json(&j.root, &instance))
        }
    }
}

/// The subject for error messages before the record name is known.
fn expected_subject_hint(topic: &str, kind: KeyOrValue, s: SubjectNameStrategy) -> String {
    match s {
        SubjectNameStrategy::TopicName => format!("{topic}-{kind}"),
        _ => format!("(record-name subject of topic {topic})"),
    }
}

/// Finds the schema id: header first, then the payload prefix.
fn locate_id<K: AsRef<str>, V: AsRef<[u8]>>(
    kind: KeyOrValue,
    bytes: &[u8],
    headers: &[(K, V)],
) -> Result<(IdRef, SchemaIdSource, usize), ValidationError> {
    if let Some((_, v)) = headers.iter().find(|(k, _)| k.as_ref() == kind.header()) {
        let v = v.as_ref();
        let id = match (v.len(), v.first()) {
            (4, _) => id_from(v).map(IdRef::Id),
            (5, Some(0)) => id_from(&v[1..]).map(IdRef::Id),
            (17, Some(1)) => guid_from(&v[1..]).map(IdRef::Guid),
            (16, _) => guid_from(v).map(IdRef::Guid),
            _ => None,
        };
        return match id {
            Some(id) => Ok((id, SchemaIdSource::Header, 0)),
            None => Err(ValidationError::NoSchemaId(format!(
                "the {} header has {} bytes; expected 0x00 + 4-byte id, 0x01 + 16-byte GUID, or a 4-byte id",
                kind.header(),
                v.len()
            ))),
        };
    }
    match bytes.first() {
        None => Err(ValidationError::NoSchemaId(format!(
            "the {kind} is empty and has no {} header",
            kind.header()
        ))),
        Some(0) => match bytes.get(1..5).and_then(id_from) {
            Some(id) => Ok((IdRef::Id(id), SchemaIdSource::Prefix, 5)),
            None => Err(ValidationError::NoSchemaId(format!(
                "the {kind} starts with magic byte 0 but is only {} bytes long (5 needed)",
                bytes.len()
            ))),
        },
        Some(1) => match bytes.get(1..17).and_then(guid_from) {
            Some(g) => Ok((IdRef::Guid(g), SchemaIdSource::GuidPrefix, 17)),
            None => Err(ValidationError::NoSchemaId(format!(
                "the {kind} starts with magic byte 1 but is only {} bytes long (17 needed)",
                bytes.len()
            ))),
        },
        Some(_) => Err(ValidationError::NoSchemaId(format!(
            "the {kind} does not start with magic byte 0 and has no {} header",
            kind.header()
        ))),
    }
}

fn avro_record_name(a: &AvroSchema) -> Option<String> {
    match &a.root {
        AvroType::Named(i) => a.names.get(*i).map(|n| n.full_name.clone()),
        _ => None,
    }
}

/// Reads a zig-zag varint (Kafka `ByteUtils.readVarint`, Avro int/long).
pub(crate) fn read_zigzag(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// Parses the message-index array and picks the message; returns it and the bytes used.
fn protobuf_message(c: &Compiled, payload: &[u8]) -> Result<(MessageDescriptor, usize), String> {
    let Parsed::Protobuf(p) = c.parsed.parsed() else {
        return Err("not a Protobuf schema".into());
    };
    let mut pos = 0usize;
    let count =
        read_zigzag(payload, &mut pos).ok_or("the message-index array is missing or truncated")?;
    let mut indexes = Vec::new();
    if count == 0 {
        indexes.push(0);
    } else {
        let n = usize::try_from(count)
            .ok()
            .filter(|n| *n <= MAX_MESSAGE_INDEXES)
            .ok_or_else(|| {
                format!("message-index array length {count} is not in 1..={MAX_MESSAGE_INDEXES}")
            })?;
        for _ in 0..n {
            indexes.push(
                read_zigzag(payload, &mut pos).ok_or("the message-index array is truncated")?,
            );
        }
    }
    let mut current: Option<MessageDescriptor> = None;
    for (depth, ix) in indexes.iter().enumerate() {
        let i = usize::try_from(*ix).map_err(|_| format!("negative message index {ix}"))?;
        let next = match &current {
            None => p.file().messages().nth(i),
            Some(m) => m.child_messages().nth(i),
        };
        current = Some(next.ok_or_else(|| {
            format!(
                "message index {ix} at depth {depth} of {indexes:?} does not name a message in the schema"
            )
        })?);
    }
    let desc = current.ok_or("empty message-index array")?;
    Ok((desc, pos))
}

/// `$ref` documents of a JSON Schema, by reference name.
struct JsonRefs {
    docs: Arc<HashMap<String, Value>>,
}

impl jsonschema::Retrieve for JsonRefs {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let s = s.split('#').next().unwrap_or(s);
        let found = self.docs.get(s).or_else(|| {
            self.docs
                .iter()
                .find(|(name, _)| {
                    s.ends_with(&format!("/{name}")) || name.ends_with(&format!("/{s}"))
                })
                .map(|(_, v)| v)
        });
        found
            .cloned()
            .ok_or_else(|| format!("reference '{s}' is not among the schema's references").into())
    }
}

fn check_json(v: &jsonschema::Validator, payload: &[u8]) -> Result<Value, String> {
    let instance: Value =
        serde_json::from_slice(payload).map_err(|e| format!("not valid JSON: {e}"))?;
    v.validate(&instance).map_err(|e| {
        let at = e.instance_path().to_string();
        let at = if at.is_empty() { "/".to_string() } else { at };
        format!("at {at}: {}", e.masked())
    })?;
    Ok(instance)
}

/// Walks an Avro binary datum over the registry's Avro model.
struct AvroWalk<'a> {
    schema: &'a AvroSchema,
    buf: &'a [u8],
    pos: usize,
    path: Vec<String>,
    budget: usize,
}

impl AvroWalk<'_> {
    fn fail(&self, what: &str, why: &str) -> String {
        let at = if self.path.is_empty() {
            "the root".to_string()
        } else {
            let mut at = String::new();
            for seg in &self.path {
                if !at.is_empty() && !seg.starts_with('[') {
                    at.push('.');
                }
                at.push_str(seg);
            }
            format!("field '{at}'")
        };
        format!("expected {what} at {at}: {why}")
    }

    fn long(&mut self, what: &str) -> Result<i64, String> {
        read_zigzag(self.buf, &mut self.pos)
            .ok_or_else(|| self.fail(what, "the payload ended or the varint is malformed"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.fail(
                what,
                &format!(
                    "{n} bytes needed, {} left",
                    self.buf.len().saturating_sub(self.pos)
                ),
            )),
        }
    }

    fn length(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long(what)?;
        usize::try_from(n).map_err(|_| self.fail(what, &format!("negative length {n}")))
    }

    fn tick(&mut self) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| self.fail("fewer items", "too many items for the payload size"))?;
        Ok(())
    }

    fn value(&mut self, t: &AvroType, depth: usize) -> Result<(), String> {
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(self.fail("a shallower value", "nesting is too deep"));
        }
        self.tick()?;
        match t {
            AvroType::Primitive { prim, .. } => self.prim(*prim),
            AvroType::Array { items, .. } => self.blocks(depth, |w, d| w.value(items, d)),
            AvroType::Map { values, .. } => self.blocks(depth, |w, d| {
                let n = w.length("a map key")?;
                let key = w.take(n, "a map key")?;
                if std::str::from_utf8(key).is_err() {
                    return Err(w.fail("a map key", "not UTF-8"));
                }
                w.value(values, d)
            }),
            AvroType::Union(branches) => {
                let i = self.long("a union branch index")?;
                let b = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| {
                        self.fail(
                            "a union branch index",
                            &format!("{i} is not in 0..{}", branches.len()),
                        )
                    })?;
                self.value(b, depth + 1)
            }
            AvroType::Named(ix) => {
                let Some(named) = self.schema.names.get(*ix) else {
                    return Err(self.fail("a named type", "unknown named type"));
                };
                match &named.kind {
                    NamedKind::Record { fields, .. } => {
                        for f in fields {
                            self.path.push(f.name.clone());
                            self.value(&f.ty, depth + 1)?;
                            self.path.pop();
                        }
                        Ok(())
                    }
                    NamedKind::Enum { symbols, .. } => {
                        let what = format!("enum {}", named.full_name);
                        let i = self.long(&what)?;
                        if usize::try_from(i).is_ok_and(|i| i < symbols.len()) {
                            Ok(())
                        } else {
                            Err(self.fail(
                                &what,
                                &format!("symbol index {i} is not in 0..{}", symbols.len()),
                            ))
                        }
                    }
                    NamedKind::Fixed { size } => {
                        let what = format!("fixed {}", named.full_name);
                        let n = usize::try_from(*size).unwrap_or(usize::MAX);
                        self.take(n, &what).map(|_| ())
                    }
                }
            }
        }
    }

    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long("a block count")?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // Negative count: a byte size follows.
                self.length("a block byte size")?;
            }
            let n = count.unsigned_abs();
            for i in 0..n {
                self.path.push(format!("[{i}]"));
                self.tick()?;
                item(self, depth + 1)?;
                self.path.pop();
            }
        }
    }

    fn prim(&mut self, p: Prim) -> Result<(), String> {
        match p {
            Prim::Null => Ok(()),
            Prim::Boolean => match self.take(1, "boolean")? {
                [0] | [1] => Ok(()),
                _ => Err(self.fail("boolean", "the byte is neither 0 nor 1")),
            },
            Prim::Int => {
                let v = self.long("int")?;
                if i32::try_from(v).is_ok() {
                    Ok(())
                } else {
                    Err(self.fail("int", "the value is out of the 32-bit range"))
                }
            }
            Prim::Long => self.long("long").map(|_| ()),
            Prim::Float => self.take(4, "float").map(|_| ()),
            Prim::Double => self.take(8, "double").map(|_| ()),
            Prim::Bytes => {
                let n = self.length("bytes")?;
                self.take(n, "bytes").map(|_| ())
            }
            Prim::String => {
                let n = self.length("string")?;
                if std::str::from_utf8(self.take(n, "string")?).is_err() {
                    return Err(self.fail("string", "not valid UTF-8"));
                }
                Ok(())
            }
        }
    }
}

fn check_avro(schema: &AvroSchema, payload: &[u8]) -> Result<(), String> {
    let mut w = AvroWalk {
        schema,
        buf: payload,
        pos: 0,
        path: Vec::new(),
        budget: payload.len().saturating_mul(4).saturating_add(1024),
    };
    w.value(&schema.root, 0)?;
    if w.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after the datum",
            payload.len() - w.pos
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemoryStore, SchemaRequest};
    use apache_avro::types::Value as AvroValue;

    const ORDER_AVRO: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"sku","type":"string"},{"name":"amount","type":"long"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"note","type":["null","string"],"default":null}]}"#;
    const PROTO: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string sku = 1;\n  int64 amount = 2;\n  message Line { int32 qty = 1; }\n}\nmessage Refund {\n  string id = 1;\n}\n";
    const JSON: &str = r#"{"title":"shop.Item","type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer"}},"required":["sku"]}"#;

    const NO_HEADERS: &[(&str, &[u8])] = &[];

    fn full(strategy: SubjectNameStrategy) -> ValidationPolicy {
        ValidationPolicy {
            mode: ValidationMode::Full,
            strategy,
        }
    }

    fn topic_full() -> ValidationPolicy {
        full(SubjectNameStrategy::TopicName)
    }

    async fn setup(
        subject: &str,
        ty: SchemaType,
        text: &str,
    ) -> (Validator, Arc<MemoryStore>, i32) {
        let store = Arc::new(MemoryStore::new());
        let id = register(&store, subject, ty, text).await;
        (Validator::new(store.clone()), store, id)
    }

    async fn register(store: &MemoryStore, subject: &str, ty: SchemaType, text: &str) -> i32 {
        let req = SchemaRequest {
            schema: Some(text.to_string()),
            schema_type: Some(ty.as_str().to_string()),
            ..Default::default()
        };
        store.register(subject, req, false).await.unwrap().id
    }

    fn framed(id: i32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[allow(deprecated)] // to_avro_datum: the simplest encoder for test data
    fn avro_order(sku: &str, amount: i64) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(ORDER_AVRO).unwrap();
        let v = AvroValue::Record(vec![
            ("sku".into(), AvroValue::String(sku.into())),
            ("amount".into(), AvroValue::Long(amount)),
            (
                "tags".into(),
                AvroValue::Array(vec![
                    AvroValue::String("a".into()),
                    AvroValue::String("b".into()),
                ]),
            ),
            (
                "note".into(),
                AvroValue::Union(1, Box::new(AvroValue::String("hi".into()))),
            ),
        ]);
        apache_avro::to_avro_datum(&schema, v).unwrap()
    }

    #[tokio::test]
    async fn avro_full_ok_and_cached() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let bytes = framed(id, &avro_order("x-1", 42));
        for _ in 0..2 {
            let ok = v
                .validate(
                    "orders",
                    KeyOrValue::Value,
                    &bytes,
                    NO_HEADERS,
                    &topic_full(),
                )
                .await
                .unwrap();
            assert_eq!(ok.id, id);
            assert_eq!(ok.subject, "orders-value");
            assert_eq!(ok.record_name.as_deref(), Some("shop.Order"));
            assert_eq!(ok.source, SchemaIdSource::Prefix);
            assert_eq!(ok.payload_offset, 5);
        }
        assert_eq!(v.cached(), 1);
    }

    #[tokio::test]
    async fn avro_truncated_names_field() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        // sku only: the long is missing.
        let mut payload = vec![6u8];
        payload.extend_from_slice(b"SECRET".get(..3).unwrap());
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &payload),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("payload does not match schema {id} (AVRO)")),
            "{msg}"
        );
        assert!(msg.contains("expected long at field 'amount'"), "{msg}");
        assert!(!msg.contains("SEC"), "{msg}");
    }

    #[tokio::test]
    async fn avro_trailing_bytes_and_bad_union() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let mut payload = avro_order("x", 1);
        payload.push(0);
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &payload),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("1 trailing bytes"), "{e}");
        // sku "", amount 0, tags [], union index 5.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[0, 0, 0, 10]),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("union branch index at field 'note'"),
            "{e}"
        );
        // Array item truncated: path names the index.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[0, 0, 2, 20]),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("field 'tags[0]'"), "{e}");
    }

    #[tokio::test]
    async fn schema_id_mode_does_not_decode() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, b"garbage"),
                NO_HEADERS,
                &ValidationPolicy::default(),
            )
            .await
            .unwrap();
        assert_eq!(ok.id, id);
    }

    #[tokio::test]
    async fn wrong_subject_unknown_id_and_missing_magic() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let p = ValidationPolicy::default();
        let e = v
            .validate(
                "payments",
                KeyOrValue::Value,
                &framed(id, &[]),
                NO_HEADERS,
                &p,
            )
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("schema id {id} is registered under orders-value, not payments-value")
        );
        let e = v
            .validate("orders", KeyOrValue::Key, &framed(id, &[]), NO_HEADERS, &p)
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::WrongSubject { .. }), "{e}");
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(999, &[]),
                NO_HEADERS,
                &p,
            )
            .await
            .unwrap_err();
        assert_eq!(e, ValidationError::UnknownSchemaId(999));
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                b"{\"plain\":1}",
                NO_HEADERS,
                &p,
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no schema id: the value does not start with magic byte 0"),
            "{e}"
        );
        assert!(!e.to_string().contains("plain"));
        let e = v
            .validate("orders", KeyOrValue::Value, &[0, 0, 1], NO_HEADERS, &p)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("only 3 bytes"), "{e}");
        let e = v
            .validate("orders", KeyOrValue::Value, &[], NO_HEADERS, &p)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[tokio::test]
    async fn soft_deleted_subject_is_refused() {
        let (v, store, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        // Validated once (and remembered at this store generation) ...
        v.validate(
            "orders",
            KeyOrValue::Value,
            &framed(id, &[]),
            NO_HEADERS,
            &ValidationPolicy::default(),
        )
        .await
        .unwrap();
        // ... then the subject goes: the remembered answer must not outlive the change.
        store.delete_subject("orders-value", false).await.unwrap();
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[]),
                NO_HEADERS,
                &ValidationPolicy::default(),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("registered under no live subject"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn guid_prefix_without_lookup_is_a_clear_error() {
        let (v, _, _) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&[0xab; 16]);
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &bytes,
                NO_HEADERS,
                &ValidationPolicy::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::GuidUnsupported(..)), "{e}");
        assert!(e.to_string().contains("does not assign GUIDs"), "{e}");
    }

    struct OneGuid(i32);

    #[async_trait]
    impl GuidLookup for OneGuid {
        async fn id_for_guid(&self, guid: [u8; 16]) -> StoreResult<Option<i32>> {
            Ok((guid == [7u8; 16]).then_some(self.0))
        }
    }

    #[tokio::test]
    async fn guid_prefix_and_header_with_lookup() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let v = v.with_guid_lookup(Arc::new(OneGuid(id)));
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&[7; 16]);
        bytes.extend_from_slice(&avro_order("a", 1));
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &bytes,
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap();
        assert_eq!(
            (ok.id, ok.source, ok.payload_offset),
            (id, SchemaIdSource::GuidPrefix, 17)
        );
        let mut h = vec![1u8];
        h.extend_from_slice(&[9; 16]);
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &avro_order("a", 1),
                &[(VALUE_SCHEMA_ID_HEADER, h)],
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::UnknownGuid(_)), "{e}");
    }

    #[tokio::test]
    async fn header_id_forms() {
        let (v, _, id) = setup("orders-value", SchemaType::Avro, ORDER_AVRO).await;
        let payload = avro_order("a", 5);
        for h in [id.to_be_bytes().to_vec(), framed(id, &[])] {
            let ok = v
                .validate(
                    "orders",
                    KeyOrValue::Value,
                    &payload,
                    &[("other", b"x".to_vec()), (VALUE_SCHEMA_ID_HEADER, h)],
                    &topic_full(),
                )
                .await
                .unwrap();
            assert_eq!(
                (ok.id, ok.source, ok.payload_offset),
                (id, SchemaIdSource::Header, 0)
            );
        }
        // The key header does not apply to the value.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &payload,
                &[(KEY_SCHEMA_ID_HEADER, id.to_be_bytes().to_vec())],
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::NoSchemaId(_)), "{e}");
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &payload,
                &[(VALUE_SCHEMA_ID_HEADER, vec![1, 2])],
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("header has 2 bytes"), "{e}");
    }

    #[tokio::test]
    async fn record_name_strategies() {
        let store = Arc::new(MemoryStore::new());
        let id = register(&store, "shop.Order", SchemaType::Avro, ORDER_AVRO).await;
        let id2 = register(&store, "orders-shop.Order", SchemaType::Avro, ORDER_AVRO).await;
        assert_eq!(id, id2);
        let v = Validator::new(store.clone());
        let bytes = framed(id, &avro_order("a", 1));
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &bytes,
                NO_HEADERS,
                &full(SubjectNameStrategy::RecordName),
            )
            .await
            .unwrap();
        assert_eq!(ok.subject, "shop.Order");
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &bytes,
                NO_HEADERS,
                &full(SubjectNameStrategy::TopicRecordName),
            )
            .await
            .unwrap();
        assert_eq!(ok.subject, "orders-shop.Order");
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &bytes,
                NO_HEADERS,
                &full(SubjectNameStrategy::TopicName),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not orders-value"), "{e}");
        // A primitive schema has no record name.
        let pid = register(&store, "prim", SchemaType::Avro, r#""string""#).await;
        let e = v
            .validate(
                "t",
                KeyOrValue::Key,
                &framed(pid, &[0]),
                NO_HEADERS,
                &full(SubjectNameStrategy::RecordName),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::NoRecordName { .. }), "{e}");
    }

    fn proto_order(indexes: &[u8]) -> Vec<u8> {
        let mut p = indexes.to_vec();
        // sku = "ab", amount = 300
        p.extend_from_slice(&[0x0a, 2, b'a', b'b', 0x10, 0xac, 0x02]);
        p
    }

    #[tokio::test]
    async fn protobuf_full() {
        let (v, store, id) = setup("orders-value", SchemaType::Protobuf, PROTO).await;
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &proto_order(&[0])),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap();
        assert_eq!(ok.record_name.as_deref(), Some("shop.Order"));
        // [1] = Refund; the Order bytes still decode (field 1 string) but field 2 is unknown:
        // proto3 keeps unknown fields, so it passes; the record name is Refund.
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &proto_order(&[2, 2])),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap();
        assert_eq!(ok.record_name.as_deref(), Some("shop.Refund"));
        // Nested [0, 0] = Order.Line.
        register(&store, "shop.Order.Line", SchemaType::Protobuf, PROTO).await;
        let ok = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[4, 0, 0, 0x08, 0x01]),
                NO_HEADERS,
                &full(SubjectNameStrategy::RecordName),
            )
            .await
            .unwrap();
        assert_eq!(ok.subject, "shop.Order.Line");
        // Bad index.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &proto_order(&[2, 10])),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("message index 5"), "{e}");
        // Wire type 7 is invalid.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[0, 0x0f, 1]),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("payload does not match schema {id} (PROTOBUF)")),
            "{msg}"
        );
        assert!(msg.contains("not a valid shop.Order message"), "{msg}");
        // Truncated string.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &[0, 0x0a, 9, b'a']),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::PayloadMismatch { .. }), "{e}");
    }

    #[tokio::test]
    async fn json_full() {
        let (v, store, id) = setup("items-value", SchemaType::Json, JSON).await;
        let ok = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(id, br#"{"sku":"a","qty":2}"#),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap();
        assert_eq!(ok.record_name.as_deref(), Some("shop.Item"));
        let e = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(id, br#"{"sku":"a","qty":"TOPSECRET"}"#),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("payload does not match schema {id} (JSON)")),
            "{msg}"
        );
        assert!(msg.contains("/qty"), "{msg}");
        assert!(!msg.contains("TOPSECRET"), "{msg}");
        let e = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(id, b"{not json"),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        register(&store, "shop.Item", SchemaType::Json, JSON).await;
        let ok = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(id, br#"{"sku":"a"}"#),
                NO_HEADERS,
                &full(SubjectNameStrategy::RecordName),
            )
            .await
            .unwrap();
        assert_eq!(ok.subject, "shop.Item");
    }

    #[tokio::test]
    async fn avro_with_reference() {
        let store = Arc::new(MemoryStore::new());
        register(&store, "money", SchemaType::Avro, r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#).await;
        let req = SchemaRequest {
            schema: Some(r#"{"type":"record","name":"Pay","namespace":"shop","fields":[{"name":"m","type":"shop.Money"}]}"#.into()),
            references: Some(vec![Reference { name: "shop.Money".into(), subject: "money".into(), version: 1 }]),
            ..Default::default()
        };
        let id = store.register("pay-value", req, false).await.unwrap().id;
        let v = Validator::new(store);
        v.validate(
            "pay",
            KeyOrValue::Value,
            &framed(id, &[4]),
            NO_HEADERS,
            &topic_full(),
        )
        .await
        .unwrap();
        let e = v
            .validate(
                "pay",
                KeyOrValue::Value,
                &framed(id, &[]),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("expected long at field 'm.cents'"),
            "{e}"
        );
    }

    async fn register_contract(
        store: &MemoryStore,
        subject: &str,
        ty: SchemaType,
        text: &str,
        rule_set: Option<&str>,
        metadata: Option<&str>,
    ) -> i32 {
        let req = SchemaRequest {
            schema: Some(text.to_string()),
            schema_type: Some(ty.as_str().to_string()),
            rule_set: rule_set.map(|r| serde_json::from_str(r).unwrap()),
            metadata: metadata.map(|m| serde_json::from_str(m).unwrap()),
            ..Default::default()
        };
        store.register(subject, req, false).await.unwrap().id
    }

    fn schema_id_policy() -> ValidationPolicy {
        ValidationPolicy::default()
    }

    const POSITIVE: &str = r#"{"domainRules":[
        {"name":"positive_amount","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"message.amount > 0"},
        {"name":"read_only","kind":"CONDITION","mode":"READ","type":"CEL","expr":"false"},
        {"name":"off","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"false","disabled":true}]}"#;

    #[tokio::test]
    async fn avro_cel_rule_passes_and_fails_in_both_modes() {
        let store = Arc::new(MemoryStore::new());
        let id = register_contract(
            &store,
            "orders-value",
            SchemaType::Avro,
            ORDER_AVRO,
            Some(POSITIVE),
            None,
        )
        .await;
        let v = Validator::new(store);
        for policy in [topic_full(), schema_id_policy()] {
            let ok = v
                .validate_with(
                    "orders",
                    KeyOrValue::Value,
                    &framed(id, &avro_order("SECRET-SKU", 5)),
                    NO_HEADERS,
                    &policy,
                    None,
                )
                .await
                .unwrap();
            assert!(ok.content_checked && !ok.fields_scanned);
            let e = v
                .validate(
                    "orders",
                    KeyOrValue::Value,
                    &framed(id, &avro_order("SECRET-SKU", -3)),
                    NO_HEADERS,
                    &policy,
                )
                .await
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "record fails data-quality rule 'positive_amount' (CEL: message.amount > 0) \
                     of schema {id} (orders-value)"
                )
            );
            assert!(matches!(e, ValidationError::RuleFailed { .. }));
            assert_eq!(e.schema_id(), Some(id));
        }
        // Rules need the data: schema-id mode refuses a payload that does not decode.
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, b"garbage"),
                NO_HEADERS,
                &schema_id_policy(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("data-quality rules"), "{e}");
    }

    #[tokio::test]
    async fn protobuf_and_json_cel_rules() {
        let store = Arc::new(MemoryStore::new());
        let rules = |expr: &str| {
            format!(
                r#"{{"domainRules":[{{"name":"r","kind":"CONDITION","mode":"WRITEREAD","type":"CEL","expr":"{expr}","onFailure":"DLQ","params":{{"dlq.topic":"bad-orders"}}}}]}}"#
            )
        };
        let pass = register_contract(
            &store,
            "orders-value",
            SchemaType::Protobuf,
            PROTO,
            Some(&rules("message.amount == 300 && message.sku == 'ab'")),
            None,
        )
        .await;
        let v = Validator::new(store.clone());
        v.validate(
            "orders",
            KeyOrValue::Value,
            &framed(pass, &proto_order(&[0])),
            NO_HEADERS,
            &topic_full(),
        )
        .await
        .unwrap();
        let fail = register_contract(
            &store,
            "orders2-value",
            SchemaType::Protobuf,
            PROTO,
            Some(&rules("message.amount > 1000")),
            None,
        )
        .await;
        let e = v
            .validate(
                "orders2",
                KeyOrValue::Value,
                &framed(fail, &proto_order(&[0])),
                NO_HEADERS,
                &schema_id_policy(),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("rule 'r' (CEL: message.amount > 1000)"),
            "{e}"
        );
        assert_eq!(e.rule_dlq_topic(), Some("bad-orders"));

        let jid = register_contract(
            &store,
            "items-value",
            SchemaType::Json,
            JSON,
            Some(&rules("message.qty >= 1 && message.sku.startsWith('S')")),
            None,
        )
        .await;
        v.validate(
            "items",
            KeyOrValue::Value,
            &framed(jid, br#"{"sku":"S-1","qty":2}"#),
            NO_HEADERS,
            &topic_full(),
        )
        .await
        .unwrap();
        let e = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(jid, br#"{"sku":"S-1","qty":0}"#),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::RuleFailed { .. }), "{e}");
        // A missing field is an evaluation error: the rule fails, naming the key only.
        let e = v
            .validate(
                "items",
                KeyOrValue::Value,
                &framed(jid, br#"{"sku":"SECRET"}"#),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no such key 'qty'"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[tokio::test]
    async fn bad_expression_refuses_with_the_rule_name() {
        // The registry refuses such a rule set (42210), but `_schemas` may hold one written by
        // another registry: replay it as a record.
        let store = Arc::new(MemoryStore::new());
        let broken = r#"{"domainRules":[{"name":"broken","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"message.amount >"}]}"#;
        let id = 1;
        store
            .apply(
                &[crate::api::Change::Schema(crate::api::SchemaRecord {
                    subject: "orders-value".into(),
                    version: 1,
                    id,
                    schema_type: SchemaType::Avro,
                    schema: ORDER_AVRO.into(),
                    references: vec![],
                    metadata: None,
                    rule_set: Some(serde_json::from_str(broken).unwrap()),
                    guid: None,
                    deleted: false,
                })],
                None,
            )
            .unwrap();
        let v = Validator::new(store);
        let e = v
            .validate(
                "orders",
                KeyOrValue::Value,
                &framed(id, &avro_order("a", 1)),
                NO_HEADERS,
                &topic_full(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::RuleInvalid { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("data-quality rule 'broken' (CEL: message.amount >) of schema {id} (orders-value) does not compile")),
            "{e}"
        );
    }

    /// Refuses strings containing "4111" and the integer 4111111111111111, recording what it saw.
    struct Spy(std::sync::Mutex<Vec<(String, Vec<String>)>>);

    impl FieldScanner for Spy {
        fn check(&self, f: &ScannedField<'_>) -> Option<String> {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((f.full_name.to_string(), f.tags.to_vec()));
            }
            match f.value {
                ScalarValue::Str(s) if s.contains("4111") => Some("holds a PAN".into()),
                ScalarValue::Int(4111111111111111) => Some("holds a PAN".into()),
                _ => None,
            }
        }
    }

    const PAY_AVRO: &str = r#"{"type":"record","name":"Pay","namespace":"shop","fields":[{"name":"ref","type":"string","confluent:tags":["REF"]},{"name":"card","type":"long"}]}"#;

    #[tokio::test]
    async fn field_scanner_sees_decoded_avro_and_json_fields_with_tags() {
        let store = Arc::new(MemoryStore::new());
        let id = register_contract(
            &store,
            "pay-value",
            SchemaType::Avro,
            PAY_AVRO,
            None,
            Some(r#"{"tags":{"Pay.card":["PAN"]}}"#),
        )
        .await;
        let v = Validator::new(store.clone());
        let pay = |r: &str, card: i64| {
            let mut p = vec![u8::try_from(r.len() * 2).unwrap()];
            p.extend_from_slice(r.as_bytes());
            let mut z = ((card << 1) ^ (card >> 63)) as u64;
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    p.push(b);
                    break;
                }
                p.push(b | 0x80);
            }
            framed(id, &p)
        };
        let spy = Spy(Default::default());
        let ok = v
            .validate_with(
                "pay",
                KeyOrValue::Value,
                &pay("r-1", 42),
                NO_HEADERS,
                &schema_id_policy(),
                Some(&spy),
            )
            .await
            .unwrap();
        assert!(ok.fields_scanned && ok.content_checked);
        assert_eq!(
            spy.0.lock().unwrap().clone(),
            vec![
                ("shop.Pay.ref".to_string(), vec!["REF".to_string()]),
                ("shop.Pay.card".to_string(), vec!["PAN".to_string()]),
            ]
        );
        let e = v
            .validate_with(
                "pay",
                KeyOrValue::Value,
                &pay("r-1", 4111111111111111),
                NO_HEADERS,
                &topic_full(),
                Some(&spy),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("field 'card' of schema {id} (pay-value) holds a PAN")
        );
        // Schema-id mode, payload that does not decode: no scan, the caller falls back.
        let ok = v
            .validate_with(
                "pay",
                KeyOrValue::Value,
                &framed(id, b"\xff"),
                NO_HEADERS,
                &schema_id_policy(),
                Some(&spy),
            )
            .await
            .unwrap();
        assert!(!ok.fields_scanned);

        let json = r#"{"title":"Card","type":"object","properties":{"holder":{"type":"object","properties":{"pan":{"type":"string","confluent:tags":["PAN"]}}}}}"#;
        let jid =
            register_contract(&store, "cards-value", SchemaType::Json, json, None, None).await;
        let e = v
            .validate_with(
                "cards",
                KeyOrValue::Value,
                &framed(jid, br#"{"holder":{"pan":"4111 1111 1111 1111"}}"#),
                NO_HEADERS,
                &topic_full(),
                Some(&spy),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("field 'holder.pan' of schema"),
            "{e}"
        );
        let seen = spy.0.lock().unwrap().clone();
        assert_eq!(
            seen.last(),
            Some(&("Card.holder.pan".to_string(), vec!["PAN".to_string()]))
        );
    }

    #[test]
    fn zigzag() {
        let mut pos = 0;
        assert_eq!(read_zigzag(&[0x03], &mut pos), Some(-2));
        let mut pos = 0;
        assert_eq!(read_zigzag(&[0xac, 0x02], &mut pos), Some(150));
        let mut pos = 0;
        assert_eq!(read_zigzag(&[0xff; 11], &mut pos), None);
    }

    #[test]
    fn huge_block_counts_are_bounded() {
        let schema = AvroSchema::parse(r#"{"type":"array","items":"null"}"#, &[]).unwrap();
        // count = i64::MAX / 2 of nulls in a 10-byte payload.
        let e = check_avro(
            &schema,
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        )
        .unwrap_err();
        assert!(e.contains("too many items"), "{e}");
    }
}
