//! The log of one partition: a directory of segments, the append and read paths, recovery at
//! open, durability bookkeeping (durable offset, high watermark, `acks=all` waiters) and the
//! DeleteRecords / close / delete operations.
//!
//! Locking: all mutable state sits behind one `std::sync::Mutex` held only for in-memory work
//! and page-cache writes, never across an `.await` or an fsync of segment data. Reads copy what
//! they need (an `Arc<File>`, positions) under the lock and do their I/O after releasing it.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::records::{
    BATCH_HEADER_LEN, BatchHeader, LOG_OVERHEAD, RawBatch, RawBatches, TimestampType, batch_crc,
    set_base_offset, set_partition_leader_epoch,
};
use tokio::sync::{oneshot, watch};

use super::checkpoint::{self, CLEAN_SHUTDOWN_FILE, PRODUCER_SNAPSHOT_FILE};
use super::config::{FlushMode, LogConfig};
use super::error::{LogError, Result};
use super::flush::FlushShared;
use super::now_ms;
use super::producer_state::{PendingProducerUpdates, ProducerStateManager, SequenceCheck};
use super::segment::{
    self, BatchScanner, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, ScanStop, Segment,
    TIME_INDEX_SUFFIX,
};

/// Leader epoch stamped into stored batches (a single-node broker never changes leader).
pub const LEADER_EPOCH: i32 = 0;

/// Most segments one read walks through.
const MAX_SEGMENTS_PER_READ: usize = 8;

/// How long an idle idempotent producer's state is kept (Kafka's
/// `producer.id.expiration.ms` default, one day).
pub(crate) const PRODUCER_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// Broker time stamped into the batches, or -1 when the topic uses CreateTime.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// True when the request was a retry of batches already stored: nothing was written and
    /// the offsets are those of the original.
    pub duplicate: bool,
}

/// Result of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, byte for byte as stored.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// No transactions: equal to the high watermark.
    pub last_stable_offset: i64,
}

type Waiter = oneshot::Sender<std::result::Result<(), String>>;
/// Resolves once the fsync covering an append is done (Err: why it never will be).
type FsyncWait = oneshot::Receiver<std::result::Result<(), String>>;

/// Mutable state of a partition log.
pub(crate) struct LogState {
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start: i64,
    pub(crate) log_end: i64,
    /// Everything below is fsynced.
    pub(crate) durable: i64,
    pub(crate) producers: ProducerStateManager,
    /// `acks=all` producers by the end offset they wait for.
    waiters: BTreeMap<i64, Vec<Waiter>>,
    /// Rolled segments whose data may not be on disk yet.
    unsynced: Vec<(PathBuf, Arc<File>)>,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    pub(crate) offline: Option<String>,
    pub(crate) closed: bool,
    /// End offset of the range the last compaction pass covered (in memory only: the first
    /// pass after a restart compacts everything once).
    pub(crate) cleaned_upto: i64,
}

impl LogState {
    pub(crate) fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    fn active_mut(&mut self) -> Option<&mut Segment> {
        self.segments.values_mut().next_back()
    }

