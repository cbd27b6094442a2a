//! [`KafkaStore`]: the [`SchemaStore`] whose durable state is the compacted `_schemas` topic.
//!
//! The applied state is a [`MemoryStore`] (the registry's state machine). At open the topic is
//! created (1 partition, `cleanup.policy=compact`) or checked (more than one partition or no
//! compaction is refused), then every record up to the high watermark is replayed into it.
//!
//! With [`StoreOptions::index_dir`] the applied records and offset are also kept in a local
//! sled index ([`index`]): a start replays the index and reads the topic from the applied
//! offset on only; an index that does not match the topic is rebuilt from it.
//!
//! Writes are serialised within the node (one writer): the log is read up to its high
//! watermark, the write is validated against that state ([`MemoryStore`] plans the
//! [`crate::api::Change`]s), its records are produced as one batch with `acks=-1`, and only then applied
//! locally and answered, so an acknowledged write is in the topic. Ids come from the
//! `ID_HIGH_WATER` record written with every new id, which is never tombstoned: a hard delete
//! never frees an id for reuse. A lookup that misses (unknown id, subject, version, config or
//! mode) reads the log to its high watermark before answering "not found"; when that read
//! fails or does not reach the high watermark within [`StoreOptions::lag_bound`], the answer
//! is 500/50002 ([`RegistryError::Timeout`]), never a 404 that might be false.
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
pub mod index;
pub mod record;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
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
use index::{Index, IndexState, IndexedRecord, LastRecord, TopicView};

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

/// Bytes asked for by the fetches that check the index against the topic.
const PROBE_MAX_BYTES: i32 = 64 * 1024;

/// Kafka's default `delete.retention.ms` (24 h), used when the broker does not say.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 86_400_000;

/// Default [`StoreOptions::lag_bound`].
pub const DEFAULT_LAG_BOUND: Duration = Duration::from_secs(5);

/// Options of [`KafkaStore::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Directory of the local index (`<data-dir>/registry-index` under `serve`); `None`: no
    /// index, every start replays the whole topic.
    pub index_dir: Option<PathBuf>,
    /// How long a lookup that misses may spend reading the topic to its high watermark before
    /// it is answered 500/50002 (default [`DEFAULT_LAG_BOUND`]).
    pub lag_bound: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            index_dir: None,
            lag_bound: DEFAULT_LAG_BOUND,
        }
    }
}

impl StoreOptions {
    /// The defaults with the index at `dir`.
    pub fn with_index(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            index_dir: Some(dir.into()),
            ..StoreOptions::default()
        }
    }
}

/// How the last start loaded the state (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartKind {
    /// No index configured: the whole topic was replayed.
    NoIndex,
    /// The index was used; `records` came from it, `tail` offsets from the topic.
    FromIndex {
        /// Records replayed from the index.
        records: usize,
        /// Offsets read from the topic after the index's applied offset.
        tail: i64,
    },
    /// The index was (re)built from the topic, for this reason.
    Rebuilt(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs a read-through catch-up within `bound`. A failure or a timeout is a
/// [`RegistryError::Timeout`] (50002): the caller must not answer "not found" from a state
/// that may lag the topic.
pub(crate) async fn bounded<F>(bound: Duration, topic: &str, catch_up: F) -> StoreResult<()>
where
    F: std::future::Future<Output = StoreResult<()>>,
{
    match tokio::time::timeout(bound, catch_up).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RegistryError::Timeout(format!(
            "could not read {topic} to its high watermark: {e}"
        ))),
        Err(_) => Err(RegistryError::Timeout(format!(
            "could not read {topic} to its high watermark within {} ms",
            bound.as_millis()
        ))),
    }
}

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
    /// The local index, when configured.
    index: Option<Index>,
    /// Bound of a read-through catch-up.
    lag_bound: Duration,
    /// How this store started.
    start_kind: StartKind,
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
                $self.catch_up_bounded().await?;
                $call
            }
            other => other,
        }
    }};
}

impl KafkaStore {
    /// Creates or checks `topic`, replays it, and returns the store (no index, default lag
    /// bound).
    pub async fn open(client: Client, topic: &str) -> Result<Self, OpenError> {
        Self::open_with(client, topic, StoreOptions::default()).await
    }

