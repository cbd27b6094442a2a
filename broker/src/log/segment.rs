//! One log segment: a `<base>.log` file of record batches stored back to back, with its sparse
//! `.index` and `.timeindex`.
//!
//! Batches are written with positional writes at the segment's size and read with
//! `FileExt::read_at`, so readers never share or move a file cursor. The file handle is an
//! `Arc<File>`: readers and the flusher keep using it without holding the partition lock, even
//! after the segment was deleted or replaced by compaction (they then see the old contents).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_protocol::records::{BATCH_HEADER_LEN, BatchHeader, LOG_OVERHEAD, batch_crc};

use super::error::{LogError, Result};
use super::index::{OffsetIndex, TimeIndex};

/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Suffix of offset index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Suffix of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Suffix of a compacted segment being written.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

/// `<dir>/<20-digit base offset>.<suffix>`, Kafka's file naming.
pub(crate) fn file_path(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// The base offset encoded in a segment file name, if `name` is `<digits>.<suffix>`.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Why a forward scan stopped before the end of the data it was given.
#[derive(Debug)]
pub(crate) enum ScanStop {
    /// The bytes at this position are not a whole valid batch (torn or corrupt tail).
    Invalid { position: u64, reason: String },
    /// Reading the file failed.
    Io(LogError),
}

/// Walks the batches of a segment file from a position, reading in large chunks.
pub(crate) struct BatchScanner<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    end: u64,
    buf: Bytes,
    buf_start: u64,
    chunk: usize,
}

impl<'a> BatchScanner<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path, start: u64, end: u64) -> Self {
        BatchScanner {
            file,
            path,
            pos: start,
            end,
            buf: Bytes::new(),
            buf_start: start,
            chunk: 1 << 20,
        }
    }

    /// Makes `buf` hold at least `need` bytes from `self.pos`.
    fn fill(&mut self, need: usize) -> std::result::Result<(), ScanStop> {
        let have = (self.buf_start + self.buf.len() as u64).saturating_sub(self.pos);
        if self.pos >= self.buf_start && have >= need as u64 {
            return Ok(());
        }
        let want = need.max(self.chunk) as u64;
        let len = want.min(self.end - self.pos) as usize;
        let mut v = vec![0u8; len];
        self.file
            .read_exact_at(&mut v, self.pos)
            .map_err(|e| ScanStop::Io(LogError::io("read segment", self.path, e)))?;
        self.buf = Bytes::from(v);
        self.buf_start = self.pos;
        Ok(())
    }

    /// The next whole batch and its file position, `Ok(None)` at the end.
    pub(crate) fn next_batch(&mut self) -> std::result::Result<Option<(u64, Bytes)>, ScanStop> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let invalid = |position, reason: String| ScanStop::Invalid { position, reason };
        if self.end - self.pos < LOG_OVERHEAD as u64 {
            return Err(invalid(self.pos, "partial batch header".into()));
        }
        self.fill(LOG_OVERHEAD)?;
        let at = (self.pos - self.buf_start) as usize;
        let length = be_i32(&self.buf, at + 8);
        if length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(invalid(
                self.pos,
                format!("impossible batch length {length}"),
            ));
        }
        let total = length as usize + LOG_OVERHEAD;
        if self.pos + total as u64 > self.end {
            return Err(invalid(
                self.pos,
                format!(
                    "batch of {total} bytes runs past the end of the data ({} bytes left)",
                    self.end - self.pos
                ),
            ));
        }
        self.fill(total)?;
        let at = (self.pos - self.buf_start) as usize;
        let batch = self.buf.slice(at..at + total);
        let position = self.pos;
        self.pos += total as u64;
        Ok(Some((position, batch)))
    }
}

/// Parses and CRC-checks a stored batch.
pub(crate) fn check_batch(batch: &[u8]) -> std::result::Result<BatchHeader, String> {
    let h = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
    if h.total_len() != batch.len() {
        return Err("batch length does not match".into());
    }
    let crc = batch_crc(batch);
    if crc != h.crc {
        return Err(format!(
            "CRC mismatch (stored {:#010x}, computed {crc:#010x})",
            h.crc
        ));
    }
    Ok(h)
}

/// What a full scan of a segment found.
#[derive(Debug, Default)]
pub(crate) struct RecoveryOutcome {
    /// Bytes cut off the end of the file (a torn or corrupt tail).
    pub(crate) truncated_bytes: u64,
}

/// A segment: data file plus indexes, with the metadata appends and reads need.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: i64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Bytes of whole batches in the file.
    pub(crate) size: u64,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// One past the last offset stored (the base when empty).
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp, and the base offset of that batch (-1, -1 when unknown).
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// Wall-clock ms of the first append (or an estimate after reopening), for `segment.ms`.
    pub(crate) created_ms: Option<i64>,
    bytes_since_index: usize,
}

fn open_log_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LogError::io("open segment", path, e))
}

