//! A query index over the verified audit trail (issue 6), kept in a sled database next to the
//! trail (`<audit-dir>/../audit-index/`) so the trail directory stays byte-identical for
//! auditors.
//!
//! The index holds, for every event covered by a verified, signed checkpoint:
//!
//! * the event's position (segment, byte offset) and Merkle leaf hash, by sequence;
//! * its sequence by principal, by resource (`Type:name` and bare name), by method, by time
//!   (microsecond timestamp) and by granted/denied;
//! * in `meta`: the log id, the anchor start, the indexed tree size, the signed root at that
//!   size and the Merkle frontier there.
//!
//! [`update`] verifies the trail and then indexes what is new since the indexed size;
//! [`update_verified`] is the same without the full verification, for callers that just
//! verified the trail (the self-check). Both re-hash every new event themselves and only
//! commit a range once the recomputed Merkle root equals a signed checkpoint's root, so
//! unverified data is never indexed. A stale or foreign index (the indexed size or its root
//! is no longer among the trail's checkpoints, another log id, another anchor) is rebuilt
//! ([`rebuild`]).
//!
//! [`query_indexed`] gets candidate sequences from the most selective index, reads just
//! those events (each checked against its indexed leaf hash), applies the full filter, and
//! scans the events after the indexed size from the segments, Merkle-checking them against
//! the later checkpoints. Any problem with the index or an inconsistency falls back to the
//! plain verifying scan [`verify::query`], so a query never fails because of the index.
//! The indexed path does not re-verify events that are not candidates: the trail as a whole
//! is verified by the self-check and `gatehouse audit verify`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::event::AuditEvent;
use super::merkle::{CompactTree, Hash, leaf_hash};
use super::segment::{self, Frame, MAGIC, parse_segment_file_name};
use super::verify::{self, QueryFilter, VerifiedEvent, VerifyError};

/// Format version of the index; another version is rebuilt.
const VERSION: u64 = 2;

/// Serialises this process's access to index databases (sled locks a database per open).
static LOCK: Mutex<()> = Mutex::new(());

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database failed.
    #[error("audit index database: {0}")]
    Db(#[from] sled::Error),
    /// The trail does not verify.
    #[error("audit trail: {0}")]
    Verify(#[from] VerifyError),
    /// The index does not exist.
    #[error("no audit index at {0}")]
    Missing(PathBuf),
    /// The index does not fit the trail (stale, foreign or damaged).
    #[error("audit index does not fit the trail: {0}")]
    Stale(String),
}

/// What an update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexReport {
    /// Whether the index was rebuilt from scratch.
    pub rebuilt: bool,
    /// Events indexed by this call.
    pub added: u64,
    /// Tree size now indexed.
    pub indexed_size: u64,
}

/// The index directory of an audit directory: its sibling `audit-index`.
pub fn index_path(audit_dir: &Path) -> PathBuf {
    match audit_dir.parent() {
        Some(p) => p.join("audit-index"),
        None => PathBuf::from("audit-index"),
    }
}

/// Whether an index exists for `audit_dir`.
pub fn index_exists(audit_dir: &Path) -> bool {
    index_path(audit_dir).is_dir()
}

fn guard() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

struct Index {
    db: sled::Db,
    meta: sled::Tree,
    pos: sled::Tree,
    principal: sled::Tree,
    method: sled::Tree,
    res_name: sled::Tree,
    res_typed: sled::Tree,
    time: sled::Tree,
    granted: sled::Tree,
}

/// The indexed state from `meta`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    log: String,
    start: u64,
    size: u64,
    root: Hash,
    tree: CompactTree,
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn hash_of(b: &[u8]) -> Option<Hash> {
    b.get(..32)?.try_into().ok()
}

