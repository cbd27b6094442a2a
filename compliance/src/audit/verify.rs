//! Offline verification of an audit directory (a copy is enough), inclusion and
//! consistency proofs, and queries and exports over the verified log.
//!
//! [`verify_dir`] checks, without trusting anything in the directory except the keys given:
//!
//! 1. the key history: canonical records, genesis self-signed, every rotation signed by
//!    the previous and the new key; with trusted keys, the genesis key must be one of them;
//! 2. every checkpoint: canonical bytes, file name = tree size, signed by the key the
//!    history makes valid for that tree size, linked to its predecessor by SHA-256 of the
//!    predecessor's bytes (a missing checkpoint is named), and a consistent segment chain;
//! 3. every segment: header, record framing and CRC, sequence continuity by position (no
//!    gap, duplicate or reordering), `data.sequence` equal to the position, sealing
//!    trailers, and each sealed segment's SHA-256 and chain value against the checkpoint
//!    that lists it;
//! 4. the Merkle tree recomputed from the stored bytes: the root at every checkpoint's tree
//!    size must equal the signed root;
//! 5. the log is not shorter than the latest checkpoint (truncation or deletion).
//!
//! The first failure is returned as a [`VerifyError`] naming the segment file and event
//! sequence, or the checkpoint. Events after the latest checkpoint (a live log) and a torn
//! record there are reported as warnings, not failures: no signature covers them yet.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::Anchor;
use super::canonical::serde_str;
use super::checkpoint::{
    CHECKPOINT_VERSION, Checkpoint, SealedSegment, checkpoint_file_name,
    parse_checkpoint_file_name, segment_chain_next,
};
use super::event::{AuditEvent, canonical_sequence};
use super::keys::{KeyHistory, PublicKey};
use super::merkle::{self, CompactTree, Hash, leaf_hash};
use super::segment::{self, Frame, MAGIC, parse_segment_file_name, segment_file_name};
use super::time::Timestamp;

/// Why verification (or a proof, query or export) failed, with the first bad place.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing an export failed.
    #[error("cannot write the export: {0}")]
    Output(io::Error),
    /// The key history is invalid.
    #[error("key history keys/history.jsonl, line {line}: {reason}")]
    KeyHistory {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint is invalid.
    #[error("checkpoint {checkpoint}: {reason}")]
    Checkpoint {
        /// File name under `checkpoints/`.
        checkpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint that must exist does not.
    #[error("checkpoint {checkpoint} is missing: {reason}")]
    MissingCheckpoint {
        /// The missing file name under `checkpoints/`.
        checkpoint: String,
        /// How its absence was noticed.
        reason: String,
    },
    /// A segment is damaged or inconsistent at an event.
    #[error("segment {segment}, sequence {sequence}: {reason}")]
    Segment {
        /// File name under `segments/`.
        segment: String,
        /// The first affected sequence (position).
        sequence: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment file that must exist does not.
    #[error("segment {segment} is missing (events from sequence {sequence} on)")]
    MissingSegment {
        /// The missing file name.
        segment: String,
        /// Its first sequence.
        sequence: u64,
    },
    /// The recomputed Merkle root differs from a signed checkpoint although every record is
    /// intact (records rewritten with valid CRCs, or a mis-signed checkpoint).
    #[error(
        "checkpoint {checkpoint}: root hash does not match events {first}..={last} (through segment {segment})"
    )]
    RootMismatch {
        /// The checkpoint.
        checkpoint: String,
        /// The segment holding the last covered event.
        segment: String,
        /// First event not covered by the previous checkpoint.
        first: u64,
        /// Last covered event.
        last: u64,
    },
    /// The log ends before the latest checkpoint's tree size.
    #[error(
        "log truncated: checkpoint {checkpoint} covers {tree_size} events but the log ends before sequence {sequence} (segment {segment})"
    )]
    Truncated {
        /// The checkpoint covering the lost events.
        checkpoint: String,
        /// Its tree size.
        tree_size: u64,
        /// Segment where events are missing (possibly a deleted file's name).
        segment: String,
        /// First missing sequence.
        sequence: u64,
    },
    /// Bad arguments or input files (key files, proofs).
    #[error("invalid input: {0}")]
    Input(String),
    /// An inclusion or consistency proof does not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
}

impl VerifyError {
    /// The segment file named by the error, if any.
    pub fn segment(&self) -> Option<&str> {
        match self {
            Self::Segment { segment, .. }
            | Self::MissingSegment { segment, .. }
            | Self::RootMismatch { segment, .. }
            | Self::Truncated { segment, .. } => Some(segment),
            _ => None,
        }
    }

    /// The first affected event sequence, if any.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Self::Segment { sequence, .. }
            | Self::MissingSegment { sequence, .. }
            | Self::Truncated { sequence, .. } => Some(*sequence),
            Self::RootMismatch { first, .. } => Some(*first),
            _ => None,
        }
    }

    /// The checkpoint file named by the error, if any.
    pub fn checkpoint(&self) -> Option<&str> {
        match self {
            Self::Checkpoint { checkpoint, .. }
            | Self::MissingCheckpoint { checkpoint, .. }
            | Self::RootMismatch { checkpoint, .. }
            | Self::Truncated { checkpoint, .. } => Some(checkpoint),
            _ => None,
        }
    }
}

/// The result of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events in the log.
    pub tree_size: u64,
    /// Merkle root over all events.
    pub root_hash: Hash,
    /// Segment files.
    pub segments: usize,
    /// Sealed segment files.
    pub sealed_segments: usize,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// The latest checkpoint's tree size (0 if none).
    pub latest_checkpoint_size: u64,
    /// The latest checkpoint's root hash.
    pub latest_checkpoint_root: Option<Hash>,
    /// Key ids in the verified history, oldest first.
    pub key_ids: Vec<String>,
    /// Whether the history was pinned to a trusted key.
    pub trusted_keys_pinned: bool,
    /// Events after the latest checkpoint (not yet covered by a signature).
    pub unanchored_events: u64,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// The first sequence held (an archived trail's anchor, see `archive`); 0 for a whole log.
    pub anchored_at: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Audit trail verification: PASSED")?;
        writeln!(
            f,
            "  events:       {} valid (sequences {}..{}), Merkle root {}",
            self.tree_size - self.anchored_at,
            self.anchored_at,
            self.tree_size,
            hex::encode(self.root_hash)
        )?;
        if self.anchored_at > 0 {
            writeln!(
                f,
                "  anchor:       events before {} are archived; this part starts at the signed checkpoint of tree size {} (anchor.json)",
                self.anchored_at, self.anchored_at
            )?;
        }
        writeln!(
            f,
            "  segments:     {}/{} valid ({} sealed)",
            self.segments, self.segments, self.sealed_segments
        )?;
        writeln!(
            f,
            "  checkpoints:  {}/{} valid, latest at tree size {}{}",
            self.checkpoints,
            self.checkpoints,
            self.latest_checkpoint_size,
            self.latest_checkpoint_root
                .map(|r| format!(" (root {})", hex::encode(r)))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "  signing keys: {} in the verified rotation history{}",
            self.key_ids.len(),
            if self.trusted_keys_pinned {
                ", starting at a trusted key"
            } else {
                " (NOT pinned: no trusted key given, signatures prove only internal consistency)"
            }
        )?;
        for (i, k) in self.key_ids.iter().enumerate() {
            writeln!(f, "    key {i}: {k}")?;
        }
        writeln!(
            f,
            "  unanchored:   {} events after the latest checkpoint",
            self.unanchored_events
        )?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, VerifyError> {
    read_into(path, Vec::new())
}