    pub(crate) fn total_size(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

/// Shared part of a [`Partition`].
pub(crate) struct PartitionInner {
    id: u64,
    dir: PathBuf,
    mode: FlushMode,
    flusher: Arc<FlushShared>,
    config: Mutex<LogConfig>,
    state: Mutex<LogState>,
    /// Serialises fsync rounds (flusher thread vs. explicit `flush()`).
    flush_lock: Mutex<()>,
    hw_tx: watch::Sender<i64>,
    log_start: AtomicI64,
    log_end: AtomicI64,
    high_watermark: AtomicI64,
    size: AtomicU64,
}

/// The log of one partition. Cheap to clone; all clones share the same log.
#[derive(Clone)]
pub struct Partition {
    pub(crate) inner: Arc<PartitionInner>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("dir", &self.inner.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .field("high_watermark", &self.high_watermark())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn protocol_error(index: usize, e: ProtocolError) -> LogError {
    match e {
        ProtocolError::UnsupportedMagic(m) => LogError::UnsupportedMagic(m),
        ProtocolError::CrcMismatch { stored, computed } => LogError::CrcMismatch {
            index,
            stored,
            computed,
        },
        other => LogError::Corrupt(format!("record batch {index}: {other}")),
    }
}

/// Checks a produced record set and returns each batch's byte range and header.
fn validate_request(
    records: &Bytes,
    config: &LogConfig,
) -> Result<Vec<(Range<usize>, BatchHeader)>> {
    if records.is_empty() {
        return Err(LogError::Corrupt("the record set holds no batch".into()));
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut batches = RawBatches::new(records.clone());
    for (i, batch) in batches.by_ref().enumerate() {
        let batch = batch.map_err(|e| protocol_error(i, e))?;
        let h = *batch.header();
        let len = h.total_len();
        if len > config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                size: len,
                max: config.max_message_bytes,
            });
        }
        if len as u64 > config.segment_bytes {
            return Err(LogError::MessageTooLarge {
                size: len,
                max: usize::try_from(config.segment_bytes).unwrap_or(usize::MAX),
            });
        }
        batch.verify_crc().map_err(|e| protocol_error(i, e))?;
        if h.records_count <= 0 {
            return Err(LogError::InvalidRecord(format!(
                "record batch {i} holds no records"
            )));
        }
        if i64::from(h.last_offset_delta) != i64::from(h.records_count) - 1 {
            return Err(LogError::InvalidRecord(format!(
                "record batch {i} has {} records but a last offset delta of {}",
                h.records_count, h.last_offset_delta
            )));
        }
        if h.is_control() {
            return Err(LogError::InvalidRecord(format!(
                "record batch {i} is a control batch; producers cannot write control records"
            )));
        }
        h.compression().map_err(|e| protocol_error(i, e))?;
        if config.cleanup_policy.compacts() {
            check_keys(i, &batch)?;
        } else {
            // As Kafka does on append: the records must decode (decompressing if needed),
            // so a consumer is never handed a batch it cannot read.
            batch.records().map_err(|e| {
                LogError::Corrupt(format!("record batch {i}: cannot decode its records: {e}"))
            })?;
        }
        out.push((pos..pos + len, h));
        pos += len;
    }
    if pos != records.len() {
        return Err(LogError::Corrupt(format!(
            "the record set ends with {} bytes that are not a whole record batch",
            records.len() - pos
        )));
    }
    Ok(out)
}

/// Compacted topics need a key on every record. The records must decode (the compactor has
/// to read them later), so a batch that does not is rejected as corrupt.
fn check_keys(index: usize, batch: &RawBatch) -> Result<()> {
    let records = batch.records().map_err(|e| {
        LogError::Corrupt(format!(
            "record batch {index}: cannot decode its records: {e}"
        ))
    })?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err(LogError::InvalidRecord(format!(
            "record batch {index} has a record without a key; compacted topics require keys"
        )));
    }
    Ok(())
}

/// Stamps LogAppendTime into a batch (attributes and max timestamp), recomputing the CRC.
fn stamp_log_append_time(batch: &mut [u8], attributes: i16, now: i64) {
    let attrs = attributes | 0x08;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now.to_be_bytes());
    let crc = batch_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Where one read looks in one segment.
struct ReadPlan {
    file: Arc<File>,
    path: PathBuf,
    start: u64,
    end: u64,
}

fn read_header(file: &File, path: &Path, pos: u64, end: u64) -> Result<BatchHeader> {
    if pos + BATCH_HEADER_LEN as u64 > end {
        return Err(LogError::Corrupt(format!(
            "stored batch header at position {pos} of {} runs past the segment end",
            path.display()
        )));
    }
    let head = Segment::read_at(file, path, pos, BATCH_HEADER_LEN)?;
    let h = BatchHeader::parse(&head).map_err(|e| {
        LogError::Corrupt(format!(
            "stored batch at position {pos} of {}: {e}",
            path.display()
        ))
    })?;
    if pos + h.total_len() as u64 > end {
        return Err(LogError::Corrupt(format!(
            "stored batch at position {pos} of {} runs past the segment end",
            path.display()
        )));
    }
    Ok(h)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl PartitionInner {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, LogState> {
        lock(&self.state)
    }

    fn check_usable(&self, st: &LogState) -> Result<()> {
        if st.closed {
            return Err(LogError::Closed {
                dir: self.dir.clone(),
            });
        }
        if let Some(reason) = &st.offline {
            return Err(LogError::Offline {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Mirrors the offsets of `st` into the lock-free getters.
    pub(crate) fn publish(&self, st: &LogState) {
        self.size.store(st.total_size(), Ordering::Release);
        self.publish_offsets(st);
    }

    /// [`PartitionInner::publish`] without recomputing the size (the append path adds it).
    fn publish_offsets(&self, st: &LogState) {
        self.log_start.store(st.log_start, Ordering::Release);
        self.log_end.store(st.log_end, Ordering::Release);
        let hw = match self.mode {
            FlushMode::Durable => st.durable.min(st.log_end),
            FlushMode::Os => st.log_end,
        };
        if self.high_watermark.swap(hw, Ordering::AcqRel) != hw {
            self.hw_tx.send_replace(hw);
        }
    }

    /// Fails every `acks=all` waiter (the partition went offline or away).
    fn fail_waiters(st: &mut LogState, reason: &str) {
        for (_, ws) in std::mem::take(&mut st.waiters) {
            for w in ws {
                let _ = w.send(Err(reason.to_string()));
            }
        }
    }

    /// Marks the partition offline after a storage failure whose effect on disk is unknown.
    pub(crate) fn go_offline(&self, st: &mut LogState, reason: String) {
        tracing::error!(
            dir = %self.dir.display(),
            %reason,
            "Partition log is going offline after a storage failure."
        );
        Self::fail_waiters(st, &reason);
        st.offline = Some(reason);
    }

    /// One fsync round: syncs rolled segments, the active segment if it holds unsynced data
    /// and the directory if a segment was created, then advances the durable offset.
    pub(crate) fn flush_pending(&self) -> Result<()> {
        let _round = lock(&self.flush_lock);
        let (target, files, dir_dirty) = {
            let mut st = self.lock_state();
            if st.closed {
                return Ok(());
            }
            self.check_usable(&st)?;
            let target = st.log_end;
            let mut files = std::mem::take(&mut st.unsynced);
            if st.durable < target
                && let Some(a) = st.active()
            {
                files.push((a.path.clone(), Arc::clone(&a.file)));
            }
            let dir_dirty = std::mem::replace(&mut st.dir_dirty, false);
            (target, files, dir_dirty)
        };
        let mut result = Ok(());
        let started = std::time::Instant::now();
        for (path, file) in &files {
            if let Err(e) = file.sync_data() {
                result = Err(LogError::io("fsync segment", path, e));
                break;
            }
        }
        if result.is_ok() && dir_dirty {
            result = checkpoint::sync_dir(&self.dir);
        }
        if !files.is_empty() || dir_dirty {
            crate::metrics::observe_fsync(started.elapsed(), result.is_ok());
        }
        let mut st = self.lock_state();
        if let Err(e) = result {
            if st.closed {
                // Closed or deleted meanwhile: nothing left to make durable.
                return Ok(());
            }
            self.go_offline(&mut st, e.to_string());
            return Err(e);
        }
        if target > st.durable {
            st.durable = target;
        }
        let durable = st.durable;
        let rest = st.waiters.split_off(&(durable + 1));
        let done = std::mem::replace(&mut st.waiters, rest);
        self.publish(&st);
        drop(st);
        for w in done.into_values().flatten() {
            let _ = w.send(Ok(()));
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one at the log end offset. The old
    /// segment's data and the directory are fsynced by the flusher.
    pub(crate) fn roll(&self, st: &mut LogState) -> Result<()> {
        let base = st.log_end;
        if let Some(active) = st.active_mut() {
            if active.base == base {
                return Ok(());
            }
            if let Err(e) = active.seal() {
                tracing::warn!(segment = %active.path.display(), error = %e, "Could not write the final time index entry of a rolled segment; it will be rebuilt at recovery.");
            }
            let entry = (active.path.clone(), Arc::clone(&active.file));
            st.unsynced.push(entry);
        }
        let seg = Segment::create(&self.dir, base)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "Rolled a new log segment.");
        st.segments.insert(base, seg);
        st.dir_dirty = true;
        Ok(())
    }

    /// Rolls when the active segment is older than `segment.ms`. Returns true when it rolled.
    pub(crate) fn roll_if_aged(
        &self,
        st: &mut LogState,
        config: &LogConfig,
        now: i64,
    ) -> Result<bool> {
        let due = st.active().is_some_and(|a| {
            a.size > 0
                && a.created_ms
                    .is_some_and(|c| now.saturating_sub(c) >= config.segment_ms)
        });
        if due {
            self.roll(st)?;
        }
        Ok(due)
    }

    /// Deletes the given leading segments (which the caller made non-active) and fsyncs the
    /// directory.
    pub(crate) fn delete_segments(&self, st: &mut LogState, bases: &[i64]) -> Result<()> {
        for base in bases {
            if let Some(seg) = st.segments.remove(base) {
                seg.delete_files()?;
                tracing::info!(
                    dir = %self.dir.display(),
                    base_offset = seg.base,
                    bytes = seg.size,
                    "Deleted a log segment."
                );
            }
        }
        if let Some(first) = st.segments.keys().next() {
            st.log_start = st.log_start.max(*first);
        }
        let start = st.log_start;
        st.producers.truncate_head(start);
        checkpoint::sync_dir(&self.dir)
    }
}

impl Partition {
    /// Opens (creating if needed) the partition log in `dir` and recovers it.
    pub(crate) fn open(
        dir: &Path,
        config: LogConfig,
        mode: FlushMode,
        flusher: Arc<FlushShared>,
        id: u64,
    ) -> Result<Partition> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LogError::io("create partition directory", dir, e))?;
            if let Some(parent) = dir.parent() {
                checkpoint::sync_dir(parent)?;
            }
        }
        let state = recover(dir, &config)?;
        let (hw_tx, _) = watch::channel(state.log_end);
        let inner = Arc::new(PartitionInner {
            id,
            dir: dir.to_path_buf(),
            mode,
            flusher,
            config: Mutex::new(config),
            log_start: AtomicI64::new(state.log_start),
            log_end: AtomicI64::new(state.log_end),
            high_watermark: AtomicI64::new(state.log_end),
            size: AtomicU64::new(state.total_size()),
            state: Mutex::new(state),
            flush_lock: Mutex::new(()),
            hw_tx,
        });
        Ok(Partition { inner })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Validates and appends the batches of one Produce request (see the module docs of
    /// [`crate::log`]). With `acks == -1` in durable mode, resolves only once the data is
    /// fsynced.
    pub async fn append(&self, records: Bytes, acks: i16) -> Result<AppendInfo> {
        let (info, wait) = self.append_no_wait(records, acks)?;
        if let Some(rx) = wait {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(LogError::Offline {
                        dir: self.inner.dir.clone(),
                        reason,
                    });
                }
                Err(_) => {
                    return Err(LogError::Closed {
                        dir: self.inner.dir.clone(),
                    });
                }
            }
        }
        Ok(info)
    }

    /// The synchronous part of [`Partition::append`]: writes and returns, with a receiver to
    /// await when the caller must wait for the fsync.
    fn append_no_wait(&self, records: Bytes, acks: i16) -> Result<(AppendInfo, Option<FsyncWait>)> {
        let inner = &self.inner;
        let config = self.config();
        let batches = validate_request(&records, &config)?;
        let mut data = records.to_vec();
        let wants_durable = acks == -1 && inner.mode == FlushMode::Durable;
        let mut st = inner.lock_state();
        inner.check_usable(&st)?;
        let now = now_ms();
        let append_time = config.message_timestamp_type_log_append;
        let mut next = st.log_end;
        let mut pending = PendingProducerUpdates::default();
        let mut metas = Vec::with_capacity(batches.len());
        for (range, h) in &batches {
            if h.has_producer_id() {
                let check =
                    st.producers
                        .check_and_stage(&mut pending, h, next, st.log_start, now)?;
                if let SequenceCheck::Duplicate(dup) = check {
                    let info = AppendInfo {
                        base_offset: dup.base_offset,
                        last_offset: dup.last_offset,
                        log_append_time: -1,
                        log_start_offset: st.log_start,
                        duplicate: true,
                    };
                    tracing::debug!(
                        dir = %inner.dir.display(),
                        producer_id = h.producer_id,
                        base_sequence = h.base_sequence,
                        base_offset = dup.base_offset,
                        "Answered a retried batch with its original offsets."
                    );
                    let wait = (wants_durable && st.durable <= dup.last_offset).then(|| {
                        let (tx, rx) = oneshot::channel();
                        st.waiters.entry(dup.last_offset + 1).or_default().push(tx);
                        rx
                    });
                    return Ok((info, wait));
                }
            }
            let batch = &mut data[range.clone()];
            set_base_offset(batch, next);
            set_partition_leader_epoch(batch, LEADER_EPOCH);
            let max_ts = if append_time {
                stamp_log_append_time(batch, h.attributes, now);
                now
            } else {
                h.max_timestamp
            };
            let last = next + i64::from(h.last_offset_delta);
            metas.push((range.start, next, last, max_ts));
            next = last + 1;
        }
        let base_offset = st.log_end;
        let last_offset = next - 1;

        // Roll first if the request would overflow the active segment or it is too old.
        // Index positions are 32-bit: never let a segment grow past that.
        let segment_bytes = config.segment_bytes.min(u64::from(u32::MAX));
        let needs_roll = st.active().is_none_or(|a| {
            a.size > 0
                && (a.size + data.len() as u64 > segment_bytes
                    || a.created_ms
                        .is_some_and(|c| now.saturating_sub(c) >= config.segment_ms)
                    || last_offset - a.base > i64::from(i32::MAX))
        });
        let mut want_flush = false;
        if needs_roll {
            inner.roll(&mut st)?;
            want_flush = true;
        }
        let interval = config.index_interval_bytes;
        let written = match st.active_mut() {
            Some(active) => active.append(&data, &metas, interval, now),
            None => Err(LogError::Corrupt("partition has no active segment".into())),
        };
        if let Err(e) = written {
            let size_ok = st
                .active()
                .is_some_and(|a| a.file.metadata().is_ok_and(|m| m.len() == a.size));
            if !size_ok {
                inner.go_offline(&mut st, e.to_string());
            }
            return Err(e);
        }
        st.log_end = next;
        st.producers.commit(pending);
        let wait = if inner.mode == FlushMode::Durable {
            want_flush = true;
            wants_durable.then(|| {
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(next).or_default().push(tx);
                rx
            })
        } else {
            None
        };
        inner.size.fetch_add(data.len() as u64, Ordering::AcqRel);
        inner.publish_offsets(&st);
        let info = AppendInfo {
            base_offset,
            last_offset,
            log_append_time: if append_time { now } else { -1 },
            log_start_offset: st.log_start,
            duplicate: false,
        };
        drop(st);
        if want_flush {
            self.request_flush();
        }
        Ok((info, wait))
    }

    /// Hands the partition to the flusher thread (or flushes inline once it has stopped).
    pub(crate) fn request_flush(&self) {
        if !self.inner.flusher.request(&self.inner)
            && let Err(e) = self.inner.flush_pending()
        {
            tracing::error!(dir = %self.inner.dir.display(), error = %e, "Inline fsync failed.");
        }
    }

    /// Reads whole batches starting with the one containing `offset`: at least one batch,
    /// then more while the total stays within `max_bytes`, never a batch reaching
    /// `max_offset` (exclusive bound, e.g. the high watermark).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
    ) -> Result<ReadResult> {
        let inner = &self.inner;
        let (plans, log_start) = {
            let st = inner.lock_state();
            if st.closed {
                return Err(LogError::Closed {
                    dir: inner.dir.clone(),
                });
            }
            if offset < st.log_start || offset > st.log_end {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start,
                    log_end: st.log_end,
                });
            }
            let first = st
                .segments
                .range(..=offset)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b);
            let plans: Vec<ReadPlan> = st
                .segments
                .range(first..)
                .take(MAX_SEGMENTS_PER_READ)
                .map(|(_, s)| ReadPlan {
                    file: Arc::clone(&s.file),
                    path: s.path.clone(),
                    start: s.index.lookup(offset),
                    end: s.size,
                })
                .collect();
            (plans, st.log_start)
        };
        let hw = self.high_watermark();
        let result = |records: Bytes| ReadResult {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
            last_stable_offset: hw,
        };
        if max_offset.is_some_and(|m| offset >= m) {
            return Ok(result(Bytes::new()));
        }
        let mut out: Vec<u8> = Vec::new();
        for plan in &plans {
            // Find the first batch whose last offset reaches `offset`.
            let mut pos = plan.start;
            let mut found = None;
            while pos < plan.end {
                let h = read_header(&plan.file, &plan.path, pos, plan.end)?;
                if h.last_offset() >= offset {
                    found = Some(h);
                    break;
                }
                pos += h.total_len() as u64;
            }
            let Some(first) = found else { continue };
            let remaining = plan.end - pos;
            let want = if out.is_empty() {
                max_bytes.max(first.total_len())
            } else {
                max_bytes.saturating_sub(out.len())
            };
            let chunk_len = usize::try_from(remaining).map_or(want, |r| r.min(want));
            if chunk_len < LOG_OVERHEAD {
                break;
            }
            let mut buf = Segment::read_at(&plan.file, &plan.path, pos, chunk_len)?;
            let mut taken = 0usize;
            let mut stop = false;
            while taken + BATCH_HEADER_LEN <= buf.len() {
                let len = be_i32(&buf, taken + 8);
                if len < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
                    return Err(LogError::Corrupt(format!(
                        "stored batch at position {} of {} has length {len}",
                        pos + taken as u64,
                        plan.path.display()
                    )));
                }
                let total = len as usize + LOG_OVERHEAD;
                if taken + total > buf.len() {
                    stop = true;
                    break;
                }
                let last = be_i64(&buf, taken) + i64::from(be_i32(&buf, taken + 23));
                if max_offset.is_some_and(|m| last >= m) {
                    stop = true;
                    break;
                }
                let first_of_all = out.is_empty() && taken == 0;
                if !first_of_all && out.len() + taken + total > max_bytes {
                    stop = true;
                    break;
                }
                taken += total;
            }
            buf.truncate(taken);
            if out.is_empty() {
                out = buf;
            } else {
                out.extend_from_slice(&buf);
            }
            if stop || pos + (taken as u64) < plan.end {
                break;
            }
        }
        Ok(result(Bytes::from(out)))
    }

    /// First offset of the log (raised by retention and DeleteRecords).
    pub fn log_start_offset(&self) -> i64 {
        self.inner.log_start.load(Ordering::Acquire)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.log_end.load(Ordering::Acquire)
    }

    /// Durable mode: one past the last fsynced offset. OS mode: the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.inner.high_watermark.load(Ordering::Acquire)
    }

    /// Receives every high-watermark change (for Fetch long-polling).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.hw_tx.subscribe()
    }

    /// Current configuration.
    pub fn config(&self) -> LogConfig {
        lock(&self.inner.config).clone()
    }

    /// Replaces the configuration (takes effect on the next append / maintenance run).
    pub fn set_config(&self, config: LogConfig) {
        *lock(&self.inner.config) = config;
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    /// (epoch, last sequence) of an idempotent producer, if this partition knows it.
    pub fn producer_state(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.inner.lock_state().producers.get(producer_id)
    }

    /// fsyncs everything written so far now (and advances the durable offset).
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_pending()
    }

    /// DeleteRecords: raises the log start offset to `before_offset` (-1: the high
    /// watermark), persists it, and deletes the segments entirely below it. Returns the new
    /// log start offset (the low watermark).
    pub fn delete_records(&self, before_offset: i64) -> Result<i64> {
        let inner = &self.inner;
        let hw = self.high_watermark();
        let target = if before_offset == -1 {
            hw
        } else {
            before_offset
        };
        let mut st = inner.lock_state();
        inner.check_usable(&st)?;
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset: target,
                log_start: st.log_start,
                log_end: hw,
            });
        }
        if target <= st.log_start {
            return Ok(st.log_start);
        }
        checkpoint::write_log_start(&inner.dir, target)?;
        st.log_start = target;
        let bases: Vec<i64> = st.segments.keys().copied().collect();
        let doomed: Vec<i64> = bases
            .windows(2)
            .take_while(|w| w[1] <= target)
            .map(|w| w[0])
            .collect();
        let result = inner.delete_segments(&mut st, &doomed);
        st.producers.truncate_head(target);
        inner.publish(&st);
        tracing::info!(dir = %inner.dir.display(), log_start_offset = target, segments_deleted = doomed.len(), "Advanced the log start offset (DeleteRecords).");
        result.map(|()| target)
    }

    /// Earliest offset whose record timestamp is >= `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        let (plans, log_start) = {
            let st = self.inner.lock_state();
            if st.closed {
                return None;
            }
            let plans: Vec<ReadPlan> = st
                .segments
                .values()
                .filter(|s| s.offset_of_max_timestamp >= 0 && s.max_timestamp >= timestamp)
                .take(MAX_SEGMENTS_PER_READ)
                .map(|s| {
                    let from = s.time_index.lookup(timestamp).max(st.log_start);
                    ReadPlan {
                        file: Arc::clone(&s.file),
                        path: s.path.clone(),
                        start: s.index.lookup(from),
                        end: s.size,
                    }
                })
                .collect();
            (plans, st.log_start)
        };
        for plan in plans {
            let mut scanner = BatchScanner::new(&plan.file, &plan.path, plan.start, plan.end);
            loop {
                let batch = match scanner.next_batch() {
                    Ok(Some((_, b))) => b,
                    Ok(None) => break,
                    Err(ScanStop::Invalid { position, reason }) => {
                        tracing::warn!(segment = %plan.path.display(), position, %reason, "Invalid stored batch met while searching by timestamp.");
                        break;
                    }
                    Err(ScanStop::Io(e)) => {
                        tracing::warn!(error = %e, "Read failed while searching by timestamp.");
                        return None;
                    }
                };
                let Ok(raw) = RawBatch::new(batch) else { break };
                let h = *raw.header();
                if h.max_timestamp < timestamp || h.last_offset() < log_start {
                    continue;
                }
                return Some(record_at_or_after(&raw, timestamp, log_start));
            }
        }
        None
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let (plan, ts, offset) = {
            let st = self.inner.lock_state();
            let seg = st
                .segments
                .values()
                .filter(|s| s.offset_of_max_timestamp >= 0)
                .fold(None::<&Segment>, |best, s| match best {
                    Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                    _ => Some(s),
                })?;
            let off = seg.offset_of_max_timestamp.max(st.log_start);
            (
                ReadPlan {
                    file: Arc::clone(&seg.file),
                    path: seg.path.clone(),
                    start: seg.index.lookup(off),
                    end: seg.size,
                },
                seg.max_timestamp,
                off,
            )
        };
        let mut scanner = BatchScanner::new(&plan.file, &plan.path, plan.start, plan.end);
        while let Ok(Some((_, batch))) = scanner.next_batch() {
            let Ok(raw) = RawBatch::new(batch) else { break };
            if raw.header().last_offset() >= offset && raw.header().max_timestamp == ts {
                return Some(record_at_or_after(&raw, ts, offset));
            }
        }
        Some((offset, ts))
    }

    /// Cleanly closes the log: fsyncs data and indexes, writes the producer-state snapshot
    /// and the clean-shutdown marker (so the next open skips the full recovery scan). Further
    /// appends fail.
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        inner.flush_pending()?;
        let _round = lock(&inner.flush_lock);
        let mut st = inner.lock_state();
        if st.closed {
            return Ok(());
        }
        inner.check_usable(&st)?;
        if let Some(active) = st.active_mut() {
            active.seal()?;
        }
        for seg in st.segments.values() {
            seg.sync_all()?;
        }
        let snapshot = st.producers.to_snapshot(st.log_end)?;
        checkpoint::write_atomic(&inner.dir, PRODUCER_SNAPSHOT_FILE, &snapshot)?;
        checkpoint::write_atomic(&inner.dir, CLEAN_SHUTDOWN_FILE, b"")?;
        st.closed = true;
        PartitionInner::fail_waiters(&mut st, "partition closed");
        tracing::debug!(dir = %inner.dir.display(), log_end_offset = st.log_end, "Closed partition log cleanly.");
        Ok(())
    }

    /// Deletes the partition (topic deletion): closes files and removes the directory.
    pub fn delete(self) -> Result<()> {
        let inner = &self.inner;
        let _round = lock(&inner.flush_lock);
        let mut st = inner.lock_state();
        st.closed = true;
        st.segments.clear();
        st.unsynced.clear();
        PartitionInner::fail_waiters(&mut st, "partition deleted");
        drop(st);
        match std::fs::remove_dir_all(&inner.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("remove partition directory", &inner.dir, e)),
        }
        if let Some(parent) = inner.dir.parent() {
            checkpoint::sync_dir(parent)?;
        }
        tracing::info!(dir = %inner.dir.display(), "Deleted partition log.");
        Ok(())
    }

    /// True once `close` or `delete` ran.
    pub fn is_closed(&self) -> bool {
        self.inner.lock_state().closed
    }
}