/// `len: u32 BE | bytes`: an unambiguous prefix for one string value.
fn str_prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// Sequences per posting block: a posting key is `value prefix | seq >> POSTING_SHIFT`,
/// its value the sequences (u64 BE) appended by the merge operator. Few large entries keep
/// the database small and quick to open.
const POSTING_SHIFT: u32 = 16;
/// Position records per `pos` block (`seq >> POS_SHIFT`).
const POS_SHIFT: u32 = 8;
/// Bytes of a position record: seq, segment first sequence, offset (u64 BE each), leaf hash.
const POS_REC: usize = 56;
/// Microseconds per `time` bucket; a bucket's value holds (micros i64 BE, seq u64 BE) pairs.
const TIME_BUCKET_MICROS: i64 = 1_000_000;

fn block_key(mut prefix: Vec<u8>, block: u64) -> Vec<u8> {
    prefix.extend_from_slice(&block.to_be_bytes());
    prefix
}

/// The merge operator of every block tree: append.
fn append_merge(_key: &[u8], old: Option<&[u8]>, new: &[u8]) -> Option<Vec<u8>> {
    let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
    v.extend_from_slice(new);
    Some(v)
}

fn time_bucket(micros: i64) -> [u8; 8] {
    time_key(micros.div_euclid(TIME_BUCKET_MICROS))
}

/// Order-preserving big-endian key of a signed microsecond timestamp.
fn time_key(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

impl Index {
    fn open(path: &Path) -> Result<Self, IndexError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Self {
            meta: db.open_tree("meta")?,
            pos: db.open_tree("pos")?,
            principal: db.open_tree("principal")?,
            method: db.open_tree("method")?,
            res_name: db.open_tree("resource_name")?,
            res_typed: db.open_tree("resource_typed")?,
            time: db.open_tree("time")?,
            granted: db.open_tree("granted")?,
            db,
        }
        .with_merge())
    }

    fn with_merge(self) -> Self {
        for t in self.trees().into_iter().skip(1) {
            t.set_merge_operator(append_merge);
        }
        self
    }

    /// The position record of `seq`: (segment first sequence, offset, leaf hash). `cache`
    /// keeps the last block read.
    fn position(
        &self,
        seq: u64,
        cache: &mut Option<(u64, sled::IVec)>,
    ) -> Result<Option<(u64, u64, Hash)>, IndexError> {
        let block = seq >> POS_SHIFT;
        if cache.as_ref().is_none_or(|(b, _)| *b != block) {
            *cache = self.pos.get(block.to_be_bytes())?.map(|v| (block, v));
        }
        let Some((_, v)) = cache.as_ref() else {
            return Ok(None);
        };
        Ok(v.chunks_exact(POS_REC)
            .rev()
            .find(|r| u64_of(r) == Some(seq))
            .and_then(|r| {
                Some((
                    u64_of(r.get(8..)?)?,
                    u64_of(r.get(16..)?)?,
                    hash_of(r.get(24..)?)?,
                ))
            }))
    }

    fn trees(&self) -> [&sled::Tree; 8] {
        [
            &self.meta,
            &self.pos,
            &self.principal,
            &self.method,
            &self.res_name,
            &self.res_typed,
            &self.time,
            &self.granted,
        ]
    }

    fn clear(&self) -> Result<(), IndexError> {
        for t in self.trees() {
            t.clear()?;
        }
        Ok(())
    }

    fn meta(&self) -> Result<Option<Meta>, IndexError> {
        let get = |k: &str| self.meta.get(k);
        let version = get("version")?.and_then(|v| u64_of(&v));
        if version != Some(VERSION) {
            return Ok(None);
        }
        let (Some(log), Some(start), Some(size), Some(root), Some(frontier)) = (
            get("log")?,
            get("start")?.and_then(|v| u64_of(&v)),
            get("size")?.and_then(|v| u64_of(&v)),
            get("root")?.and_then(|v| hash_of(&v)),
            get("frontier")?,
        ) else {
            return Ok(None);
        };
        let frontier: Option<Vec<Hash>> = frontier.chunks(32).map(hash_of).collect();
        let Some(tree) = frontier.and_then(|f| CompactTree::from_frontier(size, f)) else {
            return Ok(None);
        };
        Ok(Some(Meta {
            log: String::from_utf8_lossy(&log).into_owned(),
            start,
            size,
            root,
            tree,
        }))
    }

    fn set_meta(&self, m: &Meta) -> Result<(), IndexError> {
        let mut b = sled::Batch::default();
        b.insert("version", &VERSION.to_be_bytes());
        b.insert("log", m.log.as_bytes());
        b.insert("start", &m.start.to_be_bytes());
        b.insert("size", &m.size.to_be_bytes());
        b.insert("root", &m.root);
        b.insert("frontier", m.tree.frontier().concat());
        self.meta.apply_batch(b)?;
        Ok(())
    }

    /// Sequences under `prefix` in posting tree `tree`, sorted, without duplicates; `None`
    /// when there are more than `cap` (counting duplicates).
    fn seqs(tree: &sled::Tree, prefix: &[u8], cap: usize) -> Result<Option<Vec<u64>>, IndexError> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            if k.len() != prefix.len() + 8 {
                continue;
            }
            out.extend(v.chunks_exact(8).filter_map(u64_of));
            if out.len() > cap {
                return Ok(None);
            }
        }
        Ok(Some(sorted(out)))
    }
}

