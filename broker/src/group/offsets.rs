//! Durable committed offsets.
//!
//! Committed offsets live in one append-only file, `offsets.log`, inside the directory the
//! coordinator is given (`<data-dir>/__consumer_offsets`). Every record is framed as
//!
//! ```text
//! u32 big-endian  payload length
//! u32 big-endian  CRC32C of the payload
//! payload         one JSON-encoded [`Record`]
//! ```
//!
//! One `OffsetCommit` request becomes one record, so a commit is atomic: after a crash either all
//! of its partitions are back or none is. At open the file is replayed up to the first frame that
//! is incomplete or fails its CRC (a torn tail from a crash; anything after it is discarded with
//! a warning), and then rewritten compactly: one record per group (or per 10 000 offsets of it),
//! written to `offsets.log.tmp`, fsynced, renamed over `offsets.log`, and the directory fsynced.
//! The same rewrite happens when the log grows well past its last compact size.
//!
//! All writes go through one writer thread that group-commits: it drains every queued record,
//! appends them with a single `write` and one `fdatasync`, and only then applies them to the
//! in-memory table that `OffsetFetch` reads and acknowledges the callers. A commit is therefore
//! never visible, nor acknowledged, before it is durable.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::GroupError;

/// Name of the offsets log inside the coordinator's directory.
pub(crate) const LOG_FILE: &str = "offsets.log";
/// Name of the temporary file a compaction writes before renaming it over [`LOG_FILE`].
const TMP_FILE: &str = "offsets.log.tmp";
/// Bytes of framing before each payload: length and CRC.
const FRAME_HEADER: usize = 8;
/// Largest payload a frame may announce; anything larger is treated as corruption.
const MAX_PAYLOAD: usize = 256 * 1024 * 1024;
/// The log is never compacted while smaller than this.
pub(crate) const DEFAULT_COMPACT_MIN_BYTES: u64 = 8 * 1024 * 1024;
/// Most offsets per record in a compacted file, keeping records far below [`MAX_PAYLOAD`].
const SNAPSHOT_CHUNK: usize = 10_000;
/// Most records one group-commit batch takes from the queue.
const MAX_BATCH: usize = 4096;

/// A committed offset as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommittedOffset {
    /// The committed offset (the next record the consumer will read).
    pub offset: i64,
    /// The leader epoch the client saw for that offset, -1 when unknown.
    pub leader_epoch: i32,
    /// The client's opaque metadata string.
    pub metadata: String,
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub commit_ts_ms: i64,
}

/// One partition's offset inside a [`Record::Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ts_ms: i64,
}

/// One record of the offsets log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    /// Offsets committed by one request (or, in a compacted file, all offsets of a group).
    Commit {
        group: String,
        offsets: Vec<StoredOffset>,
    },
    /// A deleted group: all its offsets go.
    DeleteGroup { group: String },
    /// A deleted topic: its offsets go from every group.
    DeleteTopic { topic: String },
    /// Expired offsets: each goes only if its commit timestamp still matches, so a newer
    /// commit racing with the expiry survives.
    Expire {
        group: String,
        partitions: Vec<(String, i32, i64)>,
    },
}

/// Offsets per group, per `(topic, partition)`.
pub(crate) type OffsetTable = HashMap<String, BTreeMap<(String, i32), CommittedOffset>>;

/// Applies one record to the table.
fn apply(table: &mut OffsetTable, record: &Record) {
    match record {
        Record::Commit { group, offsets } => {
            let entry = table.entry(group.clone()).or_default();
            for o in offsets {
                entry.insert(
                    (o.topic.clone(), o.partition),
                    CommittedOffset {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_ts_ms: o.commit_ts_ms,
                    },
                );
            }
        }
        Record::DeleteGroup { group } => {
            table.remove(group);
        }
        Record::DeleteTopic { topic } => {
            for offsets in table.values_mut() {
                offsets.retain(|(t, _), _| t != topic);
            }
            table.retain(|_, offsets| !offsets.is_empty());
        }
        Record::Expire { group, partitions } => {
            if let Some(offsets) = table.get_mut(group) {
                for (topic, partition, ts) in partitions {
                    let key = (topic.clone(), *partition);
                    if offsets.get(&key).is_some_and(|o| o.commit_ts_ms == *ts) {
                        offsets.remove(&key);
                    }
                }
                if offsets.is_empty() {
                    table.remove(group);
                }
            }
        }
    }
}

