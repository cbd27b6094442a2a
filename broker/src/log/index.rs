//! Sparse per-segment indexes, kept in memory and appended to files in Kafka's layout.
//!
//! - `.index`: 8-byte entries, 4-byte offset relative to the segment base + 4-byte file
//!   position of a batch. Entries are written every `index.interval.bytes` of log; the offset is
//!   the batch's base offset, so a lookup lands on the batch start at or before the wanted
//!   offset and the reader scans forward from there.
//! - `.timeindex`: 12-byte entries, 8-byte timestamp + 4-byte relative offset: the largest
//!   timestamp seen so far in the segment and the base offset of the batch holding it.
//!   Timestamps only grow from entry to entry.
//!
//! Neither file is checksummed nor fsynced on the hot path: recovery rebuilds them from the log
//! whenever they are missing or fail [`OffsetIndex::is_consistent`] /
//! [`TimeIndex::is_consistent`].

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{LogError, Result};

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LogError::io("open index", path, e))
}

fn read_all(file: &mut File, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| LogError::io("read index", path, e))?;
    Ok(buf)
}

/// Offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    path: PathBuf,
    file: File,
    base: i64,
    /// (relative offset, position).
    entries: Vec<(u32, u32)>,
    /// False when the file held a partial entry or could not be parsed.
    loaded_ok: bool,
}

impl OffsetIndex {
    /// Opens (creating if missing) and loads the index file.
    pub(crate) fn open(path: PathBuf, base: i64) -> Result<Self> {
        let mut file = open_rw(&path)?;
        let buf = read_all(&mut file, &path)?;
        let loaded_ok = buf.len() % OFFSET_ENTRY == 0;
        let entries = buf
            .chunks_exact(OFFSET_ENTRY)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        Ok(OffsetIndex {
            path,
            file,
            base,
            entries,
            loaded_ok,
        })
    }

    /// True when the entries are strictly increasing in offset and position, and every
    /// position lies inside a log of `log_size` bytes.
    pub(crate) fn is_consistent(&self, log_size: u64) -> bool {
        self.loaded_ok
            && self
                .entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && self
                .entries
                .last()
                .is_none_or(|e| u64::from(e.1) < log_size)
    }

    /// Appends an entry for the batch with base offset `offset` stored at `position`.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<()> {
        let rel = u32::try_from(offset - self.base).map_err(|_| {
            LogError::Corrupt(format!(
                "offset {offset} does not fit the index of segment {}",
                self.base
            ))
        })?;
        let pos = u32::try_from(position).map_err(|_| {
            LogError::Corrupt(format!(
                "position {position} does not fit the index of segment {}",
                self.base
            ))
        })?;
        if self
            .entries
            .last()
            .is_some_and(|&(r, p)| r >= rel || p >= pos)
        {
            return Ok(());
        }
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&pos.to_be_bytes());
        let at = (self.entries.len() * OFFSET_ENTRY) as u64;
        self.file
            .write_all_at(&e, at)
            .map_err(|err| LogError::io("write index", &self.path, err))?;
        self.entries.push((rel, pos));
        Ok(())
    }

    /// File position of the last indexed batch starting at or before `offset` (0 if none).
    pub(crate) fn lookup(&self, offset: i64) -> u64 {
        let rel = offset - self.base;
        if rel < 0 {
            return 0;
        }
        let i = self.entries.partition_point(|&(r, _)| i64::from(r) <= rel);
        if i == 0 {
            0
        } else {
            u64::from(self.entries[i - 1].1)
        }
    }

    /// Position of the last entry (where a forward scan to the log end may start).
    pub(crate) fn last_position(&self) -> u64 {
        self.entries.last().map_or(0, |e| u64::from(e.1))
    }

    /// Drops every entry and empties the file.
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.loaded_ok = true;
        self.file
            .set_len(0)
            .map_err(|e| LogError::io("truncate index", &self.path, e))
    }

    /// Drops the entries at or after `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < position);
        self.entries.truncate(keep);
        self.file
            .set_len((keep * OFFSET_ENTRY) as u64)
            .map_err(|e| LogError::io("truncate index", &self.path, e))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fsync index", &self.path, e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    path: PathBuf,
    file: File,
    base: i64,
    /// (max timestamp so far, relative base offset of the batch holding it).
    entries: Vec<(i64, u32)>,
    loaded_ok: bool,
}

