//! Governance topic configs: the per-topic policy (`confluent.*`, `gatehouse.*`) that an
//! upstream Kafka would not accept, stored by the gateway in `_gatehouse_topics`.
//!
//! Clients set them like any topic config, with any Kafka admin client (CreateTopics,
//! AlterConfigs, IncrementalAlterConfigs) and read them back with DescribeConfigs; the gateway
//! takes them out of the request before forwarding the rest, writes them (MACed, acks=all) to
//! `_gatehouse_topics`, and merges them into DescribeConfigs answers. Deleting a topic
//! tombstones its entry. A topic being created is *pending* until its governance state is
//! stored: produce to it is refused with a retriable error, so no record slips in before its
//! policy exists.
//!
//! Keys (Confluent Server's names where they exist):
//!
//! | key | values | meaning |
//! |---|---|---|
//! | `confluent.value.schema.validation`, `confluent.key.schema.validation` | `true`/`false` | schema-id validation (Confluent Server semantics) |
//! | `confluent.value.subject.name.strategy`, `confluent.key.subject.name.strategy` | `TopicNameStrategy`, `RecordNameStrategy`, `TopicRecordNameStrategy` (short or Java class names) | which subject the id must be registered under |
//! | `gatehouse.value.schema.validation`, `gatehouse.key.schema.validation` | `none`, `schema-id`, `full` | `full` also decodes the payload against the schema |
//! | `gatehouse.encryption` | `true`/`false` | envelope encryption of record values at rest |
//! | `gatehouse.encryption.readers` | `all`, `role` | `role`: only `plaintext-reader` principals get plaintext |
//! | `gatehouse.encryption.key` | `true`/`false` | also encrypt record keys (never on compacted topics: a random IV makes every key unique) |
//! | `gatehouse.encryption.headers` | comma-separated header names | also encrypt the values of these headers |
//! | `gatehouse.pan.guard` | `true`/`false` | reject plaintext card numbers (PCI DSS 3.5) |
//! | `gatehouse.pan.guard.allowlist` | comma-separated digit strings | numbers that look like PANs but are not (e.g. order ids) |
//! | `gatehouse.pan.guard.tags` | comma-separated tag names | with a known schema, only fields carrying one of these tags are checked (decoded form) |
//! | `gatehouse.pan.guard.allowlist.fields` | comma-separated field paths (`*`/`**` wildcards) | decoded fields never checked (ids that look like PANs) |
//! | `gatehouse.dead.letter.topic` | a topic name (not `_schemas`, not `_gatehouse*`) | refused records (never PAN refusals) are copied there with their error |
//! | `gatehouse.audit.data.access` | `none`, `denied`, `all` | `all`: every granted Produce and Fetch of the topic is audited (PCI DSS 10.2.1.1); denials are always audited, so `none` and `denied` behave alike |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_policy::store::record_mac;
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::client::Client;
use gatehouse_protocol::records::{BatchBuilder, RawBatches, Record, RecordHeader};
use gatehouse_registry::validate::{SubjectNameStrategy, ValidationMode, ValidationPolicy};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The internal topic holding governance configs.
pub const TOPICS_TOPIC: &str = "_gatehouse_topics";
/// Header carrying each record's MAC.
const MAC_HEADER: &str = "gh-mac";
const TAIL_INTERVAL: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 8 * 1024 * 1024;

/// Why a governance change could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The upstream refused or failed.
    #[error("_gatehouse_topics: {0}")]
    Log(String),
}

impl From<ProtocolError> for GovernanceError {
    fn from(e: ProtocolError) -> Self {
        Self::Log(e.to_string())
    }
}

/// Whether `name` is a governance config key (handled by the gateway, never forwarded).
pub fn is_governance_key(name: &str) -> bool {
    name.starts_with("confluent.") || name.starts_with("gatehouse.")
}

fn strategy(value: &str) -> Option<SubjectNameStrategy> {
    let short = value.rsplit('.').next().unwrap_or(value);
    match short {
        "TopicNameStrategy" => Some(SubjectNameStrategy::TopicName),
        "RecordNameStrategy" => Some(SubjectNameStrategy::RecordName),
        "TopicRecordNameStrategy" => Some(SubjectNameStrategy::TopicRecordName),
        _ => None,
    }
}

fn list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
}

fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Checks one governance key and value; the error is the message the client gets with
/// INVALID_CONFIG.
pub fn check(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Err(format!("{name} needs a value"));
    };
    let ok = match name {
        "confluent.value.schema.validation"
        | "confluent.key.schema.validation"
        | "gatehouse.encryption"
        | "gatehouse.encryption.key"
        | "gatehouse.pan.guard" => boolean(value).is_some(),
        "gatehouse.encryption.headers" => value.split(',').map(str::trim).all(|h| {
            !h.is_empty()
                && !h.starts_with("gatehouse.")
                && h.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        }),
        "confluent.value.subject.name.strategy" | "confluent.key.subject.name.strategy" => {
            strategy(value).is_some()
        }
        "gatehouse.value.schema.validation" | "gatehouse.key.schema.validation" => {
            matches!(value, "none" | "schema-id" | "full")
        }
        "gatehouse.encryption.readers" => matches!(value, "all" | "role"),
        "gatehouse.audit.data.access" => matches!(value, "none" | "denied" | "all"),
        "gatehouse.pan.guard.allowlist" => value
            .split(',')
            .map(str::trim)
            .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        "gatehouse.pan.guard.tags" => value.split(',').map(str::trim).all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        }),
        "gatehouse.pan.guard.allowlist.fields" => value.split(',').map(str::trim).all(|t| {
            !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'_' | b'-' | b'.' | b'*' | b'?' | b'$')
                })
        }),
        "gatehouse.dead.letter.topic" => return check_dead_letter_topic(value),
        _ => {
            return Err(format!(
                "unknown governance config {name}; known: {}",
                KNOWN.join(", ")
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value {value:?} for {name}"))
    }
}

/// A dead-letter topic must be a legal Kafka topic name and not an internal topic.
pub fn check_dead_letter_topic(value: &str) -> Result<(), String> {
    let name = value.trim();
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "invalid value {value:?} for gatehouse.dead.letter.topic: not a legal topic name"
        ));
    }
    if name == "_schemas" || name.starts_with("_gatehouse") || name.starts_with("__") {
        return Err(format!(
            "invalid value {value:?} for gatehouse.dead.letter.topic: internal topics cannot be \
             dead-letter topics"
        ));
    }
    Ok(())
}

/// Every governance key the gateway understands.
pub const KNOWN: &[&str] = &[
    "confluent.value.schema.validation",
    "confluent.key.schema.validation",
    "confluent.value.subject.name.strategy",
    "confluent.key.subject.name.strategy",
    "gatehouse.value.schema.validation",
    "gatehouse.key.schema.validation",
    "gatehouse.encryption",
    "gatehouse.encryption.readers",
    "gatehouse.encryption.key",
    "gatehouse.encryption.headers",
    "gatehouse.pan.guard",
    "gatehouse.pan.guard.allowlist",
    "gatehouse.pan.guard.tags",
    "gatehouse.pan.guard.allowlist.fields",
    "gatehouse.dead.letter.topic",
    "gatehouse.audit.data.access",
];

/// The policy of one topic, derived from its governance configs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPolicy {
    /// How record values are validated (`None`: not at all).
    pub value: Option<ValidationPolicy>,
    /// How record keys are validated.
    pub key: Option<ValidationPolicy>,
    /// Record values are encrypted at rest.
    pub encryption: bool,
    /// Only `plaintext-reader` principals get plaintext.
    pub readers_role: bool,
    /// Record keys are encrypted too (`gatehouse.encryption.key`).
    pub encrypt_key: bool,
    /// Values of these headers are encrypted too (`gatehouse.encryption.headers`).
    pub encrypt_headers: Vec<String>,
    /// Plaintext card numbers are refused.
    pub pan_guard: bool,
    /// Numbers the PAN guard lets through.
    pub pan_allowlist: std::collections::HashSet<String>,
    /// With a known schema, only decoded fields with one of these tags are checked (`None`:
    /// every string and integer field).
    pub pan_tags: Option<std::collections::HashSet<String>>,
    /// Decoded field paths (wildcards allowed) the PAN guard never checks.
    pub pan_field_allowlist: Vec<String>,
    /// Where refused records are copied (`gatehouse.dead.letter.topic`).
    pub dead_letter_topic: Option<String>,
    /// Every granted data access is audited (`gatehouse.audit.data.access=all`).
    pub audit_data_access: bool,
}

