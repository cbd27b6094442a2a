//! [`KeyStore`]: the durable key state in the compacted internal topic `_gatehouse_keys`
//! (1 partition, `cleanup.policy=compact`), the KMS calls, the per-process encryption DEKs
//! and the cache of unwrapped DEKs for decryption.
//!
//! Records (key and value are UTF-8 JSON; a null value is a tombstone):
//!
//! | key | value |
//! |---|---|
//! | `{"type":"kek","id":ID}` | the whole [`Kek`] (rewritten on every change; never tombstoned, so ids and versions are never reused) |
//! | `{"type":"kek-material","id":ID,"version":N}` | `{"kms_ref":..,"blob":B64}`: [`Kms::export_kek`] (LocalKms: the KEK sealed by the master key); tombstoned when the KEK is destroyed |
//! | `{"type":"dek","id":HEX}` | the [`DekRecord`] (wrapped DEK), kept after its KEK is destroyed so a decryption can say "shredded" rather than "unknown" (the wrapped DEK is useless without the KEK) |
//!
//! Every record carries a header `gh-mac` = HMAC-SHA256 under the caller's MAC key over
//! `len(topic) topic len(key) key len(value) value` (4-byte big-endian lengths, `0xFFFFFFFF`
//! for a null value), the same scheme as the policy topics. Records whose MAC is missing or
//! wrong are skipped and counted ([`KeyStore::rejected_records`]).
//!
//! Writes are produced with `acks=all` and applied only after the acknowledgement, by reading
//! the log through them; a background task tails the log every 500 ms so changes made by
//! other nodes (new DEKs, rotations, destruction — which clears this node's caches) arrive.
//! A decryption that misses an unknown DEK reads the log to its high watermark first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_protocol::client::{Client, CreateTopicOutcome, EARLIEST_OFFSET};
use gatehouse_protocol::kafka_protocol::messages::DescribeConfigsRequest;
use gatehouse_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::records::{BatchBuilder, RawBatches, Record, RecordHeader};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::cipher::{CipherError, DataKey};
use super::keys::{
    DekId, DekRecord, Kek, KekId, KekState, KekVersion, KeyEvent, KeyEventKind, KeyEvents,
    KeyState, RotationPolicy, VaultError, b64, hex_16, validate_name,
};
use super::kms::{KekRef, Kms};

/// The internal topic holding the key state.
pub const KEYS_TOPIC: &str = "_gatehouse_keys";
/// The record header carrying the MAC.
pub const MAC_HEADER: &str = "gh-mac";
const FETCH_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// See `policy/src/store.rs`: 1, not 0 (Tansu compatibility), never a long poll.
const FETCH_MAX_WAIT_MS: i32 = 1;

/// Settings of a [`KeyStore`].
#[derive(Clone)]
pub struct KeyStoreConfig {
    /// DEK rotation and cache limits.
    pub rotation: RotationPolicy,
    /// Receives every key event this node causes.
    pub events: Option<KeyEvents>,
    /// How often the log is tailed for other nodes' changes.
    pub tail_interval: Duration,
}

