//! Off-node copies of the trail: the mirror to the `_gatehouse_audit` Kafka topic
//! (`[audit] mirror_topic = true` under `gatehouse serve`).
//!
//! The mirror tails the audit directory, never the append path: it reads what the writer
//! has put on disk, so a slow or unreachable broker never delays or blocks an append, and
//! nothing queues in memory (at most [`MAX_BATCH_EVENTS`] events per produce). It ships:
//!
//! * every event covered by a checkpoint on disk (sequence < the latest checkpoint's tree
//!   size), in sequence order: record key `event/<sequence>`, value the stored canonical
//!   bytes (each hashes to its Merkle leaf);
//! * then that checkpoint: key `checkpoint/<tree size>`, value the exact file bytes.
//!
//! Every record carries a `gh-mac` header (HMAC-SHA256 over topic, key and value with a key
//! derived from the master key, as for the other `_gatehouse_*` topics) and `gh-kind`
//! (`event` or `checkpoint`). Produces use `acks=all`. The position is kept in a cursor
//! file outside the audit directory and advanced only after the broker acknowledged, so
//! delivery is at least once (a consumer deduplicates by key). A failed produce is counted
//! ([`MirrorMetrics::failures_total`]), logged (at most once a minute at ERROR) and retried
//! at the next tick; events wait on disk meanwhile. Events archived before the mirror
//! reached them are not shipped (the cursor jumps to the archive anchor).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::client::{Client, CreateTopicOutcome};
use gatehouse_protocol::records::{BatchBuilder, RecordHeader};
use serde::{Deserialize, Serialize};

use super::archive::ANCHOR_FILE;
use super::canonical::serde_str;
use super::checkpoint::parse_checkpoint_file_name;
use super::segment::{self, Frame, MAGIC, parse_segment_file_name};

/// The topic the mirror writes.
pub const MIRROR_TOPIC: &str = "_gatehouse_audit";
/// Most events in one produce.
pub const MAX_BATCH_EVENTS: usize = 500;
/// Header carrying each record's MAC.
pub const MAC_HEADER: &str = "gh-mac";
/// Header naming the record kind (`event` or `checkpoint`).
pub const KIND_HEADER: &str = "gh-kind";

/// Counters of the mirror, read by `/metrics`.
#[derive(Debug, Default)]
pub struct MirrorMetrics {
    events: AtomicU64,
    checkpoints: AtomicU64,
    failures: AtomicU64,
}

