//! The storage seam of the REST API: the async [`SchemaStore`] trait, its request/response
//! types, and [`RegistryError`] with Confluent's error codes.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{WriteOp, WriteOut};
use crate::compat::CompatibilityLevel;
use crate::schema::{Reference, SchemaError, SchemaType};

/// Registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Reads and writes allowed (default).
    #[default]
    Readwrite,
    /// Writes refused with 42205.
    Readonly,
    /// Deprecated Confluent mode, treated as READONLY.
    ReadonlyOverride,
    /// Writes must carry their ids (schema migration); no compatibility checks.
    Import,
}

impl Mode {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::ReadonlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Mode::Readwrite,
            "READONLY" => Mode::Readonly,
            "READONLY_OVERRIDE" => Mode::ReadonlyOverride,
            "IMPORT" => Mode::Import,
            _ => return Err(RegistryError::InvalidMode(s.to_string())),
        })
    }
}

/// `latest` / `-1` or a concrete version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The latest (non-deleted unless asked) version.
    Latest,
    /// A version number (1..=2^31-1).
    Number(i32),
}

impl VersionSpec {
    /// Parses a path segment per Confluent's `VersionId` (else 42202).
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i64>() {
            Ok(-1) => Ok(VersionSpec::Latest),
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(VersionSpec::Number(n as i32)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

/// Body of register / lookup / compatibility requests (`RegisterSchemaRequest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchemaRequest {
    /// Schema text.
    #[serde(default)]
    pub schema: Option<String>,
    /// Schema type (absent = AVRO).
    #[serde(default, rename = "schemaType")]
    pub schema_type: Option<String>,
    /// References.
    #[serde(default)]
    pub references: Option<Vec<Reference>>,
    /// Caller-chosen id (IMPORT mode).
    #[serde(default)]
    pub id: Option<i32>,
    /// Caller-chosen version (IMPORT mode).
    #[serde(default)]
    pub version: Option<i32>,
    /// Data-contract metadata (absent: inherited from the latest version, see
    /// [`super::governance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::contract::Metadata>,
    /// Data-contract rule set (absent: inherited from the latest version).
    #[serde(default, rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<crate::contract::RuleSet>,
}

impl SchemaRequest {
    /// The schema type, validated.
    pub fn parsed_type(&self) -> Result<SchemaType, RegistryError> {
        match &self.schema_type {
            None => Ok(SchemaType::Avro),
            Some(t) => SchemaType::parse(t).map_err(RegistryError::InvalidSchema),
        }
    }

    /// The schema text, or 42201 when missing or empty.
    pub fn text(&self) -> Result<&str, RegistryError> {
        match self.schema.as_deref() {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(RegistryError::InvalidSchema(SchemaError::Invalid(
                "Empty schema".into(),
            ))),
        }
    }
}

/// A subject-version as returned by the API (`Schema` entity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    /// Subject.
    pub subject: String,
    /// Version.
    pub version: i32,
    /// Global id.
    pub id: i32,
    /// Type (omitted for AVRO, like Confluent).
    #[serde(rename = "schemaType", skip_serializing_if = "is_avro")]
    pub schema_type: SchemaType,
    /// References (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Schema text.
    pub schema: String,
    /// Data-contract metadata (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::contract::Metadata>,
    /// Data-contract rule set (omitted when absent).
    #[serde(rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<crate::contract::RuleSet>,
    /// GUID of the schema id (see [`super::governance`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub guid: String,
    /// Soft-deleted (only shown when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

pub(crate) fn is_avro(t: &SchemaType) -> bool {
    *t == SchemaType::Avro
}

/// A schema by id (`SchemaString` entity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaById {
    /// Schema text.
    pub schema: String,
    /// Type (omitted for AVRO).
    #[serde(rename = "schemaType", skip_serializing_if = "is_avro")]
    pub schema_type: SchemaType,
    /// References (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Data-contract metadata (omitted when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<crate::contract::Metadata>,
    /// Data-contract rule set (omitted when absent).
    #[serde(rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<crate::contract::RuleSet>,
    /// GUID of the schema id (see [`super::governance`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub guid: String,
}

/// Result of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// Global id.
    pub id: i32,
    /// Version within the subject.
    pub version: i32,
    /// GUID of the id.
    pub guid: String,
}

/// A compatibility config record (global or per subject): Confluent's `Config` with the
/// data-contract defaults and overrides. Absent fields are unset (they fall back to the global
/// record, then to the built-in default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// Compatibility level.
    #[serde(
        rename = "compatibilityLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compatibility: Option<CompatibilityLevel>,
    /// Metadata applied when a registration has none.
    #[serde(
        rename = "defaultMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_metadata: Option<crate::contract::Metadata>,
    /// Metadata merged over every registration.
    #[serde(
        rename = "overrideMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub override_metadata: Option<crate::contract::Metadata>,
    /// Rule set applied when a registration has none.
    #[serde(
        rename = "defaultRuleSet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_rule_set: Option<crate::contract::RuleSet>,
    /// Rule set merged over every registration.
    #[serde(
        rename = "overrideRuleSet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub override_rule_set: Option<crate::contract::RuleSet>,
}