impl TopicPolicy {
    /// Derives the policy from a topic's governance configs.
    pub fn from_configs(configs: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| configs.get(k).map(String::as_str);
        let side = |side: &str| -> Option<ValidationPolicy> {
            let strategy = get(&format!("confluent.{side}.subject.name.strategy"))
                .and_then(strategy)
                .unwrap_or_default();
            let mode = match get(&format!("gatehouse.{side}.schema.validation")) {
                Some("full") => Some(ValidationMode::Full),
                Some("schema-id") => Some(ValidationMode::SchemaId),
                Some(_) => None,
                None => get(&format!("confluent.{side}.schema.validation"))
                    .and_then(boolean)
                    .and_then(|on| on.then_some(ValidationMode::SchemaId)),
            };
            mode.map(|mode| ValidationPolicy { mode, strategy })
        };
        Self {
            value: side("value"),
            key: side("key"),
            encryption: get("gatehouse.encryption").and_then(boolean) == Some(true),
            readers_role: get("gatehouse.encryption.readers") == Some("role"),
            encrypt_key: get("gatehouse.encryption.key").and_then(boolean) == Some(true),
            encrypt_headers: get("gatehouse.encryption.headers")
                .map(|v| list(v).collect())
                .unwrap_or_default(),
            pan_guard: get("gatehouse.pan.guard").and_then(boolean) == Some(true),
            pan_allowlist: get("gatehouse.pan.guard.allowlist")
                .map(|v| {
                    v.split(',')
                        .map(|d| d.trim().to_string())
                        .filter(|d| !d.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            pan_tags: get("gatehouse.pan.guard.tags").map(|v| list(v).collect()),
            pan_field_allowlist: get("gatehouse.pan.guard.allowlist.fields")
                .map(|v| list(v).collect())
                .unwrap_or_default(),
            dead_letter_topic: get("gatehouse.dead.letter.topic")
                .map(str::trim)
                .filter(|t| check_dead_letter_topic(t).is_ok())
                .map(str::to_string),
            audit_data_access: get("gatehouse.audit.data.access") == Some("all"),
        }
    }

    /// Whether produce requests to the topic need their records looked at.
    pub fn inspects_records(&self) -> bool {
        self.value.is_some() || self.key.is_some() || self.pan_guard || self.encryption
    }
}

#[derive(Default)]
struct State {
    configs: HashMap<String, BTreeMap<String, String>>,
    policies: HashMap<String, Arc<TopicPolicy>>,
    pending: HashSet<String>,
}

struct Inner {
    state: RwLock<State>,
    log: Option<LogState>,
}

struct LogState {
    client: Client,
    mac_key: [u8; 32],
    cursor: Mutex<i64>,
}

/// The governance configs of every topic.
#[derive(Clone)]
pub struct Governance {
    inner: Arc<Inner>,
    tail: Option<Arc<JoinHandle<()>>>,
}

impl Governance {
    /// Configs kept in memory only (tests, and the gateway without a durable store).
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                log: None,
            }),
            tail: None,
        }
    }

    /// Creates or checks `_gatehouse_topics` (one partition, compacted), replays it, and
    /// follows it for changes made by other nodes.
    pub async fn open(client: Client, mac_key: [u8; 32]) -> Result<Self, GovernanceError> {
        client
            .create_topic(TOPICS_TOPIC, 1, &[("cleanup.policy", "compact")])
            .await?;
        let inner = Arc::new(Inner {
            state: RwLock::new(State::default()),
            log: Some(LogState {
                client,
                mac_key,
                cursor: Mutex::new(0),
            }),
        });
        inner.catch_up(None).await?;
        let topics = inner.read().configs.len();
        info!(topics, "Governance topic configs replayed.");
        let tail_inner = inner.clone();
        let tail = tokio::spawn(async move {
            loop {
                tokio::time::sleep(TAIL_INTERVAL).await;
                if let Err(e) = tail_inner.catch_up(None).await {
                    warn!(error = %e, "Following _gatehouse_topics failed; retrying.");
                }
            }
        });
        Ok(Self {
            inner,
            tail: Some(Arc::new(tail)),
        })
    }

    /// The policy of `topic`, if it has governance configs.
    pub fn policy(&self, topic: &str) -> Option<Arc<TopicPolicy>> {
        self.inner.read().policies.get(topic).cloned()
    }

    /// Whether any topic has encryption on (fetch responses are only inspected then).
    pub fn any_encryption(&self) -> bool {
        self.inner.read().policies.values().any(|p| p.encryption)
    }

    /// Whether any topic audits every data access (fetch responses are only counted then).
    pub fn any_data_access_audit(&self) -> bool {
        self.inner
            .read()
            .policies
            .values()
            .any(|p| p.audit_data_access)
    }

    /// Whether `topic` audits every data access.
    pub fn audits_data_access(&self, topic: &str) -> bool {
        self.inner
            .read()
            .policies
            .get(topic)
            .is_some_and(|p| p.audit_data_access)
    }

    /// Whether `topic` is being created and its governance state is not stored yet.
    pub fn is_pending(&self, topic: &str) -> bool {
        self.inner.read().pending.contains(topic)
    }

    /// Marks topics as being created (produce to them is refused until [`Self::settle`]).
    pub fn mark_pending(&self, topics: &[String]) {
        let mut s = self.inner.write();
        for t in topics {
            s.pending.insert(t.clone());
        }
    }

    /// Ends the pending state of topics.
    pub fn settle(&self, topics: &[String]) {
        let mut s = self.inner.write();
        for t in topics {
            s.pending.remove(t);
        }
    }

    /// The governance configs of `topic`.
    pub fn configs(&self, topic: &str) -> BTreeMap<String, String> {
        self.inner
            .read()
            .configs
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the governance configs of `topic` (an empty map deletes them), durably.
    pub async fn set(
        &self,
        topic: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), GovernanceError> {
        let value = if configs.is_empty() {
            None
        } else {
            Some(
                serde_json::to_vec(&configs)
                    .map_err(|e| GovernanceError::Log(format!("encoding: {e}")))?,
            )
        };
        match &self.inner.log {
            None => {
                self.inner.apply(topic, value.as_deref());
                Ok(())
            }
            Some(log) => {
                let mac = record_mac(
                    &log.mac_key,
                    TOPICS_TOPIC,
                    topic.as_bytes(),
                    value.as_deref(),
                );
                let header = RecordHeader::new(
                    Bytes::from_static(MAC_HEADER.as_bytes()),
                    Some(Bytes::copy_from_slice(&mac)),
                );
                let mut builder = BatchBuilder::new();
                builder
                    .push(
                        Some(topic.as_bytes()),
                        value.as_deref(),
                        &[header],
                        now_ms(),
                    )
                    .map_err(|e| GovernanceError::Log(e.to_string()))?;
                let batch = builder
                    .build()
                    .map_err(|e| GovernanceError::Log(e.to_string()))?;
                let base = log.client.produce(TOPICS_TOPIC, 0, batch, -1).await?;
                self.inner.catch_up(Some(base.saturating_add(1))).await
            }
        }
    }

    /// Removes the governance configs of a deleted topic (a tombstone).
    pub async fn delete(&self, topic: &str) -> Result<(), GovernanceError> {
        if self.inner.read().configs.contains_key(topic) {
            self.set(topic, BTreeMap::new()).await
        } else {
            Ok(())
        }
    }
}

