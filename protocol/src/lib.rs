//! # gatehouse-protocol
//!
//! Everything Gatehouse knows about the Kafka wire format, with no I/O outside [`client`]:
//!
//! - [`frame`]: size-prefixed frames with a configurable maximum size.
//! - [`header`]: peeking a request header (API key, version, correlation id, client id) without
//!   decoding the body, and encoding responses with the right response-header version
//!   (ApiVersions always uses header v0).
//! - [`records`]: our own RecordBatch v2 codec over [`bytes::Bytes`]: batch headers, CRC32C,
//!   records with every header kept in order, gzip/snappy/lz4/zstd.
//! - [`client`]: a small async Kafka client (connect, ApiVersions, Metadata, Produce, Fetch,
//!   ListOffsets, group membership, SASL PLAIN and SCRAM-SHA-256/512 authentication) for
//!   upstream connections and internal topics.
//!
//! Request and response bodies use the generated codecs of the `kafka-protocol` crate, re-exported
//! as [`messages`] so that every crate agrees on one version of them.
//!
//! Start reading at [`header::RequestHeaderPeek`] and [`records::BatchHeader`].

pub mod client;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod records;

pub use error::{ErrorCode, ProtocolError};
pub use kafka_protocol;
pub use kafka_protocol::messages;
