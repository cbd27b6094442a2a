//! Log maintenance: segment roll by age, retention (time and size), compaction and expiry of
//! idle producer ids. Runs on the blocking pool, driven by
//! [`LogManager::start_background`](super::LogManager::start_background); each step is also
//! callable directly.
//!
//! Compaction (for `cleanup.policy=compact`) rewrites closed segments old enough
//! (`min.compaction.lag.ms`) to keep only the latest record of each key, dropping tombstones
//! older than `delete.retention.ms`. Surviving records keep their offsets: runs of consecutive
//! survivors of one batch are re-encoded into a batch of their own (same codec, timestamps,
//! headers and producer fields); a batch that loses nothing is copied unchanged, and so is the
//! latest batch of every known idempotent producer (its sequence numbers must survive a
//! restart). The cleaned segment is written to `<base>.log.cleaned` (+ indexes), fsynced and
//! renamed over the original, then the directory is fsynced; a crash in between leaves either
//! the old or the new segment plus leftovers that the next open removes.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_protocol::records::{BatchBuilder, RawBatch, Record, TimestampType};

use super::checkpoint;
use super::config::LogConfig;
use super::error::{LogError, Result};
use super::now_ms;
use super::partition::{PRODUCER_EXPIRATION_MS, Partition};
use super::segment::{
    BatchScanner, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, ScanStop, Segment, TIME_INDEX_SUFFIX,
    file_path,
};

/// Share of not-yet-compacted bytes that triggers a background compaction pass.
pub(crate) const MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Records dropped (older values and expired tombstones).
    pub records_removed: u64,
    /// Segment bytes before and after, over the rewritten segments.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A closed segment taken for cleaning.
struct Candidate {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Arc<File>,
    path: PathBuf,
}

fn scan_batches(c: &Candidate, mut f: impl FnMut(RawBatch) -> Result<()>) -> Result<()> {
    let mut scanner = BatchScanner::new(&c.file, &c.path, 0, c.size);
    loop {
        match scanner.next_batch() {
            Ok(Some((_, bytes))) => {
                let raw = RawBatch::new(bytes).map_err(|e| {
                    LogError::Corrupt(format!("stored batch in {}: {e}", c.path.display()))
                })?;
                f(raw)?;
            }
            Ok(None) => return Ok(()),
            Err(ScanStop::Invalid { position, reason }) => {
                return Err(LogError::Corrupt(format!(
                    "stored batch at position {position} of {}: {reason}",
                    c.path.display()
                )));
            }
            Err(ScanStop::Io(e)) => return Err(e),
        }
    }
}

/// Decodes a stored batch's records; None (with a warning) when they cannot be decoded, in
/// which case compaction leaves the batch untouched.
fn decode(raw: &RawBatch, path: &std::path::Path) -> Option<Vec<Record>> {
    match raw.records() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(
                segment = %path.display(),
                base_offset = raw.header().base_offset,
                error = %e,
                "Cannot decode a stored batch; compaction keeps it as it is."
            );
            None
        }
    }
}

/// Re-encodes the records `run` (consecutive offsets) of `raw` as one batch.
fn rebuild(raw: &RawBatch, run: &[&Record]) -> Result<Bytes> {
    let h = raw.header();
    let Some(first) = run.first() else {
        return Err(LogError::Corrupt("empty run of records".into()));
    };
    let codec = h
        .compression()
        .map_err(|e| LogError::Corrupt(e.to_string()))?;
    let mut b = BatchBuilder::new()
        .compression(codec)
        .base_offset(first.offset(h))
        .partition_leader_epoch(h.partition_leader_epoch)
        .transactional(h.is_transactional());
    if h.has_producer_id() {
        let seq = if h.base_sequence < 0 {
            -1
        } else {
            ((i64::from(h.base_sequence) + i64::from(first.offset_delta))
                % (i64::from(i32::MAX) + 1)) as i32
        };
        b = b.producer(h.producer_id, h.producer_epoch, seq);
    }
    if h.timestamp_type() == TimestampType::LogAppendTime {
        b = b.log_append_time(h.max_timestamp);
    }
    for r in run {
        b.push_record(r, r.timestamp(h))
            .map_err(|e| LogError::Corrupt(format!("cannot re-encode a record: {e}")))?;
    }
    b.build()
        .map_err(|e| LogError::Corrupt(format!("cannot re-encode a batch: {e}")))
}

