//! Typed errors of the schema layer. Every variant maps to a Confluent error code
//! (`42201` invalid schema) so the REST layer can answer with Confluent's error body.

/// Why a schema (or one of its references) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema text does not parse or violates the format's rules.
    #[error("Invalid schema: {0}")]
    Invalid(String),
    /// The schema text (or the schema plus its references) exceeds the size limit.
    #[error("Invalid schema: schema is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Observed size in bytes.
        size: usize,
        /// Configured limit in bytes.
        limit: usize,
    },
    /// The schema nests deeper than the limit.
    #[error("Invalid schema: nesting deeper than {0} levels")]
    TooDeep(usize),
    /// A reference (transitively) refers back to itself.
    #[error("Invalid schema: cyclic reference through {0}")]
    CyclicReference(String),
    /// A reference could not be resolved.
    #[error(
        "Invalid schema: reference '{name}' to subject '{subject}' version {version} not found"
    )]
    UnknownReference {
        /// Reference name (import path, `$ref` URI or Avro full name).
        name: String,
        /// Referenced subject.
        subject: String,
        /// Referenced version.
        version: i32,
    },
    /// Too many references (transitively).
    #[error("Invalid schema: more than {0} references")]
    TooManyReferences(usize),
    /// `schemaType` is not one of AVRO, PROTOBUF, JSON.
    #[error("Invalid schema: unknown schema type '{0}'")]
    UnknownType(String),
}

impl SchemaError {
    /// The Confluent `error_code` for this error (always 42201, "invalid schema").
    pub fn error_code(&self) -> u32 {
        42201
    }
}
