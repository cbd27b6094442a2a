//! # gatehouse-registry
//!
//! The Confluent-compatible schema registry (not built yet; issue 3). It will own:
//! schema formats (Avro, Protobuf, JSON Schema) and their canonical forms, compatibility checks
//! at every Confluent level, subjects and versions stored in the `_schemas` topic with a local
//! sled index, the REST API (an axum router served on `--registry-listen`), and the record
//! validation API the gateway calls on the produce path.
//!
//! Depends on `protocol`, `policy` and `compliance`, never on `broker` or `gateway`.
