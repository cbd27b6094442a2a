//! Errors of the partition log and their Kafka error codes.

use std::path::PathBuf;

use gatehouse_protocol::ErrorCode;
use thiserror::Error;

/// Everything an append, read or maintenance operation on a partition log can fail with.
#[derive(Debug, Error)]
pub enum LogError {
    /// A file operation failed (disk full, permissions, a vanished directory...).
    #[error("I/O error while trying to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A produced record set is not a sequence of whole, well-formed v2 batches.
    #[error("corrupt record set: {0}")]
    Corrupt(String),
    /// A produced batch's CRC32C does not match its contents (damaged in transit).
    #[error(
        "record batch {index} of the request failed its CRC check (stored {stored:#010x}, computed {computed:#010x}); the producer should resend it"
    )]
    CrcMismatch {
        index: usize,
        stored: u32,
        computed: u32,
    },
    /// A batch is not in the v2 format (magic 2) this broker stores.
    #[error(
        "record batch uses magic {0}; only the v2 format (magic 2, Kafka >= 0.11 clients) is supported"
    )]
    UnsupportedMagic(i8),
    /// A batch is larger than `max.message.bytes` (or than `segment.bytes`).
    #[error(
        "record batch of {size} bytes exceeds the limit of {max} bytes; raise max.message.bytes on the topic or send smaller batches"
    )]
    MessageTooLarge { size: usize, max: usize },
    /// A batch is well-formed but not acceptable (no records, no key on a compacted topic...).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// An idempotent producer skipped or reordered sequence numbers.
    #[error(
        "out of order sequence number for producer {producer_id} (epoch {epoch}): expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        received: i32,
    },
    /// An idempotent producer wrote with an epoch older than the one already seen (fenced).
    #[error(
        "producer {producer_id} used epoch {epoch}, but epoch {current} is already in use: a newer producer instance has fenced this one"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// An offset outside `[log_start, log_end]` (or a DeleteRecords offset beyond the high
    /// watermark).
    #[error(
        "offset {offset} is out of range: the log holds offsets {log_start} to {log_end} (exclusive end)"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// An earlier fsync or write failed; the partition refuses writes until it is reopened,
    /// because what reached the disk is unknown.
    #[error(
        "partition log in {} is offline after a storage failure ({reason}); check the disk and restart the broker",
        dir.display()
    )]
    Offline { dir: PathBuf, reason: String },
    /// The partition was closed or deleted.
    #[error("partition log in {} is closed or deleted", dir.display())]
    Closed { dir: PathBuf },
}

impl LogError {
    /// The Kafka error code to answer a request with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LogError::Io { .. } | LogError::Offline { .. } => ErrorCode::UnknownServerError,
            LogError::Corrupt(_) | LogError::CrcMismatch { .. } => ErrorCode::CorruptMessage,
            LogError::UnsupportedMagic(_) => ErrorCode::UnsupportedForMessageFormat,
            LogError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            LogError::InvalidRecord(_) => ErrorCode::InvalidRecord,
            LogError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::Closed { .. } => ErrorCode::NotLeaderOrFollower,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
