//! # gatehouse-gateway
//!
//! The TLS-terminating Kafka-protocol security gateway. Clients connect here, never to a
//! broker: each connection is authenticated (SASL PLAIN / SCRAM-SHA-256/512 / OAUTHBEARER, or
//! an mTLS certificate), every request is authorized with Kafka's ACL semantics before it is
//! forwarded, broker addresses in responses are rewritten to the gateway's, and the ApiVersions
//! answer is the upstream's intersected with what the gateway understands. The upstream is the
//! bundled broker or any Kafka cluster, reached over the Kafka protocol only.
//!
//! Architecture invariant: the gateway never depends on the `broker` crate.
//!
//! Public API: [`Gateway::start`] with a [`GatewayConfig`] and its [`GatewayDeps`];
//! [`Gateway::shutdown`] drains (stop accepting, finish in-flight requests, close).

mod access;
pub(crate) mod admin;
pub mod authz;
mod conn;
mod crypt;
mod dlq;
#[doc(hidden)]
pub mod fuzzing;
pub mod governance;
mod guard;
mod limits;
mod metrics;
pub mod pan;
pub mod proxy;
pub mod rewrite;
pub mod tls;
mod topics;
pub mod upstream;
pub mod versions;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_compliance::{AuditEvent, AuditEventBuilder, EventType};
use gatehouse_policy::{Authenticator, Authorizer, PolicyStore, Principal, UserStore};
use gatehouse_protocol::ProtocolError;
use gatehouse_registry::api::AuditSink;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use metrics::{CryptoSnapshot, ListenerSnapshot, MetricsSnapshot, error_name};
pub use rewrite::{NodePorts, Rewriter};
pub use upstream::{Target, UpstreamConfig};
pub use versions::ApiTable;

/// The `service` field of the gateway's audit events.
pub const AUDIT_SERVICE: &str = "gateway";

/// Listener and limit settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// TLS listener (clients authenticate with SASL or a client certificate).
    pub tls_listen: Option<SocketAddr>,
    /// Plaintext listener (SASL required). Refused on a non-loopback address unless
    /// `allow_plaintext_remote` is set.
    pub plain_listen: Option<SocketAddr>,
    /// Allow the plaintext listener on a non-loopback address.
    pub allow_plaintext_remote: bool,
    /// The host name clients are told in Metadata and FindCoordinator answers.
    pub advertised_host: String,
    /// External multi-broker upstreams: node `n` is served on the TLS listener at
    /// `node_port_base + n`. `None`: every node on the listener's own port (single node).
    pub node_port_base: Option<u16>,
    /// Largest request frame accepted from an authenticated client.
    pub max_frame_size: usize,
    /// Most client connections held at once; further ones are closed at accept.
    pub max_connections: usize,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Listeners expect a PROXY protocol v2 header (behind a load balancer): the client
    /// address it carries is the one authorized and audited. Connections without it are refused.
    pub proxy_protocol: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            tls_listen: None,
            plain_listen: None,
            allow_plaintext_remote: false,
            advertised_host: "localhost".to_string(),
            node_port_base: None,
            max_frame_size: 100 * 1024 * 1024,
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            proxy_protocol: false,
        }
    }
}

/// What the gateway is wired to.
pub struct GatewayDeps {
    /// Server certificate and client-certificate policy for the TLS listener.
    pub tls: Option<Arc<tls::TlsServer>>,
    /// Maps verified client-certificate subjects to principals (mTLS).
    pub principal_mapper: Option<gatehouse_policy::PrincipalMapper>,
    /// SASL mechanisms and credential checks.
    pub authenticator: Authenticator,
    /// ACLs and roles.
    pub authorizer: Authorizer,
    /// SASL users (for closing sessions whose credentials changed).
    pub users: UserStore,
    /// Durable store of users and ACLs; `None` keeps administration in memory (tests).
    pub store: Option<PolicyStore>,
    /// Where security decisions are recorded; `None` only in tests.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// The cluster behind the gateway.
    pub upstream: UpstreamConfig,
    /// Per-topic governance configs (`_gatehouse_topics`); `None`: in memory only.
    pub governance: Option<governance::Governance>,
    /// Record validation against the schema registry; `None`: topics that require it refuse
    /// every record (fail closed).
    pub validator: Option<Arc<gatehouse_registry::validate::Validator>>,
    /// Key of the PAN guard's keyed hashes (derived from the master key under `serve`).
    pub pan_key: [u8; 32],
    /// Envelope encryption for topics with `gatehouse.encryption=true`; `None`: such topics
    /// refuse produce (never stored in clear).
    pub envelope: Option<gatehouse_compliance::vault::envelope::Envelope>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is unsafe or inconsistent.
    #[error("{0}")]
    Config(String),
    /// The upstream cluster could not be reached.
    #[error("upstream cluster unreachable: {0}")]
    Upstream(#[from] ProtocolError),
}

/// The kind of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// TLS (SASL_SSL or mTLS).
    Tls,
    /// Plaintext with SASL (SASL_PLAINTEXT).
    Plain,
}