/// Frames one record: length, CRC32C, JSON payload.
fn encode_frame(record: &Record) -> Result<Vec<u8>, GroupError> {
    let payload = serde_json::to_vec(record).map_err(GroupError::Encode)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_PAYLOAD)
        .ok_or(GroupError::RecordTooLarge(payload.len()))?;
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// What replaying a log file found.
#[derive(Debug)]
pub(crate) struct Replay {
    /// The records of every valid frame, in order.
    pub records: Vec<Record>,
    /// Length of the valid prefix.
    pub valid_bytes: usize,
    /// Bytes after the valid prefix (a torn or corrupt tail), discarded.
    pub discarded_bytes: usize,
}

/// Decodes frames from `data` until the end or the first incomplete or corrupt frame.
///
/// A frame whose CRC matches but whose payload is not a record this build understands is an
/// error rather than a torn tail: it was written whole, so dropping it would lose data.
pub(crate) fn replay(data: &[u8], path: &Path) -> Result<Replay, GroupError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= FRAME_HEADER {
        let header = &data[pos..pos + FRAME_HEADER];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_PAYLOAD || len > data.len() - pos - FRAME_HEADER {
            break;
        }
        let payload = &data[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let record: Record =
            serde_json::from_slice(payload).map_err(|source| GroupError::Corrupt {
                path: path.to_path_buf(),
                offset: pos as u64,
                source,
            })?;
        records.push(record);
        pos += FRAME_HEADER + len;
    }
    Ok(Replay {
        records,
        valid_bytes: pos,
        discarded_bytes: data.len() - pos,
    })
}

/// Who waits for a write to become durable.
enum Done {
    Async(oneshot::Sender<Result<(), String>>),
    Blocking(mpsc::Sender<Result<(), String>>),
}