/// One event to index, waiting for the checkpoint that covers it.
struct Pending {
    seq: u64,
    segment: u64,
    offset: u64,
    leaf: Hash,
    payload: Vec<u8>,
}

/// The trail's signed state: log id, anchor start and frontier, checkpoints by tree size.
struct TrailState {
    log: Option<String>,
    start: u64,
    start_tree: CompactTree,
    roots: BTreeMap<u64, Hash>,
}

fn trail_state(dir: &Path) -> Result<TrailState, IndexError> {
    let (anchor, cps) = verify::verified_checkpoints(dir)?;
    let mut roots: BTreeMap<u64, Hash> = cps
        .iter()
        .map(|(_, c)| (c.tree_size, c.root_hash))
        .collect();
    let log = cps
        .last()
        .map(|(_, c)| c.log.clone())
        .or_else(|| anchor.as_ref().map(|a| a.cp.log.clone()));
    let (start, start_tree) = match anchor {
        Some(a) => {
            roots.insert(a.size, a.cp.root_hash);
            (a.size, a.tree)
        }
        None => (0, CompactTree::new()),
    };
    Ok(TrailState {
        log,
        start,
        start_tree,
        roots,
    })
}

/// Whether the indexed state still describes a prefix of this trail.
fn fits(m: &Meta, t: &TrailState) -> Result<(), String> {
    if t.log.as_deref() != Some(m.log.as_str()) {
        return Err(format!("index is of log '{}'", m.log));
    }
    if m.start != t.start {
        return Err(format!(
            "index starts at {} but the trail at {}",
            m.start, t.start
        ));
    }
    if m.size == t.start && m.tree == t.start_tree && m.root == t.start_tree.root() {
        return Ok(());
    }
    match t.roots.get(&m.size) {
        Some(r) if *r == m.root && m.tree.root() == m.root => Ok(()),
        Some(_) => Err(format!("root at indexed tree size {} differs", m.size)),
        None => Err(format!(
            "no checkpoint at indexed tree size {} (trail shrank or was rewritten)",
            m.size
        )),
    }
}

/// Sorted segment files (first sequence, name) at or after `start`.
fn segment_files(dir: &Path, start: u64) -> Result<Vec<(u64, String)>, IndexError> {
    let seg_dir = dir.join("segments");
    let rd = fs::read_dir(&seg_dir).map_err(|source| VerifyError::Io {
        path: seg_dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        if let Some(n) = e.file_name().to_str()
            && let Some(s) = parse_segment_file_name(n)
            && s >= start
        {
            out.push((s, n.to_owned()));
        }
    }
    out.sort();
    Ok(out)
}

fn read_segment(dir: &Path, name: &str) -> Result<Vec<u8>, IndexError> {
    let path = dir.join("segments").join(name);
    Ok(fs::read(&path).map_err(|source| VerifyError::Io { path, source })?)
}

/// Reads segment `name` from byte `off` to its end.
fn read_segment_from(dir: &Path, name: &str, off: usize) -> Result<Vec<u8>, IndexError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join("segments").join(name);
    let io = |source| VerifyError::Io {
        path: path.clone(),
        source,
    };
    let mut f = fs::File::open(&path).map_err(io)?;
    f.seek(SeekFrom::Start(off as u64)).map_err(io)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io)?;
    Ok(data)
}