impl Segment {
    /// Opens (or creates) the files of the segment starting at `base` without scanning.
    pub(crate) fn open(dir: &Path, base: i64) -> Result<Self> {
        Self::open_with_paths(
            base,
            file_path(dir, base, LOG_SUFFIX),
            file_path(dir, base, INDEX_SUFFIX),
            file_path(dir, base, TIME_INDEX_SUFFIX),
        )
    }

    /// Opens a segment from explicitly named files (compaction writes `*.cleaned` files).
    pub(crate) fn open_with_paths(
        base: i64,
        path: PathBuf,
        index_path: PathBuf,
        time_index_path: PathBuf,
    ) -> Result<Self> {
        let file = open_log_file(&path)?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io("stat segment", &path, e))?
            .len();
        let index = OffsetIndex::open(index_path, base)?;
        let time_index = TimeIndex::open(time_index_path, base)?;
        let (max_timestamp, offset_of_max_timestamp) = time_index.last_entry().unwrap_or((-1, -1));
        Ok(Segment {
            base,
            path,
            file: Arc::new(file),
            size,
            index,
            time_index,
            next_offset: base,
            max_timestamp,
            offset_of_max_timestamp,
            created_ms: None,
            bytes_since_index: 0,
        })
    }

    /// Creates a fresh empty segment, truncating leftovers of the same name.
    pub(crate) fn create(dir: &Path, base: i64) -> Result<Self> {
        let mut seg = Self::open(dir, base)?;
        seg.truncate_to(0, base)?;
        Ok(seg)
    }

    /// Appends already validated batches (`data`, whole batches back to back). `batches`
    /// lists each batch's (relative position in `data`, base offset, last offset, max timestamp).
    pub(crate) fn append(
        &mut self,
        data: &[u8],
        batches: &[(usize, i64, i64, i64)],
        interval: usize,
        now_ms: i64,
    ) -> Result<()> {
        let start = self.size;
        if let Err(e) = self.file.write_all_at(data, start) {
            // Undo a partial write so the file keeps only whole batches.
            let _ = self.file.set_len(start);
            return Err(LogError::io("write segment", &self.path, e));
        }
        self.size += data.len() as u64;
        if self.created_ms.is_none() {
            self.created_ms = Some(now_ms);
        }
        let mut next = batches.iter().peekable();
        while let Some(&(rel, base, last, max_ts)) = next.next() {
            let len = next.peek().map_or(data.len(), |b| b.0) - rel;
            // The data is written: an index failure must not fail the append (indexes are
            // sparse and rebuilt at recovery).
            if let Err(e) = self.note_batch(start + rel as u64, len, base, last, max_ts, interval) {
                tracing::warn!(
                    segment = %self.path.display(),
                    error = %e,
                    "Could not write an index entry; lookups scan a little further until the index is rebuilt at recovery."
                );
            }
        }
        Ok(())
    }

    /// Updates indexes and metadata for a batch stored at `position`.
    fn note_batch(
        &mut self,
        position: u64,
        len: usize,
        base: i64,
        last: i64,
        max_ts: i64,
        interval: usize,
    ) -> Result<()> {
        if max_ts > self.max_timestamp || self.offset_of_max_timestamp < 0 {
            self.max_timestamp = max_ts;
            self.offset_of_max_timestamp = base;
        }
        self.next_offset = last + 1;
        let index_now = position > 0 && self.bytes_since_index >= interval;
        self.bytes_since_index += len;
        if index_now {
            self.bytes_since_index = len;
            self.index.append(base, position)?;
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
        }
        Ok(())
    }

    /// Writes the final time index entry (the segment's max timestamp), as Kafka does when a
    /// segment is rolled or closed, so that a clean reopen knows it without scanning.
    pub(crate) fn seal(&mut self) -> Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
        }
        Ok(())
    }

    /// Truncates the data file to `size` bytes (and the indexes accordingly).
    pub(crate) fn truncate_to(&mut self, size: u64, next_offset: i64) -> Result<()> {
        self.file
            .set_len(size)
            .map_err(|e| LogError::io("truncate segment", &self.path, e))?;
        self.size = size;
        self.next_offset = next_offset;
        if size == 0 {
            self.index.reset()?;
            self.time_index.reset()?;
            self.max_timestamp = -1;
            self.offset_of_max_timestamp = -1;
            self.created_ms = None;
        } else {
            self.index.truncate_to_position(size)?;
        }
        Ok(())
    }

    /// Scans the whole segment: verifies every batch's CRC and offsets, truncates a torn or
    /// corrupt tail, rebuilds both indexes, and reports each valid batch header to `visit`.
    pub(crate) fn recover(
        &mut self,
        interval: usize,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<RecoveryOutcome> {
        self.index.reset()?;
        self.time_index.reset()?;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        self.next_offset = self.base;
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let mut scanner = BatchScanner::new(&file, &path, 0, self.size);
        let mut valid_end = 0u64;
        let stop = loop {
            match scanner.next_batch() {
                Ok(None) => break None,
                Ok(Some((pos, batch))) => match self.validate_stored(&batch) {
                    Ok(h) => {
                        self.note_batch(
                            pos,
                            batch.len(),
                            h.base_offset,
                            h.last_offset(),
                            h.max_timestamp,
                            interval,
                        )?;
                        if self.created_ms.is_none() && h.max_timestamp > 0 {
                            self.created_ms = Some(h.max_timestamp);
                        }
                        visit(&h);
                        valid_end = pos + batch.len() as u64;
                    }
                    Err(reason) => break Some((pos, reason)),
                },
                Err(ScanStop::Invalid { position, reason }) => break Some((position, reason)),
                Err(ScanStop::Io(e)) => return Err(e),
            }
        };
        let mut outcome = RecoveryOutcome::default();
        if let Some((position, reason)) = stop {
            outcome.truncated_bytes = self.size - position;
            tracing::warn!(
                segment = %self.path.display(),
                position,
                truncated_bytes = outcome.truncated_bytes,
                %reason,
                "Truncating an invalid tail of a log segment found during recovery."
            );
            let next = self.next_offset;
            self.truncate_to(position, next)?;
        }
        debug_assert_eq!(valid_end, self.size);
        self.seal()?;
        Ok(outcome)
    }

    /// Checks a batch read back from this segment: CRC, offsets inside this segment and after
    /// the previous batch.
    fn validate_stored(&self, batch: &[u8]) -> std::result::Result<BatchHeader, String> {
        let h = check_batch(batch)?;
        if h.base_offset < self.next_offset {
            return Err(format!(
                "batch base offset {} goes back before {}",
                h.base_offset, self.next_offset
            ));
        }
        if h.last_offset() - self.base > i64::from(u32::MAX) {
            return Err(format!(
                "batch last offset {} is too far from the segment base",
                h.last_offset()
            ));
        }
        Ok(h)
    }

    /// After a clean shutdown: trusts the indexes if they look sane, and scans only from the
    /// last index entry to find the end. Returns false when a full [`Segment::recover`] is
    /// needed instead.
    pub(crate) fn load_clean(&mut self, interval: usize, is_last: bool) -> Result<bool> {
        if !self.index.is_consistent(self.size.max(1)) {
            return Ok(false);
        }
        if self.size > 0 && self.time_index.last_entry().is_none() {
            return Ok(false);
        }
        if !is_last {
            // The next segment's base bounds this one; the final time index entry gives the
            // max timestamp.
            return Ok(true);
        }
        let start = self.index.last_position();
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let mut scanner = BatchScanner::new(&file, &path, start, self.size);
        let mut next = self.base;
        let mut since = 0usize;
        loop {
            match scanner.next_batch() {
                Ok(None) => break,
                Ok(Some((_, batch))) => match check_batch(&batch) {
                    Ok(h) if h.base_offset >= next => {
                        next = h.last_offset() + 1;
                        since += batch.len();
                    }
                    _ => return Ok(false),
                },
                Err(ScanStop::Invalid { .. }) => return Ok(false),
                Err(ScanStop::Io(e)) => return Err(e),
            }
        }
        if !self.time_index.is_consistent(next) {
            return Ok(false);
        }
        self.next_offset = next;
        self.bytes_since_index = since.min(interval);
        self.created_ms = self.first_batch_timestamp()?;
        Ok(true)
    }

    /// Max timestamp of the first batch, the best estimate of when a reopened segment was
    /// started (Kafka rolls by it too).
    fn first_batch_timestamp(&self) -> Result<Option<i64>> {
        if self.size < BATCH_HEADER_LEN as u64 {
            return Ok(None);
        }
        let head = Self::read_at(&self.file, &self.path, 0, BATCH_HEADER_LEN)?;
        Ok(BatchHeader::parse(&head)
            .ok()
            .map(|h| h.max_timestamp)
            .filter(|&t| t > 0))
    }

    /// Reads `len` bytes at `position` into a new buffer.
    pub(crate) fn read_at(file: &File, path: &Path, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        file.read_exact_at(&mut v, position)
            .map_err(|e| LogError::io("read segment", path, e))?;
        Ok(v)
    }

    /// fsyncs the data file.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fsync segment", &self.path, e))
    }

    /// fsyncs data and both indexes (before a clean-shutdown marker).
    pub(crate) fn sync_all(&self) -> Result<()> {
        self.sync()?;
        self.index.sync()?;
        self.time_index.sync()
    }

    /// Removes the three files.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for p in [
            self.path.as_path(),
            self.index.path(),
            self.time_index.path(),
        ] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("delete segment file", p, e)),
            }
        }
        Ok(())
    }

    /// Points the data file path at `path` (after a rename).
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Points the index paths at new names (after renames).
    pub(crate) fn set_index_paths(&mut self, index: PathBuf, time_index: PathBuf) {
        self.index.set_path(index);
        self.time_index.set_path(time_index);
    }

    /// Size of the sparse offset index (tests).
    #[cfg(test)]
    pub(crate) fn index_entries(&self) -> usize {
        self.index.len()
    }
}
