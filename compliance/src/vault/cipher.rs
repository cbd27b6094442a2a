//! The one symmetric cipher of the key vault: AES-256-GCM (the `aes-gcm` crate), behind a
//! deliberately tiny API so it can be swapped (for example for `aws-lc-rs`, see
//! `benches/crypto.rs` and `docs/adr/0004-envelope-encryption.md`) without touching callers.
//!
//! Sealed form: `IV (12 bytes, random) ‖ ciphertext ‖ tag (16 bytes)`; [`OVERHEAD`] = 28 bytes.
//! IVs are 96 random bits from a CSPRNG (`rand`'s thread RNG, seeded from the operating
//! system), so one key must not seal more than 2^32 messages (NIST SP 800-38D §8.3); the
//! vault rotates data keys long before that (see [`crate::vault::RotationPolicy`]).
//!
//! A [`DataKey`] keeps its expanded cipher next to the raw bytes; both are zeroized on drop
//! and neither is ever printed (`Debug` shows `DataKey(..)`).

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::TryRngCore;
use zeroize::Zeroizing;

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// IV length in bytes (96 bits).
pub const IV_LEN: usize = 12;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes [`seal`] adds to a plaintext.
pub const OVERHEAD: usize = IV_LEN + TAG_LEN;

/// Why sealing or opening failed. Deliberately says nothing about key or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The sealed input is shorter than IV + tag.
    #[error("sealed data too short ({0} bytes, need at least {OVERHEAD})")]
    TooShort(usize),
    /// Wrong key, wrong AAD, or the data was modified.
    #[error("authentication failed (wrong key, wrong associated data, or modified data)")]
    Authentication,
    /// The plaintext or AAD is longer than AES-GCM allows.
    #[error("input too long for AES-GCM")]
    TooLong,
    /// Key material of the wrong length.
    #[error("a key must be {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
    /// The operating system's random number generator failed.
    #[error("the operating system RNG failed")]
    Rng,
}

/// A 256-bit AES-GCM key (a DEK, a KEK, or a wrapping key). Zeroized on drop; no `Debug` of
/// the bytes.
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let cipher = Aes256Gcm::new(&(*bytes).into());
        Self { bytes, cipher }
    }

    /// Copies a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CipherError> {
        let arr: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            bytes
                .try_into()
                .map_err(|_| CipherError::KeyLength(bytes.len()))?,
        );
        Ok(Self::from_bytes(*arr))
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> Result<Self, CipherError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut k[..]).map_err(|_| CipherError::Rng)?;
        Ok(Self::from_bytes(*k))
    }

    /// The raw key bytes, for wrapping by a KMS. Never log them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// Seals `plaintext` under `key`, binding `aad`: `IV ‖ ciphertext ‖ tag`.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
    let mut iv = [0u8; IV_LEN];
    rand::rng()
        .try_fill_bytes(&mut iv)
        .map_err(|_| CipherError::Rng)?;
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&iv);
    out.extend_from_slice(plaintext);
    let tag = key
        .cipher
        .encrypt_inout_detached(&Nonce::from(iv), aad, out[IV_LEN..].as_mut().into())
        .map_err(|_| CipherError::TooLong)?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Opens what [`seal`] produced with the same `key` and `aad`.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
    if sealed.len() < OVERHEAD {
        return Err(CipherError::TooShort(sealed.len()));
    }
    let (iv, rest) = sealed.split_at(IV_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let iv: [u8; IV_LEN] = iv
        .try_into()
        .map_err(|_| CipherError::TooShort(sealed.len()))?;
    let tag = Tag::try_from(tag).map_err(|_| CipherError::TooShort(sealed.len()))?;
    let mut out = ct.to_vec();
    key.cipher
        .decrypt_inout_detached(&Nonce::from(iv), aad, out.as_mut_slice().into(), &tag)
        .map_err(|_| CipherError::Authentication)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_layout() {
        let key = DataKey::generate().expect("key");
        let sealed = seal(&key, b"aad", b"hello").expect("seal");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(open(&key, b"aad", &sealed).expect("open"), b"hello");
        // Empty plaintext works too.
        let empty = seal(&key, b"", b"").expect("seal");
        assert_eq!(open(&key, b"", &empty).expect("open"), b"");
        // Fresh IV each time.
        let again = seal(&key, b"aad", b"hello").expect("seal");
        assert_ne!(sealed[..IV_LEN], again[..IV_LEN]);
    }

    #[test]
    fn wrong_key_aad_or_tampering_fails() {
        let key = DataKey::generate().expect("key");
        let other = DataKey::generate().expect("key");
        let sealed = seal(&key, b"aad", b"secret").expect("seal");
        assert_eq!(
            open(&other, b"aad", &sealed),
            Err(CipherError::Authentication)
        );
        assert_eq!(
            open(&key, b"aaX", &sealed),
            Err(CipherError::Authentication)
        );
        let mut bad = sealed.clone();
        bad[IV_LEN] ^= 1;
        assert_eq!(open(&key, b"aad", &bad), Err(CipherError::Authentication));
        assert_eq!(
            open(&key, b"aad", &sealed[..27]),
            Err(CipherError::TooShort(27))
        );
    }

    #[test]
    fn known_answer_matches_aws_lc() {
        // Same key, IV and AAD through aws-lc-rs: identical ciphertext and tag.
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as LcNonce, UnboundKey};
        let key_bytes = [0x42u8; 32];
        let key = DataKey::from_bytes(key_bytes);
        let sealed = seal(&key, b"ctx", b"the quick brown fox").expect("seal");
        let iv: [u8; 12] = sealed[..12].try_into().expect("iv");
        let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).expect("key"));
        let mut buf = b"the quick brown fox".to_vec();
        lc.seal_in_place_append_tag(
            LcNonce::assume_unique_for_key(iv),
            Aad::from(b"ctx"),
            &mut buf,
        )
        .expect("seal");
        assert_eq!(&sealed[12..], &buf[..]);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DataKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey(..)");
        assert!(DataKey::from_slice(&[1; 31]).is_err());
    }
}
