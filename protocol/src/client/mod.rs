//! A small async Kafka client for upstream connections (gateway → any Kafka cluster) and for
//! Gatehouse's internal topics (`_schemas` and friends).
//!
//! - [`Connection`]: one pipelined connection over any [`Transport`], with ApiVersions
//!   negotiation on connect and a generic [`Connection::send`] for every `kafka-protocol`
//!   request type.
//! - [`Client`]: a bootstrap list, cached [`ClusterMetadata`], one connection per broker id and
//!   typed calls: [`Client::metadata`], [`Client::create_topic`], [`Client::produce`],
//!   [`Client::fetch`], [`Client::list_offsets`] and the group-membership wrappers
//!   ([`Client::find_coordinator`], [`Client::join_group`], [`Client::sync_group`],
//!   [`Client::heartbeat`], [`Client::leave_group`], [`Client::offset_commit`],
//!   [`Client::offset_fetch`]).
//! - [`GroupMember`]: join → sync → heartbeat in the background, with a range assignor run by
//!   the group leader; the leader of a group can act as the single writer of an internal topic.
//!
//! SASL: set [`ConnectionConfig::sasl`] (or [`ClientConfig::with_sasl`]) to a
//! [`SaslCredentials`]; every connection then authenticates with PLAIN or
//! SCRAM-SHA-256/512 after ApiVersions, and a refusal is a [`ProtocolError::Broker`] carrying
//! the broker's code (58 SASL_AUTHENTICATION_FAILED, 33 UNSUPPORTED_SASL_MECHANISM...).
//!
//! TLS: [`Client::with_connector`] and [`Connection::connect_via`] take any [`Connector`];
//! with the `tls` cargo feature, [`TlsConnector`] runs TCP then a rustls handshake with a
//! caller-built `rustls::ClientConfig`.
//!
//! Kafka error codes in responses become [`ProtocolError::Broker`]; see [`error_code_from_i16`].
//! Leader and coordinator changes are retried after a metadata refresh ([`ClientConfig::retries`]).

mod connection;
mod errors;
mod group;
mod metadata;
mod sasl;
#[cfg(test)]
mod tests;
#[cfg(feature = "tls")]
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Message, Request, StrBytes, VersionRange};
use tokio::net::TcpStream;
use tracing::{debug, warn};

pub use connection::{
    API_VERSIONS_FIRST_TRY, Connection, ConnectionConfig, RawResponse, Transport,
};
pub use errors::{broker_code, broker_error, check, error_code_from_i16, is_io, is_retriable_code};
pub use group::{
    CommittedOffset, GroupAssignment, GroupAssignor, GroupMember, GroupMemberConfig, GroupProtocol,
    JoinGroupOptions, JoinGroupResult, JoinedMember, MemberRef, RANGE_ASSIGNOR, SyncGroupOptions,
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign,
};
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use sasl::{SaslCredentials, SaslMechanism};
#[cfg(feature = "tls")]
pub use tls::TlsConnector;

use crate::ProtocolError;

/// `timestamp` for [`Client::list_offsets`]: the offset the next record will get.
pub const LATEST_OFFSET: i64 = -1;
/// `timestamp` for [`Client::list_offsets`]: the first offset still in the log.
pub const EARLIEST_OFFSET: i64 = -2;

/// What [`Connector::connect`] returns.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = io::Result<Box<dyn Transport>>> + Send + 'a>>;

/// Opens the byte stream to a broker address (`host:port`). Plain TCP is [`TcpConnector`];
/// TLS or SASL-wrapping connectors can be plugged in with [`Client::with_connector`].
pub trait Connector: Send + Sync + 'static {
    /// Connects to `address`.
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a>;
}

/// Plain TCP with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            if let Err(e) = stream.set_nodelay(true) {
                debug!(address, error = %e, "could not set TCP_NODELAY");
            }
            Ok(Box::new(stream) as Box<dyn Transport>)
        })
    }
}