impl MirrorMetrics {
    /// Events shipped since start.
    pub fn events_total(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
    /// Checkpoints shipped since start.
    pub fn checkpoints_total(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }
    /// Failed attempts (read or produce) since start.
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Where the mirror stands (persisted in the cursor file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The next event sequence to ship.
    #[serde(with = "serde_str::u64_string")]
    pub next_sequence: u64,
    /// The tree size of the last checkpoint shipped (0: none).
    #[serde(with = "serde_str::u64_string")]
    pub checkpoint: u64,
}

/// Where the previous read stopped: segment file, byte offset of the next record, and the
/// sequence found there (so a catch-up does not re-read a segment from its start).
type Hint = Option<(String, u64, u64)>;

/// What one read of the directory found to ship next.
#[derive(Debug, Default)]
struct Pending {
    events: Vec<(u64, Vec<u8>)>,
    checkpoints: Vec<(u64, Vec<u8>)>,
    hint: Hint,
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        if let Some(n) = e?.file_name().to_str() {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn anchor_size(dir: &Path) -> u64 {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct A {
        #[serde(with = "serde_str::u64_string")]
        tree_size: u64,
    }
    fs::read(dir.join(ANCHOR_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<A>(&b).ok())
        .map_or(0, |a| a.tree_size)
}

/// Reads the next events (up to `max`, all below the latest checkpoint) and the checkpoints
/// after `cursor.checkpoint` whose events are all included.
fn read_pending(dir: &Path, cursor: &Cursor, max: usize, hint: &Hint) -> io::Result<Pending> {
    let mut cps: Vec<(u64, String)> = list(&dir.join("checkpoints"))?
        .into_iter()
        .filter_map(|n| parse_checkpoint_file_name(&n).map(|s| (s, n)))
        .filter(|(s, _)| *s > cursor.checkpoint)
        .collect();
    cps.sort();
    let Some(&(signed, _)) = cps.last() else {
        return Ok(Pending::default());
    };
    let mut events = Vec::new();
    let mut next = cursor.next_sequence;
    let mut new_hint = None;
    if next < signed {
        let mut files: Vec<(u64, String)> = list(&dir.join("segments"))?
            .into_iter()
            .filter_map(|n| parse_segment_file_name(&n).map(|s| (s, n)))
            .collect();
        files.sort();
        let start = files.iter().rposition(|(f, _)| *f <= next).unwrap_or(0);
        'files: for (_, name) in &files[start..] {
            // Continue where the last read stopped, if it stopped in this file at `next`.
            let from = match hint {
                Some((h, off, seq)) if h == name && *seq == next => *off,
                _ => 0,
            };
            let mut data = Vec::new();
            let mut f = fs::File::open(dir.join("segments").join(name))?;
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut data)?;
            let mut pos = 0;
            if from == 0 {
                if !data.starts_with(MAGIC) {
                    break;
                }
                pos = MAGIC.len();
            }
            while pos < data.len() {
                match segment::decode(&data, pos) {
                    Ok((Frame::Record { seq, payload }, n)) => {
                        if seq < next {
                            pos += n;
                            continue;
                        }
                        if seq != next || seq >= signed || events.len() >= max {
                            new_hint = Some((name.clone(), from + pos as u64, next));
                            break 'files;
                        }
                        pos += n;
                        events.push((seq, payload.to_vec()));
                        next += 1;
                    }
                    Ok((Frame::Trailer { .. }, _)) => break,
                    Err(_) => break 'files,
                }
            }
        }
    }
    let mut checkpoints = Vec::new();
    for (size, name) in cps {
        if size > next {
            break;
        }
        checkpoints.push((size, fs::read(dir.join("checkpoints").join(name))?));
    }
    Ok(Pending {
        events,
        checkpoints,
        hint: new_hint,
    })
}

/// The mirror's settings.
pub struct MirrorConfig {
    /// The audit directory.
    pub dir: PathBuf,
    /// The cursor file (outside the audit directory).
    pub cursor_file: PathBuf,
    /// Key of the records' MACs.
    pub mac_key: [u8; 32],
    /// How often to look for new checkpoints.
    pub interval: Duration,
}

fn load_cursor(path: &Path) -> Cursor {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_cursor(path: &Path, c: &Cursor) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(c).map_err(io::Error::other)?)?;
    fs::rename(&tmp, path)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn batch(mac_key: &[u8; 32], records: &[(String, &[u8], &'static str)]) -> Result<Bytes, String> {
    let mut b = BatchBuilder::new();
    let now = now_ms();
    for (key, value, kind) in records {
        let mac =
            crate::vault::store::record_mac(mac_key, MIRROR_TOPIC, key.as_bytes(), Some(value));
        let headers = [
            RecordHeader::new(
                Bytes::from_static(MAC_HEADER.as_bytes()),
                Some(Bytes::copy_from_slice(&mac)),
            ),
            RecordHeader::new(
                Bytes::from_static(KIND_HEADER.as_bytes()),
                Some(Bytes::from_static(kind.as_bytes())),
            ),
        ];
        b.push(Some(key.as_bytes()), Some(value), &headers, now)
            .map_err(|e| e.to_string())?;
    }
    b.build().map_err(|e| e.to_string())
}

/// One round: read what is pending, produce it, advance the cursor. Returns whether
/// anything was shipped.
async fn ship_once(
    client: &Client,
    cfg: &MirrorConfig,
    cursor: &mut Cursor,
    hint: &mut Hint,
    metrics: &MirrorMetrics,
) -> Result<bool, String> {
    let anchored = anchor_size(&cfg.dir);
    if cursor.next_sequence < anchored {
        cursor.next_sequence = anchored;
    }
    let dir = cfg.dir.clone();
    let at = cursor.clone();
    let h = hint.clone();
    let pending =
        tokio::task::spawn_blocking(move || read_pending(&dir, &at, MAX_BATCH_EVENTS, &h))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the audit directory: {e}"))?;
    if pending.events.is_empty() && pending.checkpoints.is_empty() {
        return Ok(false);
    }
    let mut records: Vec<(String, &[u8], &'static str)> = pending
        .events
        .iter()
        .map(|(s, v)| (format!("event/{s}"), v.as_slice(), "event"))
        .collect();
    records.extend(
        pending
            .checkpoints
            .iter()
            .map(|(s, v)| (format!("checkpoint/{s}"), v.as_slice(), "checkpoint")),
    );
    let bytes = batch(&cfg.mac_key, &records)?;
    client
        .produce(MIRROR_TOPIC, 0, bytes, -1)
        .await
        .map_err(|e| format!("produce to {MIRROR_TOPIC}: {e}"))?;
    if let Some((s, _)) = pending.events.last() {
        cursor.next_sequence = s + 1;
    }
    if let Some((s, _)) = pending.checkpoints.last() {
        cursor.checkpoint = *s;
    }
    *hint = pending.hint;
    metrics
        .events
        .fetch_add(pending.events.len() as u64, Ordering::Relaxed);
    metrics
        .checkpoints
        .fetch_add(pending.checkpoints.len() as u64, Ordering::Relaxed);
    if let Err(e) = save_cursor(&cfg.cursor_file, cursor) {
        tracing::warn!(error = %e, "The audit mirror's cursor could not be saved; events may be shipped again after a restart.");
    }
    Ok(true)
}

/// Creates the topic (retention unlimited) if needed.
pub async fn ensure_topic(client: &Client) -> Result<(), String> {
    match client
        .create_topic(MIRROR_TOPIC, 1, &[("retention.ms", "-1")])
        .await
        .map_err(|e| e.to_string())?
    {
        CreateTopicOutcome::Created => {
            tracing::info!(topic = MIRROR_TOPIC, "created internal topic");
        }
        CreateTopicOutcome::AlreadyExists => {}
    }
    Ok(())
}

/// Ships everything pending now (e.g. the final checkpoint after the trail was closed).
pub async fn flush(client: &Client, cfg: &MirrorConfig, metrics: &MirrorMetrics) {
    let mut cursor = load_cursor(&cfg.cursor_file);
    let mut hint = None;
    loop {
        match ship_once(client, cfg, &mut cursor, &mut hint, metrics).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "The audit mirror could not ship the trail's last events.");
                return;
            }
        }
    }
}

/// The mirror loop of `gatehouse serve`; returns when `stop` turns true.
pub async fn run(
    client: Client,
    cfg: MirrorConfig,
    metrics: Arc<MirrorMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cfg.cursor_file);
    let mut hint = None;
    let mut last_alarm: Option<Instant> = None;
    let mut topic_ready = false;
    loop {
        if !topic_ready {
            match ensure_topic(&client).await {
                Ok(()) => topic_ready = true,
                Err(e) => {
                    metrics.failures.fetch_add(1, Ordering::Relaxed);
                    alarm(&mut last_alarm, &e);
                }
            }
        }
        if topic_ready {
            loop {
                match ship_once(&client, &cfg, &mut cursor, &mut hint, &metrics).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        metrics.failures.fetch_add(1, Ordering::Relaxed);
                        alarm(&mut last_alarm, &e);
                    }
                }
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn alarm(last: &mut Option<Instant>, e: &str) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::error!(error = %e, "The audit mirror to {MIRROR_TOPIC} failed; it retries, events wait on disk (see gatehouse_audit_mirror_failures_total).");
    } else {
        tracing::debug!(error = %e, "audit mirror attempt failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{AuditEvent, EventType};
    use crate::audit::keys::MasterKey;
    use crate::audit::log::{AuditLog, AuditLogConfig};

    #[tokio::test]
    async fn pending_reads_only_signed_events_in_order_then_their_checkpoints() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        let mut cfg = AuditLogConfig::new("m");
        cfg.segment_max_bytes = 4096;
        cfg.checkpoint_every_events = 1_000_000;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(dir, cfg, MasterKey::from_bytes([2; 32])).expect("open");
        let events = (0..30)
            .map(|i| {
                AuditEvent::builder(EventType::Topic)
                    .service("gateway")
                    .method("kafka.CreateTopics")
                    .principal("User:ops")
                    .resource("Topic", format!("t{i}"))
                    .operation("Create")
                    .granted(true)
                    .build()
                    .expect("event")
            })
            .collect();
        log.append_batch(events).await.expect("append");
        log.close().await.expect("close");
        let mut cursor = Cursor::default();
        let mut seen = Vec::new();
        let mut cps = Vec::new();
        let mut hint = None;
        loop {
            let p = read_pending(dir, &cursor, 7, &hint).expect("read");
            hint = p.hint.clone();
            if p.events.is_empty() && p.checkpoints.is_empty() {
                break;
            }
            for (s, v) in &p.events {
                assert!(AuditEvent::from_json(v).is_ok());
                seen.push(*s);
            }
            if let Some((s, _)) = p.events.last() {
                cursor.next_sequence = s + 1;
            }
            for (s, _) in &p.checkpoints {
                assert!(*s <= cursor.next_sequence);
                cps.push(*s);
                cursor.checkpoint = *s;
            }
        }
        let total = crate::audit::verify::verify_dir(dir, None)
            .expect("verify")
            .tree_size;
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        assert_eq!(cps.last(), Some(&total));
        let b = batch(&[1; 32], &[("event/0".into(), b"{}", "event")]).expect("batch");
        assert!(!b.is_empty());
    }
}
