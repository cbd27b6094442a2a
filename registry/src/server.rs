//! The registry's HTTP server: [`start`] (or [`start_with_audit`]) connects to the broker, opens the
//! [`KafkaStore`] (creating or checking `_schemas` and replaying it), binds the listener and
//! serves the Confluent REST API ([`crate::api::secured_router`]) until
//! [`RunningRegistry::shutdown`].
//!
//! With [`RegistryServerConfig::tls`] the registry serves HTTPS on any address (under
//! `gatehouse serve`: the gateway's certificate, hot-reloaded with it). TLS handshakes run in
//! their own tasks (10 s limit), so a slow client never holds up the others; the handshaken
//! streams are handed to axum, which still sees the client address (`ConnectInfo`). Without
//! TLS the listener must be a loopback address: plain HTTP is never served off loopback.
//! [`RegistryServerConfig::auth`] turns on authentication and ACLs ([`crate::api::auth`]).
//! [`start_with_connector`] reaches the broker through any [`Connector`] (TLS to an external
//! cluster under `gatehouse serve`).
//!
//! [`start_with_cluster`] runs the node as one of several on one Kafka cluster: it joins the
//! writer election ([`crate::kafka::election`]), produces to `_schemas` only while it leads,
//! and forwards writes to the leader otherwise ([`crate::kafka::forward`]).
//! `GET /v1/metadata/leader` (unauthenticated, like `/`) shows who leads:
//! `{"leader": url|null, "generation": n, "is_leader": bool, "node": url|null, "state":
//! "member"|"joining"|"solo"|"disabled"}`. On [`RunningRegistry::shutdown`] the node leaves
//! the group after its last request, so another node takes over at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use gatehouse_protocol::client::{Client, ClientConfig, Connector, TcpConnector};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use axum::routing::get;
use serde_json::json;

use crate::api::{AuditSink, RegistryAuth, SchemaStore, WriteForwarder};
use crate::kafka::election::{Election, ElectionConfig, ElectionState};
use crate::kafka::forward::{ForwardTls, LeaderForwarder};
use crate::kafka::{KafkaStore, OpenError, SCHEMAS_TOPIC, StoreOptions};

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 128;

/// Where the registry listens and which broker holds its topic.
#[derive(Debug, Clone)]
pub struct RegistryServerConfig {
    /// Listen address; must be loopback without [`RegistryServerConfig::tls`].
    pub listen: SocketAddr,
    /// Broker bootstrap list, `host:port[,host:port...]`.
    pub bootstrap: String,
    /// SASL credential for the broker connection (the bundled broker's internal credential,
    /// or a service account on an external cluster).
    pub sasl: Option<gatehouse_protocol::client::SaslCredentials>,
    /// Serve HTTPS with this configuration (any listen address).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Authenticate every request and check ACLs on subjects; `None` serves everyone.
    pub auth: Option<RegistryAuth>,
}

impl RegistryServerConfig {
    /// Plain HTTP without authentication (loopback only): tests and development.
    pub fn plain(
        listen: SocketAddr,
        bootstrap: impl Into<String>,
        sasl: Option<gatehouse_protocol::client::SaslCredentials>,
    ) -> Self {
        Self {
            listen,
            bootstrap: bootstrap.into(),
            sasl,
            tls: None,
            auth: None,
        }
    }
}

/// Several registry nodes on one Kafka cluster ([`start_with_cluster`]).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The writer election.
    pub election: ElectionConfig,
    /// CA certificates (PEM files) trusted when forwarding to the leader over HTTPS; missing
    /// files are skipped.
    pub forward_ca: Vec<PathBuf>,
    /// The store's local index directory and lag bound (`serve` passes
    /// `<data-dir>/registry-index`).
    pub store: StoreOptions,
}

/// Why the registry did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Plain HTTP is refused off loopback.
    #[error(
        "registry listener {0} is not a loopback address: the registry serves plain HTTP only on loopback (configure TLS to listen elsewhere)"
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
    election: Option<Arc<Election>>,
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

    /// The writer election, when started with [`start_with_cluster`].
    pub fn election(&self) -> Option<&Arc<Election>> {
        self.election.as_ref()
    }

    /// Stops accepting connections, lets in-flight requests finish, waits for the server, and
    /// leaves the registry group.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.task).await;
        if let Some(e) = &self.election {
            e.leave().await;
        }
        self.store.flush_index();
        match served {
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
    start_inner(
        config,
        None,
        Arc::new(TcpConnector),
        None,
        StoreOptions::default(),
    )
    .await
}

/// Like [`start`], with the store's local index and lag bound from `store`.
pub async fn start_with_store(
    config: RegistryServerConfig,
    store: StoreOptions,
) -> Result<RunningRegistry, ServerError> {
    start_inner(config, None, Arc::new(TcpConnector), None, store).await
}

/// Like [`start`], with every state-changing request recorded through `audit` before it is
/// answered ([`crate::api::router_with_audit`]).
pub async fn start_with_audit(
    config: RegistryServerConfig,
    audit: Arc<dyn AuditSink>,
) -> Result<RunningRegistry, ServerError> {
    start_inner(
        config,
        Some(audit),
        Arc::new(TcpConnector),
        None,
        StoreOptions::default(),
    )
    .await
}

