//! [`PolicyStore`]: durable users, ACLs and role bindings in two internal compacted topics,
//! `_gatehouse_users` and `_gatehouse_acls` (1 partition each, `cleanup.policy=compact`).
//!
//! Records (key and value are UTF-8 JSON; a null value is a tombstone):
//!
//! | topic | key | value |
//! |---|---|---|
//! | `_gatehouse_users` | `{"type":"scram","user":U,"mechanism":"SCRAM-SHA-256"}` | the [`ScramCredential`] (salt and keys in base64) |
//! | `_gatehouse_acls` | `{"type":"acl","binding":{...}}` | the same JSON as the key |
//! | `_gatehouse_acls` | `{"type":"role","binding":{...}}` | the same JSON as the key |
//!
//! Every record carries a header `gh-mac` = HMAC-SHA256 under the store's MAC key over
//! `len(topic) topic len(key) key len(value) value` (lengths as 4-byte big-endian, `0xFFFFFFFF`
//! for a null value). A record whose MAC is missing or wrong — written around the gateway — is
//! skipped with a WARN and counted ([`PolicyStore::rejected_records`]); it is never applied.
//!
//! Writes are produced with `acks=all`; only once the broker acknowledged them are they applied
//! to the in-memory [`UserStore`] / [`Authorizer`], by reading the log up to and including the
//! new records (so every node applies changes in log order). A background task per topic tails
//! the log (a fetch every 500 ms; no long-poll, which would stall the shared connection) and
//! applies what other nodes write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::client::{Client, CreateTopicOutcome, EARLIEST_OFFSET};
use gatehouse_protocol::kafka_protocol::messages::DescribeConfigsRequest;
use gatehouse_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::records::{BatchBuilder, RawBatches, Record, RecordHeader};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::acl::{AclBinding, AclError, AclFilter, Authorizer, RoleBinding};
use crate::sasl::Mechanism;
use crate::scram::{ScramCredential, hmac_sha256};
use crate::users::UserStore;

/// SCRAM credentials.
pub const USERS_TOPIC: &str = "_gatehouse_users";
/// ACL and role bindings.
pub const ACLS_TOPIC: &str = "_gatehouse_acls";
/// The record header carrying the MAC.
pub const MAC_HEADER: &str = "gh-mac";
/// How often the tail tasks look for records written by other nodes.
const TAIL_INTERVAL: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// `max_wait_ms` of the store's fetches: 1, not 0. Tansu (an independent Kafka-compatible
/// broker `serve --upstream-bootstrap` can front) treats 0 as "no time to look": its fetch
/// loop runs `while elapsed < max_wait` and answers with no topics at all. With records past
/// the cursor any broker answers at once (`min_bytes = 1` is met); when the log is caught up
/// this costs at most 1 ms, far below [`TAIL_INTERVAL`]. (The high watermark is taken from the
/// Fetch answer, not from ListOffsets(latest): Tansu 0.6 answers that with the last batch's
/// base offset + 1, short of the end of a multi-record batch.)
const FETCH_MAX_WAIT_MS: i32 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The broker could not be reached or answered with an error.
    #[error("policy store: broker: {0}")]
    Broker(#[from] ProtocolError),
    /// An internal topic exists with settings that would lose state.
    #[error("policy store: topic {topic} is unsafe: {why}")]
    UnsafeTopic {
        /// Topic name.
        topic: String,
        /// What is wrong.
        why: String,
    },
    /// The change was refused before anything was written.
    #[error("policy store: invalid change: {0}")]
    Invalid(String),
    /// Reading the log made no progress or could not be decoded.
    #[error("policy store: {0}")]
    Log(String),
}

