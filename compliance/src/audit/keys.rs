//! Key material of the audit trail: the caller's [`MasterKey`], the Ed25519 checkpoint
//! signing key (kept encrypted on disk with AES-256-GCM under the master key), public keys
//! and key ids, and the signed key-rotation history (`keys/history.jsonl`).
//!
//! Secret types ([`MasterKey`], the internal signer) implement neither `Debug` nor
//! `Display`, are zeroised on drop, and never appear in logs or error messages.
//!
//! Key file `keys/signing.key` (100 bytes): `"GHAUDKY1"` ‖ public key (32) ‖ nonce (12) ‖
//! AES-256-GCM ciphertext of the 32-byte Ed25519 seed with its 16-byte tag. The associated
//! data is the magic and the public key, so a key file cannot be paired with another public
//! key. The key id is `hex(SHA-256(public key))`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::ed25519::signature::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::canonical::{self, serde_str};
use super::time::Timestamp;

/// Errors about keys. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// A master key must be exactly 32 bytes.
    #[error("a master key must be exactly 32 bytes")]
    MasterKeyLength,
    /// Not an Ed25519 public key in an accepted encoding.
    #[error("invalid public key: {0}")]
    PublicKey(&'static str),
    /// The signing key file is not in the expected format.
    #[error("signing key file is malformed")]
    KeyFileFormat,
    /// Authenticated decryption failed.
    #[error("signing key could not be decrypted: wrong master key or modified key file")]
    Decrypt,
    /// Encryption failed.
    #[error("signing key encryption failed")]
    Encrypt,
    /// Reading a key file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The 32-byte key that encrypts the audit signing key at rest (AES-256-GCM). Supplied by
/// the caller (KMS, `GATEHOUSE_MASTER_KEY`, ...). No `Debug`; zeroised on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::MasterKeyLength)?;
        Ok(Self::from_bytes(arr))
    }

    /// A fresh random master key from the operating system.
    pub fn generate() -> Result<Self, KeyError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut k[..]).map_err(|_| KeyError::Rng)?;
        Ok(Self(k))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.0).into())
    }
}

/// An Ed25519 public key that verifies checkpoints and key-history records.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// From the 32-byte compressed Edwards point; rejects invalid and weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::PublicKey("not a point"))?;
        if vk.is_weak() {
            return Err(KeyError::PublicKey("weak key"));
        }
        Ok(Self(vk))
    }

    /// From 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let t = text.trim().to_ascii_lowercase();
        let bytes =
            serde_str::parse_hex32(&t).ok_or(KeyError::PublicKey("expected 64 hex digits"))?;
        Self::from_bytes(&bytes)
    }

    /// Reads a key file: 64 hex digits (as `keys/signing.pub` holds) or 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Self::from_bytes(&raw);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::PublicKey("not hex text"))?;
        Self::from_hex(text)
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lowercase hex of the key bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Key id: lowercase hex of SHA-256 over the 32 key bytes.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Strict Ed25519 verification (RFC 8032, no malleable signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

/// The live Ed25519 signing key. No `Debug`; the dalek key zeroises itself on drop.
pub(crate) struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl Signer {
    pub(crate) fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|_| KeyError::Rng)?;
        Ok(Self::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey(key.verifying_key());
        Self { key, public }
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The encrypted key file contents.
    pub(crate) fn seal(&self, master: &MasterKey) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| KeyError::Rng)?;
        let mut aad = Vec::with_capacity(40);
        aad.extend_from_slice(KEY_MAGIC);
        aad.extend_from_slice(&self.public.to_bytes());
        let seed = Zeroizing::new(self.key.to_bytes());
        let ct = master
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &seed[..],
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Encrypt)?;
        let mut out = aad;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a key file written by [`Signer::seal`].
    pub(crate) fn unseal(file: &[u8], master: &MasterKey) -> Result<Self, KeyError> {
        if file.len() != KEY_FILE_LEN || &file[..8] != KEY_MAGIC {
            return Err(KeyError::KeyFileFormat);
        }
        let (aad, rest) = file.split_at(40);
        let (nonce, ct) = rest.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| KeyError::KeyFileFormat)?;
        let plain = Zeroizing::new(
            master
                .cipher()
                .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
                .map_err(|_| KeyError::Decrypt)?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::KeyFileFormat)?,
        );
        let signer = Self::from_seed(&seed);
        if signer.public.to_bytes()[..] != aad[8..40] {
            return Err(KeyError::KeyFileFormat);
        }
        Ok(signer)
    }
}

const KEY_MAGIC: &[u8; 8] = b"GHAUDKY1";
const KEY_FILE_LEN: usize = 8 + 32 + 12 + 32 + 16;
const HISTORY_DOMAIN: &[u8] = b"gatehouse-audit-key-history/v1\n";