/// Reads the record at byte `off` of `file` (header and payload) into `buf`.
fn read_record(file: &mut fs::File, off: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(off))?;
    buf.clear();
    buf.resize(segment::HEADER_LEN, 0);
    file.read_exact(buf)?;
    let len = buf
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes) as usize;
    if len == 0 || len > segment::MAX_EVENT_BYTES {
        return Err(std::io::Error::other("not an event record"));
    }
    buf.resize(segment::HEADER_LEN + len, 0);
    file.read_exact(&mut buf[segment::HEADER_LEN..])
}

/// Where the record after `size` events starts: (index into `files`, byte offset).
fn resume_point(
    idx: Option<&Index>,
    dir: &Path,
    files: &[(u64, String)],
    start: u64,
    size: u64,
) -> Result<(usize, usize), IndexError> {
    if size == start {
        return match files.first() {
            Some((f, _)) if *f == start => Ok((0, MAGIC.len())),
            None => Ok((0, MAGIC.len())),
            Some(_) => Err(IndexError::Stale("first segment is missing".into())),
        };
    }
    let stale = |why: &str| IndexError::Stale(why.to_owned());
    let idx = idx.ok_or_else(|| stale("no position of the last indexed event"))?;
    let (seg, off, _) = idx
        .position(size - 1, &mut None)?
        .ok_or_else(|| stale("no position of the last indexed event"))?;
    let i = files
        .iter()
        .position(|(f, _)| *f == seg)
        .ok_or_else(|| stale("segment of the last indexed event is missing"))?;
    let path = dir.join("segments").join(&files[i].1);
    let mut file = fs::File::open(&path).map_err(|source| VerifyError::Io { path, source })?;
    let mut buf = Vec::new();
    read_record(&mut file, off, &mut buf).map_err(|e| stale(&e.to_string()))?;
    let off = usize::try_from(off).map_err(|_| stale("bad offset"))?;
    match segment::decode(&buf, 0) {
        Ok((Frame::Record { seq, .. }, n)) if seq == size - 1 => Ok((i, off + n)),
        _ => Err(stale("the last indexed event is not where the index says")),
    }
}

/// One record met by [`walk`].
struct Rec<'a> {
    /// First sequence of its segment.
    segment: u64,
    /// Byte offset of the record in the segment.
    offset: usize,
    seq: u64,
    payload: &'a [u8],
}

