//! Retention and archiving (`gatehouse audit archive`): sealed segments move, together with
//! the checkpoints that cover them, into an archive directory that verifies on its own; the
//! remaining trail keeps verifying from an **anchor**.
//!
//! `anchor.json` (in the trail's directory, and in an archive that itself starts after
//! sequence 0) records where a trail fragment starts:
//!
//! ```json
//! {"checkpoint":"<the exact bytes of the checkpoint file at the cut>","frontier":["…"],
//!  "treeSize":"1957","version":1}
//! ```
//!
//! * `checkpoint` is the signed checkpoint at the cut (tree size `treeSize`), which also
//!   stays in the archive. The verifier checks it like any checkpoint (canonical, signed by
//!   the key the history makes valid for its size) and links the next checkpoint to the
//!   SHA-256 of these bytes, so the remaining checkpoint chain is anchored in the archived one.
//! * `frontier` is the compact Merkle frontier at the cut (one hash per set bit of the tree
//!   size). Its root must equal the signed root hash, so it cannot be forged; it lets the
//!   verifier check the later checkpoints' roots without the archived events.
//!
//! [`archive`] refuses a cut-off younger than the minimum retention (default 365 days, PCI
//! DSS 10.5.1) and archives only whole sealed segments whose covering checkpoint was signed
//! before the cut-off. It verifies the trail first, writes and verifies the archive, then
//! writes the new anchor, then removes the moved files, then verifies what remains. At every
//! step the trail verifies (files left below the anchor by an interrupted run are ignored
//! with a warning and removed by the next run).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::canonical::serde_str;
use super::checkpoint::{Checkpoint, checkpoint_file_name, parse_checkpoint_file_name};
use super::keys::KeyHistory;
use super::merkle::{CompactTree, Hash};
use super::segment::parse_segment_file_name;
use super::time::Timestamp;
use super::verify::{self, VerifyError, VerifyReport};

/// The anchor's file name in an audit directory.
pub const ANCHOR_FILE: &str = "anchor.json";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AnchorFile {
    version: u64,
    #[serde(with = "serde_str::u64_string")]
    tree_size: u64,
    checkpoint: String,
    #[serde(with = "serde_str::hex32_vec")]
    frontier: Vec<Hash>,
}

/// A verified anchor: where a trail fragment starts.
#[derive(Clone, Debug)]
pub(crate) struct Anchor {
    /// Events before the fragment (the first sequence in it).
    pub size: u64,
    /// The signed checkpoint at the cut.
    pub cp: Checkpoint,
    /// SHA-256 of its file bytes (what the next checkpoint links to).
    pub file_sha: Hash,
    /// The Merkle frontier at the cut.
    pub tree: CompactTree,
}

