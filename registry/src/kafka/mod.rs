//! [`KafkaStore`]: the [`SchemaStore`] whose durable state is the compacted `_schemas` topic.
//!
//! The applied state is a [`MemoryStore`] (the registry's state machine). At open the topic is
//! created (1 partition, `cleanup.policy=compact`) or checked (more than one partition or no
//! compaction is refused), then every record up to the high watermark is replayed into it.
//!
//! Writes are serialised within the node (one writer): the log is read up to its high
//! watermark, the write is validated against that state ([`MemoryStore`] plans the
//! [`crate::api::Change`]s), its records are produced as one batch with `acks=-1`, and only then applied
//! locally and answered, so an acknowledged write is in the topic. Ids come from the
//! `ID_HIGH_WATER` record written with every new id, which is never tombstoned: a hard delete
//! never frees an id for reuse. A lookup that misses (unknown id, subject, version, config or
//! mode) reads the log to its high watermark before answering "not found".
//!
//! With several registry nodes the writer is the leader elected through a Kafka group
//! ([`election`]); the others forward writes to it ([`forward`]). With an [`Election`]
//! attached ([`KafkaStore::set_election`]) a write is produced only if
//! [`Election::permit`] allows it right before the produce, and its records carry the
//! generation in a [`GENERATION_HEADER`] header (Confluent readers ignore headers). Records of
//! another writer found between our cursor and our batch are logged as a split-brain warning
//! (see `docs/adr/0006-registry-single-writer.md`).

pub mod election;
pub mod forward;
pub mod record;

use std::sync::{Arc, OnceLock};

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::client::{Client, CreateTopicOutcome, EARLIEST_OFFSET};
use gatehouse_protocol::kafka_protocol::messages::DescribeConfigsRequest;
use gatehouse_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::records::{BatchBuilder, RawBatches, RecordHeader};
use tokio::sync::Mutex;
use tracing::{debug, error, info, warn};

pub use election::{Election, ElectionConfig, ElectionState, Leadership, NotLeader};

use crate::api::{
    CompatibilityResult, ConfigRecord, Listing, MemoryStore, Mode, RegistryError, SchemaById,
    SchemaRequest, SchemaStore, StoreResult, SubjectVersion, SubjectVersionRef, VersionSpec,
    WriteOp, WriteOut,
};
use crate::compat::CompatibilityLevel;

/// Record header carrying the writer's group generation (decimal).
pub const GENERATION_HEADER: &str = "gatehouse.registry.generation";

/// The default topic name (Confluent's `kafkastore.topic`).
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// Bytes asked for per fetch while replaying.
const FETCH_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// `max_wait_ms` of the replay fetches: 1, not 0. Tansu (an independent Kafka-compatible
/// broker `serve --upstream-bootstrap` can front) treats 0 as "no time to look": its fetch
/// loop runs `while elapsed < max_wait` and answers with no topics at all. With records past
/// the cursor any broker answers at once (`min_bytes = 1` is met); when the log is caught up
/// this costs at most 1 ms. (The high watermark is taken from the Fetch answer, not from
/// ListOffsets(latest): Tansu 0.6 answers that with the last batch's base offset + 1, short
/// of the end of a multi-record batch.)
const FETCH_MAX_WAIT_MS: i32 = 1;

/// Why [`KafkaStore::open`] refused to start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The broker could not be reached or answered with an error.
    #[error("schema store: broker: {0}")]
    Broker(#[from] ProtocolError),
    /// The topic exists with settings that would lose or reorder registry state.
    #[error("schema store: topic {topic} is unsafe: {why}")]
    UnsafeTopic {
        /// Topic name.
        topic: String,
        /// What is wrong.
        why: String,
    },
    /// Replaying the topic failed.
    #[error("schema store: replay of {topic}: {why}")]
    Replay {
        /// Topic name.
        topic: String,
        /// What failed.
        why: String,
    },
}

/// The `_schemas`-backed store. See the module documentation.
pub struct KafkaStore {
    client: Client,
    topic: String,
    state: MemoryStore,
    /// The next offset to apply; held by writes and catch-ups (serialises them).
    cursor: Mutex<i64>,
    /// The writer election, when several nodes may run.
    election: OnceLock<Arc<Election>>,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(e.to_string())
}

fn is_miss(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::SubjectNotFound(_)
            | RegistryError::VersionNotFound(_)
            | RegistryError::SchemaNotFound(_)
            | RegistryError::SubjectCompatibilityNotConfigured(_)
            | RegistryError::SubjectModeNotConfigured(_)
    )
}

/// Answers from the local state; on a miss, reads the log to its high watermark and asks
/// again.
macro_rules! read_through {
    ($self:ident, $call:expr) => {{
        match $call {
            Err(e) if is_miss(&e) => {
                $self.catch_up().await?;
                $call
            }
            other => other,
        }
    }};
}

