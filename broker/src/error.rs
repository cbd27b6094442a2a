//! The broker's error type.

use thiserror::Error;

use crate::log::LogError;

/// Errors that stop the broker from starting or from serving a request.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Metadata on disk could not be read or written.
    #[error("topic metadata: {0}")]
    Metadata(String),
    /// A partition log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The consumer-group coordinator failed to start.
    #[error("group coordinator: {0}")]
    Group(String),
    /// A topic that does not exist.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl BrokerError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: &'static str, source: std::io::Error) -> Self {
        BrokerError::Io { what, source }
    }
}