/// [`read`] into a buffer kept from an earlier file (its capacity is reused).
fn read_into(path: &Path, mut buf: Vec<u8>) -> Result<Vec<u8>, VerifyError> {
    use std::io::Read as _;
    buf.clear();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

fn list(dir: &Path) -> Result<Vec<String>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn cp_err(checkpoint: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::Checkpoint {
        checkpoint: checkpoint.to_owned(),
        reason: reason.into(),
    }
}

fn seg_err(segment: &str, sequence: u64, reason: impl Into<String>) -> VerifyError {
    VerifyError::Segment {
        segment: segment.to_owned(),
        sequence,
        reason: reason.into(),
    }
}

/// A verified checkpoint and its file name.
struct LoadedCheckpoint {
    name: String,
    cp: Checkpoint,
}

/// What a scan hands to its per-event callback.
struct EventRef<'a> {
    segment: &'a str,
    sequence: u64,
    payload: &'a [u8],
}

struct ScanOutput {
    report: VerifyReport,
    checkpoints: Vec<LoadedCheckpoint>,
    resume: Resume,
    tree: CompactTree,
}

/// File identity used to skip re-hashing sealed segments that did not change: length,
/// modification time and (on Unix) inode and status-change time, which no user can set back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    ino: u64,
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (ino, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (m.ino(), (m.ctime(), m.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let (ino, ctime) = (0, (0, 0));
    Some(FileStamp {
        len: m.len(),
        modified: m.modified().ok(),
        ino,
        ctime,
    })
}

/// A verified sealed segment remembered by a [`Resume`].
#[derive(Clone, Debug)]
struct VerifiedSegment {
    name: String,
    first: u64,
    next: u64,
    sha: Hash,
    stamp: FileStamp,
}

/// Where an incremental verification can pick up: the state after the last sealed segment
/// a previous scan verified (Merkle frontier, segment chain, checkpoint position) and the
/// identities of the segments before it. Sealed segments are immutable; one whose identity
/// (length, times, inode) is unchanged is not read again. Checkpoints and the key history
/// are always re-verified.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    segments: Vec<VerifiedSegment>,
    tree: CompactTree,
    chain: Hash,
    cp_idx: usize,
    prev_cp_size: u64,
}

impl Resume {
    /// Events covered by the remembered sealed segments.
    pub fn events(&self) -> u64 {
        self.tree.size()
    }
}

fn load_history(dir: &Path, trusted: Option<&[PublicKey]>) -> Result<KeyHistory, VerifyError> {
    let path = dir.join("keys").join("history.jsonl");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::KeyHistory {
                line: 0,
                reason: "file is missing".into(),
            });
        }
        Err(source) => return Err(VerifyError::Io { path, source }),
    };
    let history = KeyHistory::parse(&bytes)
        .map_err(|(line, reason)| VerifyError::KeyHistory { line, reason })?;
    if let Some(trusted) = trusted {
        let genesis = history.entries.first().map(|e| e.public);
        if !genesis.is_some_and(|g| trusted.contains(&g)) {
            return Err(VerifyError::KeyHistory {
                line: 1,
                reason: "the genesis key is not one of the trusted keys".into(),
            });
        }
    }
    Ok(history)
}

fn load_anchor(dir: &Path, history: &KeyHistory) -> Result<Option<Anchor>, VerifyError> {
    super::archive::load_anchor(dir, history).map_err(|reason| VerifyError::Checkpoint {
        checkpoint: super::archive::ANCHOR_FILE.to_owned(),
        reason,
    })
}

fn load_checkpoints(
    dir: &Path,
    history: &KeyHistory,
    anchor: Option<&Anchor>,
    warnings: &mut Vec<String>,
) -> Result<Vec<LoadedCheckpoint>, VerifyError> {
    let cp_dir = dir.join("checkpoints");
    let mut names: Vec<(u64, String)> = Vec::new();
    for n in list(&cp_dir)? {
        match parse_checkpoint_file_name(&n) {
            Some(s) => names.push((s, n)),
            None if n.starts_with('.') && n.ends_with(".tmp") => {}
            None => warnings.push(format!("ignored unexpected file checkpoints/{n}")),
        }
    }
    names.sort();
    let mut out: Vec<LoadedCheckpoint> = Vec::with_capacity(names.len());
    // size, file sha, segment chain
    let mut prev: Option<(u64, Hash, Hash)> =
        anchor.map(|a| (a.size, a.file_sha, a.cp.segment_chain));
    let mut log_name: Option<String> = anchor.map(|a| a.cp.log.clone());
    let mut last_next = anchor.map_or(0, |a| a.size);
    for (size, name) in names {
        if anchor.is_some_and(|a| size <= a.size) {
            warnings.push(format!(
                "ignored checkpoints/{name}: before the anchor (left over from archiving)"
            ));
            continue;
        }
        let bytes = read(&cp_dir.join(&name))?;
        let cp = Checkpoint::from_json(&bytes)
            .map_err(|e| cp_err(&name, format!("not a valid checkpoint: {e}")))?;
        if cp.to_file_bytes() != bytes {
            return Err(cp_err(&name, "not in canonical form (modified)"));
        }
        if cp.tree_size != size {
            return Err(cp_err(
                &name,
                format!("file name does not match tree size {}", cp.tree_size),
            ));
        }
        if cp.version != CHECKPOINT_VERSION {
            return Err(cp_err(&name, format!("unsupported version {}", cp.version)));
        }
        let key = history
            .key_for(&cp.key_id, cp.tree_size)
            .map_err(|m| cp_err(&name, m))?;
        if !cp.verify_by(&key.public) {
            return Err(cp_err(&name, "signature does not verify"));
        }
        match &log_name {
            None => log_name = Some(cp.log.clone()),
            Some(l) if *l != cp.log => return Err(cp_err(&name, "belongs to another log")),
            Some(_) => {}
        }
        // Chain link.
        let mut chain = match (prev, &cp.prev_checkpoint) {
            (None, None) => [0u8; 32],
            (Some((ps, _, _)), Some(link)) if link.tree_size > ps => {
                return Err(VerifyError::MissingCheckpoint {
                    checkpoint: checkpoint_file_name(link.tree_size),
                    reason: format!("{name} links to it"),
                });
            }
            (None, Some(link)) => {
                return Err(VerifyError::MissingCheckpoint {
                    checkpoint: checkpoint_file_name(link.tree_size),
                    reason: format!("{name} links to it"),
                });
            }
            (Some((ps, sha, chain)), Some(link)) if link.tree_size == ps && link.sha256 == sha => {
                chain
            }
            _ => return Err(cp_err(&name, "does not link to the previous checkpoint")),
        };
        for s in &cp.segments {
            chain = segment_chain_next(&chain, &s.sha256);
            if s.chain != chain || s.next_seq > cp.tree_size || s.first_seq > s.next_seq {
                return Err(cp_err(
                    &name,
                    format!("inconsistent entry for segment {}", s.file),
                ));
            }
            if s.first_seq < last_next {
                return Err(cp_err(&name, "segment entries out of order"));
            }
            last_next = s.next_seq;
        }
        if cp.segment_chain != chain {
            return Err(cp_err(&name, "segment chain head is inconsistent"));
        }
        prev = Some((size, Checkpoint::file_sha256(&bytes), chain));
        out.push(LoadedCheckpoint { name, cp });
    }
    Ok(out)
}