impl KafkaStore {
    /// Creates or checks `topic`, replays it, and returns the store.
    pub async fn open(client: Client, topic: &str) -> Result<Self, OpenError> {
        let started = std::time::Instant::now();
        match client
            .create_topic(topic, 1, &[("cleanup.policy", "compact")])
            .await?
        {
            CreateTopicOutcome::Created => info!(topic, "created the schema topic"),
            CreateTopicOutcome::AlreadyExists => check_topic(&client, topic).await?,
        }
        let (start, _) = client.list_offsets(topic, 0, EARLIEST_OFFSET).await?;
        let store = KafkaStore {
            client,
            topic: topic.to_string(),
            state: MemoryStore::new(),
            cursor: Mutex::new(start.max(0)),
            election: OnceLock::new(),
        };
        {
            let mut cursor = store.cursor.lock().await;
            store
                .catch_up_locked(&mut cursor)
                .await
                .map_err(|e| OpenError::Replay {
                    topic: topic.to_string(),
                    why: e.to_string(),
                })?;
            info!(
                topic,
                offset = *cursor,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "schema topic replayed"
            );
        }
        Ok(store)
    }

    /// Writes from now on need [`Election::permit`] (set once; later calls are ignored).
    pub fn set_election(&self, election: Arc<Election>) {
        if self.election.set(election).is_err() {
            warn!("the schema store already has an election; ignored");
        }
    }

    /// The election, if one is attached.
    pub fn election(&self) -> Option<&Arc<Election>> {
        self.election.get()
    }

    /// The broker client (shared with the election).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The topic this store reads and writes.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next offset to be applied (everything before it is in the local state).
    pub async fn applied_offset(&self) -> i64 {
        *self.cursor.lock().await
    }

    /// Reads the log up to its current high watermark into the local state.
    pub async fn catch_up(&self) -> StoreResult<()> {
        let mut cursor = self.cursor.lock().await;
        self.catch_up_locked(&mut cursor).await
    }