impl Partition {
    /// One maintenance pass: roll by age, retention, compaction, producer-id expiry.
    pub fn maintain(&self) -> Result<()> {
        let config = self.config();
        let now = now_ms();
        {
            let inner = &self.inner;
            let mut st = inner.lock_state();
            if st.closed || st.offline.is_some() {
                return Ok(());
            }
            let rolled = inner.roll_if_aged(&mut st, &config, now)?;
            st.producers.expire(now - PRODUCER_EXPIRATION_MS);
            drop(st);
            if rolled {
                self.request_flush();
            }
        }
        if config.cleanup_policy.deletes() {
            self.apply_retention()?;
        }
        if config.cleanup_policy.compacts() && self.compaction_due(&config) {
            self.compact()?;
        }
        Ok(())
    }

    /// True when the closed segments written since the last compaction pass make up at least
    /// [`MIN_CLEANABLE_DIRTY_RATIO`] of the cleanable bytes (Kafka's
    /// `min.cleanable.dirty.ratio` default).
    pub(crate) fn compaction_due(&self, config: &LogConfig) -> bool {
        let lag_cutoff = now_ms().saturating_sub(config.min_compaction_lag_ms);
        let st = self.inner.lock_state();
        let closed = st.segments.len().saturating_sub(1);
        let (mut dirty, mut total) = (0u64, 0u64);
        for s in st
            .segments
            .values()
            .take(closed)
            .take_while(|s| s.max_timestamp <= lag_cutoff)
        {
            total += s.size;
            if s.next_offset > st.cleaned_upto {
                dirty += s.size;
            }
        }
        dirty > 0 && dirty as f64 >= total as f64 * MIN_CLEANABLE_DIRTY_RATIO
    }

