//! Configuration of partition logs (per topic) and of the log manager (per broker).

use std::time::Duration;

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Group-commit fsync on a dedicated thread; the high watermark only covers fsynced data
    /// and `acks=all` produce requests are answered after the fsync covering them.
    #[default]
    Durable,
    /// Leave flushing to the OS page cache; fsync only when a segment is rolled or closed.
    /// The high watermark is the log end offset right after each write.
    Os,
}

/// Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Delete whole old segments by time and size.
    #[default]
    Delete,
    /// Keep the latest record of every key.
    Compact,
    /// Both: compact, and delete old segments by time and size.
    CompactDelete,
}

impl CleanupPolicy {
    /// True when segments are removed by `retention.ms` / `retention.bytes`.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// True when the log is compacted (records need keys).
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// Per-partition log settings (Kafka topic configs of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before the active one would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a segment this long after its first append.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older than this; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    pub index_interval_bytes: usize,
    /// `message.timestamp.type=LogAppendTime` when true, `CreateTime` when false.
    pub message_timestamp_type_log_append: bool,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            message_timestamp_type_log_append: false,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 86_400_000,
        }
    }
}

/// Broker-wide settings of the [`LogManager`](super::LogManager).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogManagerConfig {
    /// Durable (group-commit fsync) or OS-managed flushing.
    pub flush_mode: FlushMode,
    /// Group-commit window: how long the flusher waits after the first pending write to
    /// gather more before it fsyncs.
    pub flush_window: Duration,
}

impl Default for LogManagerConfig {
    fn default() -> Self {
        LogManagerConfig {
            flush_mode: FlushMode::Durable,
            flush_window: Duration::from_millis(2),
        }
    }
}
