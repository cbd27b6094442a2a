//! TLS to a broker: [`TlsConnector`] opens TCP (with `TCP_NODELAY`), then runs a rustls client
//! handshake and hands the encrypted stream to [`super::Connection::from_stream`].
//!
//! The [`rustls::ClientConfig`] is built by the caller (trusted roots, client certificate,
//! protocol versions and, explicitly, the crypto provider), so this crate enables no crypto
//! provider of its own. The name checked against the broker's certificate (and sent as SNI) is
//! the host part of the address being connected to (a DNS name or an IP address), unless
//! [`TlsConnector::with_server_name`] overrides it for every connection.

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector as RustlsConnector;
use tracing::debug;

use super::{ConnectFuture, Connector, Transport};

/// TCP then TLS, with the given rustls client configuration. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector checking each broker's certificate against the host of its address.
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            config,
            server_name: None,
        }
    }

    /// Checks every broker's certificate against `name` instead of the address's host (for
    /// brokers reached by an IP address or through a tunnel whose certificate names the
    /// cluster). An empty `name` restores the default.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.server_name = (!name.is_empty()).then_some(name);
        self
    }

    /// The server name override, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The name the certificate of the broker at `address` must carry.
    fn name_for(&self, address: &str) -> io::Result<ServerName<'static>> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => host_of(address),
        };
        ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} (from {address:?}) is not a valid TLS server name: {e}"),
            )
        })
    }

    /// TCP to `address`, then the TLS handshake.
    pub async fn connect_tls(
        &self,
        address: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self.name_for(address)?;
        let stream = TcpStream::connect(address).await?;
        if let Err(e) = stream.set_nodelay(true) {
            debug!(address, error = %e, "could not set TCP_NODELAY");
        }
        RustlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {address}: {e}")))
    }
}

impl Connector for TlsConnector {
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = self.connect_tls(address).await?;
            Ok(Box::new(stream) as Box<dyn Transport>)
        })
    }
}

/// The host of `host:port` or `[v6]:port` (the whole string when there is no port).
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host;
    }
    match address.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        Some(_) | None => address,
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_strips_the_port() {
        assert_eq!(host_of("broker-1.example.com:9093"), "broker-1.example.com");
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