    /// Creates or checks `topic`, loads the state (from the index when it matches the topic,
    /// else by replaying the topic, rebuilding the index), reads the topic to its high
    /// watermark, and returns the store.
    pub async fn open_with(
        client: Client,
        topic: &str,
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let started = std::time::Instant::now();
        let delete_retention_ms = match client
            .create_topic(topic, 1, &[("cleanup.policy", "compact")])
            .await?
        {
            CreateTopicOutcome::Created => {
                info!(topic, "created the schema topic");
                DEFAULT_DELETE_RETENTION_MS
            }
            CreateTopicOutcome::AlreadyExists => check_topic(&client, topic).await?,
        };
        let (start, _) = client.list_offsets(topic, 0, EARLIEST_OFFSET).await?;
        let start = start.max(0);
        let topic_id = match client.metadata(Some(&[topic])).await {
            Ok(md) => md
                .topic(topic)
                .filter(|t| t.has_topic_id())
                .map(|t| t.topic_id),
            Err(e) => {
                debug!(topic, "no topic id: {e}");
                None
            }
        };
        let index = options
            .index_dir
            .as_deref()
            .and_then(Index::open_or_recreate);
        let mut store = KafkaStore {
            client,
            topic: topic.to_string(),
            state: MemoryStore::new(),
            cursor: Mutex::new(start),
            election: OnceLock::new(),
            index,
            lag_bound: options.lag_bound,
            start_kind: StartKind::NoIndex,
        };
        let replay_err = |e: RegistryError| OpenError::Replay {
            topic: topic.to_string(),
            why: e.to_string(),
        };
        let mut cursor = start;
        let mut kind = StartKind::NoIndex;
        if let Some(idx) = &store.index {
            let rebuild = match idx.load() {
                Ok(None) => Some("there is no index yet".to_string()),
                Err(e) => Some(e.to_string()),
                Ok(Some(st)) => {
                    let view = store
                        .topic_view(&st, start, topic_id, delete_retention_ms)
                        .await
                        .map_err(replay_err)?;
                    match index::check(&st, &view) {
                        Ok(()) => {
                            for r in &st.records {
                                store
                                    .apply_record(r.offset, &r.key, r.value.as_deref())
                                    .map_err(replay_err)?;
                            }
                            cursor = st.applied;
                            kind = StartKind::FromIndex {
                                records: st.records.len(),
                                tail: 0,
                            };
                            None
                        }
                        Err(why) => Some(why),
                    }
                }
            };
            if let Some(why) = rebuild {
                info!(topic, path = %idx.path().display(), "rebuilding the registry index from the topic: {why}");
                if let Err(e) = idx.reset(topic, topic_id, start, now_ms()) {
                    warn!(
                        topic,
                        "cannot reset the registry index ({e}); it is not used"
                    );
                    idx.disable();
                }
                kind = StartKind::Rebuilt(why);
            }
        }
        let from = cursor;
        {
            let mut c = store.cursor.lock().await;
            *c = cursor;
            store.catch_up_locked(&mut c).await.map_err(replay_err)?;
            cursor = *c;
        }
        if let StartKind::FromIndex { tail, .. } = &mut kind {
            *tail = cursor - from;
        }
        info!(
            topic,
            offset = cursor,
            start = ?kind,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "schema topic replayed"
        );
        store.start_kind = kind;
        Ok(store)
    }

    /// How this store loaded its state at start.
    pub fn start_kind(&self) -> &StartKind {
        &self.start_kind
    }

    /// Writes the index to disk (at shutdown).
    pub fn flush_index(&self) {
        if let Some(i) = &self.index {
            i.flush();
        }
    }

