//! The local, rebuildable index of the `_schemas` topic (DESIGN.md, "State in topics").
//!
//! Each node keeps the `_schemas` records it has applied, and the next log offset to apply,
//! in a sled database (`<data-dir>/registry-index/`). Every append stores the records, the
//! applied offset, a hash chain over all stored records, the hash of the last record and the
//! time of the append in **one** sled batch, so the index is always a prefix of the log as
//! this node applied it. At start the store replays the index instead of the topic and reads
//! the topic from the applied offset on only.
//!
//! The index is only a cache of the topic: [`check`] refuses it (and the store rebuilds it
//! from the topic) when it is missing, does not open, fails its hash chain or count, names
//! another topic or topic id, its applied offset lies before the log start offset or beyond
//! the high watermark, the topic no longer holds the last record the index applied (a
//! different or recreated topic, or a compaction since), or the node was away longer than the
//! topic's `delete.retention.ms` (a tombstone written and cleaned meanwhile would otherwise be
//! missed).
//!
//! Layout (one sled tree): `r` + offset (8 bytes big-endian) → key length (u32 BE), key,
//! value flag (0 = tombstone, 1 = value), value; `m:<name>` → metadata. Every record is kept
//! (not only the latest per key), so replaying the index is replaying the log as this node saw
//! it, tombstones included.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

const FORMAT: &[u8] = b"gatehouse-registry-index/1";
const META_FORMAT: &[u8] = b"m:format";
const META_TOPIC: &[u8] = b"m:topic";
const META_TOPIC_ID: &[u8] = b"m:topic_id";
const META_APPLIED: &[u8] = b"m:applied";
const META_CHAIN: &[u8] = b"m:chain";
const META_COUNT: &[u8] = b"m:count";
const META_LAST: &[u8] = b"m:last";
const META_VERIFIED: &[u8] = b"m:verified_ms";
const RECORD_PREFIX: u8 = b'r';

/// How often (at most) a caught-up store refreshes the index's "verified" time without new
/// records.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Why the index could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed (I/O, corrupt files).
    #[error("registry index: {0}")]
    Sled(#[from] sled::Error),
    /// The stored data is not what the index wrote.
    #[error("registry index is inconsistent: {0}")]
    Corrupt(String),
}

/// One `_schemas` record as applied (key and value bytes as in the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Log offset.
    pub offset: i64,
    /// Record key.
    pub key: Vec<u8>,
    /// Record value; `None` = tombstone.
    pub value: Option<Vec<u8>>,
}

impl IndexedRecord {
    /// SHA-256 over key and value (what [`check`] compares with the topic's record).
    pub fn hash(&self) -> [u8; 32] {
        record_hash(&self.key, self.value.as_deref())
    }
}

/// SHA-256 over a record's key and value.
pub fn record_hash(key: &[u8], value: Option<&[u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(key);
    match value {
        Some(v) => {
            h.update([1]);
            h.update(v);
        }
        None => h.update([0]),
    }
    h.finalize().into()
}

fn chain_next(chain: &[u8; 32], offset: i64, record: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(chain);
    h.update(offset.to_be_bytes());
    h.update(record);
    h.finalize().into()
}

/// What a loaded index holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexState {
    /// The topic it was built from.
    pub topic: String,
    /// That topic's id, when the broker had one.
    pub topic_id: Option<[u8; 16]>,
    /// The next offset to apply.
    pub applied: i64,
    /// Offset and [`IndexedRecord::hash`] of the last stored record.
    pub last: Option<(i64, [u8; 32])>,
    /// Wall-clock time (ms) of the last append: the index was in sync with the log then.
    pub verified_ms: i64,
    /// Every stored record, in offset order.
    pub records: Vec<IndexedRecord>,
}

/// The topic's record at the index's last offset, as the broker returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastRecord {
    /// The index holds no record: nothing to compare.
    NotChecked,
    /// The topic holds a record there, with this hash.
    Present([u8; 32]),
    /// The topic holds no record at that offset (compacted, deleted, or another topic).
    Missing,
}