/// One line of `keys/history.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HistoryRecord {
    #[serde(with = "serde_str::u64_string")]
    pub index: u64,
    /// `genesis` or `rotation`.
    pub kind: String,
    pub key_id: String,
    #[serde(with = "serde_str::hex32")]
    pub public_key: [u8; 32],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_key_id: Option<String>,
    /// Checkpoints with a tree size above this (and up to the next record's) are signed by
    /// this key.
    #[serde(with = "serde_str::u64_string")]
    pub tree_size: u64,
    pub time: String,
    /// By the new key over the record body (proof of possession).
    #[serde(with = "serde_str::hex64")]
    pub signature: [u8; 64],
    /// By the previous key over the record body (authorises the new key).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_str::opt_hex64"
    )]
    pub prev_signature: Option<[u8; 64]>,
}

impl HistoryRecord {
    fn body(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        let mut v = serde_json::to_value(self)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("signature");
            o.remove("prevSignature");
        }
        let mut out = HISTORY_DOMAIN.to_vec();
        canonical::write_value(&mut out, &v)?;
        Ok(out)
    }

    fn line(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        let mut out = canonical::to_vec(self)?;
        out.push(b'\n');
        Ok(out)
    }

    /// The genesis record for the first key (self-signed).
    pub(crate) fn genesis(signer: &Signer, tree_size: u64) -> Result<Vec<u8>, KeyError> {
        let mut r = HistoryRecord {
            index: 0,
            kind: "genesis".into(),
            key_id: signer.public().key_id(),
            public_key: signer.public().to_bytes(),
            prev_key_id: None,
            tree_size,
            time: Timestamp::now().to_rfc3339(),
            signature: [0; 64],
            prev_signature: None,
        };
        let body = r.body().map_err(|_| KeyError::Encrypt)?;
        r.signature = signer.sign(&body);
        r.line().map_err(|_| KeyError::Encrypt)
    }

    /// A rotation record: `old` authorises `new` from `tree_size` on.
    pub(crate) fn rotation(
        old: &Signer,
        new: &Signer,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<u8>, KeyError> {
        let mut r = HistoryRecord {
            index,
            kind: "rotation".into(),
            key_id: new.public().key_id(),
            public_key: new.public().to_bytes(),
            prev_key_id: Some(old.public().key_id()),
            tree_size,
            time: Timestamp::now().to_rfc3339(),
            signature: [0; 64],
            prev_signature: None,
        };
        let body = r.body().map_err(|_| KeyError::Encrypt)?;
        r.signature = new.sign(&body);
        r.prev_signature = Some(old.sign(&body));
        r.line().map_err(|_| KeyError::Encrypt)
    }
}

/// A key from the verified history and the checkpoint sizes it may sign.
#[derive(Clone, Debug)]
pub(crate) struct KeyEntry {
    pub public: PublicKey,
    pub key_id: String,
    pub from_tree_size: u64,
}

/// The verified rotation history.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyHistory {
    pub entries: Vec<KeyEntry>,
}

