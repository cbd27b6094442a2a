//! [`Envelope`]: what the gateway calls per record to encrypt a field on produce and decrypt
//! it on fetch, plus the record-header codec ([`EncHeader`]). The format is specified in
//! `docs/keys.md`.
//!
//! * Ciphertext of a field = [`crate::vault::cipher::seal`] under the record's DEK:
//!   `IV (12) ‖ ciphertext ‖ tag (16)`.
//! * AAD = `0x01 ‖ lp(KEK id) ‖ lp(field) ‖ lp(origin topic)`, `lp(x)` = 4-byte big-endian
//!   length then the bytes; field = `value`, `key`, or `header:<name>`.
//! * Header `gatehouse.enc` = `0x01 ‖ DEK id (16) ‖ flags (1)`; header `gatehouse.topic` =
//!   the origin topic (UTF-8), so a mirrored copy still decrypts.
//! * Tombstones (null values) are never encrypted: the gateway passes them through so
//!   compaction keeps working.

use std::sync::Arc;

use super::cipher::{self, CipherError};
use super::keys::{DekId, KekId, VaultError};
use super::store::KeyStore;

/// Header carrying the encryption version, DEK id and flags.
pub const ENC_HEADER: &str = "gatehouse.enc";
/// Header carrying the origin topic.
pub const TOPIC_HEADER: &str = "gatehouse.topic";
/// Header listing the names of encrypted headers (comma-separated), with [`FLAG_HEADERS`].
pub const ENC_HEADERS_HEADER: &str = "gatehouse.enc.headers";
/// Format version of [`ENC_HEADER`] and of the AAD.
pub const FORMAT_VERSION: u8 = 1;
/// Flag: the record value is encrypted.
pub const FLAG_VALUE: u8 = 0x01;
/// Flag: the record key is encrypted.
pub const FLAG_KEY: u8 = 0x02;
/// Flag: the header values named in [`ENC_HEADERS_HEADER`] are encrypted.
pub const FLAG_HEADERS: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_VALUE | FLAG_KEY | FLAG_HEADERS;

/// Which part of a record a ciphertext belongs to (bound into the AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// The record value.
    Value,
    /// The record key.
    Key,
    /// The value of the header with this name.
    Header(&'a str),
}

impl Field<'_> {
    fn write_label(&self, out: &mut Vec<u8>) {
        match self {
            Field::Value => lp(out, b"value"),
            Field::Key => lp(out, b"key"),
            Field::Header(name) => {
                let len = u32::try_from("header:".len() + name.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(b"header:");
                out.extend_from_slice(name.as_bytes());
            }
        }
    }
}

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The associated data of one field: `0x01 ‖ lp(kek id) ‖ lp(field) ‖ lp(origin topic)`.
pub fn aad(kek_id: &KekId, field: Field<'_>, origin_topic: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 12 + kek_id.as_str().len() + 16 + origin_topic.len());
    out.push(FORMAT_VERSION);
    lp(&mut out, kek_id.as_str().as_bytes());
    field.write_label(&mut out);
    lp(&mut out, origin_topic.as_bytes());
    out
}

/// One encrypted field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// `IV ‖ ciphertext ‖ tag`.
    pub ciphertext: Vec<u8>,
    /// The DEK that encrypted it (goes into [`ENC_HEADER`]).
    pub dek_id: DekId,
}

/// Several fields of one record, all under the same DEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedFields {
    /// The ciphertexts, in the order of the input fields.
    pub ciphertexts: Vec<Vec<u8>>,
    /// The DEK that encrypted them.
    pub dek_id: DekId,
}

/// The parsed value of the [`ENC_HEADER`] header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncHeader {
    /// The DEK.
    pub dek_id: DekId,
    /// [`FLAG_VALUE`] | [`FLAG_KEY`] | [`FLAG_HEADERS`].
    pub flags: u8,
}

impl EncHeader {
    /// Length of the encoded header value.
    pub const LEN: usize = 18;