    /// Deletes the oldest segments past `retention.ms` or beyond `retention.bytes` (only
    /// data below the high watermark; the active segment is rolled first when it must go).
    /// Returns the number of segments deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        let config = self.config();
        if !config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let now = now_ms();
        let hw = self.high_watermark();
        let inner = &self.inner;
        let mut st = inner.lock_state();
        if st.closed || st.offline.is_some() {
            return Ok(0);
        }
        let segs: Vec<(i64, u64, i64, i64)> = st
            .segments
            .values()
            .map(|s| {
                let ts = if s.offset_of_max_timestamp >= 0 && s.max_timestamp >= 0 {
                    s.max_timestamp
                } else {
                    s.created_ms.unwrap_or(now)
                };
                (s.base, s.size, ts, s.next_offset)
            })
            .collect();
        let last = segs.len().saturating_sub(1);
        // The active segment may only go when it has data, all of it below the high watermark.
        let allowed = |i: usize| {
            let (_, size, _, next) = segs[i];
            next <= hw && (i < last || size > 0)
        };
        let mut n = 0;
        let mut why = "";
        if config.retention_ms >= 0 {
            let cutoff = now.saturating_sub(config.retention_ms);
            while n < segs.len() && allowed(n) && segs[n].2 < cutoff {
                n += 1;
                why = "retention.ms";
            }
        }
        if config.retention_bytes >= 0 {
            let total: u64 = segs[n..].iter().map(|s| s.1).sum();
            let mut excess = total as i128 - i128::from(config.retention_bytes);
            while n < segs.len() && allowed(n) && excess - i128::from(segs[n].1) >= 0 {
                excess -= i128::from(segs[n].1);
                n += 1;
                why = "retention.bytes";
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let mut rolled = false;
        if n == segs.len() {
            inner.roll(&mut st)?;
            rolled = true;
        }
        let bases: Vec<i64> = segs[..n].iter().map(|s| s.0).collect();
        let result = inner.delete_segments(&mut st, &bases);
        inner.publish(&st);
        let log_start = st.log_start;
        drop(st);
        if rolled {
            self.request_flush();
        }
        result?;
        tracing::info!(
            dir = %inner.dir().display(),
            segments = n,
            log_start_offset = log_start,
            reason = why,
            "Retention deleted old log segments."
        );
        Ok(n)
    }

    /// Compacts the closed segments (see the module docs). Does nothing unless the cleanup
    /// policy includes `compact`.
    pub fn compact(&self) -> Result<CompactionStats> {
        let config = self.config();
        let mut stats = CompactionStats::default();
        if !config.cleanup_policy.compacts() {
            return Ok(stats);
        }
        let now = now_ms();
        let inner = &self.inner;
        let (candidates, protected) = {
            let st = inner.lock_state();
            if st.closed || st.offline.is_some() {
                return Ok(stats);
            }
            let lag_cutoff = now.saturating_sub(config.min_compaction_lag_ms);
            let closed = st.segments.len().saturating_sub(1);
            let candidates: Vec<Candidate> = st
                .segments
                .values()
                .take(closed)
                .take_while(|s| s.max_timestamp <= lag_cutoff)
                .map(|s| Candidate {
                    next_offset: s.next_offset,
                    base: s.base,
                    size: s.size,
                    file: Arc::clone(&s.file),
                    path: s.path.clone(),
                })
                .collect();
            (candidates, st.producers.last_offsets())
        };
        let Some(covered_end) = candidates.last().map(|c| c.next_offset) else {
            return Ok(stats);
        };

        // Pass 1: the latest offset of every key in the cleanable range.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for c in &candidates {
            scan_batches(c, |raw| {
                if raw.header().is_control() {
                    return Ok(());
                }
                for r in decode(&raw, &c.path).unwrap_or_default() {
                    if let Some(k) = &r.key {
                        let off = r.offset(raw.header());
                        let e = latest.entry(k.clone()).or_insert(off);
                        *e = (*e).max(off);
                    }
                }
                Ok(())
            })?;
        }
        let tombstone_cutoff = now.saturating_sub(config.delete_retention_ms);

        // Pass 2: rewrite each segment that loses something.
        for c in &candidates {
            let mut out: Vec<Bytes> = Vec::new();
            let mut removed = 0u64;
            scan_batches(c, |raw| {
                let h = *raw.header();
                if h.is_control()
                    || (h.has_producer_id()
                        && protected.contains(&(h.producer_id, h.last_offset())))
                {
                    out.push(raw.bytes().clone());
                    return Ok(());
                }
                let Some(records) = decode(&raw, &c.path) else {
                    out.push(raw.bytes().clone());
                    return Ok(());
                };
                let keep: Vec<bool> = records
                    .iter()
                    .map(|r| match &r.key {
                        // Keyless records cannot be compacted away meaningfully; keep them.
                        None => true,
                        Some(k) => {
                            let off = r.offset(&h);
                            latest.get(k).is_none_or(|&l| l == off)
                                && (r.value.is_some() || r.timestamp(&h) >= tombstone_cutoff)
                        }
                    })
                    .collect();
                let dropped = keep.iter().filter(|k| !**k).count() as u64;
                if dropped == 0 {
                    out.push(raw.bytes().clone());
                    return Ok(());
                }
                removed += dropped;
                // Group survivors into runs of consecutive offsets.
                let mut run: Vec<&Record> = Vec::new();
                for (r, k) in records.iter().zip(&keep) {
                    if !*k {
                        if !run.is_empty() {
                            out.push(rebuild(&raw, &run)?);
                            run.clear();
                        }
                        continue;
                    }
                    if let Some(prev) = run.last()
                        && prev.offset_delta + 1 != r.offset_delta
                    {
                        out.push(rebuild(&raw, &run)?);
                        run.clear();
                    }
                    run.push(r);
                }
                if !run.is_empty() {
                    out.push(rebuild(&raw, &run)?);
                }
                Ok(())
            })?;
            if removed == 0 {
                continue;
            }
            let after = self.replace_segment(c, &out, config.index_interval_bytes)?;
            if let Some(after) = after {
                stats.segments_cleaned += 1;
                stats.records_removed += removed;
                stats.bytes_before += c.size;
                stats.bytes_after += after;
            }
        }
        {
            let mut st = inner.lock_state();
            st.cleaned_upto = st.cleaned_upto.max(covered_end);
        }
        if stats.segments_cleaned > 0 {
            tracing::info!(
                dir = %inner.dir().display(),
                segments = stats.segments_cleaned,
                records_removed = stats.records_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                "Compacted log segments."
            );
        }
        Ok(stats)
    }