impl Drop for Governance {
    fn drop(&mut self) {
        if let Some(t) = self.tail.take()
            && Arc::strong_count(&t) == 1
        {
            t.abort();
        }
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, topic: &str, value: Option<&[u8]>) {
        let mut s = self.write();
        match value.and_then(|v| serde_json::from_slice::<BTreeMap<String, String>>(v).ok()) {
            Some(configs) if !configs.is_empty() => {
                s.policies.insert(
                    topic.to_string(),
                    Arc::new(TopicPolicy::from_configs(&configs)),
                );
                s.configs.insert(topic.to_string(), configs);
            }
            _ => {
                s.policies.remove(topic);
                s.configs.remove(topic);
            }
        }
    }

    async fn catch_up(&self, target: Option<i64>) -> Result<(), GovernanceError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let mut cursor = log.cursor.lock().await;
        let mut target = target;
        loop {
            let fetched = log
                .client
                // max_wait 1, not 0: some brokers (Tansu) answer a 0 ms fetch with no data.
                .fetch(TOPICS_TOPIC, 0, *cursor, FETCH_MAX_BYTES, 1)
                .await?;
            let goal = *target.get_or_insert(fetched.high_watermark);
            if *cursor >= goal {
                return Ok(());
            }
            let before = *cursor;
            for batch in RawBatches::new(fetched.records) {
                let batch = batch.map_err(|e| GovernanceError::Log(e.to_string()))?;
                let header = *batch.header();
                let next = header.last_offset().saturating_add(1);
                if next <= *cursor {
                    continue;
                }
                if !header.is_control() {
                    for rec in batch
                        .records()
                        .map_err(|e| GovernanceError::Log(e.to_string()))?
                    {
                        if rec.offset(&header) >= *cursor {
                            self.apply_record(log, &rec);
                        }
                    }
                }
                *cursor = next;
            }
            if *cursor == before {
                if fetched.high_watermark < goal {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                return Err(GovernanceError::Log(format!(
                    "no progress at offset {before} (high watermark {})",
                    fetched.high_watermark
                )));
            }
        }
    }

