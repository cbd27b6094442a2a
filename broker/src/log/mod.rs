//! The partition log of the single-node broker, in Kafka's on-disk layout.
//!
//! Each partition lives in its own directory (`<data-dir>/<topic>-<partition>`) holding
//! segments named by their 20-digit zero-padded base offset: `<base>.log` (record batches
//! stored byte for byte as produced, after offset assignment), the sparse `<base>.index` and
//! `<base>.timeindex`, plus a `log-start-offset` checkpoint, a `.clean_shutdown` marker and a
//! producer-state snapshot while the log is cleanly closed.
//!
//! - [`Partition::append`] validates the batches of a Produce request (whole v2 batches,
//!   CRC32C, size, record count, keys on compacted topics, idempotent-producer sequences),
//!   assigns offsets in place (the CRC does not cover them; LogAppendTime does change the CRC)
//!   and writes them to the active segment, rolling first when needed.
//! - [`Partition::read`] returns whole batches starting with the one containing the offset.
//! - Durability ([`FlushMode`]): in durable mode a dedicated flusher thread group-commits
//!   fsyncs; the high watermark only covers fsynced data and `acks=all` appends resolve after
//!   the fsync covering them. In OS mode the page cache decides and the high watermark is the
//!   log end offset.
//! - Recovery at open: after a clean shutdown the indexes are trusted if sane and only the tail
//!   of the last segment is scanned; after a crash every segment is scanned, CRCs verified, a
//!   torn or corrupt tail truncated (segments after it dropped) and indexes and producer state
//!   rebuilt.
//! - Maintenance ([`LogManager::start_background`]): segment roll by age, retention by time
//!   and size, compaction, expiry of idle producer ids.

mod checkpoint;
mod cleaner;
mod config;
mod error;
mod flush;
mod index;
mod partition;
mod producer_state;
mod segment;
#[cfg(test)]
mod test_util;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

pub use cleaner::CompactionStats;
pub use config::{CleanupPolicy, FlushMode, LogConfig, LogManagerConfig};
pub use error::LogError;
pub use partition::{AppendInfo, LEADER_EPOCH, Partition, ReadResult};

use flush::FlushShared;
use partition::PartitionInner;

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct ManagerInner {
    config: LogManagerConfig,
    flusher: Arc<FlushShared>,
    flusher_thread: Mutex<Option<JoinHandle<()>>>,
    partitions: Mutex<Vec<Weak<PartitionInner>>>,
    next_id: AtomicU64,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ManagerInner {
    fn stop_threads(&self) {
        if let Some(task) = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.flusher.shutdown();
        let thread = self
            .flusher_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("The log flusher thread panicked.");
        }
    }
}

impl Drop for ManagerInner {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Owns the flusher thread and the maintenance task, and opens partition logs. Cheap to
/// clone.
#[derive(Clone)]
pub struct LogManager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl LogManager {
    /// Starts the flusher thread.
    pub fn new(cfg: LogManagerConfig) -> Self {
        let flusher = Arc::new(FlushShared::new(cfg.flush_window));
        let thread = match flush::spawn(Arc::clone(&flusher)) {
            Ok(t) => Some(t),
            Err(e) => {
                // Without the thread, partitions fsync inline on the appending task.
                tracing::error!(error = %e, "Could not start the log flusher thread; appends will fsync inline.");
                flusher.shutdown();
                None
            }
        };
        LogManager {
            inner: Arc::new(ManagerInner {
                config: cfg,
                flusher,
                flusher_thread: Mutex::new(thread),
                partitions: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                background: Mutex::new(None),
            }),
        }
    }

    /// The manager's configuration.
    pub fn config(&self) -> &LogManagerConfig {
        &self.inner.config
    }

    /// Opens the partition log in `dir` (created if missing), running recovery. Opening a
    /// directory that is already open through this manager returns the open partition with
    /// `config` applied.
    pub fn open_partition(&self, dir: &Path, config: LogConfig) -> Result<Partition, LogError> {
        let mut parts = self
            .inner
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        parts.retain(|w| w.strong_count() > 0);
        for w in parts.iter() {
            if let Some(inner) = w.upgrade() {
                let p = Partition { inner };
                if p.dir() == dir && !p.is_closed() {
                    p.set_config(config);
                    return Ok(p);
                }
            }
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let p = Partition::open(
            dir,
            config,
            self.inner.config.flush_mode,
            Arc::clone(&self.inner.flusher),
            id,
        )?;
        parts.push(Arc::downgrade(&p.inner));
        Ok(p)
    }

    /// Spawns the periodic maintenance task on the current tokio runtime: every
    /// `check_interval`, for each partition returned by `partitions`, roll by age, retention,
    /// compaction and producer-id expiry (run on the blocking pool). Replaces a previously
    /// started task. Outside a tokio runtime this logs an error and does nothing.
    pub fn start_background(
        &self,
        partitions: impl Fn() -> Vec<Partition> + Send + Sync + 'static,
        check_interval: Duration,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "LogManager::start_background needs a tokio runtime; log maintenance is not running."
            );
            return;
        };
        let partitions = Arc::new(partitions);
        let task = handle.spawn(async move {
            let mut ticker = tokio::time::interval(check_interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let parts = Arc::clone(&partitions);
                let run = tokio::task::spawn_blocking(move || {
                    for p in parts() {
                        if let Err(e) = p.maintain() {
                            tracing::warn!(dir = %p.dir().display(), error = %e, "Log maintenance failed; will retry.");
                        }
                    }
                });
                if let Err(e) = run.await {
                    tracing::error!(error = %e, "Log maintenance task panicked.");
                }
            }
        });
        let old = self
            .inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Clean shutdown: stops maintenance, drains the flusher and closes every partition
    /// opened through this manager (fsync + clean-shutdown marker). Returns the first error.
    pub fn shutdown(&self) -> Result<(), LogError> {
        self.inner.stop_threads();
        let parts: Vec<Partition> = self
            .inner
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| Partition { inner })
            .collect();
        let mut first_err = None;
        for p in parts {
            if p.is_closed() {
                continue;
            }
            if let Err(e) = p.close() {
                tracing::error!(dir = %p.dir().display(), error = %e, "Could not close partition log cleanly; it will be fully recovered at the next start.");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
