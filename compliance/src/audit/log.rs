//! `AuditLog`: the durable, append-only, tamper-evident audit log of one node.
//!
//! Layout under the log directory (see `docs/audit.md`):
//!
//! ```text
//! segments/<first seq, 20 digits>.seg    framed canonical events (super::segment)
//! checkpoints/<tree size, 20 digits>.json signed checkpoints (super::checkpoint)
//! keys/signing.key                        Ed25519 seed, AES-256-GCM under the MasterKey
//! keys/signing.pub                        current public key, hex
//! keys/history.jsonl                      signed genesis and rotation records
//! LOCK                                    held (flock) by the one writer
//! ```
//!
//! Appends go through a bounded queue to one dedicated writer thread, which batches
//! whatever is queued, writes the batch with one `write` and one `fsync` (group commit) and
//! only then resolves the callers' [`Receipt`]s. When the queue is full the configured
//! [`QueueFullPolicy`] applies: `Block` waits for room, `Refuse` returns
//! [`AuditError::QueueFull`]; events are never dropped silently. Checkpoints are signed every
//! `checkpoint_every_events` events or `checkpoint_interval`, whichever comes first, at every
//! segment roll (by size), at key rotation and at close. The log records its own lifecycle
//! (`audit.Started`, `audit.KeyRotated`, `audit.Stopped`; PCI DSS 10.2.1.6).
//!
//! Opening recovers from a crash: every segment is re-read, CRCs and sequence continuity are
//! checked and the Merkle frontier is rebuilt; the root at the latest checkpoint must match.
//! A torn record at the end of the last segment (only possible beyond the latest checkpoint)
//! is truncated and reported in the [`OpenReport`] and the logs; any other damage refuses the
//! open with [`AuditError::Integrity`] so evidence is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::checkpoint::{
    CHECKPOINT_VERSION, Checkpoint, PrevCheckpoint, SealedSegment, checkpoint_file_name,
    parse_checkpoint_file_name, segment_chain_next,
};
use super::event::{AuditEvent, EventError, EventType, valid_ident};
use super::keys::{HistoryRecord, KeyError, KeyHistory, MasterKey, Signer};
use super::merkle::{CompactTree, Hash, leaf_hash};
use super::segment::{
    self, Frame, HEADER_LEN, MAGIC, MAX_EVENT_BYTES, parse_segment_file_name, segment_file_name,
};
use super::time::Timestamp;

/// What `append` does when the writer's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFullPolicy {
    /// Wait for room (back-pressure onto the caller).
    Block,
    /// Fail the append with [`AuditError::QueueFull`] (the caller decides, e.g. deny the
    /// request: fail closed).
    Refuse,
}

/// Settings of an [`AuditLog`].
#[derive(Clone, Debug)]
pub struct AuditLogConfig {
    /// This node's id (`[A-Za-z0-9._-]`, 1..=64): goes into every event id and source.
    pub node_id: String,
    /// Roll to a new segment once a segment reaches this many bytes (minimum 4096).
    pub segment_max_bytes: u64,
    /// Sign a checkpoint after this many events (minimum 1).
    pub checkpoint_every_events: u64,
    /// ... or after this much time with unanchored events.
    pub checkpoint_interval: Duration,
    /// Bounded queue length, in `append`/`append_batch` calls.
    pub queue_capacity: usize,
    /// Behaviour when the queue is full.
    pub queue_full: QueueFullPolicy,
    /// Largest number of events committed with one fsync.
    pub max_batch_events: usize,
    /// Log an ERROR when the file system has less free space than this.
    pub min_free_bytes: u64,
}

impl AuditLogConfig {
    /// Defaults: 64 MiB segments, a checkpoint every 10,000 events or 60 s, queue of 4096,
    /// `Block`, batches of up to 8192 events, alarm below 1 GiB free.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            segment_max_bytes: 64 << 20,
            checkpoint_every_events: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            queue_capacity: 4096,
            queue_full: QueueFullPolicy::Block,
            max_batch_events: 8192,
            min_free_bytes: 1 << 30,
        }
    }

    fn validate(&self) -> Result<(), AuditError> {
        if !valid_ident(&self.node_id) {
            return Err(AuditError::Config(
                "node_id must be 1..=64 of [A-Za-z0-9._-]",
            ));
        }
        if self.segment_max_bytes < 4096 {
            return Err(AuditError::Config(
                "segment_max_bytes must be at least 4096",
            ));
        }
        if self.checkpoint_every_events == 0 || self.queue_capacity == 0 {
            return Err(AuditError::Config(
                "checkpoint_every_events and queue_capacity must be positive",
            ));
        }
        if self.max_batch_events == 0 || self.checkpoint_interval.is_zero() {
            return Err(AuditError::Config(
                "max_batch_events and checkpoint_interval must be positive",
            ));
        }
        Ok(())
    }
}

/// Proof of durability: the event is on disk (fsync'd) at this position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The event's sequence number (Merkle leaf index).
    pub sequence: u64,
    /// `SHA-256(0x00 || canonical event)`.
    pub leaf_hash: Hash,
}

/// A torn record removed at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Byte offset where the file was cut.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_truncated: u64,
    /// The sequence the torn record would have had (never acknowledged to a caller).
    pub first_lost_sequence: u64,
    /// What was wrong with it.
    pub reason: String,
}

/// What [`AuditLog::open`] found and did.
#[derive(Clone, Debug)]
pub struct OpenReport {
    /// A new log (and signing key) was created.
    pub created: bool,
    /// Events in the log after open (including the `audit.Started` event).
    pub tree_size: u64,
    /// Segment files.
    pub segments: usize,
    /// Tree size of the latest checkpoint found before opening.
    pub resumed_from_checkpoint: Option<u64>,
    /// A torn tail that recovery truncated.
    pub torn_tail: Option<TornTail>,
    /// An interrupted key rotation that was completed (or rolled back).
    pub rotation_recovered: bool,
    /// The current signing key id.
    pub key_id: String,
}

/// Result of a key rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// Key id of the retired key.
    pub old_key_id: String,
    /// Key id of the new key.
    pub new_key_id: String,
    /// Checkpoints up to this tree size are signed by the old key, later ones by the new.
    pub tree_size: u64,
}

/// A checkpoint that was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its tree size.
    pub tree_size: u64,
    /// Its root hash.
    pub root_hash: Hash,
    /// Its file.
    pub file: PathBuf,
}