impl Default for KeyStoreConfig {
    fn default() -> Self {
        Self {
            rotation: RotationPolicy::default(),
            events: None,
            tail_interval: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for KeyStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStoreConfig")
            .field("rotation", &self.rotation)
            .field("events", &self.events.is_some())
            .field("tail_interval", &self.tail_interval)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum RecordKey {
    Kek {
        id: KekId,
    },
    KekMaterial {
        id: KekId,
        version: u32,
    },
    Dek {
        #[serde(with = "hex_16")]
        id: DekId,
    },
}

#[derive(Serialize, Deserialize)]
struct Material {
    kms_ref: KekRef,
    #[serde(with = "b64")]
    blob: Vec<u8>,
}

/// The MAC of one record of `_gatehouse_keys`.
pub fn record_mac(mac_key: &[u8; 32], topic: &str, key: &[u8], value: Option<&[u8]>) -> [u8; 32] {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = [0u8; 32];
    if let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key) {
        m.update(&len(topic.len()));
        m.update(topic.as_bytes());
        m.update(&len(key.len()));
        m.update(key);
        m.update(&value.map_or(u32::MAX.to_be_bytes(), |v| len(v.len())));
        m.update(value.unwrap_or_default());
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// The DEK this process encrypts with for one KEK.
pub(crate) struct CurrentDek {
    pub(crate) id: DekId,
    pub(crate) kek_id: KekId,
    kek_version: u32,
    pub(crate) key: DataKey,
    used: AtomicU64,
    created: Instant,
}

impl CurrentDek {
    /// Reserves `n` encryptions if this DEK is still within policy for `version`.
    fn reserve(&self, version: u32, n: u64, policy: &RotationPolicy) -> bool {
        if self.kek_version != version || self.created.elapsed() >= policy.max_age {
            return false;
        }
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        before.saturating_add(n) <= policy.max_encryptions
    }
}

struct CachedDek {
    key: Arc<DataKey>,
    kek_id: KekId,
}

struct Inner {
    client: Client,
    kms: Arc<dyn Kms>,
    mac_key: Zeroizing<[u8; 32]>,
    config: KeyStoreConfig,
    state: RwLock<KeyState>,
    cursor: Mutex<i64>,
    rejected: AtomicU64,
    cache: RwLock<HashMap<DekId, CachedDek>>,
    current: RwLock<HashMap<KekId, Arc<CurrentDek>>>,
    rotate: Mutex<()>,
}

/// The durable key state. See the module documentation.
pub struct KeyStore {
    inner: Arc<Inner>,
    tail: JoinHandle<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("kms", &self.inner.kms.name())
            .field("keks", &self.keks().len())
            .field("rejected", &self.rejected_records())
            .finish_non_exhaustive()
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.tail.abort();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, VaultError> {
    serde_json::to_vec(v).map_err(|e| VaultError::Log(format!("encoding a record: {e}")))
}

type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

impl KeyStore {
    /// Creates or checks `_gatehouse_keys`, replays it (importing KEK material into `kms`)
    /// and starts the tail task.
    pub async fn open(
        client: Client,
        kms: Arc<dyn Kms>,
        mac_key: [u8; 32],
        config: KeyStoreConfig,
    ) -> Result<Self, VaultError> {
        let started = Instant::now();
        match client
            .create_topic(KEYS_TOPIC, 1, &[("cleanup.policy", "compact")])
            .await?
        {
            CreateTopicOutcome::Created => info!(topic = KEYS_TOPIC, "created internal topic"),
            CreateTopicOutcome::AlreadyExists => check_topic(&client, KEYS_TOPIC).await?,
        }
        let start = client
            .list_offsets(KEYS_TOPIC, 0, EARLIEST_OFFSET)
            .await?
            .0
            .max(0);
        let interval = config.tail_interval;
        let inner = Arc::new(Inner {
            client,
            kms,
            mac_key: Zeroizing::new(mac_key),
            config,
            state: RwLock::new(KeyState::default()),
            cursor: Mutex::new(start),
            rejected: AtomicU64::new(0),
            cache: RwLock::new(HashMap::new()),
            current: RwLock::new(HashMap::new()),
            rotate: Mutex::new(()),
        });
        {
            let mut cursor = inner.cursor.lock().await;
            inner.catch_up(&mut cursor, None).await?;
        }
        info!(
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            keks = inner.read_state().keks.len(),
            deks = inner.read_state().deks.len(),
            "key topic replayed"
        );
        let tail = tokio::spawn(tail(inner.clone(), interval));
        Ok(Self { inner, tail })
    }

    /// Records skipped because their MAC was missing or wrong, or they could not be applied.
    pub fn rejected_records(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Reads the log up to its high watermark (read-your-writes across nodes).
    pub async fn sync(&self) -> Result<(), VaultError> {
        let mut cursor = self.inner.cursor.lock().await;
        self.inner.catch_up(&mut cursor, None).await
    }

    /// Every KEK, destroyed ones included, sorted by name then creation.
    pub fn keks(&self) -> Vec<Kek> {
        let mut v: Vec<Kek> = self.inner.read_state().keks.values().cloned().collect();
        v.sort_by(|a, b| (&a.name, a.created_ms).cmp(&(&b.name, b.created_ms)));
        v
    }

    /// The newest non-destroyed KEK named `name`.
    pub fn kek(&self, name: &str) -> Option<Kek> {
        self.inner.read_state().by_name(name).cloned()
    }

    /// The active KEK that applies to `topic`.
    pub fn kek_for_topic(&self, topic: &str) -> Option<Kek> {
        self.inner.read_state().select(topic).cloned()
    }

    /// The stored (wrapped) form of a DEK.
    pub fn dek_record(&self, id: &DekId) -> Option<DekRecord> {
        self.inner.read_state().dek(id).cloned()
    }

    /// Creates a KEK for a topic or template (`orders-*`); fails if an active one of that
    /// name exists (a retired or destroyed one is replaced).
    pub async fn create_kek(&self, name: &str) -> Result<Kek, VaultError> {
        self.create_kek_by(name, None).await
    }

    /// [`KeyStore::create_kek`], recording who asked (e.g. `User:alice`) in the first version.
    pub async fn create_kek_by(&self, name: &str, by: Option<&str>) -> Result<Kek, VaultError> {
        validate_name(name)?;
        let _admin = self.inner.rotate.lock().await;
        self.sync_locked().await?;
        if self
            .inner
            .read_state()
            .by_name(name)
            .is_some_and(|k| k.state == KekState::Active)
        {
            return Err(VaultError::KekExists(name.to_string()));
        }
        let kms_ref = self.inner.kms.create_kek().await?;
        let now = now_ms();
        let kek = Kek {
            id: KekId::generate()?,
            name: name.to_string(),
            state: KekState::Active,
            kms: self.inner.kms.name().to_string(),
            versions: vec![KekVersion {
                version: 1,
                kms_ref: kms_ref.clone(),
                created_ms: now,
                destroyed: false,
                created_by: by.map(str::to_string),
            }],
            created_ms: now,
        };
        let mut records = self.inner.material_record(&kek.id, 1, &kms_ref)?;
        records.push(kek_record(&kek)?);
        self.inner.write(records).await?;
        self.inner
            .emit(KeyEventKind::KekCreated, &kek, Some(1), None);
        Ok(kek)
    }

    /// Adds a version to the active KEK `name`; new DEKs are wrapped by it, older versions
    /// keep decrypting.
    pub async fn rotate_kek(&self, name: &str) -> Result<Kek, VaultError> {
        self.rotate_kek_by(name, None).await
    }

    /// [`KeyStore::rotate_kek`], recording who asked (e.g. `User:alice`) in the new version.
    pub async fn rotate_kek_by(&self, name: &str, by: Option<&str>) -> Result<Kek, VaultError> {
        let _admin = self.inner.rotate.lock().await;
        self.sync_locked().await?;
        let mut kek = self
            .inner
            .read_state()
            .by_name(name)
            .filter(|k| k.state == KekState::Active)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKek(name.to_string()))?;
        let kms_ref = self.inner.kms.create_kek().await?;
        let version = kek
            .versions
            .last()
            .map_or(1, |v| v.version.saturating_add(1));
        kek.versions.push(KekVersion {
            version,
            kms_ref: kms_ref.clone(),
            created_ms: now_ms(),
            destroyed: false,
            created_by: by.map(str::to_string),
        });
        let mut records = self.inner.material_record(&kek.id, version, &kms_ref)?;
        records.push(kek_record(&kek)?);
        self.inner.write(records).await?;
        self.inner
            .emit(KeyEventKind::KekRotated, &kek, Some(version), None);
        Ok(kek)
    }

    /// Retires the active KEK `name`: no new encryption under it, decryption continues.
    pub async fn retire_kek(&self, name: &str) -> Result<Kek, VaultError> {
        let _admin = self.inner.rotate.lock().await;
        self.sync_locked().await?;
        let mut kek = self
            .inner
            .read_state()
            .by_name(name)
            .filter(|k| k.state == KekState::Active)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKek(name.to_string()))?;
        kek.state = KekState::Retired;
        self.inner.write(vec![kek_record(&kek)?]).await?;
        self.inner.emit(KeyEventKind::KekRetired, &kek, None, None);
        Ok(kek)
    }

    /// Crypto-shreds the newest non-destroyed KEK named `name`: marks it and every version
    /// destroyed, tombstones its stored material and DEKs, clears the caches (every node's,
    /// as they apply the record), then destroys every version in the KMS. Afterwards no
    /// record encrypted under it can be decrypted.
    pub async fn destroy_kek(&self, name: &str) -> Result<Kek, VaultError> {
        let _admin = self.inner.rotate.lock().await;
        self.sync_locked().await?;
        let mut kek = self
            .inner
            .read_state()
            .by_name(name)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKek(name.to_string()))?;
        self.inner.shred(&mut kek).await?;
        Ok(kek)
    }

    /// Unwraps a DEK through the KMS, bypassing the cache (what an auditor runs to prove a
    /// shredding: it must fail for every DEK of a destroyed KEK).
    pub async fn unwrap_dek(&self, id: &DekId) -> Result<DataKey, VaultError> {
        let (rec, kek) = self.inner.lookup_dek(id).await?;
        let version = kek
            .version(rec.kek_version)
            .ok_or_else(|| VaultError::UnknownDek(hex::encode(id)))?;
        Ok(self
            .inner
            .kms
            .unwrap(&version.kms_ref, &rec.wrapped)
            .await?)
    }

    async fn sync_locked(&self) -> Result<(), VaultError> {
        let mut cursor = self.inner.cursor.lock().await;
        self.inner.catch_up(&mut cursor, None).await
    }

    /// The DEK to encrypt `n` fields of a record of `topic` with (creating and storing one
    /// when the current one is used up, too old, or wrapped by an old KEK version).
    pub(crate) async fn encryption_dek(
        &self,
        topic: &str,
        n: u64,
    ) -> Result<Arc<CurrentDek>, VaultError> {
        let inner = &self.inner;
        let policy = inner.config.rotation;
        let (kek_id, version) = inner.active_version(topic)?;
        if let Some(cur) = inner.current_dek(&kek_id)
            && cur.reserve(version, n, &policy)
        {
            return Ok(cur);
        }
        let _rotating = inner.rotate.lock().await;
        // Someone else may have replaced it while we waited.
        let (kek_id, version) = inner.active_version(topic)?;
        if let Some(cur) = inner.current_dek(&kek_id)
            && cur.reserve(version, n, &policy)
        {
            return Ok(cur);
        }
        let kek = inner
            .read_state()
            .kek(&kek_id)
            .cloned()
            .ok_or_else(|| VaultError::NoKek(topic.to_string()))?;
        let kv = kek
            .current()
            .cloned()
            .ok_or_else(|| VaultError::NoKek(topic.to_string()))?;
        let key = DataKey::generate()?;
        let wrapped = inner.kms.wrap(&kv.kms_ref, &key).await?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| CipherError::Rng)?;
        let rec = DekRecord {
            id,
            kek_id: kek_id.clone(),
            kek_version: kv.version,
            wrapped,
            created_ms: now_ms(),
        };
        inner
            .write(vec![(json(&RecordKey::Dek { id })?, Some(json(&rec)?))])
            .await?;
        let cur = Arc::new(CurrentDek {
            id,
            kek_id: kek_id.clone(),
            kek_version: kv.version,
            key: key.clone(),
            used: AtomicU64::new(n),
            created: Instant::now(),
        });
        inner.cache_insert(id, Arc::new(key), kek_id.clone());
        inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kek_id, cur.clone());
        debug!(kek = %kek.id, version = kv.version, dek = %hex::encode(id), "new data key");
        inner.emit(KeyEventKind::DekCreated, &kek, Some(kv.version), Some(id));
        Ok(cur)
    }

    /// The unwrapped DEK `id` and the id of its KEK, for decryption.
    pub(crate) async fn decryption_dek(
        &self,
        id: &DekId,
    ) -> Result<(Arc<DataKey>, KekId), VaultError> {
        if let Some(hit) = self
            .inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            return Ok((hit.key.clone(), hit.kek_id.clone()));
        }
        let (rec, kek) = self.inner.lookup_dek(id).await?;
        let version = kek
            .version(rec.kek_version)
            .ok_or_else(|| VaultError::UnknownDek(hex::encode(id)))?;
        let key = Arc::new(
            self.inner
                .kms
                .unwrap(&version.kms_ref, &rec.wrapped)
                .await?,
        );
        // A destruction may have been applied while we were unwrapping.
        if self
            .inner
            .read_state()
            .kek(&kek.id)
            .is_none_or(|k| k.state == KekState::Destroyed)
        {
            return Err(destroyed(id, &kek));
        }
        self.inner.cache_insert(*id, key.clone(), kek.id.clone());
        Ok((key, kek.id))
    }
}

