//! Compatibility checking with Confluent's semantics.
//!
//! [`check`] compares a new schema with the previous versions of a subject at a
//! [`CompatibilityLevel`]: BACKWARD means the new schema can read data written with the old one,
//! FORWARD means the old one can read data written with the new one, FULL both; `*_TRANSITIVE`
//! levels check every previous version (newest first, stopping at the first incompatible one),
//! the others only the latest. Each [`Incompatibility`] carries Confluent's difference-type name,
//! the path of the offending element and a message in Confluent's verbose style.

pub mod avro;
pub mod json;
pub mod protobuf;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::contract::Metadata;
use crate::schema::{Parsed, ParsedSchema};

/// Confluent's compatibility levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// No checks.
    None,
    /// New schema reads data written with the latest version (the server default).
    #[default]
    Backward,
    /// New schema reads data written with every previous version.
    BackwardTransitive,
    /// Latest version reads data written with the new schema.
    Forward,
    /// Every previous version reads data written with the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every previous version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// The wire name (`BACKWARD_TRANSITIVE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Checks against all previous versions rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown compatibility level name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid compatibility level: {0}")]
pub struct InvalidLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => CompatibilityLevel::None,
            "BACKWARD" => CompatibilityLevel::Backward,
            "BACKWARD_TRANSITIVE" => CompatibilityLevel::BackwardTransitive,
            "FORWARD" => CompatibilityLevel::Forward,
            "FORWARD_TRANSITIVE" => CompatibilityLevel::ForwardTransitive,
            "FULL" => CompatibilityLevel::Full,
            "FULL_TRANSITIVE" => CompatibilityLevel::FullTransitive,
            _ => return Err(InvalidLevel(s.to_string())),
        })
    }
}

/// Which way a single comparison runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `update` = new schema, `original` = old schema.
    Backward,
    /// `update` = old schema, `original` = new schema.
    Forward,
}

impl Direction {
    /// Label of the schema that must read (Avro reader / diff "update").
    pub fn update_label(self) -> &'static str {
        match self {
            Direction::Backward => "new",
            Direction::Forward => "old",
        }
    }

    /// Label of the schema whose data must be read (Avro writer / diff "original").
    pub fn original_label(self) -> &'static str {
        match self {
            Direction::Backward => "old",
            Direction::Forward => "new",
        }
    }
}

/// One reason why two schemas are incompatible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incompatibility {
    /// Confluent's difference type, e.g. `READER_FIELD_MISSING_DEFAULT_VALUE`.
    pub error_type: String,
    /// Path of the offending element (`/fields/1` for Avro, `#/properties/x` for JSON Schema,
    /// `#/Message/2` for Protobuf).
    pub path: String,
    /// Human description.
    pub description: String,
    /// Extra detail (Avro: field name, missing symbols, ...), possibly empty.
    pub additional_info: String,
    /// Index (into the `previous` slice given to [`check`]) of the version that failed.
    pub previous_index: usize,
}

impl Incompatibility {
    /// Confluent's verbose message for this incompatibility.
    pub fn message(&self) -> String {
        if self.additional_info.is_empty() {
            format!(
                "{{errorType:\"{}\", description:\"{}\"}}",
                self.error_type, self.description
            )
        } else {
            format!(
                "{{errorType:'{}', description:'{}', additionalInfo:'{}'}}",
                self.error_type, self.description, self.additional_info
            )
        }
    }
}

/// Raw difference produced by a format checker, before the version index is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub error_type: &'static str,
    pub path: String,
    pub description: String,
    pub additional_info: String,
}

fn one_direction(update: &ParsedSchema, original: &ParsedSchema, dir: Direction) -> Vec<Found> {
    match (update.parsed(), original.parsed()) {
        (Parsed::Avro(u), Parsed::Avro(o)) => avro::check(u, o, dir),
        (Parsed::Protobuf(u), Parsed::Protobuf(o)) => protobuf::check(o, u, dir),
        (Parsed::Json(u), Parsed::Json(o)) => json::check(o, u, dir),
        _ => vec![Found {
            error_type: "SCHEMA_TYPE_MISMATCH",
            path: String::new(),
            description: format!(
                "Incompatible because of different schema type: the {} schema is {} and the {} schema is {}",
                dir.update_label(),
                update.schema_type(),
                dir.original_label(),
                original.schema_type()
            ),
            additional_info: String::new(),
        }],
    }
}

/// Checks `new` against the previous versions of a subject (`previous`, oldest first) at
/// `level`; an empty result means compatible. Versions without metadata: see
/// [`check_versions`].
pub fn check(
    new: &ParsedSchema,
    previous: &[ParsedSchema],
    level: CompatibilityLevel,
) -> Vec<Incompatibility> {
    let previous: Vec<Version<'_>> = previous
        .iter()
        .map(|schema| Version {
            schema,
            metadata: None,
        })
        .collect();
    check_versions(
        Version {
            schema: new,
            metadata: None,
        },
        &previous,
        level,
    )
}

/// A schema version as the compatibility check sees it: the schema and its metadata (JSON
/// Schema's reserved names come from the metadata property `confluent:reserved`).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// The parsed schema.
    pub schema: &'a ParsedSchema,
    /// The version's metadata, if any.
    pub metadata: Option<&'a Metadata>,
}

/// [`check`] with each version's metadata: for JSON Schema, at every level but NONE, also the
/// reserved-name rules between each compared older version and the new one
/// (`RESERVED_PROPERTY_REMOVED`, `RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY`).
pub fn check_versions(
    new: Version<'_>,
    previous: &[Version<'_>],
    level: CompatibilityLevel,
) -> Vec<Incompatibility> {
    if level == CompatibilityLevel::None || previous.is_empty() {
        return Vec::new();
    }
    let start = if level.is_transitive() {
        0
    } else {
        previous.len() - 1
    };
    for idx in (start..previous.len()).rev() {
        let Some(old) = previous.get(idx) else {
            continue;
        };
        let mut found = Vec::new();
        if level.backward() {
            found.extend(one_direction(new.schema, old.schema, Direction::Backward));
        }
        if level.forward() {
            found.extend(one_direction(old.schema, new.schema, Direction::Forward));
        }
        if let (Parsed::Json(_), Parsed::Json(n)) = (old.schema.parsed(), new.schema.parsed()) {
            found.extend(json::check_reserved(
                &json::reserved_names(old.metadata),
                &json::reserved_names(new.metadata),
                n,
            ));
        }
        if !found.is_empty() {
            return found
                .into_iter()
                .map(|f| Incompatibility {
                    error_type: f.error_type.to_string(),
                    path: f.path,
                    description: f.description,
                    additional_info: f.additional_info,
                    previous_index: idx,
                })
                .collect();
        }
    }
    Vec::new()
}