/// Reads records from `files[from.0]` at byte `from.1` on, in order, calling `f` with
/// each [`Rec`] until `f` returns `false` or the
/// records end. A record that does not decode ends the walk (the live tail); a sequence
/// out of order is an error.
fn walk(
    dir: &Path,
    files: &[(u64, String)],
    from: (usize, usize),
    mut expect: u64,
    f: &mut dyn FnMut(Rec<'_>) -> Result<bool, IndexError>,
) -> Result<(), IndexError> {
    let (first_file, mut off) = from;
    let count = files.len();
    for (i, (first, name)) in files.iter().enumerate().skip(first_file) {
        let is_last = i + 1 == count;
        // The first file is read from the resume offset on, the others whole.
        let (data, base) = if off <= MAGIC.len() {
            let data = read_segment(dir, name)?;
            if !data.starts_with(MAGIC) {
                return Err(IndexError::Stale(format!("segment {name}: bad header")));
            }
            off = MAGIC.len();
            (data, 0)
        } else {
            (read_segment_from(dir, name, off)?, off)
        };
        off -= base;
        let mut sealed = false;
        while off < data.len() {
            match segment::decode(&data, off) {
                Ok((Frame::Record { seq, payload }, n)) => {
                    if seq != expect {
                        return Err(IndexError::Stale(format!(
                            "segment {name}: sequence {seq} where {expect} belongs"
                        )));
                    }
                    let rec = Rec {
                        segment: *first,
                        offset: base + off,
                        seq,
                        payload,
                    };
                    if !f(rec)? {
                        return Ok(());
                    }
                    expect += 1;
                    off += n;
                }
                Ok((Frame::Trailer { .. }, _)) => {
                    sealed = true;
                    break;
                }
                Err(_) if is_last => return Ok(()),
                Err(e) => {
                    return Err(IndexError::Stale(format!(
                        "segment {name}: {} at sequence {expect}",
                        e.describe()
                    )));
                }
            }
        }
        if !sealed && !is_last {
            return Err(IndexError::Stale(format!(
                "segment {name} is not sealed although another follows"
            )));
        }
        off = 0;
    }
    Ok(())
}

fn commit(idx: &Index, pending: &mut Vec<Pending>, meta: &Meta) -> Result<u64, IndexError> {
    // (tree, key) -> bytes to append.
    let mut adds: BTreeMap<(usize, Vec<u8>), Vec<u8>> = BTreeMap::new();
    let n = pending.len() as u64;
    for p in pending.drain(..) {
        let ev = AuditEvent::from_json(&p.payload)
            .map_err(|e| IndexError::Stale(format!("event {} does not parse: {e}", p.seq)))?;
        let mut rec = Vec::with_capacity(POS_REC);
        rec.extend_from_slice(&p.seq.to_be_bytes());
        rec.extend_from_slice(&p.segment.to_be_bytes());
        rec.extend_from_slice(&p.offset.to_be_bytes());
        rec.extend_from_slice(&p.leaf);
        adds.entry((1, (p.seq >> POS_SHIFT).to_be_bytes().to_vec()))
            .or_default()
            .extend_from_slice(&rec);
        let block = p.seq >> POSTING_SHIFT;
        let seq = p.seq.to_be_bytes();
        let postings: [(usize, Vec<u8>); 5] = [
            (2, str_prefix(&[&ev.principal])),
            (3, str_prefix(&[&ev.method])),
            (4, str_prefix(&[&ev.resource.name])),
            (
                5,
                str_prefix(&[&ev.resource.resource_type, &ev.resource.name]),
            ),
            (7, vec![u8::from(ev.granted)]),
        ];
        for (tree, prefix) in postings {
            adds.entry((tree, block_key(prefix, block)))
                .or_default()
                .extend_from_slice(&seq);
        }
        let micros = ev.time.unix_micros();
        let t = adds.entry((6, time_bucket(micros).to_vec())).or_default();
        t.extend_from_slice(&time_key(micros));
        t.extend_from_slice(&seq);
    }
    let trees = idx.trees();
    for ((tree, key), bytes) in adds {
        if let Some(t) = trees.get(tree) {
            t.merge(key, bytes)?;
        }
    }
    // Meta last: entries past the indexed size are ignored by queries; a range committed
    // twice (after a crash) only adds duplicates, which readers drop.
    idx.set_meta(meta)?;
    Ok(n)
}

fn update_inner(dir: &Path, force_rebuild: bool) -> Result<IndexReport, IndexError> {
    let _g = guard();
    let state = trail_state(dir)?;
    let Some(log) = state.log.clone() else {
        return Err(IndexError::Stale("the trail has no checkpoint yet".into()));
    };
    let path = index_path(dir);
    let idx = Index::open(&path)?;
    let current = if force_rebuild { None } else { idx.meta()? };
    let (mut meta, rebuilt) = match current {
        Some(m) if fits(&m, &state).is_ok() => (m, false),
        other => {
            if let Some(m) = &other
                && let Err(why) = fits(m, &state)
            {
                tracing::info!(reason = %why, "rebuilding the audit query index");
            }
            idx.clear()?;
            let m = Meta {
                log,
                start: state.start,
                size: state.start,
                root: state.start_tree.root(),
                tree: state.start_tree.clone(),
            };
            (m, true)
        }
    };
    let latest = state.roots.keys().next_back().copied().unwrap_or(0);
    let files = segment_files(dir, state.start)?;
    let mut added = 0;
    if latest > meta.size {
        let from = resume_point(Some(&idx), dir, &files, state.start, meta.size)?;
        let mut tree = meta.tree.clone();
        let mut pending = Vec::new();
        walk(dir, &files, from, meta.size, &mut |r: Rec<'_>| {
            let (seg, off, seq, payload) = (r.segment, r.offset, r.seq, r.payload);
            let leaf = leaf_hash(payload);
            tree.push(leaf);
            pending.push(Pending {
                seq,
                segment: seg,
                offset: off as u64,
                leaf,
                payload: payload.to_vec(),
            });
            let size = tree.size();
            if let Some(root) = state.roots.get(&size) {
                if tree.root() != *root {
                    return Err(IndexError::Stale(format!(
                        "Merkle root at tree size {size} does not match its checkpoint"
                    )));
                }
                meta.size = size;
                meta.root = *root;
                meta.tree = tree.clone();
                added += commit(&idx, &mut pending, &meta)?;
            }
            Ok(size < latest)
        })?;
    }
    if rebuilt && added == 0 {
        idx.set_meta(&meta)?;
    }
    idx.db.flush()?;
    Ok(IndexReport {
        rebuilt,
        added,
        indexed_size: meta.size,
    })
}