fn destroyed(id: &DekId, kek: &Kek) -> VaultError {
    VaultError::Destroyed {
        dek: hex::encode(id),
        kek_name: kek.name.clone(),
        kek_id: kek.id.clone(),
    }
}

fn kek_record(kek: &Kek) -> Result<(Vec<u8>, Option<Vec<u8>>), VaultError> {
    Ok((
        json(&RecordKey::Kek { id: kek.id.clone() })?,
        Some(json(kek)?),
    ))
}

impl Inner {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, KeyState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn current_dek(&self, kek: &KekId) -> Option<Arc<CurrentDek>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kek)
            .cloned()
    }

    fn active_version(&self, topic: &str) -> Result<(KekId, u32), VaultError> {
        let state = self.read_state();
        let kek = state
            .select(topic)
            .ok_or_else(|| VaultError::NoKek(topic.to_string()))?;
        let v = kek
            .current()
            .ok_or_else(|| VaultError::NoKek(topic.to_string()))?;
        Ok((kek.id.clone(), v.version))
    }

    fn emit(&self, kind: KeyEventKind, kek: &Kek, version: Option<u32>, dek: Option<DekId>) {
        if let Some(cb) = &self.config.events {
            cb(&KeyEvent {
                kind,
                kek_name: kek.name.clone(),
                kek_id: kek.id.clone(),
                kek_version: version,
                dek_id: dek,
            });
        }
    }

    fn material_record(
        &self,
        kek: &KekId,
        version: u32,
        kms_ref: &KekRef,
    ) -> Result<Records, VaultError> {
        Ok(match self.kms.export_kek(kms_ref)? {
            Some(blob) => vec![(
                json(&RecordKey::KekMaterial {
                    id: kek.clone(),
                    version,
                })?,
                Some(json(&Material {
                    kms_ref: kms_ref.clone(),
                    blob,
                })?),
            )],
            None => vec![],
        })
    }

    fn cache_insert(&self, id: DekId, key: Arc<DataKey>, kek_id: KekId) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.config.rotation.cache_capacity.max(1) {
            // Cheap bounded eviction: drop an arbitrary entry (a miss only costs one unwrap).
            if let Some(victim) = cache.keys().next().copied() {
                cache.remove(&victim);
            }
        }
        cache.insert(id, CachedDek { key, kek_id });
    }

    /// The DEK record and its KEK; reads the log first if the DEK is unknown. Fails for a
    /// destroyed KEK.
    async fn lookup_dek(&self, id: &DekId) -> Result<(DekRecord, Kek), VaultError> {
        let found = |s: &KeyState| s.dek(id).cloned().map(|r| (s.kek(&r.kek_id).cloned(), r));
        let mut hit = found(&self.read_state());
        if hit.is_none() {
            let mut cursor = self.cursor.lock().await;
            self.catch_up(&mut cursor, None).await?;
            hit = found(&self.read_state());
        }
        let Some((kek, rec)) = hit else {
            return Err(VaultError::UnknownDek(hex::encode(id)));
        };
        let kek = kek.ok_or_else(|| VaultError::UnknownDek(hex::encode(id)))?;
        let destroyed_version = kek.version(rec.kek_version).is_none_or(|v| v.destroyed);
        if kek.state == KekState::Destroyed || destroyed_version {
            return Err(destroyed(id, &kek));
        }
        Ok((rec, kek))
    }

    async fn shred(&self, kek: &mut Kek) -> Result<(), VaultError> {
        let already = kek.state == KekState::Destroyed;
        if !already {
            kek.state = KekState::Destroyed;
            for v in &mut kek.versions {
                v.destroyed = true;
            }
            let mut records: Records = vec![kek_record(kek)?];
            for v in &kek.versions {
                records.push((
                    json(&RecordKey::KekMaterial {
                        id: kek.id.clone(),
                        version: v.version,
                    })?,
                    None,
                ));
            }
            // Applying the kek record clears the caches and forgets local material.
            self.write(records).await?;
        }
        for v in &kek.versions {
            self.kms.destroy_kek(&v.kms_ref).await?;
        }
        if !already {
            self.emit(KeyEventKind::KekDestroyed, kek, None, None);
        }
        Ok(())
    }

    /// Produces `records` (acks=all) and applies them by reading the log through them.
    async fn write(&self, records: Records) -> Result<(), VaultError> {
        let now = now_ms();
        let mut builder = BatchBuilder::new();
        for (key, value) in &records {
            let mac = record_mac(&self.mac_key, KEYS_TOPIC, key, value.as_deref());
            let header = RecordHeader::new(
                Bytes::from_static(MAC_HEADER.as_bytes()),
                Some(Bytes::copy_from_slice(&mac)),
            );
            builder
                .push(Some(key), value.as_deref(), &[header], now)
                .map_err(|e| VaultError::Log(e.to_string()))?;
        }
        let batch = builder
            .build()
            .map_err(|e| VaultError::Log(e.to_string()))?;
        let mut cursor = self.cursor.lock().await;
        let base = self.client.produce(KEYS_TOPIC, 0, batch, -1).await?;
        let count = i64::try_from(records.len()).unwrap_or(i64::MAX);
        self.catch_up(&mut cursor, Some(base.saturating_add(count)))
            .await
    }

    /// Applies records from `*cursor` up to the high watermark (at least up to `target`).
    async fn catch_up(&self, cursor: &mut i64, target: Option<i64>) -> Result<(), VaultError> {
        let mut target = target;
        loop {
            let fetched = self
                .client
                .fetch(KEYS_TOPIC, 0, *cursor, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
                .await?;
            let goal = *target.get_or_insert(fetched.high_watermark);
            if *cursor >= goal {
                return Ok(());
            }
            let before = *cursor;
            self.apply_batches(cursor, fetched.records)?;
            if *cursor == before {
                if fetched.high_watermark < goal {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                return Err(VaultError::Log(format!(
                    "no progress reading {KEYS_TOPIC} at offset {before} (high watermark {})",
                    fetched.high_watermark
                )));
            }
        }
    }

    fn apply_batches(&self, cursor: &mut i64, records: Bytes) -> Result<(), VaultError> {
        for batch in RawBatches::new(records) {
            let batch = batch.map_err(|e| VaultError::Log(e.to_string()))?;
            let header = *batch.header();
            let next = header.last_offset().saturating_add(1);
            if next <= *cursor {
                continue;
            }
            if !header.is_control() {
                for rec in batch
                    .records()
                    .map_err(|e| VaultError::Log(e.to_string()))?
                {
                    let offset = rec.offset(&header);
                    if offset >= *cursor {
                        self.apply_record(offset, &rec);
                    }
                }
            }
            *cursor = next;
        }
        Ok(())
    }

    fn reject(&self, offset: i64, why: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        warn!(topic = KEYS_TOPIC, offset, "skipped key record: {why}");
    }

    fn apply_record(&self, offset: i64, rec: &Record) {
        let Some(key) = rec.key.as_deref() else {
            return self.reject(offset, "no key");
        };
        let value = rec.value.as_deref();
        let expected = record_mac(&self.mac_key, KEYS_TOPIC, key, value);
        let mac_ok = rec
            .headers_named(MAC_HEADER.as_bytes())
            .next()
            .and_then(|h| h.value.as_deref())
            .is_some_and(|m| bool::from(m.ct_eq(&expected)));
        if !mac_ok {
            return self.reject(offset, "missing or invalid MAC");
        }
        if let Err(why) = self.apply(key, value) {
            self.reject(offset, &why);
        }
    }

    fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: RecordKey = serde_json::from_slice(key).map_err(|e| format!("bad key: {e}"))?;
        match (key, value) {
            (RecordKey::Kek { id }, Some(v)) => {
                let kek: Kek = serde_json::from_slice(v).map_err(|e| format!("bad KEK: {e}"))?;
                if kek.id != id {
                    return Err("key and value KEK ids differ".into());
                }
                let destroyed: Vec<KekRef> = kek
                    .versions
                    .iter()
                    .filter(|v| v.destroyed || kek.state == KekState::Destroyed)
                    .map(|v| v.kms_ref.clone())
                    .collect();
                let state = kek.state;
                self.write_state().keks.insert(id.clone(), kek);
                if state != KekState::Active {
                    self.current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                }
                if !destroyed.is_empty() {
                    self.cache
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|_, c| c.kek_id != id);
                    for r in &destroyed {
                        self.kms.forget_kek(r);
                    }
                }
                Ok(())
            }
            (RecordKey::Kek { .. }, None) => Err("KEK records are never tombstoned".into()),
            (RecordKey::KekMaterial { id, .. }, Some(v)) => {
                let m: Material =
                    serde_json::from_slice(v).map_err(|e| format!("bad KEK material: {e}"))?;
                let gone = self
                    .read_state()
                    .kek(&id)
                    .is_some_and(|k| k.state == KekState::Destroyed);
                if gone {
                    return Ok(()); // a stale copy; never resurrect shredded material
                }
                self.kms
                    .import_kek(&m.kms_ref, &m.blob)
                    .map_err(|e| format!("importing KEK {id}: {e}"))
            }
            (RecordKey::KekMaterial { .. }, None) => Ok(()),
            (RecordKey::Dek { id }, Some(v)) => {
                let rec: DekRecord =
                    serde_json::from_slice(v).map_err(|e| format!("bad DEK: {e}"))?;
                if rec.id != id {
                    return Err("key and value DEK ids differ".into());
                }
                self.write_state().deks.insert(id, rec);
                Ok(())
            }
            (RecordKey::Dek { id }, None) => {
                self.write_state().deks.remove(&id);
                self.cache
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                Ok(())
            }
        }
    }
}