    /// Writes `batches` as the cleaned version of segment `c` and swaps it in. Returns the new
    /// size, or None when the segment went away meanwhile.
    fn replace_segment(
        &self,
        c: &Candidate,
        batches: &[Bytes],
        interval: usize,
    ) -> Result<Option<u64>> {
        let inner = &self.inner;
        let dir = inner.dir().to_path_buf();
        let cleaned = |suffix: &str| {
            let mut p = file_path(&dir, c.base, suffix).into_os_string();
            p.push(".");
            p.push(CLEANED_SUFFIX);
            PathBuf::from(p)
        };
        let mut seg = Segment::open_with_paths(
            c.base,
            cleaned(LOG_SUFFIX),
            cleaned(INDEX_SUFFIX),
            cleaned(TIME_INDEX_SUFFIX),
        )?;
        seg.truncate_to(0, c.base)?;
        let total: usize = batches.iter().map(Bytes::len).sum();
        let mut data = Vec::with_capacity(total);
        let mut metas = Vec::with_capacity(batches.len());
        for b in batches {
            let raw = RawBatch::new(b.clone()).map_err(|e| LogError::Corrupt(e.to_string()))?;
            let h = raw.header();
            metas.push((data.len(), h.base_offset, h.last_offset(), h.max_timestamp));
            data.extend_from_slice(b);
        }
        let discard = |seg: &Segment| {
            if let Err(e) = seg.delete_files() {
                tracing::warn!(error = %e, "Could not remove a cleaned segment that is no longer needed.");
            }
        };
        let written = if data.is_empty() {
            Ok(())
        } else {
            seg.append(&data, &metas, interval, now_ms())
        };
        if let Err(e) = written
            .and_then(|()| seg.seal())
            .and_then(|()| seg.sync_all())
        {
            discard(&seg);
            return Err(e);
        }

        let mut st = inner.lock_state();
        let still_there = !st.closed
            && st
                .segments
                .get(&c.base)
                .is_some_and(|s| s.size == c.size && Arc::ptr_eq(&s.file, &c.file));
        if !still_there {
            drop(st);
            discard(&seg);
            return Ok(None);
        }
        let is_first = st.segments.keys().next() == Some(&c.base);
        let old_next = st.segments.get(&c.base).map_or(c.base, |s| s.next_offset);
        if seg.size == 0 && !is_first {
            // Nothing left: drop the segment (offsets keep a gap, reads skip it).
            discard(&seg);
            inner.delete_segments(&mut st, &[c.base])?;
            inner.publish(&st);
            return Ok(Some(0));
        }
        let renames = [
            (seg.path.clone(), file_path(&dir, c.base, LOG_SUFFIX)),
            (
                seg.index.path().to_path_buf(),
                file_path(&dir, c.base, INDEX_SUFFIX),
            ),
            (
                seg.time_index.path().to_path_buf(),
                file_path(&dir, c.base, TIME_INDEX_SUFFIX),
            ),
        ];
        for (from, to) in &renames {
            if let Err(e) = std::fs::rename(from, to) {
                // Some files may already be swapped: the old segment object still reads its
                // (unlinked) file, and the next open rebuilds indexes from whatever is on disk.
                let err = LogError::io("rename cleaned segment", to, e);
                inner.go_offline(&mut st, err.to_string());
                return Err(err);
            }
        }
        let [(_, log_path), (_, index_path), (_, time_path)] = renames;
        seg.set_path(log_path);
        seg.set_index_paths(index_path, time_path);
        seg.next_offset = old_next;
        let size = seg.size;
        st.segments.insert(c.base, seg);
        inner.publish(&st);
        drop(st);
        checkpoint::sync_dir(&dir)?;
        Ok(Some(size))
    }
}