/// Verifies the trail, then indexes the events covered by signed checkpoints since the
/// indexed size (rebuilding a stale or foreign index). Creates the index if needed.
pub fn update(dir: &Path) -> Result<IndexReport, IndexError> {
    verify::verify_dir(dir, None)?;
    update_inner(dir, false)
}

/// [`update`] for a caller that has just verified the trail (the self-check): skips the
/// full verification; new events are still re-hashed and only committed when their Merkle
/// root equals a signed checkpoint's.
pub fn update_verified(dir: &Path) -> Result<IndexReport, IndexError> {
    update_inner(dir, false)
}

/// Verifies the trail and rebuilds the index from scratch.
pub fn rebuild(dir: &Path) -> Result<IndexReport, IndexError> {
    verify::verify_dir(dir, None)?;
    update_inner(dir, true)
}

/// How a query was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryStats {
    /// Whether the index was used (false: plain scan).
    pub indexed: bool,
    /// Tree size covered by the index.
    pub indexed_size: u64,
    /// Candidate events read through the index.
    pub candidates: u64,
    /// Events scanned after the indexed size.
    pub tail_scanned: u64,
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

fn resource_candidates(idx: &Index, r: &str, cap: usize) -> Result<Option<Vec<u64>>, IndexError> {
    let Some(mut v) = Index::seqs(&idx.res_name, &str_prefix(&[r]), cap)? else {
        return Ok(None);
    };
    if let Some((t, n)) = r.split_once(':') {
        let Some(typed) = Index::seqs(&idx.res_typed, &str_prefix(&[t, n]), cap)? else {
            return Ok(None);
        };
        v.extend(typed);
        v = sorted(v);
    }
    Ok(Some(v))
}

fn time_candidates(
    idx: &Index,
    filter: &QueryFilter,
    cap: usize,
) -> Result<Option<Vec<u64>>, IndexError> {
    let from = filter.from.map(|f| f.unix_micros());
    let to = filter.to.map(|t| t.unix_micros());
    let lo = from.map_or([0u8; 8], time_bucket);
    let mut out = Vec::new();
    let iter = match to {
        Some(t) => idx.time.range(lo..=time_bucket(t)),
        None => idx.time.range(lo..),
    };
    for kv in iter {
        let (_, v) = kv?;
        for pair in v.chunks_exact(16) {
            let (Some(m), Some(seq)) = (u64_of(pair), pair.get(8..).and_then(u64_of)) else {
                continue;
            };
            let m = (m as i64) ^ i64::MIN;
            if from.is_none_or(|f| m >= f) && to.is_none_or(|t| m < t) {
                out.push(seq);
            }
        }
        if out.len() > cap {
            return Ok(None);
        }
    }
    Ok(Some(sorted(out)))
}