/// Errors of the live audit log. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("audit log {op} failed on {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The queue is full and the policy is `Refuse`. The event was not recorded.
    #[error("audit queue is full (policy Refuse); the event was not recorded")]
    QueueFull,
    /// The log was closed.
    #[error("the audit log is closed")]
    Closed,
    /// An earlier write failed; the writer refuses further events until reopened.
    #[error("the audit log writer stopped after a failure: {0}")]
    Failed(String),
    /// The directory failed the open-time integrity check; nothing was modified.
    #[error("audit log integrity check failed at {location}: {reason}")]
    Integrity {
        /// File (and sequence) concerned.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A key could not be created, read or decrypted.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The event is invalid.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The canonical event exceeds the 1 MiB limit.
    #[error("audit event too large ({0} bytes, limit 1 MiB)")]
    EventTooLarge(usize),
    /// Bad configuration.
    #[error("invalid audit log configuration: {0}")]
    Config(&'static str),
    /// Another writer holds the directory.
    #[error("audit directory {0} is locked by another writer")]
    Locked(PathBuf),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn integrity(location: impl Into<String>, reason: impl Into<String>) -> AuditError {
    AuditError::Integrity {
        location: location.into(),
        reason: reason.into(),
    }
}

/// Replies carry the events back so that the caller's thread frees what it allocated
/// (freeing on the writer thread contends on the allocator).
type AppendReply = oneshot::Sender<(AuditEvent, Result<Receipt, AuditError>)>;
type BatchReply = oneshot::Sender<(Vec<AuditEvent>, Result<Vec<Receipt>, AuditError>)>;

// Events travel inline: boxing them would cost an allocation per event on the hot path.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Append {
        event: AuditEvent,
        reply: AppendReply,
    },
    AppendBatch {
        events: Vec<AuditEvent>,
        reply: BatchReply,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<Option<CheckpointInfo>, AuditError>>,
    },
    Rotate {
        reply: oneshot::Sender<Result<KeyRotation, AuditError>>,
    },
    Close {
        reply: oneshot::Sender<Result<Option<CheckpointInfo>, AuditError>>,
    },
}

impl Msg {
    fn events(&self) -> &[AuditEvent] {
        match self {
            Msg::Append { event, .. } => std::slice::from_ref(event),
            Msg::AppendBatch { events, .. } => events,
            _ => &[],
        }
    }
}

/// Handle to a node's audit log. Cheap to clone; all clones feed the same writer.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    tx: mpsc::Sender<Msg>,
    policy: QueueFullPolicy,
    capacity: usize,
    dir: PathBuf,
    started: Instant,
    /// Milliseconds since `started` of the last queue alarm (rate limit).
    last_alarm_ms: AtomicU64,
    /// Pending events and lag, for `/metrics`.
    stats: super::queue::QueueStats,
}

/// The audit logs open in this process (for [`super::queue::snapshot`]).
static OPEN_LOGS: std::sync::Mutex<Vec<std::sync::Weak<Shared>>> =
    std::sync::Mutex::new(Vec::new());

/// The queue counters of every audit log open in this process, added up (`None`: none).
pub(crate) fn all_queue_metrics() -> Option<super::queue::AuditQueueSnapshot> {
    let logs: Vec<Arc<Shared>> = OPEN_LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    let mut out: Option<super::queue::AuditQueueSnapshot> = None;
    for s in logs {
        let one = AuditLog { shared: s }.queue_metrics();
        match &mut out {
            Some(total) => super::queue::add(total, &one),
            None => out = Some(one),
        }
    }
    out
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash if needed, and starts the
    /// writer thread. Blocking: call it at startup or from `spawn_blocking`.
    pub fn open(
        dir: impl AsRef<Path>,
        config: AuditLogConfig,
        master_key: MasterKey,
    ) -> Result<(AuditLog, OpenReport), AuditError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let (mut writer, mut report) = Writer::open(&dir, config, master_key)?;
        let started = writer.lifecycle("audit.Started", "Start", |b| {
            let b = b.attribute("recoveredTornTail", report.torn_tail.is_some().to_string());
            match report.resumed_from_checkpoint {
                Some(s) => b.attribute("resumedFromCheckpoint", s.to_string()),
                None => b,
            }
        })?;
        writer.commit(std::slice::from_ref(&started), &mut Vec::new())?;
        writer.checkpoint()?;
        report.tree_size = writer.tree.size();
        let capacity = writer.cfg.queue_capacity;
        let policy = writer.cfg.queue_full;
        let (tx, rx) = mpsc::channel(capacity);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(io_err("start writer runtime", &dir))?;
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || rt.block_on(writer.run(rx)))
            .map_err(io_err("start writer thread", &dir))?;
        info!(
            dir = %dir.display(),
            tree_size = report.tree_size,
            key_id = %report.key_id,
            created = report.created,
            "audit log opened"
        );
        let log = AuditLog {
            shared: Arc::new(Shared {
                tx,
                policy,
                capacity,
                dir,
                started: Instant::now(),
                last_alarm_ms: AtomicU64::new(0),
                stats: super::queue::QueueStats::default(),
            }),
        };
        {
            let mut open = OPEN_LOGS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            open.retain(|w| w.strong_count() > 0);
            open.push(Arc::downgrade(&log.shared));
        }
        Ok((log, report))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The writer queue's depth, the events not durable yet and the lag (for `/metrics`).
    pub fn queue_metrics(&self) -> super::queue::AuditQueueSnapshot {
        let tx = &self.shared.tx;
        let capacity = tx.max_capacity();
        self.shared
            .stats
            .snapshot(capacity.saturating_sub(tx.capacity()), capacity)
    }

    /// Appends one event; resolves once it is fsync'd (group commit). `node_id` and
    /// `sequence` of the event are assigned by the log.
    pub async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        check_size(&event)?;
        let ticket = self.shared.stats.enter(1);
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Append { event, reply }).await?;
        let r = rx.await.map_err(|_| AuditError::Closed)?.1;
        ticket.done(r.is_ok());
        r
    }

    /// Appends several events as one queue entry; they get consecutive sequences and one
    /// receipt each, all resolved after the same fsync.
    pub async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<Vec<Receipt>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for e in &events {
            check_size(e)?;
        }
        let ticket = self.shared.stats.enter(events.len());
        let (reply, rx) = oneshot::channel();
        self.send(Msg::AppendBatch { events, reply }).await?;
        let r = rx.await.map_err(|_| AuditError::Closed)?.1;
        ticket.done(r.is_ok());
        r
    }

    /// Signs a checkpoint now (if anything changed since the last one).
    pub async fn checkpoint(&self) -> Result<Option<CheckpointInfo>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Checkpoint { reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Rotates the signing key: a checkpoint is signed with the old key, a rotation record
    /// signed by the old and the new key is appended to `keys/history.jsonl`, the encrypted
    /// key file is replaced, and an `audit.KeyRotated` event is logged and checkpointed with
    /// the new key.
    pub async fn rotate_key(&self) -> Result<KeyRotation, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Rotate { reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Logs `audit.Stopped`, seals the current segment, signs a final checkpoint and stops
    /// the writer (releasing the directory lock before returning). Other clones then get
    /// [`AuditError::Closed`]. Dropping every handle without `close` does the same in the
    /// background.
    pub async fn close(self) -> Result<Option<CheckpointInfo>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Close { reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    async fn send(&self, msg: Msg) -> Result<(), AuditError> {
        let s = &self.shared;
        let free = s.tx.capacity();
        if free * 10 < s.capacity {
            self.alarm(|| {
                warn!(
                    free,
                    capacity = s.capacity,
                    "audit queue nearly full: the audit writer is falling behind"
                )
            });
        }
        match s.policy {
            QueueFullPolicy::Block => s.tx.send(msg).await.map_err(|_| AuditError::Closed),
            QueueFullPolicy::Refuse => match s.tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.alarm(|| {
                        error!("audit queue full: refusing audit events (policy Refuse)")
                    });
                    Err(AuditError::QueueFull)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Closed),
            },
        }
    }

    /// Runs `f` at most once per second.
    fn alarm(&self, f: impl FnOnce()) {
        let now = u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.shared.last_alarm_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .shared
                .last_alarm_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            f();
        }
    }
}