/// What the topic looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// Topic name.
    pub topic: String,
    /// Topic id from Metadata, when the broker uses ids.
    pub topic_id: Option<[u8; 16]>,
    /// First offset still in the log.
    pub log_start: i64,
    /// Offset after the last committed record.
    pub high_watermark: i64,
    /// The topic's record at the index's last offset.
    pub last_record: LastRecord,
    /// Now (ms since the epoch).
    pub now_ms: i64,
    /// The topic's `delete.retention.ms` (how long tombstones survive compaction).
    pub delete_retention_ms: i64,
}

/// Whether `state` may stand in for the topic's records before `state.applied`; `Err` says
/// why not (the store then rebuilds the index from the topic).
pub fn check(state: &IndexState, topic: &TopicView) -> Result<(), String> {
    if state.topic != topic.topic {
        return Err(format!(
            "it indexes topic '{}', not '{}'",
            state.topic, topic.topic
        ));
    }
    if let (Some(a), Some(b)) = (state.topic_id, topic.topic_id)
        && a != b
    {
        return Err("the topic id differs (the topic was recreated)".into());
    }
    if state.applied < topic.log_start {
        return Err(format!(
            "its applied offset {} is older than the log start offset {} (records it never saw were removed)",
            state.applied, topic.log_start
        ));
    }
    if state.applied > topic.high_watermark {
        return Err(format!(
            "its applied offset {} is beyond the high watermark {} (a different or recreated topic)",
            state.applied, topic.high_watermark
        ));
    }
    match (state.last, topic.last_record) {
        (None, _) | (_, LastRecord::NotChecked) => {}
        (Some((offset, _)), LastRecord::Missing) => {
            return Err(format!(
                "the topic no longer holds the record at offset {offset} the index applied last"
            ));
        }
        (Some((offset, want)), LastRecord::Present(got)) => {
            if want != got {
                return Err(format!(
                    "the record at offset {offset} differs from the one the index applied (a different topic)"
                ));
            }
        }
    }
    let away = topic.now_ms.saturating_sub(state.verified_ms);
    if away > topic.delete_retention_ms {
        return Err(format!(
            "it was last in sync {} s ago, longer than delete.retention.ms ({} s): tombstones may have been compacted away",
            away / 1000,
            topic.delete_retention_ms / 1000
        ));
    }
    Ok(())
}

fn be_i64(v: &[u8], what: &str) -> Result<i64, IndexError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| IndexError::Corrupt(format!("{what}: {} bytes", v.len())))?;
    Ok(i64::from_be_bytes(b))
}