/// The full verification pass; calls `on_event` for every event in order and fills
/// `leaves` when given.
fn scan(
    dir: &Path,
    trusted: Option<&[PublicKey]>,
    leaves: Option<&mut Vec<Hash>>,
    on_event: &mut dyn FnMut(EventRef<'_>) -> Result<(), VerifyError>,
) -> Result<ScanOutput, VerifyError> {
    scan_resuming(dir, trusted, leaves, None, on_event)
}

/// [`scan`], skipping the sealed segments `resume` verified before when they are unchanged
/// (then `leaves` and `on_event` see only the events after them).
fn scan_resuming(
    dir: &Path,
    trusted: Option<&[PublicKey]>,
    mut leaves: Option<&mut Vec<Hash>>,
    resume: Option<&Resume>,
    on_event: &mut dyn FnMut(EventRef<'_>) -> Result<(), VerifyError>,
) -> Result<ScanOutput, VerifyError> {
    let history = load_history(dir, trusted)?;
    let anchor = load_anchor(dir, &history)?;
    let start = anchor.as_ref().map_or(0, |a| a.size);
    let mut warnings = Vec::new();
    let checkpoints = load_checkpoints(dir, &history, anchor.as_ref(), &mut warnings)?;
    let expected_sealed: Vec<(&SealedSegment, &str)> = checkpoints
        .iter()
        .flat_map(|c| c.cp.segments.iter().map(move |s| (s, c.name.as_str())))
        .collect();
    let latest_size = checkpoints.last().map_or(start, |c| c.cp.tree_size);

    let seg_dir = dir.join("segments");
    let mut files: Vec<(u64, String)> = Vec::new();
    for n in list(&seg_dir)? {
        match parse_segment_file_name(&n) {
            Some(s) if s < start => warnings.push(format!(
                "ignored segments/{n}: before the anchor (left over from archiving)"
            )),
            Some(s) => files.push((s, n)),
            None => warnings.push(format!("ignored unexpected file segments/{n}")),
        }
    }
    files.sort();

    let mut tree = anchor
        .as_ref()
        .map_or_else(CompactTree::new, |a| a.tree.clone());
    let mut cp_idx = 0;
    let mut prev_cp_size = start;
    let mut sealed_idx = 0;
    let mut chain = anchor.as_ref().map_or([0u8; 32], |a| a.cp.segment_chain);
    let mut last_sealed = true;
    let mut last_name = String::new();
    let count = files.len();
    let mut verified: Vec<VerifiedSegment> = Vec::new();
    // Resume after the sealed segments verified before, if every one is still there,
    // unchanged, and listed the same way by the checkpoints.
    if let Some(r) = resume
        && !r.segments.is_empty()
        && r.segments.len() <= files.len()
        && r.cp_idx <= checkpoints.len()
        && (r.cp_idx == 0
            || checkpoints
                .get(r.cp_idx - 1)
                .is_some_and(|c| c.cp.tree_size == r.prev_cp_size))
        && r.segments.iter().enumerate().all(|(i, v)| {
            files[i].1 == v.name
                && files[i].0 == v.first
                && stamp(&seg_dir.join(&v.name)).as_ref() == Some(&v.stamp)
                && expected_sealed.get(i).is_some_and(|(e, _)| {
                    e.file == v.name
                        && e.first_seq == v.first
                        && e.next_seq == v.next
                        && e.sha256 == v.sha
                })
        })
    {
        tree = r.tree.clone();
        cp_idx = r.cp_idx;
        prev_cp_size = r.prev_cp_size;
        sealed_idx = r.segments.len();
        chain = r.chain;
        verified = r.segments.clone();
        last_name = r
            .segments
            .last()
            .map(|v| v.name.clone())
            .unwrap_or_default();
    }
    let skip = verified.len();
    let mut resume_out = Resume {
        segments: verified.clone(),
        tree: tree.clone(),
        chain,
        cp_idx,
        prev_cp_size,
    };
    // A reader thread loads each segment, hands it over, and then computes the file's
    // SHA-256 while this thread checks the records and hashes the leaves of the same
    // segment: the two SHA-256 passes run on two cores.
    enum Read {
        Data(Result<Arc<Vec<u8>>, VerifyError>),
        Digest(Hash),
    }
    let stopped = || VerifyError::Input("segment reader stopped".into());
    std::thread::scope(|scope| -> Result<(), VerifyError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Read>(2);
        // Buffers come back once a segment is checked, so the next segments are read into
        // memory that is already mapped (no page faults, no zeroing of fresh pages).
        let (give_back, returned) = std::sync::mpsc::channel::<Arc<Vec<u8>>>();
        let (files_ref, seg_dir_ref) = (&files[skip..], &seg_dir);
        scope.spawn(move || {
            for (_, name) in files_ref {
                let buf = returned
                    .try_recv()
                    .ok()
                    .and_then(|a| Arc::try_unwrap(a).ok())
                    .unwrap_or_default();
                let data = match read_into(&seg_dir_ref.join(name), buf) {
                    Ok(d) => Arc::new(d),
                    Err(e) => {
                        let _ = tx.send(Read::Data(Err(e)));
                        return;
                    }
                };
                if tx.send(Read::Data(Ok(Arc::clone(&data)))).is_err() {
                    return;
                }
                let sha: Hash = Sha256::digest(data.as_slice()).into();
                drop(data);
                if tx.send(Read::Digest(sha)).is_err() {
                    return;
                }
            }
        });
        for (i, (first, name)) in files.iter().enumerate().skip(skip) {
            let is_last = i + 1 == count;
            let seg_stamp = stamp(&seg_dir.join(name));
            let next = tree.size();
            if *first > next {
                return Err(VerifyError::MissingSegment {
                    segment: segment_file_name(next),
                    sequence: next,
                });
            }
            if *first < next {
                return Err(seg_err(name, *first, "overlaps the previous segment"));
            }
            let segment_data = match rx.recv().map_err(|_| stopped())? {
                Read::Data(d) => d?,
                Read::Digest(_) => return Err(stopped()),
            };
            let data: &[u8] = segment_data.as_slice();
            if !data.starts_with(MAGIC) {
                return Err(seg_err(name, next, "bad segment header"));
            }
            let mut pos = MAGIC.len();
            let mut sealed = false;
            while pos < data.len() {
                let seq = tree.size();
                match segment::decode(data, pos) {
                    Ok((Frame::Record { seq: s, payload }, n)) => {
                        if s != seq {
                            return Err(seg_err(
                                name,
                                seq,
                                format!("found the record of sequence {s} where {seq} belongs"),
                            ));
                        }
                        if canonical_sequence(payload) != Some(seq) {
                            return Err(seg_err(
                                name,
                                seq,
                                "event's data.sequence does not match its position",
                            ));
                        }
                        let leaf = leaf_hash(payload);
                        tree.push(leaf);
                        if let Some(l) = leaves.as_deref_mut() {
                            l.push(leaf);
                        }
                        on_event(EventRef {
                            segment: name,
                            sequence: seq,
                            payload,
                        })?;
                        pos += n;
                        let size = tree.size();
                        if let Some(c) = checkpoints.get(cp_idx).filter(|c| c.cp.tree_size == size)
                        {
                            if tree.root() != c.cp.root_hash {
                                return Err(VerifyError::RootMismatch {
                                    checkpoint: c.name.clone(),
                                    segment: name.clone(),
                                    first: prev_cp_size,
                                    last: seq,
                                });
                            }
                            prev_cp_size = size;
                            cp_idx += 1;
                        }
                    }
                    Ok((Frame::Trailer { next_seq }, n)) => {
                        if next_seq != seq {
                            return Err(seg_err(
                                name,
                                seq,
                                format!("sealing trailer says the next sequence is {next_seq}"),
                            ));
                        }
                        if pos + n != data.len() {
                            return Err(seg_err(name, seq, "data after the sealing trailer"));
                        }
                        sealed = true;
                        pos += n;
                    }
                    Err(e) if is_last && seq >= latest_size => {
                        warnings.push(format!(
                            "segment {name}: {} at sequence {seq} after the latest checkpoint \
                         (torn write of a live log?); {} bytes not verified",
                            e.describe(),
                            data.len() - pos
                        ));
                        break;
                    }
                    Err(e) => return Err(seg_err(name, seq, e.describe())),
                }
            }
            let next = tree.size();
            let sha = match rx.recv().map_err(|_| stopped())? {
                Read::Digest(d) => d,
                Read::Data(_) => return Err(stopped()),
            };
            let _ = give_back.send(segment_data);
            if sealed {
                chain = segment_chain_next(&chain, &sha);
                let Some((entry, cp_name)) = expected_sealed.get(sealed_idx) else {
                    return Err(VerifyError::MissingCheckpoint {
                        checkpoint: checkpoint_file_name(next),
                        reason: format!("sealed segment {name} is not covered by any checkpoint"),
                    });
                };
                if entry.file != *name || entry.first_seq != *first || entry.next_seq != next {
                    return Err(seg_err(
                        name,
                        *first,
                        format!("checkpoint {cp_name} lists segment {} here", entry.file),
                    ));
                }
                if entry.sha256 != sha || entry.chain != chain {
                    return Err(seg_err(
                        name,
                        *first,
                        format!(
                            "SHA-256 of the sealed segment does not match checkpoint {cp_name}"
                        ),
                    ));
                }
                sealed_idx += 1;
                if let Some(st) = seg_stamp {
                    verified.push(VerifiedSegment {
                        name: name.clone(),
                        first: *first,
                        next,
                        sha,
                        stamp: st,
                    });
                    resume_out = Resume {
                        segments: verified.clone(),
                        tree: tree.clone(),
                        chain,
                        cp_idx,
                        prev_cp_size,
                    };
                }
            } else {
                if !is_last {
                    return Err(seg_err(
                        name,
                        next,
                        "not sealed although another segment follows",
                    ));
                }
                if let Some((entry, cp_name)) = expected_sealed.get(sealed_idx)
                    && entry.file == *name
                {
                    return Err(seg_err(
                        name,
                        next,
                        format!(
                            "checkpoint {cp_name} lists it as sealed but its trailer is missing"
                        ),
                    ));
                }
            }
            last_sealed = sealed;
            last_name.clone_from(name);
        }
        Ok(())
    })?;
    let next = tree.size();
    if let Some((entry, _)) = expected_sealed.get(sealed_idx) {
        return Err(VerifyError::MissingSegment {
            segment: entry.file.clone(),
            sequence: entry.first_seq,
        });
    }
    if let Some(c) = checkpoints.get(cp_idx) {
        let segment = if last_sealed {
            segment_file_name(next)
        } else {
            last_name
        };
        return Err(VerifyError::Truncated {
            checkpoint: c.name.clone(),
            tree_size: c.cp.tree_size,
            segment,
            sequence: next,
        });
    }
    let unanchored = next - latest_size;
    if unanchored > 0 {
        warnings.push(format!(
            "{unanchored} events after the latest checkpoint are not yet covered by a signature"
        ));
    }
    if checkpoints.is_empty() && next > 0 {
        warnings.push("no checkpoint: nothing is signed".into());
    }
    let report = VerifyReport {
        tree_size: next,
        root_hash: tree.root(),
        segments: count,
        sealed_segments: sealed_idx,
        checkpoints: checkpoints.len(),
        latest_checkpoint_size: latest_size,
        latest_checkpoint_root: checkpoints.last().map(|c| c.cp.root_hash),
        key_ids: history.entries.iter().map(|e| e.key_id.clone()).collect(),
        trusted_keys_pinned: trusted.is_some(),
        unanchored_events: unanchored,
        warnings,
        anchored_at: start,
    };
    Ok(ScanOutput {
        report,
        checkpoints,
        resume: resume_out,
        tree,
    })
}

/// File names and sizes of everything a scan reads, to tell a tampered directory from a
/// live one that changed during the scan.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for sub in ["segments", "checkpoints", "keys"] {
        if let Ok(rd) = fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let len = e.metadata().map_or(u64::MAX, |m| m.len());
                out.push((format!("{sub}/{}", e.file_name().to_string_lossy()), len));
            }
        }
    }
    out.sort();
    out
}