/// Rejects events whose canonical form would exceed [`MAX_EVENT_BYTES`], serialising only
/// when a cheap upper bound says it might.
fn check_size(e: &AuditEvent) -> Result<(), AuditError> {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    let raw = e.principal.len()
        + e.service.len()
        + e.method.len()
        + e.resource.resource_type.len()
        + e.resource.name.len()
        + e.operation.len()
        + e.outcome.status.len()
        + opt(&e.outcome.error_code)
        + opt(&e.outcome.message)
        + opt(&e.auth_mechanism)
        + opt(&e.client_address)
        + opt(&e.client_id)
        + opt(&e.correlation_id)
        + opt(&e.matched_rule)
        + e.clock_source.len()
        + e.event_type.as_str().len()
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>();
    // Escaping grows a byte to at most 6; the fixed envelope and node id add < 1 KiB.
    if raw.saturating_mul(6).saturating_add(1024) <= MAX_EVENT_BYTES {
        return Ok(());
    }
    let len = e.to_canonical_json().len() + 64;
    if len > MAX_EVENT_BYTES {
        return Err(AuditError::EventTooLarge(len));
    }
    Ok(())
}

struct OpenSegment {
    file: File,
    path: PathBuf,
    name: String,
    first_seq: u64,
    len: u64,
    hasher: Sha256,
}

struct Writer {
    dir: PathBuf,
    seg_dir: PathBuf,
    cp_dir: PathBuf,
    keys_dir: PathBuf,
    log_name: String,
    cfg: AuditLogConfig,
    signer: Signer,
    master: MasterKey,
    history_len: u64,
    tree: CompactTree,
    seg: Option<OpenSegment>,
    seg_chain: Hash,
    pending_sealed: Vec<SealedSegment>,
    last_cp: Option<(u64, Hash)>,
    last_cp_at: Instant,
    events_since_cp: u64,
    buf: Vec<u8>,
    failed: Option<String>,
    last_space_check: Option<Instant>,
    last_space_alarm: Option<Instant>,
    _lock: Option<File>,
}

fn list_dir(dir: &Path) -> Result<Vec<String>, AuditError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `dir/name` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), AuditError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
    sync_dir(dir).map_err(io_err("fsync directory", dir))
}

#[cfg(unix)]
fn lock_dir(dir: &Path) -> Result<Option<File>, AuditError> {
    use rustix::fs::{FlockOperation, flock};
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("create lock file", &path))?;
    flock(&f, FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| AuditError::Locked(dir.to_path_buf()))?;
    Ok(Some(f))
}

