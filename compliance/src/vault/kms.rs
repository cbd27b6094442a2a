//! Key-encryption-key providers: the [`Kms`] trait, the in-process [`LocalKms`] and (in
//! [`crate::vault::aws`]) the AWS KMS client.
//!
//! A KMS holds KEKs and wraps/unwraps DEKs under them; a KEK is named by an opaque
//! [`KekRef`] the KMS hands out. KEK material never leaves an external KMS. [`LocalKms`]
//! generates KEK material itself and only ever exposes it sealed by the master key
//! (AES-256-GCM, AAD = the KEK id): the key store persists that sealed blob in
//! `_gatehouse_keys` through [`Kms::export_kek`] / [`Kms::import_kek`], so the log or a data
//! directory alone never yields a KEK, and destroying a KEK tombstones the blob.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::cipher::{self, CipherError, DataKey};

/// A KMS's name for one KEK (LocalKms: `local-<32 hex>`; AWS: the key ARN). Not secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KekRef(String);

impl KekRef {
    /// Wraps a KMS key identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekRef({})", self.0)
    }
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a KMS operation failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The KMS does not know this KEK (never created here, or destroyed and forgotten).
    #[error("kms: unknown KEK {0}")]
    UnknownKek(KekRef),
    /// The KEK exists but may not be used (destroyed, disabled or pending deletion).
    #[error("kms: KEK {kek} is not usable: {why}")]
    Unusable {
        /// Which KEK.
        kek: KekRef,
        /// What the KMS said.
        why: String,
    },
    /// Wrapping or unwrapping failed cryptographically (wrong KEK, tampered blob).
    #[error("kms: {0}")]
    Cipher(#[from] CipherError),
    /// The KMS could not be reached.
    #[error("kms: transport: {0}")]
    Transport(String),
    /// The KMS answered with an error.
    #[error("kms: {kind} (HTTP {status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error type (`__type`), e.g. `NotFoundException`.
        kind: String,
        /// The error message.
        message: String,
    },
    /// The KMS answered with something we do not understand.
    #[error("kms: malformed answer: {0}")]
    Malformed(String),
    /// The KMS client is misconfigured (missing region or credentials, bad endpoint).
    #[error("kms: configuration: {0}")]
    Config(String),
}

/// The future every [`Kms`] method returns (boxed so `dyn Kms` works).
pub type KmsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KmsError>> + Send + 'a>>;

/// A key-encryption-key provider.
pub trait Kms: Send + Sync {
    /// A short name for logs and errors (`local`, `aws-kms`).
    fn name(&self) -> &'static str;

    /// Creates a new KEK.
    fn create_kek(&self) -> KmsFuture<'_, KekRef>;

    /// Wraps (encrypts) a DEK under `kek`.
    fn wrap<'a>(&'a self, kek: &'a KekRef, dek: &'a DataKey) -> KmsFuture<'a, Vec<u8>>;

    /// Unwraps what [`Kms::wrap`] produced under `kek`.
    fn unwrap<'a>(&'a self, kek: &'a KekRef, wrapped: &'a [u8]) -> KmsFuture<'a, DataKey>;

    /// Destroys `kek`'s material (crypto-shredding): afterwards nothing wrapped under it can
    /// be unwrapped. External KMSs may only schedule the deletion but must disable the key
    /// at once.
    fn destroy_kek<'a>(&'a self, kek: &'a KekRef) -> KmsFuture<'a, ()>;

    /// State the key store must persist for `kek` so other nodes (and this one after a
    /// restart) can use it: already protected (sealed by the master key). `None` for KMSs
    /// that keep their own state.
    fn export_kek(&self, _kek: &KekRef) -> Result<Option<Vec<u8>>, KmsError> {
        Ok(None)
    }

    /// Loads what [`Kms::export_kek`] produced (on replay, or from another node).
    fn import_kek(&self, _kek: &KekRef, _blob: &[u8]) -> Result<(), KmsError> {
        Ok(())
    }

    /// Drops any local copy of `kek`'s material (another node destroyed it).
    fn forget_kek(&self, _kek: &KekRef) {}
}

const LOCAL_PREFIX: &str = "local-";
const LOCAL_BLOB_VERSION: u8 = 1;

/// A KMS inside the process: KEKs are random 256-bit keys, held in memory and exported only
/// sealed by the master key (AES-256-GCM, AAD = the KEK id). DEKs are wrapped with
/// AES-256-GCM under the KEK, AAD = the KEK id.
pub struct LocalKms {
    master: DataKey,
    keks: RwLock<HashMap<KekRef, DataKey>>,
    destroyed: RwLock<HashSet<KekRef>>,
}

impl fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self
            .keks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("LocalKms")
            .field("keks", &n)
            .finish_non_exhaustive()
    }
}