impl Connection {
    /// Opens the stream to `address` with `connector` (TCP, TLS...) within
    /// [`ConnectionConfig::connect_timeout`], then runs [`Connection::from_stream`].
    pub async fn connect_via(
        connector: &dyn Connector,
        address: &str,
        config: ConnectionConfig,
    ) -> Result<Self, ProtocolError> {
        let stream = tokio::time::timeout(config.connect_timeout, connector.connect(address))
            .await
            .map_err(|_| {
                ProtocolError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {address} timed out"),
                ))
            })??;
        Connection::from_stream(stream, address, config).await
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried, in order, when no broker connection is up.
    pub bootstrap: Vec<String>,
    /// Settings of every broker connection.
    pub connection: ConnectionConfig,
    /// Retries after a retriable error (leader moved, coordinator moved or loading...).
    pub retries: u32,
    /// Back-off before retry `n` is `n * retry_backoff`.
    pub retry_backoff: Duration,
}

impl ClientConfig {
    /// Defaults with the given bootstrap addresses.
    pub fn new<I, S>(bootstrap: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            connection: ConnectionConfig::default(),
            retries: 5,
            retry_backoff: Duration::from_millis(100),
        }
    }

    /// Every broker connection authenticates with `credentials` (sets
    /// [`ConnectionConfig::sasl`] of [`ClientConfig::connection`]).
    pub fn with_sasl(mut self, credentials: SaslCredentials) -> Self {
        self.connection.sasl = Some(credentials);
        self
    }
}

/// Whether [`Client::create_topic`] made the topic or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateTopicOutcome {
    /// The topic was created.
    Created,
    /// A topic of that name existed already (TOPIC_ALREADY_EXISTS); its settings are unchanged.
    AlreadyExists,
}

/// The answer to [`Client::fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// Zero or more v2 record batches (the last one may be partial).
    pub records: Bytes,
    /// Offset after the last committed record.
    pub high_watermark: i64,
    /// Offset after the last stable (non-transactional or decided) record; -1 if unknown.
    pub last_stable_offset: i64,
    /// First offset still in the log; -1 if the broker did not say.
    pub log_start_offset: i64,
}

/// A Kafka client: bootstrap, metadata, one connection per broker. Cloning is cheap and
/// clones share connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    connector: Arc<dyn Connector>,
    metadata: RwLock<ClusterMetadata>,
    brokers: Mutex<HashMap<i32, Arc<Connection>>>,
    bootstrap: Mutex<Option<Arc<Connection>>>,
    coordinators: Mutex<HashMap<String, i32>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Stores a 16-byte topic id into a generated message's Uuid field.
fn set_topic_id<T>(slot: &mut T, id: [u8; 16]) -> Result<(), ProtocolError>
where
    T: TryFrom<Vec<u8>>,
    T::Error: std::fmt::Display,
{
    *slot = T::try_from(id.to_vec()).map_err(ProtocolError::codec)?;
    Ok(())
}

fn malformed(what: &'static str, why: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        why: why.into(),
    }
}

/// Our version range for `R`, capped below the topic-id versions when we have no topic id.
fn range_for<R: Message>(topic_id: &[u8; 16], last_name_version: i16) -> VersionRange {
    let mut r = R::VERSIONS;
    if *topic_id == [0; 16] {
        r.max = r.max.min(last_name_version);
    }
    r
}

impl Client {
    /// A client over plain TCP. Does no I/O until the first call.
    pub fn new(config: ClientConfig) -> Self {
        Self::with_connector(config, Arc::new(TcpConnector))
    }

