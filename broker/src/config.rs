//! The broker's typed configuration (one section of the `gatehouse` config tree).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How `acks=all` produce requests are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFlush {
    /// `acks=all` is answered only after the fsync that covers it (group commit).
    #[default]
    Durable,
    /// Kafka's default: the page cache flushes; nothing waits for fsync.
    Os,
}

/// Everything the broker core needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Root of all broker state: partition logs, topic metadata, committed offsets.
    pub data_dir: PathBuf,
    /// Kafka listener of the bundled broker.
    pub listen: SocketAddr,
    /// Host name advertised in Metadata (default: the listen IP).
    pub advertised_host: Option<String>,
    /// Node id of this broker.
    pub node_id: i32,
    /// Durability mode of `acks=all`.
    pub log_flush: LogFlush,
    /// Group-commit window in microseconds.
    pub flush_window_us: u64,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Create topics on Metadata/Produce for unknown names (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics (`num.partitions`).
    pub default_partitions: i32,
    /// How often retention, compaction and time-based segment rolls run, in milliseconds.
    pub log_cleanup_interval_ms: u64,
    /// Consumer-group initial rebalance delay (`group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: i32,
    /// Minimum accepted session timeout (`group.min.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    /// Maximum accepted session timeout (`group.max.session.timeout.ms`).
    pub group_max_session_timeout_ms: i32,
    /// Default topic configs applied where a topic sets none.
    pub topic_defaults: TopicDefaults,
    /// When set, every connection must authenticate with SASL PLAIN and this credential
    /// before any request but ApiVersions, SaslHandshake and SaslAuthenticate. `None` (the
    /// default): no authentication, and the SASL APIs are not advertised. Never read from or
    /// written to a config file (it is a secret): set it in code.
    #[serde(skip)]
    pub internal_credential: Option<InternalCredential>,
}

/// The one SASL PLAIN credential the broker accepts. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct InternalCredential {
    /// The user name.
    pub username: String,
    /// The password (never logged).
    pub password: String,
}

impl InternalCredential {
    /// A credential of `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Broker-wide defaults of the topic configs (Kafka's `log.*` settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// `log.retention.ms`
    pub retention_ms: i64,
    /// `log.retention.bytes`
    pub retention_bytes: i64,
    /// `log.segment.bytes`
    pub segment_bytes: i64,
    /// `log.roll.ms`
    pub segment_ms: i64,
    /// `message.max.bytes`
    pub max_message_bytes: i64,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./gatehouse-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 19092)),
            advertised_host: None,
            node_id: 1,
            log_flush: LogFlush::Durable,
            flush_window_us: 2000,
            max_request_bytes: 100 * 1024 * 1024,
            auto_create_topics: false,
            default_partitions: 1,
            log_cleanup_interval_ms: 30_000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            topic_defaults: TopicDefaults::default(),
            internal_credential: None,
        }
    }
}

impl BrokerConfig {
    /// The group-commit window.
    pub fn flush_window(&self) -> Duration {
        Duration::from_micros(self.flush_window_us)
    }

    /// The host advertised to clients.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(h) => h.clone(),
            None if self.listen.ip().is_unspecified() => "localhost".to_owned(),
            None => self.listen.ip().to_string(),
        }
    }
}
