//! The key vault: envelope encryption of record fields with per-topic KEKs and per-process
//! DEKs, KEK providers (local or AWS KMS), rotation and crypto-shredding, with the key state
//! persisted in the compacted internal topic `_gatehouse_keys`.
//!
//! * [`cipher`]: AES-256-GCM behind `seal` / `open` and [`DataKey`].
//! * [`kms`]: the [`Kms`] trait and [`LocalKms`]; [`aws`]: [`AwsKms`] (SigV4 request
//!   signing in the private `sigv4` module).
//! * [`keys`]: KEKs, versions, DEK records, [`RotationPolicy`], [`KeyEvent`]s, [`VaultError`].
//! * [`store`]: [`KeyStore`] (persistence, caches, rotation, destruction).
//! * [`envelope`]: [`Envelope`], what the gateway calls per record, and the header codec.
//!
//! The record format is specified in `docs/keys.md`; the rationale in
//! `docs/adr/0004-envelope-encryption.md`.

pub mod aws;
pub mod cipher;
pub mod envelope;
pub mod keys;
pub mod kms;
pub(crate) mod sigv4;
pub mod store;

pub use aws::{AwsCredentials, AwsKms, AwsKmsConfig};
pub use cipher::{CipherError, DataKey, open, seal};
pub use envelope::{EncHeader, Encrypted, EncryptedFields, Envelope, Field};
pub use keys::{
    DekId, DekRecord, Kek, KekId, KekState, KekVersion, KeyEvent, KeyEventKind, KeyEvents,
    RotationPolicy, VaultError,
};
pub use kms::{KekRef, Kms, KmsError, KmsFuture, LocalKms};
pub use store::{KEYS_TOPIC, KeyStore, KeyStoreConfig};