/// One bound gateway port.
pub(crate) struct Listener {
    kind: ListenerKind,
    rewriter: Rewriter,
    target: Target,
}

impl Listener {
    fn security_protocol(&self) -> &'static str {
        match self.kind {
            ListenerKind::Tls => "SASL_SSL",
            ListenerKind::Plain => "SASL_PLAINTEXT",
        }
    }
}

/// State shared by every connection.
pub(crate) struct Inner {
    config: GatewayConfig,
    authenticator: Authenticator,
    authorizer: Authorizer,
    users: UserStore,
    store: Option<PolicyStore>,
    audit: Option<Arc<dyn AuditSink>>,
    upstream: upstream::Upstream,
    api_table: ApiTable,
    metrics: metrics::Metrics,
    governance: governance::Governance,
    validator: Option<Arc<gatehouse_registry::validate::Validator>>,
    /// Key of the PAN guard's keyed hashes (so reports correlate without the number).
    pan_key: [u8; 32],
    envelope: Option<gatehouse_compliance::vault::envelope::Envelope>,
    /// Writer of refused records to dead-letter topics.
    dead_letters: dlq::DeadLetters,
    /// Per-topic `max.message.bytes` for re-encoded batches.
    limits: limits::TopicLimits,
}

impl Inner {
    /// Completes an event (fills nothing in that the builder lacks; logs builder bugs).
    fn finish_event(&self, builder: AuditEventBuilder) -> AuditEvent {
        match builder.build() {
            Ok(e) => e,
            Err(e) => {
                error!(error = %e, "Gateway built an incomplete audit event.");
                AuditEvent::builder(EventType::Other("io.gatehouse.gateway_error".into()))
                    .service(AUDIT_SERVICE)
                    .method("gateway.audit")
                    .principal("gateway")
                    .resource("Cluster", authz::CLUSTER)
                    .operation("Audit")
                    .build()
                    .unwrap_or_else(|_| unreachable_event())
            }
        }
    }

    /// Records events and waits until they are durable. An audit failure is returned as the
    /// reason to close the connection (fail closed).
    async fn audit_now(&self, events: Vec<AuditEvent>) -> Result<(), String> {
        let Some(sink) = &self.audit else {
            return Ok(());
        };
        for e in events {
            if let Err(err) = sink.record(e).await {
                error!(error = %err, "Audit trail failed; refusing the request.");
                return Err("the audit trail is unavailable".into());
            }
        }
        Ok(())
    }
}

fn unreachable_event() -> AuditEvent {
    // `build` only fails on empty required fields, and the fallback above sets them all.
    AuditEvent::builder(EventType::Lifecycle)
        .service(AUDIT_SERVICE)
        .method("gateway.audit")
        .principal("gateway")
        .resource("Cluster", authz::CLUSTER)
        .operation("Audit")
        .build()
        .unwrap_or_else(|_| unreachable_event())
}