/// Runs `f` (a complete scan with fresh state) again, up to four times, when it failed while
/// the directory changed underneath it (a segment roll or checkpoint of a live log between
/// the listings). A failure on an unchanged directory is returned at once.
fn stable<T>(dir: &Path, mut f: impl FnMut() -> Result<T, VerifyError>) -> Result<T, VerifyError> {
    let mut attempt = 0;
    loop {
        let before = listing(dir);
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                attempt += 1;
                if attempt >= 5 {
                    return Err(e);
                }
                if listing(dir) == before {
                    // A live writer seals a segment and then writes the checkpoint covering
                    // it; a scan between the two sees an uncovered sealed segment. Give the
                    // writer a moment before calling that tampering.
                    if !matches!(e, VerifyError::MissingCheckpoint { .. }) {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                    if listing(dir) == before {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Verifies an audit directory offline (see the module docs for every check). With
/// `trusted_public_keys`, the key history must start at one of them. Works on a copy or on
/// a live directory (a scan that races with a segment roll is repeated).
pub fn verify_dir(
    dir: &Path,
    trusted_public_keys: Option<&[PublicKey]>,
) -> Result<VerifyReport, VerifyError> {
    stable(dir, || {
        Ok(scan(dir, trusted_public_keys, None, &mut |_| Ok(()))?.report)
    })
}

/// Verifies the directory; returns the report and the Merkle tree at its end.
pub(crate) fn verify_with_tree(dir: &Path) -> Result<(VerifyReport, CompactTree), VerifyError> {
    stable(dir, || {
        let out = scan(dir, None, None, &mut |_| Ok(()))?;
        Ok((out.report, out.tree))
    })
}

/// An anchor and checkpoints (file name, checkpoint) after it, oldest first.
pub(crate) type AnchoredCheckpoints = (Option<Anchor>, Vec<(String, Checkpoint)>);

/// The anchor and the verified checkpoints (file name, checkpoint) of a directory, oldest
/// first (checkpoint signatures and links only; verify the directory as a whole first).
pub(crate) fn verified_checkpoints(dir: &Path) -> Result<AnchoredCheckpoints, VerifyError> {
    let history = load_history(dir, None)?;
    let anchor = load_anchor(dir, &history)?;
    let cps = load_checkpoints(dir, &history, anchor.as_ref(), &mut Vec::new())?;
    Ok((anchor, cps.into_iter().map(|c| (c.name, c.cp)).collect()))
}

/// Verifies like [`verify_dir`], but skips the sealed segments a previous call verified when
/// they are unchanged (`resume`, from the previous call's result); returns the report and
/// the point to resume from next time. With `None` every segment is read (a full check).
/// Checkpoints and the key history are always re-verified in full.
pub fn verify_dir_incremental(
    dir: &Path,
    trusted_public_keys: Option<&[PublicKey]>,
    resume: Option<&Resume>,
) -> Result<(VerifyReport, Resume), VerifyError> {
    stable(dir, || {
        let out = scan_resuming(dir, trusted_public_keys, None, resume, &mut |_| Ok(()))?;
        Ok((out.report, out.resume))
    })
}

/// A Merkle inclusion proof of one event in a signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    /// The event's sequence (leaf index).
    #[serde(with = "serde_str::u64_string")]
    pub sequence: u64,
    /// Tree size of the checkpoint the proof is for.
    #[serde(with = "serde_str::u64_string")]
    pub tree_size: u64,
    /// The stored canonical event JSON, exactly as hashed.
    pub event: String,
    /// `SHA-256(0x00 || event)`.
    #[serde(with = "serde_str::hex32")]
    pub leaf_hash: Hash,
    /// The audit path, leaf to root (RFC 6962 §2.1.1).
    #[serde(with = "serde_str::hex32_vec")]
    pub path: Vec<Hash>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: Checkpoint,
}

impl InclusionProof {
    /// The proof as pretty JSON (an evidence file for the auditor).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a proof file.
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        serde_json::from_str(text)
            .map_err(|e| VerifyError::Input(format!("not an inclusion proof: {e}")))
    }

    /// The event, parsed.
    pub fn parsed_event(&self) -> Result<AuditEvent, VerifyError> {
        AuditEvent::from_json(self.event.as_bytes()).map_err(|e| VerifyError::Input(e.to_string()))
    }
}

/// A Merkle consistency proof between two tree sizes of the same log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProof {
    /// The older tree size.
    #[serde(with = "serde_str::u64_string")]
    pub old_size: u64,
    /// The newer tree size.
    #[serde(with = "serde_str::u64_string")]
    pub new_size: u64,
    /// Root at the older size.
    #[serde(with = "serde_str::hex32")]
    pub old_root: Hash,
    /// Root at the newer size.
    #[serde(with = "serde_str::hex32")]
    pub new_root: Hash,
    /// The proof hashes (RFC 6962 §2.1.2).
    #[serde(with = "serde_str::hex32_vec")]
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// The proof as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a proof file.
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        serde_json::from_str(text)
            .map_err(|e| VerifyError::Input(format!("not a consistency proof: {e}")))
    }
}

/// Verifies the whole directory, then proves that event `seq` is included in the latest
/// checkpoint covering it. Needs 32 bytes of memory per event.
pub fn prove_inclusion(dir: &Path, seq: u64) -> Result<InclusionProof, VerifyError> {
    let (leaves, event, out) = stable(dir, || {
        let mut leaves = Vec::new();
        let mut event = None;
        let out = scan(dir, None, Some(&mut leaves), &mut |e| {
            if e.sequence == seq {
                event = Some(String::from_utf8_lossy(e.payload).into_owned());
            }
            Ok(())
        })?;
        Ok((leaves, event, out))
    })?;
    let Some(event) = event else {
        return Err(VerifyError::Input(format!(
            "sequence {seq} is not in the log"
        )));
    };
    let Some(c) = out
        .checkpoints
        .into_iter()
        .rev()
        .find(|c| c.cp.tree_size > seq)
    else {
        return Err(VerifyError::Input(format!(
            "sequence {seq} is not covered by a checkpoint yet"
        )));
    };
    let size =
        usize::try_from(c.cp.tree_size).map_err(|_| VerifyError::Input("tree too large".into()))?;
    let path = merkle::inclusion_proof(&leaves[..size], seq)
        .ok_or_else(|| VerifyError::Input("sequence out of range".into()))?;
    Ok(InclusionProof {
        sequence: seq,
        tree_size: c.cp.tree_size,
        leaf_hash: leaf_hash(event.as_bytes()),
        event,
        path,
        checkpoint: c.cp,
    })
}

/// Checks an inclusion proof against a checkpoint the caller trusts (check that one with
/// [`Checkpoint::verify_with`]): same tree size and root, the leaf hash is the hash of the
/// event bytes, the event's sequence is the leaf index, and the audit path leads to the root.
pub fn verify_inclusion(proof: &InclusionProof, checkpoint: &Checkpoint) -> bool {
    proof.tree_size == checkpoint.tree_size
        && leaf_hash(proof.event.as_bytes()) == proof.leaf_hash
        && canonical_sequence(proof.event.as_bytes()) == Some(proof.sequence)
        && merkle::verify_inclusion(
            &proof.leaf_hash,
            proof.sequence,
            proof.tree_size,
            &proof.path,
            &checkpoint.root_hash,
        )
}

/// Verifies the whole directory, then proves that the tree of `old_size` events is a
/// prefix of the tree of `new_size` events.
pub fn prove_consistency(
    dir: &Path,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, VerifyError> {
    let leaves = stable(dir, || {
        let mut leaves = Vec::new();
        scan(dir, None, Some(&mut leaves), &mut |_| Ok(()))?;
        Ok(leaves)
    })?;
    let n = usize::try_from(new_size).map_err(|_| VerifyError::Input("size too large".into()))?;
    if old_size > new_size || n > leaves.len() {
        return Err(VerifyError::Input(format!(
            "need old size <= new size <= {} (the log's size)",
            leaves.len()
        )));
    }
    let m = usize::try_from(old_size).map_err(|_| VerifyError::Input("size too large".into()))?;
    let path = merkle::consistency_proof(&leaves[..n], old_size)
        .ok_or_else(|| VerifyError::Input("size out of range".into()))?;
    Ok(ConsistencyProof {
        old_size,
        new_size,
        old_root: merkle::root_of(&leaves[..m]),
        new_root: merkle::root_of(&leaves[..n]),
        path,
    })
}

/// Checks a consistency proof between two checkpoints the caller trusts: sizes and roots
/// must be theirs and the proof must verify (RFC 9162 §2.1.4.2).
pub fn verify_consistency(proof: &ConsistencyProof, old: &Checkpoint, new: &Checkpoint) -> bool {
    proof.old_size == old.tree_size
        && proof.new_size == new.tree_size
        && proof.old_root == old.root_hash
        && proof.new_root == new.root_hash
        && merkle::verify_consistency(
            proof.old_size,
            proof.new_size,
            &proof.old_root,
            &proof.new_root,
            &proof.path,
        )
}

/// Which events a query or export selects; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// `time >= from`.
    pub from: Option<Timestamp>,
    /// `time < to`.
    pub to: Option<Timestamp>,
    /// Exact principal.
    pub principal: Option<String>,
    /// Resource name, or `Type:name`.
    pub resource: Option<String>,
    /// Exact method.
    pub method: Option<String>,
    /// Granted or not.
    pub granted: Option<bool>,
}

impl QueryFilter {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.from.is_none_or(|f| e.time >= f)
            && self.to.is_none_or(|t| e.time < t)
            && self.principal.as_ref().is_none_or(|p| *p == e.principal)
            && self.method.as_ref().is_none_or(|m| *m == e.method)
            && self.granted.is_none_or(|g| g == e.granted)
            && self.resource.as_ref().is_none_or(|r| {
                *r == e.resource.name
                    || r.split_once(':')
                        .is_some_and(|(t, n)| t == e.resource.resource_type && n == e.resource.name)
            })
    }
}

