//! # gatehouse-broker
//!
//! The bundled broker core: a single-node Kafka broker that unmodified clients (librdkafka,
//! Java, kafka-python, kcat) produce to and consume from, with nothing acknowledged lost across
//! a crash.
//!
//! - [`log`]: the segmented partition log in Kafka's on-disk layout (`<base>.log`, sparse
//!   `.index` and `.timeindex`), CRC-checked recovery, group-commit fsync, retention,
//!   compaction and idempotent-producer state.
//! - [`group`]: the classic consumer-group coordinator and durable committed offsets.
//! - [`topics`]: durable topic metadata; [`topic_config`]: the topic configs we honour.
//! - [`metrics`]: log sizes by topic and fsync latency, for `/metrics` ([`Broker::metrics`]).
//! - `server` and `handlers`: the listener, the per-connection request pipeline and one
//!   handler per Kafka API.
//!
//! Start with [`Broker::start`].
//!
//! Architecture invariant: the broker depends only on `gatehouse-protocol`; it knows nothing of
//! policy, registry or gateway.

pub mod config;
mod error;
pub mod group;
mod handlers;
pub mod log;
pub mod metrics;
mod server;
mod state;
pub mod topic_config;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{BrokerConfig, InternalCredential, LogFlush, TopicDefaults};
pub use error::BrokerError;

use state::{BrokerState, ProducerIds};

/// The API keys and version ranges the broker advertises, for documentation and tests
/// (without an internal credential; with one, [`sasl_apis`] are advertised too).
pub fn supported_apis() -> Vec<(i16, i16, i16)> {
    handlers::SUPPORTED
        .iter()
        .map(|(k, min, max)| (*k as i16, *min, *max))
        .collect()
}

/// SaslHandshake and SaslAuthenticate with their version ranges: advertised only when
/// [`BrokerConfig::internal_credential`] is set.
pub fn sasl_apis() -> Vec<(i16, i16, i16)> {
    handlers::SASL_APIS
        .iter()
        .map(|(k, min, max)| (*k as i16, *min, *max))
        .collect()
}

/// A running broker.
pub struct Broker {
    local_addr: SocketAddr,
    state: Arc<BrokerState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Opens the data directory (recovering every partition), binds the listener and starts
    /// serving. Returns once the broker accepts connections.
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| BrokerError::io("create data directory", e))?;
        let meta_dir = config.data_dir.join("meta");
        std::fs::create_dir_all(&meta_dir).map_err(|e| BrokerError::io("create meta dir", e))?;
        let logs = log::LogManager::new(log::LogManagerConfig {
            flush_mode: match config.log_flush {
                LogFlush::Durable => log::FlushMode::Durable,
                LogFlush::Os => log::FlushMode::Os,
            },
            flush_window: config.flush_window(),
        });
        let topics = topics::Topics::open(
            &config.data_dir,
            logs.clone(),
            config.topic_defaults.clone(),
        )?;
        let groups = group::GroupCoordinator::open(
            &config.data_dir.join("__consumer_offsets"),
            group::GroupConfig {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                ..group::GroupConfig::default()
            },
        )
        .map_err(|e| BrokerError::Group(e.to_string()))?;
        let producer_ids = ProducerIds::open(&meta_dir)?;
        let cluster_id = state::cluster_id(&meta_dir)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| BrokerError::io("read listener address", e))?;
        let bg_topics = topics.clone();
        logs.start_background(
            move || bg_topics.all_partitions(),
            Duration::from_millis(config.log_cleanup_interval_ms.max(100)),
        );
        let state = Arc::new(BrokerState {
            advertised_host: config.advertised_host(),
            advertised_port: i32::from(local_addr.port()),
            config,
            topics,
            logs,
            groups,
            producer_ids,
            cluster_id,
        });
        metrics::register(&state);
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, state.clone(), rx));
        tracing::info!(addr = %local_addr, cluster_id = %state.cluster_id, "Broker listening.");
        Ok(Broker {
            local_addr,
            state,
            shutdown,
            task,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The cluster id (stable across restarts).
    pub fn cluster_id(&self) -> &str {
        &self.state.cluster_id
    }

    /// This broker's log sizes, with the process-wide fsync counters.
    pub fn metrics(&self) -> metrics::BrokerMetricsSnapshot {
        metrics::of(&self.state)
    }

    /// Stops accepting, flushes every partition and closes.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.state.groups.shutdown().await;
        if let Err(e) = self.state.logs.shutdown() {
            tracing::error!(error = %e, "Closing the partition logs at shutdown failed; the next start will run full recovery.");
        }
        tracing::info!("Broker stopped.");
    }
}