/// Reads and checks `anchor.json` (none: `Ok(None)`); the error is the reason.
pub(crate) fn load_anchor(dir: &Path, history: &KeyHistory) -> Result<Option<Anchor>, String> {
    let bytes = match fs::read(dir.join(ANCHOR_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let a: AnchorFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not an anchor: {e}"))?;
    if a.version != 1 {
        return Err(format!("unsupported version {}", a.version));
    }
    let cp_bytes = a.checkpoint.as_bytes();
    let cp = Checkpoint::from_json(cp_bytes).map_err(|e| format!("bad checkpoint: {e}"))?;
    if cp.to_file_bytes() != cp_bytes {
        return Err("its checkpoint is not in canonical form (modified)".into());
    }
    if cp.tree_size != a.tree_size || a.tree_size == 0 {
        return Err("tree size does not match its checkpoint".into());
    }
    let key = history.key_for(&cp.key_id, cp.tree_size)?;
    if !cp.verify_by(&key.public) {
        return Err("its checkpoint's signature does not verify".into());
    }
    let tree = CompactTree::from_frontier(a.tree_size, a.frontier)
        .ok_or("the frontier does not fit the tree size")?;
    if tree.root() != cp.root_hash {
        return Err("the frontier does not lead to the signed root hash".into());
    }
    Ok(Some(Anchor {
        size: a.tree_size,
        file_sha: Checkpoint::file_sha256(cp_bytes),
        cp,
        tree,
    }))
}

fn anchor_bytes(cp_bytes: &[u8], tree: &CompactTree) -> Result<Vec<u8>, ArchiveError> {
    let checkpoint = String::from_utf8(cp_bytes.to_vec())
        .map_err(|_| ArchiveError::Refused("checkpoint is not UTF-8".into()))?;
    let a = AnchorFile {
        version: 1,
        tree_size: tree.size(),
        checkpoint,
        frontier: tree.frontier().to_vec(),
    };
    let mut out = serde_json::to_vec(&a).map_err(|e| ArchiveError::Refused(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Why archiving did not happen (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The trail (or the archive written) does not verify.
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    /// A rule forbids it (retention, non-empty target, ...).
    #[error("refused: {0}")]
    Refused(String),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What to archive.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Only segments whose covering checkpoint was signed before this time.
    pub before: Timestamp,
    /// The current time (for the retention rule).
    pub now: Timestamp,
    /// The minimum retention in days: `before` must be at least this far in the past.
    pub min_retention_days: u32,
}

/// What [`archive`] did.
#[derive(Clone, Debug)]
pub struct ArchiveReport {
    /// Segment files moved.
    pub segments: usize,
    /// Checkpoint files moved.
    pub checkpoints: usize,
    /// First sequence moved.
    pub first_seq: u64,
    /// One past the last sequence moved (the new anchor's tree size).
    pub next_seq: u64,
    /// The archive's verification report.
    pub archive: Option<VerifyReport>,
    /// The remaining trail's verification report.
    pub remaining: VerifyReport,
}

impl ArchiveReport {
    /// A short text for the terminal.
    pub fn to_text(&self, dir: &Path, to: &Path) -> String {
        if self.segments == 0 {
            return format!(
                "Nothing to archive: no sealed segment of {} was covered by a checkpoint signed before the cut-off.\n",
                dir.display()
            );
        }
        format!(
            "Archived {} segments and {} checkpoints (events {}..{}) to {}\n  the archive verifies on its own: {} events, latest checkpoint at tree size {}\n  the remaining trail verifies from the anchor at tree size {}: {} events in all\n",
            self.segments,
            self.checkpoints,
            self.first_seq,
            self.next_seq,
            to.display(),
            self.archive.as_ref().map_or(0, |r| r.tree_size),
            self.archive
                .as_ref()
                .map_or(0, |r| r.latest_checkpoint_size),
            self.next_seq,
            self.remaining.tree_size
        )
    }
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    let bytes = fs::read(from).map_err(io_err("read", from))?;
    write_synced(to, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut f = fs::File::create(path).map_err(io_err("create", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    super::log::sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Moves the sealed segments (and their checkpoints) covered by checkpoints signed before
/// `opts.before` from `dir` to the new or empty directory `to` (see the module docs).
pub fn archive(
    dir: &Path,
    to: &Path,
    opts: &ArchiveOptions,
) -> Result<ArchiveReport, ArchiveError> {
    let cutoff = opts.now.unix_micros() - i64::from(opts.min_retention_days) * 86_400_000_000;
    if opts.before.unix_micros() > cutoff {
        return Err(ArchiveError::Refused(format!(
            "--before {} is within the minimum retention of {} days (the latest allowed cut-off is {}); audit history must stay in the trail for at least that long (PCI DSS 10.5.1: 12 months)",
            opts.before,
            opts.min_retention_days,
            Timestamp::from_unix_micros(cutoff)
        )));
    }
    // Everything must verify before anything moves.
    verify::verify_dir(dir, None)?;
    let (anchor, cps) = verify::verified_checkpoints(dir)?;
    let start = anchor.as_ref().map_or(0, |a| a.size);
    // Candidate segments in order, with their listing checkpoint's size and time.
    let mut cut = None;
    let mut max_listing = 0u64;
    'outer: for (_, c) in &cps {
        let signed = Timestamp::parse_rfc3339(&c.time).map_err(|_| {
            ArchiveError::Refused(format!("checkpoint {} has a bad time", c.tree_size))
        })?;
        for s in &c.segments {
            if s.first_seq < start {
                continue;
            }
            if signed >= opts.before {
                break 'outer;
            }
            max_listing = max_listing.max(c.tree_size);
            let boundary = s.next_seq;
            if max_listing <= boundary && cps.iter().any(|(_, k)| k.tree_size == boundary) {
                cut = Some(boundary);
            }
        }
    }
    let Some(cut) = cut.filter(|c| *c > start) else {
        return Ok(ArchiveReport {
            segments: 0,
            checkpoints: 0,
            first_seq: start,
            next_seq: start,
            archive: None,
            remaining: verify::verify_dir(dir, None)?,
        });
    };
    if let Ok(mut rd) = fs::read_dir(to)
        && rd.next().is_some()
    {
        return Err(ArchiveError::Refused(format!(
            "{} is not empty; archive into a new directory",
            to.display()
        )));
    }
    let seg_dir = dir.join("segments");
    let cp_dir = dir.join("checkpoints");
    let mut seg_names: Vec<(u64, String)> = fs::read_dir(&seg_dir)
        .map_err(io_err("list", &seg_dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| parse_segment_file_name(&n).map(|s| (s, n)))
        .filter(|(s, _)| *s < cut)
        .collect();
    seg_names.sort();
    let cp_names: Vec<String> = cps
        .iter()
        .filter(|(_, c)| c.tree_size <= cut)
        .map(|(n, _)| n.clone())
        .collect();
    // 1. Write the archive and check that it verifies on its own.
    for sub in ["segments", "checkpoints", "keys"] {
        let d = to.join(sub);
        fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
    }
    for (_, n) in seg_names.iter().filter(|(s, _)| *s >= start) {
        copy_synced(&seg_dir.join(n), &to.join("segments").join(n))?;
    }
    for n in &cp_names {
        copy_synced(&cp_dir.join(n), &to.join("checkpoints").join(n))?;
    }
    copy_synced(
        &dir.join("keys/history.jsonl"),
        &to.join("keys/history.jsonl"),
    )?;
    if anchor.is_some() {
        copy_synced(&dir.join(ANCHOR_FILE), &to.join(ANCHOR_FILE))?;
    }
    for d in [
        to.join("segments"),
        to.join("checkpoints"),
        to.join("keys"),
        to.to_path_buf(),
    ] {
        sync_dir(&d)?;
    }
    let (archived, tree) = verify::verify_with_tree(to)?;
    let cut_cp_name = checkpoint_file_name(cut);
    let cut_bytes = fs::read(cp_dir.join(&cut_cp_name)).map_err(io_err("read", &cp_dir))?;
    let cut_cp = Checkpoint::from_json(&cut_bytes)
        .map_err(|e| ArchiveError::Refused(format!("checkpoint {cut_cp_name}: {e}")))?;
    if archived.tree_size != cut || tree.root() != cut_cp.root_hash {
        return Err(ArchiveError::Refused(format!(
            "the archive at {} does not end at the checkpoint of tree size {cut}; nothing was removed",
            to.display()
        )));
    }
    // 2. Anchor the remaining trail at the cut.
    let tmp = dir.join(format!(".{ANCHOR_FILE}.tmp"));
    write_synced(&tmp, &anchor_bytes(&cut_bytes, &tree)?)?;
    let anchor_path = dir.join(ANCHOR_FILE);
    fs::rename(&tmp, &anchor_path).map_err(io_err("rename", &anchor_path))?;
    sync_dir(dir)?;
    // 3. Remove the moved files (and any left below the anchor by an interrupted run).
    for n in &cp_names {
        let p = cp_dir.join(n);
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
    }
    for n in fs::read_dir(&cp_dir)
        .map_err(io_err("list", &cp_dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
    {
        if parse_checkpoint_file_name(&n).is_some_and(|s| s <= cut) {
            let p = cp_dir.join(&n);
            fs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
    }
    sync_dir(&cp_dir)?;
    for (_, n) in &seg_names {
        let p = seg_dir.join(n);
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
    }
    sync_dir(&seg_dir)?;
    // 4. What remains verifies from the anchor.
    let remaining = verify::verify_dir(dir, None)?;
    Ok(ArchiveReport {
        segments: seg_names.iter().filter(|(s, _)| *s >= start).count(),
        checkpoints: cp_names.len(),
        first_seq: start,
        next_seq: cut,
        archive: Some(archived),
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{AuditEvent, EventType};
    use crate::audit::keys::MasterKey;
    use crate::audit::log::{AuditLog, AuditLogConfig};

    fn ev(i: u64) -> AuditEvent {
        AuditEvent::builder(EventType::Topic)
            .service("gateway")
            .method("kafka.CreateTopics")
            .principal("User:ops")
            .resource("Topic", format!("t{i}"))
            .operation("Create")
            .granted(true)
            .build()
            .expect("event")
    }

    async fn run(dir: &Path, n: u64) {
        let mut cfg = AuditLogConfig::new("ar");
        cfg.segment_max_bytes = 4096;
        cfg.checkpoint_every_events = 5;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(dir, cfg, MasterKey::from_bytes([4; 32])).expect("open");
        log.append_batch((0..n).map(ev).collect())
            .await
            .expect("append");
        log.close().await.expect("close");
    }

    fn days(d: i64) -> i64 {
        d * 86_400_000_000
    }

    #[tokio::test]
    async fn refuses_young_cutoffs_and_both_parts_verify_after_archiving() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("audit");
        run(&dir, 60).await;
        let before_size = verify::verify_dir(&dir, None).expect("verify").tree_size;
        let now = Timestamp::now();
        // Within the retention: refused, nothing touched.
        let young = ArchiveOptions {
            before: Timestamp::from_unix_micros(now.unix_micros() - days(30)),
            now,
            min_retention_days: 365,
        };
        let to = tmp.path().join("arch1");
        let e = archive(&dir, &to, &young).expect_err("refused");
        assert!(
            matches!(e, ArchiveError::Refused(ref m) if m.contains("365 days")),
            "{e}"
        );
        assert!(!to.exists());
        // Pretend a year and a day passed.
        let later = Timestamp::from_unix_micros(now.unix_micros() + days(366));
        let opts = ArchiveOptions {
            before: Timestamp::from_unix_micros(now.unix_micros() + days(1)),
            now: later,
            min_retention_days: 365,
        };
        let r = archive(&dir, &to, &opts).expect("archive");
        assert!(r.segments > 0 && r.next_seq > 0, "{r:?}");
        let a = verify::verify_dir(&to, None).expect("archive verifies");
        assert_eq!(a.tree_size, r.next_seq);
        let rest = verify::verify_dir(&dir, None).expect("rest verifies");
        assert_eq!(rest.tree_size, before_size);
        assert_eq!(rest.anchored_at, r.next_seq);
        // The node opens the anchored trail, appends, closes; all verifies.
        run(&dir, 10).await;
        let rest2 = verify::verify_dir(&dir, None).expect("rest verifies after reopen");
        assert!(rest2.tree_size > before_size);
        // Archive again (the fragment starts at the anchor): into a second archive.
        let to2 = tmp.path().join("arch2");
        let opts2 = ArchiveOptions {
            before: Timestamp::from_unix_micros(later.unix_micros()),
            now: Timestamp::from_unix_micros(later.unix_micros() + days(366)),
            min_retention_days: 365,
        };
        let r2 = archive(&dir, &to2, &opts2).expect("archive again");
        assert_eq!(r2.first_seq, r.next_seq);
        let a2 = verify::verify_dir(&to2, None).expect("second archive verifies");
        assert_eq!(a2.anchored_at, r.next_seq);
        verify::verify_dir(&dir, None).expect("rest verifies");
        // Tampering with the anchor is detected.
        let p = dir.join(ANCHOR_FILE);
        let text = fs::read_to_string(&p).expect("anchor");
        // Change one hex digit of the first frontier hash.
        let i = text.find("\"frontier\":[\"").expect("frontier") + 13;
        let mut bad = text.into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        fs::write(&p, bad).expect("write");
        assert!(verify::verify_dir(&dir, None).is_err());
    }
}
