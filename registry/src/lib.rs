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
//!   [`api::SchemaStore`] trait, with the in-memory [`api::MemoryStore`]; data-contract
//!   `metadata`/`ruleSet` stored per version with Confluent's merge rules, config defaults and
//!   overrides, and derived schema GUIDs ([`api::governance`]).
//! * Protobuf schemas registered as base64 `FileDescriptorProto`s (confluent-kafka's
//!   serializer) are printed to `.proto` ([`schema::proto_print`]); `format=serialized`
//!   returns descriptors.
//!
//! * [`kafka`]: [`kafka::KafkaStore`], the store whose durable state is the compacted
//!   `_schemas` topic in Confluent's record layout ([`kafka::record`]), replayed into a
//!   [`api::MemoryStore`] at start.
//! * [`server`]: [`start`] serves the API against a broker, over HTTPS (any address) or plain
//!   HTTP (loopback only), optionally with authentication and subject ACLs ([`api::auth`]).
//! * [`metrics`]: requests by method, route template and status class, and their latency, for
//!   `/metrics`.
//! * [`validate`]: [`validate::Validator`], the record validation API for the gateway's
//!   produce path (wire formats, subject name strategies, full payload decoding, compiled
//!   schemas cached by id).
//!
//! Not built yet: the local sled index and leader election between registry nodes.
//!
//! Depends on `protocol`, `policy` and `compliance`, never on `broker` or `gateway`.

pub mod api;
pub mod compat;
pub mod contract;
pub mod decode;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod rules;
pub mod schema;
pub mod server;
pub mod validate;

pub use error::SchemaError;
pub use kafka::StoreOptions;
pub use server::{ClusterConfig, RegistryServerConfig, RunningRegistry, ServerError, start};