/// Applies records other nodes write, until the store is dropped.
async fn tail(inner: Arc<Inner>, interval: Duration) {
    loop {
        let from = *inner.cursor.lock().await;
        let fetched = match inner
            .client
            .fetch(KEYS_TOPIC, 0, from, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                warn!(topic = KEYS_TOPIC, error = %e, "tailing the key topic failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if fetched.high_watermark <= from {
            tokio::time::sleep(interval).await;
            continue;
        }
        let mut cursor = inner.cursor.lock().await;
        if *cursor != from {
            continue;
        }
        if let Err(e) = inner.apply_batches(&mut cursor, fetched.records) {
            warn!(topic = KEYS_TOPIC, error = %e, "applying tailed key records failed");
            drop(cursor);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn check_topic(client: &Client, topic: &str) -> Result<(), VaultError> {
    let unsafe_topic = |why: String| VaultError::UnsafeTopic {
        topic: topic.to_string(),
        why,
    };
    let md = client.metadata(Some(&[topic])).await?;
    let Some(t) = md.topic(topic) else {
        return Err(unsafe_topic("not in the broker's metadata".into()));
    };
    if t.partitions.len() != 1 {
        return Err(unsafe_topic(format!(
            "it has {} partitions; it needs exactly 1",
            t.partitions.len()
        )));
    }
    let conn = client.any_broker().await?;
    let version = conn.version_for::<DescribeConfigsRequest>()?;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None),
    ]);
    let resp = conn.send(req, version).await?;
    let Some(result) = resp.results.first() else {
        return Err(unsafe_topic("DescribeConfigs returned nothing".into()));
    };
    if result.error_code != 0 {
        return Err(unsafe_topic(format!(
            "DescribeConfigs failed with error code {}",
            result.error_code
        )));
    }
    let policy = result
        .configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
        .unwrap_or_default();
    if !policy.split(',').any(|p| p.trim() == "compact") || policy.contains("delete") {
        return Err(unsafe_topic(format!(
            "cleanup.policy is '{policy}'; it must be 'compact' (retention would delete keys)"
        )));
    }
    Ok(())
}