#[cfg(not(unix))]
fn lock_dir(_dir: &Path) -> Result<Option<File>, AuditError> {
    Ok(None)
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// State recovered from the segment files.
struct Recovered {
    tree: CompactTree,
    sealed: Vec<SealedSegment>,
    /// The last segment if it is not sealed: (name, first seq, valid length, bytes).
    open_tail: Option<(String, u64, u64, Vec<u8>)>,
    torn: Option<TornTail>,
    segments: usize,
}

fn recover_segments(
    seg_dir: &Path,
    anchor: Option<(u64, Hash, &str)>,
    start: Option<(&CompactTree, Hash)>,
) -> Result<Recovered, AuditError> {
    // With an archive anchor (`anchor.json`) the log starts at its tree size; files below
    // it are left over from an interrupted archive run and are not part of the log.
    let first_kept = start.map_or(0, |(t, _)| t.size());
    let mut files: Vec<(u64, String)> = list_dir(seg_dir)?
        .into_iter()
        .filter_map(|n| parse_segment_file_name(&n).map(|s| (s, n)))
        .filter(|(s, _)| *s >= first_kept)
        .collect();
    files.sort();
    let anchored = anchor.map_or(0, |a| a.0);
    let mut r = Recovered {
        tree: start.map_or_else(CompactTree::new, |(t, _)| t.clone()),
        sealed: Vec::new(),
        open_tail: None,
        torn: None,
        segments: files.len(),
    };
    let mut chain = start.map_or([0u8; 32], |(_, c)| c);
    let count = files.len();
    for (i, (first, name)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let next = r.tree.size();
        if first != next {
            return Err(integrity(
                &name,
                format!("segment starts at sequence {first}, expected {next}"),
            ));
        }
        let path = seg_dir.join(&name);
        let mut data = fs::read(&path).map_err(io_err("read", &path))?;
        if data.len() < MAGIC.len() && is_last && MAGIC.starts_with(&data) {
            // Created but its header not yet written when the node stopped.
            r.open_tail = Some((name, first, 0, Vec::new()));
            break;
        }
        if !data.starts_with(MAGIC) {
            return Err(integrity(&name, "bad segment header"));
        }
        let mut pos = MAGIC.len();
        let mut sealed = false;
        while pos < data.len() {
            let seq = r.tree.size();
            match segment::decode(&data, pos) {
                Ok((Frame::Record { seq: s, payload }, n)) if s == seq => {
                    r.tree.push(leaf_hash(payload));
                    pos += n;
                    if let Some((size, root, cp)) = anchor
                        && r.tree.size() == size
                        && r.tree.root() != root
                    {
                        return Err(integrity(
                            format!("{name} / {cp}"),
                            "events do not match the root hash of the latest checkpoint",
                        ));
                    }
                }
                Ok((Frame::Record { seq: s, .. }, _)) => {
                    return Err(integrity(
                        format!("{name} sequence {seq}"),
                        format!("found sequence {s}"),
                    ));
                }
                Ok((Frame::Trailer { next_seq }, n))
                    if next_seq == seq && pos + n == data.len() =>
                {
                    sealed = true;
                    pos += n;
                }
                Ok((Frame::Trailer { .. }, _)) => {
                    return Err(integrity(
                        format!("{name} sequence {seq}"),
                        "bad segment trailer",
                    ));
                }
                Err(e) if is_last && seq >= anchored => {
                    let torn = TornTail {
                        segment: name.clone(),
                        offset: pos as u64,
                        bytes_truncated: (data.len() - pos) as u64,
                        first_lost_sequence: seq,
                        reason: e.describe().to_owned(),
                    };
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err("open", &path))?;
                    f.set_len(pos as u64).map_err(io_err("truncate", &path))?;
                    f.sync_all().map_err(io_err("fsync", &path))?;
                    error!(
                        segment = %torn.segment,
                        offset = torn.offset,
                        bytes = torn.bytes_truncated,
                        sequence = torn.first_lost_sequence,
                        reason = %torn.reason,
                        "audit log recovery truncated a torn tail (unacknowledged events lost)"
                    );
                    data.truncate(pos);
                    r.torn = Some(torn);
                    break;
                }
                Err(e) => {
                    return Err(integrity(format!("{name} sequence {seq}"), e.describe()));
                }
            }
        }
        if sealed {
            let sha: Hash = Sha256::digest(&data).into();
            chain = segment_chain_next(&chain, &sha);
            r.sealed.push(SealedSegment {
                file: name,
                first_seq: first,
                next_seq: r.tree.size(),
                sha256: sha,
                chain,
            });
        } else if is_last {
            let len = data.len() as u64;
            r.open_tail = Some((name, first, len, data));
        } else {
            return Err(integrity(
                &name,
                "segment is not sealed but is not the last one",
            ));
        }
    }
    if r.tree.size() < anchored {
        return Err(integrity(
            "segments",
            format!(
                "log holds {} events but the latest checkpoint covers {anchored}",
                r.tree.size()
            ),
        ));
    }
    Ok(r)
}