impl LocalKms {
    /// A local KMS whose KEKs are sealed by `master` (the node's master key, or a key derived
    /// from it for this purpose).
    pub fn new(master: DataKey) -> Self {
        Self {
            master,
            keks: RwLock::new(HashMap::new()),
            destroyed: RwLock::new(HashSet::new()),
        }
    }

    fn kek(&self, kek: &KekRef) -> Result<DataKey, KmsError> {
        if self
            .destroyed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(kek)
        {
            return Err(KmsError::Unusable {
                kek: kek.clone(),
                why: "destroyed".into(),
            });
        }
        self.keks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kek)
            .cloned()
            .ok_or_else(|| KmsError::UnknownKek(kek.clone()))
    }

    fn create(&self) -> Result<KekRef, KmsError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| CipherError::Rng)?;
        let kek = KekRef(format!("{LOCAL_PREFIX}{}", hex::encode(id)));
        let material = DataKey::generate()?;
        self.keks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kek.clone(), material);
        Ok(kek)
    }
}

impl Kms for LocalKms {
    fn name(&self) -> &'static str {
        "local"
    }

    fn create_kek(&self) -> KmsFuture<'_, KekRef> {
        Box::pin(async move { self.create() })
    }

    fn wrap<'a>(&'a self, kek: &'a KekRef, dek: &'a DataKey) -> KmsFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let k = self.kek(kek)?;
            Ok(cipher::seal(
                &k,
                kek.as_str().as_bytes(),
                dek.expose_secret(),
            )?)
        })
    }

    fn unwrap<'a>(&'a self, kek: &'a KekRef, wrapped: &'a [u8]) -> KmsFuture<'a, DataKey> {
        Box::pin(async move {
            let k = self.kek(kek)?;
            let plain =
                zeroize::Zeroizing::new(cipher::open(&k, kek.as_str().as_bytes(), wrapped)?);
            Ok(DataKey::from_slice(&plain)?)
        })
    }

    fn destroy_kek<'a>(&'a self, kek: &'a KekRef) -> KmsFuture<'a, ()> {
        Box::pin(async move {
            self.forget_kek(kek);
            Ok(())
        })
    }

    fn export_kek(&self, kek: &KekRef) -> Result<Option<Vec<u8>>, KmsError> {
        let k = self.kek(kek)?;
        let mut blob = vec![LOCAL_BLOB_VERSION];
        blob.extend(cipher::seal(
            &self.master,
            kek.as_str().as_bytes(),
            k.expose_secret(),
        )?);
        Ok(Some(blob))
    }

    fn import_kek(&self, kek: &KekRef, blob: &[u8]) -> Result<(), KmsError> {
        let Some((&LOCAL_BLOB_VERSION, sealed)) = blob.split_first() else {
            return Err(KmsError::Malformed("unknown local KEK blob version".into()));
        };
        if self
            .destroyed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(kek)
        {
            return Err(KmsError::Unusable {
                kek: kek.clone(),
                why: "destroyed".into(),
            });
        }
        let plain =
            zeroize::Zeroizing::new(cipher::open(&self.master, kek.as_str().as_bytes(), sealed)?);
        let material = DataKey::from_slice(&plain)?;
        self.keks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kek.clone(), material);
        Ok(())
    }

    fn forget_kek(&self, kek: &KekRef) {
        self.keks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(kek);
        self.destroyed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kek.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_kms_wraps_exports_and_shreds() {
        let master = [3u8; 32];
        let kms = LocalKms::new(DataKey::from_bytes(master));
        let kek = kms.create_kek().await.expect("create");
        assert!(kek.as_str().starts_with("local-"));
        let dek = DataKey::generate().expect("dek");
        let wrapped = kms.wrap(&kek, &dek).await.expect("wrap");
        let back = kms.unwrap(&kek, &wrapped).await.expect("unwrap");
        assert_eq!(back.expose_secret(), dek.expose_secret());

        // Another node with the same master key imports the sealed material.
        let blob = kms.export_kek(&kek).expect("export").expect("blob");
        assert!(!blob.windows(8).any(|w| w == &dek.expose_secret()[..8]));
        let other = LocalKms::new(DataKey::from_bytes(master));
        assert!(matches!(
            other.unwrap(&kek, &wrapped).await,
            Err(KmsError::UnknownKek(_))
        ));
        other.import_kek(&kek, &blob).expect("import");
        other.unwrap(&kek, &wrapped).await.expect("unwrap");
        // A wrong master key cannot import; a blob bound to another KEK id neither.
        let wrong = LocalKms::new(DataKey::from_bytes([4; 32]));
        assert!(wrong.import_kek(&kek, &blob).is_err());
        assert!(other.import_kek(&KekRef::new("local-x"), &blob).is_err());

        // Shredding: unwrap fails afterwards, and re-import is refused.
        kms.destroy_kek(&kek).await.expect("destroy");
        assert!(kms.unwrap(&kek, &wrapped).await.is_err());
        assert!(kms.import_kek(&kek, &blob).is_err());
        assert!(format!("{kms:?}").contains("keks: 0"));
    }
}