/// Like [`start`] (with `audit`: like [`start_with_audit`]), with the broker connections opened
/// by `connector` (TLS to the broker, for example) instead of plain TCP.
pub async fn start_with_connector(
    config: RegistryServerConfig,
    audit: Option<Arc<dyn AuditSink>>,
    connector: Arc<dyn Connector>,
) -> Result<RunningRegistry, ServerError> {
    start_inner(config, audit, connector, None, StoreOptions::default()).await
}

/// Like [`start_with_connector`], as one of several registry nodes: joins the writer
/// election and forwards writes to the leader while it does not lead.
pub async fn start_with_cluster(
    config: RegistryServerConfig,
    audit: Option<Arc<dyn AuditSink>>,
    connector: Arc<dyn Connector>,
    cluster: ClusterConfig,
) -> Result<RunningRegistry, ServerError> {
    let store = cluster.store.clone();
    start_inner(config, audit, connector, Some(cluster), store).await
}

/// `GET /v1/metadata/leader`.
fn leader_body(election: Option<&Election>) -> serde_json::Value {
    let Some(e) = election else {
        return json!({"leader": null, "generation": 0, "is_leader": true, "node": null, "state": "solo"});
    };
    let node = e.advertised_url();
    match e.state() {
        ElectionState::Member(l) => json!({
            "leader": l.leader_url,
            "generation": l.generation,
            "is_leader": l.is_self,
            "node": node,
            "state": "member",
        }),
        ElectionState::Joining => {
            json!({"leader": null, "generation": null, "is_leader": false, "node": node, "state": "joining"})
        }
        ElectionState::Solo => {
            json!({"leader": node, "generation": 0, "is_leader": true, "node": node, "state": "solo"})
        }
        ElectionState::Disabled => {
            json!({"leader": null, "generation": null, "is_leader": false, "node": node, "state": "disabled"})
        }
    }
}

async fn start_inner(
    config: RegistryServerConfig,
    audit: Option<Arc<dyn AuditSink>>,
    connector: Arc<dyn Connector>,
    cluster: Option<ClusterConfig>,
    store_options: StoreOptions,
) -> Result<RunningRegistry, ServerError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
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
    let client = Client::connect_with(client_config, connector)
        .await
        .map_err(|e| ServerError::Connect {
            bootstrap: config.bootstrap.clone(),
            why: e.to_string(),
        })?;
    let store = Arc::new(KafkaStore::open_with(client, SCHEMAS_TOPIC, store_options).await?);
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
    let (election, forwarder) = match cluster {
        Some(cluster) => {
            let election = Arc::new(Election::start(
                store.client().clone(),
                cluster.election.clone(),
            ));
            store.set_election(election.clone());
            let cas: Vec<&std::path::Path> =
                cluster.forward_ca.iter().map(PathBuf::as_path).collect();
            let tls = match ForwardTls::from_ca_files(&cas) {
                Ok(t) => Some(t),
                Err(e) => {
                    if cluster.election.advertised_url.starts_with("https://") {
                        warn!(error = %e, "no CA to forward registry writes over HTTPS with: this node can only write while it leads (set registry.forward_ca)");
                    }
                    None
                }
            };
            let f: Arc<dyn WriteForwarder> =
                Arc::new(LeaderForwarder::new(election.clone(), store.clone(), tls));
            info!(group = %cluster.election.group_id, url = %cluster.election.advertised_url,
                eligible = cluster.election.eligible, "registry joins the writer election");
            (Some(election), Some(f))
        }
        None => (None, None),
    };
    let shared = store.clone() as Arc<dyn SchemaStore>;
    let secured = config.auth.is_some();
    let status = election.clone();
    let app = crate::api::secured_router_with_forwarding(shared, config.auth, audit, forwarder)
        .route(
            "/v1/metadata/leader",
            get(move || {
                let status = status.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            axum::http::HeaderValue::from_static(crate::api::CONTENT_TYPE),
                        )],
                        leader_body(status.as_deref()).to_string(),
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn(crate::metrics::track));
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let scheme = if config.tls.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    let task = match config.tls {
        Some(tls) => {
            let listener = TlsListener::spawn(listener, local_addr, TlsAcceptor::from(tls));
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move {
                // `tap_io` gives the listener axum's `ConnectInfo<SocketAddr>` support.
                let r = axum::serve(listener.tap_io(|_| {}), app)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(e) = &r {
                    warn!("registry server stopped: {e}");
                }
                r
            })
        }
        None => {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move {
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(e) = &r {
                    warn!("registry server stopped: {e}");
                }
                r
            })
        }
    };
    info!(%local_addr, scheme, authentication = secured, "schema registry listening");
    Ok(RunningRegistry {
        local_addr,
        store,
        election,
        stop: Some(stop),
        task,
    })
}

/// An axum listener of TLS streams: one task accepts TCP connections and runs each handshake
/// in its own task; finished handshakes queue for the server. The accept task ends when the
/// server drops the listener.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    fn spawn(tcp: TcpListener, local_addr: SocketAddr, acceptor: TlsAcceptor) -> Self {
        let (tx, ready) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        debug!(error = %e, "registry accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            debug!(client = %peer, error = %e, "registry TLS handshake failed")
                        }
                        Err(_) => debug!(client = %peer, "registry TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, local_addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task is gone (it only ends when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