impl KeyHistory {
    /// Parses and verifies `history.jsonl`: canonical lines, genesis self-signed, each
    /// rotation signed by the previous key and the new key, non-decreasing tree sizes.
    /// On failure returns the 1-based line number and the reason.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, (usize, String)> {
        let mut h = KeyHistory::default();
        if bytes.is_empty() {
            return Err((1, "empty key history".into()));
        }
        if !bytes.ends_with(b"\n") {
            let lines = bytes.split(|&b| b == b'\n').count();
            return Err((lines, "last line is incomplete (torn write)".into()));
        }
        for (i, line) in bytes[..bytes.len() - 1].split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let err = |m: &str| (n, m.to_owned());
            let r: HistoryRecord = serde_json::from_slice(line)
                .map_err(|e| (n, format!("not a history record: {e}")))?;
            match r.line() {
                Ok(l) if l[..l.len() - 1] == *line => {}
                _ => return Err(err("record is not in canonical form")),
            }
            let public =
                PublicKey::from_bytes(&r.public_key).map_err(|_| err("invalid public key"))?;
            if r.key_id != public.key_id() {
                return Err(err("keyId is not SHA-256 of the public key"));
            }
            if r.index != i as u64 {
                return Err(err("index out of order"));
            }
            let body = r.body().map_err(|_| err("record is not serialisable"))?;
            if !public.verify(&body, &r.signature) {
                return Err(err("signature by the new key does not verify"));
            }
            match h.entries.last() {
                None => {
                    if r.kind != "genesis" || r.prev_key_id.is_some() || r.prev_signature.is_some()
                    {
                        return Err(err("first record is not a genesis record"));
                    }
                }
                Some(prev) => {
                    if r.kind != "rotation" || r.prev_key_id.as_deref() != Some(&prev.key_id) {
                        return Err(err("rotation does not follow the previous key"));
                    }
                    let Some(ps) = r.prev_signature else {
                        return Err(err("rotation lacks the previous key's signature"));
                    };
                    if !prev.public.verify(&body, &ps) {
                        return Err(err("signature by the previous key does not verify"));
                    }
                    if r.tree_size < prev.from_tree_size {
                        return Err(err("rotation tree size goes backwards"));
                    }
                    if h.entries.iter().any(|e| e.key_id == r.key_id) {
                        return Err(err("key reused"));
                    }
                }
            }
            h.entries.push(KeyEntry {
                public,
                key_id: r.key_id,
                from_tree_size: r.tree_size,
            });
        }
        Ok(h)
    }

    /// The key that must have signed a checkpoint of `tree_size` with id `key_id`.
    pub(crate) fn key_for(&self, key_id: &str, tree_size: u64) -> Result<&KeyEntry, &'static str> {
        let i = self
            .entries
            .iter()
            .position(|e| e.key_id == key_id)
            .ok_or("signed by a key that is not in the key history")?;
        let e = &self.entries[i];
        if i > 0 && tree_size <= e.from_tree_size {
            return Err("signed by a key that was not yet valid at this tree size");
        }
        if let Some(next) = self.entries.get(i + 1)
            && tree_size > next.from_tree_size
        {
            return Err("signed by a key that had been rotated out at this tree size");
        }
        Ok(e)
    }

    pub(crate) fn current(&self) -> Option<&KeyEntry> {
        self.entries.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_wrong_master_key() {
        let master = MasterKey::from_bytes([7; 32]);
        let s = Signer::generate().unwrap();
        let file = s.seal(&master).unwrap();
        assert_eq!(file.len(), KEY_FILE_LEN);
        let back = Signer::unseal(&file, &master).unwrap();
        assert_eq!(back.public(), s.public());
        assert_eq!(back.sign(b"m"), s.sign(b"m"));
        assert!(matches!(
            Signer::unseal(&file, &MasterKey::from_bytes([8; 32])),
            Err(KeyError::Decrypt)
        ));
        let mut bad = file.clone();
        bad[20] ^= 1; // public key (AAD) changed
        assert!(Signer::unseal(&bad, &master).is_err());
        let mut bad = file.clone();
        bad[70] ^= 1; // ciphertext changed
        assert!(matches!(
            Signer::unseal(&bad, &master),
            Err(KeyError::Decrypt)
        ));
        assert!(matches!(
            Signer::unseal(&file[..99], &master),
            Err(KeyError::KeyFileFormat)
        ));
        // Error messages carry no key material.
        let msg = KeyError::Decrypt.to_string();
        assert!(!msg.contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn public_key_encodings() {
        let s = Signer::generate().unwrap();
        let p = s.public();
        assert_eq!(
            PublicKey::from_hex(&format!(" {}\n", p.to_hex())).unwrap(),
            p
        );
        assert_eq!(PublicKey::from_hex(&p.to_hex().to_uppercase()).unwrap(), p);
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(
            PublicKey::from_bytes(&[0; 32]).is_err(),
            "identity point is weak"
        );
        let sig = s.sign(b"hello");
        assert!(p.verify(b"hello", &sig));
        assert!(!p.verify(b"hellp", &sig));
        assert_eq!(p.key_id().len(), 64);
        assert!(format!("{p:?}").contains(&p.to_hex()));
        assert!(MasterKey::from_slice(&[0; 31]).is_err());
    }

    #[test]
    fn history_chain_verifies_and_detects_changes() {
        let a = Signer::generate().unwrap();
        let b = Signer::generate().unwrap();
        let c = Signer::generate().unwrap();
        let mut file = HistoryRecord::genesis(&a, 0).unwrap();
        file.extend(HistoryRecord::rotation(&a, &b, 1, 100).unwrap());
        file.extend(HistoryRecord::rotation(&b, &c, 2, 250).unwrap());
        let h = KeyHistory::parse(&file).unwrap();
        assert_eq!(h.entries.len(), 3);
        assert_eq!(h.current().unwrap().key_id, c.public().key_id());
        let (ka, kb, kc) = (
            a.public().key_id(),
            b.public().key_id(),
            c.public().key_id(),
        );
        assert!(h.key_for(&ka, 1).is_ok());
        assert!(h.key_for(&ka, 100).is_ok());
        assert!(h.key_for(&ka, 101).is_err());
        assert!(h.key_for(&kb, 100).is_err());
        assert!(h.key_for(&kb, 101).is_ok());
        assert!(h.key_for(&kb, 251).is_err());
        assert!(h.key_for(&kc, 251).is_ok());
        assert!(h.key_for(&"00".repeat(32), 5).is_err());

        // A rotation not signed by the previous key (attacker's own chain) fails.
        let mut forged = HistoryRecord::genesis(&a, 0).unwrap();
        forged.extend(HistoryRecord::rotation(&c, &b, 1, 100).unwrap());
        assert_eq!(KeyHistory::parse(&forged).unwrap_err().0, 2);
        // Any flipped byte fails somewhere.
        for i in (0..file.len()).step_by(7) {
            let mut bad = file.clone();
            bad[i] ^= 0x04;
            assert!(KeyHistory::parse(&bad).is_err(), "byte {i}");
        }
        // Torn last line.
        assert!(KeyHistory::parse(&file[..file.len() - 3]).is_err());
    }
}
