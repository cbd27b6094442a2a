//! # gatehouse-compliance
//!
//! Audit events and the tamper-evident audit trail (`<data-dir>/audit/`), and the key vault
//! ([`vault`]: envelope encryption, KEK/DEK rotation, crypto-shredding; `docs/keys.md`).
//! Evidence packages ([`audit::evidence`]), the running node's self-check
//! ([`audit::selfcheck`]), retention and archiving ([`audit::archive`]) and the mirror to
//! `_gatehouse_audit` ([`audit::mirror`]) are built on the verifier.
//!
//! ## Key types
//!
//! * [`AuditEvent`] (+ [`AuditEvent::builder`], [`EventType`], [`Resource`], [`Outcome`],
//!   [`Timestamp`]): a CloudEvents 1.0 audit record with the PCI DSS 10.2.2 fields, stored as
//!   canonical JSON (schema `docs/audit-event.schema.json`, `$id`
//!   `urn:gatehouse:schema:audit-event:v1`).
//! * [`AuditLog`] (+ [`AuditLogConfig`], [`QueueFullPolicy`], [`Receipt`], [`OpenReport`],
//!   [`AuditError`]): the node's durable append-only log. `append(event).await` resolves
//!   after the group-commit fsync; segments, RFC 6962 Merkle tree, Ed25519-signed
//!   checkpoints chained to each other and to sealed-segment digests, crash recovery, key
//!   rotation with a signed history.
//! * [`MasterKey`]: the caller's 32-byte key that encrypts the signing key at rest
//!   (AES-256-GCM). [`PublicKey`]: verifies checkpoints; its key id is SHA-256 of the key.
//! * [`verify_dir`] → [`VerifyReport`] / [`VerifyError`] (names the first bad segment and
//!   sequence, or checkpoint): offline, on a copy or a live directory, optionally pinned to
//!   trusted [`PublicKey`]s; [`prove_inclusion`]/[`verify_inclusion`] against a
//!   [`Checkpoint`], [`prove_consistency`]/[`verify_consistency`], [`query`] with
//!   [`QueryFilter`], [`export`] as [`ExportFormat::Jsonl`] or [`ExportFormat::Csv`]. All of
//!   them verify the whole directory first, so results are complete for the signed range.
//! * [`audit::cli`]: `cli_verify`, `cli_prove`, `cli_verify_proof`, `cli_consistency`,
//!   `cli_verify_consistency`, `cli_export` for `gatehouse audit ...`.
//! * [`audit::merkle`]: RFC 6962 hashing, [`audit::merkle::CompactTree`], proofs.
//!
//! The on-disk format, hashing, checkpoints, key rotation and what verification checks are
//! described in `docs/audit.md`.
//!
//! ```no_run
//! use gatehouse_compliance::{AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (log, _report) = AuditLog::open("data/audit", AuditLogConfig::new("node-1"), MasterKey::generate()?)?;
//! let event = AuditEvent::builder(EventType::Authorization)
//!     .service("gateway")
//!     .method("kafka.Produce")
//!     .principal("User:alice")
//!     .resource("Topic", "payments")
//!     .operation("Write")
//!     .client_address("10.0.0.7:53122")
//!     .granted(true)
//!     .build()?;
//! let receipt = log.append(event).await?; // durable once this resolves
//! println!("recorded as sequence {}", receipt.sequence);
//! log.close().await?;
//! let report = gatehouse_compliance::verify_dir("data/audit".as_ref(), None)?;
//! println!("{report}");
//! # Ok(()) }
//! ```

pub mod audit;
pub mod vault;

pub use audit::checkpoint::Checkpoint;
pub use audit::event::{AuditEvent, AuditEventBuilder, EventError, EventType, Outcome, Resource};
pub use audit::keys::{KeyError, MasterKey, PublicKey};
pub use audit::log::{
    AuditError, AuditLog, AuditLogConfig, CheckpointInfo, KeyRotation, OpenReport, QueueFullPolicy,
    Receipt, TornTail,
};
pub use audit::time::Timestamp;
pub use audit::verify::{
    ConsistencyProof, ExportFormat, ExportSummary, InclusionProof, QueryFilter, VerifyError,
    VerifyReport, export, prove_consistency, prove_inclusion, query, verify_consistency,
    verify_dir, verify_inclusion,
};
pub use vault::{
    AwsKms, AwsKmsConfig, DataKey, EncHeader, Encrypted, Envelope, Field, KeyEvent, KeyEventKind,
    KeyEvents, KeyStore, KeyStoreConfig, Kms, LocalKms, RotationPolicy, VaultError,
};
