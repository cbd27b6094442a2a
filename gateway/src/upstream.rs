//! The upstream cluster: the bundled broker or any Kafka cluster given by a bootstrap list.
//!
//! At start-up the gateway connects once to learn the upstream's API versions and brokers.
//! Each authenticated client connection then gets its own upstream connection (so one client's
//! long-polling Fetch never delays another's requests, as a broker processes one request per
//! connection at a time), authenticated with the gateway's upstream credential. Correlation ids
//! on that connection are the gateway's own (the protocol client swaps them), so requests the
//! gateway originates can never collide with the client's.
//!
//! With [`UpstreamConfig::tls`] set, every upstream connection (discovery and per client) is
//! TCP, then a TLS handshake, then [`Connection::from_stream`] (via
//! [`Connection::connect_via`]); [`UpstreamConfig::connector`] hands the same connector to the
//! internal clients (policy store, governance, key vault, schema registry).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::client::{
    ClientConfig, Connection, ConnectionConfig, Connector, SaslCredentials, TcpConnector,
    TlsConnector,
};
use gatehouse_protocol::kafka_protocol::protocol::VersionRange;
use gatehouse_protocol::messages::MetadataRequest;
use tracing::{debug, info};

/// Where the upstream is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// SASL credential for the gateway's connections (the bundled broker's internal
    /// credential, or a service account on an external cluster).
    pub sasl: Option<SaslCredentials>,
    /// TLS to the upstream brokers (`None`: plain TCP).
    pub tls: Option<TlsConnector>,
    /// How long a forwarded request may wait for its response. Generous: a JoinGroup waits for
    /// a whole rebalance.
    pub request_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl UpstreamConfig {
    /// What opens a connection to an upstream broker: [`UpstreamConfig::tls`] or plain TCP.
    pub fn connector(&self) -> Arc<dyn Connector> {
        match &self.tls {
            Some(tls) => Arc::new(tls.clone()),
            None => Arc::new(TcpConnector),
        }
    }

    /// A protocol-client configuration for the same cluster and credential (use it with
    /// [`UpstreamConfig::connector`]).
    pub fn client_config(&self) -> ClientConfig {
        let config = ClientConfig::new(self.bootstrap.clone());
        match self.sasl.clone() {
            Some(sasl) => config.with_sasl(sasl),
            None => config,
        }
    }

    /// Defaults for a bootstrap list.
    pub fn new(bootstrap: Vec<String>) -> Self {
        Self {
            bootstrap,
            sasl: None,
            tls: None,
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Which upstream broker a gateway port serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Any bootstrap broker.
    Bootstrap,
    /// Node `id`.
    Node(i32),
}

/// The upstream cluster as the gateway sees it.
pub(crate) struct Upstream {
    config: UpstreamConfig,
    connector: Arc<dyn Connector>,
    nodes: RwLock<BTreeMap<i32, String>>,
    pub versions: HashMap<i16, VersionRange>,
}

impl Upstream {
    /// Connects to the first reachable bootstrap broker, learns its versions and brokers.
    pub async fn discover(config: UpstreamConfig) -> Result<Self, ProtocolError> {
        let mut last = None;
        let connector = config.connector();
        for addr in &config.bootstrap {
            match Connection::connect_via(connector.as_ref(), addr, connection_config(&config))
                .await
            {
                Ok(conn) => {
                    let versions = conn.broker_versions().clone();
                    let upstream = Self {
                        config: config.clone(),
                        connector: connector.clone(),
                        nodes: RwLock::new(BTreeMap::new()),
                        versions,
                    };
                    upstream.refresh_with(&conn).await?;
                    info!(bootstrap = %addr, nodes = ?upstream.node_ids(), "Upstream cluster reached.");
                    return Ok(upstream);
                }
                Err(e) => {
                    debug!(bootstrap = %addr, error = %e, "Upstream bootstrap broker unreachable.");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no upstream bootstrap address configured",
            ))
        }))
    }

    async fn refresh_with(&self, conn: &Connection) -> Result<(), ProtocolError> {
        let resp = conn
            .send(
                MetadataRequest::default().with_topics(Some(Vec::new())),
                None,
            )
            .await?;
        let mut nodes = BTreeMap::new();
        for b in resp.brokers {
            nodes.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        if let Ok(mut guard) = self.nodes.write() {
            *guard = nodes;
        }
        Ok(())
    }

    /// Node ids known from the last metadata answer.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes
            .read()
            .map(|n| n.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Opens an authenticated connection to the broker behind `target`.
    pub async fn connect(&self, target: Target) -> Result<Connection, ProtocolError> {
        let addr = match target {
            Target::Bootstrap => None,
            Target::Node(id) => self.nodes.read().ok().and_then(|n| n.get(&id).cloned()),
        };
        let candidates: Vec<String> = match addr {
            Some(a) => vec![a],
            None => self.config.bootstrap.clone(),
        };
        let mut last = None;
        for a in candidates {
            match Connection::connect_via(
                self.connector.as_ref(),
                &a,
                connection_config(&self.config),
            )
            .await
            {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no upstream broker address",
            ))
        }))
    }
}

fn connection_config(config: &UpstreamConfig) -> ConnectionConfig {
    ConnectionConfig {
        client_id: Some("gatehouse-gateway".to_string()),
        request_timeout: config.request_timeout,
        connect_timeout: config.connect_timeout,
        negotiate_versions: true,
        sasl: config.sasl.clone(),
        ..ConnectionConfig::default()
    }
}
