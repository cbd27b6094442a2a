//! # gatehouse-compliance
//!
//! Audit events, the tamper-evident audit trail and the key vault (not built yet; issues 5
//! and 6). It will own: CloudEvents audit events, the Merkle log with Ed25519-signed
//! checkpoints under `<data-dir>/audit/`, envelope encryption (KEK/DEK, rotation,
//! crypto-shredding) and evidence reports.
