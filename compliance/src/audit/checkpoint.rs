//! Signed checkpoints (`checkpoints/<tree size, 20 digits>.json`).
//!
//! A checkpoint is a canonical JSON object (one line plus `\n`) that commits to:
//! the tree size and RFC 6962 root hash, the previous checkpoint (its tree size and the
//! SHA-256 of its file bytes, forming a chain), the segments sealed since the previous
//! checkpoint (file name, sequence range, SHA-256 of the whole file, and the running
//! segment chain value `chain_i = SHA-256(chain_{i-1} || sha256_i)` with `chain_0` = 32 zero
//! bytes), the current segment chain head, a timestamp, and the signer's key id and public
//! key. The Ed25519 signature covers `"gatehouse-audit-checkpoint/v1\n"` followed by the
//! canonical JSON of every member except `signature`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical::{self, serde_str};
use super::keys::{PublicKey, Signer};
use super::merkle::Hash;

const DOMAIN: &[u8] = b"gatehouse-audit-checkpoint/v1\n";
/// Format version written in every checkpoint.
pub const CHECKPOINT_VERSION: u64 = 1;

/// File name of the checkpoint for `tree_size`.
pub fn checkpoint_file_name(tree_size: u64) -> String {
    format!("{tree_size:020}.json")
}

/// The tree size encoded in a checkpoint file name, if it is one.
pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `SHA-256(prev || segment_sha256)`.
pub fn segment_chain_next(prev: &Hash, segment_sha256: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(segment_sha256);
    h.finalize().into()
}

/// A segment sealed since the previous checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedSegment {
    /// File name under `segments/`.
    pub file: String,
    /// Sequence of its first record.
    #[serde(with = "serde_str::u64_string")]
    pub first_seq: u64,
    /// One past the sequence of its last record (the trailer's value).
    #[serde(with = "serde_str::u64_string")]
    pub next_seq: u64,
    /// SHA-256 of the whole sealed file.
    #[serde(with = "serde_str::hex32")]
    pub sha256: Hash,
    /// Segment chain value after this segment.
    #[serde(with = "serde_str::hex32")]
    pub chain: Hash,
}

/// Link to the previous checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrevCheckpoint {
    /// Its tree size (names its file).
    #[serde(with = "serde_str::u64_string")]
    pub tree_size: u64,
    /// SHA-256 of its file bytes.
    #[serde(with = "serde_str::hex32")]
    pub sha256: Hash,
}

/// A signed tree head with the segment digest chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u64,
    /// Log identity, `gatehouse://{nodeId}/audit`.
    pub log: String,
    /// Number of events covered.
    #[serde(with = "serde_str::u64_string")]
    pub tree_size: u64,
    /// RFC 6962 Merkle tree hash over the first `tree_size` events.
    #[serde(with = "serde_str::hex32")]
    pub root_hash: Hash,
    /// The previous checkpoint, absent for the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_checkpoint: Option<PrevCheckpoint>,
    /// Segments sealed since the previous checkpoint, in order.
    pub segments: Vec<SealedSegment>,
    /// Segment chain head after all segments sealed so far.
    #[serde(with = "serde_str::hex32")]
    pub segment_chain: Hash,
    /// When it was signed (RFC 3339).
    pub time: String,
    /// `hex(SHA-256(public key))` of the signer.
    pub key_id: String,
    /// The signer's Ed25519 public key.
    #[serde(with = "serde_str::hex32")]
    pub public_key: [u8; 32],
    /// Ed25519 signature (see the module docs for the signed bytes).
    #[serde(with = "serde_str::hex64")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Parses checkpoint JSON (does not check the signature).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The exact file contents: canonical JSON and a newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        // Only strings, a small integer, arrays and objects: canonicalisation cannot fail.
        let mut out = canonical::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The bytes the signature covers.
    pub fn signing_input(&self) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        if let Ok(mut v) = serde_json::to_value(self) {
            if let Some(o) = v.as_object_mut() {
                o.remove("signature");
            }
            if canonical::write_value(&mut out, &v).is_err() {
                out.clear();
            }
        }
        out
    }

    pub(crate) fn sign(&mut self, signer: &Signer) {
        let public = signer.public();
        self.public_key = public.to_bytes();
        self.key_id = public.key_id();
        self.signature = signer.sign(&self.signing_input());
    }

    /// Checks the signature with the embedded public key and that `key_id` matches it.
    /// This proves only internal consistency; check the key against a trusted one with
    /// [`Checkpoint::verify_with`].
    pub fn verify_signature(&self) -> bool {
        match PublicKey::from_bytes(&self.public_key) {
            Ok(pk) => self.verify_by(&pk),
            Err(_) => false,
        }
    }

    /// True if `key` signed this checkpoint (and the embedded key and id are `key`'s).
    pub fn verify_by(&self, key: &PublicKey) -> bool {
        key.to_bytes() == self.public_key
            && key.key_id() == self.key_id
            && key.verify(&self.signing_input(), &self.signature)
    }

    /// True if one of `trusted` signed this checkpoint.
    pub fn verify_with(&self, trusted: &[PublicKey]) -> bool {
        trusted.iter().any(|k| self.verify_by(k))
    }

    /// SHA-256 of the file bytes (what the next checkpoint links to).
    pub fn file_sha256(bytes: &[u8]) -> Hash {
        Sha256::digest(bytes).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(signer: &Signer) -> Checkpoint {
        let mut c = Checkpoint {
            version: CHECKPOINT_VERSION,
            log: "gatehouse://n1/audit".into(),
            tree_size: 10,
            root_hash: [3; 32],
            prev_checkpoint: Some(PrevCheckpoint {
                tree_size: 5,
                sha256: [4; 32],
            }),
            segments: vec![SealedSegment {
                file: "00000000000000000000.seg".into(),
                first_seq: 0,
                next_seq: 8,
                sha256: [5; 32],
                chain: segment_chain_next(&[0; 32], &[5; 32]),
            }],
            segment_chain: segment_chain_next(&[0; 32], &[5; 32]),
            time: "2025-01-01T00:00:00.000000Z".into(),
            key_id: String::new(),
            public_key: [0; 32],
            signature: [0; 64],
        };
        c.sign(signer);
        c
    }

    #[test]
    fn sign_serialise_parse_verify() {
        let s = Signer::generate().unwrap();
        let c = cp(&s);
        assert!(c.verify_signature());
        assert!(c.verify_with(&[s.public()]));
        let other = Signer::generate().unwrap();
        assert!(!c.verify_with(&[other.public()]));
        let bytes = c.to_file_bytes();
        assert!(bytes.ends_with(b"}\n"));
        assert!(!bytes[..bytes.len() - 1].contains(&b'\n'));
        let back = Checkpoint::from_json(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.to_file_bytes(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"treeSize\":\"10\""));
        let mut altered = c.clone();
        altered.tree_size = 11;
        assert!(!altered.verify_signature());
        let mut resigned = c.clone();
        resigned.sign(&other);
        assert!(resigned.verify_signature());
        assert!(!resigned.verify_with(&[s.public()]));
    }

    #[test]
    fn names() {
        assert_eq!(checkpoint_file_name(2002), "00000000000000002002.json");
        assert_eq!(
            parse_checkpoint_file_name("00000000000000002002.json"),
            Some(2002)
        );
        assert_eq!(parse_checkpoint_file_name("2002.json"), None);
    }
}