impl ConfigRecord {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ConfigRecord::default()
    }

    /// `self` with every field that `update` sets replaced.
    pub fn updated(&self, update: &ConfigRecord) -> ConfigRecord {
        ConfigRecord {
            compatibility: update.compatibility.or(self.compatibility),
            default_metadata: update
                .default_metadata
                .clone()
                .or_else(|| self.default_metadata.clone()),
            override_metadata: update
                .override_metadata
                .clone()
                .or_else(|| self.override_metadata.clone()),
            default_rule_set: update
                .default_rule_set
                .clone()
                .or_else(|| self.default_rule_set.clone()),
            override_rule_set: update
                .override_rule_set
                .clone()
                .or_else(|| self.override_rule_set.clone()),
        }
    }

    /// Field-wise fallback: `self`'s values, else `global`'s.
    pub fn or(&self, global: &ConfigRecord) -> ConfigRecord {
        global.updated(self)
    }
}

/// `(subject, version)` pair of `/schemas/ids/{id}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersionRef {
    /// Subject.
    pub subject: String,
    /// Version.
    pub version: i32,
}

/// Result of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatibilityResult {
    /// Verdict.
    pub is_compatible: bool,
    /// Confluent-style verbose messages (empty when compatible).
    pub messages: Vec<String>,
}

/// Listing filters for subjects and versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listing {
    /// Include soft-deleted entries.
    pub deleted: bool,
    /// Only soft-deleted entries.
    pub deleted_only: bool,
}

/// Errors with Confluent's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// 40401
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// 40403 (the full message, e.g. "Schema 5 not found")
    #[error("{0}")]
    SchemaNotFound(String),
    /// 40404
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i32),
    /// 40407
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i32),
    /// 40408
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    /// 40409
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    /// 40901
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", details.join(", "))]
    Incompatible {
        /// Subject.
        subject: String,
        /// Verbose messages.
        details: Vec<String>,
    },
    /// 42201
    #[error("{0}")]
    InvalidSchema(SchemaError),
    /// 42202
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// 42203
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel(String),
    /// 42204
    #[error(
        "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT: {0}"
    )]
    InvalidMode(String),
    /// 42205
    #[error("{0}")]
    OperationNotPermitted(String),
    /// 42206
    #[error(
        "One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={0},version={1}}}."
    )]
    ReferenceExists(String, i32),
    /// 42208
    #[error("The specified subject is not valid: {0}")]
    InvalidSubject(String),
    /// 42210
    #[error("Invalid ruleset: {0}")]
    InvalidRuleSet(String),
    /// 50001
    #[error("Error in the backend data store - {0}")]
    Store(String),
    /// 50002: the store could not confirm its state in time (e.g. a lookup that missed could
    /// not read `_schemas` to its high watermark within the lag bound).
    #[error("Operation timed out: {0}")]
    Timeout(String),
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound(_) => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted(..) => 40406,
            RegistryError::VersionNotSoftDeleted(..) => 40407,
            RegistryError::SubjectCompatibilityNotConfigured(_) => 40408,
            RegistryError::SubjectModeNotConfigured(_) => 40409,
            RegistryError::Incompatible { .. } => 40901,
            RegistryError::InvalidSchema(e) => e.error_code(),
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::OperationNotPermitted(_) => 42205,
            RegistryError::ReferenceExists(..) => 42206,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::InvalidRuleSet(_) => 42210,
            RegistryError::Store(_) => 50001,
            RegistryError::Timeout(_) => 50002,
        }
    }

    /// HTTP status for the error.
    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        if code >= 10000 {
            (code / 100) as u16
        } else {
            code as u16
        }
    }
}

impl From<SchemaError> for RegistryError {
    fn from(e: SchemaError) -> Self {
        RegistryError::InvalidSchema(e)
    }
}

/// Result alias.
pub type StoreResult<T> = Result<T, RegistryError>;

