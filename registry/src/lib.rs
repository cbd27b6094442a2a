//! # gatehouse-registry
//!
//! The Confluent-compatible schema registry core (issue 3).
//!
//! What exists:
//! * [`schema`]: Avro, Protobuf and JSON Schema parsing with references, canonical strings,
//!   `normalize` forms and SHA-256 fingerprints; size, depth and reference-cycle limits.
//! * [`compat`]: the seven Confluent compatibility levels and per-format checkers that report
//!   Confluent's difference-type names, paths and verbose messages.
//! * [`api`]: the Confluent REST API as an axum [`axum::Router`] over the async
//!   [`api::SchemaStore`] trait, with the in-memory [`api::MemoryStore`].
//!
//! Not built yet: storage in the `_schemas` topic (the lead backs [`api::SchemaStore`] with
//! it), the record validation API for the gateway, authentication/authorisation.
//!
//! Depends on `protocol`, `policy` and `compliance`, never on `broker` or `gateway`.

pub mod api;
pub mod compat;
pub mod error;
pub mod schema;

pub use error::SchemaError;