impl Writer {
    fn open(
        dir: &Path,
        cfg: AuditLogConfig,
        master: MasterKey,
    ) -> Result<(Writer, OpenReport), AuditError> {
        let seg_dir = dir.join("segments");
        let cp_dir = dir.join("checkpoints");
        let keys_dir = dir.join("keys");
        for d in [dir, &seg_dir, &cp_dir, &keys_dir] {
            fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        let lock = lock_dir(dir)?;
        for d in [&cp_dir, &keys_dir] {
            for n in list_dir(d)? {
                if n.starts_with('.') && n.ends_with(".tmp") {
                    let p = d.join(&n);
                    fs::remove_file(&p).map_err(io_err("remove temp file", &p))?;
                }
            }
        }
        let mut cps: Vec<(u64, String)> = list_dir(&cp_dir)?
            .into_iter()
            .filter_map(|n| parse_checkpoint_file_name(&n).map(|s| (s, n)))
            .collect();
        cps.sort();
        let has_segments = list_dir(&seg_dir)?
            .iter()
            .any(|n| parse_segment_file_name(n).is_some());

        // Keys.
        let history_path = keys_dir.join("history.jsonl");
        let key_path = keys_dir.join("signing.key");
        let new_key_path = keys_dir.join("signing.key.new");
        let mut rotation_recovered = false;
        let created = !history_path.exists();
        let (signer, history) = if created {
            if has_segments || !cps.is_empty() {
                return Err(integrity(
                    "keys/history.jsonl",
                    "missing although the log has segments or checkpoints",
                ));
            }
            let signer = Signer::generate()?;
            write_atomic(&keys_dir, "signing.key", &signer.seal(&master)?)?;
            let genesis = HistoryRecord::genesis(&signer, 0)?;
            write_atomic(&keys_dir, "history.jsonl", &genesis)?;
            let history = KeyHistory::parse(&genesis)
                .map_err(|(l, m)| integrity(format!("keys/history.jsonl line {l}"), m))?;
            info!(key_id = %signer.public().key_id(), "audit signing key generated");
            (signer, history)
        } else {
            let mut bytes = fs::read(&history_path).map_err(io_err("read", &history_path))?;
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                // A rotation record torn mid-write: the rotation never took effect.
                let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                warn!(
                    bytes = bytes.len() - keep,
                    "truncating a torn key-history record (interrupted rotation)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&history_path)
                    .map_err(io_err("open", &history_path))?;
                f.set_len(keep as u64)
                    .map_err(io_err("truncate", &history_path))?;
                f.sync_all().map_err(io_err("fsync", &history_path))?;
                bytes.truncate(keep);
                rotation_recovered = true;
            }
            let history = KeyHistory::parse(&bytes)
                .map_err(|(l, m)| integrity(format!("keys/history.jsonl line {l}"), m))?;
            let current = history
                .current()
                .map(|e| e.key_id.clone())
                .ok_or_else(|| integrity("keys/history.jsonl", "empty"))?;
            if new_key_path.exists() {
                let b = fs::read(&new_key_path).map_err(io_err("read", &new_key_path))?;
                match Signer::unseal(&b, &master) {
                    Ok(s) if s.public().key_id() == current => {
                        fs::rename(&new_key_path, &key_path)
                            .map_err(io_err("rename", &key_path))?;
                        sync_dir(&keys_dir).map_err(io_err("fsync directory", &keys_dir))?;
                        warn!(key_id = %current, "completed an interrupted key rotation");
                    }
                    _ => {
                        fs::remove_file(&new_key_path).map_err(io_err("remove", &new_key_path))?;
                        warn!("discarded the key of an interrupted key rotation");
                    }
                }
                rotation_recovered = true;
            }
            let b = fs::read(&key_path).map_err(io_err("read", &key_path))?;
            let signer = Signer::unseal(&b, &master)?;
            if signer.public().key_id() != current {
                return Err(integrity(
                    "keys/signing.key",
                    "the signing key is not the current key of the key history",
                ));
            }
            (signer, history)
        };
        let pub_hex = format!("{}\n", signer.public().to_hex());
        if fs::read(keys_dir.join("signing.pub")).ok().as_deref() != Some(pub_hex.as_bytes()) {
            write_atomic(&keys_dir, "signing.pub", pub_hex.as_bytes())?;
        }

        // An archive anchor: the log starts there (see `archive`).
        let archived = super::archive::load_anchor(dir, &history)
            .map_err(|m| integrity(super::archive::ANCHOR_FILE, m))?;
        if let Some(a) = &archived {
            cps.retain(|(s, _)| *s > a.size);
        }
        let start_chain = archived.as_ref().map_or([0u8; 32], |a| a.cp.segment_chain);
        // Latest checkpoint.
        let mut last_cp = archived.as_ref().map(|a| (a.size, a.file_sha));
        let mut anchor = archived
            .as_ref()
            .map(|a| (a.size, a.cp.root_hash, super::archive::ANCHOR_FILE));
        let mut cp_chain = start_chain;
        if let Some((size, name)) = cps.last() {
            let path = cp_dir.join(name);
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            let cp = Checkpoint::from_json(&bytes)
                .map_err(|e| integrity(name.as_str(), format!("not a checkpoint: {e}")))?;
            let key = history
                .key_for(&cp.key_id, cp.tree_size)
                .map_err(|m| integrity(name.as_str(), m))?;
            if cp.tree_size != *size || !cp.verify_by(&key.public) {
                return Err(integrity(
                    name.as_str(),
                    "invalid checkpoint signature or name",
                ));
            }
            last_cp = Some((cp.tree_size, Checkpoint::file_sha256(&bytes)));
            anchor = Some((cp.tree_size, cp.root_hash, name.as_str()));
            cp_chain = cp.segment_chain;
        }

        let rec = recover_segments(
            &seg_dir,
            anchor,
            archived.as_ref().map(|a| (&a.tree, a.cp.segment_chain)),
        )?;
        let pending_sealed = if cp_chain == start_chain {
            rec.sealed.clone()
        } else {
            let p = rec
                .sealed
                .iter()
                .position(|s| s.chain == cp_chain)
                .ok_or_else(|| {
                    integrity(
                        "segments",
                        "sealed segments do not match the latest checkpoint's segment chain",
                    )
                })?;
            rec.sealed[p + 1..].to_vec()
        };
        let seg_chain = rec.sealed.last().map_or(start_chain, |s| s.chain);
        let next = rec.tree.size();
        let seg = match rec.open_tail {
            Some((name, first, len, data)) => {
                let path = seg_dir.join(&name);
                let mut file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_err("open", &path))?;
                let mut hasher = Sha256::new();
                if data.is_empty() {
                    file.set_len(0).map_err(io_err("truncate", &path))?;
                    file.write_all(MAGIC).map_err(io_err("write", &path))?;
                    file.sync_all().map_err(io_err("fsync", &path))?;
                    hasher.update(MAGIC);
                } else {
                    hasher.update(&data);
                }
                let len = if data.is_empty() {
                    MAGIC.len() as u64
                } else {
                    len
                };
                OpenSegment {
                    file,
                    path,
                    name,
                    first_seq: first,
                    len,
                    hasher,
                }
            }
            None => new_segment(&seg_dir, next)?,
        };
        let log_name = format!("gatehouse://{}/audit", cfg.node_id);
        let report = OpenReport {
            created,
            tree_size: next,
            segments: rec.segments,
            resumed_from_checkpoint: last_cp.map(|c| c.0),
            torn_tail: rec.torn,
            rotation_recovered,
            key_id: signer.public().key_id(),
        };
        let writer = Writer {
            dir: dir.to_path_buf(),
            seg_dir,
            cp_dir,
            keys_dir,
            log_name,
            cfg,
            signer,
            master,
            history_len: history.entries.len() as u64,
            tree: rec.tree,
            seg: Some(seg),
            seg_chain,
            pending_sealed,
            last_cp,
            last_cp_at: Instant::now(),
            events_since_cp: 0,
            buf: Vec::with_capacity(1 << 20),
            failed: None,
            last_space_check: None,
            last_space_alarm: None,
            _lock: lock,
        };
        Ok((writer, report))
    }

    fn lifecycle(
        &self,
        method: &str,
        operation: &str,
        extra: impl FnOnce(super::event::AuditEventBuilder) -> super::event::AuditEventBuilder,
    ) -> Result<AuditEvent, AuditError> {
        let b = AuditEvent::builder(EventType::Lifecycle)
            .service("audit")
            .method(method)
            .principal("System:gatehouse-audit")
            .resource("AuditLog", self.cfg.node_id.clone())
            .operation(operation)
            .granted(true)
            .attribute("keyId", self.signer.public().key_id());
        Ok(extra(b).build()?)
    }

    fn fail(&mut self, e: AuditError) -> AuditError {
        let msg = e.to_string();
        error!(error = %msg, "audit log write failed; refusing further audit events");
        self.failed = Some(msg);
        e
    }

    fn seg(&mut self) -> Result<&mut OpenSegment, AuditError> {
        self.seg
            .as_mut()
            .ok_or_else(|| AuditError::Failed("no open segment".into()))
    }

