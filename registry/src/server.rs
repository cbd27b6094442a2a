//! The registry's HTTP server: [`start`] (or [`start_with_audit`]) connects to the broker, opens the
//! [`KafkaStore`] (creating or checking `_schemas` and replaying it), binds the listener and
//! serves the Confluent REST API ([`crate::api::router`]) until [`RunningRegistry::shutdown`].
//!
//! Plain HTTP only, so the listener must be a loopback address; HTTPS (with the gateway's
//! certificate) for other addresses comes with the gateway.

use std::net::SocketAddr;
use std::sync::Arc;

use gatehouse_protocol::client::{Client, ClientConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::{AuditSink, SchemaStore, router, router_with_audit};
use crate::kafka::{KafkaStore, OpenError, SCHEMAS_TOPIC};

/// Where the registry listens and which broker holds its topic.
#[derive(Debug, Clone)]
pub struct RegistryServerConfig {
    /// HTTP listen address; must be loopback (plain HTTP).
    pub listen: SocketAddr,
    /// Broker bootstrap list, `host:port[,host:port...]`.
    pub bootstrap: String,
    /// SASL credential for the broker connection (the bundled broker's internal credential,
    /// or a service account on an external cluster).
    pub sasl: Option<gatehouse_protocol::client::SaslCredentials>,
}

/// Why the registry did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Plain HTTP is refused off loopback.
    #[error(
        "registry listener {0} is not a loopback address: the registry serves plain HTTP only on loopback (HTTPS comes with the gateway)"
    )]
    NotLoopback(SocketAddr),
    /// The bootstrap list is empty.
    #[error("registry: empty broker bootstrap list")]
    NoBootstrap,
    /// Connecting to the broker failed.
    #[error("registry: cannot connect to the broker at {bootstrap}: {why}")]
    Connect {
        /// The bootstrap list.
        bootstrap: String,
        /// What failed.
        why: String,
    },
    /// Opening the schema store failed.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// Binding or serving the listener failed.
    #[error("registry listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server task failed.
    #[error("registry server: {0}")]
    Serve(String),
}

/// A running registry. Dropping it without [`RunningRegistry::shutdown`] leaves the server
/// task running until the runtime stops.
#[derive(Debug)]
pub struct RunningRegistry {
    local_addr: SocketAddr,
    store: Arc<KafkaStore>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningRegistry {
    /// The bound listener address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The store behind the API.
    pub fn store(&self) -> &Arc<KafkaStore> {
        &self.store
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the server.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Listen {
                addr: self.local_addr,
                source: e,
            }),
            Err(e) => Err(ServerError::Serve(e.to_string())),
        }
    }
}

/// Starts the registry: broker connection, `_schemas` created/checked and replayed, then the
/// HTTP listener. Returns once the listener is bound (requests are served from then on).
pub async fn start(config: RegistryServerConfig) -> Result<RunningRegistry, ServerError> {
    start_inner(config, None).await
}

/// Like [`start`], with every state-changing request recorded through `audit` before it is
/// answered ([`crate::api::router_with_audit`]).
pub async fn start_with_audit(
    config: RegistryServerConfig,
    audit: Arc<dyn AuditSink>,
) -> Result<RunningRegistry, ServerError> {
    start_inner(config, Some(audit)).await
}

async fn start_inner(
    config: RegistryServerConfig,
    audit: Option<Arc<dyn AuditSink>>,
) -> Result<RunningRegistry, ServerError> {
    if !config.listen.ip().is_loopback() {
        return Err(ServerError::NotLoopback(config.listen));
    }
    let bootstrap: Vec<String> = config
        .bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if bootstrap.is_empty() {
        return Err(ServerError::NoBootstrap);
    }
    let mut client_config = ClientConfig::new(bootstrap);
    if let Some(sasl) = config.sasl.clone() {
        client_config = client_config.with_sasl(sasl);
    }
    let client = Client::connect(client_config)
        .await
        .map_err(|e| ServerError::Connect {
            bootstrap: config.bootstrap.clone(),
            why: e.to_string(),
        })?;
    let store = Arc::new(KafkaStore::open(client, SCHEMAS_TOPIC).await?);
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let shared = store.clone() as Arc<dyn SchemaStore>;
    let app = match audit {
        Some(sink) => router_with_audit(shared, sink),
        None => router(shared),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = &r {
            warn!("registry server stopped: {e}");
        }
        r
    });
    info!(%local_addr, "schema registry listening (HTTP)");
    Ok(RunningRegistry {
        local_addr,
        store,
        stop: Some(stop),
        task,
    })
}