impl From<AclError> for StoreError {
    fn from(e: AclError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum UserKey {
    Scram { user: String, mechanism: Mechanism },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum AclKey {
    Acl { binding: AclBinding },
    Role { binding: RoleBinding },
}

/// The MAC of one record.
pub fn record_mac(mac_key: &[u8; 32], topic: &str, key: &[u8], value: Option<&[u8]>) -> [u8; 32] {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let tlen = len(topic.len());
    let klen = len(key.len());
    let vlen = value.map_or(u32::MAX.to_be_bytes(), |v| len(v.len()));
    hmac_sha256(
        mac_key,
        &[
            &tlen,
            topic.as_bytes(),
            &klen,
            key,
            &vlen,
            value.unwrap_or_default(),
        ],
    )
}

struct Inner {
    client: Client,
    users: UserStore,
    authorizer: Authorizer,
    mac_key: [u8; 32],
    users_cursor: Mutex<i64>,
    acls_cursor: Mutex<i64>,
    rejected: AtomicU64,
}

/// The durable policy state. See the module documentation.
pub struct PolicyStore {
    inner: Arc<Inner>,
    tails: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("rejected", &self.rejected_records())
            .finish_non_exhaustive()
    }
}

impl PolicyStore {
    /// A second handle for writes (the admin API), sharing this store's state and log
    /// position; dropping it does not stop the tail tasks.
    pub fn writer(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            tails: Vec::new(),
        }
    }
}

impl Drop for PolicyStore {
    fn drop(&mut self) {
        for t in &self.tails {
            t.abort();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Log(format!("encoding a record: {e}")))
}

impl PolicyStore {
    /// Creates or checks both topics, replays them into `users` and `authorizer`, and starts
    /// the tail tasks.
    pub async fn open(
        client: Client,
        users: UserStore,
        authorizer: Authorizer,
        mac_key: [u8; 32],
    ) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        let mut starts = [0i64; 2];
        for (i, topic) in [USERS_TOPIC, ACLS_TOPIC].into_iter().enumerate() {
            match client
                .create_topic(topic, 1, &[("cleanup.policy", "compact")])
                .await?
            {
                CreateTopicOutcome::Created => info!(topic, "created internal topic"),
                CreateTopicOutcome::AlreadyExists => check_topic(&client, topic).await?,
            }
            starts[i] = client
                .list_offsets(topic, 0, EARLIEST_OFFSET)
                .await?
                .0
                .max(0);
        }
        let inner = Arc::new(Inner {
            client,
            users,
            authorizer,
            mac_key,
            users_cursor: Mutex::new(starts[0]),
            acls_cursor: Mutex::new(starts[1]),
            rejected: AtomicU64::new(0),
        });
        for topic in [USERS_TOPIC, ACLS_TOPIC] {
            let mut cursor = inner.cursor(topic).lock().await;
            inner.catch_up(topic, &mut cursor, None).await?;
        }
        info!(
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            users = inner.users.describe(None).len(),
            "policy topics replayed"
        );
        let tails = [USERS_TOPIC, ACLS_TOPIC]
            .into_iter()
            .map(|topic| tokio::spawn(tail(inner.clone(), topic)))
            .collect();
        Ok(Self { inner, tails })
    }