fn parse_event(e: &EventRef<'_>) -> Result<AuditEvent, VerifyError> {
    AuditEvent::from_json(e.payload)
        .map_err(|err| seg_err(e.segment, e.sequence, format!("unreadable event: {err}")))
}

/// Verifies the directory and returns the matching events in sequence order. Because the
/// query runs over the verified log, the result is complete for the signed range
/// (PCI DSS 10.2.1.3: callers should log the query itself as `io.gatehouse.audit_access`).
/// [`super::index::query_indexed`] returns the same through the query index when one fits.
pub fn query(dir: &Path, filter: &QueryFilter) -> Result<Vec<AuditEvent>, VerifyError> {
    stable(dir, || {
        let mut out = Vec::new();
        scan(dir, None, None, &mut |e| {
            let ev = parse_event(&e)?;
            if filter.matches(&ev) {
                out.push(ev);
            }
            Ok(())
        })?;
        Ok(out)
    })
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One stored canonical event per line, byte for byte (each line hashes to its leaf).
    Jsonl,
    /// RFC 4180 CSV with a header row, one event per row (spreadsheet formula characters
    /// at the start of a cell are neutralised with a leading `'`).
    Csv,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Rows (events) written.
    pub rows: u64,
    /// Events in the verified log.
    pub tree_size: u64,
    /// Tree size of the latest checkpoint the export was cut from.
    pub checkpoint_size: u64,
    /// Its root hash.
    pub checkpoint_root: Option<Hash>,
}