/// A running gateway.
pub struct Gateway {
    inner: Arc<Inner>,
    addrs: Vec<(ListenerKind, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    accept_tasks: JoinSet<()>,
    connections: Arc<Semaphore>,
}

impl Gateway {
    /// Reaches the upstream, binds the listeners and starts accepting clients.
    pub async fn start(config: GatewayConfig, deps: GatewayDeps) -> Result<Self, GatewayError> {
        if let Some(addr) = config.plain_listen
            && !addr.ip().is_loopback()
            && !config.allow_plaintext_remote
        {
            return Err(GatewayError::Config(format!(
                "the plaintext gateway listener {addr} is not on loopback; \
                     use the TLS listener, or set gateway_allow_plaintext_remote = true"
            )));
        }
        if config.tls_listen.is_some() && deps.tls.is_none() {
            return Err(GatewayError::Config(
                "a TLS listener needs a certificate (tls settings)".into(),
            ));
        }
        let upstream = upstream::Upstream::discover(deps.upstream.clone()).await?;
        let nodes = upstream.node_ids();
        if nodes.len() > 1 && config.node_port_base.is_none() {
            return Err(GatewayError::Config(format!(
                "the upstream cluster has {} brokers; set gateway_node_port_base so each is \
                 served on its own gateway port",
                nodes.len()
            )));
        }
        let api_table = ApiTable::build(&upstream.versions);
        let inner = Arc::new(Inner {
            config: config.clone(),
            authenticator: deps.authenticator,
            authorizer: deps.authorizer,
            users: deps.users,
            store: deps.store,
            audit: deps.audit,
            upstream,
            api_table,
            metrics: metrics::Metrics::default(),
            governance: deps
                .governance
                .unwrap_or_else(governance::Governance::in_memory),
            validator: deps.validator,
            pan_key: deps.pan_key,
            envelope: deps.envelope,
            dead_letters: dlq::DeadLetters::new(&deps.upstream),
            limits: limits::TopicLimits::new(&deps.upstream),
        });
        let (shutdown, _) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let mut accept_tasks = JoinSet::new();
        let mut addrs = Vec::new();
        let mapper = deps.principal_mapper.map(Arc::new);
        let mut bind = |addr: SocketAddr, kind: ListenerKind, ports: NodePorts, target: Target| {
            let std = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .and_then(TcpListener::from_std)
                .map_err(|source| GatewayError::Bind { addr, source })?;
            let local = std
                .local_addr()
                .map_err(|source| GatewayError::Bind { addr, source })?;
            let ports = match ports {
                NodePorts::Same(0) => NodePorts::Same(local.port()),
                p => p,
            };
            let listener = Arc::new(Listener {
                kind,
                rewriter: Rewriter::new(&config.advertised_host, ports),
                target,
            });
            addrs.push((kind, local));
            let acceptor = Acceptor {
                inner: inner.clone(),
                listener,
                tls: if kind == ListenerKind::Tls {
                    deps.tls.clone()
                } else {
                    None
                },
                mapper: mapper.clone(),
                connections: connections.clone(),
                shutdown: shutdown.subscribe(),
            };
            accept_tasks.spawn(acceptor.run(std));
            info!(%local, ?kind, "Gateway listening.");
            Ok::<(), GatewayError>(())
        };
        let single = config.node_port_base.is_none();
        if let Some(addr) = config.tls_listen {
            let ports = match config.node_port_base {
                Some(base) => NodePorts::Base(base),
                None => NodePorts::Same(addr.port()),
            };
            bind(addr, ListenerKind::Tls, ports.clone(), Target::Bootstrap)?;
            if let Some(base) = config.node_port_base {
                for n in &nodes {
                    let port = u16::try_from(i32::from(base) + n).map_err(|_| {
                        GatewayError::Config(format!("node {n} has no port above {base}"))
                    })?;
                    let node_addr = SocketAddr::new(addr.ip(), port);
                    bind(
                        node_addr,
                        ListenerKind::Tls,
                        ports.clone(),
                        Target::Node(*n),
                    )?;
                }
            }
        }
        if let Some(addr) = config.plain_listen {
            // With a multi-broker upstream the plaintext listener serves only the bootstrap;
            // brokers are advertised on the TLS node ports.
            let ports = if single {
                NodePorts::Same(addr.port())
            } else {
                NodePorts::Base(config.node_port_base.unwrap_or(addr.port()))
            };
            bind(addr, ListenerKind::Plain, ports, Target::Bootstrap)?;
        }
        // Ports bound to 0 were resolved per listener above; tests rely on that.
        Ok(Self {
            inner,
            addrs,
            shutdown,
            accept_tasks,
            connections,
        })
    }