fn encode_entry(r: &IndexedRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(r.key.len() + r.value.as_ref().map_or(0, Vec::len) + 5);
    v.extend_from_slice(&u32::try_from(r.key.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(&r.key);
    match &r.value {
        Some(val) => {
            v.push(1);
            v.extend_from_slice(val);
        }
        None => v.push(0),
    }
    v
}

fn decode_entry(offset: i64, v: &[u8]) -> Result<IndexedRecord, IndexError> {
    let bad = |why: &str| IndexError::Corrupt(format!("record at offset {offset}: {why}"));
    let (len, rest) = v.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
    let len: [u8; 4] = len.try_into().map_err(|_| bad("truncated"))?;
    let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| bad("key length"))?;
    let (key, rest) = rest
        .split_at_checked(len)
        .ok_or_else(|| bad("truncated key"))?;
    let (flag, value) = rest.split_first().ok_or_else(|| bad("no value flag"))?;
    let value = match flag {
        0 if value.is_empty() => None,
        1 => Some(value.to_vec()),
        _ => return Err(bad("bad value flag")),
    };
    Ok(IndexedRecord {
        offset,
        key: key.to_vec(),
        value,
    })
}

fn record_key(offset: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RECORD_PREFIX;
    k[1..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The running totals an append extends.
#[derive(Debug, Clone, Copy)]
struct Tail {
    chain: [u8; 32],
    count: u64,
}

/// An open index. Appends come from the store's single catch-up/write path (under its
/// cursor lock).
pub struct Index {
    path: PathBuf,
    db: sled::Db,
    tail: Mutex<Tail>,
    /// Set after a failed append: the index stays at its last good batch for this run.
    broken: AtomicBool,
    last_append_ms: AtomicI64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Opens (or creates) the index at `dir`.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(Index {
            path: dir.to_path_buf(),
            db,
            tail: Mutex::new(Tail {
                chain: [0; 32],
                count: 0,
            }),
            broken: AtomicBool::new(false),
            last_append_ms: AtomicI64::new(0),
        })
    }

    /// Opens the index at `dir`; when that fails (corrupt files, another format), deletes the
    /// directory and creates an empty one. `None` when even that fails (the store then runs
    /// without an index and replays the topic at every start).
    pub fn open_or_recreate(dir: &Path) -> Option<Index> {
        match Index::open(dir) {
            Ok(i) => return Some(i),
            // Another process (or store) has it open: never delete what it uses.
            Err(IndexError::Sled(sled::Error::Io(e)))
                if e.to_string().contains("could not acquire lock") =>
            {
                warn!(path = %dir.display(), "the registry index is in use by another process ({e}); starting without one");
                return None;
            }
            Err(e) => {
                warn!(path = %dir.display(), "the registry index does not open ({e}); rebuilding it from the topic")
            }
        }
        if let Err(e) = std::fs::remove_dir_all(dir) {
            warn!(path = %dir.display(), "cannot remove the registry index: {e}");
        }
        match Index::open(dir) {
            Ok(i) => Some(i),
            Err(e) => {
                warn!(path = %dir.display(), "cannot create the registry index ({e}); starting without one");
                None
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and verifies everything. `Ok(None)`: the index is empty (new).
    pub fn load(&self) -> Result<Option<IndexState>, IndexError> {
        let Some(format) = self.db.get(META_FORMAT)? else {
            return Ok(None);
        };
        if format.as_ref() != FORMAT {
            return Err(IndexError::Corrupt("unknown format".into()));
        }
        let meta = |k: &[u8]| -> Result<sled::IVec, IndexError> {
            self.db.get(k)?.ok_or_else(|| {
                IndexError::Corrupt(format!("missing {}", String::from_utf8_lossy(k)))
            })
        };
        let topic = String::from_utf8(meta(META_TOPIC)?.to_vec())
            .map_err(|_| IndexError::Corrupt("topic name".into()))?;
        let topic_id = match self.db.get(META_TOPIC_ID)? {
            Some(v) => Some(
                <[u8; 16]>::try_from(v.as_ref())
                    .map_err(|_| IndexError::Corrupt("topic id".into()))?,
            ),
            None => None,
        };
        let applied = be_i64(&meta(META_APPLIED)?, "applied offset")?;
        let verified_ms = be_i64(&meta(META_VERIFIED)?, "verified time")?;
        let want_chain: [u8; 32] = meta(META_CHAIN)?
            .as_ref()
            .try_into()
            .map_err(|_| IndexError::Corrupt("chain".into()))?;
        let want_count = u64::try_from(be_i64(&meta(META_COUNT)?, "count")?)
            .map_err(|_| IndexError::Corrupt("count".into()))?;
        let last = match self.db.get(META_LAST)? {
            Some(v) if v.len() == 40 => {
                let (o, h) = v.split_at(8);
                let h: [u8; 32] = h
                    .try_into()
                    .map_err(|_| IndexError::Corrupt("last record".into()))?;
                Some((be_i64(o, "last offset")?, h))
            }
            Some(_) => return Err(IndexError::Corrupt("last record".into())),
            None => None,
        };
        let mut records = Vec::new();
        let mut chain = [0u8; 32];
        let mut prev = -1i64;
        for item in self.db.scan_prefix([RECORD_PREFIX]) {
            let (k, v) = item?;
            let offset = be_i64(k.get(1..).unwrap_or_default(), "record key")?;
            if offset <= prev || offset >= applied {
                return Err(IndexError::Corrupt(format!(
                    "record offset {offset} out of order (previous {prev}, applied {applied})"
                )));
            }
            prev = offset;
            let r = decode_entry(offset, &v)?;
            chain = chain_next(&chain, offset, &r.hash());
            records.push(r);
        }
        if records.len() as u64 != want_count {
            return Err(IndexError::Corrupt(format!(
                "{} records stored, {want_count} recorded",
                records.len()
            )));
        }
        if chain != want_chain {
            return Err(IndexError::Corrupt("hash chain mismatch".into()));
        }
        let actual_last = records.last().map(|r| (r.offset, r.hash()));
        if actual_last != last {
            return Err(IndexError::Corrupt("last record mismatch".into()));
        }
        if let Ok(mut t) = self.tail.lock() {
            *t = Tail {
                chain,
                count: want_count,
            };
        }
        self.last_append_ms.store(verified_ms, Ordering::Relaxed);
        Ok(Some(IndexState {
            topic,
            topic_id,
            applied,
            last,
            verified_ms,
            records,
        }))
    }

    /// Empties the index and starts it for `topic` (applied offset `start`).
    pub fn reset(
        &self,
        topic: &str,
        topic_id: Option<[u8; 16]>,
        start: i64,
        now_ms: i64,
    ) -> Result<(), IndexError> {
        self.db.clear()?;
        let mut b = sled::Batch::default();
        b.insert(META_FORMAT, FORMAT);
        b.insert(META_TOPIC, topic.as_bytes());
        if let Some(id) = topic_id {
            b.insert(META_TOPIC_ID, &id[..]);
        }
        b.insert(META_APPLIED, &start.to_be_bytes()[..]);
        b.insert(META_CHAIN, &[0u8; 32][..]);
        b.insert(META_COUNT, &0i64.to_be_bytes()[..]);
        b.insert(META_VERIFIED, &now_ms.to_be_bytes()[..]);
        self.db.apply_batch(b)?;
        if let Ok(mut t) = self.tail.lock() {
            *t = Tail {
                chain: [0; 32],
                count: 0,
            };
        }
        self.broken.store(false, Ordering::Relaxed);
        self.last_append_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Stores `records` (offsets increasing, all below `applied`) and the new applied offset in
    /// one batch. A failure is logged once and stops further appends for this run (the index
    /// then stays at its last good batch and the next start reads the topic from there).
    pub fn append(&self, records: &[IndexedRecord], applied: i64, now_ms: i64) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.try_append(records, applied, now_ms) {
            warn!(path = %self.path.display(), "registry index append failed ({e}); it stays at its last good batch until the next start");
            self.broken.store(true, Ordering::Relaxed);
        }
    }

    /// Stops appends for this run.
    pub fn disable(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// [`Index::append`] without records, at most every [`TOUCH_INTERVAL_MS`]: records that
    /// the index was in sync with the log at `now_ms`.
    pub fn touch(&self, applied: i64, now_ms: i64) {
        if now_ms.saturating_sub(self.last_append_ms.load(Ordering::Relaxed)) >= TOUCH_INTERVAL_MS {
            self.append(&[], applied, now_ms);
        }
    }

    fn try_append(
        &self,
        records: &[IndexedRecord],
        applied: i64,
        now_ms: i64,
    ) -> Result<(), IndexError> {
        let mut tail = self
            .tail
            .lock()
            .map_err(|_| IndexError::Corrupt("tail lock poisoned".into()))?;
        let mut next = *tail;
        let mut b = sled::Batch::default();
        let mut last = None;
        for r in records {
            let h = r.hash();
            next.chain = chain_next(&next.chain, r.offset, &h);
            next.count += 1;
            b.insert(&record_key(r.offset)[..], encode_entry(r));
            last = Some((r.offset, h));
        }
        if let Some((o, h)) = last {
            let mut v = Vec::with_capacity(40);
            v.extend_from_slice(&o.to_be_bytes());
            v.extend_from_slice(&h);
            b.insert(META_LAST, v);
            b.insert(META_CHAIN, &next.chain[..]);
            b.insert(
                META_COUNT,
                &i64::try_from(next.count).unwrap_or(i64::MAX).to_be_bytes()[..],
            );
        }
        b.insert(META_APPLIED, &applied.to_be_bytes()[..]);
        b.insert(META_VERIFIED, &now_ms.to_be_bytes()[..]);
        self.db.apply_batch(b)?;
        *tail = next;
        self.last_append_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Writes everything to disk (also done by sled in the background every 500 ms).
    pub fn flush(&self) {
        match self.db.flush() {
            Ok(n) => info!(path = %self.path.display(), bytes = n, "registry index flushed"),
            Err(e) => warn!(path = %self.path.display(), "registry index flush failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rec(offset: i64, key: &str, value: Option<&str>) -> IndexedRecord {
        IndexedRecord {
            offset,
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("registry-index-")
            .tempdir()
            .unwrap()
    }

    fn view(state: &IndexState) -> TopicView {
        TopicView {
            topic: "_schemas".into(),
            topic_id: state.topic_id,
            log_start: 0,
            high_watermark: state.applied,
            last_record: state
                .last
                .map_or(LastRecord::NotChecked, |(_, h)| LastRecord::Present(h)),
            now_ms: state.verified_ms + 1000,
            delete_retention_ms: 86_400_000,
        }
    }

    fn filled(dir: &Path) -> IndexState {
        let idx = Index::open(dir).unwrap();
        assert_eq!(idx.load().unwrap(), None, "a new index is empty");
        idx.reset("_schemas", Some([7; 16]), 0, 1_000).unwrap();
        idx.append(
            &[rec(0, "k0", Some("v0")), rec(1, "k1", Some("v1"))],
            2,
            2_000,
        );
        idx.append(&[rec(3, "k0", None)], 4, 3_000);
        idx.flush();
        idx.load().unwrap().unwrap()
    }

    #[test]
    fn append_and_load_round_trip() {
        let dir = tmp();
        let st = filled(dir.path());
        assert_eq!(st.applied, 4);
        assert_eq!(st.verified_ms, 3_000);
        assert_eq!(st.topic_id, Some([7; 16]));
        assert_eq!(
            st.records,
            vec![
                rec(0, "k0", Some("v0")),
                rec(1, "k1", Some("v1")),
                rec(3, "k0", None)
            ]
        );
        assert_eq!(st.last, Some((3, rec(3, "k0", None).hash())));
        assert_eq!(check(&st, &view(&st)), Ok(()));
        // Reopened from disk, appends continue the chain.
        let idx = Index::open(dir.path()).unwrap();
        let st2 = idx.load().unwrap().unwrap();
        assert_eq!(st2, st);
        idx.append(&[rec(4, "k2", Some("v2"))], 5, 4_000);
        let st3 = idx.load().unwrap().unwrap();
        assert_eq!(st3.records.len(), 4);
        assert_eq!(st3.applied, 5);
        // A touch only moves the time (and only once per interval).
        idx.touch(5, 4_000 + TOUCH_INTERVAL_MS);
        assert_eq!(
            idx.load().unwrap().unwrap().verified_ms,
            4_000 + TOUCH_INTERVAL_MS
        );
    }

    #[test]
    fn decisions() {
        let dir = tmp();
        let st = filled(dir.path());
        let ok = view(&st);
        let mut v = ok.clone();
        v.high_watermark = 3;
        assert!(
            check(&st, &v)
                .unwrap_err()
                .contains("beyond the high watermark")
        );
        let mut v = ok.clone();
        v.log_start = 5;
        v.high_watermark = 9;
        assert!(check(&st, &v).unwrap_err().contains("log start"));
        let mut v = ok.clone();
        v.topic_id = Some([8; 16]);
        assert!(check(&st, &v).unwrap_err().contains("topic id"));
        let mut v = ok.clone();
        v.topic_id = None; // a broker without ids: the record hash decides
        assert_eq!(check(&st, &v), Ok(()));
        let mut v = ok.clone();
        v.last_record = LastRecord::Missing;
        assert!(check(&st, &v).unwrap_err().contains("no longer holds"));
        let mut v = ok.clone();
        v.last_record = LastRecord::Present([0; 32]);
        assert!(check(&st, &v).unwrap_err().contains("differs"));
        let mut v = ok.clone();
        v.topic = "other".into();
        assert!(check(&st, &v).unwrap_err().contains("indexes topic"));
        let mut v = ok.clone();
        v.now_ms = st.verified_ms + v.delete_retention_ms + 1;
        assert!(check(&st, &v).unwrap_err().contains("delete.retention.ms"));
        // More records in the topic than in the index: fine (read from `applied` on).
        let mut v = ok;
        v.high_watermark = 100;
        assert_eq!(check(&st, &v), Ok(()));
    }

    #[test]
    fn tampered_entries_fail_the_chain() {
        let dir = tmp();
        filled(dir.path());
        let idx = Index::open(dir.path()).unwrap();
        idx.db
            .insert(record_key(1), encode_entry(&rec(1, "k1", Some("evil"))))
            .unwrap();
        assert!(matches!(idx.load(), Err(IndexError::Corrupt(_))));
        // A record past the applied offset.
        idx.reset("_schemas", None, 0, 0).unwrap();
        idx.append(&[rec(0, "k", Some("v"))], 1, 0);
        idx.db
            .insert(record_key(5), encode_entry(&rec(5, "k", Some("v"))))
            .unwrap();
        assert!(matches!(idx.load(), Err(IndexError::Corrupt(_))));
        // A removed record.
        idx.reset("_schemas", None, 0, 0).unwrap();
        idx.append(&[rec(0, "k", Some("v")), rec(1, "k", Some("w"))], 2, 0);
        idx.db.remove(record_key(0)).unwrap();
        assert!(matches!(idx.load(), Err(IndexError::Corrupt(_))));
    }

    #[test]
    fn corrupt_files_are_recreated() {
        let dir = tmp();
        let path = dir.path().join("registry-index");
        filled(&path);
        // Overwrite every file sled wrote with garbage.
        fn scribble(p: &Path) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    scribble(&e.path());
                } else {
                    std::fs::write(e.path(), b"\xffgarbage\x00not sled").unwrap();
                }
            }
        }
        scribble(&path);
        let idx = Index::open_or_recreate(&path).expect("recreated");
        // Whatever sled makes of the garbage, the index is not usable as it was.
        match idx.load() {
            Ok(None) | Err(_) => {}
            Ok(Some(st)) => panic!("garbage loaded as an index: {st:?}"),
        }
        // Deleted: a fresh, empty index.
        drop(idx);
        std::fs::remove_dir_all(&path).unwrap();
        let idx = Index::open_or_recreate(&path).expect("created");
        assert_eq!(idx.load().unwrap(), None);
    }

    #[test]
    fn an_index_in_use_is_left_alone() {
        let dir = tmp();
        let path = dir.path().join("registry-index");
        let held = Index::open(&path).unwrap();
        held.reset("_schemas", None, 0, 0).unwrap();
        held.append(&[rec(0, "k", Some("v"))], 1, 0);
        assert!(Index::open_or_recreate(&path).is_none());
        assert_eq!(held.load().unwrap().unwrap().records.len(), 1);
    }

    #[test]
    fn entry_codec_rejects_garbage() {
        assert!(decode_entry(0, b"").is_err());
        assert!(decode_entry(0, &[0, 0, 0, 9, 1]).is_err());
        assert!(decode_entry(0, &[0, 0, 0, 0, 7]).is_err());
        assert!(decode_entry(0, &[0, 0, 0, 0, 0, 1]).is_err());
        let r = rec(3, "key", Some(""));
        assert_eq!(decode_entry(3, &encode_entry(&r)).unwrap(), r);
    }
}