pub(crate) const CSV_COLUMNS: &[&str] = &[
    "sequence",
    "id",
    "time",
    "type",
    "principal",
    "authMechanism",
    "service",
    "method",
    "resourceType",
    "resourceName",
    "operation",
    "granted",
    "status",
    "errorCode",
    "message",
    "clientAddress",
    "clientId",
    "correlationId",
    "matchedRule",
    "nodeId",
    "clockSource",
];

pub(crate) fn csv_cell(out: &mut Vec<u8>, v: &str) {
    let guard = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = guard || v.contains([',', '"', '\n', '\r']);
    if quote {
        out.push(b'"');
    }
    if guard {
        out.push(b'\'');
    }
    for b in v.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quote {
        out.push(b'"');
    }
}

pub(crate) fn csv_row(out: &mut Vec<u8>, e: &AuditEvent) {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let cells = [
        e.sequence.to_string(),
        e.id(),
        e.time.to_rfc3339(),
        e.event_type.as_str().to_owned(),
        e.principal.clone(),
        o(&e.auth_mechanism),
        e.service.clone(),
        e.method.clone(),
        e.resource.resource_type.clone(),
        e.resource.name.clone(),
        e.operation.clone(),
        e.granted.to_string(),
        e.outcome.status.clone(),
        o(&e.outcome.error_code),
        o(&e.outcome.message),
        o(&e.client_address),
        o(&e.client_id),
        o(&e.correlation_id),
        o(&e.matched_rule),
        e.node_id.clone(),
        e.clock_source.clone(),
    ];
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_cell(out, c);
    }
    out.extend_from_slice(b"\r\n");
}