    /// A client whose connections are opened by `connector` (TLS and the like).
    pub fn with_connector(config: ClientConfig, connector: Arc<dyn Connector>) -> Self {
        Client {
            inner: Arc::new(Inner {
                config,
                connector,
                metadata: RwLock::new(ClusterMetadata::default()),
                brokers: Mutex::new(HashMap::new()),
                bootstrap: Mutex::new(None),
                coordinators: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A TCP client that has already reached the cluster and loaded its broker list.
    pub async fn connect(config: ClientConfig) -> Result<Self, ProtocolError> {
        Self::connect_with(config, Arc::new(TcpConnector)).await
    }

    /// Like [`Client::connect`], with connections opened by `connector` (TLS and the like).
    pub async fn connect_with(
        config: ClientConfig,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, ProtocolError> {
        let client = Self::with_connector(config, connector);
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A copy of the cached metadata (merged from every Metadata response so far).
    pub fn cached_metadata(&self) -> ClusterMetadata {
        read(&self.inner.metadata).clone()
    }

    async fn open(&self, address: &str) -> Result<Arc<Connection>, ProtocolError> {
        let cfg = &self.inner.config.connection;
        let conn =
            Connection::connect_via(self.inner.connector.as_ref(), address, cfg.clone()).await?;
        debug!(address, "connected");
        Ok(Arc::new(conn))
    }

    /// The connection to broker `node_id`, opened if needed (its address comes from metadata).
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>, ProtocolError> {
        if let Some(c) = lock(&self.inner.brokers)
            .get(&node_id)
            .filter(|c| !c.is_closed())
        {
            return Ok(c.clone());
        }
        let mut address = read(&self.inner.metadata)
            .brokers
            .get(&node_id)
            .map(BrokerInfo::address);
        if address.is_none() {
            let md = self.fetch_metadata(Some(&[])).await?;
            address = md.brokers.get(&node_id).map(BrokerInfo::address);
        }
        let Some(address) = address else {
            return Err(broker_error(
                5,
                &format!("broker {node_id}"),
                Some("not in cluster metadata"),
            ));
        };
        self.open_broker(node_id, &address).await
    }

    /// Opens a connection to broker `node_id` at `address` and caches it (keeping a live one
    /// another task opened meanwhile).
    async fn open_broker(
        &self,
        node_id: i32,
        address: &str,
    ) -> Result<Arc<Connection>, ProtocolError> {
        let conn = self.open(address).await?;
        let mut brokers = lock(&self.inner.brokers);
        if let Some(existing) = brokers.get(&node_id).filter(|c| !c.is_closed()) {
            return Ok(existing.clone());
        }
        brokers.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// Some live connection: an open broker connection, else a known broker, else the
    /// bootstrap addresses in order.
    pub async fn any_broker(&self) -> Result<Arc<Connection>, ProtocolError> {
        let live = lock(&self.inner.brokers)
            .values()
            .find(|c| !c.is_closed())
            .cloned();
        if let Some(c) = live {
            return Ok(c);
        }
        let boot = lock(&self.inner.bootstrap)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned();
        if let Some(c) = boot {
            return Ok(c);
        }
        let mut last_err = None;
        let known: Vec<(i32, String)> = read(&self.inner.metadata)
            .brokers
            .values()
            .map(|b| (b.node_id, b.address()))
            .collect();
        for (id, address) in known {
            match self.open_broker(id, &address).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    debug!(broker = id, error = %e, "known broker unreachable");
                    last_err = Some(e);
                }
            }
        }
        for address in &self.inner.config.bootstrap {
            match self.open(address).await {
                Ok(c) => {
                    *lock(&self.inner.bootstrap) = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    warn!(address, error = %e, "bootstrap server unreachable");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| {
            ProtocolError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "no bootstrap servers configured",
            ))
        }))
    }

    /// Runs `op`, retrying retriable broker errors (and, when `idempotent`, I/O errors) after
    /// a back-off and a metadata refresh of `topics`; forgets `group`'s coordinator first.
    async fn retry<T, F, Fut>(
        &self,
        what: &str,
        idempotent: bool,
        topics: &[&str],
        group: Option<&str>,
        mut op: F,
    ) -> Result<T, ProtocolError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProtocolError>>,
    {
        let mut attempt = 0;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retriable = match broker_code(&err) {
                Some(code) => is_retriable_code(code),
                None => idempotent && is_io(&err),
            };
            if !retriable || attempt >= self.inner.config.retries {
                return Err(err);
            }
            attempt += 1;
            debug!(what, attempt, error = %err, "retrying");
            tokio::time::sleep(self.inner.config.retry_backoff * attempt).await;
            if let Some(g) = group {
                lock(&self.inner.coordinators).remove(g);
            }
            if broker_code(&err).is_some()
                && let Err(e) = self.fetch_metadata(Some(topics)).await
            {
                debug!(what, error = %e, "metadata refresh failed");
            }
        }
    }

    /// Fetches metadata for `topics` (`None`: all topics; `Some(&[])`: brokers only) and
    /// merges it into the cache. Topics the broker does not know come back with their error
    /// code in [`TopicMetadata::error_code`] rather than as an error.
    pub async fn metadata(
        &self,
        topics: Option<&[&str]>,
    ) -> Result<ClusterMetadata, ProtocolError> {
        self.retry("metadata", true, &[], None, || self.fetch_metadata(topics))
            .await
    }

    async fn fetch_metadata(
        &self,
        topics: Option<&[&str]>,
    ) -> Result<ClusterMetadata, ProtocolError> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<MetadataRequest>()?;
        let mut req = MetadataRequest::default();
        req.topics = match topics {
            None if version >= 1 => None,
            None => Some(Vec::new()),
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect(),
            ),
        };
        if version >= 4 {
            req.allow_auto_topic_creation = false;
        }
        let resp = conn.send(req, version).await?;
        if version >= 13 {
            check(resp.error_code, "metadata", None)?;
        }
        let md = ClusterMetadata::from_response(&resp);
        write(&self.inner.metadata).merge(&md, topics.is_none());
        Ok(md)
    }

    /// The leader of `topic`-`partition` and the topic id, from cache or a metadata refresh.
    async fn leader(&self, topic: &str, partition: i32) -> Result<(i32, [u8; 16]), ProtocolError> {
        {
            let md = read(&self.inner.metadata);
            if let (Ok(b), Some(t)) = (md.require_leader(topic, partition), md.topic(topic)) {
                return Ok((b.node_id, t.topic_id));
            }
        }
        let md = self.fetch_metadata(Some(&[topic])).await?;
        let b = md.require_leader(topic, partition)?;
        let id = md.topic(topic).map_or([0; 16], |t| t.topic_id);
        Ok((b.node_id, id))
    }

    /// Creates `name` with `partitions` partitions, the broker's default replication factor
    /// and `configs`. An existing topic is not an error: see [`CreateTopicOutcome`].
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<CreateTopicOutcome, ProtocolError> {
        self.create_topic_with(name, partitions, -1, configs).await
    }

    /// [`Client::create_topic`] with an explicit replication factor (-1: broker default).
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<CreateTopicOutcome, ProtocolError> {
        self.retry("create_topic", true, &[], None, || {
            self.try_create_topic(name, partitions, replication_factor, configs)
        })
        .await
    }

    async fn try_create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<CreateTopicOutcome, ProtocolError> {
        if read(&self.inner.metadata).brokers.is_empty() {
            self.fetch_metadata(Some(&[])).await?;
        }
        let (controller, broker_count) = {
            let md = read(&self.inner.metadata);
            let c = md.controller_id;
            (md.brokers.contains_key(&c).then_some(c), md.brokers.len())
        };
        let conn = match controller {
            Some(id) => self.broker(id).await?,
            None => self.any_broker().await?,
        };
        let version = conn.version_for::<CreateTopicsRequest>()?;
        let mut rf = replication_factor;
        if rf < 0 && version < 4 {
            // CreateTopics v2-3 have no "broker default"; pick a sensible explicit value.
            rf = i16::try_from(broker_count.clamp(1, 3)).unwrap_or(1);
        }
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(millis(self.inner.config.connection.request_timeout));
        let resp = conn.send(req, version).await?;
        let Some(result) = resp.topics.iter().find(|t| t.name.0.as_str() == name) else {
            return Err(malformed(
                "CreateTopics response",
                format!("no result for {name}"),
            ));
        };
        match result.error_code {
            0 => Ok(CreateTopicOutcome::Created),
            36 => Ok(CreateTopicOutcome::AlreadyExists),
            code => Err(broker_error(
                code,
                &format!("create topic {name}"),
                result.error_message.as_deref(),
            )),
        }
    }

    /// Appends `records` (one or more v2 batches) to `topic`-`partition` on its leader and
    /// returns the base offset the broker assigned. `acks`: 0 (no response: returns -1),
    /// 1 (leader) or -1 (all in-sync replicas).
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<i64, ProtocolError> {
        self.retry("produce", false, &[topic], None, || {
            self.try_produce(topic, partition, records.clone(), acks)
        })
        .await
    }

    async fn try_produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<i64, ProtocolError> {
        let (leader, topic_id) = self.leader(topic, partition).await?;
        let conn = self.broker(leader).await?;
        let version = conn.pick_version(
            ProduceRequest::KEY,
            range_for::<ProduceRequest>(&topic_id, 12),
        )?;
        let mut data = TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ]);
        if version >= 13 {
            set_topic_id(&mut data.topic_id, topic_id)?;
        }
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(millis(self.inner.config.connection.request_timeout))
            .with_topic_data(vec![data]);
        if acks == 0 {
            conn.send_oneway(req, version).await?;
            return Ok(-1);
        }
        let resp = conn.send(req, version).await?;
        let ctx = format!("produce {topic}-{partition}");
        let Some(p) = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
        else {
            return Err(malformed(
                "Produce response",
                format!("no result for {ctx}"),
            ));
        };
        if p.error_code != 0 {
            let mut message = p.error_message.as_deref().unwrap_or_default().to_owned();
            for e in &p.record_errors {
                message.push_str(&format!(
                    " [batch {}: {}]",
                    e.batch_index,
                    e.batch_index_error_message.as_deref().unwrap_or("?")
                ));
            }
            return Err(broker_error(p.error_code, &ctx, Some(&message)));
        }
        Ok(p.base_offset)
    }

    /// Reads from `topic`-`partition` at `offset` on its leader: up to `max_bytes` (at least
    /// one batch), waiting up to `max_wait_ms` for data to arrive.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchedRecords, ProtocolError> {
        self.retry("fetch", true, &[topic], None, || {
            self.try_fetch(topic, partition, offset, max_bytes, max_wait_ms)
        })
        .await
    }

    async fn try_fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchedRecords, ProtocolError> {
        let (leader, topic_id) = self.leader(topic, partition).await?;
        let conn = self.broker(leader).await?;
        let version =
            conn.pick_version(FetchRequest::KEY, range_for::<FetchRequest>(&topic_id, 12))?;
        let mut fetch_topic = FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes),
            ]);
        if version >= 13 {
            set_topic_id(&mut fetch_topic.topic_id, topic_id)?;
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![fetch_topic]);
        let wait = Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0));
        let timeout = self.inner.config.connection.request_timeout + wait;
        let resp = conn.send_with_timeout(req, version, timeout).await?;
        let ctx = format!("fetch {topic}-{partition}@{offset}");
        if version >= 7 {
            check(resp.error_code, &ctx, None)?;
        }
        let Some(p) = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
        else {
            return Err(malformed("Fetch response", format!("no result for {ctx}")));
        };
        check(p.error_code, &ctx, None)?;
        Ok(FetchedRecords {
            records: p.records.clone().unwrap_or_default(),
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            log_start_offset: if version >= 5 { p.log_start_offset } else { -1 },
        })
    }

    /// The offset (and its record's timestamp) for `timestamp` in `topic`-`partition`:
    /// [`LATEST_OFFSET`] (-1), [`EARLIEST_OFFSET`] (-2) or the first offset whose timestamp is
    /// at least `timestamp`. Returns `(offset, timestamp)`; -1 for unknown.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ProtocolError> {
        self.retry("list_offsets", true, &[topic], None, || {
            self.try_list_offsets(topic, partition, timestamp)
        })
        .await
    }

    async fn try_list_offsets(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ProtocolError> {
        let (leader, _) = self.leader(topic, partition).await?;
        let conn = self.broker(leader).await?;
        let version = conn.version_for::<ListOffsetsRequest>()?;
        let mut req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        if version >= 10 {
            req.timeout_ms = millis(self.inner.config.connection.request_timeout);
        }
        let resp = conn.send(req, version).await?;
        let ctx = format!("list offsets {topic}-{partition}@{timestamp}");
        let Some(p) = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
        else {
            return Err(malformed(
                "ListOffsets response",
                format!("no result for {ctx}"),
            ));
        };
        check(p.error_code, &ctx, None)?;
        Ok((p.offset, p.timestamp))
    }
}