    /// `0x01 ‖ dek id ‖ flags`.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = FORMAT_VERSION;
        out[1..17].copy_from_slice(&self.dek_id);
        out[17] = self.flags;
        out
    }

    /// Parses a header value; rejects unknown versions and flags.
    pub fn decode(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != Self::LEN {
            return Err(VaultError::BadHeader(format!(
                "{ENC_HEADER} has {} bytes, expected {}",
                bytes.len(),
                Self::LEN
            )));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(VaultError::BadHeader(format!(
                "unknown {ENC_HEADER} version {}",
                bytes[0]
            )));
        }
        let flags = bytes[17];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(VaultError::BadHeader(format!("unknown flags {flags:#04x}")));
        }
        let mut dek_id = [0u8; 16];
        dek_id.copy_from_slice(&bytes[1..17]);
        Ok(Self { dek_id, flags })
    }
}

/// What [`Envelope::decrypt_cached`] remembers between the records of one fetched batch:
/// they normally share one DEK, one origin topic and a field or two, so after the first
/// record each costs only the cipher (no key-cache lock, no AAD or key-id copies). Lives for
/// one batch or response: a key destroyed meanwhile takes effect at the next fetch.
#[derive(Default)]
pub struct DecryptCache {
    dek: Option<(DekId, Arc<cipher::DataKey>, KekId)>,
    /// `(field kind, header name, origin topic, AAD)` under the remembered DEK's KEK.
    aads: Vec<(u8, String, String, Vec<u8>)>,
}

fn field_kind<'a>(field: Field<'a>) -> (u8, &'a str) {
    match field {
        Field::Value => (0, ""),
        Field::Key => (1, ""),
        Field::Header(name) => (2, name),
    }
}

/// Per-record encryption and decryption over a [`KeyStore`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Envelope {
    store: Arc<KeyStore>,
}

impl Envelope {
    /// Encrypts and decrypts with the keys of `store`.
    pub fn new(store: Arc<KeyStore>) -> Self {
        Self { store }
    }

    /// The key store.
    pub fn store(&self) -> &Arc<KeyStore> {
        &self.store
    }

    /// Whether an active KEK applies to `topic` (records of other topics pass in clear).
    pub fn encrypts(&self, topic: &str) -> bool {
        self.store.kek_for_topic(topic).is_some()
    }

    /// Encrypts one field of a record of `topic` (fails with [`VaultError::NoKek`] when no
    /// active KEK applies). For several fields of one record use [`Envelope::encrypt_fields`]
    /// so they share one DEK (the record header names only one).
    pub async fn encrypt(
        &self,
        topic: &str,
        field: Field<'_>,
        plaintext: &[u8],
    ) -> Result<Encrypted, VaultError> {
        let mut out = self.encrypt_fields(topic, &[(field, plaintext)]).await?;
        Ok(Encrypted {
            ciphertext: out.ciphertexts.pop().unwrap_or_default(),
            dek_id: out.dek_id,
        })
    }