/// What the REST API needs from storage. All registry semantics (ids, versions, compatibility,
/// soft/hard delete, modes) live behind this trait; [`super::MemoryStore`] is the in-memory
/// implementation (and the state machine a log-backed store can replay into).
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// A number that changes whenever the store's state may have changed, so callers can
    /// keep what they derived from it (the gateway's validator) until it moves. `None`: no
    /// such number; callers must look up every time.
    fn generation(&self) -> Option<u64> {
        None
    }
    /// Applies one state change (validated against the current state; durable before it
    /// returns, for stores that persist). The write methods below are expressed through it.
    async fn execute_write(&self, op: WriteOp) -> StoreResult<WriteOut>;
    /// Registers a schema under `subject` (idempotent for an existing identical version).
    async fn register(
        &self,
        subject: &str,
        req: SchemaRequest,
        normalize: bool,
    ) -> StoreResult<Registered> {
        self.execute_write(WriteOp::Register {
            subject: subject.to_string(),
            req,
            normalize,
        })
        .await?
        .registered()
    }
    /// Finds the version of `subject` holding this schema.
    async fn lookup(
        &self,
        subject: &str,
        req: SchemaRequest,
        normalize: bool,
        deleted: bool,
    ) -> StoreResult<SubjectVersion>;
    /// Schema by global id.
    async fn schema_by_id(&self, id: i32) -> StoreResult<SchemaById>;
    /// Subjects using a schema id.
    async fn subjects_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<String>>;
    /// Subject-versions using a schema id.
    async fn versions_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<SubjectVersionRef>>;
    /// Highest id allocated so far (0 when none).
    async fn max_id(&self) -> StoreResult<i32>;
    /// Subjects, optionally filtered by prefix.
    async fn subjects(&self, prefix: Option<&str>, listing: Listing) -> StoreResult<Vec<String>>;
    /// Versions of a subject.
    async fn versions(&self, subject: &str, listing: Listing) -> StoreResult<Vec<i32>>;
    /// One subject-version.
    async fn version(
        &self,
        subject: &str,
        version: VersionSpec,
        deleted: bool,
    ) -> StoreResult<SubjectVersion>;
    /// All schemas (subject-versions), optionally only the latest per subject.
    async fn schemas(
        &self,
        prefix: Option<&str>,
        deleted: bool,
        latest_only: bool,
    ) -> StoreResult<Vec<SubjectVersion>>;
    /// Deletes a subject (soft, or permanent after a soft delete); returns the versions.
    async fn delete_subject(&self, subject: &str, permanent: bool) -> StoreResult<Vec<i32>> {
        self.execute_write(WriteOp::DeleteSubject {
            subject: subject.to_string(),
            permanent,
        })
        .await?
        .versions()
    }
    /// Deletes a version (soft, or permanent after a soft delete); returns the version.
    async fn delete_version(
        &self,
        subject: &str,
        version: VersionSpec,
        permanent: bool,
    ) -> StoreResult<i32> {
        self.execute_write(WriteOp::DeleteVersion {
            subject: subject.to_string(),
            version,
            permanent,
        })
        .await?
        .version()
    }
    /// Ids of schemas that reference this subject-version.
    async fn referenced_by(&self, subject: &str, version: VersionSpec) -> StoreResult<Vec<i32>>;
    /// Compatibility level: global (`None`) or subject-level (falling back when asked).
    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<CompatibilityLevel>;
    /// Sets the global or subject-level compatibility.
    async fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> StoreResult<()> {
        self.update_config(
            subject,
            ConfigRecord {
                compatibility: Some(level),
                ..ConfigRecord::default()
            },
        )
        .await
    }
    /// Updates the global or subject-level config: the fields `update` sets replace the stored
    /// ones, the others are kept.
    async fn update_config(&self, subject: Option<&str>, update: ConfigRecord) -> StoreResult<()> {
        self.execute_write(WriteOp::SetConfig {
            subject: subject.map(str::to_string),
            update,
        })
        .await?
        .done()
    }
    /// The stored config record: global (`None`, with the default level filled in) or
    /// subject-level (falling back field-wise to the global one when asked; 40408 when the
    /// subject has none and no fallback is asked).
    async fn config_record(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<ConfigRecord>;
    /// Removes a subject-level config (or resets the global one); returns the previous level.
    async fn delete_config(&self, subject: Option<&str>) -> StoreResult<CompatibilityLevel> {
        self.execute_write(WriteOp::DeleteConfig {
            subject: subject.map(str::to_string),
        })
        .await?
        .level()
    }
    /// Mode: global (`None`) or subject-level (falling back when asked).
    async fn mode(&self, subject: Option<&str>, default_to_global: bool) -> StoreResult<Mode>;
    /// Sets a mode (`force` allows IMPORT on a non-empty registry/subject).
    async fn set_mode(&self, subject: Option<&str>, mode: Mode, force: bool) -> StoreResult<()> {
        self.execute_write(WriteOp::SetMode {
            subject: subject.map(str::to_string),
            mode,
            force,
        })
        .await?
        .done()
    }
    /// Removes a subject-level mode (or resets the global one); returns the previous mode.
    async fn delete_mode(&self, subject: Option<&str>) -> StoreResult<Mode> {
        self.execute_write(WriteOp::DeleteMode {
            subject: subject.map(str::to_string),
        })
        .await?
        .mode()
    }
    /// Checks a schema against one version (`Some`) or the versions the level requires (`None`).
    async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        req: SchemaRequest,
        normalize: bool,
    ) -> StoreResult<CompatibilityResult>;
    /// Contexts (only the default context `.` exists for now).
    async fn contexts(&self) -> StoreResult<Vec<String>>;
    /// Schema by GUID (40403 when unknown).
    async fn schema_by_guid(&self, guid: [u8; 16]) -> StoreResult<SchemaById>;
    /// Ids sharing a GUID, ascending (40403 when unknown).
    async fn ids_by_guid(&self, guid: [u8; 16]) -> StoreResult<Vec<i32>>;
    /// The latest version of `subject` whose `metadata.properties` hold every `(key, value)`
    /// pair (40401 unknown subject, 40403 none matches).
    async fn latest_with_metadata(
        &self,
        subject: &str,
        properties: &[(String, String)],
        deleted: bool,
    ) -> StoreResult<SubjectVersion>;
}