    /// The bound address of the first listener of `kind`.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.addrs.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Counters since start.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The ApiVersions table clients are given.
    pub fn api_table(&self) -> &ApiTable {
        &self.inner.api_table
    }

    /// Stops accepting, lets connections finish the requests they already sent (up to
    /// `grace`), then returns.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        self.accept_tasks.abort_all();
        while self.accept_tasks.join_next().await.is_some() {}
        let max = self.inner.config.max_connections;
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, self.connections.acquire_many(all)).await;
        if drained.is_err() {
            warn!(
                ?grace,
                "Some client connections were still busy at the end of the drain."
            );
        }
    }
}

struct Acceptor {
    inner: Arc<Inner>,
    listener: Arc<Listener>,
    tls: Option<Arc<tls::TlsServer>>,
    mapper: Option<Arc<gatehouse_policy::PrincipalMapper>>,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let this = Arc::new(self);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "Accept failed; continuing.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = this.connections.clone().try_acquire_owned() else {
                this.inner
                    .metrics
                    .refused_on(this.listener.kind, "connection_limit");
                drop(stream);
                continue;
            };
            this.inner.metrics.accepted(this.listener.kind);
            let this = this.clone();
            tokio::spawn(async move {
                this.connection(stream, peer).await;
                this.inner.metrics.closed(this.listener.kind);
                drop(permit);
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut peer = peer;
        if self.inner.config.proxy_protocol {
            let header = tokio::time::timeout(
                self.inner.config.tls_handshake_timeout,
                proxy::read_header(&mut stream),
            )
            .await;
            match header {
                Ok(Ok(Some(client))) => peer = client,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    self.inner
                        .metrics
                        .refused_on(self.listener.kind, "proxy_header");
                    info!(%peer, error = %e, "Refusing a connection without a valid PROXY header.");
                    return;
                }
                Err(_) => {
                    self.inner
                        .metrics
                        .refused_on(self.listener.kind, "proxy_header_timeout");
                    return;
                }
            }
        }
        let shutdown = self.shutdown.clone();
        let Some(tls) = &self.tls else {
            let info = conn::ConnInfo {
                peer,
                listener: self.listener.clone(),
                tls_principal: None,
            };
            conn::serve(stream, info, self.inner.clone(), shutdown).await;
            return;
        };
        let accept = tls.acceptor().accept(stream);
        let stream =
            match tokio::time::timeout(self.inner.config.tls_handshake_timeout, accept).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.inner
                        .metrics
                        .refused_on(self.listener.kind, "tls_handshake");
                    info!(%peer, error = %e, "TLS handshake failed (a plaintext client on the \
                        TLS port, an old TLS version, or an untrusted certificate).");
                    return;
                }
                Err(_) => {
                    self.inner
                        .metrics
                        .refused_on(self.listener.kind, "tls_handshake_timeout");
                    info!(%peer, "TLS handshake timed out.");
                    return;
                }
            };
        let subject = tls::client_certificate_subject(stream.get_ref().1);
        let tls_principal = match (subject, &self.mapper) {
            (Some(subject), Some(mapper)) => match mapper.map(&subject) {
                Some(p) => Some(p),
                None => {
                    self.inner
                        .metrics
                        .refused_on(self.listener.kind, "mtls_unmapped");
                    let event = AuditEvent::builder(EventType::Authentication)
                        .service(AUDIT_SERVICE)
                        .method("kafka.Authenticate")
                        .principal("User:unknown")
                        .auth_mechanism("SSL/mTLS")
                        .resource("Cluster", authz::CLUSTER)
                        .operation("Authenticate")
                        .client_address(peer.to_string())
                        .granted(false)
                        .attribute(
                            "reason",
                            "no principal mapping rule matched the certificate",
                        );
                    let event = self.inner.finish_event(event);
                    let _ = self.inner.audit_now(vec![event]).await;
                    info!(%peer, "Client certificate matched no principal mapping rule; closing.");
                    return;
                }
            },
            (Some(subject), None) => Some(Principal::user(subject)),
            (None, _) => None,
        };
        let info = conn::ConnInfo {
            peer,
            listener: self.listener.clone(),
            tls_principal,
        };
        conn::serve(stream, info, self.inner.clone(), shutdown).await;
    }
}

/// Whether `ip` is a loopback address (plaintext listeners are only allowed there).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