    /// Writes the buffered records to the open segment (no fsync).
    fn write_buf(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.seg.as_mut() else {
            return Err(AuditError::Failed("no open segment".into()));
        };
        seg.file
            .write_all(&self.buf)
            .map_err(io_err("write", &seg.path))?;
        seg.hasher.update(&self.buf);
        seg.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Appends events with one fsync (plus one per segment roll) and pushes their receipts.
    fn commit(
        &mut self,
        events: &[AuditEvent],
        receipts: &mut Vec<Receipt>,
    ) -> Result<(), AuditError> {
        self.commit_iter(events.iter(), receipts)
    }

    fn commit_iter<'a>(
        &mut self,
        events: impl Iterator<Item = &'a AuditEvent>,
        receipts: &mut Vec<Receipt>,
    ) -> Result<(), AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        let r = self.commit_inner(events, receipts);
        r.map_err(|e| self.fail(e))
    }

    fn commit_inner<'a>(
        &mut self,
        events: impl Iterator<Item = &'a AuditEvent>,
        receipts: &mut Vec<Receipt>,
    ) -> Result<(), AuditError> {
        self.buf.clear();
        let max = self.cfg.segment_max_bytes;
        for ev in events {
            let seq = self.tree.size();
            let at = segment::begin_record(&mut self.buf);
            ev.write_canonical(&mut self.buf, &self.cfg.node_id, seq);
            segment::finish_record(&mut self.buf, at, seq);
            let leaf = leaf_hash(&self.buf[at + HEADER_LEN..]);
            self.tree.push(leaf);
            self.events_since_cp += 1;
            receipts.push(Receipt {
                sequence: seq,
                leaf_hash: leaf,
            });
            let seg_len = self.seg()?.len;
            if seg_len + self.buf.len() as u64 >= max {
                self.write_buf()?;
                self.roll(true)?;
            }
        }
        self.write_buf()?;
        let seg = self.seg()?;
        seg.file.sync_data().map_err(io_err("fsync", &seg.path))?;
        Ok(())
    }

    /// Seals the open segment (events already written), checkpoints, and opens the next
    /// segment when `reopen`.
    fn roll(&mut self, reopen: bool) -> Result<(), AuditError> {
        let next = self.tree.size();
        let Some(mut seg) = self.seg.take() else {
            return Ok(());
        };
        let t = segment::trailer(next);
        seg.file.write_all(&t).map_err(io_err("write", &seg.path))?;
        seg.file.sync_data().map_err(io_err("fsync", &seg.path))?;
        seg.hasher.update(t);
        let sha: Hash = seg.hasher.finalize().into();
        self.seg_chain = segment_chain_next(&self.seg_chain, &sha);
        self.pending_sealed.push(SealedSegment {
            file: seg.name.clone(),
            first_seq: seg.first_seq,
            next_seq: next,
            sha256: sha,
            chain: self.seg_chain,
        });
        info!(segment = %seg.name, first = seg.first_seq, next, "audit segment sealed");
        self.checkpoint_inner()?;
        if reopen {
            self.seg = Some(new_segment(&self.seg_dir, next)?);
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<Option<CheckpointInfo>, AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        self.checkpoint_inner().map_err(|e| self.fail(e))
    }

    fn checkpoint_inner(&mut self) -> Result<Option<CheckpointInfo>, AuditError> {
        let size = self.tree.size();
        if size == 0 || self.last_cp.is_some_and(|(s, _)| s == size) {
            return Ok(None);
        }
        let mut cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            log: self.log_name.clone(),
            tree_size: size,
            root_hash: self.tree.root(),
            prev_checkpoint: self
                .last_cp
                .map(|(tree_size, sha256)| PrevCheckpoint { tree_size, sha256 }),
            segments: std::mem::take(&mut self.pending_sealed),
            segment_chain: self.seg_chain,
            time: Timestamp::now().to_rfc3339(),
            key_id: String::new(),
            public_key: [0; 32],
            signature: [0; 64],
        };
        cp.sign(&self.signer);
        let bytes = cp.to_file_bytes();
        let name = checkpoint_file_name(size);
        write_atomic(&self.cp_dir, &name, &bytes)?;
        self.last_cp = Some((size, Checkpoint::file_sha256(&bytes)));
        self.last_cp_at = Instant::now();
        self.events_since_cp = 0;
        Ok(Some(CheckpointInfo {
            tree_size: size,
            root_hash: cp.root_hash,
            file: self.cp_dir.join(name),
        }))
    }

    fn maybe_checkpoint(&mut self) {
        if self.failed.is_some() || self.events_since_cp == 0 {
            return;
        }
        if (self.events_since_cp >= self.cfg.checkpoint_every_events
            || self.last_cp_at.elapsed() >= self.cfg.checkpoint_interval)
            && let Err(e) = self.checkpoint()
        {
            error!(error = %e, "audit checkpoint failed");
        }
    }

    fn check_space(&mut self) {
        let now = Instant::now();
        if self
            .last_space_check
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(5))
        {
            return;
        }
        self.last_space_check = Some(now);
        if let Some(free) = free_bytes(&self.dir)
            && free < self.cfg.min_free_bytes
            && self
                .last_space_alarm
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            self.last_space_alarm = Some(now);
            error!(
                free_bytes = free,
                min_free_bytes = self.cfg.min_free_bytes,
                dir = %self.dir.display(),
                "audit log disk space below watermark: audit writes will fail when the disk fills"
            );
        }
    }

    fn rotate(&mut self) -> Result<KeyRotation, AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        self.checkpoint_inner()?;
        let size = self.tree.size();
        let new = Signer::generate()?;
        let record = HistoryRecord::rotation(&self.signer, &new, self.history_len, size)?;
        write_atomic(&self.keys_dir, "signing.key.new", &new.seal(&self.master)?)?;
        let hp = self.keys_dir.join("history.jsonl");
        let mut h = OpenOptions::new()
            .append(true)
            .open(&hp)
            .map_err(io_err("open", &hp))?;
        h.write_all(&record).map_err(io_err("write", &hp))?;
        h.sync_data().map_err(io_err("fsync", &hp))?;
        let kp = self.keys_dir.join("signing.key");
        fs::rename(self.keys_dir.join("signing.key.new"), &kp).map_err(io_err("rename", &kp))?;
        sync_dir(&self.keys_dir).map_err(io_err("fsync directory", &self.keys_dir))?;
        write_atomic(
            &self.keys_dir,
            "signing.pub",
            format!("{}\n", new.public().to_hex()).as_bytes(),
        )?;
        let old_key_id = self.signer.public().key_id();
        let new_key_id = new.public().key_id();
        self.signer = new;
        self.history_len += 1;
        info!(old_key_id = %old_key_id, new_key_id = %new_key_id, tree_size = size, "audit signing key rotated");
        let ev = self.lifecycle("audit.KeyRotated", "Rotate", |b| {
            b.attribute("previousKeyId", old_key_id.clone())
                .attribute("rotatedAtTreeSize", size.to_string())
        })?;
        self.commit(std::slice::from_ref(&ev), &mut Vec::new())?;
        self.checkpoint()?;
        Ok(KeyRotation {
            old_key_id,
            new_key_id,
            tree_size: size,
        })
    }

    fn close(&mut self) -> Result<Option<CheckpointInfo>, AuditError> {
        if let Some(f) = &self.failed {
            return Err(AuditError::Failed(f.clone()));
        }
        let ev = self.lifecycle("audit.Stopped", "Stop", |b| b)?;
        self.commit(std::slice::from_ref(&ev), &mut Vec::new())?;
        // The Stopped event may itself have rolled the segment.
        if self.seg.is_some() {
            self.roll(false).map_err(|e| self.fail(e))?;
        }
        let size = self.tree.size();
        info!(tree_size = size, "audit log closed");
        Ok(self.last_cp.map(|(s, _)| CheckpointInfo {
            tree_size: s,
            root_hash: self.tree.root(),
            file: self.cp_dir.join(checkpoint_file_name(s)),
        }))
    }

    fn process(&mut self, batch: &mut Vec<Msg>) {
        let mut receipts = Vec::with_capacity(batch.iter().map(|m| m.events().len()).sum());
        let result = self.commit_iter(batch.iter().flat_map(Msg::events), &mut receipts);
        let mut at = 0;
        for m in batch.drain(..) {
            match m {
                Msg::Append { event, reply } => {
                    let r = match &result {
                        Ok(()) => Ok(receipts[at]),
                        Err(e) => Err(AuditError::Failed(e.to_string())),
                    };
                    at += 1;
                    let _ = reply.send((event, r));
                }
                Msg::AppendBatch { events, reply } => {
                    let n = events.len();
                    let r = match &result {
                        Ok(()) => Ok(receipts[at..at + n].to_vec()),
                        Err(e) => Err(AuditError::Failed(e.to_string())),
                    };
                    at += n;
                    let _ = reply.send((events, r));
                }
                _ => {}
            }
        }
    }

    fn next_wakeup(&self) -> Duration {
        if self.events_since_cp == 0 {
            return self.cfg.checkpoint_interval;
        }
        self.cfg
            .checkpoint_interval
            .saturating_sub(self.last_cp_at.elapsed())
            .max(Duration::from_millis(1))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Msg> = Vec::new();
        loop {
            let first = match tokio::time::timeout(self.next_wakeup(), rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if let Err(e) = self.close() {
                        error!(error = %e, "closing the audit log failed");
                    }
                    return;
                }
                Err(_) => {
                    self.maybe_checkpoint();
                    continue;
                }
            };
            let mut control = None;
            let mut n = 0usize;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Append { .. } | Msg::AppendBatch { .. } => {
                        n += m.events().len();
                        batch.push(m);
                    }
                    other => {
                        control = Some(other);
                        break;
                    }
                }
                if n < self.cfg.max_batch_events {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.process(&mut batch);
            }
            match control {
                Some(Msg::Checkpoint { reply }) => {
                    let _ = reply.send(self.checkpoint());
                }
                Some(Msg::Rotate { reply }) => {
                    let r = self.rotate().map_err(|e| {
                        error!(error = %e, "audit key rotation failed");
                        e
                    });
                    let _ = reply.send(r);
                }
                Some(Msg::Close { reply }) => {
                    let r = self.close();
                    rx.close();
                    // Refuse whatever is still queued, then release files and the lock.
                    while let Ok(m) = rx.try_recv() {
                        fail_msg(m);
                    }
                    drop(self);
                    let _ = reply.send(r);
                    return;
                }
                _ => {}
            }
            self.maybe_checkpoint();
            self.check_space();
        }
    }
}