impl Done {
    fn finish(self, result: Result<(), String>) {
        match self {
            // A caller that went away no longer needs the answer.
            Done::Async(tx) => {
                let _ = tx.send(result);
            }
            Done::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

enum WriterMsg {
    Write {
        record: Record,
        frame: Vec<u8>,
        done: Done,
    },
    Stop,
}

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The durable offsets table and its writer thread.
pub(crate) struct OffsetStore {
    dir: PathBuf,
    table: Arc<Mutex<OffsetTable>>,
    tx: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OffsetStore {
    /// Opens (creating if needed) the store in `dir`, replays and compacts the log and starts
    /// the writer thread.
    pub(crate) fn open(dir: &Path, compact_min_bytes: u64) -> Result<Self, GroupError> {
        fs::create_dir_all(dir).map_err(|e| GroupError::io(dir, e))?;
        let log_path = dir.join(LOG_FILE);
        let tmp_path = dir.join(TMP_FILE);
        if tmp_path.exists() {
            // A compaction that crashed before its rename; the log itself is intact.
            fs::remove_file(&tmp_path).map_err(|e| GroupError::io(&tmp_path, e))?;
        }
        let mut table = OffsetTable::new();
        match fs::read(&log_path) {
            Ok(data) => {
                let replayed = replay(&data, &log_path)?;
                if replayed.discarded_bytes > 0 {
                    warn!(
                        path = %log_path.display(),
                        valid_bytes = replayed.valid_bytes,
                        discarded_bytes = replayed.discarded_bytes,
                        "offsets log ends in a torn or corrupt record; discarding the tail"
                    );
                }
                for record in &replayed.records {
                    apply(&mut table, record);
                }
                info!(
                    path = %log_path.display(),
                    records = replayed.records.len(),
                    groups = table.len(),
                    "loaded committed offsets"
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(GroupError::io(&log_path, e)),
        }
        let table = Arc::new(Mutex::new(table));
        let writer = Writer::create(dir.to_path_buf(), Arc::clone(&table), compact_min_bytes)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("group-offsets-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| GroupError::io(dir, e))?;
        Ok(OffsetStore {
            dir: dir.to_path_buf(),
            table,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The in-memory table of durable offsets.
    pub(crate) fn table(&self) -> MutexGuard<'_, OffsetTable> {
        lock(&self.table)
    }

    fn send(&self, record: Record, done: Done) -> Result<(), GroupError> {
        let frame = encode_frame(&record)?;
        let guard = lock(&self.tx);
        let tx = guard.as_ref().ok_or(GroupError::Closed)?;
        tx.send(WriterMsg::Write {
            record,
            frame,
            done,
        })
        .map_err(|_| GroupError::Closed)
    }

    /// Appends `record` and waits until it is fsynced and applied.
    pub(crate) async fn write(&self, record: Record) -> Result<(), GroupError> {
        let (tx, rx) = oneshot::channel();
        self.send(record, Done::Async(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(GroupError::Write(why)),
            Err(_) => Err(GroupError::Closed),
        }
    }

    /// Appends `record` and blocks the calling thread until it is fsynced and applied.
    pub(crate) fn write_blocking(&self, record: Record) -> Result<(), GroupError> {
        let (tx, rx) = mpsc::channel();
        self.send(record, Done::Blocking(tx))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(GroupError::Write(why)),
            Err(_) => Err(GroupError::Closed),
        }
    }

    /// Stops the writer after the records already queued and waits for its thread.
    pub(crate) fn close(&self) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(WriterMsg::Stop);
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            error!(dir = %self.dir.display(), "offsets writer thread panicked");
        }
    }
}

impl Drop for OffsetStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// State owned by the writer thread.
struct Writer {
    dir: PathBuf,
    table: Arc<Mutex<OffsetTable>>,
    file: Option<File>,
    log_bytes: u64,
    compact_bytes: u64,
    compact_min_bytes: u64,
}

impl Writer {
    /// Writes the compact form of `table` as the new log and opens it for appending.
    fn create(
        dir: PathBuf,
        table: Arc<Mutex<OffsetTable>>,
        compact_min_bytes: u64,
    ) -> Result<Self, GroupError> {
        let mut w = Writer {
            dir,
            table,
            file: None,
            log_bytes: 0,
            compact_bytes: 0,
            compact_min_bytes,
        };
        w.rewrite()?;
        Ok(w)
    }

    fn run(mut self, rx: mpsc::Receiver<WriterMsg>) {
        let mut stop = false;
        while !stop {
            let mut batch = Vec::new();
            match rx.recv() {
                Ok(WriterMsg::Write {
                    record,
                    frame,
                    done,
                }) => batch.push((record, frame, done)),
                Ok(WriterMsg::Stop) | Err(_) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(WriterMsg::Write {
                        record,
                        frame,
                        done,
                    }) => batch.push((record, frame, done)),
                    Ok(WriterMsg::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        debug!(dir = %self.dir.display(), "offsets writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<(Record, Vec<u8>, Done)>) {
        let mut buf = Vec::with_capacity(batch.iter().map(|(_, f, _)| f.len()).sum());
        for (_, frame, _) in &batch {
            buf.extend_from_slice(frame);
        }
        match self.append(&buf) {
            Ok(()) => {
                {
                    let mut table = lock(&self.table);
                    for (record, _, _) in &batch {
                        apply(&mut table, record);
                    }
                }
                // Compact before acknowledging, so that the writer is idle whenever no write
                // is outstanding. A failed compaction leaves the appended log in place.
                if self.log_bytes > self.compact_min_bytes.max(self.compact_bytes * 2)
                    && let Err(e) = self.rewrite()
                {
                    error!(dir = %self.dir.display(), error = %e, "compacting offsets log failed");
                }
                for (_, _, done) in batch {
                    done.finish(Ok(()));
                }
            }
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "writing committed offsets failed");
                // The file may now hold a partial frame and its page cache state is unknown:
                // the next batch rewrites it from the in-memory table first.
                self.file = None;
                let why = e.to_string();
                for (_, _, done) in batch {
                    done.finish(Err(why.clone()));
                }
            }
        }
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), GroupError> {
        if self.file.is_none() {
            self.rewrite()?;
        }
        let path = self.dir.join(LOG_FILE);
        let file = self.file.as_mut().ok_or(GroupError::Closed)?;
        file.write_all(buf).map_err(|e| GroupError::io(&path, e))?;
        file.sync_data().map_err(|e| GroupError::io(&path, e))?;
        self.log_bytes += buf.len() as u64;
        Ok(())
    }

    /// Replaces the log with one `Commit` record per group: tmp file, fsync, rename, fsync dir.
    ///
    /// Until the rename the current log stays in use, so a failed compaction changes nothing;
    /// after it, any failure leaves no file open and the next write retries the rewrite.
    fn rewrite(&mut self) -> Result<(), GroupError> {
        let mut buf = Vec::new();
        {
            let table = lock(&self.table);
            let mut groups: Vec<_> = table.iter().collect();
            groups.sort_by(|a, b| a.0.cmp(b.0));
            for (group, offsets) in groups {
                let offsets: Vec<_> = offsets.iter().collect();
                for chunk in offsets.chunks(SNAPSHOT_CHUNK) {
                    let record = Record::Commit {
                        group: group.clone(),
                        offsets: chunk
                            .iter()
                            .map(|((topic, partition), o)| StoredOffset {
                                topic: topic.clone(),
                                partition: *partition,
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                                metadata: o.metadata.clone(),
                                commit_ts_ms: o.commit_ts_ms,
                            })
                            .collect(),
                    };
                    buf.extend_from_slice(&encode_frame(&record)?);
                }
            }
        }
        let tmp = self.dir.join(TMP_FILE);
        let path = self.dir.join(LOG_FILE);
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&buf)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // Best effort: open() removes a leftover temporary file anyway.
            let _ = fs::remove_file(&tmp);
            return Err(GroupError::io(&tmp, e));
        }
        self.file = None;
        fs::rename(&tmp, &path).map_err(|e| GroupError::io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| GroupError::io(&self.dir, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| GroupError::io(&path, e))?;
        debug!(path = %path.display(), bytes = buf.len(), "rewrote offsets log");
        self.file = Some(file);
        self.log_bytes = buf.len() as u64;
        self.compact_bytes = buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> Record {
        Record::Commit {
            group: group.into(),
            offsets: vec![StoredOffset {
                topic: topic.into(),
                partition,
                offset,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_ts_ms: 1,
            }],
        }
    }

    fn offset_of(store: &OffsetStore, group: &str, topic: &str, partition: i32) -> Option<i64> {
        store
            .table()
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
            .map(|o| o.offset)
    }

    #[test]
    fn frames_round_trip_and_stop_at_torn_tail() {
        let a = encode_frame(&commit("g", "t", 0, 5)).unwrap();
        let b = encode_frame(&Record::DeleteTopic { topic: "x".into() }).unwrap();
        let mut data = a.clone();
        data.extend_from_slice(&b);
        let all = replay(&data, Path::new("x")).unwrap();
        assert_eq!(all.records.len(), 2);
        assert_eq!(all.discarded_bytes, 0);
        for cut in 1..b.len() {
            let torn = &data[..a.len() + cut];
            let r = replay(torn, Path::new("x")).unwrap();
            assert_eq!(r.records.len(), 1, "cut at {cut}");
            assert_eq!(r.valid_bytes, a.len());
            assert_eq!(r.discarded_bytes, cut);
        }
        let mut flipped = data.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert_eq!(replay(&flipped, Path::new("x")).unwrap().records.len(), 1);
    }

    #[test]
    fn apply_expire_only_matching_timestamps() {
        let mut table = OffsetTable::new();
        apply(&mut table, &commit("g", "t", 0, 5));
        apply(&mut table, &commit("g", "t", 1, 6));
        apply(
            &mut table,
            &Record::Expire {
                group: "g".into(),
                partitions: vec![("t".into(), 0, 1), ("t".into(), 1, 99)],
            },
        );
        let g = table.get("g").unwrap();
        assert!(!g.contains_key(&("t".to_string(), 0)));
        assert!(g.contains_key(&("t".to_string(), 1)));
        apply(&mut table, &Record::DeleteTopic { topic: "t".into() });
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn writes_are_durable_and_compaction_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = OffsetStore::open(dir.path(), 256).unwrap();
            for i in 0..50 {
                store
                    .write(commit("g", "t", i % 3, i64::from(i)))
                    .await
                    .unwrap();
            }
            store.write(commit("h", "u", 0, 7)).await.unwrap();
            store
                .write(Record::DeleteGroup { group: "h".into() })
                .await
                .unwrap();
            // Compaction kept the file far below 52 records' worth.
            let len = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
            assert!(len < 1024, "log not compacted: {len} bytes");
            store.close();
        }
        let store = OffsetStore::open(dir.path(), 256).unwrap();
        assert_eq!(offset_of(&store, "g", "t", 0), Some(48));
        assert_eq!(offset_of(&store, "g", "t", 1), Some(49));
        assert_eq!(offset_of(&store, "g", "t", 2), Some(47));
        assert!(store.table().get("h").is_none());
        let blocking = store.write_blocking(commit("g", "t", 9, 1));
        assert!(blocking.is_ok());
    }

    #[test]
    fn open_discards_torn_tail_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut data = encode_frame(&commit("g", "t", 0, 10)).unwrap();
        let torn = encode_frame(&commit("g", "t", 0, 11)).unwrap();
        data.extend_from_slice(&torn[..torn.len() - 3]);
        fs::write(&path, &data).unwrap();
        {
            let store = OffsetStore::open(dir.path(), DEFAULT_COMPACT_MIN_BYTES).unwrap();
            assert_eq!(offset_of(&store, "g", "t", 0), Some(10));
            store.write_blocking(commit("g", "t", 1, 20)).unwrap();
        }
        let store = OffsetStore::open(dir.path(), DEFAULT_COMPACT_MIN_BYTES).unwrap();
        assert_eq!(offset_of(&store, "g", "t", 0), Some(10));
        assert_eq!(offset_of(&store, "g", "t", 1), Some(20));
    }

    #[test]
    fn crc_valid_garbage_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        let payload = b"{\"op\":\"from_the_future\"}";
        let mut data = (payload.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        data.extend_from_slice(payload);
        fs::write(dir.path().join(LOG_FILE), &data).unwrap();
        assert!(matches!(
            OffsetStore::open(dir.path(), DEFAULT_COMPACT_MIN_BYTES),
            Err(GroupError::Corrupt { .. })
        ));
    }
}