/// First record of `raw` with timestamp >= `timestamp` and offset >= `min_offset`; falls back
/// to the batch's first offset when the records cannot be decoded.
fn record_at_or_after(raw: &RawBatch, timestamp: i64, min_offset: i64) -> (i64, i64) {
    let h = raw.header();
    if h.timestamp_type() == TimestampType::LogAppendTime {
        return (h.base_offset.max(min_offset), h.max_timestamp);
    }
    if let Ok(records) = raw.records() {
        for r in records {
            let off = h.base_offset + i64::from(r.offset_delta);
            let ts = h.base_timestamp + r.timestamp_delta;
            if off >= min_offset && ts >= timestamp {
                return (off, ts);
            }
        }
    }
    (h.base_offset.max(min_offset), h.max_timestamp)
}

/// Names of stray files left by an interrupted compaction or atomic write.
fn is_leftover(name: &str) -> bool {
    name.ends_with(&format!(".{CLEANED_SUFFIX}"))
        || name.ends_with(".tmp")
        || name.ends_with(".swap")
}

/// Builds the in-memory state of the log in `dir` (see the recovery rules in the module docs
/// of [`crate::log`]).
fn recover(dir: &Path, config: &LogConfig) -> Result<LogState> {
    let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| LogError::io("list partition directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list partition directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_leftover(&name) {
            tracing::info!(file = %entry.path().display(), "Removing a leftover file of an interrupted operation.");
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(b) = segment::parse_file_name(&name, LOG_SUFFIX) {
            bases.push(b);
        } else if let Some(b) = segment::parse_file_name(&name, INDEX_SUFFIX)
            .or_else(|| segment::parse_file_name(&name, TIME_INDEX_SUFFIX))
        {
            index_files.push((b, entry.path()));
        }
    }
    bases.sort_unstable();
    for (b, path) in index_files {
        if bases.binary_search(&b).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
    let checkpointed_start = checkpoint::read_log_start(dir)?;
    let interval = config.index_interval_bytes;
    let now = now_ms();
    let mut producers = ProducerStateManager::default();
    let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
    let mut replayed = !clean;
    let mut cut_after: Option<i64> = None;
    let count = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        let mut seg = Segment::open(dir, base)?;
        if cut_after.is_some() {
            seg.delete_files()?;
            tracing::warn!(segment = %seg.path.display(), "Deleting a segment that follows a corrupt one.");
            continue;
        }
        let is_last = i + 1 == count;
        let loaded = clean && seg.load_clean(interval, is_last)?;
        if !loaded {
            if clean {
                tracing::info!(segment = %seg.path.display(), "Index of a cleanly closed segment is inconsistent; rebuilding it from the log.");
            }
            let outcome = seg.recover(interval, |h| producers.replay(h, now))?;
            if outcome.truncated_bytes > 0 && !is_last {
                cut_after = Some(base);
            }
        }
        segments.insert(base, seg);
    }
    // Non-last segments loaded clean end where the next one begins.
    let keys: Vec<i64> = segments.keys().copied().collect();
    for w in keys.windows(2) {
        if let Some(s) = segments.get_mut(&w[0])
            && (s.next_offset == s.base || s.next_offset > w[1])
        {
            s.next_offset = w[1];
        }
    }
    let mut log_start = checkpointed_start.unwrap_or(0);
    if let Some(first) = segments.keys().next() {
        log_start = log_start.max(*first);
    }
    let mut log_end = segments
        .values()
        .next_back()
        .map_or(log_start, |s| s.next_offset);
    if log_start > log_end || segments.is_empty() {
        // Nothing to keep below the log start offset (or an empty directory): start afresh.
        for seg in segments.values() {
            seg.delete_files()?;
        }
        segments.clear();
        producers.clear();
        segments.insert(log_start, Segment::create(dir, log_start)?);
        log_end = log_start;
        replayed = true;
    }
    if !replayed {
        // Clean shutdown: take the snapshot if it covers exactly this log, else replay headers.
        let snap = checkpoint::read_optional(dir, PRODUCER_SNAPSHOT_FILE)?
            .and_then(|b| ProducerStateManager::from_snapshot(&b));
        match snap {
            Some((offset, state)) if offset == log_end => producers = state,
            _ => {
                producers = ProducerStateManager::default();
                for seg in segments.values() {
                    replay_headers(seg, &mut producers, now)?;
                }
            }
        }
    }
    producers.truncate_head(log_start);
    if !clean {
        // Data recovered after a crash may sit only in the page cache.
        for seg in segments.values() {
            seg.sync()?;
        }
    }
    checkpoint::remove_if_exists(dir, PRODUCER_SNAPSHOT_FILE)?;
    checkpoint::remove_if_exists(dir, CLEAN_SHUTDOWN_FILE)?;
    checkpoint::sync_dir(dir)?;
    tracing::info!(
        dir = %dir.display(),
        clean_shutdown = clean,
        segments = segments.len(),
        log_start_offset = log_start,
        log_end_offset = log_end,
        "Opened partition log."
    );
    Ok(LogState {
        segments,
        log_start,
        log_end,
        durable: log_end,
        producers,
        waiters: BTreeMap::new(),
        unsynced: Vec::new(),
        dir_dirty: false,
        offline: None,
        closed: false,
        cleaned_upto: i64::MIN,
    })
}

/// Replays the producer metadata of every batch header of a segment (header reads only).
fn replay_headers(seg: &Segment, producers: &mut ProducerStateManager, now: i64) -> Result<()> {
    let mut pos = 0u64;
    while pos < seg.size {
        let h = read_header(&seg.file, &seg.path, pos, seg.size)?;
        producers.replay(&h, now);
        pos += h.total_len() as u64;
    }
    Ok(())
}