/// Verifies the directory and writes the matching events to `writer` while it goes
/// (nothing is buffered beyond 64 KiB, so a failure can leave a partial export: treat the
/// output as valid only on `Ok`). Export from a copy or retry if a live log rolled meanwhile.
pub fn export(
    dir: &Path,
    format: ExportFormat,
    filter: &QueryFilter,
    writer: &mut dyn Write,
) -> Result<ExportSummary, VerifyError> {
    let mut rows = 0u64;
    let mut buf = Vec::with_capacity(64 << 10);
    if format == ExportFormat::Csv {
        buf.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let out = scan(dir, None, None, &mut |e| {
        let ev = parse_event(&e)?;
        if !filter.matches(&ev) {
            return Ok(());
        }
        rows += 1;
        match format {
            ExportFormat::Jsonl => {
                buf.extend_from_slice(e.payload);
                buf.push(b'\n');
            }
            ExportFormat::Csv => csv_row(&mut buf, &ev),
        }
        if buf.len() >= 60 << 10 {
            writer.write_all(&buf).map_err(VerifyError::Output)?;
            buf.clear();
        }
        Ok(())
    })?;
    writer.write_all(&buf).map_err(VerifyError::Output)?;
    writer.flush().map_err(VerifyError::Output)?;
    Ok(ExportSummary {
        rows,
        tree_size: out.report.tree_size,
        checkpoint_size: out.report.latest_checkpoint_size,
        checkpoint_root: out.report.latest_checkpoint_root,
    })
}

/// One event of a verified log: its parsed form and its stored canonical bytes.
#[derive(Clone, Debug)]
pub struct VerifiedEvent {
    /// The event.
    pub event: AuditEvent,
    /// The stored canonical JSON, byte for byte (hashes to its Merkle leaf).
    pub stored: Vec<u8>,
}

/// What [`verify_and_collect`] returns.
#[derive(Clone, Debug)]
pub struct Collected {
    /// The verification report of the whole directory.
    pub report: VerifyReport,
    /// The latest verified checkpoint and the exact bytes of its file.
    pub checkpoint: Option<(Checkpoint, Vec<u8>)>,
    /// The selected events, in sequence order.
    pub events: Vec<VerifiedEvent>,
}

/// Verifies the whole directory (pinned to `trusted` when given) and returns the events that
/// `select` picks, with their stored bytes, and the latest checkpoint's exact file bytes. A
/// scan that races with a live writer is repeated, with fresh results each time.
pub fn verify_and_collect(
    dir: &Path,
    trusted: Option<&[PublicKey]>,
    select: &dyn Fn(&AuditEvent) -> bool,
) -> Result<Collected, VerifyError> {
    stable(dir, || {
        let mut events = Vec::new();
        let out = scan(dir, trusted, None, &mut |e| {
            let ev = parse_event(&e)?;
            if select(&ev) {
                events.push(VerifiedEvent {
                    event: ev,
                    stored: e.payload.to_vec(),
                });
            }
            Ok(())
        })?;
        let checkpoint = match out.checkpoints.into_iter().next_back() {
            Some(c) => {
                let bytes = read(&dir.join("checkpoints").join(&c.name))?;
                if Checkpoint::file_sha256(&bytes) != Checkpoint::file_sha256(&c.cp.to_file_bytes())
                {
                    return Err(cp_err(&c.name, "changed while it was being read"));
                }
                Some((c.cp, bytes))
            }
            None => None,
        };
        Ok(Collected {
            report: out.report,
            checkpoint,
            events,
        })
    })
}

/// The checkpoint with the largest tree size in `dir`, verified together with the whole
/// directory.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<Checkpoint>, VerifyError> {
    let out = stable(dir, || scan(dir, None, None, &mut |_| Ok(())))?;
    Ok(out.checkpoints.into_iter().next_back().map(|c| c.cp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::cli;
    use crate::audit::event::EventType;
    use crate::audit::keys::MasterKey;
    use crate::audit::log::{AuditLog, AuditLogConfig};

    fn event(i: u64) -> AuditEvent {
        AuditEvent::builder(EventType::Acl)
            .service("admin")
            .method(if i.is_multiple_of(2) {
                "kafka.CreateAcls"
            } else {
                "kafka.DeleteAcls"
            })
            .principal(if i.is_multiple_of(3) {
                "=HYPERLINK(\"x\")".to_owned()
            } else {
                format!("User:u{i}")
            })
            .resource("Topic", format!("t{}", i % 4))
            .operation("Alter")
            .granted(!i.is_multiple_of(5))
            .time(Timestamp::from_unix_micros(1_000_000_000 * i as i64))
            .build()
            .unwrap()
    }

    /// 1 Started + 60 events + Stopped, then reopened: + Started + 20 + Stopped = 84 events.
    async fn trail(dir: &Path) -> (Checkpoint, Checkpoint) {
        let mut cfg = AuditLogConfig::new("n1");
        cfg.segment_max_bytes = 4096;
        cfg.checkpoint_every_events = 25;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(dir, cfg.clone(), MasterKey::from_bytes([3; 32])).unwrap();
        log.append_batch((0..60).map(event).collect())
            .await
            .unwrap();
        log.close().await.unwrap();
        let first = latest_checkpoint(dir).unwrap().unwrap();
        let (log, _) = AuditLog::open(dir, cfg, MasterKey::from_bytes([3; 32])).unwrap();
        log.append_batch((60..80).map(event).collect())
            .await
            .unwrap();
        log.close().await.unwrap();
        (first, latest_checkpoint(dir).unwrap().unwrap())
    }

    #[tokio::test]
    async fn proofs_query_export_and_cli() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (old, new) = trail(dir).await;
        assert_eq!((old.tree_size, new.tree_size), (62, 84));

        // Inclusion proofs for every event, against the latest checkpoint.
        for seq in 0..84 {
            let p = prove_inclusion(dir, seq).unwrap();
            assert!(verify_inclusion(&p, &new), "seq {seq}");
            assert_eq!(p.parsed_event().unwrap().sequence, seq);
            let back = InclusionProof::from_json(&p.to_json()).unwrap();
            assert_eq!(back, p);
            let mut bad = p.clone();
            bad.event = bad
                .event
                .replacen("\"nodeId\":\"n1\"", "\"nodeId\":\"n2\"", 1);
            assert_ne!(bad.event, p.event);
            assert!(!verify_inclusion(&bad, &new));
            bad.leaf_hash = leaf_hash(bad.event.as_bytes());
            assert!(!verify_inclusion(&bad, &new));
            assert!(!verify_inclusion(&p, &old), "different tree size");
        }
        assert!(prove_inclusion(dir, 84).is_err());

        // Consistency: the pinned old checkpoint is a prefix of the new one.
        let c = prove_consistency(dir, old.tree_size, new.tree_size).unwrap();
        assert!(verify_consistency(&c, &old, &new));
        assert!(!verify_consistency(&c, &new, &old));
        let mut forged = old.clone();
        forged.root_hash[0] ^= 1;
        assert!(!verify_consistency(&c, &forged, &new));
        assert_eq!(ConsistencyProof::from_json(&c.to_json()).unwrap(), c);
        assert!(prove_consistency(dir, 10, 85).is_err());

        // Query.
        let all = query(dir, &QueryFilter::default()).unwrap();
        assert_eq!(all.len(), 84);
        assert!(all.iter().enumerate().all(|(i, e)| e.sequence == i as u64));
        let f = QueryFilter {
            method: Some("kafka.CreateAcls".into()),
            granted: Some(false),
            ..Default::default()
        };
        let denied = query(dir, &f).unwrap();
        assert_eq!(
            denied.len(),
            (0..80).filter(|i| i % 2 == 0 && i % 5 == 0).count()
        );
        let f = QueryFilter {
            resource: Some("Topic:t1".into()),
            from: Some(Timestamp::from_unix_micros(10_000_000_000)),
            to: Some(Timestamp::from_unix_micros(30_000_000_000)),
            ..Default::default()
        };
        let r: Vec<u64> = query(dir, &f)
            .unwrap()
            .iter()
            .map(|e| e.resource.name.len() as u64 + e.time.unix_micros() as u64 / 1_000_000_000)
            .collect();
        assert_eq!(r, vec![2 + 13, 2 + 17, 2 + 21, 2 + 25, 2 + 29]);
        let f = QueryFilter {
            principal: Some("User:u7".into()),
            resource: Some("t3".into()),
            ..Default::default()
        };
        assert_eq!(query(dir, &f).unwrap().len(), 1);

        // JSONL export: byte-exact stored events, each hashing to its leaf.
        let mut out = Vec::new();
        let s = export(dir, ExportFormat::Jsonl, &QueryFilter::default(), &mut out).unwrap();
        assert_eq!((s.rows, s.tree_size, s.checkpoint_size), (84, 84, 84));
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 84);
        let p = prove_inclusion(dir, 42).unwrap();
        assert_eq!(leaf_hash(lines[42]), p.leaf_hash);

        // CSV export with the formula guard.
        let mut out = Vec::new();
        let f = QueryFilter {
            method: Some("kafka.DeleteAcls".into()),
            ..Default::default()
        };
        let s = export(dir, ExportFormat::Csv, &f, &mut out).unwrap();
        assert_eq!(s.rows, 40);
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 41);
        assert!(rows[0].starts_with("sequence,id,time,type,principal,"));
        assert!(text.contains(",\"'=HYPERLINK(\"\"x\"\")\","), "{}", rows[2]);
        assert!(
            rows[1].starts_with("2,n1-2,1970-01-01T00:16:40.000000Z,io.gatehouse.acl,User:u1,"),
            "{}",
            rows[1]
        );

        // CLI entry points.
        let key = dir.join("keys/signing.pub");
        let text = cli::cli_verify(dir, std::slice::from_ref(&key)).unwrap();
        assert!(
            text.contains("PASSED") && text.contains("starting at a trusted key"),
            "{text}"
        );
        let text = cli::cli_verify(dir, &[]).unwrap();
        assert!(text.contains("NOT pinned"), "{text}");
        let proof = cli::cli_prove(dir, 5).unwrap();
        let text = cli::cli_verify_proof(&proof, std::slice::from_ref(&key)).unwrap();
        assert!(
            text.contains("VALID") && text.contains("(trusted)"),
            "{text}"
        );
        let tampered = proof.replacen("kafka.CreateAcls", "kafka.DeleteAcls", 1);
        assert_ne!(tampered, proof);
        assert!(matches!(
            cli::cli_verify_proof(&tampered, &[]),
            Err(VerifyError::Proof(_))
        ));
        let other = tmp.path().join("other.pub");
        fs::write(&other, format!("{}\n", "11".repeat(32))).unwrap();
        assert!(cli::cli_verify_proof(&proof, &[other]).is_err());
        let cproof = cli::cli_consistency(dir, 62, 84).unwrap();
        let cps = dir.join("checkpoints");
        let text = cli::cli_verify_consistency(
            &cproof,
            &cps.join(checkpoint_file_name(62)),
            &cps.join(checkpoint_file_name(84)),
            std::slice::from_ref(&key),
        )
        .unwrap();
        assert!(text.contains("is a prefix"), "{text}");
        assert!(
            cli::cli_verify_consistency(
                &cproof,
                &cps.join(checkpoint_file_name(84)),
                &cps.join(checkpoint_file_name(62)),
                &[],
            )
            .is_err()
        );
        let mut out = Vec::new();
        let text =
            cli::cli_export(dir, ExportFormat::Csv, &QueryFilter::default(), &mut out).unwrap();
        assert!(text.contains("Exported 84 events"), "{text}");
        assert!(cli::cli_verify(dir, &[tmp.path().join("missing.pub")]).is_err());
    }

    #[tokio::test]
    async fn incremental_verification_skips_unchanged_sealed_segments_and_sees_tampering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        trail(dir).await;
        let full = verify_dir(dir, None).unwrap();
        let (r1, resume) = verify_dir_incremental(dir, None, None).unwrap();
        assert_eq!(r1, full);
        assert!(resume.events() > 0 && resume.events() <= full.tree_size);
        let (r2, resume2) = verify_dir_incremental(dir, None, Some(&resume)).unwrap();
        assert_eq!(r2, full);
        assert_eq!(resume2.events(), resume.events());
        // Flip one byte in the first (sealed, skipped) segment: found by the next check.
        let seg = dir.join("segments").join(segment_file_name(0));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[100] ^= 0x20;
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&seg, &bytes).unwrap();
        let e = verify_dir_incremental(dir, None, Some(&resume2)).unwrap_err();
        assert_eq!(e.segment(), Some(segment_file_name(0).as_str()), "{e}");
    }

    #[tokio::test]
    async fn live_tail_is_a_warning_but_signed_range_damage_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        trail(dir).await;
        // A torn, unsigned record after the last checkpoint in an unsealed last segment.
        let seg_dir = dir.join("segments");
        let mut names: Vec<String> = fs::read_dir(&seg_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let last = seg_dir.join(names.last().unwrap());
        let mut bytes = fs::read(&last).unwrap();
        bytes.truncate(bytes.len() - 16); // drop the trailer: now unsealed
        let cp = dir.join("checkpoints").join(checkpoint_file_name(84));
        let cp_bytes = fs::read(&cp).unwrap();
        fs::remove_file(&cp).unwrap(); // as if the final checkpoint were not written yet
        bytes.extend_from_slice(&[0, 0, 0, 40, 0, 0]);
        fs::write(&last, &bytes).unwrap();
        let r = verify_dir(dir, None).unwrap();
        assert!(r.unanchored_events > 0);
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        // With the final checkpoint back, the same state is an error.
        fs::write(&cp, cp_bytes).unwrap();
        let e = verify_dir(dir, None).unwrap_err();
        assert_eq!(e.segment(), Some(names.last().unwrap().as_str()));
        assert_eq!(e.sequence(), Some(84), "{e}");
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::audit::event::EventType;
    use crate::audit::keys::MasterKey;
    use crate::audit::log::{AuditLog, AuditLogConfig};

    /// Verification and queries of a directory that is being written (segment rolls and
    /// checkpoints happen during the scans) succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_and_query_a_live_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = AuditLogConfig::new("live");
        cfg.segment_max_bytes = 16 << 10;
        cfg.checkpoint_every_events = 30;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(tmp.path(), cfg, MasterKey::from_bytes([5; 32])).unwrap();
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..60u64 {
                    let batch = (0..10)
                        .map(|j| {
                            AuditEvent::builder(EventType::Topic)
                                .service("admin")
                                .method("kafka.CreateTopics")
                                .principal("User:ops")
                                .resource("Topic", format!("t{i}-{j}"))
                                .operation("Create")
                                .granted(true)
                                .build()
                                .unwrap()
                        })
                        .collect();
                    log.append_batch(batch).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
        };
        let dir = tmp.path().to_path_buf();
        let reader = tokio::task::spawn_blocking(move || {
            let mut last = 0;
            for _ in 0..25 {
                let r = verify_dir(&dir, None).unwrap();
                assert!(r.tree_size >= last);
                last = r.tree_size;
                let n = query(&dir, &QueryFilter::default()).unwrap().len() as u64;
                assert!(n >= last);
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
        });
        writer.await.unwrap();
        reader.await.unwrap();
        log.close().await.unwrap();
        assert_eq!(verify_dir(tmp.path(), None).unwrap().tree_size, 602);
    }
}