    /// Records skipped because their MAC was missing or wrong, or they could not be decoded.
    pub fn rejected_records(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// The user table this store feeds.
    pub fn users(&self) -> &UserStore {
        &self.inner.users
    }

    /// The authorizer this store feeds.
    pub fn authorizer(&self) -> &Authorizer {
        &self.inner.authorizer
    }

    /// Reads both topics up to their high watermarks (read-your-writes across nodes).
    pub async fn sync(&self) -> Result<(), StoreError> {
        for topic in [USERS_TOPIC, ACLS_TOPIC] {
            let mut cursor = self.inner.cursor(topic).lock().await;
            self.inner.catch_up(topic, &mut cursor, None).await?;
        }
        Ok(())
    }

    /// Stores `user`'s credential durably, then applies it.
    pub async fn put_user(
        &self,
        user: &str,
        credential: ScramCredential,
    ) -> Result<(), StoreError> {
        if user.is_empty() {
            return Err(StoreError::Invalid("user name must not be empty".into()));
        }
        credential
            .validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let key = json(&UserKey::Scram {
            user: user.to_string(),
            mechanism: credential.mechanism,
        })?;
        let value = json(&credential)?;
        self.inner
            .write(USERS_TOPIC, vec![(key, Some(value))])
            .await
    }

    /// Deletes `user`'s credential for `mechanism` (all with `None`); whether any existed.
    pub async fn delete_user(
        &self,
        user: &str,
        mechanism: Option<Mechanism>,
    ) -> Result<bool, StoreError> {
        let names = [user.to_string()];
        let existing: Vec<Mechanism> = {
            let mut cursor = self.inner.users_cursor.lock().await;
            self.inner.catch_up(USERS_TOPIC, &mut cursor, None).await?;
            self.inner
                .users
                .describe(Some(&names))
                .into_iter()
                .flat_map(|(_, ms)| ms.into_iter().map(|(m, _)| m))
                .filter(|m| mechanism.is_none_or(|want| want == *m))
                .collect()
        };
        if existing.is_empty() {
            return Ok(false);
        }
        let records = existing
            .into_iter()
            .map(|mechanism| {
                json(&UserKey::Scram {
                    user: user.to_string(),
                    mechanism,
                })
                .map(|k| (k, None))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.write(USERS_TOPIC, records).await?;
        Ok(true)
    }

    /// Adds ACL bindings durably; one result per binding (invalid ones are not written).
    pub async fn add_acls(
        &self,
        bindings: Vec<AclBinding>,
    ) -> Result<Vec<Result<(), AclError>>, StoreError> {
        let mut results = Vec::with_capacity(bindings.len());
        let mut records = Vec::new();
        for b in bindings {
            match self.inner.authorizer.validate_acl(b) {
                Ok(b) => {
                    let key = json(&AclKey::Acl { binding: b })?;
                    records.push((key.clone(), Some(key)));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !records.is_empty() {
            self.inner.write(ACLS_TOPIC, records).await?;
        }
        Ok(results)
    }

    /// Deletes the bindings each filter matches, durably; per filter, what it deleted.
    pub async fn delete_acls(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, StoreError> {
        let matched: Vec<Vec<AclBinding>> = {
            let mut cursor = self.inner.acls_cursor.lock().await;
            self.inner.catch_up(ACLS_TOPIC, &mut cursor, None).await?;
            let mut seen = std::collections::BTreeSet::new();
            filters
                .iter()
                .map(|f| {
                    self.inner
                        .authorizer
                        .describe_acls(f)
                        .into_iter()
                        .filter(|b| seen.insert(b.clone()))
                        .collect()
                })
                .collect()
        };
        let records = matched
            .iter()
            .flatten()
            .map(|b| json(&AclKey::Acl { binding: b.clone() }).map(|k| (k, None)))
            .collect::<Result<Vec<_>, _>>()?;
        if !records.is_empty() {
            self.inner.write(ACLS_TOPIC, records).await?;
        }
        Ok(matched)
    }

    /// Grants a role durably.
    pub async fn bind_role(&self, binding: RoleBinding) -> Result<(), StoreError> {
        self.inner.authorizer.validate_role(&binding)?;
        let key = json(&AclKey::Role { binding })?;
        self.inner
            .write(ACLS_TOPIC, vec![(key.clone(), Some(key))])
            .await
    }

    /// Revokes a role binding durably; whether it existed.
    pub async fn unbind_role(&self, binding: &RoleBinding) -> Result<bool, StoreError> {
        {
            let mut cursor = self.inner.acls_cursor.lock().await;
            self.inner.catch_up(ACLS_TOPIC, &mut cursor, None).await?;
        }
        if !self.inner.authorizer.role_bindings().contains(binding) {
            return Ok(false);
        }
        let key = json(&AclKey::Role {
            binding: binding.clone(),
        })?;
        self.inner.write(ACLS_TOPIC, vec![(key, None)]).await?;
        Ok(true)
    }
}

impl Inner {
    fn cursor(&self, topic: &str) -> &Mutex<i64> {
        if topic == USERS_TOPIC {
            &self.users_cursor
        } else {
            &self.acls_cursor
        }
    }

    /// Produces `records` (acks=all) and applies them by reading the log through them.
    async fn write(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut builder = BatchBuilder::new();
        for (key, value) in &records {
            let mac = record_mac(&self.mac_key, topic, key, value.as_deref());
            let header = RecordHeader::new(
                Bytes::from_static(MAC_HEADER.as_bytes()),
                Some(Bytes::copy_from_slice(&mac)),
            );
            builder
                .push(Some(key), value.as_deref(), &[header], now)
                .map_err(|e| StoreError::Log(e.to_string()))?;
        }
        let batch = builder
            .build()
            .map_err(|e| StoreError::Log(e.to_string()))?;
        let mut cursor = self.cursor(topic).lock().await;
        let base = self.client.produce(topic, 0, batch, -1).await?;
        let count = i64::try_from(records.len()).unwrap_or(i64::MAX);
        self.catch_up(topic, &mut cursor, Some(base.saturating_add(count)))
            .await
    }

    /// Applies records from `*cursor` up to the high watermark (at least up to `target`).
    async fn catch_up(
        &self,
        topic: &str,
        cursor: &mut i64,
        target: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut target = target;
        loop {
            let fetched = self
                .client
                .fetch(topic, 0, *cursor, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
                .await?;
            let goal = *target.get_or_insert(fetched.high_watermark);
            if *cursor >= goal {
                return Ok(());
            }
            let before = *cursor;
            self.apply_batches(topic, cursor, fetched.records)?;
            if *cursor == before {
                if fetched.high_watermark < goal {
                    // Our acknowledged write is not visible yet; wait a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                return Err(StoreError::Log(format!(
                    "no progress reading {topic} at offset {before} (high watermark {})",
                    fetched.high_watermark
                )));
            }
        }
    }

    fn apply_batches(
        &self,
        topic: &str,
        cursor: &mut i64,
        records: Bytes,
    ) -> Result<(), StoreError> {
        for batch in RawBatches::new(records) {
            let batch = batch.map_err(|e| StoreError::Log(e.to_string()))?;
            let header = *batch.header();
            let next = header.last_offset().saturating_add(1);
            if next <= *cursor {
                continue;
            }
            if !header.is_control() {
                for rec in batch
                    .records()
                    .map_err(|e| StoreError::Log(e.to_string()))?
                {
                    let offset = rec.offset(&header);
                    if offset >= *cursor {
                        self.apply_record(topic, offset, &rec);
                    }
                }
            }
            *cursor = next;
        }
        Ok(())
    }

    fn reject(&self, topic: &str, offset: i64, why: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        warn!(topic, offset, "skipped policy record: {why}");
    }

    fn apply_record(&self, topic: &str, offset: i64, rec: &Record) {
        let Some(key) = rec.key.as_deref() else {
            return self.reject(topic, offset, "no key");
        };
        let value = rec.value.as_deref();
        let expected = record_mac(&self.mac_key, topic, key, value);
        let mac_ok = rec
            .headers_named(MAC_HEADER.as_bytes())
            .next()
            .and_then(|h| h.value.as_deref())
            .is_some_and(|m| bool::from(m.ct_eq(&expected)));
        if !mac_ok {
            return self.reject(topic, offset, "missing or invalid MAC");
        }
        let applied = if topic == USERS_TOPIC {
            self.apply_user(key, value)
        } else {
            self.apply_acl(key, value)
        };
        if let Err(why) = applied {
            self.reject(topic, offset, &why);
        }
    }

    fn apply_user(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let UserKey::Scram { user, mechanism } =
            serde_json::from_slice(key).map_err(|e| format!("bad key: {e}"))?;
        match value {
            None => {
                self.users.delete(&user, Some(mechanism));
                Ok(())
            }
            Some(v) => {
                let cred: ScramCredential =
                    serde_json::from_slice(v).map_err(|e| format!("bad value: {e}"))?;
                if cred.mechanism != mechanism {
                    return Err("key and value mechanisms differ".into());
                }
                self.users.upsert(&user, cred).map_err(|e| e.to_string())
            }
        }
    }

    fn apply_acl(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: AclKey = serde_json::from_slice(key).map_err(|e| format!("bad key: {e}"))?;
        match (key, value.is_some()) {
            (AclKey::Acl { binding }, true) => self
                .authorizer
                .create_acls(vec![binding])
                .into_iter()
                .next()
                .unwrap_or(Ok(()))
                .map_err(|e| e.to_string()),
            (AclKey::Acl { binding }, false) => {
                self.authorizer.delete_acls(&[AclFilter::exact(&binding)]);
                Ok(())
            }
            (AclKey::Role { binding }, true) => self
                .authorizer
                .bind_role(binding)
                .map_err(|e| e.to_string()),
            (AclKey::Role { binding }, false) => {
                self.authorizer.unbind_role(&binding);
                Ok(())
            }
        }
    }
}

/// Applies records other nodes write, until the store is dropped.
///
/// Polls every [`TAIL_INTERVAL`] with a 1 ms `max_wait_ms` ([`FETCH_MAX_WAIT_MS`]) rather
/// than long-polling: a Kafka broker answers one connection's requests in order, so a 500 ms
/// long-poll would hold every write and lookup sharing the client's connection behind it.
async fn tail(inner: Arc<Inner>, topic: &'static str) {
    loop {
        let from = *inner.cursor(topic).lock().await;
        let fetched = match inner
            .client
            .fetch(topic, 0, from, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                warn!(topic, error = %e, "tailing the policy topic failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if fetched.high_watermark <= from {
            tokio::time::sleep(TAIL_INTERVAL).await;
            continue;
        }
        let mut cursor = inner.cursor(topic).lock().await;
        if *cursor != from {
            continue; // a write moved on meanwhile; fetch again from there
        }
        if let Err(e) = inner.apply_batches(topic, &mut cursor, fetched.records) {
            warn!(topic, error = %e, "applying tailed policy records failed");
            drop(cursor);
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            debug!(topic, offset = *cursor, "policy tail");
        }
    }
}

async fn check_topic(client: &Client, topic: &str) -> Result<(), StoreError> {
    let unsafe_topic = |why: String| StoreError::UnsafeTopic {
        topic: topic.to_string(),
        why,
    };
    let md = client.metadata(Some(&[topic])).await?;
    let Some(t) = md.topic(topic) else {
        return Err(unsafe_topic("not in the broker's metadata".into()));
    };
    if t.partitions.len() != 1 {
        return Err(unsafe_topic(format!(
            "it has {} partitions; it needs exactly 1 (record order is the policy history)",
            t.partitions.len()
        )));
    }
    let conn = client.any_broker().await?;
    let version = conn.version_for::<DescribeConfigsRequest>()?;
    // All of the topic's configs (`configuration_keys` null), then pick cleanup.policy: Tansu
    // 0.6 cannot decode a DescribeConfigs request that names keys (any version; it drops the
    // connection with "StringWithoutLength"), while every broker answers the null form.
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
            "cleanup.policy is '{policy}'; it must be 'compact' (retention would delete policy)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Operation, PatternType, Permission, ResourceType};
    use crate::principal::Principal;
    use gatehouse_broker::{Broker, BrokerConfig};
    use gatehouse_protocol::client::ClientConfig;
    use std::net::{IpAddr, Ipv4Addr};

    const KEY: [u8; 32] = [7; 32];
    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    async fn broker(dir: &std::path::Path) -> (Broker, Client) {
        let broker = Broker::start(BrokerConfig {
            data_dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..BrokerConfig::default()
        })
        .await
        .expect("broker");
        let client = Client::connect(ClientConfig::new([broker.local_addr().to_string()]))
            .await
            .expect("client");
        (broker, client)
    }

    async fn open(client: &Client, key: [u8; 32]) -> PolicyStore {
        PolicyStore::open(
            client.clone(),
            UserStore::new(),
            Authorizer::new(vec![]).expect("authorizer"),
            key,
        )
        .await
        .expect("open")
    }

    fn binding(user: &str, topic: &str) -> AclBinding {
        AclBinding {
            principal: format!("User:{user}"),
            host: "*".into(),
            resource_type: ResourceType::Topic,
            resource_name: topic.into(),
            pattern_type: PatternType::Literal,
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    fn role() -> RoleBinding {
        RoleBinding {
            principal: "User:carol".into(),
            role: "developer-read".into(),
            resource_type: ResourceType::Topic,
            resource_name: "orders".into(),
            pattern_type: PatternType::Prefixed,
        }
    }

    fn can_read(store: &PolicyStore, user: &str, topic: &str) -> bool {
        store
            .authorizer()
            .authorize(
                &Principal::user(user),
                HOST,
                ResourceType::Topic,
                topic,
                Operation::Read,
            )
            .allowed
    }

    #[tokio::test]
    async fn writes_are_replayed_after_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let (broker, client) = broker(dir.path()).await;
        let store = open(&client, KEY).await;
        let cred = ScramCredential::from_password(Mechanism::ScramSha256, "pw", 4096).expect("c");
        store.put_user("alice", cred.clone()).await.expect("put");
        let cred512 =
            ScramCredential::from_password(Mechanism::ScramSha512, "pw", 4096).expect("c");
        store.put_user("alice", cred512).await.expect("put");
        store.put_user("bob", cred.clone()).await.expect("put");
        assert!(store.delete_user("bob", None).await.expect("delete"));
        assert!(!store.delete_user("bob", None).await.expect("delete"));
        assert!(
            store
                .delete_user("alice", Some(Mechanism::ScramSha512))
                .await
                .expect("delete")
        );
        let r = store
            .add_acls(vec![
                binding("alice", "orders"),
                binding("alice", "gone"),
                AclBinding {
                    host: "nope".into(),
                    ..binding("x", "y")
                },
            ])
            .await
            .expect("acls");
        assert!(r[0].is_ok() && r[1].is_ok() && r[2].is_err());
        let deleted = store
            .delete_acls(&[AclFilter::exact(&binding("alice", "gone"))])
            .await
            .expect("delete acls");
        assert_eq!(deleted, vec![vec![binding("alice", "gone")]]);
        store.bind_role(role()).await.expect("bind");
        let mut r2 = role();
        r2.resource_name = "other".into();
        store.bind_role(r2.clone()).await.expect("bind");
        assert!(store.unbind_role(&r2).await.expect("unbind"));
        assert!(!store.unbind_role(&r2).await.expect("unbind"));
        // Applied locally once acknowledged.
        assert_eq!(
            store.users().get("alice", Mechanism::ScramSha256),
            Some(cred.clone())
        );
        assert!(can_read(&store, "alice", "orders"));
        assert!(can_read(&store, "carol", "orders-eu"));
        drop(store);

        let again = open(&client, KEY).await;
        assert_eq!(
            again.users().get("alice", Mechanism::ScramSha256),
            Some(cred)
        );
        assert_eq!(again.users().get("alice", Mechanism::ScramSha512), None);
        assert!(!again.users().exists("bob"));
        assert_eq!(
            again.authorizer().describe_acls(&AclFilter::any()),
            vec![binding("alice", "orders")]
        );
        assert_eq!(again.authorizer().role_bindings(), vec![role()]);
        assert!(can_read(&again, "carol", "orders-eu"));
        assert_eq!(again.rejected_records(), 0);
        drop(again);
        broker.shutdown().await;
    }

    #[tokio::test]
    async fn records_with_a_bad_mac_are_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let (broker, client) = broker(dir.path()).await;
        let store = open(&client, KEY).await;
        // Forge records around the store: a wrong key, and no MAC header at all.
        let key = json(&AclKey::Acl {
            binding: binding("mallory", "orders"),
        })
        .expect("json");
        let wrong = record_mac(&[9; 32], ACLS_TOPIC, &key, Some(&key));
        let mut b = BatchBuilder::new();
        b.push(
            Some(&key),
            Some(&key),
            &[RecordHeader::new(
                Bytes::from_static(MAC_HEADER.as_bytes()),
                Some(Bytes::copy_from_slice(&wrong)),
            )],
            now_ms(),
        )
        .expect("push");
        b.push(Some(&key), Some(&key), &[], now_ms()).expect("push");
        client
            .produce(ACLS_TOPIC, 0, b.build().expect("build"), -1)
            .await
            .expect("produce");
        store.sync().await.expect("sync");
        assert!(!can_read(&store, "mallory", "orders"));
        assert_eq!(store.rejected_records(), 2);
        drop(store);
        // A node with another MAC key rejects our records too.
        let honest = open(&client, KEY).await;
        honest
            .add_acls(vec![binding("alice", "t")])
            .await
            .expect("add");
        let other = open(&client, [1; 32]).await;
        assert!(!can_read(&other, "alice", "t"));
        assert_eq!(other.rejected_records(), 3);
        broker.shutdown().await;
    }

    #[tokio::test]
    async fn two_stores_converge() {
        let dir = tempfile::tempdir().expect("tmp");
        let (broker, client) = broker(dir.path()).await;
        let client_b = Client::connect(client.config().clone())
            .await
            .expect("client b");
        let a = open(&client, KEY).await;
        let b = open(&client_b, KEY).await;
        a.add_acls(vec![binding("alice", "orders")])
            .await
            .expect("add");
        let cred = ScramCredential::from_password(Mechanism::ScramSha512, "pw", 4096).expect("c");
        b.put_user("zed", cred.clone()).await.expect("put");
        let mut rx = a.users().subscribe();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if can_read(&b, "alice", "orders")
                && a.users().get("zed", Mechanism::ScramSha512).as_ref() == Some(&cred)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stores did not converge"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
        // Deletions travel too.
        b.delete_acls(&[AclFilter::any()]).await.expect("delete");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while can_read(&a, "alice", "orders") {
            assert!(
                std::time::Instant::now() < deadline,
                "deletion did not converge"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(a);
        drop(b);
        broker.shutdown().await;
    }
}