impl TimeIndex {
    /// Opens (creating if missing) and loads the time index file.
    pub(crate) fn open(path: PathBuf, base: i64) -> Result<Self> {
        let mut file = open_rw(&path)?;
        let buf = read_all(&mut file, &path)?;
        let loaded_ok = buf.len() % TIME_ENTRY == 0;
        let entries = buf
            .chunks_exact(TIME_ENTRY)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(ts),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        Ok(TimeIndex {
            path,
            file,
            base,
            entries,
            loaded_ok,
        })
    }

    /// True when timestamps strictly grow and offsets never go back nor past `next_offset`.
    pub(crate) fn is_consistent(&self, next_offset: i64) -> bool {
        self.loaded_ok
            && self
                .entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && self
                .entries
                .last()
                .is_none_or(|e| self.base + i64::from(e.1) < next_offset)
    }

    /// Appends `(timestamp, offset)` if `timestamp` is larger than the last entry's.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        if self.entries.last().is_some_and(|&(t, _)| t >= timestamp) {
            return Ok(());
        }
        let rel = u32::try_from(offset - self.base).map_err(|_| {
            LogError::Corrupt(format!(
                "offset {offset} does not fit the time index of segment {}",
                self.base
            ))
        })?;
        if self.entries.last().is_some_and(|&(_, r)| r > rel) {
            return Ok(());
        }
        let mut e = [0u8; TIME_ENTRY];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&rel.to_be_bytes());
        let at = (self.entries.len() * TIME_ENTRY) as u64;
        self.file
            .write_all_at(&e, at)
            .map_err(|err| LogError::io("write time index", &self.path, err))?;
        self.entries.push((timestamp, rel));
        Ok(())
    }

    /// Offset to start scanning from for the first record with a timestamp >= `timestamp`:
    /// the offset of the last entry whose timestamp is strictly smaller (every record up to
    /// it is older), or the segment base.
    pub(crate) fn lookup(&self, timestamp: i64) -> i64 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            self.base
        } else {
            self.base + i64::from(self.entries[i - 1].1)
        }
    }

    /// The last entry: the segment's largest timestamp and its batch's offset.
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base + i64::from(r)))
    }

    pub(crate) fn reset(&mut self) -> Result<()> {
        self.entries.clear();
        self.loaded_ok = true;
        self.file
            .set_len(0)
            .map_err(|e| LogError::io("truncate time index", &self.path, e))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fsync time index", &self.path, e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::open(path.clone(), 100).unwrap();
        assert_eq!(idx.lookup(150), 0);
        idx.append(110, 4096).unwrap();
        idx.append(130, 9000).unwrap();
        idx.append(120, 9500).unwrap(); // not increasing: ignored
        assert_eq!(idx.lookup(99), 0);
        assert_eq!(idx.lookup(109), 0);
        assert_eq!(idx.lookup(110), 4096);
        assert_eq!(idx.lookup(129), 4096);
        assert_eq!(idx.lookup(1000), 9000);
        drop(idx);
        let mut idx = OffsetIndex::open(path.clone(), 100).unwrap();
        assert!(idx.is_consistent(10_000));
        assert!(!idx.is_consistent(9000));
        assert_eq!(idx.lookup(131), 9000);
        idx.truncate_to_position(9000).unwrap();
        assert_eq!(idx.lookup(131), 4096);
        drop(idx);
        // A partial entry makes the file inconsistent.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[1, 2, 3], 8)
            .unwrap();
        let idx = OffsetIndex::open(path, 100).unwrap();
        assert!(!idx.is_consistent(10_000));
    }

    #[test]
    fn time_index_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::open(path.clone(), 0).unwrap();
        idx.maybe_append(1000, 0).unwrap();
        idx.maybe_append(900, 5).unwrap(); // older: ignored
        idx.maybe_append(2000, 10).unwrap();
        idx.maybe_append(3000, 20).unwrap();
        assert_eq!(idx.lookup(500), 0);
        assert_eq!(idx.lookup(1000), 0);
        assert_eq!(idx.lookup(1001), 0);
        assert_eq!(idx.lookup(2500), 10);
        assert_eq!(idx.lookup(9999), 20);
        assert_eq!(idx.last_entry(), Some((3000, 20)));
        drop(idx);
        let idx = TimeIndex::open(path, 0).unwrap();
        assert!(idx.is_consistent(21));
        assert!(!idx.is_consistent(20));
    }
}