    async fn catch_up_locked(&self, cursor: &mut i64) -> StoreResult<()> {
        let mut target: Option<i64> = None;
        loop {
            let fetched = self
                .client
                .fetch(&self.topic, 0, *cursor, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
                .await
                .map_err(store_err)?;
            let target = *target.get_or_insert(fetched.high_watermark);
            if *cursor >= target {
                return Ok(());
            }
            let before = *cursor;
            for batch in RawBatches::new(fetched.records) {
                let batch = batch.map_err(store_err)?;
                let header = *batch.header();
                let next = header.last_offset().saturating_add(1);
                if next <= *cursor {
                    continue;
                }
                if !header.is_control() {
                    for rec in batch.records().map_err(store_err)? {
                        let offset = rec.offset(&header);
                        if offset < *cursor {
                            continue;
                        }
                        let Some(key) = rec.key.as_deref() else {
                            continue;
                        };
                        match record::decode(key, rec.value.as_deref()) {
                            Ok(Some(change)) => self.state.apply(&[change], None)?,
                            Ok(None) => {}
                            Err(e) => warn!(topic = %self.topic, offset, "skipped: {e}"),
                        }
                    }
                }
                *cursor = next;
            }
            if *cursor == before {
                return Err(RegistryError::Store(format!(
                    "no progress reading {} at offset {} (high watermark {})",
                    self.topic, before, fetched.high_watermark
                )));
            }
        }
    }

    /// Validates, makes durable, then applies one write.
    async fn write(&self, op: WriteOp) -> StoreResult<crate::api::WriteOut> {
        // Wait (without holding the log) while a fresh generation's lease is being confirmed;
        // the check that counts is the one right before the produce below.
        if let Some(e) = self.election.get() {
            e.wait_permit(e.config().session_timeout)
                .await
                .map_err(|e| RegistryError::Store(e.to_string()))?;
        }
        let mut cursor = self.cursor.lock().await;
        self.catch_up_locked(&mut cursor).await?;
        let plan = self.state.plan(op)?;
        if plan.changes.is_empty() {
            return Ok(plan.out);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let generation = match self.election.get() {
            Some(e) => Some(
                e.permit()
                    .map_err(|e| RegistryError::Store(e.to_string()))?,
            ),
            None => None,
        };
        let headers: Vec<RecordHeader> = generation
            .map(|g| RecordHeader::new(GENERATION_HEADER, Some(g.to_string().into())))
            .into_iter()
            .collect();
        let mut builder = BatchBuilder::new();
        for change in &plan.changes {
            let (k, v) = record::encode(change).map_err(store_err)?;
            builder
                .push(Some(&k), v.as_deref(), &headers, now)
                .map_err(store_err)?;
        }
        let batch = builder.build().map_err(store_err)?;
        let base = self
            .client
            .produce(&self.topic, 0, batch, -1)
            .await
            .map_err(store_err)?;
        let count = i64::try_from(plan.changes.len()).map_err(store_err)?;
        if base == *cursor {
            self.state.apply(&plan.changes, plan.parsed)?;
            *cursor = base.saturating_add(count);
        } else {
            // Someone else wrote in between: apply in log order by reading it back.
            if let Some(g) = generation {
                error!(
                    base,
                    cursor = *cursor,
                    generation = g,
                    "records of another writer precede ours in the schema topic: two registry nodes wrote at once (a paused ex-leader?); ids may collide, see docs/adr/0006-registry-single-writer.md"
                );
            }
            debug!(
                base,
                cursor = *cursor,
                "foreign records before ours; reading back"
            );
            self.catch_up_locked(&mut cursor).await?;
        }
        Ok(plan.out)
    }
}

async fn check_topic(client: &Client, topic: &str) -> Result<(), OpenError> {
    let unsafe_topic = |why: String| OpenError::UnsafeTopic {
        topic: topic.to_string(),
        why,
    };
    let md = client.metadata(Some(&[topic])).await?;
    let Some(t) = md.topic(topic) else {
        return Err(unsafe_topic("not in the broker's metadata".into()));
    };
    if t.partitions.len() != 1 {
        return Err(unsafe_topic(format!(
            "it has {} partitions; the registry needs exactly 1 (record order is the registry's history)",
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
            "cleanup.policy is '{policy}'; it must be 'compact' (retention would delete schemas)"
        )));
    }
    Ok(())
}

#[async_trait]
impl SchemaStore for KafkaStore {
    async fn execute_write(&self, op: WriteOp) -> StoreResult<WriteOut> {
        self.write(op).await
    }

    /// The applied state's generation: every replayed or written record moves it.
    fn generation(&self) -> Option<u64> {
        Some(self.state.current_generation())
    }

    async fn lookup(
        &self,
        subject: &str,
        req: SchemaRequest,
        normalize: bool,
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        read_through!(
            self,
            self.state
                .lookup(subject, req.clone(), normalize, deleted)
                .await
        )
    }

    async fn schema_by_id(&self, id: i32) -> StoreResult<SchemaById> {
        read_through!(self, self.state.schema_by_id(id).await)
    }

    async fn subjects_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<String>> {
        read_through!(self, self.state.subjects_by_id(id, deleted).await)
    }

    async fn versions_by_id(&self, id: i32, deleted: bool) -> StoreResult<Vec<SubjectVersionRef>> {
        read_through!(self, self.state.versions_by_id(id, deleted).await)
    }

    async fn max_id(&self) -> StoreResult<i32> {
        self.state.max_id().await
    }

    async fn subjects(&self, prefix: Option<&str>, listing: Listing) -> StoreResult<Vec<String>> {
        self.state.subjects(prefix, listing).await
    }

    async fn versions(&self, subject: &str, listing: Listing) -> StoreResult<Vec<i32>> {
        read_through!(self, self.state.versions(subject, listing).await)
    }

    async fn version(
        &self,
        subject: &str,
        version: VersionSpec,
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        read_through!(self, self.state.version(subject, version, deleted).await)
    }

    async fn schemas(
        &self,
        prefix: Option<&str>,
        deleted: bool,
        latest_only: bool,
    ) -> StoreResult<Vec<SubjectVersion>> {
        self.state.schemas(prefix, deleted, latest_only).await
    }

    async fn referenced_by(&self, subject: &str, version: VersionSpec) -> StoreResult<Vec<i32>> {
        read_through!(self, self.state.referenced_by(subject, version).await)
    }

    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<CompatibilityLevel> {
        read_through!(self, self.state.config(subject, default_to_global).await)
    }

    async fn mode(&self, subject: Option<&str>, default_to_global: bool) -> StoreResult<Mode> {
        read_through!(self, self.state.mode(subject, default_to_global).await)
    }

    async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        req: SchemaRequest,
        normalize: bool,
    ) -> StoreResult<CompatibilityResult> {
        read_through!(
            self,
            self.state
                .check_compatibility(subject, version, req.clone(), normalize)
                .await
        )
    }

    async fn contexts(&self) -> StoreResult<Vec<String>> {
        self.state.contexts().await
    }

    async fn config_record(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> StoreResult<ConfigRecord> {
        read_through!(
            self,
            self.state.config_record(subject, default_to_global).await
        )
    }

    async fn schema_by_guid(&self, guid: [u8; 16]) -> StoreResult<SchemaById> {
        read_through!(self, self.state.schema_by_guid(guid).await)
    }

    async fn ids_by_guid(&self, guid: [u8; 16]) -> StoreResult<Vec<i32>> {
        read_through!(self, self.state.ids_by_guid(guid).await)
    }

    async fn latest_with_metadata(
        &self,
        subject: &str,
        properties: &[(String, String)],
        deleted: bool,
    ) -> StoreResult<SubjectVersion> {
        read_through!(
            self,
            self.state
                .latest_with_metadata(subject, properties, deleted)
                .await
        )
    }
}

/// GUIDs of the `0x01` wire format, for the gateway's validator: answered from memory, and
/// after reading the log to its end when unknown (another node may have just registered it).
#[async_trait]
impl crate::validate::GuidLookup for KafkaStore {
    async fn id_for_guid(&self, guid: [u8; 16]) -> StoreResult<Option<i32>> {
        if let Some(id) = self.state.id_for_guid(guid).await? {
            return Ok(Some(id));
        }
        self.catch_up().await?;
        self.state.id_for_guid(guid).await
    }
}