fn fail_msg(m: Msg) {
    match m {
        Msg::Append { event, reply } => {
            let _ = reply.send((event, Err(AuditError::Closed)));
        }
        Msg::AppendBatch { events, reply } => {
            let _ = reply.send((events, Err(AuditError::Closed)));
        }
        Msg::Checkpoint { reply } | Msg::Close { reply } => {
            let _ = reply.send(Err(AuditError::Closed));
        }
        Msg::Rotate { reply } => {
            let _ = reply.send(Err(AuditError::Closed));
        }
    }
}

fn new_segment(seg_dir: &Path, first_seq: u64) -> Result<OpenSegment, AuditError> {
    let name = segment_file_name(first_seq);
    let path = seg_dir.join(&name);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    file.write_all(MAGIC).map_err(io_err("write", &path))?;
    file.sync_all().map_err(io_err("fsync", &path))?;
    sync_dir(seg_dir).map_err(io_err("fsync directory", seg_dir))?;
    let mut hasher = Sha256::new();
    hasher.update(MAGIC);
    Ok(OpenSegment {
        file,
        path,
        name,
        first_seq,
        len: MAGIC.len() as u64,
        hasher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::PublicKey;
    use crate::audit::verify::{VerifyError, prove_inclusion, verify_dir};

    pub(crate) fn event(i: u64) -> AuditEvent {
        AuditEvent::builder(EventType::Authorization)
            .service("gateway")
            .method("kafka.Produce")
            .principal(format!("User:u{}", i % 7))
            .resource("Topic", format!("t{}", i % 3))
            .operation("Write")
            .client_address("127.0.0.1:5000")
            .granted(!i.is_multiple_of(5))
            .time(Timestamp::from_unix_micros(
                1_700_000_000_000_000 + i as i64 * 1000,
            ))
            .build()
            .unwrap()
    }

    fn config() -> AuditLogConfig {
        let mut c = AuditLogConfig::new("node-1");
        c.segment_max_bytes = 8192;
        c.checkpoint_every_events = 50;
        c.min_free_bytes = 0;
        c
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes([9; 32])
    }

    #[tokio::test]
    async fn append_close_reopen_continue_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = AuditLog::open(dir.path(), config(), key()).unwrap();
        assert!(report.created);
        assert_eq!(report.tree_size, 1, "audit.Started");
        let mut receipts = Vec::new();
        for i in 0..30 {
            receipts.push(log.append(event(i)).await.unwrap());
        }
        receipts.extend(
            log.append_batch((30..100).map(event).collect())
                .await
                .unwrap(),
        );
        let seqs: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, (1..101).collect::<Vec<_>>());
        let info = log.close().await.unwrap().unwrap();
        assert_eq!(info.tree_size, 102, "Started + 100 + Stopped");

        let v = verify_dir(dir.path(), None).unwrap();
        assert_eq!(v.tree_size, 102);
        assert_eq!(v.unanchored_events, 0);
        assert!(v.segments > 1, "8 KiB segments roll");
        assert_eq!(v.sealed_segments, v.segments);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let r = &receipts[41];
        assert_eq!(
            prove_inclusion(dir.path(), r.sequence).unwrap().leaf_hash,
            r.leaf_hash
        );

        let pk = PublicKey::from_file(&dir.path().join("keys/signing.pub")).unwrap();
        assert!(
            verify_dir(dir.path(), Some(&[pk]))
                .unwrap()
                .trusted_keys_pinned
        );

        let (log, report) = AuditLog::open(dir.path(), config(), key()).unwrap();
        assert!(!report.created);
        assert_eq!(report.resumed_from_checkpoint, Some(102));
        assert_eq!(report.tree_size, 103);
        assert_eq!(log.append(event(1)).await.unwrap().sequence, 103);
        log.close().await.unwrap();
        assert_eq!(verify_dir(dir.path(), Some(&[pk])).unwrap().tree_size, 105);
    }

    #[tokio::test]
    async fn rotation_is_signed_and_pinned_to_the_genesis_key() {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = AuditLog::open(dir.path(), config(), key()).unwrap();
        let genesis = PublicKey::from_file(&dir.path().join("keys/signing.pub")).unwrap();
        assert_eq!(report.key_id, genesis.key_id());
        log.append_batch((0..10).map(event).collect())
            .await
            .unwrap();
        let rot = log.rotate_key().await.unwrap();
        assert_eq!(rot.old_key_id, genesis.key_id());
        assert_eq!(rot.tree_size, 11);
        log.append_batch((0..10).map(event).collect())
            .await
            .unwrap();
        log.close().await.unwrap();

        let newer = PublicKey::from_file(&dir.path().join("keys/signing.pub")).unwrap();
        assert_eq!(newer.key_id(), rot.new_key_id);
        let v = verify_dir(dir.path(), Some(&[genesis])).unwrap();
        assert_eq!(
            v.key_ids,
            vec![rot.old_key_id.clone(), rot.new_key_id.clone()]
        );
        assert!(matches!(
            verify_dir(dir.path(), Some(&[newer])),
            Err(VerifyError::KeyHistory { line: 1, .. })
        ));
        let history = fs::read_to_string(dir.path().join("keys/history.jsonl")).unwrap();
        assert_eq!(history.lines().count(), 2);
        // The checkpoint at the rotation point is the old key's, the next one the new key's.
        let cp = |n: u64| {
            Checkpoint::from_json(
                &fs::read(dir.path().join("checkpoints").join(checkpoint_file_name(n))).unwrap(),
            )
            .unwrap()
        };
        assert_eq!(cp(11).key_id, rot.old_key_id);
        assert_eq!(cp(12).key_id, rot.new_key_id);
        // Reopens with the rotated key.
        let (log, report) = AuditLog::open(dir.path(), config(), key()).unwrap();
        assert_eq!(report.key_id, rot.new_key_id);
        log.close().await.unwrap();
        verify_dir(dir.path(), Some(&[genesis])).unwrap();
    }

    #[tokio::test]
    async fn queue_metrics_count_durable_events() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), config(), key()).unwrap();
        let before = log.queue_metrics();
        assert_eq!(before.capacity, config().queue_capacity as u64);
        assert_eq!((before.depth, before.pending_events), (0, 0));
        log.append(event(0)).await.unwrap();
        log.append_batch((1..5).map(event).collect()).await.unwrap();
        let after = log.queue_metrics();
        assert_eq!(after.durable_events, 5);
        assert_eq!((after.pending_events, after.failed_events), (0, 0));
        assert_eq!(after.lag_seconds, 0.0);
        let all = super::super::queue::snapshot().unwrap();
        assert!(all.durable_events >= 5);
        log.close().await.unwrap();
    }

    #[tokio::test]
    async fn wrong_master_key_lock_and_integrity_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), config(), key()).unwrap();
        assert!(matches!(
            AuditLog::open(dir.path(), config(), key()),
            Err(AuditError::Locked(_))
        ));
        log.append_batch((0..200).map(event).collect())
            .await
            .unwrap();
        log.close().await.unwrap();
        let err = AuditLog::open(dir.path(), config(), MasterKey::from_bytes([1; 32]))
            .err()
            .unwrap();
        assert!(matches!(err, AuditError::Key(KeyError::Decrypt)), "{err}");
        assert!(!err.to_string().contains("0909"));

        // Damage inside the signed range is never "recovered": open refuses.
        let seg = dir.path().join("segments").join(segment_file_name(0));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[100] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let err = AuditLog::open(dir.path(), config(), key()).err().unwrap();
        assert!(matches!(err, AuditError::Integrity { .. }), "{err}");
        bytes[100] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let (log, _) = AuditLog::open(dir.path(), config(), key()).unwrap();
        log.close().await.unwrap();
    }

    #[tokio::test]
    async fn refuse_policy_never_drops_silently_and_block_waits() {
        for policy in [QueueFullPolicy::Refuse, QueueFullPolicy::Block] {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config();
            cfg.queue_capacity = 1;
            cfg.queue_full = policy;
            cfg.segment_max_bytes = 1 << 20;
            let (log, _) = AuditLog::open(dir.path(), cfg, key()).unwrap();
            let mut tasks = Vec::new();
            for i in 0..300 {
                let log = log.clone();
                tasks.push(tokio::spawn(async move { log.append(event(i)).await }));
            }
            let mut ok = 0u64;
            let mut refused = 0u64;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(AuditError::QueueFull) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            log.close().await.unwrap();
            let v = verify_dir(dir.path(), None).unwrap();
            assert_eq!(
                v.tree_size,
                ok + 2,
                "every acknowledged event and nothing else"
            );
            match policy {
                QueueFullPolicy::Block => assert_eq!(refused, 0),
                QueueFullPolicy::Refuse => assert_eq!(ok + refused, 300),
            }
        }
    }

    #[tokio::test]
    async fn checkpoints_by_time_and_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.checkpoint_every_events = 1_000_000;
        cfg.checkpoint_interval = Duration::from_millis(30);
        let (log, _) = AuditLog::open(dir.path(), cfg, key()).unwrap();
        log.append(event(0)).await.unwrap();
        let cp = dir.path().join("checkpoints").join(checkpoint_file_name(2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cp.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(cp.exists(), "time-based checkpoint");
        log.append(event(1)).await.unwrap();
        let info = log.checkpoint().await.unwrap().unwrap();
        assert_eq!(info.tree_size, 3);
        assert_eq!(log.checkpoint().await.unwrap(), None, "nothing new");
        log.close().await.unwrap();
        assert!(matches!(
            AuditLog::open(dir.path(), AuditLogConfig::new("bad id"), key()),
            Err(AuditError::Config(_))
        ));
    }

    #[tokio::test]
    async fn oversized_events_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), config(), key()).unwrap();
        let mut e = event(0);
        e.attributes
            .insert("big".into(), "x".repeat(MAX_EVENT_BYTES));
        assert!(matches!(
            log.append(e).await,
            Err(AuditError::EventTooLarge(_))
        ));
        let mut e = event(0);
        e.attributes
            .insert("medium".into(), "\u{1}".repeat(100_000));
        log.append(e).await.unwrap();
        log.close().await.unwrap();
        verify_dir(dir.path(), None).unwrap();
    }
}