/// Candidate sequences from the most selective index for `filter`; `None`: every event.
fn candidates(idx: &Index, filter: &QueryFilter) -> Result<Option<Vec<u64>>, IndexError> {
    let mut best: Option<Vec<u64>> = None;
    let cap = |b: &Option<Vec<u64>>| b.as_ref().map_or(usize::MAX - 1, Vec::len);
    let consider = |v: Option<Vec<u64>>, best: &mut Option<Vec<u64>>| {
        if let Some(v) = v
            && v.len() <= cap(best)
        {
            *best = Some(v);
        }
    };
    if let Some(p) = &filter.principal {
        let v = Index::seqs(&idx.principal, &str_prefix(&[p]), cap(&best))?;
        consider(v, &mut best);
    }
    if let Some(m) = &filter.method {
        let v = Index::seqs(&idx.method, &str_prefix(&[m]), cap(&best))?;
        consider(v, &mut best);
    }
    if let Some(r) = &filter.resource {
        let v = resource_candidates(idx, r, cap(&best))?;
        consider(v, &mut best);
    }
    if filter.from.is_some() || filter.to.is_some() {
        let v = time_candidates(idx, filter, cap(&best))?;
        consider(v, &mut best);
    }
    if best.is_none()
        && let Some(g) = filter.granted
    {
        best = Index::seqs(&idx.granted, &[u8::from(g)], usize::MAX - 1)?;
    }
    Ok(best)
}

fn indexed(
    dir: &Path,
    filter: &QueryFilter,
) -> Result<(Vec<VerifiedEvent>, QueryStats), IndexError> {
    let _g = guard();
    let path = index_path(dir);
    if !path.is_dir() {
        return Err(IndexError::Missing(path));
    }
    let idx = Index::open(&path)?;
    let meta = idx
        .meta()?
        .ok_or_else(|| IndexError::Stale("no index metadata".into()))?;
    let state = trail_state(dir)?;
    fits(&meta, &state).map_err(IndexError::Stale)?;
    let files = segment_files(dir, state.start)?;
    let stale = |why: String| IndexError::Stale(why);

    let seqs: Vec<u64> = match candidates(&idx, filter)? {
        Some(v) => v,
        None => (meta.start..meta.size).collect(),
    };
    let mut out = Vec::new();
    let mut current: Option<(u64, fs::File)> = None;
    let mut buf = Vec::new();
    let mut block = None;
    let mut candidates = 0u64;
    for seq in seqs
        .into_iter()
        .filter(|s| *s >= meta.start && *s < meta.size)
    {
        candidates += 1;
        let (seg, off, leaf) = idx
            .position(seq, &mut block)?
            .ok_or_else(|| stale(format!("no position of event {seq}")))?;
        if current.as_ref().is_none_or(|(s, _)| *s != seg) {
            let name = files
                .iter()
                .find(|(f, _)| *f == seg)
                .map(|(_, n)| n.clone())
                .ok_or_else(|| stale(format!("segment of event {seq} is missing")))?;
            let path = dir.join("segments").join(&name);
            let file = fs::File::open(&path).map_err(|source| VerifyError::Io { path, source })?;
            current = Some((seg, file));
        }
        let Some((_, file)) = current.as_mut() else {
            return Err(stale("no segment open".into()));
        };
        if off < MAGIC.len() as u64 {
            return Err(stale(format!("offset of event {seq} is out of range")));
        }
        read_record(file, off, &mut buf)
            .map_err(|e| stale(format!("cannot read event {seq}: {e}")))?;
        let payload = match segment::decode(&buf, 0) {
            Ok((Frame::Record { seq: s, payload }, _)) if s == seq => payload,
            _ => return Err(stale(format!("event {seq} is not where the index says"))),
        };
        if leaf_hash(payload) != leaf {
            return Err(stale(format!("event {seq} changed since it was indexed")));
        }
        let ev = AuditEvent::from_json(payload)
            .map_err(|e| stale(format!("event {seq} does not parse: {e}")))?;
        if filter.matches(&ev) {
            out.push(VerifiedEvent {
                event: ev,
                stored: payload.to_vec(),
            });
        }
    }
    drop(current);

    // The tail after the indexed size, Merkle-checked against later checkpoints.
    let latest = state.roots.keys().next_back().copied().unwrap_or(0);
    let from = resume_point(Some(&idx), dir, &files, meta.start, meta.size)?;
    let mut tree = meta.tree.clone();
    let mut tail = 0u64;
    walk(dir, &files, from, meta.size, &mut |r: Rec<'_>| {
        let (seq, payload) = (r.seq, r.payload);
        tree.push(leaf_hash(payload));
        tail += 1;
        let size = tree.size();
        if let Some(root) = state.roots.get(&size)
            && tree.root() != *root
        {
            return Err(IndexError::Stale(format!(
                "Merkle root at tree size {size} does not match its checkpoint"
            )));
        }
        let ev = AuditEvent::from_json(payload)
            .map_err(|e| IndexError::Stale(format!("event {seq} does not parse: {e}")))?;
        if filter.matches(&ev) {
            out.push(VerifiedEvent {
                event: ev,
                stored: payload.to_vec(),
            });
        }
        Ok(true)
    })?;
    if tree.size() < latest {
        return Err(stale(format!(
            "the trail ends at {} before the latest checkpoint {latest}",
            tree.size()
        )));
    }
    Ok((
        out,
        QueryStats {
            indexed: true,
            indexed_size: meta.size,
            candidates,
            tail_scanned: tail,
        },
    ))
}