    fn apply_record(&self, log: &LogState, rec: &Record) {
        let Some(key) = rec.key.as_deref() else {
            return;
        };
        let value = rec.value.as_deref();
        let expected = record_mac(&log.mac_key, TOPICS_TOPIC, key, value);
        let ok = rec
            .headers_named(MAC_HEADER.as_bytes())
            .next()
            .and_then(|h| h.value.as_deref())
            .is_some_and(|m| constant_time_eq(m, &expected));
        if !ok {
            warn!(
                "A _gatehouse_topics record without a valid MAC was ignored (written around the gateway?)."
            );
            return;
        }
        let Ok(topic) = std::str::from_utf8(key) else {
            return;
        };
        self.apply(topic, value);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_checked() {
        assert!(check("confluent.value.schema.validation", Some("true")).is_ok());
        assert!(check("confluent.value.schema.validation", Some("yes")).is_err());
        assert!(check("gatehouse.value.schema.validation", Some("full")).is_ok());
        assert!(
            check(
                "confluent.value.subject.name.strategy",
                Some("io.confluent.kafka.serializers.subject.RecordNameStrategy")
            )
            .is_ok()
        );
        let e = check("gatehouse.nonsense", Some("1")).unwrap_err();
        assert!(e.contains("gatehouse.encryption"), "{e}");
        assert!(is_governance_key("confluent.key.schema.validation"));
        assert!(!is_governance_key("retention.ms"));
    }

    #[test]
    fn policy_follows_confluent_and_gatehouse_keys() {
        let mut c = BTreeMap::new();
        c.insert("confluent.value.schema.validation".into(), "true".into());
        let p = TopicPolicy::from_configs(&c);
        assert_eq!(p.value.map(|v| v.mode), Some(ValidationMode::SchemaId));
        assert!(p.key.is_none());
        c.insert("gatehouse.value.schema.validation".into(), "full".into());
        c.insert(
            "confluent.value.subject.name.strategy".into(),
            "TopicRecordNameStrategy".into(),
        );
        let p = TopicPolicy::from_configs(&c);
        assert_eq!(
            p.value,
            Some(ValidationPolicy {
                mode: ValidationMode::Full,
                strategy: SubjectNameStrategy::TopicRecordName
            })
        );
        c.insert("gatehouse.value.schema.validation".into(), "none".into());
        assert!(TopicPolicy::from_configs(&c).value.is_none());
    }

    #[test]
    fn pan_field_and_dead_letter_keys() {
        assert!(check("gatehouse.pan.guard.tags", Some("PAN, PCI")).is_ok());
        assert!(check("gatehouse.pan.guard.tags", Some("PAN,,x")).is_err());
        assert!(
            check(
                "gatehouse.pan.guard.allowlist.fields",
                Some("order_id,**.ref")
            )
            .is_ok()
        );
        assert!(check("gatehouse.pan.guard.allowlist.fields", Some("a b")).is_err());
        assert!(check("gatehouse.dead.letter.topic", Some("orders-dlq")).is_ok());
        for bad in ["_schemas", "_gatehouse_topics", "_gatehouse-dlq", "a b", ""] {
            assert!(
                check("gatehouse.dead.letter.topic", Some(bad)).is_err(),
                "{bad}"
            );
        }
        let mut c = BTreeMap::new();
        c.insert("gatehouse.pan.guard.tags".into(), "PAN, PCI".into());
        c.insert(
            "gatehouse.pan.guard.allowlist.fields".into(),
            "order_id".into(),
        );
        c.insert("gatehouse.dead.letter.topic".into(), "orders-dlq".into());
        let p = TopicPolicy::from_configs(&c);
        assert_eq!(
            p.pan_tags,
            Some(["PAN".to_string(), "PCI".to_string()].into_iter().collect())
        );
        assert_eq!(p.pan_field_allowlist, vec!["order_id".to_string()]);
        assert_eq!(p.dead_letter_topic.as_deref(), Some("orders-dlq"));
    }
}