    /// Encrypts several fields of one record of `topic` under one DEK.
    pub async fn encrypt_fields(
        &self,
        topic: &str,
        fields: &[(Field<'_>, &[u8])],
    ) -> Result<EncryptedFields, VaultError> {
        let n = u64::try_from(fields.len()).unwrap_or(u64::MAX).max(1);
        let dek = self.store.encryption_dek(topic, n).await?;
        let ciphertexts = fields
            .iter()
            .map(|(field, pt)| cipher::seal(&dek.key, &aad(&dek.kek_id, *field, topic), pt))
            .collect::<Result<Vec<_>, CipherError>>()?;
        Ok(EncryptedFields {
            ciphertexts,
            dek_id: dek.id,
        })
    }

    /// Encrypts many fields of many records of `topic` under one DEK (one reservation of
    /// `fields.len()` uses; the AAD built once per distinct field): the produce path's
    /// per-batch form of [`Envelope::encrypt_fields`]. Each ciphertext has its own random IV.
    pub async fn encrypt_many(
        &self,
        topic: &str,
        fields: &[(Field<'_>, &[u8])],
    ) -> Result<EncryptedFields, VaultError> {
        let n = u64::try_from(fields.len()).unwrap_or(u64::MAX).max(1);
        let dek = self.store.encryption_dek(topic, n).await?;
        let mut aads: Vec<(Field<'_>, Vec<u8>)> = Vec::new();
        let mut ciphertexts = Vec::with_capacity(fields.len());
        for (field, pt) in fields {
            let i = match aads.iter().position(|(f, _)| f == field) {
                Some(i) => i,
                None => {
                    aads.push((*field, aad(&dek.kek_id, *field, topic)));
                    aads.len() - 1
                }
            };
            ciphertexts.push(cipher::seal(&dek.key, &aads[i].1, pt)?);
        }
        Ok(EncryptedFields {
            ciphertexts,
            dek_id: dek.id,
        })
    }

    /// [`Envelope::decrypt`] remembering the key and the AAD in `cache` for the next
    /// records of the same batch.
    pub async fn decrypt_cached(
        &self,
        cache: &mut DecryptCache,
        origin_topic: &str,
        field: Field<'_>,
        dek_id: &DekId,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        if cache.dek.as_ref().is_none_or(|(id, _, _)| id != dek_id) {
            let (key, kek_id) = self.store.decryption_dek(dek_id).await?;
            if cache.dek.as_ref().is_none_or(|(_, _, k)| *k != kek_id) {
                cache.aads.clear();
            }
            cache.dek = Some((*dek_id, key, kek_id));
        }
        let Some((_, key, kek_id)) = cache.dek.as_ref() else {
            return Err(VaultError::UnknownDek(hex::encode(dek_id)));
        };
        let (kind, name) = field_kind(field);
        let i = match cache
            .aads
            .iter()
            .position(|(k, n, o, _)| *k == kind && n == name && o == origin_topic)
        {
            Some(i) => i,
            None => {
                cache.aads.push((
                    kind,
                    name.to_string(),
                    origin_topic.to_string(),
                    aad(kek_id, field, origin_topic),
                ));
                cache.aads.len() - 1
            }
        };
        cipher::open(key, &cache.aads[i].3, ciphertext).map_err(|why| VaultError::Decrypt {
            dek: hex::encode(dek_id),
            why,
        })
    }

    /// Decrypts one field. `origin_topic` comes from [`TOPIC_HEADER`] (falling back to the
    /// topic the record was read from). Unknown DEKs, destroyed KEKs and ciphertext that does
    /// not authenticate give an error, never a panic.
    pub async fn decrypt(
        &self,
        origin_topic: &str,
        field: Field<'_>,
        dek_id: &DekId,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let mut once = DecryptCache::default();
        self.decrypt_cached(&mut once, origin_topic, field, dek_id, ciphertext)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_rejects() {
        let h = EncHeader {
            dek_id: [9; 16],
            flags: FLAG_VALUE | FLAG_KEY,
        };
        let bytes = h.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[17], 3);
        assert_eq!(EncHeader::decode(&bytes).expect("decode"), h);
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(EncHeader::decode(&v2).is_err());
        let mut flags = bytes;
        flags[17] = 0x80;
        assert!(EncHeader::decode(&flags).is_err());
        assert!(EncHeader::decode(&bytes[..17]).is_err());
    }

    #[test]
    fn aad_layout_is_length_prefixed() {
        let kek = serde_json::from_str::<KekId>("\"ab\"").expect("id");
        let a = aad(&kek, Field::Header("h"), "t");
        assert_eq!(
            a,
            [
                &[1u8][..],
                &[0, 0, 0, 2],
                b"ab",
                &[0, 0, 0, 8],
                b"header:h",
                &[0, 0, 0, 1],
                b"t"
            ]
            .concat()
        );
        // Field and topic boundaries cannot be shifted.
        assert_ne!(aad(&kek, Field::Value, "x"), aad(&kek, Field::Key, "x"));
        assert_ne!(
            aad(&kek, Field::Header("a"), "bc"),
            aad(&kek, Field::Header("ab"), "c")
        );
    }
}