/// [`verify::query`] answered through the index when it fits the trail; otherwise (no index,
/// stale, locked or damaged index, any inconsistency) through the plain verifying scan.
/// Returns the same events in the same order as [`verify::query`] on an intact trail.
pub fn query_indexed(dir: &Path, filter: &QueryFilter) -> Result<Vec<AuditEvent>, VerifyError> {
    Ok(query_indexed_stored(dir, filter)?
        .0
        .into_iter()
        .map(|v| v.event)
        .collect())
}

/// [`query_indexed`] returning each event's stored canonical bytes too, and how the query
/// was answered.
pub fn query_indexed_stored(
    dir: &Path,
    filter: &QueryFilter,
) -> Result<(Vec<VerifiedEvent>, QueryStats), VerifyError> {
    match indexed(dir, filter) {
        Ok(r) => Ok(r),
        Err(e) => {
            if !matches!(e, IndexError::Missing(_)) {
                tracing::warn!(error = %e, "audit query index not used; scanning the trail");
            }
            let c = verify::verify_and_collect(dir, None, &|ev| filter.matches(ev))?;
            Ok((
                c.events,
                QueryStats {
                    indexed: false,
                    indexed_size: 0,
                    candidates: 0,
                    tail_scanned: c.report.tree_size - c.report.anchored_at,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_and_separate_values() {
        let times = [i64::MIN, -5_000_001, -1, 0, 1, 999_999, 1_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(time_key(w[0]) < time_key(w[1]), "{w:?}");
            assert!(time_bucket(w[0]) <= time_bucket(w[1]), "{w:?}");
        }
        // "a" + "b:c" and "a:b" + "c" must not share a prefix.
        assert_ne!(str_prefix(&["a", "b:c"]), str_prefix(&["a:b", "c"]));
        assert!(!str_prefix(&["ab"]).starts_with(&str_prefix(&["a"])));
        assert_eq!(
            append_merge(b"k", Some(b"12"), b"34").as_deref(),
            Some(&b"1234"[..])
        );
        assert_eq!(sorted(vec![5, 1, 5, 3, 1]), vec![1, 3, 5]);
        assert_eq!(
            index_path(Path::new("/data/audit")),
            PathBuf::from("/data/audit-index")
        );
    }
}