    /// What the topic holds where the index ends.
    async fn topic_view(
        &self,
        st: &IndexState,
        log_start: i64,
        topic_id: Option<[u8; 16]>,
        delete_retention_ms: i64,
    ) -> StoreResult<TopicView> {
        let probe = self
            .client
            .fetch(
                &self.topic,
                0,
                log_start,
                PROBE_MAX_BYTES,
                FETCH_MAX_WAIT_MS,
            )
            .await
            .map_err(store_err)?;
        let high_watermark = probe.high_watermark;
        let last_record = match st.last {
            None => LastRecord::NotChecked,
            Some((offset, _)) if offset < log_start || offset >= high_watermark => {
                LastRecord::Missing
            }
            Some((offset, _)) => {
                let fetched = self
                    .client
                    .fetch(&self.topic, 0, offset, PROBE_MAX_BYTES, FETCH_MAX_WAIT_MS)
                    .await
                    .map_err(store_err)?;
                let mut found = LastRecord::Missing;
                'batches: for batch in RawBatches::new(fetched.records) {
                    let batch = batch.map_err(store_err)?;
                    let header = *batch.header();
                    if header.is_control() || header.last_offset() < offset {
                        continue;
                    }
                    for rec in batch.records().map_err(store_err)? {
                        let o = rec.offset(&header);
                        if o == offset {
                            if let Some(k) = rec.key.as_deref() {
                                found = LastRecord::Present(index::record_hash(
                                    k,
                                    rec.value.as_deref(),
                                ));
                            }
                            break 'batches;
                        }
                        if o > offset {
                            break 'batches;
                        }
                    }
                }
                found
            }
        };
        Ok(TopicView {
            topic: self.topic.clone(),
            topic_id,
            log_start,
            high_watermark,
            last_record,
            now_ms: now_ms(),
            delete_retention_ms,
        })
    }

    /// Applies one keyed record of the log to the state.
    fn apply_record(&self, offset: i64, key: &[u8], value: Option<&[u8]>) -> StoreResult<()> {
        match record::decode(key, value) {
            Ok(Some(change)) => self.state.apply(&[change], None)?,
            Ok(None) => {}
            Err(e) => warn!(topic = %self.topic, offset, "skipped: {e}"),
        }
        Ok(())
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

    /// [`KafkaStore::catch_up`] within the lag bound (waiting for the cursor included); a
    /// failure is 50002.
    pub async fn catch_up_bounded(&self) -> StoreResult<()> {
        bounded(self.lag_bound, &self.topic, self.catch_up()).await
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
                if let Some(idx) = &self.index {
                    idx.touch(*cursor, now_ms());
                }
                return Ok(());
            }
            let before = *cursor;
            let mut indexed: Vec<IndexedRecord> = Vec::new();
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
                        self.apply_record(offset, key, rec.value.as_deref())?;
                        if self.index.is_some() {
                            indexed.push(IndexedRecord {
                                offset,
                                key: key.to_vec(),
                                value: rec.value.as_deref().map(<[u8]>::to_vec),
                            });
                        }
                    }
                }
                *cursor = next;
            }
            if let Some(idx) = &self.index {
                idx.append(&indexed, *cursor, now_ms());
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
        let now = now_ms();
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
        let mut encoded = Vec::with_capacity(plan.changes.len());
        for change in &plan.changes {
            let (k, v) = record::encode(change).map_err(store_err)?;
            builder
                .push(Some(&k), v.as_deref(), &headers, now)
                .map_err(store_err)?;
            encoded.push((k, v));
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
            if let Some(idx) = &self.index {
                let records: Vec<IndexedRecord> = encoded
                    .into_iter()
                    .zip(base..)
                    .map(|((k, v), offset)| IndexedRecord {
                        offset,
                        key: k.to_vec(),
                        value: v.map(|v| v.to_vec()),
                    })
                    .collect();
                idx.append(&records, *cursor, now);
            }
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

/// Checks an existing topic; returns its `delete.retention.ms`.
async fn check_topic(client: &Client, topic: &str) -> Result<i64, OpenError> {
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
    Ok(result
        .configs
        .iter()
        .find(|c| c.name.as_str() == "delete.retention.ms")
        .and_then(|c| c.value.as_ref())
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(DEFAULT_DELETE_RETENTION_MS))
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
        self.catch_up_bounded().await?;
        self.state.id_for_guid(guid).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// How the test store's catch-up behaves.
    #[derive(Clone, Copy)]
    enum CatchUp {
        /// The broker cannot be reached.
        Fails,
        /// The read never reaches the high watermark.
        Hangs,
        /// Caught up.
        Works,
    }

    /// A store with the [`KafkaStore`] read-through path over a scripted catch-up.
    struct Lagging {
        state: MemoryStore,
        catch_up: CatchUp,
        bound: Duration,
    }

    impl Lagging {
        async fn catch_up_bounded(&self) -> StoreResult<()> {
            let behaviour = self.catch_up;
            bounded(self.bound, SCHEMAS_TOPIC, async move {
                match behaviour {
                    CatchUp::Fails => {
                        Err(RegistryError::Store("broker: connection refused".into()))
                    }
                    CatchUp::Hangs => std::future::pending().await,
                    CatchUp::Works => Ok(()),
                }
            })
            .await
        }

        async fn schema_by_id(&self, id: i32) -> StoreResult<SchemaById> {
            read_through!(self, self.state.schema_by_id(id).await)
        }

        async fn version(&self, subject: &str) -> StoreResult<SubjectVersion> {
            read_through!(
                self,
                self.state
                    .version(subject, VersionSpec::Latest, false)
                    .await
            )
        }
    }

    fn lagging(catch_up: CatchUp) -> Lagging {
        Lagging {
            state: MemoryStore::new(),
            catch_up,
            bound: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_miss_that_cannot_catch_up_is_50002_not_404() {
        for behaviour in [CatchUp::Fails, CatchUp::Hangs] {
            let store = lagging(behaviour);
            let started = std::time::Instant::now();
            let e = store.schema_by_id(42).await.unwrap_err();
            assert_eq!(e.error_code(), 50002, "{e}");
            assert_eq!(e.http_status(), 500);
            let e = store.version("orders-value").await.unwrap_err();
            assert_eq!(e.error_code(), 50002, "{e}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "bounded: {:?}",
                started.elapsed()
            );
        }
        // Caught up: the miss is real.
        let store = lagging(CatchUp::Works);
        assert_eq!(
            store.schema_by_id(42).await.unwrap_err().error_code(),
            40403
        );
        assert_eq!(
            store
                .version("orders-value")
                .await
                .unwrap_err()
                .error_code(),
            40401
        );
    }

    #[tokio::test]
    async fn a_hit_needs_no_catch_up() {
        let store = lagging(CatchUp::Fails);
        store
            .state
            .register(
                "s",
                SchemaRequest {
                    schema: Some("\"string\"".into()),
                    ..SchemaRequest::default()
                },
                false,
            )
            .await
            .unwrap();
        assert!(store.schema_by_id(1).await.is_ok());
        assert!(store.version("s").await.is_ok());
    }

    #[tokio::test]
    async fn bounded_passes_success_through() {
        assert!(
            bounded(Duration::from_secs(1), "t", async { Ok(()) })
                .await
                .is_ok()
        );
        let e = bounded(Duration::from_millis(10), "t", std::future::pending())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("within 10 ms"), "{e}");
    }
}
